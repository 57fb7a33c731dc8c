//! Hostile cases: personal data at rest in the data directory.
//!
//! The attacker here holds a copy of the exchange's directories (a stolen backup, a disk taken
//! out of service, an operator's `cp -r`) and searches it for the people whose records passed
//! through the exchange.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::{Duration, Instant};

use huitong_client::{ClientError, Subscribe, Subscription};
use huitong_tests::parcels::{Parcels, Setup};
use huitong_tests::{TempDir, huitong_bin, read_jsonl};
use tonic::Code;

/// After the demo's whole walkthrough (queries, access requests approved and denied, the death
/// that reaches two departments as change events through their subscriptions, the audit), no id
/// number or name of anyone in the demo's register is in any file of the exchange's directory:
/// not the broker's data directory (event log, subscriptions, policy store, exchange log and
/// its index, keys) and not anything an adapter wrote. Searched as UTF-8, UTF-16 (both byte
/// orders), hex (both cases), base64 (standard and URL-safe, all three alignments), the
/// protobuf string encoding and JSON `\u` escapes.
///
/// Left out, explicitly: the departments' own source files (the JSON Lines records each
/// adapter config names as its `path`), which are the departments' data, not the exchange's.
#[test]
fn no_identifier_or_name_from_the_demo_is_at_rest_in_any_encoding() {
    let dir = TempDir::new("at-rest");
    let exchange = dir.path().join("exchange");
    let out = Command::new(huitong_bin())
        .args(["demo", "--persons", "600", "--dir"])
        .arg(&exchange)
        .env("HUITONG_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("0 surprises"), "{stdout}");
    // The death reached both subscribers as change events: the event log was used.
    assert_eq!(
        stdout.matches("receives event").count(),
        2,
        "the death scene did not deliver two events:\n{stdout}"
    );
    assert!(exchange.join("broker-data/events.sled").exists());

    let sources = source_files(&exchange);
    assert!(
        sources
            .iter()
            .any(|p| p.ends_with("household-register.jsonl")),
        "{sources:?}"
    );
    let register = read_jsonl(&exchange.join("household-register.jsonl"));
    assert_eq!(register.len(), 600);

    // Names also found in the exchange's own configuration (catalogue descriptions, policy,
    // legal bases) cannot be told apart from that text, so they are not searched for; id
    // numbers always are.
    let config_text: String = std::fs::read_dir(&exchange)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut people = Vec::new();
    let mut skipped_names = 0;
    for r in &register {
        people.push(r["id_number"].as_str().unwrap().to_owned());
        let name = r["name"].as_str().unwrap();
        if config_text.contains(name) {
            skipped_names += 1;
        } else {
            people.push(name.to_owned());
        }
    }
    assert!(
        skipped_names < 60,
        "{skipped_names} names occur in the configuration"
    );
    let needles = Needles::new(&people);

    let files = files_under(&exchange, &sources);
    assert!(
        files
            .iter()
            .any(|p| p.starts_with(exchange.join("broker-data/events.sled"))),
        "the event log's files were not searched"
    );
    let mut found = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for (what, encoding, offset) in needles.find_all(&bytes) {
            found.push(format!(
                "{} holds {what:?} as {encoding} at byte {offset}",
                file.strip_prefix(&exchange).unwrap().display()
            ));
        }
    }
    assert!(
        found.is_empty(),
        "{} identifiers or names at rest, e.g.:\n{}",
        found.len(),
        found[..found.len().min(20)].join("\n")
    );
    for id in register.iter().map(|r| r["id_number"].as_str().unwrap()) {
        assert!(!stdout.contains(id) && !stderr.contains(id), "{id} printed");
    }
}

/// Health may follow parcel numbers only; nobody may receive owners (personal data).
const PARCEL_NUMBERS_ONLY: &str = r#"
[[grants]]
consumer = "health"
resource = "land-resources/parcels"
fields = ["parcel_no"]
purposes = ["property registration"]
expires = "2099-12-31"
"#;

/// Housing may also follow owners.
const OWNERS_TOO: &str = r#"
[[grants]]
consumer = "housing"
resource = "land-resources/parcels"
fields = ["parcel_no", "owner"]
purposes = ["property registration"]
expires = "2099-12-31"
"#;

fn subscribe_parcels(fields: &[&str]) -> Subscribe {
    Subscribe::new("land-resources/parcels")
        .fields(fields.iter().copied())
        .purpose("property registration")
}

async fn next_event(sub: &mut Subscription) -> huitong_proto::v1::Event {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("no event within 10 s")
        .unwrap()
        .event
        .unwrap()
}

/// A change is kept with only the fields some grant releases: while no grant releases owners,
/// a change's owner is not stored, so a grant approved later cannot bring it back; from the
/// reload on, owners are kept. The provider itself cannot subscribe to what is not kept.
#[tokio::test(flavor = "multi_thread")]
async fn the_event_log_keeps_only_fields_a_grant_releases_and_follows_the_policy() {
    let land = Parcels::conditional("land-resources");
    let s = Setup::start(&[&land], "", PARCEL_NUMBERS_ONLY).await;
    let mut health = s
        .consumer("health")
        .await
        .subscribe(subscribe_parcels(&["parcel_no"]))
        .await
        .unwrap();
    land.change_owner("P-1", "李四");
    assert_eq!(next_event(&mut health).await.sequence, 1);

    // Housing is granted owners; the broker reloads the policy file on SIGHUP.
    let policy = s.dir.path().join("policy.toml");
    std::fs::write(&policy, format!("{PARCEL_NUMBERS_ONLY}{OWNERS_TOO}")).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &s.broker.pid().to_string()])
        .status()
        .unwrap();
    let mut housing = s.consumer("housing").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sub = loop {
        match housing
            .subscribe(subscribe_parcels(&["parcel_no", "owner"]).after(0))
            .await
        {
            Ok(sub) => break sub,
            Err(ClientError::Status(st)) if st.code() == Code::PermissionDenied => {
                assert!(Instant::now() < deadline, "the reload never took: {st:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    // The change from before the grant was kept without its owner.
    let before = next_event(&mut sub).await;
    assert_eq!(before.sequence, 1);
    let fields = before.record.unwrap().fields;
    assert!(fields.contains_key("parcel_no"), "{fields:?}");
    assert!(!fields.contains_key("owner"), "{fields:?}");
    // A change from after it is kept with the owner.
    land.change_owner("P-2", "王五");
    let after = next_event(&mut sub).await;
    assert_eq!(after.sequence, 2);
    assert_eq!(
        after.record.unwrap().fields["owner"],
        huitong_client::Value::string("王五")
    );
    assert_eq!(next_event(&mut health).await.sequence, 2);
}

/// The provider may read its own resource whole, but the event log keeps only what grants
/// release: a subscription to other fields would never receive them, so it is refused, naming
/// them and what is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_to_fields_the_event_log_does_not_keep_is_refused() {
    let ex = huitong_tests::Exchange::start("");
    let mut police = ex.consumer("public-security").await;
    let refused = police
        .subscribe(
            Subscribe::new("public-security/household-register")
                .fields(["id_number", "ethnicity"])
                .purpose("户籍管理 household administration"),
        )
        .await;
    match refused {
        Err(ClientError::Status(st)) => {
            assert_eq!(st.code(), Code::FailedPrecondition, "{}", st.message());
            assert!(
                st.message().contains("keeps no ethnicity")
                    && st.message().contains("subscribe to id_number"),
                "{}",
                st.message()
            );
        }
        other => panic!("expected FAILED_PRECONDITION, got {:?}", other.map(|_| ())),
    }
    // What grants release, the provider may follow like anyone.
    police
        .subscribe(
            Subscribe::new("public-security/household-register")
                .fields(["id_number", "status"])
                .purpose("户籍管理 household administration"),
        )
        .await
        .unwrap();
}

/// The search itself finds every encoding it claims to, so the test above can fail.
#[test]
fn the_at_rest_search_finds_each_encoding_it_claims() {
    let id = "11010519491231002X";
    let name = "张国华";
    let needles = Needles::new(&[id.to_owned(), name.to_owned()]);
    for (what, encoding, bytes) in needles.all.iter() {
        for pad in 0..3 {
            let mut hay = vec![b'='; 5 + pad];
            hay.extend_from_slice(bytes);
            hay.extend_from_slice(b"==");
            let hits = needles.find_all(&hay);
            assert!(
                hits.iter()
                    .any(|(w, e, o)| w == what && e == encoding && *o == 5 + pad),
                "{what} as {encoding} not found"
            );
        }
    }
    // Base64 of a longer text that contains the id at each of the three alignments.
    for prefix in ["", "a", "ab"] {
        let text = format!("{prefix}{id}tail");
        let hay = base64(text.as_bytes(), STANDARD);
        assert!(
            needles
                .find_all(hay.as_bytes())
                .iter()
                .any(|(w, e, _)| w == id && e.starts_with("base64")),
            "the id after {prefix:?} is not found in {hay}"
        );
    }
    assert_eq!(base64(b"Man", STANDARD), "TWFu");
    assert_eq!(base64(b"\xfb\xff", URL_SAFE), "-_8=");
    assert!(needles.find_all(b"nothing of the kind here").is_empty());
}

/// The departments' source files: every `path = "..."` of the adapter configs.
fn source_files(exchange: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(exchange).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            if let Some(v) = line.trim().strip_prefix("path = ") {
                out.push(exchange.join(v.trim().trim_matches('"')));
            }
        }
    }
    out
}

fn files_under(root: &Path, except: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !except.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Shortest encoded form searched: anything shorter would match random bytes (ciphertext,
/// hashes) by chance. A two-character name in UTF-16 (4 bytes) is left to its other encodings.
const MIN_NEEDLE: usize = 6;

/// Every encoding of every searched text, indexed by its first bytes for a one-pass search.
struct Needles {
    /// (text, encoding, bytes).
    all: Vec<(String, String, Vec<u8>)>,
    by_prefix: HashMap<[u8; MIN_NEEDLE], Vec<usize>>,
}

impl Needles {
    fn new(texts: &[String]) -> Needles {
        let mut all = Vec::new();
        for t in texts {
            for (encoding, bytes) in encodings(t) {
                if bytes.len() >= MIN_NEEDLE {
                    all.push((t.clone(), encoding, bytes));
                }
            }
        }
        let mut by_prefix: HashMap<[u8; MIN_NEEDLE], Vec<usize>> = HashMap::new();
        for (i, (_, _, b)) in all.iter().enumerate() {
            by_prefix
                .entry(b[..MIN_NEEDLE].try_into().unwrap())
                .or_default()
                .push(i);
        }
        Needles { all, by_prefix }
    }

    /// (text, encoding, offset) of every occurrence in `hay`.
    fn find_all(&self, hay: &[u8]) -> Vec<(String, String, usize)> {
        let mut out = Vec::new();
        for (offset, w) in hay.windows(MIN_NEEDLE).enumerate() {
            let Some(list) = self.by_prefix.get(w) else {
                continue;
            };
            for &i in list {
                let (text, encoding, bytes) = &self.all[i];
                if hay[offset..].starts_with(bytes) {
                    out.push((text.clone(), encoding.clone(), offset));
                }
            }
        }
        out
    }
}

fn encodings(text: &str) -> Vec<(String, Vec<u8>)> {
    let utf8 = text.as_bytes().to_vec();
    let mut out = vec![
        ("UTF-8".to_owned(), utf8.clone()),
        (
            "UTF-16LE".to_owned(),
            text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        ),
        (
            "UTF-16BE".to_owned(),
            text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        ),
        (
            "hex".to_owned(),
            utf8.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        ),
        (
            "HEX".to_owned(),
            utf8.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
                .into_bytes(),
        ),
        // A protobuf string field: its length, then the UTF-8 (the tag byte varies by field).
        ("protobuf string".to_owned(), {
            let mut v = vec![u8::try_from(utf8.len()).unwrap()];
            v.extend_from_slice(&utf8);
            v
        }),
    ];
    if !text.is_ascii() {
        out.push((
            "JSON \\u escapes".to_owned(),
            text.encode_utf16()
                .map(|u| {
                    if u < 0x80 {
                        char::from(u as u8).to_string()
                    } else {
                        format!("\\u{u:04x}")
                    }
                })
                .collect::<String>()
                .into_bytes(),
        ));
    }
    // Base64 of the text starting at each of the three positions within a 3-byte group: only
    // the characters that depend on the text's bytes alone are searched.
    for (alphabet_name, alphabet) in [("base64", STANDARD), ("base64url", URL_SAFE)] {
        for k in 0..3usize {
            let mut padded = vec![0u8; k];
            padded.extend_from_slice(&utf8);
            let enc = base64(&padded, alphabet);
            let start = [0, 2, 3][k];
            let end = (8 * (k + utf8.len())) / 6;
            if end > start {
                out.push((
                    format!("{alphabet_name} (alignment {k})"),
                    enc.as_bytes()[start..end].to_vec(),
                ));
            }
        }
    }
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
