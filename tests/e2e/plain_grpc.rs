//! Standard gRPC tooling works without the Rust SDK: health checking and server reflection on
//! broker and adapters, and a Python grpcio consumer generated from `proto/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use huitong_tests::{Exchange, Role, TempDir, required, workspace_root};
use huitong_tls::{ClientTls, Expect};
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// A mutual TLS channel as civil affairs' consumer, to a server of `role`.
async fn channel(ex: &Exchange, endpoint: String, role: Role) -> tonic::transport::Channel {
    let tls = ClientTls::load(&ex.identity("civil-affairs", Role::Consumer)).unwrap();
    huitong_tls::endpoint(&endpoint)
        .unwrap()
        .connect_with_connector(tls.connector(Expect::Role(role)))
        .await
        .unwrap()
}

async fn listed_services(channel: tonic::transport::Channel) -> Vec<String> {
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    match resp.message_response.unwrap() {
        MessageResponse::ListServicesResponse(l) => l.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn health(channel: tonic::transport::Channel, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(channel);
    let resp = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    resp.into_inner().status()
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_and_adapters_serve_health_and_reflection() {
    let ex = Exchange::start("");
    let broker = channel(&ex, ex.broker.endpoint(), Role::Broker).await;
    assert_eq!(health(broker.clone(), "").await, ServingStatus::Serving);
    assert_eq!(
        health(broker.clone(), "huitong.v1.Exchange").await,
        ServingStatus::Serving
    );
    let services = listed_services(broker).await;
    for s in [
        "huitong.v1.Exchange",
        "huitong.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.contains(&s.to_string()),
            "{s} missing: {services:?}"
        );
    }
    for (dept, p) in &ex.adapters {
        let adapter = channel(&ex, p.endpoint(), Role::Adapter).await;
        assert_eq!(
            health(adapter.clone(), "huitong.v1.Adapter").await,
            ServingStatus::Serving,
            "{dept}"
        );
        let services = listed_services(adapter).await;
        assert!(
            services.contains(&"huitong.v1.Adapter".to_string()),
            "{dept}: {services:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_grpcio_consumer_can_query_the_broker() {
    let has_grpc = Command::new("python3")
        .args([
            "-c",
            "import grpc, grpc_tools, grpc_health.v1, grpc_reflection",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !has_grpc {
        assert!(
            !required("PYTHON"),
            "HUITONG_REQUIRE_PYTHON=1 but python3 cannot import grpcio"
        );
        eprintln!(
            "SKIPPED a_python_grpcio_consumer_can_query_the_broker: install with \
             `pip install grpcio grpcio-tools grpcio-health-checking grpcio-reflection`"
        );
        return;
    }
    let ex = Exchange::start("");
    let person = &ex.records("household-register.jsonl")[3];
    let tmp = TempDir::new("python");
    let expect = tmp.path().join("person.json");
    std::fs::write(&expect, serde_json::to_string(person).unwrap()).unwrap();
    let root = workspace_root();
    let id = ex.identity("civil-affairs", Role::Consumer);
    let out = Command::new("python3")
        .arg(root.join("tests/python/plain_client.py"))
        .args(["--broker", &ex.broker.addr.to_string()])
        .arg("--ca")
        .arg(&id.ca)
        .arg("--cert")
        .arg(&id.cert)
        .arg("--key")
        .arg(&id.key)
        .arg("--proto-dir")
        .arg(root.join("proto"))
        .arg("--expect-json")
        .arg(&expect)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    // The official and case it sent are on the record, found by both.
    let mut audit = huitong_client::Audit::connect(
        &ex.broker.endpoint(),
        &ex.identity("discipline-inspection", Role::Auditor),
    )
    .await
    .unwrap();
    let found = audit
        .entries(huitong_client::ListEntriesRequest {
            consumer: "civil-affairs".into(),
            official: "clerk-0042".into(),
            case_ref: "HY-2026-1202-0007".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .entries;
    assert_eq!(found.len(), 1, "{found:?}");
}
