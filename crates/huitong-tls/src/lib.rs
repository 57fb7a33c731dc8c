//! Identities and mutual TLS: the exchange CA, certificates and revocation, and verified peers on every link.
//!
//! Every party holds a certificate from the exchange CA whose one URI name is its identity,
//! `spiffe://<trust-domain>/dept/<dept_id>/<role>` ([`PeerId`]). Identity comes only from a
//! verified certificate, never from a request field.
//!
//! - [`pki`] creates the CA, issues certificates and revokes them (files on disk).
//! - [`ServerTls`] accepts TLS 1.3 connections and authenticates each request's peer, so that a
//!   refused peer gets a gRPC UNAUTHENTICATED status that says why ([`AuthError`]), not an
//!   opaque TLS alert.
//! - [`guard`] puts [`ServerTls::authenticate`] and a role check in front of a tonic service.
//! - [`ClientTls`] dials servers and checks that they are who the caller expects ([`Expect`]).
//!
//! Everything uses rustls with the *ring* provider and TLS 1.3 only; nothing depends on a
//! process-wide default provider.

#![forbid(unsafe_code)]

mod client;
mod error;
mod failures;
mod files;
pub mod guard;
mod identity;
pub mod pki;
mod revocation;
mod server;
mod time;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use huitong_core::DeptId;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use client::{ClientTls, Connector, Expect, endpoint};
pub use error::{AuthError, Error};
pub use failures::FailureReason;
pub use identity::{PeerId, Role, peer_id_of};
pub use server::{CertWatch, Conn, ConnectionLimits, ServerTls};
pub use time::format_utc;

/// The files a party needs for mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The exchange CA certificate (PEM): the only trust anchor.
    pub ca: PathBuf,
    /// This party's certificate (PEM), optionally followed by intermediates.
    pub cert: PathBuf,
    /// This party's private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// The CA's revocation list (PEM). `None` turns revocation checking off.
    pub crl: Option<PathBuf>,
}

impl TlsFiles {
    /// Which of the files (`ca`, `cert`, `key`, `crl`) an error of [`ServerTls::load`] or
    /// [`ClientTls::load`] is about, so that a config check can name the key to fix.
    pub fn key_of(&self, e: &Error) -> Option<&'static str> {
        let path = match e {
            Error::Io { path, .. } | Error::File { path, .. } => path,
            _ => return None,
        };
        [
            ("ca", Some(&self.ca)),
            ("cert", Some(&self.cert)),
            ("key", Some(&self.key)),
            ("crl", self.crl.as_ref()),
        ]
        .into_iter()
        .find(|(_, p)| *p == Some(path))
        .map(|(k, _)| k)
    }

    /// The files [`pki::init`] and [`pki::issue`] write in `dir` for `dept` in `role`,
    /// with the CRL.
    pub fn from_pki_dir(dir: &Path, dept: &DeptId, role: Role) -> TlsFiles {
        TlsFiles {
            ca: dir.join(pki::CA_CERT),
            cert: dir.join(format!("{dept}-{role}.pem")),
            key: dir.join(format!("{dept}-{role}.key")),
            crl: Some(dir.join(pki::CRL)),
        }
    }
}

/// The ring provider: explicit, so that no process-wide default has to be installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What both sides read from [`TlsFiles`].
struct Loaded {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    id: PeerId,
    crl: Option<(PathBuf, revocation::StampedCrls)>,
    /// Not-after of our certificate and of the (earliest-expiring) CA certificate, Unix seconds.
    expiry: Expiry,
}

/// When a party's own certificate and its CA stop being valid, Unix seconds: for the
/// `huitong_certificate_expiry_timestamp_seconds` metric and the warning before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    pub own: i64,
    pub ca: i64,
}

impl Loaded {
    fn read(files: &TlsFiles) -> Result<Loaded, Error> {
        let mut roots = RootCertStore::empty();
        let cas = files::certs(&files.ca)?;
        let ca_expiry = cas.iter().filter_map(|c| time::not_after(c)).min();
        for ca in cas {
            roots.add(ca).map_err(|e| {
                Error::file(&files.ca, format!("it is not a usable CA certificate: {e}"))
            })?;
        }
        let chain = files::certs(&files.cert)?;
        let key = files::private_key(&files.key)?;
        let id = chain
            .first()
            .ok_or_else(|| Error::file(&files.cert, "no certificate"))
            .and_then(|leaf| {
                peer_id_of(leaf).map_err(|e| Error::file(&files.cert, e.to_string()))
            })?;
        let crl = match &files.crl {
            Some(path) => Some((path.clone(), revocation::read_crls(path)?)),
            None => None,
        };
        let expiry = Expiry {
            own: chain.first().and_then(|c| time::not_after(c)).unwrap_or(0),
            ca: ca_expiry.unwrap_or(0),
        };
        Ok(Loaded {
            roots: Arc::new(roots),
            chain,
            key,
            id,
            crl,
            expiry,
        })
    }

    fn crls(&self) -> revocation::Crls {
        self.crl
            .as_ref()
            .map(|(_, (_, crls))| crls.clone())
            .unwrap_or_default()
    }

    fn revocation<V: revocation::Build>(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> Result<revocation::Revocation<V>, Error> {
        revocation::Revocation::new(
            self.roots.clone(),
            provider.clone(),
            self.crl
                .as_ref()
                .map(|(path, (stamp, crls))| (path.as_path(), *stamp, crls.clone())),
        )
    }
}

/// Explains a rustls refusal of our own key or certificate, naming the files.
fn own_key_error(files: &TlsFiles, e: rustls::Error) -> Error {
    match e {
        rustls::Error::InconsistentKeys(_) => Error::file(
            &files.key,
            format!(
                "this key does not belong to the certificate in {}",
                files.cert.display()
            ),
        ),
        e => Error::file(
            &files.key,
            format!(
                "rustls cannot use this key with the certificate in {}: {e}",
                files.cert.display()
            ),
        ),
    }
}

/// Describes why our own certificate failed verification, naming the files.
fn own_cert_error(files: &TlsFiles, e: &rustls::Error, leaf: &[u8]) -> Error {
    let problem = match server::auth_error(e.clone(), leaf) {
        AuthError::Expired { not_after } => {
            format!("it expired on {}; issue a new one", format_utc(not_after))
        }
        AuthError::NotYetValid { not_before } => format!(
            "it is not valid before {}; check the clock",
            format_utc(not_before)
        ),
        AuthError::Revoked => format!(
            "it has been revoked (see {}); issue a new one",
            files
                .crl
                .as_deref()
                .unwrap_or(Path::new("the CRL"))
                .display()
        ),
        AuthError::UnknownIssuer => {
            format!("it was not issued by the CA in {}", files.ca.display())
        }
        _ => format!("it does not verify against {}: {e}", files.ca.display()),
    };
    Error::file(&files.cert, problem)
}
