//! The exchange log end to end: every exchange recorded before its answer leaves, receipts
//! that prove inclusion, subject reports, offline verification that names the first bad entry,
//! watching checkpoints, and crash safety under SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use huitong_client::{Audit, ListEntriesRequest, Query};
use huitong_tests::{Exchange, MARRIAGE, Role, TempDir, huitong_bin, marriage_check, sample};

const REGISTER: &str = "public-security/household-register";

async fn auditor(ex: &Exchange) -> Audit {
    Audit::connect(
        &ex.broker.endpoint(),
        &ex.identity("discipline-inspection", Role::Auditor),
    )
    .await
    .unwrap()
}

async fn log_key(ex: &Exchange) -> String {
    auditor(ex).await.checkpoint().await.unwrap().verifier_key
}

/// Runs `huitong audit ...` as the auditor.
fn audit_cli(ex: &Exchange, args: &[&str]) -> (bool, String, String) {
    let id = ex.identity("discipline-inspection", Role::Auditor);
    let (sub, rest) = args.split_first().unwrap();
    let out = Command::new(huitong_bin())
        .arg("audit")
        .arg(sub)
        .args(["--broker", &ex.broker.endpoint()])
        .arg("--ca")
        .arg(&id.ca)
        .arg("--cert")
        .arg(&id.cert)
        .args(rest)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify(dir: &Path, key: &str) -> (bool, String) {
    let out = Command::new(huitong_bin())
        .args(["audit", "verify", dir.to_str().unwrap(), "--log-key", key])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_carries_a_receipt_that_proves_inclusion() {
    let ex = Exchange::start("");
    let key = log_key(&ex).await;
    let mut c = ex.consumer("civil-affairs").await;
    let mut receipts = Vec::new();
    for i in 0..5 {
        let answer = c.query(marriage_check(&ex.person(i))).await.unwrap();
        receipts.push(answer.receipt.expect("an answer without a receipt"));
    }
    let indexes: HashSet<u64> = receipts.iter().map(|r| r.index).collect();
    assert_eq!(indexes.len(), 5);
    let mut audit = Audit::connect(
        &ex.broker.endpoint(),
        &ex.identity("civil-affairs", Role::Consumer),
    )
    .await
    .unwrap();
    for r in &receipts {
        let size = audit.confirm(r, &key).await.unwrap();
        assert!(size > r.index);
    }
    // A forged receipt does not confirm.
    let mut forged = receipts[0].clone();
    forged.leaf_hash[0] ^= 1;
    assert!(audit.confirm(&forged, &key).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_exchanges_are_recorded_too() {
    let ex = Exchange::start("");
    let id = ex.person(0);
    let mut hr = ex.consumer("human-resources").await;
    let err = hr
        .query(
            Query::by_key(REGISTER, "id_number", id.as_str())
                .fields(["name"])
                .purpose("employment screening"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied));
    let entries = auditor(&ex)
        .await
        .entries(ListEntriesRequest {
            consumer: "human-resources".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .entries;
    assert_eq!(entries.len(), 1);
    let r = entries[0].record.clone().unwrap();
    assert_eq!(r.outcome, "refused");
    assert_eq!(r.status_code, tonic::Code::PermissionDenied as i32);
    assert_eq!(r.purpose, "employment screening");
    assert!(r.fields.is_empty(), "nothing was released");
    assert!(r.refusal.contains("no grant"), "{}", r.refusal);
    assert_eq!(
        r.subject.len(),
        32,
        "the refused lookup still names its subject, hashed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_auditors_read_entries_and_subject_reports() {
    let ex = Exchange::start("");
    let mut consumer_view = Audit::connect(
        &ex.broker.endpoint(),
        &ex.identity("civil-affairs", Role::Consumer),
    )
    .await
    .unwrap();
    consumer_view.checkpoint().await.unwrap();
    let err = consumer_view
        .entries(ListEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied));
    assert!(err.to_string().contains("auditor"), "{err}");
    let err = consumer_view
        .subject_report(REGISTER, &[("id_number", "x")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subject_report_finds_every_access_to_that_person_and_nothing_else() {
    let ex = Exchange::start("");
    let (a, b) = (ex.person(10), ex.person(11));
    let mut civil = ex.consumer("civil-affairs").await;
    let mut market = ex.consumer("market-regulation").await;
    let mut hr = ex.consumer("human-resources").await;
    civil.query(marriage_check(&a)).await.unwrap();
    civil.query(marriage_check(&b)).await.unwrap();
    market
        .query(
            Query::by_key(REGISTER, "id_number", a.as_str())
                .fields(["status"])
                .purpose("营业执照登记 business licence registration"),
        )
        .await
        .unwrap();
    let _ = hr
        .query(
            Query::by_key(REGISTER, "id_number", a.as_str())
                .fields(["name"])
                .purpose("employment screening"),
        )
        .await;
    // Lower-case check letters and stray spaces are the same person.
    let report = auditor(&ex)
        .await
        .subject_report(
            REGISTER,
            &[("id_number", &format!(" {} ", a.to_lowercase()))],
        )
        .await
        .unwrap();
    let who: Vec<(String, String)> = report
        .entries
        .iter()
        .map(|e| {
            let r = e.record.clone().unwrap();
            (r.consumer, r.outcome)
        })
        .collect();
    assert_eq!(
        who,
        [
            ("civil-affairs".to_owned(), "answered".to_owned()),
            ("market-regulation".to_owned(), "answered".to_owned()),
            ("human-resources".to_owned(), "refused".to_owned()),
        ]
    );
    let report_b = auditor(&ex)
        .await
        .subject_report(REGISTER, &[("id_number", &b)])
        .await
        .unwrap();
    assert_eq!(report_b.entries.len(), 1);

    // The CLI shows the Data Tracker view.
    let (ok, out, err) = audit_cli(&ex, &["subject", &a]);
    assert!(ok, "{err}");
    assert!(
        out.contains("3 recorded accesses") && out.contains(MARRIAGE),
        "{out}"
    );
}

/// No identifier is stored in plain text anywhere under the broker's data directory, nor in
/// its log output.
#[tokio::test(flavor = "multi_thread")]
async fn no_plain_identifier_reaches_the_data_directory_or_the_logs() {
    let ex = Exchange::start("");
    let ids: Vec<String> = (20..25).map(|i| ex.person(i)).collect();
    let mut civil = ex.consumer("civil-affairs").await;
    for id in &ids {
        civil.query(marriage_check(id)).await.unwrap();
        let _ = civil
            .query(
                Query::by_key(REGISTER, "id_number", id.as_str())
                    .fields(["ethnicity"])
                    .purpose(MARRIAGE),
            )
            .await;
    }
    auditor(&ex).await.checkpoint().await.unwrap();
    let data = ex.dir.path().join("broker-test.toml-data");
    let mut files = 0;
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&p).unwrap();
            for id in &ids {
                assert!(
                    !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
                    "{} holds an identifier in plain text",
                    p.display()
                );
            }
        }
    }
    assert!(
        files >= 3,
        "expected the log's files under {}",
        data.display()
    );
    let logs = ex.broker.stderr();
    for id in &ids {
        assert!(
            !logs.contains(id.as_str()),
            "the broker logged an identifier"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_filter_and_export_as_json_and_csv() {
    let ex = Exchange::start("");
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..3 {
        civil.query(marriage_check(&ex.person(i))).await.unwrap();
    }
    let _ = ex
        .consumer("human-resources")
        .await
        .query(marriage_check(&ex.person(4)))
        .await;
    // Queries only: the policy file's grants to civil affairs are entries of their own kind.
    let (ok, out, err) = audit_cli(
        &ex,
        &[
            "entries",
            "--consumer",
            "civil-affairs",
            "--kind",
            "query",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|l| l["consumer"] == "civil-affairs" && l["outcome"] == "answered")
    );
    let (ok, out, err) = audit_cli(&ex, &["entries", "--outcome", "refused", "--csv"]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows[0].starts_with("index,time"), "{out}");
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[1].contains("human-resources"), "{out}");
    let (ok, out, _) = audit_cli(
        &ex,
        &[
            "entries",
            "--since",
            "2000-01-01",
            "--until",
            "2000-01-02",
            "--json",
        ],
    );
    assert!(ok);
    assert!(out.trim().is_empty(), "{out}");
}

fn frames(path: &Path) -> Vec<(usize, usize)> {
    let data = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let len = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        out.push((off, 8 + len));
        off += 8 + len;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_bundle_verifies_offline_and_tampering_names_the_first_bad_entry() {
    let ex = Exchange::start("");
    // What the broker recorded at start (departments, the policy file) comes first.
    let at_start = auditor(&ex).await.checkpoint().await.unwrap().tree_size;
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..8 {
        civil.query(marriage_check(&ex.person(i))).await.unwrap();
    }
    let key = log_key(&ex).await;
    let out = TempDir::new("export");
    let bundle = out.path().join("bundle");
    let (ok, _, err) = audit_cli(&ex, &["export", "--out", bundle.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, text) = verify(&bundle, &key);
    assert!(ok, "{text}");
    let total = at_start + 8;
    assert!(text.contains(&format!("OK: {total} entries")), "{text}");

    let entries = bundle.join("entries.log");
    let pristine = std::fs::read(&entries).unwrap();
    let spans = frames(&entries);

    // Flip one byte inside entry 5's record, fixing nothing else.
    let mut data = pristine.clone();
    data[spans[5].0 + 20] ^= 0x01;
    std::fs::write(&entries, &data).unwrap();
    let (ok, text) = verify(&bundle, &key);
    assert!(!ok && text.contains("entry 5"), "{text}");

    // Drop entry 3.
    let mut data = pristine[..spans[3].0].to_vec();
    data.extend_from_slice(&pristine[spans[4].0..]);
    std::fs::write(&entries, &data).unwrap();
    let (ok, text) = verify(&bundle, &key);
    assert!(!ok && text.contains("entry 3"), "{text}");

    // Swap entries 1 and 2.
    let mut data = pristine[..spans[1].0].to_vec();
    data.extend_from_slice(&pristine[spans[2].0..spans[2].0 + spans[2].1]);
    data.extend_from_slice(&pristine[spans[1].0..spans[1].0 + spans[1].1]);
    data.extend_from_slice(&pristine[spans[3].0..]);
    std::fs::write(&entries, &data).unwrap();
    let (ok, text) = verify(&bundle, &key);
    assert!(!ok && text.contains("entry 1"), "{text}");

    // A wrong log key.
    std::fs::write(&entries, &pristine).unwrap();
    let other = huitong_audit::note::Signer::generate("someone-else").unwrap();
    let (ok, text) = verify(&bundle, &other.verifier_key());
    assert!(!ok && text.contains("signature"), "{text}");

    // A later export proves the log only grew since the first.
    civil.query(marriage_check(&ex.person(9))).await.unwrap();
    let later = out.path().join("later");
    let previous = bundle.join("checkpoint.note");
    let (ok, _, err) = audit_cli(
        &ex,
        &[
            "export",
            "--out",
            later.to_str().unwrap(),
            "--previous",
            previous.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let (ok, text) = verify(&later, &key);
    assert!(
        ok && text.contains(&format!("extends the earlier checkpoint of {total}")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_follows_a_growing_log_and_alarms_on_a_rewritten_one() {
    let mut ex = Exchange::start("");
    let key = log_key(&ex).await;
    let state = TempDir::new("watch");
    let state_file = state.path().join("last.note");
    let mut civil = ex.consumer("civil-affairs").await;
    civil.query(marriage_check(&ex.person(0))).await.unwrap();
    let (ok, out, err) = audit_cli(
        &ex,
        &[
            "watch",
            "--log-key",
            &key,
            "--count",
            "1",
            "--state",
            state_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}\n{out}");
    civil.query(marriage_check(&ex.person(1))).await.unwrap();
    let (ok, out, err) = audit_cli(
        &ex,
        &[
            "watch",
            "--log-key",
            &key,
            "--count",
            "2",
            "--interval",
            "100ms",
            "--state",
            state_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}\n{out}");
    assert!(out.contains("consistent with"), "{out}");

    // The operator replaces the log with a different history of the same length and key.
    ex.broker.kill();
    let log_dir = ex.dir.path().join("broker-test.toml-data/log");
    let key_file = std::fs::read(log_dir.join("log.key")).unwrap();
    std::fs::remove_dir_all(&log_dir).unwrap();
    std::fs::create_dir_all(&log_dir).unwrap();
    std::fs::write(log_dir.join("log.key"), key_file).unwrap();
    ex.restart_broker();
    let mut hr = ex.consumer("human-resources").await;
    for i in 0..3 {
        let _ = hr.query(marriage_check(&ex.person(i))).await;
    }
    let (ok, out, _) = audit_cli(
        &ex,
        &[
            "watch",
            "--log-key",
            &key,
            "--count",
            "1",
            "--state",
            state_file.to_str().unwrap(),
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("ALARM"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn old_subject_keys_are_destroyed_under_retention_and_the_log_still_verifies() {
    let ex = Exchange::start("subject_key_retention_months = 12");
    let mut civil = ex.consumer("civil-affairs").await;
    civil.query(marriage_check(&ex.person(0))).await.unwrap();
    // A key from long ago, as if the log had run for years.
    let keys = ex.dir.path().join("broker-test.toml-data/log/subject-keys");
    assert!(keys.is_dir(), "no subject keys at {}", keys.display());
    std::fs::write(keys.join("2020-01.key"), [7u8; 32]).unwrap();
    let mut ex = ex;
    ex.restart_broker();
    // Retention runs at start-up, then daily.
    let mut destroyed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !keys.join("2020-01.key").exists() {
            destroyed = true;
            break;
        }
    }
    assert!(
        destroyed,
        "the 2020-01 subject key outlived the retention period"
    );
    let report = auditor(&ex)
        .await
        .subject_report(REGISTER, &[("id_number", &ex.person(0))])
        .await
        .unwrap();
    assert_eq!(report.unlinkable_periods, ["2020-01"]);
    assert_eq!(report.entries.len(), 1, "this month's key is kept");
}

/// Kills the broker with SIGKILL at random moments under concurrent load, restarts it, and
/// checks that every receipt a consumer received is in the log with a valid inclusion proof and
/// that the whole log verifies.
#[tokio::test(flavor = "multi_thread")]
async fn receipts_survive_sigkill_under_concurrent_load() {
    let mut ex = Exchange::start("checkpoint_interval_seconds = 1");
    let ids: Arc<Vec<String>> = Arc::new((0..50).map(|i| ex.person(i)).collect());
    let mut received = Vec::new();
    let mut key = None;
    let rounds: u64 = std::env::var("HUITONG_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for round in 0..rounds {
        if key.is_none() {
            key = Some(log_key(&ex).await);
        }
        let endpoint = ex.broker.endpoint();
        let identity = ex.identity("civil-affairs", Role::Consumer);
        let mut workers = Vec::new();
        for w in 0..16 {
            let endpoint = endpoint.clone();
            let identity = identity.clone();
            let ids = Arc::clone(&ids);
            workers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let Ok(mut c) = huitong_client::Client::connect(&endpoint, &identity).await else {
                    return got;
                };
                for i in 0.. {
                    match c.query(marriage_check(&ids[(w * 7 + i) % ids.len()])).await {
                        Ok(a) => got.push(a.receipt.unwrap()),
                        Err(_) => break,
                    }
                }
                got
            }));
        }
        // A different moment each round, from a few ms to ~0.6 s into the load.
        let pause = 5 + (round * 97 + 13) % 600;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        ex.broker.kill();
        for w in workers {
            received.extend(w.await.unwrap());
        }
        ex.restart_broker();
    }
    assert!(
        received.len() > 50,
        "too little load got through: {}",
        received.len()
    );
    let key = key.unwrap();
    let mut audit = Audit::connect(
        &ex.broker.endpoint(),
        &ex.identity("civil-affairs", Role::Consumer),
    )
    .await
    .unwrap();
    let indexes: HashSet<u64> = received.iter().map(|r| r.index).collect();
    assert_eq!(indexes.len(), received.len(), "two receipts share an index");
    for r in &received {
        audit.confirm(r, &key).await.unwrap_or_else(|e| {
            panic!(
                "receipt {} is not provably in the log after the crashes: {e}",
                r.index
            )
        });
    }
    let out = TempDir::new("crash-export");
    let bundle = out.path().join("bundle");
    let (ok, _, err) = audit_cli(&ex, &["export", "--out", bundle.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, text) = verify(&bundle, &key);
    assert!(ok, "{text}");
}

/// A log bigger than one answer can carry comes in pages that each fit tonic's default 4 MiB
/// message limit, for entry listings and for subject reports alike, and the pages join up with
/// nothing missing or repeated.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_history_comes_in_pages_that_fit_the_default_message_limit() {
    const WORKERS: usize = 16;
    const PER_WORKER: usize = 400;
    let ex = Exchange::start("");
    let person = Arc::new(ex.person(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let mut c = ex.consumer("civil-affairs").await;
        let person = Arc::clone(&person);
        workers.push(tokio::spawn(async move {
            for _ in 0..PER_WORKER {
                c.query(marriage_check(&person)).await.unwrap();
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let total = (WORKERS * PER_WORKER) as u64;
    let mut audit = auditor(&ex).await;

    let first = audit
        .entries(ListEntriesRequest {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        (first.entries.len() as u64) < total,
        "{} entries in one answer: the size bound did not cut the page",
        first.entries.len()
    );
    assert_eq!(first.next_start, first.entries.last().unwrap().index + 1);
    let mut indexes: Vec<u64> = first.entries.iter().map(|e| e.index).collect();
    let mut start = first.next_start;
    while start != 0 {
        let page = audit
            .entries(ListEntriesRequest {
                start,
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        indexes.extend(page.entries.iter().map(|e| e.index));
        start = page.next_start;
    }
    let size = audit.checkpoint().await.unwrap().tree_size;
    assert!(size >= total);
    assert_eq!(indexes, (0..indexes.len() as u64).collect::<Vec<_>>());
    assert!(indexes.len() as u64 >= total);

    let report = audit
        .subject_report(REGISTER, &[("id_number", person.as_str())])
        .await
        .unwrap();
    let mut seen: Vec<u64> = report.entries.iter().map(|e| e.index).collect();
    assert_eq!(seen.len() as u64, total, "every access, across pages");
    seen.dedup();
    assert_eq!(seen.len() as u64, total, "no entry twice");
}

/// Civil affairs may search the register by marital status (the demo's own grant P-1 is for key
/// lookups only).
const CIVIL_SEARCH: &str = r#"
[[grants]]
consumer = "civil-affairs"
resource = "public-security/household-register"
fields = ["name", "birth_date", "gender", "marital_status"]
purposes = ["婚姻登记 marriage registration"]
expires = "2099-12-31"
lookup = "search"
"#;

/// The hole a new user found: a filter query released hundreds of people and none of them
/// showed in their subject report. Now every record released is recorded by its subject, on
/// every page, whatever fields the consumer asked for, with who asked and for which case.
#[tokio::test(flavor = "multi_thread")]
async fn a_person_released_on_page_three_of_a_search_is_in_their_report_with_official_and_case() {
    // The demo's marriage grant allows key lookups only; this search needs a grant that says
    // lookup = "search".
    let ex = Exchange::start_with_policy("", CIVIL_SEARCH);
    let people = ex.records("household-register.jsonl");
    let mut civil = ex.consumer("civil-affairs").await;
    let search = |token: &str| {
        Query::search(REGISTER)
            .filter("marital_status", "married")
            .fields(["name", "birth_date", "gender"])
            .purpose(MARRIAGE)
            .official("clerk-0042")
            .case_ref("HY-2026-1202-0007")
            .page_size(5)
            .page_token(token)
    };
    let mut token = String::new();
    let mut page3 = None;
    for page in 1..=3 {
        let answer = civil.query(search(&token)).await.unwrap();
        assert_eq!(answer.records.len(), 5, "page {page} should be full");
        token = answer.next_page_token.clone();
        if page == 3 {
            page3 = Some(answer);
        }
    }
    let page3 = page3.unwrap();
    let index = page3.receipt.as_ref().unwrap().index;
    // The consumer never saw an ID number; the test finds the people from the data file.
    let reached: Vec<String> = page3
        .records
        .iter()
        .filter_map(|r| {
            let same: Vec<_> = people
                .iter()
                .filter(|p| {
                    p["marital_status"] == "married"
                        && ["name", "birth_date", "gender"]
                            .iter()
                            .all(|f| p[*f] == r.fields[*f].to_json())
                })
                .collect();
            (same.len() == 1).then(|| same[0]["id_number"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(
        !reached.is_empty(),
        "no uniquely identifiable person on page 3"
    );
    let mut audit = auditor(&ex).await;
    for id in &reached {
        let report = audit.person_report(id, None).await.unwrap();
        let e = report
            .entries
            .iter()
            .find(|e| e.index == index)
            .unwrap_or_else(|| panic!("page 3 (entry {index}) is missing from a report"));
        let r = e.record.clone().unwrap();
        assert_eq!(r.consumer, "civil-affairs");
        assert_eq!(r.purpose, MARRIAGE);
        assert_eq!(r.case_ref, "HY-2026-1202-0007");
        assert_eq!(r.official.len(), 32, "the official is recorded as its HMAC");
        assert_eq!(r.fields, ["name", "birth_date", "gender"]);
        assert_eq!(r.selected_by, ["marital_status"]);
        assert!(r.time_micros > 0);
        assert!(report.resources.iter().any(|res| res == REGISTER));
    }
    // Someone no page released is not in that entry's reach.
    let other = people
        .iter()
        .find(|p| p["marital_status"] == "single")
        .unwrap()["id_number"]
        .as_str()
        .unwrap()
        .to_owned();
    let report = audit.person_report(&other, None).await.unwrap();
    assert!(report.entries.iter().all(|e| e.index != index));

    // The CLI finds the person by the identifier alone, across resources.
    let (ok, out, err) = audit_cli(&ex, &["subject", &reached[0]]);
    assert!(ok, "{err}");
    assert!(
        out.contains("search") && out.contains("HY-2026-1202-0007"),
        "{out}"
    );

    // The official's id is nowhere in the data directory, nor the case-insensitive ID numbers
    // of the people reached.
    let data = ex.dir.path().join("broker-test.toml-data");
    assert!(
        data.join("log").is_dir(),
        "no data directory at {}",
        data.display()
    );
    let mut hits = Vec::new();
    grep_dir(&data, b"clerk-0042", &mut hits);
    for id in &reached {
        grep_dir(&data, id.as_bytes(), &mut hits);
    }
    assert!(hits.is_empty(), "found in plain text: {hits:?}");
}

fn grep_dir(dir: &Path, needle: &[u8], hits: &mut Vec<String>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for e in read.flatten() {
        let p = e.path();
        if p.is_dir() {
            grep_dir(&p, needle, hits);
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(p.display().to_string());
        }
    }
}

/// Runs `huitong audit ...` as the auditor with extra environment variables.
fn audit_cli_env(ex: &Exchange, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let id = ex.identity("discipline-inspection", Role::Auditor);
    let (sub, rest) = args.split_first().unwrap();
    let out = Command::new(huitong_bin())
        .envs(env.iter().copied())
        .arg("audit")
        .arg(sub)
        .args(["--broker", &ex.broker.endpoint()])
        .arg("--ca")
        .arg(&id.ca)
        .arg("--cert")
        .arg(&id.cert)
        .args(rest)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `--start` a text or CSV notice tells the reader to continue with.
fn continue_at(text: &str) -> u64 {
    let at = text
        .find("continue with --start ")
        .unwrap_or_else(|| panic!("no continuation in {text}"));
    text[at + "continue with --start ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_cut_by_limit_says_so_in_every_format() {
    let ex = Exchange::start("");
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..5 {
        civil.query(marriage_check(&ex.person(i))).await.unwrap();
    }
    // Another consumer's entries in between, so that the next start is not just the count.
    let _ = ex
        .consumer("human-resources")
        .await
        .query(marriage_check(&ex.person(6)))
        .await;
    civil.query(marriage_check(&ex.person(7))).await.unwrap();
    // Queries only: the broker's own entries at start name civil affairs too.
    let filter = ["entries", "--consumer", "civil-affairs", "--kind", "query"];
    let (ok, out, err) = audit_cli(&ex, &[&filter[..], &["--json"]].concat());
    assert!(ok, "{err}");
    let all: Vec<u64> = json_lines(&out)
        .iter()
        .map(|l| l["index"].as_u64().unwrap())
        .collect();
    assert_eq!(all.len(), 6, "{out}");

    // Text: the entries, then a closing line that says how to continue.
    let (ok, out, err) = audit_cli(&ex, &[&filter[..], &["--limit", "2"]].concat());
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[2].contains("stopped at --limit 2"), "{out}");
    let text_next = continue_at(lines[2]);
    assert_eq!(text_next, all[1] + 1);

    // JSON lines: the entries, then one object that is not an entry.
    let (ok, out, err) = audit_cli(&ex, &[&filter[..], &["--limit", "2", "--json"]].concat());
    assert!(ok, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[..2].iter().all(|l| l["index"].is_u64()));
    let last = &lines[2];
    assert_eq!(last["truncated"], true, "{last}");
    assert_eq!(last["limit"], 2);
    assert!(
        last.get("index").is_none(),
        "the notice passes for an entry"
    );
    assert_eq!(last["next_start"].as_u64(), Some(text_next));

    // CSV: stdout stays plain CSV (header and rows); the notice is on stderr.
    let (ok, out, err) = audit_cli(&ex, &[&filter[..], &["--limit", "2", "--csv"]].concat());
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[0].starts_with("index,time,"), "{out}");
    assert!(!out.contains("stopped") && !out.contains('#'), "{out}");
    assert!(err.contains("stopped at --limit 2"), "{err}");
    assert_eq!(continue_at(&err), text_next);

    // Following the notices visits every entry once.
    let mut seen = Vec::new();
    let mut start = 0;
    loop {
        let (ok, out, err) = audit_cli(
            &ex,
            &[
                &filter[..],
                &["--limit", "2", "--json", "--start", &start.to_string()],
            ]
            .concat(),
        );
        assert!(ok, "{err}");
        let mut lines = json_lines(&out);
        let notice = lines
            .last()
            .filter(|l| l["truncated"] == true)
            .map(|l| l["next_start"].as_u64().unwrap());
        if notice.is_some() {
            lines.pop();
        }
        seen.extend(lines.iter().map(|l| l["index"].as_u64().unwrap()));
        match notice {
            Some(next) => start = next,
            None => break,
        }
    }
    assert_eq!(seen, all);

    // A listing that the limit does not cut says nothing of the kind, in any format.
    for format in [&[][..], &["--json"], &["--csv"]] {
        let (ok, out, err) = audit_cli(&ex, &[&filter[..], &["--limit", "6"], format].concat());
        assert!(ok, "{err}");
        assert!(
            !out.contains("truncated") && !out.contains("stopped"),
            "{out}"
        );
        assert!(!err.contains("stopped"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn text_and_csv_entries_carry_kind_reason_official_case_asked_masked_and_subjects() {
    let ex = Exchange::start("");
    let mut civil = ex.consumer("civil-affairs").await;
    civil
        .query(
            Query::by_key(REGISTER, "id_number", ex.person(0).as_str())
                .fields(["name", "address"])
                .purpose(MARRIAGE)
                .official("clerk-0042")
                .case_ref("HY-2026-1202-0007"),
        )
        .await
        .unwrap();
    let refused = ex
        .consumer("human-resources")
        .await
        .query(
            Query::by_key(REGISTER, "id_number", ex.person(1).as_str())
                .fields(["name", "marital_status"])
                .purpose("employment screening"),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(tonic::Code::PermissionDenied));
    let (ok, out, err) = audit_cli(&ex, &["entries", "--json"]);
    assert!(ok, "{err}");
    let json = json_lines(&out);
    let answered = json
        .iter()
        .find(|l| l["consumer"] == "civil-affairs" && l["kind"] == "query")
        .unwrap();
    let refusal = json
        .iter()
        .find(|l| l["consumer"] == "human-resources" && l["kind"] == "query")
        .unwrap();
    let official = answered["official"].as_str().unwrap();
    assert_eq!(official.len(), 64);
    let reason = refusal["refusal"].as_str().unwrap();
    assert!(!reason.is_empty());

    let (ok, out, err) = audit_cli(&ex, &["entries", "--kind", "query"]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.contains("civil-affairs")).unwrap();
    for want in [
        "query",
        "answered",
        "fields: name,address",
        "asked: name,address",
        "masked: address",
        &format!("official: {}", &official[..12]),
        "case: HY-2026-1202-0007",
        "subjects: 1",
    ] {
        assert!(line.contains(want), "{want:?} missing from {line}");
    }
    let line = out.lines().find(|l| l.contains("human-resources")).unwrap();
    for want in [
        "query",
        "refused",
        "fields: -",
        "asked: name,marital_status",
        "subjects: 0",
        &format!("reason: {reason}"),
    ] {
        assert!(line.contains(want), "{want:?} missing from {line}");
    }

    let (ok, out, err) = audit_cli(&ex, &["entries", "--kind", "query", "--csv"]);
    assert!(ok, "{err}");
    let mut rows = out.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    assert_eq!(
        header[..14],
        "index,time,request_id,consumer,provider,resource,purpose,fields,outcome,status_code,cache_hit,latency_micros,record_count,grant_id"
            .split(',')
            .collect::<Vec<_>>()[..],
        "the columns scripts already read stay where they were"
    );
    let rows: Vec<Vec<String>> = rows.map(csv_cells).collect();
    let col =
        |row: &[String], name: &str| row[header.iter().position(|h| *h == name).unwrap()].clone();
    let a = rows
        .iter()
        .find(|r| col(r, "consumer") == "civil-affairs")
        .unwrap();
    assert_eq!(col(a, "kind"), "query");
    assert_eq!(col(a, "official"), official);
    assert_eq!(col(a, "case_ref"), "HY-2026-1202-0007");
    assert_eq!(col(a, "fields_asked"), "name address");
    assert_eq!(col(a, "masked_fields"), "address");
    assert_eq!(col(a, "subject_count"), "1");
    let r = rows
        .iter()
        .find(|r| col(r, "consumer") == "human-resources")
        .unwrap();
    assert_eq!(col(r, "outcome"), "refused");
    assert_eq!(col(r, "refusal"), reason);
    assert_eq!(col(r, "fields_asked"), "name marital_status");
    assert_eq!(col(r, "subject_count"), "0");
}

/// The cells of one RFC 4180 row (no line breaks inside cells here).
fn csv_cells(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

#[tokio::test(flavor = "multi_thread")]
async fn times_take_any_rfc3339_offset_and_are_shown_in_the_display_zone() {
    let ex = Exchange::start("");
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..4 {
        civil.query(marriage_check(&ex.person(i))).await.unwrap();
        // Distinct microseconds, so that a time picks one entry.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let filter = ["entries", "--consumer", "civil-affairs", "--json"];
    let (ok, out, err) = audit_cli(&ex, &filter);
    assert!(ok, "{err}");
    let utc = json_lines(&out);
    assert!(
        utc.iter()
            .all(|l| l["time"].as_str().unwrap().ends_with('Z'))
    );

    let shanghai = [("HUITONG_DISPLAY_ZONE", "Asia/Shanghai")];
    let (ok, out, err) = audit_cli_env(&ex, &shanghai, &filter);
    assert!(ok, "{err}");
    let local = json_lines(&out);
    let t2 = local[2]["time"].as_str().unwrap().to_owned();
    assert!(t2.ends_with("+08:00"), "{t2}");
    assert_ne!(t2[..19], utc[2]["time"].as_str().unwrap()[..19]);
    // --zone wins over the environment; text shows the zone too.
    let (ok, out, err) = audit_cli_env(&ex, &shanghai, &["entries", "--zone", "UTC"]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .all(|l| l.contains("Z  ") && !l.contains("+08:00")),
        "{out}"
    );

    // A time written in +08:00 is the instant it names, whatever the display zone.
    for env in [&[][..], &shanghai[..]] {
        let (ok, out, err) = audit_cli_env(&ex, env, &[&filter[..], &["--since", &t2]].concat());
        assert!(ok, "{err}");
        let got: Vec<u64> = json_lines(&out)
            .iter()
            .map(|l| l["index"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = utc[2..]
            .iter()
            .map(|l| l["index"].as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "--since {t2}");
        let (ok, out, err) = audit_cli_env(&ex, env, &[&filter[..], &["--until", &t2]].concat());
        assert!(ok, "{err}");
        assert_eq!(json_lines(&out).len(), 2, "--until {t2}: {out}");
    }
    for (args, want) in [
        (
            &["--zone", "Asia/Shangai"][..],
            "not a zone in the tz database",
        ),
        (&["--since", "2026-12-02T00:00:00+8"], "RFC 3339"),
        (&["--until", "02/12/2026"], "RFC 3339"),
    ] {
        let (ok, _, err) = audit_cli(&ex, &[&filter[..], args].concat());
        assert!(!ok && err.contains(want), "{args:?}: {err}");
    }
}

/// A person reads `entries.jsonl`, not `entries.log`: an edit to what they read must fail
/// verification as surely as an edit to what is hashed, and name the entry.
#[tokio::test(flavor = "multi_thread")]
async fn editing_any_byte_of_a_readable_export_file_fails_verification_with_the_index() {
    let ex = Exchange::start("");
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..3 {
        civil.query(marriage_check(&ex.person(i))).await.unwrap();
    }
    let _ = ex
        .consumer("human-resources")
        .await
        .query(marriage_check(&ex.person(3)))
        .await;
    let key = log_key(&ex).await;
    let out = TempDir::new("readable");
    let first = out.path().join("first");
    let (ok, _, err) = audit_cli(&ex, &["export", "--out", first.to_str().unwrap()]);
    assert!(ok, "{err}");
    civil.query(marriage_check(&ex.person(4))).await.unwrap();
    // A second bundle with a consistency proof, the other readable file.
    let bundle = out.path().join("bundle");
    let previous = first.join("checkpoint.note");
    let (ok, _, err) = audit_cli(
        &ex,
        &[
            "export",
            "--out",
            bundle.to_str().unwrap(),
            "--previous",
            previous.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let (ok, text) = verify(&bundle, &key);
    assert!(ok, "{text}");
    let size = huitong_audit::bundle::verify(&bundle, &key)
        .unwrap()
        .entries;
    assert!(size >= 5);

    // Every byte of entries.jsonl: changed, it fails and names the entry of its line.
    let jsonl = bundle.join("entries.jsonl");
    let pristine = std::fs::read(&jsonl).unwrap();
    assert_eq!(
        pristine.iter().filter(|b| **b == b'\n').count() as u64,
        size,
        "one line per entry"
    );
    let mut line = 0u64;
    for at in 0..pristine.len() {
        let mut edited = pristine.clone();
        edited[at] ^= 0x01;
        std::fs::write(&jsonl, &edited).unwrap();
        let err = huitong_audit::bundle::verify(&bundle, &key)
            .expect_err("an edited entries.jsonl verified")
            .to_string();
        assert!(
            err.contains(&format!("line {} (entry {line})", line + 1)),
            "byte {at}: {err}"
        );
        if pristine[at] == b'\n' {
            line += 1;
        }
    }
    std::fs::write(&jsonl, &pristine).unwrap();

    // The same through the command, with what differs.
    let text_lines: Vec<&str> = std::str::from_utf8(&pristine).unwrap().lines().collect();
    let civil_line = text_lines
        .iter()
        .position(|l| l.contains("\"consumer\":\"civil-affairs\""))
        .unwrap();
    let mut edited: Vec<String> = text_lines.iter().map(|l| l.to_string()).collect();
    edited[civil_line] = edited[civil_line].replace("civil-affairs", "civil-affairx");
    std::fs::write(&jsonl, edited.join("\n") + "\n").unwrap();
    let (ok, text) = verify(&bundle, &key);
    assert!(!ok && text.contains("FAILED"), "{text}");
    assert!(
        text.contains(&format!("entry {civil_line}"))
            && text.contains("\"consumer\" reads \"civil-affairx\""),
        "{text}"
    );

    // Lines dropped, reordered or added.
    let write_lines = |lines: &[&str]| {
        let mut t = lines.join("\n");
        t.push('\n');
        std::fs::write(&jsonl, t).unwrap();
    };
    let mut dropped = text_lines.clone();
    dropped.remove(2);
    write_lines(&dropped);
    let (ok, text) = verify(&bundle, &key);
    assert!(
        !ok && text.contains("(entry 2)") && text.contains("line of entry 3"),
        "{text}"
    );
    let mut swapped = text_lines.clone();
    swapped.swap(0, 1);
    write_lines(&swapped);
    let (ok, text) = verify(&bundle, &key);
    assert!(
        !ok && text.contains("(entry 0)") && text.contains("line of entry 1"),
        "{text}"
    );
    let mut added = text_lines.clone();
    added.push(text_lines[0]);
    write_lines(&added);
    let (ok, text) = verify(&bundle, &key);
    assert!(
        !ok && text.contains(&format!("from line {} on", size + 1)),
        "{text}"
    );
    std::fs::write(&jsonl, &pristine).unwrap();

    // The other files a person reads: any byte changed fails.
    for name in ["consistency.json", "checkpoint.note"] {
        let path = bundle.join(name);
        let pristine = std::fs::read(&path).unwrap();
        for at in 0..pristine.len() {
            let mut edited = pristine.clone();
            edited[at] ^= 0x01;
            std::fs::write(&path, &edited).unwrap();
            assert!(
                huitong_audit::bundle::verify(&bundle, &key).is_err(),
                "{name}: byte {at} changed and the bundle still verifies"
            );
        }
        std::fs::write(&path, &pristine).unwrap();
    }

    // A byte of an entry's hashed data: the entry is named.
    let entries = bundle.join("entries.log");
    let data = std::fs::read(&entries).unwrap();
    let spans = frames(&entries);
    let mut edited = data.clone();
    edited[spans[3].0 + 12] ^= 0x01;
    std::fs::write(&entries, &edited).unwrap();
    let (ok, text) = verify(&bundle, &key);
    assert!(!ok && text.contains("entry 3"), "{text}");
    std::fs::write(&entries, &data).unwrap();

    // Without the file a person reads, the bundle is incomplete.
    std::fs::remove_file(&jsonl).unwrap();
    let (ok, text) = verify(&bundle, &key);
    assert!(!ok && text.contains("entries.jsonl"), "{text}");
    std::fs::write(&jsonl, &pristine).unwrap();

    // A file an export does not write cannot be vouched for.
    std::fs::write(bundle.join("summary.txt"), "all fine").unwrap();
    let (ok, text) = verify(&bundle, &key);
    assert!(!ok && text.contains("summary.txt"), "{text}");
    std::fs::remove_file(bundle.join("summary.txt")).unwrap();
    let (ok, text) = verify(&bundle, &key);
    assert!(ok, "{text}");
}

/// Runs `huitong <args>` with `dept`'s consumer certificate.
fn as_consumer(ex: &Exchange, dept: &str, args: &[&str]) -> (bool, String, String) {
    let id = ex.identity(dept, Role::Consumer);
    let (sub, rest) = args.split_first().unwrap();
    let mut cmd = Command::new(huitong_bin());
    cmd.arg(sub);
    if *sub == "audit" {
        cmd.arg(rest[0]);
    }
    cmd.args(["--broker", &ex.broker.endpoint()])
        .arg("--ca")
        .arg(&id.ca)
        .arg("--cert")
        .arg(&id.cert)
        .args(if *sub == "audit" { &rest[1..] } else { rest });
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_checks_its_receipt_from_the_command_line_and_a_wrong_leaf_hash_is_rejected() {
    let ex = Exchange::start("");
    let key = log_key(&ex).await;
    let id = ex.person(0);
    let (ok, answer, err) = as_consumer(
        &ex,
        "civil-affairs",
        &[
            "query",
            REGISTER,
            "--key",
            &format!("id_number={id}"),
            "--fields",
            "name",
            "--purpose",
            MARRIAGE,
        ],
    );
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let receipt = &json["receipts"][0];
    let index = receipt["index"].as_u64().unwrap();
    let leaf = receipt["leaf_hash"].as_str().unwrap().to_owned();
    let dir = TempDir::new("receipt");
    let saved = dir.path().join("answer.json");
    std::fs::write(&saved, &answer).unwrap();

    // What the query printed, checked with a consumer certificate.
    let (ok, out, err) = as_consumer(
        &ex,
        "civil-affairs",
        &[
            "audit",
            "receipt",
            "--log-key",
            &key,
            "--from",
            saved.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("OK: entry {index} (leaf {leaf})")),
        "{out}"
    );
    // The same receipt typed in.
    let (ok, out, err) = as_consumer(
        &ex,
        "civil-affairs",
        &[
            "audit",
            "receipt",
            "--log-key",
            &key,
            "--index",
            &index.to_string(),
            "--leaf-hash",
            &leaf,
        ],
    );
    assert!(ok && out.starts_with("OK:"), "{out}{err}");

    // A wrong leaf hash, another entry's leaf hash, an index past the log: not confirmed.
    let mut wrong = leaf.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    one_more_exchange(&ex).await;
    for (i, hash) in [
        (index.to_string(), wrong.as_str()),
        ((index + 1).to_string(), leaf.as_str()),
        ("999999".to_owned(), leaf.as_str()),
    ] {
        let (ok, out, err) = as_consumer(
            &ex,
            "civil-affairs",
            &[
                "audit",
                "receipt",
                "--log-key",
                &key,
                "--index",
                &i,
                "--leaf-hash",
                hash,
            ],
        );
        assert!(!ok, "entry {i} with leaf {hash} was confirmed: {out}");
        assert!(out.contains(&format!("FAILED: entry {i}")), "{out}{err}");
    }
    // The wrong log key: the checkpoint itself is not believed.
    let other = huitong_audit::note::Signer::generate("someone-else").unwrap();
    let (ok, out, _) = as_consumer(
        &ex,
        "civil-affairs",
        &[
            "audit",
            "receipt",
            "--log-key",
            &other.verifier_key(),
            "--from",
            saved.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && out.contains("FAILED") && out.contains("checkpoint"),
        "{out}"
    );
    // Malformed input says what to give.
    let (ok, _, err) = as_consumer(
        &ex,
        "civil-affairs",
        &[
            "audit",
            "receipt",
            "--log-key",
            &key,
            "--index",
            "0",
            "--leaf-hash",
            "abc",
        ],
    );
    assert!(!ok && err.contains("64 hex digits"), "{err}");
    // Consumers check receipts; they still cannot list the log.
    let (ok, _, err) = as_consumer(&ex, "civil-affairs", &["audit", "entries"]);
    assert!(!ok && err.contains("auditor"), "{err}");
}

/// One more exchange, so that the entry after a receipt exists.
async fn one_more_exchange(ex: &Exchange) {
    ex.consumer("civil-affairs")
        .await
        .query(marriage_check(&ex.person(1)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_count_who_exchanged_with_whom_and_alerts_flag_the_bulk_reader() {
    let metrics_port = huitong_tests::free_port();
    let ex = Exchange::start(&format!(
        "metrics_listen = \"127.0.0.1:{metrics_port}\"\n\n[alerts]\nsubjects_per_hour = 5\nrefusals_per_hour = 1"
    ));
    // Civil affairs looks up eight people (one twice) and one ID number nobody holds.
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..8 {
        civil.query(marriage_check(&ex.person(i))).await.unwrap();
    }
    civil.query(marriage_check(&ex.person(0))).await.unwrap();
    let err = civil
        .query(marriage_check("110105190001010000"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::NotFound));
    // Market regulation looks up two, human resources is refused twice.
    let mut market = ex.consumer("market-regulation").await;
    for i in 0..2 {
        market
            .query(
                Query::by_key(REGISTER, "id_number", ex.person(i).as_str())
                    .fields(["status"])
                    .purpose("营业执照登记 business licence registration"),
            )
            .await
            .unwrap();
    }
    let mut hr = ex.consumer("human-resources").await;
    for i in 0..2 {
        assert!(hr.query(marriage_check(&ex.person(i))).await.is_err());
    }

    // Text: one aligned row per consumer × provider × resource × kind.
    let (ok, text, err) = audit_cli(&ex, &["stats", "--since", "2000-01-01"]);
    assert!(ok, "{err}");
    let row = |consumer: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|w| w.len() == 10 && w[0] == consumer && w[2] == REGISTER)
            .unwrap_or_else(|| panic!("no row for {consumer} in\n{text}"))
    };
    let counts = |w: Vec<String>| w[3..].join(" ");
    // kind total answered not_found refused failed records
    assert_eq!(counts(row("civil-affairs")), "query 10 9 1 0 0 9", "{text}");
    assert_eq!(
        counts(row("market-regulation")),
        "query 2 2 0 0 0 2",
        "{text}"
    );
    assert_eq!(
        counts(row("human-resources")),
        "query 2 0 0 2 0 0",
        "{text}"
    );
    assert!(
        text.contains("10.0 %"),
        "civil affairs' not-found rate: {text}"
    );
    assert!(text.contains("PERMISSION_DENIED"), "{text}");

    // JSON: the same numbers, with distinct people per consumer.
    let (ok, json, err) = audit_cli(&ex, &["stats", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let consumer = |name: &str| {
        v["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["consumer"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .clone()
    };
    let civil = consumer("civil-affairs");
    assert_eq!(civil["subjects_reached"], 8, "{civil}");
    assert_eq!(
        civil["subjects_asked"], 9,
        "the unknown ID counts as asked: {civil}"
    );
    assert_eq!(civil["not_found"], 1);
    assert_eq!(consumer("market-regulation")["subjects_reached"], 2);
    let hr = consumer("human-resources");
    assert_eq!(
        (hr["refused"].clone(), hr["subjects_reached"].clone()),
        (2.into(), 0.into())
    );
    let refusal = &v["refusals"][0];
    assert_eq!(refusal["consumer"], "human-resources");
    assert_eq!(refusal["count"], 2);
    assert!(
        refusal["reason"].as_str().unwrap().contains("no grant"),
        "{refusal}"
    );
    let latency = &v["latency"][0];
    assert_eq!(latency["count"], 12, "routed queries: {latency}");
    assert!(latency["max_micros"].as_u64().unwrap() >= latency["p50_micros"].as_u64().unwrap());

    // CSV, narrowed to one consumer; a period before the exchanges holds nothing.
    let (ok, csv, err) = audit_cli(&ex, &["stats", "--csv", "--consumer", "civil-affairs"]);
    assert!(ok, "{err}");
    assert!(
        csv.contains(&format!(
            "exchanges,civil-affairs,public-security,{REGISTER},query,,,,not_found,1\n"
        )),
        "{csv}"
    );
    assert!(
        csv.contains("consumers,civil-affairs,,,,,,,subjects_reached,8\n"),
        "{csv}"
    );
    assert!(!csv.contains("market-regulation"), "{csv}");
    let (ok, text, err) = audit_cli(&ex, &["stats", "--until", "2000-01-01"]);
    assert!(ok, "{err}");
    assert!(text.contains("No exchange entries"), "{text}");

    // Alerts: civil affairs named nine people within the hour (threshold 5), human resources
    // was refused twice (threshold 1); market regulation stayed under both.
    let (ok, json, err) = audit_cli(
        &ex,
        &[
            "alerts",
            "--subjects-per-hour",
            "5",
            "--refusals-per-hour",
            "1",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let flagged: Vec<(String, String, u64)> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["consumer"].as_str().unwrap().to_owned(),
                a["kind"].as_str().unwrap().to_owned(),
                a["peak"]["value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flagged,
        [
            ("civil-affairs".into(), "subjects_per_hour".into(), 9),
            ("human-resources".into(), "refusals_per_hour".into(), 2),
        ]
    );
    let (ok, text, err) = audit_cli(&ex, &["alerts", "--subjects-per-hour", "5"]);
    assert!(ok, "{err}");
    let over: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Consumers over a threshold"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(over.len(), 3, "header line, table header, one row: {text}");
    assert!(over[2].trim_start().starts_with("civil-affairs"), "{text}");
    let (ok, csv, err) = audit_cli(&ex, &["alerts", "--subjects-per-hour", "10", "--csv"]);
    assert!(ok, "{err}");
    assert_eq!(csv.lines().count(), 1, "nobody named more than 10: {csv}");
    let (ok, _, err) = audit_cli(&ex, &["alerts"]);
    assert!(!ok && err.contains("--subjects-per-hour"), "{err}");

    // The broker's metrics apply the same rule as the entries are recorded.
    let m = huitong_tests::http_get(&format!("127.0.0.1:{metrics_port}"), "/metrics");
    let alert = |consumer: &str, kind: &str| {
        sample(
            &m,
            &[
                "huitong_alert_active{",
                &format!("consumer=\"{consumer}\""),
                &format!("kind=\"{kind}\""),
            ],
        )
    };
    assert_eq!(
        alert("civil-affairs", "subjects_per_hour"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        alert("market-regulation", "subjects_per_hour"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        alert("human-resources", "refusals_per_hour"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        alert("civil-affairs", "refusals_per_hour"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &[
                "huitong_consumer_subjects_last_hour{",
                "consumer=\"civil-affairs\""
            ]
        ),
        Some(9.0),
        "{m}"
    );
    assert!(
        !m.lines().any(|l| l.contains(&ex.person(0))),
        "no subject id in the metrics"
    );
}
