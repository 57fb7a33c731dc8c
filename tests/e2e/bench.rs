//! `huitong bench load` against a running demo exchange, and `huitong bench events`: they must
//! count what they sent and what came back, and fail when the answers are errors. No timing is
//! asserted (the machine running the tests is shared and slow); only the counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use huitong_tests::{Exchange, MARRIAGE, huitong_bin};
use serde_json::Value;

const RESOURCE: &str = "public-security/household-register";

/// Runs `huitong bench load <args>`; its exit status and the JSON summary (the last line).
fn bench_load(args: &[&str]) -> (Output, Value) {
    let out = Command::new(huitong_bin())
        .args(["bench", "load"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "bench load printed nothing; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let summary: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "the last line is not JSON ({e}): {last}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, summary)
}

fn identity(ex: &Exchange, file: &str) -> [String; 4] {
    let pki = ex.pki();
    [
        "--ca".into(),
        pki.join("ca.pem").to_str().unwrap().into(),
        "--cert".into(),
        pki.join(file).to_str().unwrap().into(),
    ]
}

/// A short low-rate run: a second of measurement after a short warm-up.
const SHORT: [&str; 10] = [
    "--rate",
    "40",
    "--warmup",
    "200ms",
    "--duration",
    "1s",
    "--connections",
    "2",
    "--concurrency",
    "2",
];

fn assert_clean(out: &Output, s: &Value) {
    assert!(
        out.status.success(),
        "bench load failed: {s}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s["requests"].as_u64().unwrap() > 0, "no requests: {s}");
    assert_eq!(s["errors"].as_u64(), Some(0), "{s}");
    assert!(s["throughput_rps"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["answer_bytes"].as_u64().unwrap() > 0, "{s}");
    let lat = &s["latency_ms"];
    assert!(
        lat["p50"].as_f64().unwrap() <= lat["p99"].as_f64().unwrap(),
        "{s}"
    );
    assert!(
        lat["p99"].as_f64().unwrap() <= lat["p999"].as_f64().unwrap(),
        "{s}"
    );
}

#[test]
fn bench_load_counts_answers_and_fails_loudly_on_errors() {
    let ex = Exchange::start("");
    let key = format!("id_number={}", ex.person(0));
    let adapter = ex
        .adapters
        .iter()
        .find(|(d, _)| d == "public-security")
        .unwrap();
    let adapter_addr = adapter.1.endpoint();
    let broker_addr = ex.broker.endpoint();
    let common = |addr: &str| -> Vec<String> {
        [
            "--addr",
            addr,
            "--resource",
            RESOURCE,
            "--key",
            &key,
            "--fields",
            "name,marital_status",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = |target: &str, addr: &str, cert: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--target".into(), target.into()];
        v.extend(common(addr));
        v.extend(identity(&ex, cert));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |v: Vec<String>| {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        bench_load(&refs)
    };

    // Directly to the adapter, as the broker: open loop at a low rate.
    let (out, s) = run(args(
        "adapter",
        &adapter_addr,
        "exchange-office-broker.pem",
        &SHORT,
    ));
    assert_clean(&out, &s);
    assert_eq!(s["mode"], "open");
    assert_eq!(s["target"], "adapter");
    assert!(s["scheduled"].as_u64().unwrap() > 0, "{s}");

    // Through the broker, as civil affairs under the demo's marriage grant; closed loop too.
    let mut extra = SHORT.to_vec();
    extra.extend(["--purpose", MARRIAGE]);
    let (out, s) = run(args(
        "broker",
        &broker_addr,
        "civil-affairs-consumer.pem",
        &extra,
    ));
    assert_clean(&out, &s);
    let closed = [
        "--purpose",
        MARRIAGE,
        "--warmup",
        "100ms",
        "--duration",
        "500ms",
        "--connections",
        "1",
        "--concurrency",
        "2",
    ];
    let (out, s) = run(args(
        "broker",
        &broker_addr,
        "civil-affairs-consumer.pem",
        &closed,
    ));
    assert_clean(&out, &s);
    assert_eq!(s["mode"], "closed");

    // A purpose the policy does not grant: every answer is PERMISSION_DENIED, counted by code,
    // and the run fails.
    let mut extra = SHORT.to_vec();
    extra.extend(["--purpose", "tax audit"]);
    let (out, s) = run(args(
        "broker",
        &broker_addr,
        "civil-affairs-consumer.pem",
        &extra,
    ));
    assert!(!out.status.success(), "a refused run must fail: {s}");
    assert!(s["requests"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["errors"], s["answers"], "every answer was a refusal: {s}");
    assert!(
        s["errors_by_code"]["PERMISSION_DENIED"].as_u64().unwrap() > 0,
        "{s}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PERMISSION_DENIED"),
        "the failure names the code"
    );

    // A consumer certificate straight at the adapter is refused too: only the broker may call.
    let (out, s) = run(args(
        "adapter",
        &adapter_addr,
        "civil-affairs-consumer.pem",
        &SHORT,
    ));
    assert!(!out.status.success(), "{s}");
    assert!(
        s["errors_by_code"]["PERMISSION_DENIED"].as_u64().unwrap() > 0,
        "{s}"
    );
}

/// `huitong bench events` runs its own exchange; every subscriber must get every event, and
/// the summary must say so.
#[test]
fn bench_events_delivers_every_event_to_every_subscriber() {
    let dir = huitong_tests::TempDir::new("bench-events");
    let out = Command::new(huitong_bin())
        .args([
            "bench",
            "events",
            "--subscribers",
            "1,3",
            "--events",
            "50",
            "--dir",
        ])
        .arg(dir.path().join("scratch"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench events failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 2, "{stdout}");
    for (run, subscribers) in runs.iter().zip([1u64, 3]) {
        assert_eq!(run["subscribers"], subscribers);
        assert_eq!(run["deliveries"], 50 * subscribers);
        assert!(run["events_per_s"].as_f64().unwrap() > 0.0);
        assert!(run["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    }
}
