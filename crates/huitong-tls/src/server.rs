//! The server side: accept TLS connections, authenticate each request's peer.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
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
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::failures::AuthFailures;
use crate::identity::peer_id_of_parsed;
use crate::revocation::{Revocation, lock, verifier_error};
use crate::time::{system_time, unix_now};
use crate::{
    AuthError, Error, Expiry, FailureReason, Loaded, PeerId, TlsFiles, own_cert_error,
    own_key_error, provider,
};

/// Handshakes in flight from all addresses together; connections beyond it are closed at once.
/// The per-address limits keep one client far below it, so only a flood from many addresses
/// reaches it.
const MAX_HANDSHAKES: usize = 4096;
/// Connections accepted in one poll of the listener before the stream yields, so that a flood
/// of connects cannot keep the accepting task from finishing handshakes.
const ACCEPTS_PER_POLL: usize = 256;
/// Between the end of a certificate's validity (revoked, expired) and the close of its
/// connections: long enough for the server to send the UNAUTHENTICATED status that ends each
/// open stream, which a close would otherwise turn into a bare "connection reset".
const CLOSE_GRACE: Duration = Duration::from_millis(300);
/// How often connections closed for being over a limit are summarised in the log.
const REPORT_EVERY: Duration = Duration::from_secs(10);
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
    limits: ConnectionLimits,
    expiry: Expiry,
}

/// Limits on the connections [`ServerTls::incoming`] accepts, against floods of idle or slow
/// sockets.
///
/// Connections over a limit are accepted and closed at once: the listener is never left
/// unpolled, so that one client's sockets cannot fill the kernel's backlog and keep every
/// other client from connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client has, from its TCP connect, to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Handshakes in flight from one IP address.
    pub pending_handshakes_per_address: usize,
    /// Connections from one IP address, in handshake or established.
    pub connections_per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits::DEFAULT
    }
}

impl ConnectionLimits {
    /// 2 s for a handshake (a TLS 1.3 handshake is one round trip), 64 handshakes in flight and
    /// 1,024 connections per address (a department's systems behind one NAT address need a
    /// few connections each: gRPC multiplexes calls over one).
    pub const DEFAULT: ConnectionLimits = ConnectionLimits {
        handshake_timeout: Duration::from_secs(2),
        pending_handshakes_per_address: 64,
        connections_per_address: 1024,
    };

    /// Refuses limits that would refuse every connection.
    pub fn check(&self) -> Result<(), Error> {
        if self.handshake_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "the handshake timeout must be more than zero".into(),
            ));
        }
        if self.pending_handshakes_per_address == 0 || self.connections_per_address == 0 {
            return Err(Error::InvalidArgument(
                "the per-address connection limits must be at least 1".into(),
            ));
        }
        Ok(())
    }
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
    revocation: Arc<Revocation<Arc<dyn ClientCertVerifier>>>,
    cache: Mutex<Cache>,
    failures: AuthFailures,
}

#[derive(Default)]
struct Cache {
    /// The revocation generation the entries were verified under.
    generation: u64,
    /// Leaf certificate DER -> identity and when to verify again.
    entries: HashMap<Vec<u8>, (PeerId, Instant)>,
}

impl ServerTls {
    /// Changes each time the revocation list is reloaded (within a quarter second of the file
    /// changing, inside a Tokio runtime): for those who record revocations as they happen.
    pub fn revocation_changes(&self) -> watch::Receiver<u64> {
        self.auth.revocation.generations()
    }

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
                revocation: Arc::new(loaded.revocation(&provider)?),
                cache: Mutex::new(Cache::default()),
                failures: AuthFailures::default(),
            }),
            id: loaded.id,
            limits: ConnectionLimits::default(),
            expiry: loaded.expiry,
        })
    }

    /// The same server with other connection limits for [`ServerTls::incoming`].
    pub fn with_limits(mut self, limits: ConnectionLimits) -> Result<ServerTls, Error> {
        limits.check()?;
        self.limits = limits;
        Ok(self)
    }

    /// The connection limits [`ServerTls::incoming`] applies.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// This server's own identity, from its certificate.
    pub fn id(&self) -> &PeerId {
        &self.id
    }

    /// When this server's certificate and its CA's stop being valid.
    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    /// Failed authentications since start, by [`FailureReason`] label (every reason listed,
    /// zero included, so that a dashboard sees the series before the first failure).
    pub fn auth_failures(&self) -> Vec<(&'static str, u64)> {
        self.auth.failures.counts()
    }

    /// Counts a refused request and logs it once per peer and reason (see
    /// [`crate::failures::LOG_EVERY`]). The guard calls this for every refusal it makes.
    pub(crate) fn record_failure<T>(
        &self,
        request: &tonic::Request<T>,
        reason: FailureReason,
        service: &str,
        detail: &dyn fmt::Display,
    ) {
        let claimed = request.peer_certs().and_then(|chain| {
            chain
                .first()
                .and_then(|leaf| crate::peer_id_of(leaf).ok())
                .map(|id| id.to_string())
        });
        let ip = request.remote_addr().map(|a| a.ip().to_canonical());
        self.auth
            .failures
            .record(ip, claimed, reason, service, detail);
    }

    /// Accepted TLS connections for `tonic::transport::Server::serve_with_incoming[_shutdown]`.
    ///
    /// Handshakes run concurrently, each in its own task with the [`ConnectionLimits`]'
    /// timeout, so one slow client cannot hold up others; connections from an address over its
    /// limits are closed as soon as they are accepted. A failed handshake is logged at debug
    /// level and skipped; it never ends the stream. Accepted sockets get `TCP_NODELAY`.
    /// Dropping the stream (as tonic does on shutdown) closes the listener and abandons
    /// handshakes in progress.
    ///
    /// A connection whose client certificate was valid is closed shortly after that certificate
    /// is revoked (the CRL file reloaded) or expires, so that nothing verified once stays open
    /// on the strength of it.
    ///
    /// The stream must be polled inside a Tokio runtime, as tonic does.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> impl Stream<Item = Result<TlsStream<Conn>, io::Error>> + Send + 'static {
        TlsIncoming {
            listener,
            acceptor: self.acceptor.clone(),
            auth: Arc::clone(&self.auth),
            limits: self.limits,
            table: Arc::default(),
            handshakes: JoinSet::new(),
            backoff: None,
            refused: Refused::default(),
        }
    }

    /// Watches a peer's certificate chain (as in [`ServerTls::authenticate_chain`]) for the
    /// moment it stops being valid: revoked, or expired. Fails if it is not valid now.
    ///
    /// For whatever stays open on the strength of one verification: a stream that delivers
    /// for as long as its subscriber's certificate is good.
    pub fn watch(&self, chain: &[CertificateDer<'_>]) -> Result<CertWatch, AuthError> {
        CertWatch::new(
            Arc::clone(&self.auth),
            chain.iter().map(|c| c.clone().into_owned()).collect(),
        )
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
        self.auth.authenticate_chain(chain)
    }
}

impl Authenticator {
    fn authenticate_chain(&self, chain: &[CertificateDer<'_>]) -> Result<PeerId, AuthError> {
        let (leaf, intermediates) = chain.split_first().ok_or(AuthError::NoCertificate)?;
        let auth = self;
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

/// Watches one peer's certificate for the moment it stops being valid; from
/// [`ServerTls::watch`].
pub struct CertWatch {
    auth: Arc<Authenticator>,
    chain: Vec<CertificateDer<'static>>,
    generations: watch::Receiver<u64>,
    /// When the certificate expires, as the runtime's clock sees it.
    expires: Option<tokio::time::Instant>,
}

impl fmt::Debug for CertWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertWatch")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Longest single wait for an expiry; the wait is renewed until the expiry is reached, so that
/// no timer is set years ahead.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);

impl CertWatch {
    fn new(
        auth: Arc<Authenticator>,
        chain: Vec<CertificateDer<'static>>,
    ) -> Result<Self, AuthError> {
        let mut generations = auth.revocation.generations();
        // Reloads before now are already reflected in the check below.
        generations.mark_unchanged();
        auth.authenticate_chain(&chain)?;
        let expires = chain
            .first()
            .and_then(|leaf| X509Certificate::from_der(leaf).ok())
            .map(|(_, c)| c.validity().not_after.timestamp() - unix_now())
            // One second past the end, so that the verifier, which counts whole seconds,
            // agrees that it has ended.
            .map(|left| {
                tokio::time::Instant::now() + Duration::from_secs(left.max(0).unsigned_abs() + 1)
            });
        Ok(CertWatch {
            auth,
            chain,
            generations,
            expires,
        })
    }

    /// Whether the certificate is valid now, against the current CRL.
    pub fn check(&self) -> Result<PeerId, AuthError> {
        self.auth.authenticate_chain(&self.chain)
    }

    /// Waits until the certificate stops being valid and says why: shortly after
    /// a revocation reaching the CRL file (the file is looked at every 250 ms), or at its expiry. Never returns while it stays valid.
    ///
    /// Cancel-safe: it may be used as a branch of `tokio::select!` in a loop.
    pub async fn ended(&mut self) -> AuthError {
        loop {
            let until = self
                .expires
                .map(|at| at.min(tokio::time::Instant::now() + LONGEST_WAIT));
            let expiry = async move {
                match until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.generations.changed() => {
                    if changed.is_err() {
                        // The server is gone; so is everything this watch guards.
                        std::future::pending::<()>().await;
                    }
                }
                () = expiry => {}
            }
            if let Err(e) = self.check() {
                return e;
            }
        }
    }
}

/// A connection the server accepted: the TCP stream, counted against its address's limits
/// until it closes, and closed shortly after its peer's certificate stops being valid.
///
/// Reads and writes fail once that happens, which makes the HTTP/2 server drop the connection.
pub struct Conn {
    tcp: TcpStream,
    /// Resolves when the connection must close; `None` for a peer without a valid certificate
    /// (whose every call is refused anyway) and once it has resolved.
    ended: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    closed: bool,
    _slot: Slot,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.tcp.peer_addr().ok())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Conn {
    fn check_open(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(ended) = &mut self.ended
            && ended.as_mut().poll(cx).is_ready()
        {
            self.ended = None;
            self.closed = true;
        }
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the peer's certificate is no longer valid",
            ));
        }
        Ok(())
    }
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check_open(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check_open(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check_open(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check_open(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.tcp.local_addr().ok(),
            remote_addr: self.tcp.peer_addr().ok(),
        }
    }
}

/// Connections per address, and handshakes in flight in all.
#[derive(Default)]
struct Table {
    by_address: HashMap<IpAddr, PerAddress>,
    pending: usize,
}

#[derive(Default)]
struct PerAddress {
    pending: usize,
    open: usize,
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Clone, Copy, Debug)]
enum OverLimit {
    PendingPerAddress,
    ConnectionsPerAddress,
    PendingTotal,
}

/// One connection's place in the [`Table`], given back when it is dropped.
struct Slot {
    table: Arc<Mutex<Table>>,
    ip: IpAddr,
    established: bool,
}

impl Slot {
    fn admit(
        table: &Arc<Mutex<Table>>,
        limits: &ConnectionLimits,
        ip: IpAddr,
    ) -> Result<Slot, OverLimit> {
        let mut t = lock(table);
        if t.pending >= MAX_HANDSHAKES {
            return Err(OverLimit::PendingTotal);
        }
        let a = t.by_address.entry(ip).or_default();
        if a.pending >= limits.pending_handshakes_per_address {
            return Err(OverLimit::PendingPerAddress);
        }
        if a.pending + a.open >= limits.connections_per_address {
            return Err(OverLimit::ConnectionsPerAddress);
        }
        a.pending += 1;
        t.pending += 1;
        Ok(Slot {
            table: Arc::clone(table),
            ip,
            established: false,
        })
    }

    /// The handshake finished: the connection no longer counts as pending.
    fn established(&mut self) {
        let mut t = lock(&self.table);
        t.pending = t.pending.saturating_sub(1);
        if let Some(a) = t.by_address.get_mut(&self.ip) {
            a.pending = a.pending.saturating_sub(1);
            a.open += 1;
        }
        self.established = true;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        if !self.established {
            t.pending = t.pending.saturating_sub(1);
        }
        if let Some(a) = t.by_address.get_mut(&self.ip) {
            if self.established {
                a.open = a.open.saturating_sub(1);
            } else {
                a.pending = a.pending.saturating_sub(1);
            }
            if a.pending == 0 && a.open == 0 {
                t.by_address.remove(&self.ip);
            }
        }
    }
}

/// Connections closed for being over a limit since the last report: counted, and reported
/// at most every [`REPORT_EVERY`], because a flood would otherwise flood the log too.
#[derive(Default)]
struct Refused {
    pending_per_address: u64,
    connections_per_address: u64,
    pending_total: u64,
    last: Option<(Instant, IpAddr)>,
}

impl Refused {
    fn count(&mut self, why: OverLimit, ip: IpAddr, limits: &ConnectionLimits) {
        match why {
            OverLimit::PendingPerAddress => self.pending_per_address += 1,
            OverLimit::ConnectionsPerAddress => self.connections_per_address += 1,
            OverLimit::PendingTotal => self.pending_total += 1,
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|(at, _)| now.duration_since(at) < REPORT_EVERY)
        {
            self.last = self.last.map(|(at, _)| (at, ip));
            return;
        }
        tracing::warn!(
            last_address = %ip,
            over_pending_handshakes_per_address = self.pending_per_address,
            over_connections_per_address = self.connections_per_address,
            over_pending_handshakes = self.pending_total,
            pending_handshakes_per_address = limits.pending_handshakes_per_address,
            connections_per_address = limits.connections_per_address,
            "closed connections over the connection limits"
        );
        *self = Refused {
            last: Some((now, ip)),
            ..Refused::default()
        };
    }
}

/// The stream behind [`ServerTls::incoming`].
///
/// Handshakes live in a `JoinSet` owned by the stream, so dropping the stream aborts them. The
/// listener is polled whenever the stream is, whatever is in flight: a connection over a limit
/// is closed, never left waiting in the kernel's backlog in front of everyone else's.
struct TlsIncoming {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    auth: Arc<Authenticator>,
    limits: ConnectionLimits,
    table: Arc<Mutex<Table>>,
    handshakes: JoinSet<Option<TlsStream<Conn>>>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
    refused: Refused,
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
    auth: Arc<Authenticator>,
    conn: Conn,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<TlsStream<Conn>> {
    let mut tls = match tokio::time::timeout(timeout, acceptor.accept(conn)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
            return None;
        }
    };
    let (conn, session) = tls.get_mut();
    conn._slot.established();
    // Only a certificate that is valid now is watched: one that never was gets every call
    // refused with the reason, which closing the connection would hide.
    let watch = session
        .peer_certificates()
        .and_then(|chain| CertWatch::new(Arc::clone(&auth), chain.to_vec()).ok());
    if let Some(mut watch) = watch {
        conn.ended = Some(Box::pin(async move {
            let reason = watch.ended().await;
            tracing::info!(%peer, %reason, "closing a connection whose certificate is no longer valid");
            tokio::time::sleep(CLOSE_GRACE).await;
        }));
    }
    Some(tls)
}

impl Stream for TlsIncoming {
    type Item = Result<TlsStream<Conn>, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = &mut this.backoff
                && sleep.as_mut().poll(cx).is_ready()
            {
                this.backoff = None;
            }
            let mut accepted = 0;
            while this.backoff.is_none() {
                if accepted == ACCEPTS_PER_POLL {
                    // More may be waiting: come back after the others have had their turn.
                    cx.waker().wake_by_ref();
                    break;
                }
                match this.listener.poll_accept(cx) {
                    Poll::Ready(Ok((tcp, peer))) => {
                        accepted += 1;
                        let ip = peer.ip().to_canonical();
                        match Slot::admit(&this.table, &this.limits, ip) {
                            Ok(slot) => {
                                if let Err(e) = tcp.set_nodelay(true) {
                                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                                }
                                let conn = Conn {
                                    tcp,
                                    ended: None,
                                    closed: false,
                                    _slot: slot,
                                };
                                this.handshakes.spawn(handshake(
                                    this.acceptor.clone(),
                                    Arc::clone(&this.auth),
                                    conn,
                                    peer,
                                    this.limits.handshake_timeout,
                                ));
                            }
                            // Dropping the socket closes it.
                            Err(why) => this.refused.count(why, ip, &this.limits),
                        }
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

#[cfg(test)]
mod tests;
