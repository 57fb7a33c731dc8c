//! Hostile cases: connections, handshakes, certificates and revocation on open streams.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use huitong_client::{ClientError, Query, Subscribe, Subscription};
use huitong_core::DeptId;
use huitong_proto::v1::ListEntriesRequest;
use huitong_proto::v1::adapter_client::AdapterClient;
use huitong_tests::parcels::{Parcels, Setup};
use huitong_tests::{Exchange, Proc, Role, TlsFiles, huitong_bin};
use huitong_tls::{ClientTls, Expect, pki};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tonic::Code;

const PURPOSE: &str = "property registration";

/// Housing may follow parcels and their owners; health may follow parcel numbers only.
const POLICY: &str = r#"
[[grants]]
consumer = "housing"
resource = "land-resources/parcels"
fields = ["parcel_no", "owner"]
purposes = ["property registration"]
expires = "2099-12-31"

[[grants]]
consumer = "health"
resource = "land-resources/parcels"
fields = ["parcel_no"]
purposes = ["property registration"]
expires = "2099-12-31"
"#;

fn parcels(fields: &[&str]) -> Subscribe {
    Subscribe::new("land-resources/parcels")
        .fields(fields.iter().copied())
        .purpose(PURPOSE)
}

fn seq(r: &huitong_client::SubscribeResponse) -> u64 {
    r.event.as_ref().unwrap().sequence
}

async fn next(sub: &mut Subscription) -> Result<huitong_client::SubscribeResponse, ClientError> {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("nothing within 10 s")
}

fn status(r: Result<huitong_client::SubscribeResponse, ClientError>) -> tonic::Status {
    match r {
        Err(ClientError::Status(s)) => s,
        other => panic!("expected the stream to end with a status, got {other:?}"),
    }
}

/// `huitong pki <args>`, which must succeed.
fn pki_cli(args: &[&str]) -> String {
    let out = Command::new(huitong_bin())
        .arg("pki")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "huitong pki {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn issue(pki_dir: &Path, dept: &str, role: Role) -> TlsFiles {
    pki::issue(
        pki_dir,
        &pki::IssueOptions::new(DeptId::new(dept).unwrap(), role),
    )
    .unwrap();
    TlsFiles::from_pki_dir(pki_dir, &DeptId::new(dept).unwrap(), role)
}

/// The delivery records of `consumer` in the exchange log, by event sequence.
async fn deliveries(s: &Setup, consumer: &str) -> Vec<u64> {
    let pki_dir = s.dir.path().join("pki");
    let auditor = TlsFiles::from_pki_dir(
        &pki_dir,
        &DeptId::new("discipline-inspection").unwrap(),
        Role::Auditor,
    );
    if !auditor.cert.exists() {
        issue(&pki_dir, "discipline-inspection", Role::Auditor);
    }
    let mut audit = huitong_client::Audit::connect(&s.broker.endpoint(), &auditor)
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let page = audit
            .entries(ListEntriesRequest {
                start,
                consumer: consumer.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        for e in &page.entries {
            let r = e.record.as_ref().unwrap();
            if r.kind == "delivery" {
                let seq = r.request_id.rsplit('/').next().unwrap().parse().unwrap();
                out.push(seq);
            }
        }
        if page.next_start == 0 {
            return out;
        }
        start = page.next_start;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_revoked_mid_stream_ends_the_stream_within_a_second_and_nothing_more_leaves()
{
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "", POLICY).await;
    let mut housing = s
        .consumer("housing")
        .await
        .subscribe(parcels(&["parcel_no", "owner"]))
        .await
        .unwrap();
    // A second subscriber, whose certificate stays valid, shows when later events have reached
    // the broker and been delivered to whoever may have them.
    let mut health = s
        .consumer("health")
        .await
        .subscribe(parcels(&["parcel_no"]))
        .await
        .unwrap();
    land.change_owner("P-1", "李四");
    assert_eq!(seq(&next(&mut housing).await.unwrap()), 1);
    assert_eq!(seq(&next(&mut health).await.unwrap()), 1);

    // The subscription is idle now: nothing would wake its delivery loop but the revocation.
    let pki_dir = s.dir.path().join("pki");
    let cert = s.identity("housing", Role::Consumer).cert;
    pki_cli(&[
        "revoke",
        "--dir",
        pki_dir.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--reason",
        "key-compromise",
    ]);
    let revoked = Instant::now();
    let st = status(next(&mut housing).await);
    let took = revoked.elapsed();
    assert_eq!(st.code(), Code::Unauthenticated, "{}", st.message());
    assert!(st.message().contains("revoked"), "{}", st.message());
    eprintln!("revoked subscriber's stream ended {took:?} after the CRL was rewritten");
    assert!(
        took < Duration::from_secs(1),
        "the stream ended {took:?} after the revocation"
    );

    // An event after the revocation reaches the subscriber that may still have it, and not
    // the revoked one, not even on paper.
    land.change_owner("P-2", "王五");
    assert_eq!(seq(&next(&mut health).await.unwrap()), 2);
    assert_eq!(deliveries(&s, "health").await, [1, 2]);
    assert_eq!(deliveries(&s, "housing").await, [1]);
    // Coming back with the revoked certificate is refused too.
    let st = status(next(&mut housing).await);
    assert_eq!(st.code(), Code::Unauthenticated, "{}", st.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_revoked_while_the_stream_is_idle_ends_it_naming_the_grant() {
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "", "").await;
    let pki_dir = s.dir.path().join("pki");
    let provider_admin = issue(&pki_dir, "land-resources", Role::Admin);
    let mut housing_admin =
        huitong_client::Admin::connect(&s.broker.endpoint(), &s.identity("housing", Role::Admin))
            .await
            .unwrap();
    let filed = housing_admin
        .file_request(
            "land-resources/parcels",
            &["parcel_no", "owner"],
            &[PURPOSE],
            "《不动产登记暂行条例》第二十七条",
            30,
        )
        .await
        .unwrap();
    let mut land_admin = huitong_client::Admin::connect(&s.broker.endpoint(), &provider_admin)
        .await
        .unwrap();
    let grant = land_admin.approve(&filed.id, &[], &[]).await.unwrap();

    let mut sub = s
        .consumer("housing")
        .await
        .subscribe(parcels(&["parcel_no", "owner"]))
        .await
        .unwrap();
    land.change_owner("P-1", "李四");
    assert_eq!(seq(&next(&mut sub).await.unwrap()), 1);

    // No event follows: the stream must end on the revocation alone.
    land_admin
        .revoke(&grant.id, "the registration drive is over")
        .await
        .unwrap();
    let st = status(next(&mut sub).await);
    assert_eq!(st.code(), Code::PermissionDenied, "{}", st.message());
    assert!(
        st.message().contains(&grant.id) && st.message().contains("revoked"),
        "{}",
        st.message()
    );
}

/// A broker-role certificate for an ordinary department, as a CA could issue before adapters
/// served brokers by identity: the CA directory is told, for a moment, that civil affairs runs
/// a broker.
fn rogue_broker(pki_dir: &Path, dept: &str) -> TlsFiles {
    let list = pki_dir.join(pki::BROKERS);
    let before = std::fs::read_to_string(&list).unwrap();
    std::fs::write(&list, format!("{before}{dept}\n")).unwrap();
    let files = issue(pki_dir, dept, Role::Broker);
    std::fs::write(&list, before).unwrap();
    files
}

async fn adapter_client(
    addr: SocketAddr,
    files: &TlsFiles,
) -> AdapterClient<tonic::transport::Channel> {
    let tls = ClientTls::load(files).unwrap();
    let channel = huitong_tls::endpoint(&addr.to_string())
        .unwrap()
        .connect_with_connector(tls.connector(Expect::Role(Role::Adapter)))
        .await
        .unwrap();
    AdapterClient::new(channel)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_certificate_of_a_department_is_refused_by_adapters_and_the_exchanges_is_served() {
    let mut ex = Exchange::start("");
    let pki_dir = ex.pki();
    let rogue = rogue_broker(&pki_dir, "civil-affairs");
    let addr = ex.adapter("public-security").addr;
    let describe = huitong_proto::v1::DescribeRequest::default();

    let st = adapter_client(addr, &rogue)
        .await
        .describe(describe)
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied, "{}", st.message());
    let msg = st.message();
    assert!(
        msg.contains("/dept/civil-affairs/broker"),
        "the refusal names the identity presented: {msg}"
    );
    assert!(
        msg.contains("/dept/exchange-office/broker") && msg.contains("`brokers`"),
        "the refusal names the identity served and the setting: {msg}"
    );
    // A fetch is refused alike: nothing leaves the department around the broker.
    let fetch = huitong_proto::v1::FetchRequest {
        resource: "household-register".into(),
        key: [(
            "id_number".to_owned(),
            huitong_proto::v1::Value::string(ex.person(0)),
        )]
        .into(),
        fields: vec!["name".into()],
    };
    let st = adapter_client(addr, &rogue)
        .await
        .fetch(fetch)
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied, "{}", st.message());

    // The exchange's own broker (the default, with no `brokers` in the adapter's config).
    let broker = ex.identity("exchange-office", Role::Broker);
    adapter_client(addr, &broker)
        .await
        .describe(describe)
        .await
        .unwrap();
    // And the broker in front of it still answers a consumer end to end.
    let mut civil = ex.consumer("civil-affairs").await;
    civil
        .query(huitong_tests::marriage_check(&ex.person(0)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_serves_exactly_the_brokers_its_config_names() {
    let ex = Exchange::start("");
    let pki_dir = ex.pki();
    let second = rogue_broker(&pki_dir, "exchange-office-2");
    // The civil-affairs adapter, restarted with a cluster of two brokers configured.
    let cfg = ex.dir.path().join("civil-affairs.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let td = std::fs::read_to_string(pki_dir.join(pki::TRUST_DOMAIN)).unwrap();
    let td = td.trim();
    let brokers = format!(
        "brokers = [\"spiffe://{td}/dept/exchange-office/broker\", \"spiffe://{td}/dept/exchange-office-2/broker\"]\n"
    );
    std::fs::write(&cfg, format!("{brokers}{text}")).unwrap();
    let adapter = Proc::start(&[
        "adapter",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let describe = huitong_proto::v1::DescribeRequest::default();
    for files in [&ex.identity("exchange-office", Role::Broker), &second] {
        adapter_client(adapter.addr, files)
            .await
            .describe(describe)
            .await
            .unwrap();
    }
    let rogue = rogue_broker(&pki_dir, "market-regulation");
    let st = adapter_client(adapter.addr, &rogue)
        .await
        .describe(describe)
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied, "{}", st.message());
    assert!(
        st.message().contains("exchange-office-2"),
        "{}",
        st.message()
    );
}

#[test]
fn pki_issue_refuses_a_broker_role_for_a_department_and_keeps_certificates_it_would_overwrite() {
    let dir = huitong_tests::TempDir::new("pki-hostile");
    let pki_dir = dir.path().join("pki");
    let d = pki_dir.to_str().unwrap();
    pki_cli(&["init", "--dir", d, "--trust-domain", "gov.example"]);
    let out = pki_cli(&[
        "issue",
        "--dir",
        d,
        "--dept",
        "exchange-office",
        "--role",
        "broker",
    ]);
    assert!(
        out.contains("spiffe://gov.example/dept/exchange-office/broker"),
        "{out}"
    );

    let out = Command::new(huitong_bin())
        .args([
            "pki",
            "issue",
            "--dir",
            d,
            "--dept",
            "civil-affairs",
            "--role",
            "broker",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("civil-affairs does not run the exchange's broker")
            && err.contains("consumer"),
        "{err}"
    );
    assert!(!pki_dir.join("civil-affairs-broker.pem").exists());

    // An existing certificate is not overwritten without --force ...
    pki_cli(&["issue", "--dir", d, "--dept", "tax", "--role", "consumer"]);
    let cert = pki_dir.join("tax-consumer.pem");
    let first = std::fs::read(&cert).unwrap();
    let out = Command::new(huitong_bin())
        .args([
            "pki", "issue", "--dir", d, "--dept", "tax", "--role", "consumer",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&cert).unwrap(), first);
    // ... and with it the old pair is kept, and can still be revoked.
    pki_cli(&[
        "issue", "--dir", d, "--dept", "tax", "--role", "consumer", "--force",
    ]);
    assert_ne!(std::fs::read(&cert).unwrap(), first);
    let old = pki_dir.join("tax-consumer.old.pem");
    assert_eq!(std::fs::read(&old).unwrap(), first);
    assert!(pki_dir.join("tax-consumer.old.key").exists());
    pki_cli(&[
        "revoke",
        "--dir",
        d,
        "--cert",
        old.to_str().unwrap(),
        "--reason",
        "superseded",
    ]);
}

/// Opens `n` TCP connections to `to` from `from` that never say a word.
async fn idle_sockets(from: [u8; 4], to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    let mut pending = tokio::task::JoinSet::new();
    let mut started = 0;
    while out.len() < n {
        // A few hundred connects at a time: the kernel's backlog is what they fill, not ours.
        while started < n && pending.len() < 500 {
            started += 1;
            pending.spawn(async move {
                let socket = TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::from((from, 0))).unwrap();
                socket.connect(to).await
            });
        }
        match pending.join_next().await.unwrap().unwrap() {
            Ok(s) => out.push(s),
            Err(e) => panic!("idle connection {} failed: {e}", out.len()),
        }
    }
    out
}

/// Whether the server has closed `s`: a read sees the end (or a reset), not silence.
async fn closed_by_server(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            // The server may send an alert or nothing; anything else is a live connection.
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_idle_connections_from_one_address_do_not_keep_another_client_waiting() {
    let land = Parcels::new("land-resources", 0, 0);
    let s = Setup::start(&[&land], "handshake_timeout_ms = 2000\n", "").await;
    let broker = s.broker.addr;
    let mut housing = s.consumer("housing").await;
    let query = || {
        Query::by_key("land-resources/parcels", "parcel_no", "P-1")
            .fields(["parcel_no", "owner"])
            .purpose(PURPOSE)
    };
    housing.query(query()).await.unwrap();

    let flood_started = Instant::now();
    let flood = idle_sockets([127, 0, 0, 2], broker, 10_000).await;
    let flooded = Instant::now();
    eprintln!(
        "10,000 idle connections from 127.0.0.2 open after {:?}",
        flooded - flood_started
    );

    // Another client from another address: a new connection, its handshake and a query.
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut c = s.consumer("tax").await;
        c.query(query()).await.unwrap();
        times.push(started.elapsed());
    }
    // And the client that was connected before the flood.
    let started = Instant::now();
    housing.query(query()).await.unwrap();
    let connected = started.elapsed();
    eprintln!(
        "with the flood in place: new client connect + query {times:?}; connected client query {connected:?}"
    );
    for t in &times {
        assert!(
            *t < Duration::from_millis(100),
            "a new client took {t:?} to be answered: {times:?}"
        );
    }
    assert!(connected < Duration::from_millis(100), "{connected:?}");

    // Every idle socket is closed: most at once (over the address's limit), the rest when the
    // handshake deadline passes.
    let closes: Vec<_> = flood
        .into_iter()
        .map(|sock| tokio::spawn(closed_by_server(sock)))
        .collect();
    let all = async {
        for c in closes {
            assert!(c.await.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(5), all)
        .await
        .expect("idle connections still open 5 s after the flood, with a 2 s handshake deadline");
    eprintln!(
        "all idle connections closed {:?} after the flood was in place",
        flooded.elapsed()
    );
    // The broker is still serving.
    housing.query(query()).await.unwrap();
    let _ = Arc::clone(&land);
}
