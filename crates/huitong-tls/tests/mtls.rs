//! Mutual TLS over real loopback connections and real gRPC (the standard health service),
//! with certificates from `pki`.

// A panic in a test is a failed test; the helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use huitong_core::DeptId;
use huitong_tls::pki::{self, IssueOptions};
use huitong_tls::{
    ClientTls, Expect, PeerId, Role, ServerTls, TlsFiles, endpoint, format_utc, guard,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const TD: &str = "gov.example";

/// A directory under the system temp dir, removed when the test ends (also on failure).
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("huitong-tls-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn dept(s: &str) -> DeptId {
    DeptId::new(s).unwrap()
}

fn issue(dir: &Path, d: &str, role: Role) -> TlsFiles {
    pki::issue(dir, &IssueOptions::new(dept(d), role)).unwrap();
    TlsFiles::from_pki_dir(dir, &dept(d), role)
}

fn id(d: &str, role: Role) -> PeerId {
    PeerId::new(TD, dept(d), role).unwrap()
}

/// What the server saw: each successfully authenticated peer.
type Seen = Arc<Mutex<Vec<PeerId>>>;

/// Serves grpc.health.v1 on 127.0.0.1 behind `ServerTls::authenticate`.
async fn serve(tls: ServerTls) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let auth = tls.clone();
    let log = seen.clone();
    let svc = InterceptedService::new(health, move |req: tonic::Request<()>| {
        let peer = auth.authenticate(&req)?;
        log.lock().unwrap().push(peer);
        Ok(req)
    });
    let incoming = tls.incoming(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, seen)
}

fn channel(client: &ClientTls, expect: Expect, host: &str, addr: SocketAddr) -> Channel {
    endpoint(&format!("{host}:{}", addr.port()))
        .unwrap()
        .connect_with_connector_lazy(client.connector(expect))
}

async fn check(channel: Channel) -> Result<(), tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
}

/// The whole error chain as one string, as a caller would log it.
fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

/// A plain rustls client that trusts `ca` and presents `identity` if given, bypassing
/// `ClientTls`'s own checks, to send the server certificates `ClientTls` would refuse to load.
#[derive(Clone)]
struct RawConnector(TlsConnector);

impl RawConnector {
    fn new(ca: &Path, identity: Option<(&Path, &Path)>) -> RawConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        RawConnector(TlsConnector::from(Arc::new(config)))
    }

    fn channel(&self, addr: SocketAddr) -> Channel {
        endpoint(&format!("127.0.0.1:{}", addr.port()))
            .unwrap()
            .connect_with_connector_lazy(self.clone())
    }
}

impl tower_service::Service<http::Uri> for RawConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.0.clone();
        Box::pin(async move {
            let port = uri.port_u16().unwrap();
            let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
            let name = ServerName::try_from("127.0.0.1").unwrap();
            Ok(hyper_util::rt::TokioIo::new(tls.connect(name, tcp).await?))
        })
    }
}

/// A CA with a broker serving health checks behind authentication.
struct Exchange {
    dir: TempDir,
    addr: SocketAddr,
    seen: Seen,
}

async fn exchange(name: &str) -> Exchange {
    let dir = temp_dir(name);
    pki::init(&dir, TD).unwrap();
    let server = ServerTls::load(&issue(&dir, "exchange-office", Role::Broker)).unwrap();
    assert_eq!(server.id(), &id("exchange-office", Role::Broker));
    let (addr, seen) = serve(server).await;
    Exchange { dir, addr, seen }
}

#[tokio::test]
async fn a_valid_client_is_authenticated_as_its_certificate_says() {
    let ex = exchange("valid").await;
    let client = ClientTls::load(&issue(&ex.dir, "civil-affairs", Role::Consumer)).unwrap();
    let ch = channel(&client, Expect::Role(Role::Broker), "127.0.0.1", ex.addr);
    check(ch.clone()).await.unwrap();
    check(ch).await.unwrap();
    assert_eq!(
        *ex.seen.lock().unwrap(),
        vec![id("civil-affairs", Role::Consumer); 2]
    );

    // Eager connect works too, and by DNS name.
    let ch = endpoint(&format!("localhost:{}", ex.addr.port()))
        .unwrap()
        .connect_with_connector(
            client.connector(Expect::Exactly(id("exchange-office", Role::Broker))),
        )
        .await
        .unwrap();
    check(ch).await.unwrap();
}

#[tokio::test]
async fn no_client_certificate_is_unauthenticated() {
    let ex = exchange("no-cert").await;
    let raw = RawConnector::new(&ex.dir.join(pki::CA_CERT), None);
    let status = check(raw.channel(ex.addr)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status
            .message()
            .contains("present a client certificate issued by this exchange's CA"),
        "{status:?}"
    );
    assert!(ex.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_an_unknown_issuer() {
    let ex = exchange("other-ca").await;
    let other = temp_dir("other-ca-2");
    pki::init(&other, TD).unwrap();
    let foreign = issue(&other, "civil-affairs", Role::Consumer);
    let raw = RawConnector::new(
        &ex.dir.join(pki::CA_CERT),
        Some((&foreign.cert, &foreign.key)),
    );
    let status = check(raw.channel(ex.addr)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status
            .message()
            .contains("not issued by this exchange's CA"),
        "{status:?}"
    );

    // `ClientTls` itself refuses to load a certificate its CA did not issue.
    let mixed = TlsFiles {
        ca: ex.dir.join(pki::CA_CERT),
        ..foreign
    };
    let err = ClientTls::load(&mixed).unwrap_err();
    assert!(err.to_string().contains("not issued by the CA"), "{err}");
}

#[tokio::test]
async fn an_expired_certificate_is_refused_with_its_date() {
    let ex = exchange("expired").await;
    let issued = pki::issue(
        &ex.dir,
        &IssueOptions {
            valid_days: 1,
            not_before_days_ago: 10,
            ..IssueOptions::new(dept("civil-affairs"), Role::Consumer)
        },
    )
    .unwrap();
    let der = CertificateDer::from_pem_file(&issued.cert).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let not_after = std::time::UNIX_EPOCH
        + Duration::from_secs(cert.validity().not_after.timestamp().try_into().unwrap());
    let date = format_utc(not_after);

    let raw = RawConnector::new(
        &ex.dir.join(pki::CA_CERT),
        Some((&issued.cert, &issued.key)),
    );
    let status = check(raw.channel(ex.addr)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("your certificate expired on {date}")),
        "{status:?} / {date}"
    );
    assert!(status.message().contains("ask the exchange operator"));

    let files = TlsFiles::from_pki_dir(&ex.dir, &dept("civil-affairs"), Role::Consumer);
    let err = ClientTls::load(&files).unwrap_err();
    assert!(err.to_string().contains(&date), "{err}");
}

#[tokio::test]
async fn revocation_takes_effect_without_a_restart() {
    let ex = exchange("revoked").await;
    let files = issue(&ex.dir, "civil-affairs", Role::Consumer);
    let client = ClientTls::load(&files).unwrap();
    let ch = channel(&client, Expect::Role(Role::Broker), "127.0.0.1", ex.addr);
    check(ch.clone()).await.unwrap();

    // Another party, not revoked, stays in.
    let other = ClientTls::load(&issue(&ex.dir, "health", Role::Consumer)).unwrap();
    let other_ch = channel(&other, Expect::Role(Role::Broker), "127.0.0.1", ex.addr);
    check(other_ch.clone()).await.unwrap();

    pki::revoke(&ex.dir, &files.cert, "key-compromise").unwrap();

    // The same channel, whose handshake happened before the revocation: refused as soon as the
    // server has looked at the CRL file again (every 250 ms).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        match check(ch.clone()).await {
            Err(status) if status.code() == Code::Unauthenticated => break status,
            other => {
                assert!(std::time::Instant::now() < deadline, "still {other:?}");
                tokio::task::yield_now().await;
            }
        }
    };
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status
            .message()
            .contains("your certificate has been revoked"),
        "{status:?}"
    );
    // A new connection.
    let status = check(channel(
        &client,
        Expect::Role(Role::Broker),
        "127.0.0.1",
        ex.addr,
    ))
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    check(other_ch).await.unwrap();

    // A client loaded after the revocation knows at once.
    let err = ClientTls::load(&files).unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[tokio::test]
async fn the_client_refuses_a_server_with_the_wrong_identity() {
    let dir = temp_dir("identity");
    pki::init(&dir, TD).unwrap();
    let server = ServerTls::load(&issue(&dir, "tax", Role::Adapter)).unwrap();
    let (addr, seen) = serve(server).await;
    let broker = ClientTls::load(&issue(&dir, "exchange-office", Role::Broker)).unwrap();

    let want = id("public-security", Role::Adapter);
    let got = id("tax", Role::Adapter);

    // Lazy channel: the reason arrives as an UNAVAILABLE status.
    let ch = channel(&broker, Expect::Exactly(want.clone()), "127.0.0.1", addr);
    let status = check(ch).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let msg = status.message();
    assert!(
        msg.contains(&want.uri()) && msg.contains(&got.uri()),
        "{msg}"
    );

    // Eager connect: the reason is in the error chain.
    let err = endpoint(&format!("127.0.0.1:{}", addr.port()))
        .unwrap()
        .connect_with_connector(broker.connector(Expect::Exactly(want.clone())))
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains(&want.uri()) && text.contains(&got.uri()),
        "{text}"
    );

    // A role expectation is checked too.
    let ch = channel(&broker, Expect::Role(Role::Broker), "127.0.0.1", addr);
    let status = check(ch).await.unwrap_err();
    assert!(
        status.message().contains("/dept/<any>/broker"),
        "{status:?}"
    );

    // The server never saw a request.
    assert!(seen.lock().unwrap().is_empty());

    // And the right expectation works.
    check(channel(&broker, Expect::Exactly(got), "127.0.0.1", addr))
        .await
        .unwrap();
    check(channel(
        &broker,
        Expect::Role(Role::Adapter),
        "localhost",
        addr,
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn the_client_refuses_a_server_certificate_for_another_name() {
    let dir = temp_dir("name");
    pki::init(&dir, TD).unwrap();
    pki::issue(
        &dir,
        &IssueOptions {
            hosts: vec!["adapter.tax.invalid".into()],
            ..IssueOptions::new(dept("tax"), Role::Adapter)
        },
    )
    .unwrap();
    let server =
        ServerTls::load(&TlsFiles::from_pki_dir(&dir, &dept("tax"), Role::Adapter)).unwrap();
    let (addr, _) = serve(server).await;
    let broker = ClientTls::load(&issue(&dir, "exchange-office", Role::Broker)).unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let ch = channel(&broker, Expect::Role(Role::Adapter), host, addr);
        let status = check(ch).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("not valid for name")
                && status.message().contains("adapter.tax.invalid"),
            "{status:?}"
        );
    }
}

#[tokio::test]
async fn a_revoked_certificates_open_connection_is_closed() {
    let ex = exchange("revoked-open").await;
    let files = issue(&ex.dir, "civil-affairs", Role::Consumer);
    let client = ClientTls::load(&files).unwrap();
    let other = ClientTls::load(&issue(&ex.dir, "health", Role::Consumer)).unwrap();
    // Long-lived streams on connections whose certificates were valid when they opened.
    let watch = |tls: &ClientTls| {
        let ch = channel(tls, Expect::Role(Role::Broker), "127.0.0.1", ex.addr);
        async move {
            let mut s = HealthClient::new(ch)
                .watch(HealthCheckRequest::default())
                .await
                .unwrap()
                .into_inner();
            assert!(s.message().await.unwrap().is_some());
            s
        }
    };
    let mut revoked = watch(&client).await;
    let mut kept = watch(&other).await;

    pki::revoke(&ex.dir, &files.cert, "key-compromise").unwrap();
    let started = std::time::Instant::now();
    // The health service knows nothing of certificates: only the closed connection ends this.
    let ended = tokio::time::timeout(Duration::from_secs(5), revoked.message())
        .await
        .expect("the revoked certificate's connection was still open after 5 s");
    assert!(!matches!(ended, Ok(Some(_))), "{ended:?}");
    eprintln!(
        "connection closed {:?} after the revocation",
        started.elapsed()
    );
    // The other party's stream is still open.
    assert!(
        tokio::time::timeout(Duration::ZERO, kept.message())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_silent_client_does_not_block_others() {
    let ex = exchange("slow").await;
    // Connects and never says a word: its handshake waits in its own task.
    let _silent = TcpStream::connect(ex.addr).await.unwrap();
    let _half = {
        let mut s = TcpStream::connect(ex.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"\x16\x03\x01")
            .await
            .unwrap();
        s
    };
    let client = ClientTls::load(&issue(&ex.dir, "civil-affairs", Role::Consumer)).unwrap();
    let ch = channel(&client, Expect::Role(Role::Broker), "127.0.0.1", ex.addr);
    tokio::time::timeout(Duration::from_secs(5), check(ch))
        .await
        .expect("a stalled handshake blocked another client")
        .unwrap();
    // Garbage instead of a handshake does not end the server's stream either.
    {
        let mut s = TcpStream::connect(ex.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
    }
    let ch = channel(&client, Expect::Role(Role::Broker), "127.0.0.1", ex.addr);
    check(ch).await.unwrap();
}

#[tokio::test]
async fn endpoints_use_the_http_scheme() {
    for addr in [
        "broker.example:7443",
        "https://broker.example:7443",
        "http://broker.example:7443/",
    ] {
        assert_eq!(
            endpoint(addr).unwrap().uri().to_string(),
            "http://broker.example:7443/"
        );
    }
    assert!(endpoint("broker.example").is_err());
    assert!(endpoint("https://broker.example:7443/path").is_err());
    assert_eq!(endpoint("[::1]:7443").unwrap().uri().host(), Some("[::1]"));
}

#[test]
fn server_tls_refuses_a_certificate_without_hosts() {
    let dir = temp_dir("no-hosts");
    pki::init(&dir, TD).unwrap();
    let files = issue(&dir, "civil-affairs", Role::Consumer);
    let err = ServerTls::load(&files).unwrap_err();
    assert!(err.to_string().contains("names no DNS name"), "{err}");

    // A key that does not belong to the certificate is named as such.
    let other = issue(&dir, "exchange-office", Role::Broker);
    let err = ServerTls::load(&TlsFiles {
        key: files.key.clone(),
        ..other
    })
    .unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");

    // Missing files are named.
    let err = ServerTls::load(&TlsFiles {
        ca: dir.join("nope.pem"),
        ..files
    })
    .unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[tokio::test]
async fn a_guard_admits_only_its_roles_and_hands_on_the_identity() {
    let dir = temp_dir("guard");
    pki::init(&dir, TD).unwrap();
    let tls = ServerTls::load(&issue(&dir, "exchange-office", Role::Broker)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let mut g = guard::require(
        tls.clone(),
        "the health service",
        &[Role::Consumer, Role::Auditor],
    );
    let log = seen.clone();
    let svc = InterceptedService::new(health, move |req: tonic::Request<()>| {
        let req = tonic::service::Interceptor::call(&mut g, req)?;
        log.lock()
            .unwrap()
            .push(guard::verified_peer(&req)?.clone());
        Ok(req)
    });
    let incoming = tls.incoming(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming),
    );

    let consumer = ClientTls::load(&issue(&dir, "civil-affairs", Role::Consumer)).unwrap();
    check(channel(
        &consumer,
        Expect::Role(Role::Broker),
        "127.0.0.1",
        addr,
    ))
    .await
    .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![id("civil-affairs", Role::Consumer)]
    );

    let admin = ClientTls::load(&issue(&dir, "civil-affairs", Role::Admin)).unwrap();
    let status = check(channel(
        &admin,
        Expect::Role(Role::Broker),
        "127.0.0.1",
        addr,
    ))
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        "the health service serves only consumer or auditor certificates; yours is \
         spiffe://gov.example/dept/civil-affairs/admin"
    );

    let raw = RawConnector::new(&dir.join(pki::CA_CERT), None);
    let status = check(raw.channel(addr)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_https_endpoint_is_refused_with_advice() {
    let dir = temp_dir("https");
    pki::init(&dir, TD).unwrap();
    let client = ClientTls::load(&issue(&dir, "civil-affairs", Role::Consumer)).unwrap();
    let err = tonic::transport::Endpoint::from_static("https://127.0.0.1:1")
        .connect_with_connector(client.connector(Expect::Role(Role::Broker)))
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(text.contains("huitong_tls::endpoint"), "{text}");
}
