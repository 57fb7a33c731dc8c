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
use huitong_tests::{Exchange, MARRIAGE, Role, TempDir, huitong_bin, marriage_check};

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
    let (ok, out, err) = audit_cli(&ex, &["entries", "--consumer", "civil-affairs", "--json"]);
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
    assert!(text.contains("OK: 8 entries"), "{text}");

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
        ok && text.contains("extends the earlier checkpoint of 8"),
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
