//! The ready-made sources through the real `huitong adapter` binary: SQLite and CSV always,
//! PostgreSQL and MariaDB when `HUITONG_TEST_POSTGRES_URL` and `HUITONG_TEST_MYSQL_URL` name
//! them (CI sets both; without them those tests say they were skipped). Requests come over
//! mutual TLS with a broker certificate, as the broker sends them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use huitong_core::DeptId;
use huitong_proto::v1::adapter_client::AdapterClient;
use huitong_proto::v1::{
    ChangeEvent, DescribeRequest, FetchRequest, Filter, SearchRequest, Value, WatchChangesRequest,
};
use huitong_tests::{Proc, Role, TempDir, TlsFiles, huitong_bin};
use huitong_tls::{ClientTls, Expect, pki};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

const DEPT: &str = "market-regulation";

/// A CA with the adapter's, the broker's and a consumer's certificates in `dir/pki`.
fn make_pki(dir: &Path) {
    let pki_dir = dir.join("pki");
    pki::init(&pki_dir, "test.huitong.example").unwrap();
    for (dept, role) in [
        (DEPT, Role::Adapter),
        ("exchange-office", Role::Broker),
        ("civil-affairs", Role::Consumer),
    ] {
        pki::issue(
            &pki_dir,
            &pki::IssueOptions::new(DeptId::new(dept).unwrap(), role),
        )
        .unwrap();
    }
}

async fn client(adapter: &Proc, dir: &Path, dept: &str, role: Role) -> AdapterClient<Channel> {
    let files = TlsFiles::from_pki_dir(&dir.join("pki"), &DeptId::new(dept).unwrap(), role);
    let tls = ClientTls::load(&files).unwrap();
    let channel = huitong_tls::endpoint(&adapter.addr.to_string())
        .unwrap()
        .connect_with_connector(tls.connector(Expect::Role(Role::Adapter)))
        .await
        .unwrap();
    AdapterClient::new(channel)
}

async fn broker_client(adapter: &Proc, dir: &Path) -> AdapterClient<Channel> {
    client(adapter, dir, "exchange-office", Role::Broker).await
}

fn write_config(dir: &Path, resources: &str) -> String {
    let text = format!(
        "dept = \"{DEPT}\"\nlisten = \"127.0.0.1:0\"\n\
         tls = {{ ca = \"pki/ca.pem\", cert = \"pki/{DEPT}-adapter.pem\", key = \"pki/{DEPT}-adapter.key\" }}\n\n{resources}"
    );
    let path = dir.join("adapter.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

const COMPANY_FIELDS: &str = r#"
[[resources.fields]]
name = "licence_no"
type = "string"
sensitivity = "public"
[[resources.fields]]
name = "name"
type = "string"
sensitivity = "public"
[[resources.fields]]
name = "capital"
type = "double"
sensitivity = "public"
[[resources.fields]]
name = "founded"
type = "date"
sensitivity = "public"
"#;

/// A `companies`-like resource called `name` over `source`.
fn resource(name: &str, source: &str) -> String {
    format!(
        "[[resources]]\nname = \"{name}\"\ntitle = \"{name} 企业\"\nsharing_class = \"open\"\n\
         key_fields = [\"licence_no\"]\n{source}\n{COMPANY_FIELDS}"
    )
}

fn sql_source(url_file: &str, table: &str, changes: &str) -> String {
    format!(
        "[resources.source]\nkind = \"sql\"\nurl_file = \"{url_file}\"\ntable = \"{table}\"\n\
         columns = {{ licence_no = \"no\" }}\nconnect_timeout_ms = 1500\n{changes}\n"
    )
}

fn fetch(resource: &str, no: &str) -> FetchRequest {
    FetchRequest {
        resource: resource.into(),
        key: HashMap::from([("licence_no".to_owned(), Value::string(no))]),
        fields: vec![
            "licence_no".into(),
            "name".into(),
            "capital".into(),
            "founded".into(),
        ],
    }
}

fn search(resource: &str, field: &str, value: &str) -> SearchRequest {
    SearchRequest {
        resource: resource.into(),
        filters: vec![Filter {
            field: field.into(),
            value: Some(Value::string(value)),
        }],
        fields: vec!["licence_no".into(), "name".into()],
        page_size: 10,
        page_token: String::new(),
    }
}

fn watch(resource: &str, cursor: &str) -> WatchChangesRequest {
    WatchChangesRequest {
        resource: resource.into(),
        cursor: cursor.into(),
    }
}

async fn next(stream: &mut tonic::Streaming<ChangeEvent>) -> ChangeEvent {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(e))) => e,
        other => panic!("expected a change event, got {other:?}"),
    }
}

fn licence(e: &ChangeEvent) -> String {
    e.key["licence_no"].as_str().unwrap().to_owned()
}

fn config_check(path: &str) -> (bool, String) {
    let out = Command::new(huitong_bin())
        .args(["config", "check", path])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// SQLite and CSV resources served by the binary: the lookups, the refusals, and the change
/// stream's contract (replay, live, resume, OUT_OF_RANGE after a restart for a file's
/// in-memory history, natural cursors surviving it for SQL).
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_and_csv_resources_through_the_binary() {
    let dir = TempDir::new("sources");
    make_pki(dir.path());
    let db = dir.path().join("registry.db");
    {
        let o: sqlx::sqlite::SqliteConnectOptions = format!("sqlite:{}", db.display())
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(o).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE companies (no TEXT PRIMARY KEY, name TEXT, capital REAL, founded TEXT, seq INTEGER NOT NULL);
             INSERT INTO companies VALUES ('91110000A', '北京甲公司', 1000000.5, '2010-05-04', 1),
                                          ('91110000B', '北京乙公司', NULL, NULL, 2);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    std::fs::write(dir.path().join("registry.url"), "sqlite:registry.db\n").unwrap();
    std::fs::write(
        dir.path().join("licences.csv"),
        "licence_no,企业名称,capital,founded\nL1,甲,1,2020-01-01\nL2,乙,,\n",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{}\n{}",
            resource(
                "companies",
                &sql_source(
                    "registry.url",
                    "companies",
                    "changes = { column = \"seq\", poll_interval_ms = 100 }"
                ),
            ),
            resource(
                "licences",
                "source = { kind = \"csv\", path = \"licences.csv\", columns = { name = \"企业名称\" } }",
            ),
        ),
    );
    let (ok, out) = config_check(&config);
    assert!(ok, "{out}");
    assert!(
        out.contains("adapter config for market-regulation is valid"),
        "{out}"
    );

    let mut adapter = Proc::start(&["adapter", "--config", &config]);
    let mut c = broker_client(&adapter, dir.path()).await;

    let described = c.describe(DescribeRequest {}).await.unwrap().into_inner();
    let names: Vec<&str> = described
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["companies", "licences"]);
    assert!(
        described.software.contains("file+sql"),
        "{}",
        described.software
    );

    let rec = c
        .fetch(fetch("companies", "91110000A"))
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(rec.fields["name"], Value::string("北京甲公司"));
    assert_eq!(rec.fields["founded"], Value::date(2010, 5, 4));
    let nulls = c
        .fetch(fetch("companies", "91110000B"))
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(nulls.fields["capital"], Value::null());

    // Injection attempts find nothing, and say only that.
    for attack in [
        "x' OR '1'='1",
        "91110000A' --",
        "1; DROP TABLE companies;--",
    ] {
        let s = c.fetch(fetch("companies", attack)).await.unwrap_err();
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        assert_eq!(
            s.message(),
            "no record of market-regulation/companies has that key"
        );
        let found = c
            .search(search("companies", "name", attack))
            .await
            .unwrap()
            .into_inner();
        assert!(found.records.is_empty());
    }
    let found = c
        .search(search("companies", "name", "北京乙公司"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.records.len(), 1);

    // Refusals with the contract's codes.
    let s = c.watch_changes(watch("tax-returns", "")).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    let s = c
        .watch_changes(watch("licences", "garbage"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let s = c
        .watch_changes(watch("companies", "garbage"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let mut consumer = client(&adapter, dir.path(), "civil-affairs", Role::Consumer).await;
    let s = consumer
        .watch_changes(watch("companies", ""))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");

    // SQL: replay, then live, then resume.
    let mut companies = c
        .watch_changes(watch("companies", ""))
        .await
        .unwrap()
        .into_inner();
    let a = next(&mut companies).await;
    assert_eq!(a.resource, "market-regulation/companies");
    assert_eq!(licence(&a), "91110000A");
    assert_eq!(licence(&next(&mut companies).await), "91110000B");
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
        sqlx::raw_sql(
            "INSERT INTO companies VALUES ('91110000C', '北京丙公司', 3, '2024-01-01', 3)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let live = next(&mut companies).await;
    assert_eq!(licence(&live), "91110000C");
    assert_eq!(
        live.record.unwrap().fields["name"],
        Value::string("北京丙公司")
    );
    let mut resumed = c
        .watch_changes(watch("companies", &a.cursor))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(licence(&next(&mut resumed).await), "91110000B");
    assert_eq!(licence(&next(&mut resumed).await), "91110000C");

    // CSV: a rewrite of the file is reported as the keys that changed.
    let mut licences = c
        .watch_changes(watch("licences", ""))
        .await
        .unwrap()
        .into_inner();
    std::fs::write(
        dir.path().join("licences.csv.new"),
        "licence_no,企业名称,capital,founded\nL1,甲改,1,2020-01-01\nL3,丙,,\n",
    )
    .unwrap();
    std::fs::rename(
        dir.path().join("licences.csv.new"),
        dir.path().join("licences.csv"),
    )
    .unwrap();
    let l1 = next(&mut licences).await;
    assert_eq!((licence(&l1), l1.record.is_some()), ("L1".into(), true));
    let l3 = next(&mut licences).await;
    assert_eq!((licence(&l3), l3.record.is_some()), ("L3".into(), true));
    let l2 = next(&mut licences).await;
    assert_eq!((licence(&l2), l2.record.is_some()), ("L2".into(), false));

    // A restart: the file's in-memory history is gone (OUT_OF_RANGE, resynchronise); the SQL
    // cursor still places the watcher.
    let old_adapter = std::mem::replace(&mut adapter, Proc::placeholder());
    assert!(
        old_adapter.terminate().success(),
        "the adapter exits cleanly with watches open"
    );
    let s = tokio::time::timeout(Duration::from_secs(5), companies.next())
        .await
        .unwrap();
    match s {
        Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        None => {}
        Some(Ok(e)) => panic!("unexpected event {e:?}"),
    }
    adapter = Proc::start(&["adapter", "--config", &config]);
    let mut c = broker_client(&adapter, dir.path()).await;
    let s = c
        .watch_changes(watch("licences", &l2.cursor))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
    assert!(
        s.message().contains("resynchronise") && s.message().contains("empty cursor"),
        "{s:?}"
    );
    let mut resumed = c
        .watch_changes(watch("companies", &a.cursor))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(licence(&next(&mut resumed).await), "91110000B");

    // A config with SQL in a column name is refused by `config check`, naming the key.
    let bad = write_config(
        dir.path(),
        &resource(
            "companies",
            &sql_source("registry.url", "companies", "").replace("\"no\"", "\"no; DROP TABLE x\""),
        ),
    );
    let (ok, out) = config_check(&bad);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "resources[0].source.columns.licence_no: \"no; DROP TABLE x\" is not a valid SQL name"
        ),
        "{out}"
    );
    drop(adapter);
}

/// A loopback TCP proxy that can be cut and restored, to play a database going down.
struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut p = Proxy {
            addr: listener.local_addr().unwrap(),
            target,
            accept: None,
            conns: Arc::default(),
        };
        p.serve(listener);
        p
    }

    fn serve(&mut self, listener: TcpListener) {
        let (target, conns) = (self.target, Arc::clone(&self.conns));
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        }));
    }

    async fn stop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
            let _ = a.await;
        }
        let conns: Vec<_> = self.conns.lock().unwrap().drain(..).collect();
        for c in conns {
            c.abort();
            let _ = c.await;
        }
    }

    async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

fn hostport(url: &str) -> &str {
    let rest = url.split_once("://").unwrap().1;
    rest.split(['/', '?'])
        .next()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
}

fn resolve(url: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    hostport(url).to_socket_addrs().unwrap().next().unwrap()
}

fn env_url(var: &str, example: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            println!("skipped: set {var}={example} to run this test against a real server");
            eprintln!("skipped: set {var}={example} to run this test against a real server");
            None
        }
    }
}

/// PostgreSQL (with LISTEN/NOTIFY) and MariaDB (polling) resources of one adapter, each behind
/// a proxy that is cut and restored: UNAVAILABLE while the database is away, answers again
/// once it is back, with no restart.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_and_mariadb_through_the_binary_survive_an_outage() {
    let Some(pg_url) = env_url(
        "HUITONG_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    ) else {
        return;
    };
    let Some(my_url) = env_url("HUITONG_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test") else {
        return;
    };
    let table = format!("ht_e2e_{}", std::process::id());
    let pg = sqlx::PgPool::connect(&pg_url)
        .await
        .unwrap_or_else(|e| panic!("HUITONG_TEST_POSTGRES_URL is set but unreachable: {e}"));
    let my = sqlx::MySqlPool::connect(&my_url)
        .await
        .unwrap_or_else(|e| panic!("HUITONG_TEST_MYSQL_URL is set but unreachable: {e}"));
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (no TEXT PRIMARY KEY, name TEXT, capital NUMERIC(12,2), founded DATE, seq BIGINT NOT NULL);
         INSERT INTO {table} VALUES ('P1', '国有甲', 10.5, '2001-02-03', 1);"
    ))
    .execute(&pg)
    .await
    .unwrap();
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (no VARCHAR(32) PRIMARY KEY, name VARCHAR(64), capital DECIMAL(12,2), founded DATE, seq BIGINT NOT NULL) DEFAULT CHARSET=utf8mb4;
         INSERT INTO {table} VALUES ('M1', '民营乙', 20.25, '2002-03-04', 1);"
    ))
    .execute(&my)
    .await
    .unwrap();

    let dir = TempDir::new("sources-db");
    make_pki(dir.path());
    let mut pg_proxy = Proxy::start(resolve(&pg_url)).await;
    let mut my_proxy = Proxy::start(resolve(&my_url)).await;
    std::fs::write(
        dir.path().join("pg.url"),
        pg_url.replacen(hostport(&pg_url), &pg_proxy.addr.to_string(), 1),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("my.url"),
        my_url.replacen(hostport(&my_url), &my_proxy.addr.to_string(), 1),
    )
    .unwrap();
    let channel = format!("{table}_changes");
    let config = write_config(
        dir.path(),
        &format!(
            "{}\n{}",
            resource(
                "state-owned",
                &sql_source(
                    "pg.url",
                    &table,
                    &format!(
                        "changes = {{ column = \"seq\", poll_interval_ms = 600000, notify_channel = \"{channel}\" }}"
                    ),
                ),
            ),
            resource(
                "private",
                &sql_source(
                    "my.url",
                    &table,
                    "changes = { column = \"seq\", poll_interval_ms = 200 }"
                ),
            ),
        ),
    );
    let adapter = Proc::start(&["adapter", "--config", &config]);
    let mut c = broker_client(&adapter, dir.path()).await;

    let p1 = c
        .fetch(fetch("state-owned", "P1"))
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(p1.fields["capital"], Value::double(10.5));
    assert_eq!(p1.fields["founded"], Value::date(2001, 2, 3));
    let m1 = c
        .fetch(fetch("private", "M1"))
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(m1.fields["name"], Value::string("民营乙"));

    // Changes: NOTIFY on PostgreSQL (the poll is 10 minutes away), polling on MariaDB.
    let mut pg_changes = c
        .watch_changes(watch("state-owned", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(licence(&next(&mut pg_changes).await), "P1");
    // A NOTIFY before the adapter LISTENs would be lost, leaving the 10-minute poll.
    huitong_tests::wait_until_listening(&pg, &channel).await;
    let started = Instant::now();
    sqlx::raw_sql(&format!(
        "INSERT INTO {table} VALUES ('P2', '国有丙', 1, NULL, 2); NOTIFY {channel}"
    ))
    .execute(&pg)
    .await
    .unwrap();
    assert_eq!(licence(&next(&mut pg_changes).await), "P2");
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut my_changes = c
        .watch_changes(watch("private", ""))
        .await
        .unwrap()
        .into_inner();
    let m1_event = next(&mut my_changes).await;
    sqlx::raw_sql(&format!(
        "UPDATE {table} SET name = '民营乙改', seq = 2 WHERE no = 'M1'"
    ))
    .execute(&my)
    .await
    .unwrap();
    let m1_again = next(&mut my_changes).await;
    assert_eq!(
        m1_again.record.unwrap().fields["name"],
        Value::string("民营乙改")
    );
    let mut resumed = c
        .watch_changes(watch("private", &m1_event.cursor))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut resumed).await.cursor, m1_again.cursor);

    // The databases go away…
    pg_proxy.stop().await;
    my_proxy.stop().await;
    for resource in ["state-owned", "private"] {
        let s = c.fetch(fetch(resource, "P1")).await.unwrap_err();
        assert_eq!(s.code(), Code::Unavailable, "{s:?}");
        assert_eq!(
            s.message(),
            format!(
                "the records of market-regulation/{resource} are unavailable at the moment; try again later"
            )
        );
    }
    assert!(
        adapter.stderr().contains("the database cannot be reached"),
        "{}",
        adapter.stderr()
    );
    // …and come back, without a restart.
    pg_proxy.restart().await;
    my_proxy.restart().await;
    for (resource, key) in [("state-owned", "P1"), ("private", "M1")] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match c.fetch(fetch(resource, key)).await {
                Ok(_) => break,
                Err(s) if Instant::now() > deadline => panic!("{resource} not back: {s:?}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
    let stderr = adapter.stderr();
    assert!(
        !stderr.contains("postgres://") && !stderr.contains("mysql://"),
        "connection URLs are never logged:\n{stderr}"
    );
    drop(adapter);
    pg_proxy.stop().await;
    my_proxy.stop().await;
    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&pg)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&my)
        .await
        .unwrap();
}
