//! A department's register of parcels served in the test process with the adapter SDK, under
//! the test's control (slow, failing, counted, publishing changes), and a real broker in front
//! of such departments.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use huitong_adapter::{
    ChangeFeed, ChangeStream, Page, PageRequest, Record, ServeOptions, Source, SourceError, Value,
};
use huitong_client::Client;
use huitong_core::{
    DeptId, FieldName, FieldSpec, FieldType, ResourceId, ResourceName, ResourceSpec,
    ResourceSpecParts, Sensitivity, SharingClass,
};
use huitong_tls::{ServerTls, pki};

use crate::{Proc, Role, TempDir, TlsFiles, write_broker_config};

/// One department's register of parcels: `parcel_no` (the key) and `owner`.
pub struct Parcels {
    pub spec: ResourceSpec,
    delay_ms: AtomicU64,
    pub failing: AtomicBool,
    owner: Mutex<String>,
    calls: AtomicUsize,
    running: AtomicUsize,
    pub most_running: AtomicUsize,
    pub changes: ChangeFeed,
}

impl Parcels {
    /// An open register with public fields.
    pub fn new(dept: &str, max_cache_age_seconds: u32, stale_if_error_seconds: u32) -> Arc<Self> {
        Self::build(
            dept,
            SharingClass::Open,
            Sensitivity::Public,
            max_cache_age_seconds,
            stale_if_error_seconds,
        )
    }

    /// A register shared only under a grant, whose owners are personal data.
    pub fn conditional(dept: &str) -> Arc<Self> {
        Self::build(dept, SharingClass::Conditional, Sensitivity::Personal, 0, 0)
    }

    fn build(
        dept: &str,
        sharing_class: SharingClass,
        owner: Sensitivity,
        max_cache_age_seconds: u32,
        stale_if_error_seconds: u32,
    ) -> Arc<Self> {
        let field = |name: &str, sensitivity| FieldSpec {
            name: FieldName::new(name).unwrap(),
            ty: FieldType::String,
            sensitivity,
            description: String::new(),
        };
        Arc::new(Parcels {
            spec: ResourceSpec::new(ResourceSpecParts {
                id: ResourceId::parse(&format!("{dept}/parcels")).unwrap(),
                title: "Land parcels".into(),
                description: String::new(),
                fields: vec![
                    field("parcel_no", Sensitivity::Public),
                    field("owner", owner),
                ],
                key_fields: vec![FieldName::new("parcel_no").unwrap()],
                sharing_class,
                legal_basis: "《不动产登记暂行条例》".into(),
                update_cycle: "real-time".into(),
                max_cache_age_seconds,
                stale_if_error_seconds,
            })
            .unwrap(),
            delay_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            owner: Mutex::new("张三".into()),
            calls: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
            changes: ChangeFeed::new(),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Changes the owner of every parcel, as the department's system would, and reports the
    /// change of `parcel_no` on the change stream.
    pub fn change_owner(&self, parcel_no: &str, to: &str) {
        *self.owner.lock().unwrap() = to.to_owned();
        let mut r = Record::default();
        r.fields
            .insert("parcel_no".into(), Value::string(parcel_no));
        r.fields.insert("owner".into(), Value::string(to));
        self.changes.publish(
            self.spec.id().name(),
            [("parcel_no", Value::string(parcel_no))],
            Some(r),
        );
    }

    /// Reports that `parcel_no` was deleted.
    pub fn delete(&self, parcel_no: &str) {
        self.changes.publish(
            self.spec.id().name(),
            [("parcel_no", Value::string(parcel_no))],
            None,
        );
    }
}

struct Shared(Arc<Parcels>);

#[tonic::async_trait]
impl Source for Shared {
    fn resources(&self) -> Vec<ResourceSpec> {
        vec![self.0.spec.clone()]
    }

    async fn fetch(
        &self,
        _resource: &ResourceName,
        key: &[(FieldName, Value)],
        _fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError> {
        let p = &self.0;
        p.calls.fetch_add(1, Ordering::SeqCst);
        let now = p.running.fetch_add(1, Ordering::SeqCst) + 1;
        p.most_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(p.delay_ms.load(Ordering::SeqCst))).await;
        p.running.fetch_sub(1, Ordering::SeqCst);
        if p.failing.load(Ordering::SeqCst) {
            return Err(SourceError::Unavailable(
                "the land registry database is down".into(),
            ));
        }
        let mut r = Record::default();
        r.fields.insert("parcel_no".into(), key[0].1.clone());
        r.fields.insert(
            "owner".into(),
            Value::string(p.owner.lock().unwrap().clone()),
        );
        Ok(Some(r))
    }

    async fn search(
        &self,
        _resource: &ResourceName,
        _filters: &[(FieldName, Value)],
        _fields: &[FieldName],
        _page: PageRequest,
    ) -> Result<Page, SourceError> {
        Ok(Page::default())
    }

    async fn watch(
        &self,
        resource: &ResourceName,
        cursor: Option<&str>,
    ) -> Result<ChangeStream, SourceError> {
        self.0.changes.watch(resource, cursor)
    }
}

/// Consumers with certificates in every [`Setup`].
pub const CONSUMERS: [&str; 3] = ["housing", "tax", "health"];

/// Departments served in-process and a real broker in front of them.
pub struct Setup {
    pub dir: TempDir,
    pub broker: Proc,
    listen: String,
}

impl Setup {
    /// Serves each department's parcels in-process and starts a real broker in front of them.
    /// `policy` (if not empty) becomes the broker's policy file.
    pub async fn start(depts: &[&Arc<Parcels>], broker_extra: &str, policy: &str) -> Setup {
        let dir = TempDir::new("parcels");
        let pki_dir = dir.path().join("pki");
        pki::init(&pki_dir, "test.huitong.example").unwrap();
        pki::issue(
            &pki_dir,
            &pki::IssueOptions::new(DeptId::new("exchange-office").unwrap(), Role::Broker),
        )
        .unwrap();
        for c in CONSUMERS {
            for role in [Role::Consumer, Role::Admin] {
                pki::issue(
                    &pki_dir,
                    &pki::IssueOptions::new(DeptId::new(c).unwrap(), role),
                )
                .unwrap();
            }
        }
        let mut endpoints = Vec::new();
        for p in depts {
            let dept = p.spec.id().provider().clone();
            pki::issue(
                &pki_dir,
                &pki::IssueOptions::new(dept.clone(), Role::Adapter),
            )
            .unwrap();
            let tls =
                ServerTls::load(&TlsFiles::from_pki_dir(&pki_dir, &dept, Role::Adapter)).unwrap();
            let listener = huitong_proto::transport::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            endpoints.push((
                dept.to_string(),
                format!("https://{}", listener.local_addr().unwrap()),
            ));
            tokio::spawn(huitong_adapter::serve(
                dept,
                Shared(Arc::clone(p)),
                listener,
                ServeOptions::default(),
                tls,
                std::future::pending(),
            ));
        }
        if !policy.is_empty() {
            std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        }
        let cfg = write_broker_config(dir.path(), "broker.toml", &endpoints, broker_extra);
        // A fixed port, so that a restarted broker is found where clients left it.
        let listen = format!("127.0.0.1:{}", crate::free_port());
        let broker = Proc::start(&[
            "broker",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            &listen,
        ]);
        let setup = Setup {
            dir,
            broker,
            listen,
        };
        setup.wait_until_reachable(depts.len()).await;
        setup
    }

    /// Waits for every department to be listed reachable, so that tests start steady.
    async fn wait_until_reachable(&self, depts: usize) {
        let mut c = self.consumer("housing").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let entries = c.catalogue(None).await.unwrap();
            if entries.len() == depts && entries.iter().all(|e| e.provider_reachable) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "departments never all reachable: {entries:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the broker (SIGKILL) and starts it again on the same address and data.
    pub async fn crash_and_restart_broker(&mut self, down_for: Duration) {
        self.broker.kill();
        tokio::time::sleep(down_for).await;
        let cfg = self.dir.path().join("broker.toml");
        self.broker = Proc::start(&[
            "broker",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            &self.listen,
        ]);
    }

    pub fn identity(&self, dept: &str, role: Role) -> TlsFiles {
        TlsFiles::from_pki_dir(
            &self.dir.path().join("pki"),
            &DeptId::new(dept).unwrap(),
            role,
        )
    }

    /// A consumer connection as `dept` (one of [`CONSUMERS`]).
    pub async fn consumer(&self, dept: &str) -> Client {
        Client::connect(
            &self.broker.endpoint(),
            &self.identity(dept, Role::Consumer),
        )
        .await
        .unwrap()
    }
}
