//! Governance on the record: access requests filed, approved and denied, grants created,
//! expired and revoked, policy reloads, certificate revocations and departments joining are
//! entries of their own kinds in the exchange log, listed by kind and verified offline; an
//! auditor certificate lists every department's grants and requests and changes none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use huitong_client::{Admin, Audit, ClientError, ListEntriesRequest, LogEntry, Query};
use huitong_proto::v1::{ExchangeRecord, ListGrantsRequest};
use huitong_tests::{Exchange, Role, huitong_bin, marriage_check};
use huitong_tls::pki;
use tonic::Code;

const REGISTER: &str = "public-security/household-register";

async fn auditor(ex: &Exchange) -> Audit {
    Audit::connect(
        &ex.broker.endpoint(),
        &ex.identity("discipline-inspection", Role::Auditor),
    )
    .await
    .unwrap()
}

async fn entries(ex: &Exchange, req: ListEntriesRequest) -> Vec<LogEntry> {
    auditor(ex).await.entries(req).await.unwrap().entries
}

async fn of_kind(ex: &Exchange, kind: &str) -> Vec<ExchangeRecord> {
    entries(
        ex,
        ListEntriesRequest {
            kind: kind.into(),
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .map(|e| e.record.unwrap())
    .collect()
}

/// Waits (up to 10 s) until the log holds an entry of `kind` matching `want`.
async fn wait_for_kind(
    ex: &Exchange,
    kind: &str,
    want: impl Fn(&ExchangeRecord) -> bool,
) -> ExchangeRecord {
    for _ in 0..100 {
        if let Some(r) = of_kind(ex, kind).await.into_iter().find(&want) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {kind} entry appeared in the log within 10 s");
}

/// Runs `huitong <group> <sub> ...` with the auditor's certificate.
fn cli_as_auditor(ex: &Exchange, group: &str, args: &[&str]) -> (bool, String, String) {
    let id = ex.identity("discipline-inspection", Role::Auditor);
    let mut cmd = Command::new(huitong_bin());
    cmd.arg(group);
    let rest = if group == "audit" {
        let (sub, rest) = args.split_first().unwrap();
        cmd.arg(sub);
        rest
    } else {
        args
    };
    // `huitong admin` takes its connection before the subcommand, `huitong audit` after.
    cmd.args(["--broker", &ex.broker.endpoint()])
        .arg("--ca")
        .arg(&id.ca)
        .arg("--cert")
        .arg(&id.cert)
        .args(rest);
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (Code, String) {
    match r.expect_err("expected a refusal") {
        ClientError::Status(s) => (s.code(), s.message().to_owned()),
        other => panic!("not a status: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approving_denying_and_revoking_leave_entries_listed_by_kind_that_verify_offline() {
    let ex = Exchange::start("");
    let mut taxation = ex.admin("taxation").await;
    let first = taxation
        .file_request(
            REGISTER,
            &["name"],
            &["tax audit"],
            "《税收征收管理法》第五十七条",
            30,
        )
        .await
        .unwrap();
    let second = taxation
        .file_request(
            REGISTER,
            &["address"],
            &["tax audit"],
            "《税收征收管理法》第五十七条",
            30,
        )
        .await
        .unwrap();
    let mut provider = ex.admin("public-security").await;
    let grant = provider.approve(&first.id, &[], &[]).await.unwrap();
    provider
        .deny(&second.id, "addresses are not needed for a tax audit")
        .await
        .unwrap();
    provider.revoke(&grant.id, "audit finished").await.unwrap();

    // Each act is in the log as soon as its answer has arrived: no waiting.
    let filed = of_kind(&ex, "request_filed").await;
    assert_eq!(filed.len(), 2, "{filed:?}");
    assert!(
        filed
            .iter()
            .all(|r| r.actor == "taxation" && r.consumer == "taxation")
    );
    let approved = of_kind(&ex, "request_approved").await;
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0].access_request, first.id);
    assert_eq!(approved[0].grant_id, grant.id);
    assert_eq!(approved[0].actor, "public-security");
    let created: Vec<_> = of_kind(&ex, "grant_created")
        .await
        .into_iter()
        .filter(|r| r.grant_id == grant.id)
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].fields, vec!["name".to_owned()]);
    let denied = of_kind(&ex, "request_denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].access_request, second.id);
    assert_eq!(denied[0].reason, "addresses are not needed for a tax audit");
    let revoked = of_kind(&ex, "grant_revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].grant_id, grant.id);
    assert_eq!(revoked[0].reason, "audit finished");
    assert_eq!(revoked[0].actor, "public-security");

    // The CLI lists them by kind, reason included, in JSON lines.
    let (ok, out, err) = cli_as_auditor(
        &ex,
        "audit",
        &["entries", "--kind", "request_denied", "--json"],
    );
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("kind").is_some())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(
        lines[0]["reason"],
        "addresses are not needed for a tax audit"
    );
    let (ok, _, err) = cli_as_auditor(&ex, "audit", &["entries", "--kind", "approvals"]);
    assert!(!ok);
    assert!(err.contains("not an entry kind"), "{err}");

    // And they verify offline with everything else in the log.
    let key = auditor(&ex).await.checkpoint().await.unwrap().verifier_key;
    let bundle = ex.dir.path().join("bundle");
    let (ok, _, err) = cli_as_auditor(&ex, "audit", &["export", "--out", bundle.to_str().unwrap()]);
    assert!(ok, "{err}");
    let out = Command::new(huitong_bin())
        .args([
            "audit",
            "verify",
            bundle.to_str().unwrap(),
            "--log-key",
            &key,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_lists_every_departments_grants_and_cannot_change_them() {
    let ex = Exchange::start("");
    let mut taxation = ex.admin("taxation").await;
    let filed = taxation
        .file_request(
            REGISTER,
            &["name"],
            &["tax audit"],
            "《税收征收管理法》第五十七条",
            30,
        )
        .await
        .unwrap();
    let mut provider = ex.admin("public-security").await;
    let grant = provider.approve(&filed.id, &[], &[]).await.unwrap();

    let mut audit = Admin::connect(
        &ex.broker.endpoint(),
        &ex.identity("discipline-inspection", Role::Auditor),
    )
    .await
    .unwrap();
    let all = audit.list_grants(true).await.unwrap();
    // Grants of several consumers: the policy file's and the one just approved.
    let consumers: std::collections::BTreeSet<&str> =
        all.iter().map(|g| g.consumer.as_str()).collect();
    assert!(
        consumers.contains("taxation") && consumers.contains("civil-affairs"),
        "{consumers:?}"
    );
    let requests = audit.list_requests(false, None).await.unwrap();
    assert!(requests.iter().any(|r| r.id == filed.id));

    // Which grants were in force on a date: not one approved only now.
    let last_year = ListGrantsRequest {
        consumer: "taxation".into(),
        in_force_at: Some(huitong_proto::Timestamp {
            seconds: 1_735_689_600, // 2025-01-01
            nanos: 0,
        }),
        ..Default::default()
    };
    let then = audit.grants(last_year).await.unwrap();
    assert!(then.iter().all(|g| g.id != grant.id), "{then:?}");
    let (ok, out, err) = cli_as_auditor(
        &ex,
        "admin",
        &[
            "grants",
            "--consumer",
            "taxation",
            "--at",
            "2099-01-01T08:00:00+08:00",
        ],
    );
    assert!(ok, "{err}");
    // Far in the future the new grant has expired: the listing is of what was in force then.
    assert!(!out.contains(&grant.id), "{out}");
    let (ok, out, err) = cli_as_auditor(&ex, "admin", &["grants", "--consumer", "taxation"]);
    assert!(ok, "{err}");
    assert!(out.contains(&grant.id), "{out}");

    // Nothing an auditor sends changes anything.
    let (code, msg) = status(audit.revoke(&grant.id, "I am an auditor").await);
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("may list grants"), "{msg}");
    let (code, _) = status(audit.approve(&filed.id, &[], &[]).await);
    assert_eq!(code, Code::PermissionDenied);
    let (code, _) = status(audit.deny(&filed.id, "no").await);
    assert_eq!(code, Code::PermissionDenied);
    let (code, _) = status(
        audit
            .file_request(REGISTER, &["name"], &["x"], "《x》第一条", 3)
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    let still = taxation.list_grants(false).await.unwrap();
    assert!(still.iter().any(|g| g.id == grant.id && g.active));
    assert!(of_kind(&ex, "grant_revoked").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_revocations_expiries_and_departments_are_on_the_record() {
    let expired = r#"
[[grants]]
consumer = "taxation"
resource = "public-security/household-register"
fields = ["name"]
purposes = ["tax audit"]
expires = "2020-01-01"
"#;
    let mut ex = Exchange::start_with_policy("", expired);
    // At the first start: each configured provider joined, the policy file was loaded with its
    // digest, and the grant that had already expired is recorded as such.
    let added = of_kind(&ex, "department_added").await;
    let depts: std::collections::BTreeSet<&str> =
        added.iter().map(|r| r.provider.as_str()).collect();
    assert_eq!(
        depts,
        ["civil-affairs", "market-regulation", "public-security"].into()
    );
    let policy_path = ex.dir.path().join("policy.toml");
    let digest = huitong_audit::record::file_digest(&std::fs::read(&policy_path).unwrap());
    let loads = of_kind(&ex, "policy_reloaded").await;
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert_eq!(loads[0].digest, digest);
    let expiry = wait_for_kind(&ex, "grant_expired", |r| r.consumer == "taxation").await;
    assert_eq!(expiry.resource, REGISTER);

    // A reload on SIGHUP is recorded with the new file's digest; a broken file is recorded as
    // a failed reload and changes nothing.
    let mut text = std::fs::read_to_string(&policy_path).unwrap();
    text.push_str("\n# reviewed 2026-12-02\n");
    std::fs::write(&policy_path, &text).unwrap();
    let new_digest = huitong_audit::record::file_digest(text.as_bytes());
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &ex.broker_pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    hup();
    let reload = wait_for_kind(&ex, "policy_reloaded", |r| r.digest == new_digest).await;
    assert_eq!(reload.outcome, "done");
    std::fs::write(&policy_path, "[[grants]]\nconsumer = \n").unwrap();
    hup();
    let failed = wait_for_kind(&ex, "policy_reloaded", |r| r.outcome == "failed").await;
    assert!(failed.detail.contains("NOT reloaded"), "{}", failed.detail);
    std::fs::write(&policy_path, &text).unwrap();
    let mut c = ex.consumer("civil-affairs").await;
    c.query(marriage_check(&ex.person(0))).await.unwrap();

    // A revoked certificate is recorded with its serial as soon as the broker sees the list.
    let listed_before = of_kind(&ex, "certificate_revoked").await.len();
    let mut opts = pki::IssueOptions::new(
        huitong_core::DeptId::new("market-regulation").unwrap(),
        Role::Consumer,
    );
    opts.replace = true;
    pki::issue(&ex.pki(), &opts).unwrap();
    let cert = ex.pki().join("market-regulation-consumer.pem");
    pki::revoke(&ex.pki(), &cert, "key-compromise").unwrap();
    let mut revoked = None;
    for _ in 0..100 {
        let now = of_kind(&ex, "certificate_revoked").await;
        if now.len() > listed_before {
            revoked = now.last().cloned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let revoked = revoked.expect("the revocation was not recorded within 10 s");
    assert!(revoked.detail.contains("serial"), "{}", revoked.detail);
    assert!(revoked.reason.contains("ompromise"), "{}", revoked.reason);
    let crl = std::fs::read(ex.pki().join("crl.pem")).unwrap();
    assert_eq!(revoked.digest, huitong_audit::record::file_digest(&crl));

    // A restart records nothing twice: the same departments, file and list as before.
    let before = entries(&ex, ListEntriesRequest::default()).await.len();
    ex.restart_broker();
    let after = entries(&ex, ListEntriesRequest::default()).await;
    let governance_after: Vec<_> = after[before..]
        .iter()
        .map(|e| e.record.clone().unwrap())
        .filter(|r| !huitong_audit::record::kind::is_exchange(&r.kind))
        .collect();
    // The file was rewritten with the same bytes as the last successful reload; the failed
    // reload's broken file is not what is recorded as in force.
    assert!(governance_after.is_empty(), "{governance_after:?}");
    let q: Query = marriage_check(&ex.person(1));
    ex.consumer("civil-affairs").await.query(q).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_are_found_by_official_and_by_case() {
    let ex = Exchange::start("");
    let mut c = ex.consumer("civil-affairs").await;
    for (i, (official, case)) in [
        ("MZ-0007", "HY-2026-0001"),
        ("MZ-0007", "HY-2026-0002"),
        ("MZ-0099", "HY-2026-0002"),
    ]
    .iter()
    .enumerate()
    {
        c.query(
            marriage_check(&ex.person(i))
                .official(official)
                .case_ref(case),
        )
        .await
        .unwrap();
    }
    let by_official = entries(
        &ex,
        ListEntriesRequest {
            consumer: "civil-affairs".into(),
            official: "MZ-0007".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_official.len(), 2);
    let by_case = entries(
        &ex,
        ListEntriesRequest {
            case_ref: "HY-2026-0002".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_case.len(), 2);
    let both = entries(
        &ex,
        ListEntriesRequest {
            consumer: "civil-affairs".into(),
            official: " MZ-0099 ".into(),
            case_ref: "HY-2026-0002".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(both.len(), 1);
    // Another department's official of the same id is someone else.
    let other = entries(
        &ex,
        ListEntriesRequest {
            consumer: "market-regulation".into(),
            official: "MZ-0007".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(other.is_empty());

    // An official without the consumer cannot be matched: the answer says what to add.
    let err = auditor(&ex)
        .await
        .entries(ListEntriesRequest {
            official: "MZ-0007".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let ClientError::Status(s) = err else {
        panic!("not a status")
    };
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("consumer"), "{}", s.message());
    let (ok, out, err) = cli_as_auditor(
        &ex,
        "audit",
        &[
            "entries",
            "--consumer",
            "civil-affairs",
            "--official",
            "MZ-0007",
            "--case",
            "HY-2026-0001",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains("\"kind\"")).count(),
        1,
        "{out}"
    );
}
