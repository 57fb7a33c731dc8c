//! A certificate verifier that follows the CRL file on disk.
//!
//! `huitong pki revoke` replaces the CRL file atomically; long-running servers (and the broker
//! as a client of adapters) notice within [`CHECK_EVERY`] and rebuild their verifier, so a
//! revocation takes effect without a restart. Every reload is also published as a new
//! generation on a watch channel ([`Revocation::generations`]), so that what was verified once
//! and stays open (a connection, a subscription stream) is checked again at once, not at its
//! next request.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls_pki_types::CertificateRevocationListDer;
use tokio::sync::watch;

use crate::{Error, files};

/// How often the CRL file's modification time is looked at, at most. A quarter of the one
/// second within which a revocation must reach open streams, leaving the rest for re-verifying
/// and ending them.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(250);

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
    /// The generation after each reload, for those who hold something verified open.
    published: watch::Sender<u64>,
    /// Whether a task already looks at the CRL file on its own (see [`Revocation::generations`]).
    watching: AtomicBool,
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
            published: watch::Sender::new(0),
            watching: AtomicBool::new(false),
        })
    }

    /// The revocation generation, changing on every reload of the CRL file.
    ///
    /// Without requests nobody would look at the file, so the first call (inside a Tokio
    /// runtime) starts a task that looks every [`CHECK_EVERY`]; it ends when the `Revocation`
    /// is dropped. Outside a runtime nothing is started and the generation changes only when
    /// requests make [`Revocation::current`] reload the file.
    pub(crate) fn generations(self: &Arc<Self>) -> watch::Receiver<u64> {
        let rx = self.published.subscribe();
        if let Ok(runtime) = tokio::runtime::Handle::try_current()
            && !self.watching.swap(true, Ordering::AcqRel)
        {
            runtime.spawn(watch_file(Arc::downgrade(self)));
        }
        rx
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
                            self.published.send_replace(*generation);
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

/// Looks at the CRL file every [`CHECK_EVERY`] for as long as its `Revocation` lives.
async fn watch_file<V: Build>(revocation: Weak<Revocation<V>>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(r) = revocation.upgrade() else {
            return;
        };
        // `current` does the work: stat the file, reload it if it changed, publish.
        drop(r.current());
    }
}
