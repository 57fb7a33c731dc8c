//! Identity and lawful sharing end to end: who may connect, in which role, and what a grant
//! lets through. Every refusal is checked for its status and for a message that says what is
//! missing; every test runs the real broker and adapters over mutual TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use huitong_client::{Admin, Client, ClientError, Query, TlsFiles, Value};
use huitong_core::DeptId;
use huitong_proto::v1::adapter_client::AdapterClient;
use huitong_proto::v1::{DescribeRequest, ListCatalogueRequest};
use huitong_tests::{Exchange, MARRIAGE, Proc, Role, write_broker_config};
use huitong_tls::{ClientTls, Expect, pki};
use tonic::Code;

const REGISTER: &str = "public-security/household-register";
const LICENCES: &str = "market-regulation/business-licences";

fn status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (Code, String) {
    match r {
        Err(ClientError::Status(s)) => (s.code(), s.message().to_owned()),
        other => panic!("expected a status, got {other:?}"),
    }
}

fn register_query(id: &str, fields: &[&str], purpose: &str) -> Query {
    Query::by_key(REGISTER, "id_number", id)
        .fields(fields.iter().copied())
        .purpose(purpose)
}

/// tonic's own TLS client: verifies the broker against the exchange CA and presents `cert`
/// (if any) without checking it first, as an attacker's client would.
async fn raw_client(
    ex: &Exchange,
    cert: Option<(&std::path::Path, &std::path::Path)>,
) -> huitong_proto::v1::exchange_client::ExchangeClient<tonic::transport::Channel> {
    let ca = std::fs::read(ex.pki().join("ca.pem")).unwrap();
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = cert {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    let channel = tonic::transport::Endpoint::from_shared(ex.broker.endpoint())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    huitong_proto::v1::exchange_client::ExchangeClient::new(channel)
}

/// Connects with a certificate issued in `pki::issue`'s options, from the exchange's CA.
async fn consumer_with(ex: &Exchange, opts: pki::IssueOptions) -> Client {
    let issued = pki::issue(&ex.pki(), &opts).unwrap();
    let files = TlsFiles {
        ca: ex.pki().join("ca.pem"),
        cert: issued.cert,
        key: issued.key,
        crl: None,
    };
    Client::connect(&ex.broker.endpoint(), &files)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_without_a_client_certificate_is_unauthenticated() {
    let ex = Exchange::start("");
    let s = raw_client(&ex, None)
        .await
        .list_catalogue(ListCatalogueRequest::default())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
    assert!(
        s.message().contains("client certificate"),
        "{}",
        s.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_another_ca_is_unauthenticated() {
    let ex = Exchange::start("");
    let other = ex.dir.path().join("other-pki");
    pki::init(&other, "demo.huitong.example").unwrap();
    let issued = pki::issue(
        &other,
        &pki::IssueOptions::new(DeptId::new("civil-affairs").unwrap(), Role::Consumer),
    )
    .unwrap();
    // Trusts the real CA for the broker, presents a certificate the real CA never issued.
    let s = raw_client(&ex, Some((&issued.cert, &issued.key)))
        .await
        .list_catalogue(ListCatalogueRequest::default())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
    assert!(
        s.message().contains("not issued by this exchange's CA"),
        "{}",
        s.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_is_unauthenticated_with_its_date() {
    let ex = Exchange::start("");
    let mut opts = pki::IssueOptions::new(DeptId::new("housing").unwrap(), Role::Consumer);
    opts.not_before_days_ago = 10;
    opts.valid_days = 1;
    let issued = pki::issue(&ex.pki(), &opts).unwrap();
    // Our own client refuses to present an expired certificate; tonic's does not check.
    let s = raw_client(&ex, Some((&issued.cert, &issued.key)))
        .await
        .list_catalogue(ListCatalogueRequest::default())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
    assert!(s.message().contains("expired"), "{}", s.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_certificate_is_refused_without_restarting_the_broker() {
    let ex = Exchange::start("");
    let id = ex.person(1);
    // A new certificate in place of the demo's (which `replace` keeps as .old), to revoke.
    let mut opts = pki::IssueOptions::new(DeptId::new("civil-affairs").unwrap(), Role::Consumer);
    opts.replace = true;
    let mut c = consumer_with(&ex, opts).await;
    c.query(register_query(&id, &["name"], MARRIAGE))
        .await
        .unwrap();
    let cert = ex.pki().join("civil-affairs-consumer.pem");
    pki::revoke(&ex.pki(), &cert, "key-compromise").unwrap();
    // The broker notices the new revocation list within a second.
    let mut last = None;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match c.query(register_query(&id, &["name"], MARRIAGE)).await {
            Ok(_) => continue,
            Err(e) => {
                last = Some(status::<()>(Err(e)));
                break;
            }
        }
    }
    let (code, msg) = last.expect("the revoked certificate was still accepted after 6 s");
    assert_eq!(code, Code::Unauthenticated, "{msg}");
    assert!(msg.contains("revoked"), "{msg}");
    // Other departments are not affected.
    let mut other = ex.consumer("market-regulation").await;
    other
        .query(register_query(
            &id,
            &["name"],
            "营业执照登记 business licence registration",
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_certificate_cannot_use_the_admin_service() {
    let ex = Exchange::start("");
    let mut admin = Admin::connect(
        &ex.broker.endpoint(),
        &ex.identity("civil-affairs", Role::Consumer),
    )
    .await
    .unwrap();
    let (code, msg) = status(admin.list_grants(true).await);
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("admin"), "{msg}");
    // And an admin certificate cannot query records.
    let mut c = Client::connect(
        &ex.broker.endpoint(),
        &ex.identity("civil-affairs", Role::Admin),
    )
    .await
    .unwrap();
    let (code, msg) = status(
        c.query(register_query(&ex.person(0), &["name"], MARRIAGE))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("consumer"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn adapters_accept_only_the_broker() {
    let ex = Exchange::start("");
    let (_, adapter) = &ex.adapters[0];
    let tls = ClientTls::load(&ex.identity("civil-affairs", Role::Consumer)).unwrap();
    let channel = huitong_tls::endpoint(&adapter.endpoint())
        .unwrap()
        .connect_with_connector(tls.connector(Expect::Role(Role::Adapter)))
        .await
        .unwrap();
    let s = AdapterClient::new(channel)
        .describe(DescribeRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{}", s.message());
    assert!(s.message().contains("broker"), "{}", s.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_presenting_another_departments_identity_is_not_used() {
    let ex = Exchange::start("");
    // Civil affairs' records served under public security's adapter certificate.
    let cfg = ex.dir.path().join("civil-affairs.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("civil-affairs-adapter", "public-security-adapter");
    let impostor_cfg = ex.dir.path().join("impostor.toml");
    std::fs::write(&impostor_cfg, text).unwrap();
    let impostor = Proc::start(&[
        "adapter",
        "--config",
        impostor_cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let broker_cfg = write_broker_config(
        ex.dir.path(),
        "impostor-broker.toml",
        &[("civil-affairs".into(), impostor.endpoint())],
        "",
    );
    let broker = Proc::start(&["broker", "--config", broker_cfg.to_str().unwrap()]);
    let mut c = Client::connect(
        &broker.endpoint(),
        &ex.identity("civil-affairs", Role::Consumer),
    )
    .await
    .unwrap();
    let record = &ex.records("marriage-registrations.jsonl")[0];
    let (code, msg) = status(
        c.query(
            Query::by_key(
                "civil-affairs/marriage-registrations",
                "registration_no",
                record["registration_no"].as_str().unwrap(),
            )
            .fields(["status"])
            .purpose("pension survivor check"),
        )
        .await,
    );
    assert_eq!(code, Code::Unavailable, "{msg}");
    assert!(
        msg.contains("department civil-affairs is unavailable"),
        "{msg}"
    );
    // The broker names the expected and presented identities in its log.
    broker.wait_for_stderr(Duration::from_secs(30), |log| {
        log.contains("spiffe://demo.huitong.example/dept/civil-affairs/adapter")
            && log.contains("spiffe://demo.huitong.example/dept/public-security/adapter")
    });
}

// ---------------------------------------------------------------------------------------------
// Lawful sharing
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_conditional_resource_without_a_grant_is_refused() {
    let ex = Exchange::start("");
    let mut c = ex.consumer("human-resources").await;
    let (code, msg) = status(
        c.query(register_query(
            &ex.person(0),
            &["name"],
            "employment screening",
        ))
        .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    assert!(
        msg.contains("human-resources has no grant for public-security/household-register"),
        "{msg}"
    );
    assert!(msg.contains("file an access request"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn open_resources_serve_public_fields_to_anyone_and_personal_fields_only_with_a_grant() {
    let ex = Exchange::start("");
    let mut c = ex.consumer("human-resources").await;
    let answer = c
        .query(
            Query::search(LICENCES)
                .filter("status", "revoked")
                .fields(["credit_code", "name"])
                .purpose("supplier check"),
        )
        .await
        .unwrap();
    assert!(!answer.records.is_empty());
    assert!(answer.grant_id.is_empty());
    // Filtering on a personal field reveals it as surely as releasing it.
    let rep = ex.records("business-licences.jsonl")[0]["legal_representative_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, msg) = status(
        c.query(
            Query::search(LICENCES)
                .filter("legal_representative_id", rep.as_str())
                .fields(["credit_code"])
                .purpose("supplier check"),
        )
        .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    assert!(msg.contains("legal_representative_id"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_field_outside_the_grant_and_a_purpose_it_does_not_name_are_refused() {
    let ex = Exchange::start("");
    let id = ex.person(0);
    let mut c = ex.consumer("civil-affairs").await;
    let (code, msg) = status(
        c.query(register_query(&id, &["name", "ethnicity"], MARRIAGE))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    assert!(
        msg.contains("field \"ethnicity\" is outside your grant P-1"),
        "{msg}"
    );
    let (code, msg) = status(
        c.query(register_query(&id, &["name"], "税务稽查 tax audit"))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    assert!(
        msg.contains("does not name the purpose \"税务稽查 tax audit\""),
        "{msg}"
    );
    assert!(
        msg.contains(MARRIAGE),
        "the message lists the purposes the grant names: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_grant_is_refused_with_its_date() {
    let policy = r#"
[[grants]]
consumer = "taxation"
resource = "public-security/household-register"
fields = ["name"]
purposes = ["tax audit"]
expires = "2020-01-01"
"#;
    let ex = Exchange::start_with_policy("", policy);
    let mut c = ex.consumer("taxation").await;
    let (code, msg) = status(
        c.query(register_query(&ex.person(0), &["name"], "tax audit"))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    assert!(msg.contains("expired on 2020-01-01"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn masks_from_the_grant_are_applied_in_the_broker() {
    let ex = Exchange::start("");
    let people = ex.records("household-register.jsonl");
    let p = &people[4];
    let mut c = ex.consumer("civil-affairs").await;
    let answer = c
        .query(register_query(
            p["id_number"].as_str().unwrap(),
            &["name", "address"],
            MARRIAGE,
        ))
        .await
        .unwrap();
    assert_eq!(answer.grant_id, "P-1");
    assert_eq!(answer.masked_fields, ["address"]);
    let r = &answer.records[0];
    assert_eq!(r.fields["name"].to_json(), p["name"]);
    let address = r.fields["address"].as_str().unwrap();
    let full = p["address"].as_str().unwrap();
    assert!(
        full.starts_with(address) && address.len() < full.len(),
        "{address} / {full}"
    );
    assert!(
        address.ends_with('区') || address.ends_with('县') || address.ends_with('市'),
        "{address}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_request_is_filed_approved_with_masks_used_and_revoked() {
    let ex = Exchange::start("");
    let id = ex.person(2);
    let mut taxation = ex.admin("taxation").await;
    let filed = taxation
        .file_request(
            REGISTER,
            &["name", "id_number"],
            &["tax audit"],
            "《税收征收管理法》第五十七条",
            30,
        )
        .await
        .unwrap();
    assert!(filed.id.starts_with("AR-"), "{}", filed.id);
    assert!(filed.reply_due.is_some());

    // Only the provider decides.
    let mut civil = ex.admin("civil-affairs").await;
    let (code, msg) = status(civil.approve(&filed.id, &[], &[]).await);
    assert_eq!(code, Code::PermissionDenied);
    assert!(msg.contains("only public-security"), "{msg}");

    let mut provider = ex.admin("public-security").await;
    // The bureau looks people up by the id number it holds, which it receives masked: the
    // provider must allow the key to match on the masked field.
    let grant = provider
        .approve_matching(
            &filed.id,
            &[],
            &[("id_number", "id-number"), ("name", "name")],
            &["id_number"],
        )
        .await
        .unwrap();
    assert!(grant.active);
    // A decided request cannot be decided again.
    let (code, msg) = status(provider.deny(&filed.id, "changed my mind").await);
    assert_eq!(code, Code::FailedPrecondition, "{msg}");

    let mut c = ex.consumer("taxation").await;
    let answer = c
        .query(register_query(&id, &["name", "id_number"], "tax audit"))
        .await
        .unwrap();
    assert_eq!(answer.grant_id, grant.id);
    let r = &answer.records[0];
    let masked_id = r.fields["id_number"].as_str().unwrap();
    assert_eq!(&masked_id[..6], &id[..6]);
    assert!(masked_id.contains("********"), "{masked_id}");
    assert!(r.fields["name"].as_str().unwrap().contains('*'));

    // Revoked by the provider: refused from then on, with the reason.
    provider.revoke(&grant.id, "audit finished").await.unwrap();
    let (code, msg) = status(c.query(register_query(&id, &["name"], "tax audit")).await);
    assert_eq!(code, Code::PermissionDenied);
    assert!(
        msg.contains("revoked") && msg.contains("audit finished"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denial_needs_a_reason_and_the_consumer_can_read_it() {
    let ex = Exchange::start("");
    let mut hr = ex.admin("human-resources").await;
    let filed = hr
        .file_request(
            REGISTER,
            &["name"],
            &["employment screening"],
            "内部制度",
            30,
        )
        .await
        .unwrap();
    let mut provider = ex.admin("public-security").await;
    for reason in ["", "   "] {
        let (code, msg) = status(provider.deny(&filed.id, reason).await);
        assert_eq!(code, Code::InvalidArgument, "{msg}");
        assert!(msg.contains("reason"), "{msg}");
    }
    provider
        .deny(&filed.id, "not a lawful purpose for register data")
        .await
        .unwrap();
    let mine = hr.list_requests(false, None).await.unwrap();
    let r = mine.iter().find(|r| r.id == filed.id).unwrap();
    assert_eq!(r.denial_reason, "not a lawful purpose for register data");
    assert_eq!(r.decided_by, "public-security");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_requests_that_cannot_be_granted_are_refused_when_filed() {
    let ex = Exchange::start("");
    let mut hr = ex.admin("human-resources").await;
    let (code, msg) = status(
        hr.file_request(
            "public-security/criminal-records",
            &["offence"],
            &["screening"],
            "x",
            30,
        )
        .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("not shared"), "{msg}");
    let (code, msg) = status(
        hr.file_request(REGISTER, &["salary"], &["p"], "x", 30)
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("salary"), "{msg}");
    let (code, msg) = status(hr.file_request(REGISTER, &["name"], &["p"], "", 30).await);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    let (code, msg) = status(hr.file_request(REGISTER, &["name"], &["p"], "x", 0).await);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_and_requests_survive_a_broker_restart() {
    let mut ex = Exchange::start("");
    let id = ex.person(3);
    let filed = ex
        .admin("taxation")
        .await
        .file_request(
            REGISTER,
            &["name"],
            &["tax audit"],
            "《税收征收管理法》",
            30,
        )
        .await
        .unwrap();
    let grant = ex
        .admin("public-security")
        .await
        .approve(&filed.id, &[], &[])
        .await
        .unwrap();
    let pending = ex
        .admin("taxation")
        .await
        .file_request(
            REGISTER,
            &["address"],
            &["tax audit"],
            "《税收征收管理法》",
            30,
        )
        .await
        .unwrap();
    ex.restart_broker();
    let mut c = ex.consumer("taxation").await;
    let answer = c
        .query(register_query(&id, &["name"], "tax audit"))
        .await
        .unwrap();
    assert_eq!(answer.grant_id, grant.id);
    let listed = ex
        .admin("taxation")
        .await
        .list_requests(false, None)
        .await
        .unwrap();
    assert!(
        listed
            .iter()
            .any(|r| r.id == pending.id && r.grant_id.is_empty())
    );
    let _ = Value::null();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_over_its_quota_is_refused_and_others_are_not() {
    let policy = r#"
[[quotas]]
consumer = "civil-affairs"
resource = "public-security/household-register"
per_second = 0.5
burst = 2
"#;
    let ex = Exchange::start_with_policy("", policy);
    let id = ex.person(0);
    let mut civil = ex.consumer("civil-affairs").await;
    for _ in 0..2 {
        civil
            .query(register_query(&id, &["name"], MARRIAGE))
            .await
            .unwrap();
    }
    let err = civil
        .query(register_query(&id, &["name"], MARRIAGE))
        .await
        .unwrap_err();
    let ClientError::Status(s) = &err else {
        panic!("expected a status, got {err}");
    };
    assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
    assert!(
        s.message()
            .contains("civil-affairs is over its quota of 0.5 requests per second")
            && s.message().contains("retry in"),
        "{}",
        s.message()
    );
    let wait: u64 = s
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a retry-after-ms hint");
    assert!((1..=2000).contains(&wait), "{wait}");
    // Another department, and this one's other resources, are not limited.
    let mut market = ex.consumer("market-regulation").await;
    for _ in 0..4 {
        market
            .query(register_query(
                &id,
                &["name"],
                "营业执照登记 business licence registration",
            ))
            .await
            .unwrap();
    }
    civil
        .query(
            Query::search(LICENCES)
                .filter("status", "active")
                .fields(["credit_code"])
                .purpose("check"),
        )
        .await
        .unwrap();
    // After the hinted wait, a token is back.
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    civil
        .query(register_query(&id, &["name"], MARRIAGE))
        .await
        .unwrap();
}

/// The reply deadline skips the public holidays the broker is configured with: with the next
/// three weeks declared holidays, a one-working-day deadline falls after them.
#[tokio::test(flavor = "multi_thread")]
async fn reply_deadlines_skip_configured_holidays() {
    use huitong_core::calendar;
    let today = calendar::days_since_epoch(std::time::SystemTime::now());
    let dates: Vec<String> = (-1..=21)
        .map(|d| {
            format!(
                "\"{}\"",
                calendar::format_date(calendar::from_days(today + d))
            )
        })
        .collect();
    let ex = Exchange::start(&format!(
        "reply_deadline_working_days = 1\nholidays = [{}]",
        dates.join(", ")
    ));
    let filed = ex
        .admin("taxation")
        .await
        .file_request(
            REGISTER,
            &["name"],
            &["tax audit"],
            "《税收征收管理法》第五十七条",
            30,
        )
        .await
        .unwrap();
    let due = filed
        .reply_due
        .expect("a filed request has a reply deadline");
    let due_day = due.seconds.div_euclid(86_400);
    // The first working day after the holidays is day 22 or later; one working day after it.
    assert!(
        due_day >= today + 23,
        "due on day {due_day}, today is {today}: the holidays were counted as working days"
    );
    assert!(
        due_day <= today + 26,
        "due on day {due_day}, today is {today}"
    );
}
