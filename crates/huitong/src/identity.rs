//! The certificate a command-line client presents: flags shared by every client subcommand.

use std::path::PathBuf;

use huitong_client::TlsFiles;

/// Mutual TLS identity of a client: the exchange CA and our certificate and key.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// The exchange CA certificate (PEM).
    #[arg(long, env = "HUITONG_CA", value_name = "PEM")]
    pub ca: PathBuf,
    /// Our certificate (PEM), issued by `huitong pki issue`.
    #[arg(long, env = "HUITONG_CERT", value_name = "PEM")]
    pub cert: PathBuf,
    /// Our private key (PEM); by default the certificate's path with a .key extension.
    #[arg(long = "cert-key", env = "HUITONG_CERT_KEY", value_name = "PEM")]
    pub key: Option<PathBuf>,
}

impl IdentityArgs {
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self
                .key
                .clone()
                .unwrap_or_else(|| self.cert.with_extension("key")),
            crl: None,
        }
    }
}
