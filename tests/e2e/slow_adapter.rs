//! A department whose system is slow: the broker answers DEADLINE_EXCEEDED, naming the
//! department, within the consumer's deadline or its own cap, whichever is shorter.
//!
//! The slow department is an adapter written with the SDK and served in this test process (as
//! an integrator would write one); the broker is the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use huitong_adapter::{Page, PageRequest, Record, ServeOptions, Source, SourceError, Value};
use huitong_client::{Client, ClientError, Query};
use huitong_core::{
    DeptId, FieldName, FieldSpec, FieldType, ResourceId, ResourceName, ResourceSpec,
    ResourceSpecParts, Sensitivity, SharingClass,
};
use huitong_tests::{Proc, Role, TempDir, TlsFiles, write_broker_config};
use huitong_tls::{ServerTls, pki};
use tonic::Code;

/// Answers every fetch after `delay`.
struct SlowSource {
    delay: Duration,
}

fn spec() -> ResourceSpec {
    ResourceSpec::new(ResourceSpecParts {
        id: ResourceId::parse("land-resources/parcels").unwrap(),
        title: "Land parcels".into(),
        description: String::new(),
        fields: vec![FieldSpec {
            name: FieldName::new("parcel_no").unwrap(),
            ty: FieldType::String,
            sensitivity: Sensitivity::Public,
            description: String::new(),
        }],
        key_fields: vec![FieldName::new("parcel_no").unwrap()],
        sharing_class: SharingClass::Open,
        legal_basis: String::new(),
        update_cycle: "daily".into(),
        max_cache_age_seconds: 0,
        stale_if_error_seconds: 0,
    })
    .unwrap()
}

#[tonic::async_trait]
impl Source for SlowSource {
    fn resources(&self) -> Vec<ResourceSpec> {
        vec![spec()]
    }

    async fn fetch(
        &self,
        _resource: &ResourceName,
        key: &[(FieldName, Value)],
        _fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        tokio::time::sleep(self.delay).await;
        let mut r = Record::default();
        r.fields.insert("parcel_no".into(), key[0].1.clone());
        Ok(Some(r))
    }

    async fn search(
        &self,
        _resource: &ResourceName,
        _filters: &[(FieldName, Value)],
        _fields: &[FieldName],
        _page: PageRequest,
    ) -> Result<Page, SourceError> {
        tokio::time::sleep(self.delay).await;
        Ok(Page::default())
    }
}

/// Starts the slow adapter in-process and a real broker in front of it, with a fresh CA.
async fn start(delay: Duration, broker_extra: &str) -> (TempDir, Proc) {
    let dir = TempDir::new("slow");
    let pki_dir = dir.path().join("pki");
    pki::init(&pki_dir, "test.huitong.example").unwrap();
    for (dept, role) in [
        ("land-resources", Role::Adapter),
        ("exchange-office", Role::Broker),
        ("housing", Role::Consumer),
    ] {
        pki::issue(
            &pki_dir,
            &pki::IssueOptions::new(DeptId::new(dept).unwrap(), role),
        )
        .unwrap();
    }
    let dept = DeptId::new("land-resources").unwrap();
    let tls = ServerTls::load(&TlsFiles::from_pki_dir(&pki_dir, &dept, Role::Adapter)).unwrap();
    let listener = huitong_proto::transport::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(huitong_adapter::serve(
        dept,
        SlowSource { delay },
        listener,
        ServeOptions::default(),
        tls,
        std::future::pending(),
    ));
    let cfg = write_broker_config(
        dir.path(),
        "broker.toml",
        &[("land-resources".into(), format!("https://{addr}"))],
        broker_extra,
    );
    let broker = Proc::start(&["broker", "--config", cfg.to_str().unwrap()]);
    (dir, broker)
}

async fn consumer(dir: &TempDir, broker: &Proc) -> Client {
    let files = TlsFiles::from_pki_dir(
        &dir.path().join("pki"),
        &DeptId::new("housing").unwrap(),
        Role::Consumer,
    );
    Client::connect(&broker.endpoint(), &files).await.unwrap()
}

fn parcel() -> Query {
    Query::by_key("land-resources/parcels", "parcel_no", "110105-0042")
        .fields(["parcel_no"])
        .purpose("property registration")
}

fn deadline_exceeded(r: Result<huitong_client::QueryResponse, ClientError>) -> String {
    match r {
        Err(ClientError::Status(s)) => {
            assert_eq!(s.code(), Code::DeadlineExceeded, "{}", s.message());
            s.message().to_owned()
        }
        other => panic!("expected DEADLINE_EXCEEDED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_adapter_is_cut_off_at_the_brokers_cap() {
    let (dir, broker) = start(Duration::from_secs(3), "adapter_timeout_ms = 300").await;
    let mut c = consumer(&dir, &broker).await;
    let started = Instant::now();
    let msg = deadline_exceeded(c.query(parcel().timeout(Duration::from_secs(10))).await);
    assert!(
        msg.contains("department land-resources did not answer within"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the broker waited for the adapter"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_consumers_shorter_deadline_is_honoured() {
    let (dir, broker) = start(Duration::from_secs(3), "adapter_timeout_ms = 10000").await;
    let mut c = consumer(&dir, &broker).await;
    let started = Instant::now();
    let msg = deadline_exceeded(c.query(parcel().timeout(Duration::from_millis(400))).await);
    assert!(msg.contains("land-resources"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the consumer's deadline was not used"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fast_enough_adapter_answers() {
    let (dir, broker) = start(Duration::from_millis(50), "adapter_timeout_ms = 5000").await;
    let mut c = consumer(&dir, &broker).await;
    let answer = c.query(parcel()).await.unwrap();
    assert_eq!(
        answer.records[0].fields["parcel_no"],
        Value::string("110105-0042")
    );
}
