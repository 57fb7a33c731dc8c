//! What operators rely on: metrics that match what happened, trace ids across processes, JSON
//! logs, policy reload on SIGHUP that never half-applies, and a backup that restores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use huitong_client::Query;
use huitong_tests::{
    Exchange, Proc, TempDir, free_port, http_get, huitong_bin, marriage_check, sample,
};

const REGISTER: &str = "public-security/household-register";

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_happened() {
    let broker_port = free_port();
    let mut ex = Exchange::start(&format!("metrics_listen = \"127.0.0.1:{broker_port}\""));
    // The public-security adapter serves metrics too.
    let adapter_port = free_port();
    let cfg = ex.dir.path().join("public-security.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("metrics_listen = \"127.0.0.1:{adapter_port}\"\n{text}"),
    )
    .unwrap();
    let adapter = Proc::start(&[
        "adapter",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let endpoints: Vec<(String, String)> = ex
        .adapters
        .iter()
        .map(|(d, p)| {
            let e = if d == "public-security" {
                adapter.endpoint()
            } else {
                p.endpoint()
            };
            (d.clone(), e)
        })
        .collect();
    huitong_tests::write_broker_config(
        ex.dir.path(),
        "broker-test.toml",
        &endpoints,
        &format!("metrics_listen = \"127.0.0.1:{broker_port}\""),
    );
    ex.restart_broker();
    // The broker's own entries at start (departments, the policy file) come first.
    let at_start = huitong_client::Audit::connect(
        &ex.broker.endpoint(),
        &ex.identity("discipline-inspection", huitong_tests::Role::Auditor),
    )
    .await
    .unwrap()
    .checkpoint()
    .await
    .unwrap()
    .tree_size;

    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..3 {
        civil.query(marriage_check(&ex.person(i))).await.unwrap();
    }
    let mut hr = ex.consumer("human-resources").await;
    for i in 0..2 {
        assert!(hr.query(marriage_check(&ex.person(i))).await.is_err());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let m = http_get(&format!("127.0.0.1:{broker_port}"), "/metrics");
    let answered = sample(
        &m,
        &[
            "huitong_exchanges_total{",
            "consumer=\"civil-affairs\"",
            "outcome=\"answered\"",
            "code=\"Ok\"",
        ],
    );
    assert_eq!(answered, Some(3.0), "{m}");
    let refused = sample(
        &m,
        &[
            "huitong_exchanges_total{",
            "consumer=\"human-resources\"",
            "outcome=\"refused\"",
            "code=\"PermissionDenied\"",
        ],
    );
    assert_eq!(refused, Some(2.0), "{m}");
    assert_eq!(
        sample(&m, &["huitong_log_entries "]),
        Some(at_start as f64 + 5.0),
        "{m}"
    );
    assert!(
        sample(&m, &["huitong_log_syncs_total "]).unwrap() >= 1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &["huitong_adapter_reachable{", "dept=\"public-security\""]
        ),
        Some(1.0),
        "{m}"
    );
    for stage in ["policy", "adapter", "log_append"] {
        let count = sample(
            &m,
            &[
                "huitong_stage_duration_seconds_count{",
                &format!("stage=\"{stage}\""),
            ],
        );
        assert!(count.unwrap_or(0.0) >= 3.0, "stage {stage}: {m}");
    }
    assert_eq!(
        sample(
            &m,
            &[
                "huitong_exchange_duration_seconds_count{",
                "outcome=\"answered\""
            ]
        ),
        Some(3.0),
        "{m}"
    );

    let a = http_get(&format!("127.0.0.1:{adapter_port}"), "/metrics");
    let fetched = sample(
        &a,
        &[
            "huitong_adapter_requests_total{",
            "method=\"fetch\"",
            "resource=\"household-register\"",
            "code=\"Ok\"",
        ],
    );
    assert_eq!(fetched, Some(3.0), "{a}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumers_trace_id_appears_in_broker_and_adapter_logs() {
    let mut ex = Exchange::start("");
    ex.restart_broker_with(&["--log-json"]);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut civil = ex.consumer("civil-affairs").await;
    civil
        .query(
            marriage_check(&ex.person(1)).traceparent(&format!("00-{trace}-00f067aa0ba902b7-01")),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let broker_log = ex.broker.stderr();
    let line = broker_log
        .lines()
        .find(|l| l.contains(trace))
        .unwrap_or_else(|| panic!("the broker did not log the trace id:\n{broker_log}"));
    let json: serde_json::Value = serde_json::from_str(line).expect("--log-json writes JSON lines");
    assert_eq!(json["span"]["trace_id"], trace, "{line}");
    let adapter_log = ex.adapter("public-security").stderr();
    assert!(
        adapter_log
            .lines()
            .any(|l| l.contains(trace) && l.contains("answered")),
        "the adapter did not log the trace id:\n{adapter_log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_policy_and_a_broken_file_changes_nothing() {
    let ex = Exchange::start("");
    let id = ex.person(2);
    let policy = ex.dir.path().join("policy.toml");
    let good = std::fs::read_to_string(&policy).unwrap();
    let hup = |ex: &Exchange| {
        let pid = ex.broker_pid();
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
    };

    // A broken file: reported, and the grants in force stay.
    std::fs::write(
        &policy,
        good.replace("expires = \"2027-12-31\"", "expires = \"soon\""),
    )
    .unwrap();
    hup(&ex);
    let mut reported = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ex.broker.stderr().contains("policy file NOT reloaded") {
            reported = true;
            break;
        }
    }
    let log = ex.broker.stderr();
    assert!(
        reported && log.contains("expires") && log.contains("policy.toml"),
        "{log}"
    );
    let mut civil = ex.consumer("civil-affairs").await;
    civil.query(marriage_check(&id)).await.unwrap();

    // A good file with a new grant takes effect without a restart.
    let mut taxation = ex.consumer("taxation").await;
    let tax_query = || {
        Query::by_key(REGISTER, "id_number", id.as_str())
            .fields(["name"])
            .purpose("tax audit")
    };
    assert!(taxation.query(tax_query()).await.is_err());
    std::fs::write(
        &policy,
        format!(
            "{good}\n[[grants]]\nconsumer = \"taxation\"\nresource = \"{REGISTER}\"\nfields = [\"name\"]\npurposes = [\"tax audit\"]\nexpires = \"2099-01-01\"\n"
        ),
    )
    .unwrap();
    hup(&ex);
    let mut allowed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if taxation.query(tax_query()).await.is_ok() {
            allowed = true;
            break;
        }
    }
    assert!(
        allowed,
        "the reloaded grant did not take effect:\n{}",
        ex.broker.stderr()
    );
    civil.query(marriage_check(&id)).await.unwrap();
}

/// docs/operations.md: stop, copy the data directory, start from the copy; the log verifies.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_data_directory_verifies_its_log() {
    let mut ex = Exchange::start("");
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..4 {
        civil.query(marriage_check(&ex.person(i))).await.unwrap();
    }
    let cp = huitong_client::Audit::connect(
        &ex.broker.endpoint(),
        &ex.identity("discipline-inspection", huitong_tests::Role::Auditor),
    )
    .await
    .unwrap()
    .checkpoint()
    .await
    .unwrap();
    let key = cp.verifier_key;
    let stopped = std::mem::replace(&mut ex.broker, Proc::placeholder());
    assert!(stopped.terminate().success());
    let data = ex.dir.path().join("broker-test.toml-data");
    let backup = TempDir::new("backup");
    let copy = backup.path().join("data");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&data)
            .arg(&copy)
            .status()
            .unwrap()
            .success()
    );
    std::fs::remove_dir_all(&data).unwrap();
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&copy)
            .arg(&data)
            .status()
            .unwrap()
            .success()
    );
    ex.restart_broker();
    let auditor = ex.identity("discipline-inspection", huitong_tests::Role::Auditor);
    let out = backup.path().join("bundle");
    let export = Command::new(huitong_bin())
        .args(["audit", "export", "--broker", &ex.broker.endpoint()])
        .arg("--ca")
        .arg(&auditor.ca)
        .arg("--cert")
        .arg(&auditor.cert)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let verify = Command::new(huitong_bin())
        .args(["audit", "verify", out.to_str().unwrap(), "--log-key", &key])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        // The four queries and what the broker recorded at its first start; the restored
        // broker records nothing again.
        verify.status.success() && text.contains(&format!("OK: {} entries", cp.tree_size)),
        "{text}"
    );
    // And it keeps serving with its grants.
    let mut civil = ex.consumer("civil-affairs").await;
    civil.query(marriage_check(&ex.person(5))).await.unwrap();
}

/// A stand-in OTLP collector: keeps (trace id, span name, service) of every span it is sent.
#[derive(Default, Clone)]
struct Collector {
    spans: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{v:?}"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let id: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    spans.push((id, s.name, service.clone()));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_are_exported_over_otlp_in_the_consumers_trace() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut ex = Exchange::start("");
    let endpoint = format!("http://{addr}");
    ex.restart_broker_with(&["--otlp-endpoint", &endpoint]);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let mut civil = ex.consumer("civil-affairs").await;
    civil
        .query(
            marriage_check(&ex.person(3)).traceparent(&format!("00-{trace}-b7ad6b7169203331-01")),
        )
        .await
        .unwrap();
    // The batch exporter sends within its schedule delay (5 s by default) and at shutdown.
    let stopped = std::mem::replace(&mut ex.broker, Proc::placeholder());
    assert!(stopped.terminate().success());
    let mut found = false;
    for _ in 0..50 {
        if collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .any(|(id, name, service)| {
                id == trace && name == "exchange" && service.contains("huitong-broker")
            })
        {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        found,
        "no exchange span in trace {trace}: {:?}",
        collector.spans.lock().unwrap()
    );
}
