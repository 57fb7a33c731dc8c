//! The server side: accept TLS connections, authenticate each request's peer.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, IpAddr as PkiIpAddr, ServerName, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::peer_id_of_parsed;
use crate::revocation::{Revocation, lock, verifier_error};
use crate::time::{system_time, unix_now};
use crate::{AuthError, Error, Loaded, PeerId, TlsFiles, own_cert_error, own_key_error, provider};

/// A slow or silent client gets this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; beyond this the listener is not polled, and new connections
/// wait in the kernel's backlog rather than in memory.
const MAX_HANDSHAKES: usize = 1024;
/// Pause after an accept error such as "too many open files", which would otherwise repeat
/// at once in a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a verified certificate is trusted without verifying it again.
const CACHE_FOR: Duration = Duration::from_secs(30);
/// Verified certificates remembered at most; beyond this, stale ones are dropped, then all.
const CACHE_MAX: usize = 4096;

/// TLS for a Huitong server (broker, adapter): TLS 1.3 only, ALPN `h2`.
///
/// The handshake *requests* a client certificate but does not *require* a valid one: it
/// accepts any certificate chain whose key the client proves it holds. Each request is then
/// checked with [`ServerTls::authenticate`], so that a client with no certificate, or one from
/// another CA, expired or revoked, gets a gRPC UNAUTHENTICATED status saying exactly that,
/// instead of a TLS alert its gRPC library reports as "connection reset". No request is served
/// on the strength of the handshake alone: call `authenticate` for every request (an
/// interceptor or a tower layer).
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    auth: Arc<Authenticator>,
    id: PeerId,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("id", &self.id)
            .field("revocation", &self.auth.revocation)
            .finish_non_exhaustive()
    }
}

struct Authenticator {
    trust_domain: String,
    revocation: Revocation<Arc<dyn ClientCertVerifier>>,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    /// The revocation generation the entries were verified under.
    generation: u64,
    /// Leaf certificate DER -> identity and when to verify again.
    entries: HashMap<Vec<u8>, (PeerId, Instant)>,
}

impl ServerTls {
    /// Reads the CA, our certificate and key, and the CRL.
    ///
    /// Refuses a certificate that would make the server useless: one not issued by the CA, expired,
    /// revoked, without a Huitong identity, or without a DNS name or IP address to be verified by.
    pub fn load(files: &TlsFiles) -> Result<ServerTls, Error> {
        let provider = provider();
        let loaded = Loaded::read(files)?;
        check_own_server_cert(files, &loaded, &provider)?;

        let hints = loaded.roots.subjects();
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::Config(e.to_string()))?
            .with_client_cert_verifier(Arc::new(RequestClientCert {
                provider: provider.clone(),
                hints,
            }))
            .with_single_cert(loaded.chain.clone(), loaded.key.clone_key())
            .map_err(|e| own_key_error(files, e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];

        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            auth: Arc::new(Authenticator {
                trust_domain: loaded.id.trust_domain.clone(),
                revocation: loaded.revocation(&provider)?,
                cache: Mutex::new(Cache::default()),
            }),
            id: loaded.id,
        })
    }

    /// This server's own identity, from its certificate.
    pub fn id(&self) -> &PeerId {
        &self.id
    }

    /// Accepted TLS connections for `tonic::transport::Server::serve_with_incoming[_shutdown]`.
    ///
    /// Handshakes run concurrently, each in its own task with a 10 s timeout, so one slow client
    /// cannot hold up others. A failed handshake is logged at debug level and skipped; it never
    /// ends the stream. Accepted sockets get `TCP_NODELAY`. Dropping the stream (as tonic does on
    /// shutdown) closes the listener and abandons handshakes in progress.
    ///
    /// The stream must be polled inside a Tokio runtime, as tonic does.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> + Send + 'static {
        TlsIncoming {
            listener,
            acceptor: self.acceptor.clone(),
            handshakes: JoinSet::new(),
            backoff: None,
        }
    }

    /// The verified identity of the peer that sent `request`.
    ///
    /// Verifies the peer's certificate chain (from [`tonic::Request::peer_certs`], present when
    /// the server was fed by [`ServerTls::incoming`]) against the CA, the validity period and the
    /// current CRL, and requires a Huitong identity in this server's trust domain. It does not
    /// check the role: what each identity may do is the caller's decision.
    ///
    /// Results are cached per certificate for up to 30 s (never past the certificate's expiry);
    /// the cache is dropped whenever the CRL file is reloaded, which happens within a second of
    /// `huitong pki revoke`.
    pub fn authenticate<T>(&self, request: &tonic::Request<T>) -> Result<PeerId, AuthError> {
        let certs = request.peer_certs().ok_or(AuthError::NoCertificate)?;
        self.authenticate_chain(&certs)
    }

    /// As [`ServerTls::authenticate`], for a chain obtained some other way: the peer's
    /// certificate first, then any intermediates.
    pub fn authenticate_chain(&self, chain: &[CertificateDer<'_>]) -> Result<PeerId, AuthError> {
        let (leaf, intermediates) = chain.split_first().ok_or(AuthError::NoCertificate)?;
        let auth = &self.auth;
        let (verifier, generation) = auth.revocation.current();
        let now = Instant::now();
        {
            let mut cache = lock(&auth.cache);
            if cache.generation != generation {
                cache.entries.clear();
                cache.generation = generation;
            }
            if let Some((id, until)) = cache.entries.get(leaf.as_ref())
                && *until > now
            {
                return Ok(id.clone());
            }
        }

        // Verification runs without the lock: it is the expensive part, and requests from
        // different peers need not wait for each other.
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| auth_error(e, leaf))?;
        let (_, cert) = X509Certificate::from_der(leaf)
            .map_err(|_| AuthError::Other("your certificate cannot be parsed".into()))?;
        let id = peer_id_of_parsed(&cert).map_err(|e| match e {
            Error::NoIdentity(reason) => AuthError::NoIdentity(reason),
            e => AuthError::NoIdentity(e.to_string()),
        })?;
        if id.trust_domain != auth.trust_domain {
            return Err(AuthError::WrongTrustDomain {
                got: id.trust_domain,
                want: auth.trust_domain.clone(),
            });
        }

        let remaining = cert.validity().not_after.timestamp() - unix_now();
        let until = now + CACHE_FOR.min(Duration::from_secs(remaining.max(0).unsigned_abs()));
        let mut cache = lock(&auth.cache);
        // A CRL reload during verification made this result stale: do not remember it.
        if cache.generation == generation {
            if cache.entries.len() >= CACHE_MAX {
                cache.entries.retain(|_, (_, until)| *until > now);
                if cache.entries.len() >= CACHE_MAX {
                    cache.entries.clear();
                }
            }
            cache.entries.insert(leaf.to_vec(), (id.clone(), until));
        }
        Ok(id)
    }
}

/// Maps a rustls verification failure of a peer's certificate to what the peer is told.
pub(crate) fn auth_error(e: rustls::Error, leaf: &[u8]) -> AuthError {
    use CertificateError as C;
    let validity = || {
        X509Certificate::from_der(leaf).ok().map(|(_, c)| {
            (
                system_time(c.validity().not_before.timestamp()),
                system_time(c.validity().not_after.timestamp()),
            )
        })
    };
    let secs = |t: UnixTime| system_time(i64::try_from(t.as_secs()).unwrap_or(i64::MAX));
    let rustls::Error::InvalidCertificate(c) = e else {
        return AuthError::Other(e.to_string());
    };
    match c {
        C::ExpiredContext { not_after, .. } => AuthError::Expired {
            not_after: secs(not_after),
        },
        C::NotValidYetContext { not_before, .. } => AuthError::NotYetValid {
            not_before: secs(not_before),
        },
        C::Expired => match validity() {
            Some((_, not_after)) => AuthError::Expired { not_after },
            None => AuthError::Other("your certificate has expired".into()),
        },
        C::NotValidYet => match validity() {
            Some((not_before, _)) => AuthError::NotYetValid { not_before },
            None => AuthError::Other("your certificate is not valid yet".into()),
        },
        C::Revoked => AuthError::Revoked,
        // A bad signature on the chain means a CA with our CA's name but another key signed it:
        // for the peer that is the same as an unknown issuer.
        C::UnknownIssuer | C::BadSignature => AuthError::UnknownIssuer,
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => AuthError::Other(
            "it is not meant for TLS clients (its extended key usage lacks clientAuth)".into(),
        ),
        C::BadEncoding => AuthError::Other("it is malformed".into()),
        C::UnknownRevocationStatus => {
            AuthError::Other("its revocation status is unknown; ask the exchange operator".into())
        }
        c => AuthError::Other(c.to_string()),
    }
}

/// Checks our own certificate as a client would check it, for the first host name it names.
fn check_own_server_cert(
    files: &TlsFiles,
    loaded: &Loaded,
    provider: &Arc<CryptoProvider>,
) -> Result<(), Error> {
    let Some((leaf, intermediates)) = loaded.chain.split_first() else {
        return Err(Error::file(&files.cert, "no certificate"));
    };
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|_| Error::file(&files.cert, "the certificate cannot be parsed"))?;
    let name = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                GeneralName::DNSName(d) => ServerName::try_from(d.to_string()).ok(),
                GeneralName::IPAddress(b) => ip_name(b),
                _ => None,
            })
        })
        .ok_or_else(|| {
            Error::file(
                &files.cert,
                "it names no DNS name or IP address, so no client can verify it as a server; \
                 issue it with the hosts this server is reached at",
            )
        })?;
    let verifier =
        WebPkiServerVerifier::builder_with_provider(loaded.roots.clone(), provider.clone())
            .with_crls(loaded.crls())
            .build()
            .map_err(|e| verifier_error(files.crl.as_deref(), e))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map_err(|e| own_cert_error(files, &e, leaf))?;
    Ok(())
}

fn ip_name(bytes: &[u8]) -> Option<ServerName<'static>> {
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(ServerName::IpAddress(PkiIpAddr::from(ip)))
}

/// The handshake-time client certificate check: asks for a certificate, accepts any chain, but
/// verifies the handshake signature so that the client proves it holds the certificate's key.
/// The chain itself is verified per request, where a refusal can be explained.
#[derive(Debug)]
struct RequestClientCert {
    provider: Arc<CryptoProvider>,
    hints: Vec<DistinguishedName>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The stream behind [`ServerTls::incoming`].
///
/// Handshakes live in a `JoinSet` owned by the stream, so dropping the stream aborts them, and
/// the listener is polled only while fewer than [`MAX_HANDSHAKES`] are in flight.
struct TlsIncoming {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<TlsStream<TcpStream>>>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Errors that concern one connection only; the listener itself is fine.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out");
            None
        }
    }
}

impl Stream for TlsIncoming {
    type Item = Result<TlsStream<TcpStream>, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = &mut this.backoff
                && sleep.as_mut().poll(cx).is_ready()
            {
                this.backoff = None;
            }
            while this.backoff.is_none() && this.handshakes.len() < MAX_HANDSHAKES {
                match this.listener.poll_accept(cx) {
                    Poll::Ready(Ok((tcp, peer))) => {
                        this.handshakes
                            .spawn(handshake(this.acceptor.clone(), tcp, peer));
                    }
                    Poll::Ready(Err(e)) if per_connection(&e) => {
                        tracing::debug!(error = %e, "an incoming connection failed before accept");
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::warn!(error = %e, pause = ?ACCEPT_BACKOFF, "accepting connections failed; pausing");
                        let mut sleep = Box::pin(tokio::time::sleep(ACCEPT_BACKOFF));
                        // Polled once so that it wakes this task when the pause is over.
                        if sleep.as_mut().poll(cx).is_pending() {
                            this.backoff = Some(sleep);
                        }
                    }
                    Poll::Pending => break,
                }
            }
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(tls)))) => return Poll::Ready(Some(Ok(tls))),
                Poll::Ready(Some(Ok(None))) => {}
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "a TLS handshake task failed");
                }
                // Nothing in flight: the listener (or the pause) will wake us.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}
