//! The two error types: [`Error`] for the operator and the caller, [`AuthError`] for the peer.

use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::time::format_utc;

/// Why loading TLS material, managing the CA or connecting failed.
///
/// Messages name the file and the problem. None of them repeats the content of a key file:
/// PEM parse errors are described by kind only, because the offending line may be key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read, written, renamed or created.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "read", "write", "create" or "rename into place".
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A file was read but its content is unusable: no PEM item of the right kind, a certificate
    /// that does not parse, a key that does not belong to its certificate, a certificate that the
    /// CA does not vouch for.
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    /// A string is not a Huitong SPIFFE ID `spiffe://<trust-domain>/dept/<dept_id>/<role>`.
    #[error("{uri:?} is not a Huitong identity: {reason}")]
    InvalidPeerId { uri: String, reason: String },
    /// A certificate carries no Huitong identity (no URI name, several, or a malformed one).
    #[error("the certificate carries no usable identity: {0}")]
    NoIdentity(String),
    /// `pki init` found a CA already in place.
    #[error(
        "{} already holds an exchange CA; refusing to overwrite it (its keys sign every \
         certificate in use). Use another directory or remove the old CA deliberately",
        dir.display()
    )]
    CaExists { dir: PathBuf },
    /// `pki issue` found a certificate or key already in place for the identity.
    #[error(
        "{} already exists; refusing to overwrite it (the certificate in use may still need \
         revoking). Pass --force to replace it: the old pair is kept as <name>.old.pem and \
         <name>.old.key",
        path.display()
    )]
    CertExists { path: PathBuf },
    /// `pki issue` or `pki revoke` found no CA.
    #[error("{} holds no exchange CA ({} is missing); run `huitong pki init` first", dir.display(), missing.display())]
    NoCa { dir: PathBuf, missing: PathBuf },
    /// An argument is unusable: a trust domain, host name, validity period or revocation reason.
    #[error("{0}")]
    InvalidArgument(String),
    /// Generating a key, certificate or CRL failed.
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    /// rustls refused the configuration (for instance, no usable protocol version).
    #[error("TLS configuration refused: {0}")]
    Config(String),
    /// The connector was given an address it cannot dial.
    #[error("cannot dial {uri}: {reason}")]
    InvalidUri { uri: String, reason: String },
    /// The TCP connection could not be established.
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// The TLS handshake failed; `reason` says why, e.g. which identity the server presented
    /// and which one was expected.
    #[error("TLS handshake with {server} failed: {reason}")]
    Handshake { server: String, reason: String },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// Why a peer is not authenticated.
///
/// `Display` is the message sent to the peer in an UNAUTHENTICATED status: it says what is
/// wrong with the peer's certificate and what to do about it, and nothing about the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The connection carries no client certificate (or is not a TLS connection at all).
    #[error("no client certificate: present a client certificate issued by this exchange's CA")]
    NoCertificate,
    /// The certificate does not chain to the exchange CA.
    #[error(
        "your certificate was not issued by this exchange's CA; ask the exchange operator for one"
    )]
    UnknownIssuer,
    /// The certificate's validity period has ended.
    #[error("your certificate expired on {}; ask the exchange operator for a new one", format_utc(*not_after))]
    Expired { not_after: SystemTime },
    /// The certificate's validity period has not begun.
    #[error("your certificate is not valid before {}; check this machine's clock and yours", format_utc(*not_before))]
    NotYetValid { not_before: SystemTime },
    /// The exchange CA has revoked the certificate.
    #[error("your certificate has been revoked; ask the exchange operator for a new one")]
    Revoked,
    /// The certificate has no URI name of the form `spiffe://<trust-domain>/dept/<dept>/<role>`,
    /// or more than one.
    #[error(
        "your certificate carries no valid Huitong identity ({0}); ask the exchange operator for \
         a certificate issued by `huitong pki issue`"
    )]
    NoIdentity(String),
    /// The identity belongs to another exchange.
    #[error("your certificate belongs to trust domain {got:?}, but this exchange is {want:?}")]
    WrongTrustDomain { got: String, want: String },
    /// Any other reason the certificate is refused.
    #[error("your certificate was refused: {0}")]
    Other(String),
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        tonic::Status::unauthenticated(e.to_string())
    }
}
