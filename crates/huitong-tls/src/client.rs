//! The client side: dial a server and check that it is the party we meant to reach.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::revocation::{Revocation, verifier_error};
use crate::{
    Error, Loaded, PeerId, Role, TlsFiles, format_utc, own_cert_error, own_key_error, peer_id_of,
    provider,
};

/// Which server identity a connection must reach.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// Exactly this party, e.g. the adapter of `public-security`.
    Exactly(PeerId),
    /// Any department's party in this role, in our own trust domain, e.g. the broker.
    Role(Role),
}

impl Expect {
    fn matches(&self, got: &PeerId, trust_domain: &str) -> bool {
        match self {
            Expect::Exactly(want) => got == want,
            Expect::Role(role) => got.role == *role && got.trust_domain == trust_domain,
        }
    }

    fn describe(&self, trust_domain: &str) -> String {
        match self {
            Expect::Exactly(want) => want.uri(),
            Expect::Role(role) => format!("spiffe://{trust_domain}/dept/<any>/{role}"),
        }
    }
}

/// TLS for a Huitong client (consumer, admin, auditor, and the broker calling adapters).
///
/// TLS 1.3 only, ALPN `h2`, presents our certificate, and verifies the server: its chain to the
/// exchange CA (and the CRL, reloaded when the file changes), its name against the host dialled,
/// and its identity against an [`Expect`]ation.
#[derive(Clone)]
pub struct ClientTls {
    base: Arc<ClientConfig>,
    shared: Arc<Shared>,
    id: PeerId,
}

struct Shared {
    provider: Arc<CryptoProvider>,
    trust_domain: String,
    revocation: Revocation<Arc<WebPkiServerVerifier>>,
    /// The not-after of each server's certificate as last verified: so that the broker can
    /// tell its operator which adapter's certificate runs out first.
    peer_expiry: std::sync::Mutex<std::collections::HashMap<PeerId, i64>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("id", &self.id)
            .field("revocation", &self.shared.revocation)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// The servers this client verified, each with its certificate's not-after (Unix seconds)
    /// as of the last handshake.
    pub fn peer_expiries(&self) -> Vec<(PeerId, i64)> {
        crate::revocation::lock(&self.shared.peer_expiry)
            .iter()
            .map(|(id, t)| (id.clone(), *t))
            .collect()
    }

    /// Reads the CA, our certificate and key, and the CRL.
    ///
    /// Refuses a certificate that no server would accept: not issued by the CA, expired,
    /// revoked, or without a Huitong identity.
    pub fn load(files: &TlsFiles) -> Result<ClientTls, Error> {
        let provider = provider();
        let loaded = Loaded::read(files)?;

        if let Some((leaf, intermediates)) = loaded.chain.split_first() {
            WebPkiClientVerifier::builder_with_provider(loaded.roots.clone(), provider.clone())
                .with_crls(loaded.crls())
                .build()
                .map_err(|e| verifier_error(files.crl.as_deref(), e))?
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .map_err(|e| own_cert_error(files, &e, leaf))?;
        }

        let revocation: Revocation<Arc<WebPkiServerVerifier>> = loaded.revocation(&provider)?;
        let (verifier, _) = revocation.current();
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::Config(e.to_string()))?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(loaded.chain.clone(), loaded.key.clone_key())
            .map_err(|e| own_key_error(files, e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        // A resumed TLS 1.3 session skips the server's certificate, and with it the CRL and the
        // identity check of whichever connector resumes it. gRPC connections are long-lived, so
        // a full handshake per connection costs little.
        config.resumption = Resumption::disabled();

        Ok(ClientTls {
            base: Arc::new(config),
            shared: Arc::new(Shared {
                provider,
                trust_domain: loaded.id.trust_domain.clone(),
                revocation,
                peer_expiry: std::sync::Mutex::default(),
            }),
            id: loaded.id,
        })
    }

    /// Our own identity, from our certificate.
    pub fn id(&self) -> &PeerId {
        &self.id
    }

    /// A connector for `tonic::transport::Endpoint::connect_with_connector[_lazy]` that reaches
    /// only a server whose identity matches `expect`.
    ///
    /// **Use an `http://host:port` endpoint URI** (see [`endpoint`]). The connector does TLS
    /// itself; tonic, given an `https://` URI and a custom connector, either fails ("Connecting
    /// to HTTPS without TLS enabled") or, with `Endpoint::new`, wraps a second TLS layer around
    /// ours. The scheme only reaches the server as the `:scheme` pseudo-header, which gRPC
    /// servers ignore; the connection is TLS either way.
    ///
    /// Bound connection attempts with `Endpoint::connect_timeout`: it covers dialling and the
    /// TLS handshake together.
    ///
    /// The TLS server name is the URI's host (DNS name or IP address), checked against the
    /// server certificate's DNS/IP names. Failures are [`Error`]s whose message says what the
    /// server presented and what was expected; tonic reports them as UNAVAILABLE with that
    /// message (lazy channels) or as the source of its transport error (`connect`).
    pub fn connector(&self, expect: Expect) -> Connector {
        let mut config = (*self.base).clone();
        let description = expect.describe(&self.shared.trust_domain);
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(ExpectVerifier {
                shared: self.shared.clone(),
                expect,
            }));
        Connector {
            tls: TlsConnector::from(Arc::new(config)),
            expect: description.into(),
            server_name: None,
        }
    }
}

impl Connector {
    /// Verifies the server's certificate for `name` rather than the host dialled: for a
    /// probe that dials 127.0.0.1 or a pod IP and must check the name clients use.
    pub fn with_server_name(mut self, name: &str) -> Result<Connector, Error> {
        let parsed = ServerName::try_from(name.to_owned()).map_err(|_| Error::InvalidUri {
            uri: name.chars().take(200).collect(),
            reason: "the server name is neither a DNS name nor an IP address".into(),
        })?;
        self.server_name = Some(parsed);
        Ok(self)
    }
}

/// An endpoint for `addr` (`host:port`, `http://host:port` or `https://host:port`) in the form
/// [`ClientTls::connector`] needs: scheme `http`, because the connector adds TLS itself.
pub fn endpoint(addr: &str) -> Result<tonic::transport::Endpoint, Error> {
    let authority = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr)
        .trim_end_matches('/');
    let bad = |reason: &str| Error::InvalidUri {
        uri: addr.chars().take(200).collect(),
        reason: reason.into(),
    };
    let uri: Uri = format!("http://{authority}")
        .parse()
        .map_err(|_| bad("write it as host:port, e.g. broker.example:7443"))?;
    if uri.path() != "/" || uri.host().is_none() {
        return Err(bad("write it as host:port, e.g. broker.example:7443"));
    }
    if uri.port_u16().is_none() {
        return Err(bad("it has no port; write host:port"));
    }
    Ok(tonic::transport::Endpoint::from(uri))
}

/// The server certificate check for one expectation: the WebPKI check (chain, name, validity,
/// current CRL), then the identity.
struct ExpectVerifier {
    shared: Arc<Shared>,
    expect: Expect,
}

impl fmt::Debug for ExpectVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectVerifier")
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for ExpectVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (webpki, _) = self.shared.revocation.current();
        webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let want = || self.expect.describe(&self.shared.trust_domain);
        let got = peer_id_of(end_entity).map_err(|e| {
            rustls::Error::General(format!(
                "the server at {} is not a Huitong party ({e}); expected {}",
                server_name.to_str(),
                want()
            ))
        })?;
        if !self.expect.matches(&got, &self.shared.trust_domain) {
            // `General` carries the text through tokio-rustls to the caller unchanged.
            return Err(rustls::Error::General(format!(
                "the server at {} presented the identity {got}, but {} was expected",
                server_name.to_str(),
                want()
            )));
        }
        if let Some(not_after) = crate::time::not_after(end_entity) {
            crate::revocation::lock(&self.shared.peer_expiry).insert(got, not_after);
        }
        Ok(ServerCertVerified::assertion())
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
            &self.shared.provider.signature_verification_algorithms,
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
            &self.shared.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.shared
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Dials TCP and does the TLS handshake for a tonic channel; see [`ClientTls::connector`].
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    /// The expectation, as shown in errors and `Debug`.
    expect: Arc<str>,
    /// The name to verify instead of the URI's host.
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let fixed_name = self.server_name.clone();
        Box::pin(async move {
            let (host, port) = target(&uri)?;
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let server_name = match fixed_name {
                Some(name) => name,
                None => ServerName::try_from(host.clone()).map_err(|_| Error::InvalidUri {
                    uri: uri.to_string(),
                    reason: "its host is neither a DNS name nor an IP address".into(),
                })?,
            };
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|source| Error::Connect {
                    addr: addr.clone(),
                    source,
                })?;
            // Without it, small gRPC frames wait for Nagle's algorithm; only a latency cost, so
            // a failure is not worth refusing the connection over.
            let _ = tcp.set_nodelay(true);
            let stream = tls
                .connect(server_name, tcp)
                .await
                .map_err(|e| handshake_error(addr, &e))?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// The host (without IPv6 brackets) and port to dial.
fn target(uri: &Uri) -> Result<(String, u16), Error> {
    let bad = |reason: &str| Error::InvalidUri {
        uri: uri.to_string(),
        reason: reason.into(),
    };
    match uri.scheme_str() {
        None | Some("http") => {}
        Some("https") => {
            return Err(bad(
                "give tonic an http:// endpoint (see huitong_tls::endpoint): this connector adds \
                 TLS itself, and tonic refuses or doubles TLS for https:// with a custom connector",
            ));
        }
        Some(_) => return Err(bad("only http:// endpoints are supported")),
    }
    let host = uri.host().ok_or_else(|| bad("it has no host"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri
        .port_u16()
        .ok_or_else(|| bad("it has no port; write host:port"))?;
    Ok((host.to_owned(), port))
}

/// Turns a failed handshake into a message about the server, not about TLS internals.
fn handshake_error(server: String, e: &io::Error) -> Error {
    use CertificateError as C;
    let reason = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::General(msg)) => msg.clone(),
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            C::UnknownIssuer | C::BadSignature => {
                "the server's certificate was not issued by this exchange's CA".into()
            }
            C::ExpiredContext { not_after, .. } => format!(
                "the server's certificate expired on {}",
                format_utc(crate::time::system_time(
                    i64::try_from(not_after.as_secs()).unwrap_or(i64::MAX)
                ))
            ),
            C::Expired => "the server's certificate has expired".into(),
            C::Revoked => "the server's certificate has been revoked".into(),
            c => format!("the server's certificate is refused: {c}"),
        },
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the server ended the handshake with the TLS alert {alert:?}")
        }
        Some(other) => other.to_string(),
        None => e.to_string(),
    };
    Error::Handshake { server, reason }
}
