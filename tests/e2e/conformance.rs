//! `huitong adapter check`, the conformance checker, run as an operator runs it: against the
//! built-in adapter started from the demo's configs, against the Python example adapter, against
//! adapters that break the contract, and against targets that cannot be checked at all.
//!
//! To check another built-in source (SQL, CSV, HTTP), write its adapter config next to the
//! demo's (same `pki/` directory) and call [`assert_config_conforms`] with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use huitong_tests::{Proc, TempDir, free_port, huitong_bin, init_demo, required, workspace_root};
use serde_json::Value;

/// What one run of the checker printed, and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{}", self.stdout))
    }

    fn both(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// `huitong adapter check --target TARGET` as the demo's broker, with a civil-affairs consumer
/// certificate as the identity the adapter must refuse, plus `extra` flags.
fn check(pki: &Path, target: &str, extra: &[&str]) -> Run {
    let out = Command::new(huitong_bin())
        .args(["adapter", "check", "--adapter", target])
        .arg("--ca")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("exchange-office-broker.pem"))
        .arg("--other-cert")
        .arg(pki.join("civil-affairs-consumer.pem"))
        .args(["--timeout", "5s", "--watch-idle", "500ms"])
        .args(extra)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Starts the built-in adapter from `config` (its certificates under `pki`) and checks it;
/// panics with the report unless every check passes. The report, for further assertions.
fn assert_config_conforms(config: &Path, pki: &Path) -> Value {
    let adapter = Proc::start(&[
        "adapter",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let run = check(pki, &adapter.endpoint(), &["--json"]);
    let report = run.json();
    assert_eq!(
        run.code,
        0,
        "{} does not conform:\n{}\n{}\nadapter log:\n{}",
        config.display(),
        run.stdout,
        run.stderr,
        adapter.stderr()
    );
    assert_eq!(report["conforms"], true);
    report
}

/// The outcome of check `id` (for `resource`, or adapter-wide when `None`).
fn outcome<'a>(report: &'a Value, id: &str, resource: Option<&str>) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id && c["resource"].as_str() == resource)
        .unwrap_or_else(|| panic!("no check {id} {resource:?} in {report:#}"))["outcome"]
        .as_str()
        .unwrap()
}

#[test]
fn the_built_in_adapter_conforms_for_every_demo_department() {
    let dir = TempDir::new("conformance-demo");
    init_demo(dir.path(), 500);
    let pki = dir.path().join("pki");
    for dept in ["public-security", "civil-affairs", "market-regulation"] {
        let report = assert_config_conforms(&dir.path().join(format!("{dept}.toml")), &pki);
        assert_eq!(report["dept"], dept);
        assert_eq!(
            report["identity"],
            format!("spiffe://demo.huitong.example/dept/{dept}/adapter")
        );
        for id in [
            "identity.presented",
            "identity.refuses-non-broker",
            "describe.well-formed",
            "health.serving",
            "request.unknown-resource",
            "limits.oversized-message",
        ] {
            assert_eq!(
                outcome(&report, id, None),
                "pass",
                "{dept} {id}: {report:#}"
            );
        }
    }
    // The household register shows each per-resource check; the criminal records are
    // described but never served.
    let report = assert_config_conforms(&dir.path().join("public-security.toml"), &pki);
    let r = Some("household-register");
    for id in [
        "search.records",
        "fetch.same-record",
        "fields.selected",
        "search.filter",
        "fetch.unknown-key",
        "fetch.key-missing-field",
        "fetch.key-wrong-type",
        "fetch.unknown-field",
        "fetch.no-fields",
        "search.unknown-filter",
        "search.paging",
        "search.bad-page-token",
        "limits.page-size-clamped",
    ] {
        assert_eq!(outcome(&report, id, r), "pass", "{id}: {report:#}");
    }
    assert_eq!(
        outcome(&report, "request.not-shared", Some("criminal-records")),
        "pass"
    );
}

#[test]
fn the_json_report_matches_the_text_report() {
    let dir = TempDir::new("conformance-json");
    init_demo(dir.path(), 500);
    let pki = dir.path().join("pki");
    let config = dir.path().join("market-regulation.toml");
    let adapter = Proc::start(&[
        "adapter",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let text = check(&pki, &adapter.endpoint(), &[]);
    let json = check(&pki, &adapter.endpoint(), &["--json"]);
    assert_eq!(text.code, json.code);
    let report = json.json();
    let mut keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "checks",
            "conforms",
            "dept",
            "error",
            "identity",
            "reachable",
            "software",
            "summary",
            "target"
        ]
    );
    let checks = report["checks"].as_array().unwrap();
    let lines: Vec<&str> = text.stdout.lines().collect();
    for c in checks {
        let symbol = match c["outcome"].as_str().unwrap() {
            "pass" => "✓",
            "fail" => "✗",
            "skip" => "–",
            "warn" => "!",
            other => panic!("unknown outcome {other}"),
        };
        let label = match c["resource"].as_str() {
            Some(r) => format!("{} [{r}]", c["id"].as_str().unwrap()),
            None => c["id"].as_str().unwrap().to_owned(),
        };
        let line = format!("{symbol} {label}: {}", c["reason"].as_str().unwrap());
        assert!(
            lines.contains(&line.as_str()),
            "{line:?} is not in the text report:\n{}",
            text.stdout
        );
    }
    let s = &report["summary"];
    let summary = format!(
        "{} passed, {} failed, {} skipped, {} warning",
        s["passed"], s["failed"], s["skipped"], s["warned"]
    );
    assert!(
        text.stdout.contains(&summary),
        "{summary:?}:\n{}",
        text.stdout
    );
    let counted = ["passed", "failed", "skipped", "warned"]
        .iter()
        .map(|k| s[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(counted as usize, checks.len());
}

#[test]
fn an_adapter_presenting_another_departments_identity_fails_the_identity_check() {
    let dir = TempDir::new("conformance-identity");
    init_demo(dir.path(), 500);
    let pki = dir.path().join("pki");
    // Public security's records served under civil affairs' adapter certificate: the broker
    // would refuse to connect, so the checker must fail it.
    let config = dir.path().join("public-security.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("public-security-adapter.", "civil-affairs-adapter.");
    let wrong = dir.path().join("wrong-identity.toml");
    std::fs::write(&wrong, text).unwrap();
    let adapter = Proc::start(&[
        "adapter",
        "--config",
        wrong.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let run = check(&pki, &adapter.endpoint(), &[]);
    assert_eq!(run.code, 1, "{}", run.both());
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("✗ identity.presented:"))
        .unwrap_or_else(|| panic!("no failed identity check:\n{}", run.stdout));
    assert!(
        line.contains("civil-affairs/adapter") && line.contains("public-security/adapter"),
        "{line}"
    );
    assert!(
        run.stdout.contains("does not conform (identity.presented)"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_target_that_cannot_be_checked_exits_2_and_says_why() {
    let dir = TempDir::new("conformance-unreachable");
    init_demo(dir.path(), 500);
    let pki = dir.path().join("pki");

    // Nothing listens.
    let port = free_port();
    let run = check(&pki, &format!("https://127.0.0.1:{port}"), &[]);
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(
        run.stdout.contains("cannot check it") && run.stdout.contains("refused"),
        "{}",
        run.both()
    );
    let run = check(&pki, &format!("https://127.0.0.1:{port}"), &["--json"]);
    assert_eq!(run.code, 2);
    let report = run.json();
    assert_eq!(report["reachable"], false);
    assert_eq!(report["conforms"], false);
    assert!(report["error"].as_str().unwrap().contains("refused"));

    // Something listens that does not speak TLS.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = plain.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in plain.incoming().flatten() {
            drop(stream);
        }
    });
    let run = check(&pki, &format!("https://{addr}"), &[]);
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(run.stdout.contains("TLS handshake"), "{}", run.both());

    // A server with a broker's identity is not an adapter.
    let config = dir.path().join("market-regulation.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("market-regulation-adapter.", "exchange-office-broker.");
    let broker_id = dir.path().join("broker-identity.toml");
    std::fs::write(&broker_id, text).unwrap();
    let server = Proc::start(&[
        "adapter",
        "--config",
        broker_id.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let run = check(&pki, &server.endpoint(), &[]);
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(
        run.stdout.contains("exchange-office/broker") && run.stdout.contains("/adapter"),
        "{}",
        run.both()
    );

    // The checker itself presents a consumer's certificate: the adapter refuses it, and the
    // report says which certificate to use.
    let adapter = Proc::start(&[
        "adapter",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let out = Command::new(huitong_bin())
        .args(["adapter", "check", "--target", &adapter.endpoint()])
        .arg("--ca")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("civil-affairs-consumer.pem"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("PERMISSION_DENIED") && stdout.contains("--role broker"),
        "{stdout}"
    );
}

#[test]
fn the_rust_sdk_example_conforms() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "huitong-adapter",
            "--example",
            "minimal",
        ])
        .current_dir(workspace_root())
        .status()
        .unwrap();
    assert!(status.success(), "building the minimal example failed");
    // target/debug/deps/<test> -> target/debug/examples/minimal
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/minimal");

    let dir = TempDir::new("conformance-sdk");
    init_demo(dir.path(), 500);
    let pki = dir.path().join("pki");
    let out = Command::new(huitong_bin())
        .args(["pki", "issue", "--dept", "education", "--role", "adapter"])
        .arg("--dir")
        .arg(&pki)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = Command::new(example);
    cmd.arg(&pki).arg("127.0.0.1:0");
    let adapter = Proc::start_command(cmd, "the minimal SDK example");
    let run = check(&pki, &adapter.endpoint(), &["--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.both(), adapter.stderr());
    assert_eq!(run.json()["dept"], "education");
}

/// Whether python3 has grpcio and the tools the example adapter imports; when it does not, a
/// test may skip only if CI has not made Python mandatory.
fn python_ready(test: &str) -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import grpc, grpc_tools, grpc_health.v1, grpc_reflection",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !required("PYTHON"),
            "HUITONG_REQUIRE_PYTHON=1 but python3 cannot import grpcio"
        );
        eprintln!(
            "SKIPPED {test}: install with \
             `pip install grpcio grpcio-tools grpcio-health-checking grpcio-reflection`"
        );
    }
    ok
}

/// The demo's exchange with a certificate for social insurance's adapter, and the Python
/// example adapter serving with it; `misbehave` is passed to its `--misbehave`.
fn python_adapter(dir: &Path, misbehave: &str) -> Proc {
    let pki = dir.join("pki");
    if !pki.join("social-insurance-adapter.pem").exists() {
        let out = Command::new(huitong_bin())
            .args([
                "pki",
                "issue",
                "--dept",
                "social-insurance",
                "--role",
                "adapter",
            ])
            .arg("--dir")
            .arg(&pki)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let script: PathBuf = workspace_root().join("examples/python-adapter/adapter.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--ca")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("social-insurance-adapter.pem"))
        .arg("--key")
        .arg(pki.join("social-insurance-adapter.key"))
        .args(["--misbehave", misbehave]);
    Proc::start_command(cmd, "the Python example adapter")
}

#[test]
fn the_python_example_adapter_conforms() {
    if !python_ready("the_python_example_adapter_conforms") {
        return;
    }
    let dir = TempDir::new("conformance-python");
    init_demo(dir.path(), 500);
    let adapter = python_adapter(dir.path(), "");
    let run = check(&dir.path().join("pki"), &adapter.endpoint(), &["--json"]);
    assert_eq!(
        run.code,
        0,
        "{}\nadapter log:\n{}",
        run.both(),
        adapter.stderr()
    );
    let report = run.json();
    assert_eq!(report["dept"], "social-insurance");
    assert_eq!(
        outcome(&report, "identity.refuses-non-broker", None),
        "pass"
    );
    let r = Some("pension-recipients");
    // It implements the change stream, so those checks run rather than skip.
    for id in [
        "fetch.same-record",
        "search.paging",
        "changes.replay",
        "changes.resume",
        "changes.bad-cursor",
    ] {
        assert_eq!(outcome(&report, id, r), "pass", "{id}: {report:#}");
    }
    assert_eq!(outcome(&report, "changes.unknown-resource", None), "pass");
}

#[test]
fn a_misbehaving_adapter_fails_and_the_report_names_the_broken_checks() {
    if !python_ready("a_misbehaving_adapter_fails_and_the_report_names_the_broken_checks") {
        return;
    }
    let dir = TempDir::new("conformance-broken");
    init_demo(dir.path(), 500);
    let adapter = python_adapter(dir.path(), "unknown-key-ok,unstable-paging");
    let run = check(&dir.path().join("pki"), &adapter.endpoint(), &[]);
    assert_eq!(run.code, 1, "{}", run.both());
    for failed in [
        "✗ fetch.unknown-key [pension-recipients]: Fetch of a key no record has must be NOT_FOUND, but the adapter answered OK",
        "✗ search.paging [pension-recipients]:",
    ] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(failed)),
            "no line starting {failed:?}:\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("the adapter does not conform (")
            && run
                .stdout
                .contains("fetch.unknown-key [pension-recipients]")
            && run.stdout.contains("search.paging [pension-recipients]"),
        "{}",
        run.stdout
    );
}

/// The not-found contract is the NOT_FOUND code, never the wording: an adapter whose message
/// repeats the key fails the check, and a broker in front of it answers "no record" and keeps
/// the key out of its data directory (the log records the broker's own reason, not the
/// adapter's text).
#[test]
fn a_not_found_that_quotes_the_key_fails_the_check_and_never_reaches_the_brokers_log() {
    if !python_ready(
        "a_not_found_that_quotes_the_key_fails_the_check_and_never_reaches_the_brokers_log",
    ) {
        return;
    }
    let dir = TempDir::new("conformance-quotes-key");
    init_demo(dir.path(), 500);
    let adapter = python_adapter(dir.path(), "not-found-names-key");
    let run = check(&dir.path().join("pki"), &adapter.endpoint(), &[]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(
        run.stdout.lines().any(|l| l.starts_with(
            "✗ fetch.unknown-key [pension-recipients]: Fetch of a key no record has is NOT_FOUND, but the message repeats the key's value"
        )),
        "{}",
        run.stdout
    );

    // A broker in front of it, and a grant for civil affairs to look pensions up.
    let policy = dir.path().join("policy.toml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str(
        "\n[[grants]]\nconsumer = \"civil-affairs\"\nresource = \"social-insurance/pension-recipients\"\n\
         fields = [\"name\", \"status\"]\npurposes = [\"养老金核查 pension check\"]\nexpires = \"2099-12-31\"\n",
    );
    std::fs::write(&policy, text).unwrap();
    let cfg = huitong_tests::write_broker_config(
        dir.path(),
        "broker-quotes.toml",
        &[("social-insurance".into(), adapter.endpoint())],
        "",
    );
    let broker = Proc::start(&[
        "broker",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let unknown = "SI-999999-0424242";
    let pki = dir.path().join("pki");
    let out = Command::new(huitong_bin())
        .args(["query", "social-insurance/pension-recipients"])
        .arg("--key")
        .arg(format!("pension_no={unknown}"))
        .args([
            "--fields",
            "name,status",
            "--purpose",
            "养老金核查 pension check",
        ])
        .args(["--broker", &broker.endpoint()])
        .env("HUITONG_CA", pki.join("ca.pem"))
        .env("HUITONG_CERT", pki.join("civil-affairs-consumer.pem"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no record of social-insurance/pension-recipients has that key")
            && !stderr.contains(unknown),
        "{stderr}"
    );
    drop(broker);

    let data = dir.path().join("broker-quotes.toml-data");
    let mut files = vec![data.clone()];
    let mut found = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if std::fs::read(&p)
            .unwrap()
            .windows(unknown.len())
            .any(|w| w == unknown.as_bytes())
        {
            found.push(p);
        }
    }
    assert!(
        found.is_empty(),
        "the adapter's wording put the key into {found:?}"
    );
}
