//! A certificate verifier that follows the CRL file on disk.
//!
//! `huitong pki revoke` replaces the CRL file atomically; long-running servers (and the broker
//! as a client of adapters) notice within a second and rebuild their verifier, so a revocation
//! takes effect without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls_pki_types::CertificateRevocationListDer;

use crate::{Error, files};

/// How often the CRL file's modification time is looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub(crate) type Crls = Vec<CertificateRevocationListDer<'static>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the data consistent (every update is a
    // single assignment), so carry on rather than turn one panic into many.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Builds a verifier of one kind from the trust anchors and the current CRLs.
pub(crate) trait Build: Clone + Send + Sync + 'static {
    fn build(
        roots: &Arc<RootCertStore>,
        provider: &Arc<CryptoProvider>,
        crls: Crls,
    ) -> Result<Self, VerifierBuilderError>;
}

impl Build for Arc<dyn ClientCertVerifier> {
    fn build(
        roots: &Arc<RootCertStore>,
        provider: &Arc<CryptoProvider>,
        crls: Crls,
    ) -> Result<Self, VerifierBuilderError> {
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .with_crls(crls)
            .build()
    }
}

impl Build for Arc<WebPkiServerVerifier> {
    fn build(
        roots: &Arc<RootCertStore>,
        provider: &Arc<CryptoProvider>,
        crls: Crls,
    ) -> Result<Self, VerifierBuilderError> {
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .with_crls(crls)
            .build()
    }
}

/// What identifies one version of the CRL file: modification time and size.
pub(crate) type Stamp = (Option<SystemTime>, u64);
pub(crate) type StampedCrls = (Stamp, Crls);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified().ok(), meta.len()))
}

struct Watched {
    path: PathBuf,
    stamp: Stamp,
    checked: Instant,
}

struct State<V> {
    watched: Option<Watched>,
    verifier: V,
    /// Increases on every reload, so that caches of verified results can tell they are stale.
    generation: u64,
}

pub(crate) struct Revocation<V> {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    state: Mutex<State<V>>,
}

impl<V> fmt::Debug for Revocation<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.state);
        f.debug_struct("Revocation")
            .field("crl", &st.watched.as_ref().map(|w| &w.path))
            .field("generation", &st.generation)
            .finish_non_exhaustive()
    }
}

pub(crate) fn verifier_error(path: Option<&Path>, e: VerifierBuilderError) -> Error {
    match path {
        Some(p) => Error::file(p, format!("the CRL is unusable: {e}")),
        None => Error::Config(e.to_string()),
    }
}

/// Reads the CRL file; returns its stamp (taken before reading, so that a change during the
/// read is seen at the next check) and its CRLs.
pub(crate) fn read_crls(path: &Path) -> Result<StampedCrls, Error> {
    let st = stamp(path).map_err(|e| Error::io("read", path, e))?;
    Ok((st, files::crls(path)?))
}

impl<V: Build> Revocation<V> {
    /// A verifier with the CRLs already read from `crl` (if any); errors name the file.
    pub(crate) fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
        crl: Option<(&Path, Stamp, Crls)>,
    ) -> Result<Self, Error> {
        let (watched, crls) = match crl {
            Some((path, stamp, crls)) => (
                Some(Watched {
                    path: path.into(),
                    stamp,
                    checked: Instant::now(),
                }),
                crls,
            ),
            None => (None, Vec::new()),
        };
        let verifier = V::build(&roots, &provider, crls)
            .map_err(|e| verifier_error(watched.as_ref().map(|w| w.path.as_path()), e))?;
        Ok(Revocation {
            roots,
            provider,
            state: Mutex::new(State {
                watched,
                verifier,
                generation: 0,
            }),
        })
    }

    /// The verifier to use now and its generation. Looks at the CRL file at most once a second
    /// and reloads it when its modification time or size changed.
    ///
    /// A CRL that cannot be read or is invalid is logged and the previous one stays in force:
    /// the file is replaced atomically by `pki revoke`, so a broken one is an operator's
    /// mistake, and refusing every peer over it would stop the whole exchange.
    pub(crate) fn current(&self) -> (V, u64) {
        let mut st = lock(&self.state);
        let State {
            watched,
            verifier,
            generation,
        } = &mut *st;
        if let Some(w) = watched
            && w.checked.elapsed() >= CHECK_EVERY
        {
            w.checked = Instant::now();
            match stamp(&w.path) {
                Ok(now) if now == w.stamp => {}
                Ok(_) => {
                    let loaded = read_crls(&w.path).and_then(|(stamp, crls)| {
                        let n = crls.len();
                        V::build(&self.roots, &self.provider, crls)
                            .map(|v| (stamp, v, n))
                            .map_err(|e| verifier_error(Some(&w.path), e))
                    });
                    match loaded {
                        Ok((stamp, v, n)) => {
                            w.stamp = stamp;
                            *verifier = v;
                            *generation += 1;
                            tracing::info!(crl = %w.path.display(), lists = n, "reloaded the certificate revocation list");
                        }
                        Err(e) => {
                            // Remember the bad version so that it is reported once, not every second.
                            if let Ok(s) = stamp(&w.path) {
                                w.stamp = s;
                            }
                            tracing::error!(error = %e, "keeping the previous certificate revocation list");
                        }
                    }
                }
                Err(e) => {
                    let missing = (None, u64::MAX);
                    if w.stamp != missing {
                        w.stamp = missing;
                        tracing::error!(crl = %w.path.display(), error = %e, "cannot read the certificate revocation list; keeping the previous one");
                    }
                }
            }
        }
        (verifier.clone(), *generation)
    }
}
