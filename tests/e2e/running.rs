//! Running it for real (issue 19): clean stops under load, systemd's notifications, certificate
//! expiry, failed authentications, `config check` refusing what start-up refuses, `pki list`
//! and revocation by serial, and the server metrics every process exports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use huitong_tests::{
    Exchange, Proc, TempDir, free_port, http_get, huitong_bin, init_demo, marriage_check, sample,
    write_broker_config,
};
use huitong_tls::Role;

fn huitong(args: &[&str]) -> std::process::Output {
    Command::new(huitong_bin()).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends SIGTERM and measures how long the process takes to exit.
fn stop(p: Proc) -> (std::process::ExitStatus, Duration) {
    let t = Instant::now();
    let status = p.terminate();
    (status, t.elapsed())
}

/// Consumer load through the broker until `stop`: counts answers and the codes of failures.
fn load(
    ex: &Exchange,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<Vec<tonic::Code>>, Arc<AtomicU64>) {
    let answered = Arc::new(AtomicU64::new(0));
    let endpoint = ex.broker.endpoint();
    let identity = ex.identity("civil-affairs", Role::Consumer);
    let people: Vec<String> = (0..20).map(|i| ex.person(i)).collect();
    let count = Arc::clone(&answered);
    let task = tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut client = huitong_client::Client::connect(&endpoint, &identity)
            .await
            .unwrap();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            match client
                .query(marriage_check(&people[i % people.len()]))
                .await
            {
                Ok(_) => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    let code = e.code().unwrap_or(tonic::Code::Unknown);
                    if code != tonic::Code::Unavailable {
                        eprintln!("a cut call failed with {code:?}: {e}");
                    }
                    failures.push(code);
                }
            }
            i += 1;
        }
        failures
    });
    (task, answered)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_and_the_broker_stop_cleanly_under_load_and_the_replacement_serves() {
    let mut ex = Exchange::start("shutdown_grace_seconds = 3");
    // The adapter gets a short grace too, and a fixed port for its replacement.
    let port = ex.adapter("public-security").addr.port();
    let cfg = ex.dir.path().join("public-security.toml");
    ex.restart_adapter_with("public-security", "shutdown_grace_seconds = 3");
    let listen = format!("127.0.0.1:{port}");
    let restart = |cfg: &std::path::Path| {
        Proc::start(&[
            "adapter",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            &listen,
        ])
    };

    let stopping = Arc::new(AtomicBool::new(false));
    let (task, answered) = load(&ex, Arc::clone(&stopping));
    // Load flows, and the broker holds the adapter's change streams open.
    let t = Instant::now();
    while answered.load(Ordering::Relaxed) < 50 {
        assert!(t.elapsed() < Duration::from_secs(30), "no load got through");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let adapter = std::mem::replace(ex.adapter("public-security"), Proc::placeholder());
    let (status, took) = stop(adapter);
    assert!(status.success(), "the adapter exited with {status:?}");
    assert!(
        took < Duration::from_secs(3 + 2),
        "the adapter took {took:?} to stop (grace 3 s)"
    );

    // The replacement, on the same address: the broker routes new calls to it.
    *ex.adapter("public-security") = restart(&cfg);
    let before = answered.load(Ordering::Relaxed);
    let t = Instant::now();
    while answered.load(Ordering::Relaxed) < before + 50 {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the broker did not reach the replacement adapter:\n{}",
            ex.broker.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stopping.store(true, Ordering::Relaxed);
    let failures = task.await.unwrap();
    assert!(
        failures.iter().all(|c| *c == tonic::Code::Unavailable),
        "calls cut by the adapter's stop must be UNAVAILABLE only: {failures:?}"
    );
    // Once the replacement answered, no call failed: new calls after it are all answered.
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..30 {
        civil.query(marriage_check(&ex.person(i))).await.unwrap();
    }

    // The broker, under load with a subscription open.
    let stopping = Arc::new(AtomicBool::new(false));
    let (task, answered) = load(&ex, Arc::clone(&stopping));
    let t = Instant::now();
    while answered.load(Ordering::Relaxed) < 20 {
        assert!(t.elapsed() < Duration::from_secs(30), "no load got through");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let broker = std::mem::replace(&mut ex.broker, Proc::placeholder());
    let log = broker.stderr();
    let (status, took) = stop(broker);
    assert!(status.success(), "the broker exited with {status:?}\n{log}");
    assert!(
        took < Duration::from_secs(3 + 2),
        "the broker took {took:?} to stop (grace 3 s)"
    );
    stopping.store(true, Ordering::Relaxed);
    let failures = task.await.unwrap();
    assert!(
        !failures.is_empty() && failures.iter().all(|c| *c == tonic::Code::Unavailable),
        "calls cut by the broker's stop must be UNAVAILABLE only: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_logs_its_last_checkpoint_when_it_stops() {
    let mut ex = Exchange::start("");
    let mut civil = ex.consumer("civil-affairs").await;
    civil.query(marriage_check(&ex.person(0))).await.unwrap();
    let broker = std::mem::replace(&mut ex.broker, Proc::placeholder());
    let (status, log) = broker.terminate_with_stderr();
    assert!(status.success(), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("checkpoint signed") && l.contains("size=")),
        "{log}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    let dir = TempDir::new("notify");
    init_demo(dir.path(), 500);
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut cmd = Command::new(huitong_bin());
    cmd.args([
        "adapter",
        "--config",
        dir.path().join("public-security.toml").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .env("NOTIFY_SOCKET", &socket_path)
    .env("WATCHDOG_USEC", "400000");
    let adapter = Proc::start_command(cmd, "adapter with NOTIFY_SOCKET");
    let mut buf = [0u8; 256];
    let mut heard = || {
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(heard(), "READY=1");
    // At half the watchdog interval, repeatedly.
    let t = Instant::now();
    assert_eq!(heard(), "WATCHDOG=1");
    assert_eq!(heard(), "WATCHDOG=1");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let pid = adapter.pid().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut stopping = false;
    for _ in 0..20 {
        if heard() == "STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "no STOPPING=1 after SIGTERM");
    assert!(adapter.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_certificates_three_attempts_are_one_log_line_and_a_count_of_three() {
    let port = free_port();
    let ex = Exchange::start(&format!("metrics_listen = \"127.0.0.1:{port}\""));
    let metrics_addr = format!("127.0.0.1:{port}");
    let zero = http_get(&metrics_addr, "/metrics");
    assert_eq!(
        sample(
            &zero,
            &["huitong_auth_failures_total", "reason=\"revoked\""]
        ),
        Some(0.0),
        "every reason is exported from the start:\n{zero}"
    );
    let pki = ex.pki();
    let cert = pki.join("taxation-consumer.pem");
    let out = huitong(&[
        "pki",
        "revoke",
        "--dir",
        pki.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--reason",
        "keyCompromise",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Until the broker has reread the CRL, attempts succeed and are not failures.
    // Without the CRL on our side: the client library would refuse to present a revoked
    // certificate, and the attempt must reach the broker as a stolen key's would.
    let identity = huitong_tls::TlsFiles {
        crl: None,
        ..ex.identity("taxation", Role::Consumer)
    };
    let attempt = || async {
        match huitong_client::Client::connect(&ex.broker.endpoint(), &identity).await {
            Ok(mut c) => c.catalogue(None).await.err(),
            Err(e) => Some(e),
        }
    };
    let mut refused = 0;
    let t = Instant::now();
    while refused < 3 {
        assert!(t.elapsed() < Duration::from_secs(10), "never refused");
        match attempt().await {
            Some(e) => {
                assert_eq!(e.code(), Some(tonic::Code::Unauthenticated), "{e}");
                refused += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let metrics = http_get(&metrics_addr, "/metrics");
    assert_eq!(
        sample(
            &metrics,
            &["huitong_auth_failures_total", "reason=\"revoked\""]
        ),
        Some(3.0),
        "{metrics}"
    );
    let log = ex.broker.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("revoked") && lines[0].contains("taxation"),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_ten_days_from_expiry_raises_the_metric_and_a_warning() {
    let broker_port = free_port();
    let mut ex = Exchange::start(&format!("metrics_listen = \"127.0.0.1:{broker_port}\""));
    let pki = ex.pki();
    let out = huitong(&[
        "pki",
        "issue",
        "--dir",
        pki.to_str().unwrap(),
        "--dept",
        "public-security",
        "--role",
        "adapter",
        "--days",
        "10",
        "--force",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The old pair is kept, so that it can still be revoked.
    assert!(pki.join("public-security-adapter.old.pem").exists());

    let adapter_port = free_port();
    ex.restart_adapter_with(
        "public-security",
        &format!("metrics_listen = \"127.0.0.1:{adapter_port}\""),
    );
    let log = ex
        .adapter("public-security")
        .wait_for_stderr(Duration::from_secs(10), |l| {
            l.contains("a certificate expires soon")
        });
    let warning = log
        .lines()
        .find(|l| l.contains("a certificate expires soon"))
        .unwrap();
    let days_left: f64 = warning
        .split("days_left=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{warning}"));
    assert!(
        warning.contains("certificate=\"own\"") && (9.5..=10.0).contains(&days_left),
        "{warning}"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ten_days = 10.0 * 86_400.0;
    let metrics = http_get(&format!("127.0.0.1:{adapter_port}"), "/metrics");
    let own = sample(
        &metrics,
        &[
            "huitong_certificate_expiry_timestamp_seconds",
            "cert=\"own\"",
        ],
    )
    .unwrap();
    assert!((own - now - ten_days).abs() < 120.0, "{own} vs {now}");
    let ca = sample(
        &metrics,
        &[
            "huitong_certificate_expiry_timestamp_seconds",
            "cert=\"ca\"",
        ],
    )
    .unwrap();
    assert!(ca > now + 300.0 * 86_400.0, "{metrics}");
    assert!(
        metrics.contains("huitong_build_info{") && metrics.contains("service=\"adapter\""),
        "{metrics}"
    );

    // The broker sees it too once it has dialled the new adapter.
    let mut civil = ex.consumer("civil-affairs").await;
    let t = Instant::now();
    while civil.query(marriage_check(&ex.person(0))).await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(15));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let broker = http_get(&format!("127.0.0.1:{broker_port}"), "/metrics");
    let seen = sample(
        &broker,
        &[
            "huitong_adapter_certificate_expiry_timestamp_seconds",
            "dept=\"public-security\"",
        ],
    )
    .unwrap();
    assert!((seen - own).abs() < 1.0, "{seen} vs {own}\n{broker}");
}

/// The names docs/operations.md and deploy/monitoring rely on, scraped from real processes.
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_and_adapter_export_the_server_metrics() {
    let port = free_port();
    let ex = Exchange::start(&format!("metrics_listen = \"127.0.0.1:{port}\""));
    let mut civil = ex.consumer("civil-affairs").await;
    civil.query(marriage_check(&ex.person(0))).await.unwrap();
    let addr = format!("127.0.0.1:{port}");
    // Disk figures are read every 10 s, the first time at start.
    let t = Instant::now();
    let metrics = loop {
        let m = http_get(&addr, "/metrics");
        if sample(&m, &["huitong_log_bytes "]).is_some_and(|b| b > 0.0) {
            break m;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for name in [
        "# TYPE huitong_log_syncs counter",
        "huitong_log_syncs_total ",
        "huitong_log_checkpoint_timestamp_seconds ",
        "huitong_log_checkpoint_size ",
        "huitong_log_indexed_entries ",
        "huitong_data_dir_available_bytes ",
        "huitong_certificate_expiry_timestamp_seconds{cert=\"own\"}",
        "huitong_certificate_expiry_timestamp_seconds{cert=\"ca\"}",
        "huitong_auth_failures_total{reason=\"no_certificate\"} 0",
        "huitong_build_info{",
        "service=\"broker\"",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
        "outcome=\"answered\",provider=\"public-security\",resource=\"public-security/household-register\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(
        sample(&metrics, &["huitong_data_dir_available_bytes "]).unwrap() > 0.0,
        "{metrics}"
    );

    // A reload is counted by result.
    let pid = ex.broker_pid().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let t = Instant::now();
    loop {
        let m = http_get(&addr, "/metrics");
        if sample(&m, &["huitong_policy_reloads_total", "result=\"ok\""]) == Some(1.0) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A broker config in a fresh demo directory, changed by `edit`; `config check` on it, and
/// the broker started on it, must both refuse, naming `key` once and the cause once.
fn refused_by_check_and_start(edit: impl Fn(&std::path::Path, String) -> String, key: &str) {
    let dir = TempDir::new("check");
    init_demo(dir.path(), 500);
    let cfg = write_broker_config(
        dir.path(),
        "broker.toml",
        &[("public-security".into(), "https://127.0.0.1:7401".into())],
        "",
    );
    let original = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, edit(dir.path(), original)).unwrap();
    let check = huitong(&["config", "check", cfg.to_str().unwrap()]);
    let check_err = text(&check.stderr);
    assert!(!check.status.success(), "config check passed:\n{check_err}");
    assert_eq!(
        check_err.matches(key).count(),
        1,
        "{key} must be named once:\n{check_err}"
    );
    if check_err.contains("No such file") {
        assert_eq!(check_err.matches("No such file").count(), 1, "{check_err}");
    }
    let start = huitong(&[
        "broker",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let start_err = text(&start.stderr);
    assert!(!start.status.success(), "the broker started:\n{start_err}");
    let problem = check_err
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("error: ");
    assert!(
        start_err.contains(problem),
        "start-up must say what config check says:\ncheck: {problem}\nstart: {start_err}"
    );
    assert_eq!(
        start_err.matches("No such file").count().min(1),
        check_err.matches("No such file").count().min(1)
    );
}

#[test]
fn config_check_refuses_a_missing_certificate() {
    refused_by_check_and_start(
        |_, t| t.replace("pki/exchange-office-broker.pem", "pki/nope.pem"),
        "tls.cert",
    );
}

#[test]
fn config_check_refuses_a_missing_crl() {
    refused_by_check_and_start(|_, t| t.replace("pki/crl.pem", "pki/gone.pem"), "tls.crl");
}

#[test]
fn config_check_refuses_a_missing_or_broken_policy_file() {
    refused_by_check_and_start(
        |_, t| t.replace("policy = \"policy.toml\"", "policy = \"missing.toml\""),
        "missing.toml",
    );
    refused_by_check_and_start(
        |dir, t| {
            let p = dir.join("policy.toml");
            let policy = std::fs::read_to_string(&p).unwrap();
            std::fs::write(
                &p,
                policy.replacen("expires = \"2027-12-31\"", "expires = \"soon\"", 1),
            )
            .unwrap();
            t
        },
        "grants[0].expires",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_with_the_catalogue_refuses_unknown_resources_and_fields() {
    let ex = Exchange::start("");
    let pki = ex.pki();
    let ca = pki.join("ca.pem");
    let cert = pki.join("civil-affairs-consumer.pem");
    let out = huitong(&[
        "catalogue",
        "--json",
        "--broker",
        &ex.broker.endpoint(),
        "--ca",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let catalogue = ex.dir.path().join("catalogue.json");
    std::fs::write(&catalogue, &out.stdout).unwrap();
    let policy = ex.dir.path().join("policy.toml");
    let good = huitong(&[
        "config",
        "check",
        policy.to_str().unwrap(),
        "--catalogue",
        catalogue.to_str().unwrap(),
    ]);
    assert!(good.status.success(), "{}", text(&good.stderr));
    assert!(
        text(&good.stdout).contains("matches the catalogue"),
        "{}",
        text(&good.stdout)
    );

    let original = std::fs::read_to_string(&policy).unwrap();
    for (edit, key, what) in [
        (
            original.replacen(
                "resource = \"public-security/household-register\"",
                "resource = \"public-security/household-registers\"",
                1,
            ),
            "grants[0].resource",
            "public-security/household-registers",
        ),
        (
            original.replacen("\"marital_status\"", "\"maritalstatus\"", 1),
            "grants[0].fields",
            "\"maritalstatus\"",
        ),
        (
            original
                .replacen("\"status\", \"address\"]", "\"status\", \"adress\"]", 1)
                .replacen("masks = { address =", "masks = { adress =", 1),
            "grants[0].masks",
            "\"adress\"",
        ),
    ] {
        let bad = ex.dir.path().join("bad-policy.toml");
        std::fs::write(&bad, edit).unwrap();
        let out = huitong(&[
            "config",
            "check",
            bad.to_str().unwrap(),
            "--catalogue",
            catalogue.to_str().unwrap(),
        ]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{key} passed");
        assert_eq!(err.matches(key).count(), 1, "{err}");
        assert!(err.contains(what), "{err}");
    }
}

#[test]
fn boolean_environment_variables_take_what_operators_write() {
    let dir = TempDir::new("env");
    init_demo(dir.path(), 500);
    let cfg = dir.path().join("public-security.toml");
    for value in ["1", "0", "true", "false", "yes", "no", "on", "off"] {
        let out = Command::new(huitong_bin())
            .args(["config", "check", cfg.to_str().unwrap()])
            .env("HUITONG_LOG_JSON", value)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "HUITONG_LOG_JSON={value}: {}",
            text(&out.stderr)
        );
    }
    let out = Command::new(huitong_bin())
        .args(["config", "check", cfg.to_str().unwrap()])
        .env("HUITONG_LOG_JSON", "maybe")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn pki_lists_certificates_and_revokes_by_serial() {
    let dir = TempDir::new("pki-list");
    init_demo(dir.path(), 500);
    let pki = dir.path().join("pki");
    let list = || {
        let out = huitong(&["pki", "list", "--dir", pki.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let before = list();
    let taxation = before
        .iter()
        .find(|c| c["file"] == "taxation-consumer.pem")
        .unwrap()
        .clone();
    assert_eq!(taxation["role"], "consumer");
    assert_eq!(taxation["revoked"], false);
    assert!(taxation["days_left"].as_i64().unwrap() > 300);

    // A typo is not a revocation.
    let out = huitong(&[
        "pki",
        "revoke",
        "--dir",
        pki.to_str().unwrap(),
        "--serial",
        "abcdef0123",
        "--reason",
        "superseded",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pki list"),
        "{}",
        text(&out.stderr)
    );

    let serial = taxation["serial"].as_str().unwrap();
    let out = huitong(&[
        "pki",
        "revoke",
        "--dir",
        pki.to_str().unwrap(),
        "--serial",
        serial,
        "--reason",
        "superseded",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = list();
    let revoked: Vec<_> = after.iter().filter(|c| c["revoked"] == true).collect();
    assert_eq!(revoked.len(), 1, "{after:?}");
    assert_eq!(revoked[0]["file"], "taxation-consumer.pem");
    assert_eq!(revoked[0]["state"], "revoked");
}

/// A not-shared resource's changes are never asked for: nobody may receive them, and the
/// provider's log would fill with refusals (issue 15: retried every 2 s forever).
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_never_watches_a_not_shared_resource() {
    let mut ex = Exchange::start("");
    let port = free_port();
    ex.restart_adapter_with(
        "public-security",
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
    );
    // Metrics are served before the adapter says it is serving.
    ex.adapter("public-security")
        .wait_for_stderr(Duration::from_secs(10), |l| l.contains("adapter serving"));
    // The broker reconnects and resumes its change streams; then a few of its rescans pass.
    let addr = format!("127.0.0.1:{port}");
    let t = Instant::now();
    let metrics = loop {
        let m = http_get(&addr, "/metrics");
        if sample(
            &m,
            &[
                "method=\"watch_changes\"",
                "resource=\"household-register\"",
            ],
        )
        .is_some()
        {
            break m;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no change stream opened:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = http_get(&addr, "/metrics");
    for m in [&metrics, &later] {
        assert!(
            !m.lines()
                .any(|l| l.contains("watch_changes") && l.contains("criminal-records")),
            "the not-shared resource was watched:\n{m}"
        );
    }
}

/// Files are told apart by their keys; `--kind` says what a file is meant to be.
#[test]
fn config_check_tells_files_apart_and_takes_a_kind() {
    let dir = TempDir::new("kinds");
    init_demo(dir.path(), 500);
    for (file, says) in [
        ("broker.toml", "broker config with 3 adapters is valid"),
        (
            "public-security.toml",
            "adapter config for public-security is valid",
        ),
        ("policy.toml", "policy file with"),
    ] {
        let out = huitong(&["config", "check", dir.path().join(file).to_str().unwrap()]);
        assert!(out.status.success(), "{file}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(says),
            "{file}: {}",
            text(&out.stdout)
        );
    }
    let out = huitong(&[
        "config",
        "check",
        "--kind",
        "policy",
        dir.path().join("broker.toml").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown field `adapters`"),
        "{}",
        text(&out.stderr)
    );
}
