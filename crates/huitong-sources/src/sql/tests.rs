//! The SQL source against real databases: PostgreSQL and MariaDB/MySQL at the addresses in
//! `HUITONG_TEST_POSTGRES_URL` and `HUITONG_TEST_MYSQL_URL` (skipped, saying so, when unset),
//! and SQLite in a temporary file (always). Each test makes its own tables, named for this
//! process, and drops them at the end.

use std::time::{Duration, Instant};

use huitong_adapter::{Change, ChangeStream, PageRequest, Source, SourceError, Value};
use huitong_core::FieldName;
use huitong_proto::v1::value::Kind;
use tokio_stream::StreamExt;

use crate::Sources;
use crate::test_support::{
    Proxy, TempDir, config, names, rn, unique, url_addr, url_via, wait_until_listening,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind2 {
    Postgres,
    MySql,
    Sqlite,
}

/// One of the test databases.
struct Db {
    kind: Kind2,
    url: String,
    admin: Admin,
    dir: TempDir,
}

enum Admin {
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
    Sqlite(sqlx::SqlitePool),
}

impl Db {
    /// The database of `kind`, or `None` (having said why) when its variable is unset.
    async fn get(kind: Kind2) -> Option<Db> {
        let dir = TempDir::new("sql");
        let var = match kind {
            Kind2::Postgres => "HUITONG_TEST_POSTGRES_URL",
            Kind2::MySql => "HUITONG_TEST_MYSQL_URL",
            Kind2::Sqlite => "",
        };
        let url = match kind {
            Kind2::Sqlite => format!("sqlite:{}", dir.path().join("test.db").display()),
            _ => match std::env::var(var) {
                Ok(u) if !u.is_empty() => u,
                _ => {
                    let example = match kind {
                        Kind2::Postgres => "postgres://postgres@127.0.0.1:5432/test",
                        _ => "mysql://root@127.0.0.1:3306/test",
                    };
                    println!("skipped: set {var}={example} to run this test against a real server");
                    eprintln!(
                        "skipped: set {var}={example} to run this test against a real server"
                    );
                    return None;
                }
            },
        };
        let admin = match kind {
            Kind2::Postgres => {
                Admin::Postgres(sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| {
                    panic!("{var} is set but PostgreSQL cannot be reached: {e}")
                }))
            }
            Kind2::MySql => Admin::MySql(
                sqlx::MySqlPool::connect(&url)
                    .await
                    .unwrap_or_else(|e| panic!("{var} is set but MySQL cannot be reached: {e}")),
            ),
            Kind2::Sqlite => {
                let o: sqlx::sqlite::SqliteConnectOptions = url
                    .parse::<sqlx::sqlite::SqliteConnectOptions>()
                    .unwrap()
                    .create_if_missing(true);
                Admin::Sqlite(sqlx::SqlitePool::connect_with(o).await.unwrap())
            }
        };
        Some(Db {
            kind,
            url,
            admin,
            dir,
        })
    }

    /// Runs statements (several, separated by `;`).
    async fn exec(&self, sql: &str) {
        let r = match &self.admin {
            Admin::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Admin::MySql(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Admin::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        };
        if let Err(e) = r {
            panic!("{e}\n{}", &sql[..sql.len().min(500)]);
        }
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match &self.admin {
            Admin::Postgres(p) => sqlx::query_scalar(&sql).fetch_one(p).await.unwrap(),
            Admin::MySql(p) => sqlx::query_scalar(&sql).fetch_one(p).await.unwrap(),
            Admin::Sqlite(p) => sqlx::query_scalar(&sql).fetch_one(p).await.unwrap(),
        }
    }

    async fn drop_table(&self, table: &str) {
        self.exec(&format!("DROP TABLE IF EXISTS {table}")).await;
    }

    /// Column types of the persons table in this database.
    fn persons_ddl(&self, table: &str) -> String {
        match self.kind {
            Kind2::Postgres => format!(
                "CREATE TABLE {table} (id TEXT PRIMARY KEY, name VARCHAR(100), birth DATE, \
                 registered TIMESTAMPTZ, size INTEGER, area NUMERIC(10,2), head BOOLEAN, \
                 photo BYTEA, note TEXT, district TEXT, seq BIGINT NOT NULL DEFAULT 0)"
            ),
            Kind2::MySql => format!(
                "CREATE TABLE {table} (id VARCHAR(64) PRIMARY KEY, name VARCHAR(100), birth DATE, \
                 registered DATETIME(6), size INT, area DECIMAL(10,2), head TINYINT(1), \
                 photo BLOB, note TEXT, district VARCHAR(32), seq BIGINT NOT NULL DEFAULT 0) \
                 DEFAULT CHARSET=utf8mb4"
            ),
            Kind2::Sqlite => format!(
                "CREATE TABLE {table} (id TEXT PRIMARY KEY, name TEXT, birth TEXT, \
                 registered TEXT, size INTEGER, area REAL, head INTEGER, photo BLOB, note TEXT, \
                 district TEXT, seq INTEGER NOT NULL DEFAULT 0)"
            ),
        }
    }

    fn bytes_literal(&self) -> &'static str {
        match self.kind {
            Kind2::Postgres => "'\\x0102ff'::bytea",
            _ => "X'0102FF'",
        }
    }

    fn timestamp_literal(&self) -> &'static str {
        match self.kind {
            Kind2::MySql => "'2024-01-02 03:04:05.250000'",
            _ => "'2024-01-02T03:04:05.250Z'",
        }
    }

    fn truth(&self) -> &'static str {
        match self.kind {
            Kind2::Postgres => "TRUE",
            _ => "1",
        }
    }
}

const PERSON_FIELDS: &str = r#"
[[resources.fields]]
name = "id_number"
type = "string"
sensitivity = "personal"
[[resources.fields]]
name = "name"
type = "string"
sensitivity = "personal"
[[resources.fields]]
name = "birth_date"
type = "date"
sensitivity = "personal"
[[resources.fields]]
name = "registered"
type = "timestamp"
sensitivity = "internal"
[[resources.fields]]
name = "household_size"
type = "int"
sensitivity = "internal"
[[resources.fields]]
name = "floor_area"
type = "double"
sensitivity = "internal"
[[resources.fields]]
name = "is_head"
type = "bool"
sensitivity = "internal"
[[resources.fields]]
name = "photo"
type = "bytes"
sensitivity = "personal"
[[resources.fields]]
name = "note"
type = "string"
sensitivity = "internal"
[[resources.fields]]
name = "district"
type = "string"
sensitivity = "internal"
"#;

const COLUMNS: &str = "columns = { id_number = \"id\", birth_date = \"birth\", household_size = \"size\", floor_area = \"area\", is_head = \"head\" }";

/// The persons resource over `table`, with `extra` lines in its source table.
fn persons_resource(db: &Db, table: &str, url: &str, extra: &str) -> String {
    // The URL goes through a secret file, as a real one with a password would.
    let file = format!("{table}.url");
    db.dir.write(&file, format!("{url}\n"));
    format!(
        "[[resources]]\nname = \"persons\"\ntitle = \"Persons\"\nsharing_class = \"open\"\n\
         key_fields = [\"id_number\"]\n\n[resources.source]\nkind = \"sql\"\n\
         url_file = \"{file}\"\ntable = \"{table}\"\n{COLUMNS}\nconnect_timeout_ms = 2000\n\
         query_timeout_ms = 5000\n{extra}\n{PERSON_FIELDS}"
    )
}

fn load(db: &Db, resources: &str) -> Sources {
    crate::load(&config(&db.dir, resources)).unwrap()
}

fn key(id: &str) -> Vec<(FieldName, Value)> {
    vec![(FieldName::new("id_number").unwrap(), Value::string(id))]
}

fn filter(field: &str, v: Value) -> (FieldName, Value) {
    (FieldName::new(field).unwrap(), v)
}

fn all_fields() -> Vec<FieldName> {
    names(&[
        "id_number",
        "name",
        "birth_date",
        "registered",
        "household_size",
        "floor_area",
        "is_head",
        "photo",
        "note",
        "district",
    ])
}

fn page(size: u32, token: Option<String>) -> PageRequest {
    PageRequest { size, token }
}

macro_rules! on_every_database {
    ($run:ident: $pg:ident, $my:ident, $lite:ident) => {
        #[tokio::test]
        async fn $pg() {
            if let Some(db) = Db::get(Kind2::Postgres).await {
                $run(&db).await;
            }
        }
        #[tokio::test]
        async fn $my() {
            if let Some(db) = Db::get(Kind2::MySql).await {
                $run(&db).await;
            }
        }
        #[tokio::test]
        async fn $lite() {
            if let Some(db) = Db::get(Kind2::Sqlite).await {
                $run(&db).await;
            }
        }
    };
}

on_every_database!(types_nulls_and_unicode: postgres_types_nulls_and_unicode, mysql_types_nulls_and_unicode, sqlite_types_nulls_and_unicode);

/// Every field type comes back typed, NULLs stay null, Chinese text survives, and searches
/// match equal values (null filters match nulls).
async fn types_nulls_and_unicode(db: &Db) {
    let t = unique("types");
    db.exec(&db.persons_ddl(&t)).await;
    db.exec(&format!(
        "INSERT INTO {t} (id, name, birth, registered, size, area, head, photo, note, district) VALUES \
         ('110101199001020011', '张三', '1990-01-02', {ts}, 3, 72.50, {yes}, {bytes}, '户主', '东城区'), \
         ('110101199001020022', '李四', NULL, NULL, NULL, NULL, NULL, NULL, NULL, '东城区'), \
         ('110101199001020033', '王五', '1985-12-31', {ts}, 1, 40.25, {yes}, NULL, NULL, '西城区')",
        ts = db.timestamp_literal(),
        yes = db.truth(),
        bytes = db.bytes_literal(),
    ))
    .await;
    let s = load(db, &persons_resource(db, &t, &db.url, ""));
    let r = rn("persons");

    let rec = s
        .fetch(&r, &key("110101199001020011"), &all_fields())
        .await
        .unwrap()
        .expect("the record");
    let f = |n: &str| rec.fields[n].clone();
    assert_eq!(f("id_number"), Value::string("110101199001020011"));
    assert_eq!(f("name"), Value::string("张三"));
    assert_eq!(f("birth_date"), Value::date(1990, 1, 2));
    match f("registered").kind {
        Some(Kind::TimestampValue(ts)) => {
            assert_eq!((ts.seconds, ts.nanos), (1_704_164_645, 250_000_000));
        }
        other => panic!("registered: {other:?}"),
    }
    assert_eq!(f("household_size"), Value::int(3));
    assert_eq!(f("floor_area"), Value::double(72.5));
    assert_eq!(f("is_head"), Value::bool(true));
    assert_eq!(
        f("photo"),
        Value {
            kind: Some(Kind::BytesValue(vec![1, 2, 255]))
        }
    );
    assert_eq!(f("note"), Value::string("户主"));

    let nulls = s
        .fetch(&r, &key("110101199001020022"), &all_fields())
        .await
        .unwrap()
        .unwrap();
    for n in [
        "birth_date",
        "registered",
        "household_size",
        "floor_area",
        "is_head",
        "photo",
        "note",
    ] {
        assert_eq!(nulls.fields[n], Value::null(), "{n}");
    }

    assert!(
        s.fetch(&r, &key("nobody"), &all_fields())
            .await
            .unwrap()
            .is_none()
    );

    // Equality on text, null, date and int; results in key order.
    let ids = |p: &huitong_adapter::Page| -> Vec<String> {
        p.records
            .iter()
            .map(|r| r.fields["id_number"].as_str().unwrap().to_owned())
            .collect()
    };
    let east = s
        .search(
            &r,
            &[filter("district", Value::string("东城区"))],
            &all_fields(),
            page(10, None),
        )
        .await
        .unwrap();
    assert_eq!(ids(&east), ["110101199001020011", "110101199001020022"]);
    let no_note = s
        .search(
            &r,
            &[filter("note", Value::null())],
            &all_fields(),
            page(10, None),
        )
        .await
        .unwrap();
    assert_eq!(ids(&no_note), ["110101199001020022", "110101199001020033"]);
    let born = s
        .search(
            &r,
            &[
                filter("birth_date", Value::date(1985, 12, 31)),
                filter("household_size", Value::int(1)),
            ],
            &all_fields(),
            page(10, None),
        )
        .await
        .unwrap();
    assert_eq!(ids(&born), ["110101199001020033"]);
    let bool_search = s
        .search(
            &r,
            &[filter("is_head", Value::bool(true))],
            &all_fields(),
            page(10, None),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&bool_search),
        ["110101199001020011", "110101199001020033"]
    );

    db.drop_table(&t).await;
}

on_every_database!(large_table: postgres_large_table, mysql_large_table, sqlite_large_table);

/// 100,000 rows: a fetch by key finds its row, and paging through a search visits every match
/// once, in key order, whatever the page size.
async fn large_table(db: &Db) {
    let t = unique("large");
    db.exec(&db.persons_ddl(&t)).await;
    let started = Instant::now();
    for batch in 0..20 {
        let rows: Vec<String> = (batch * 5000..(batch + 1) * 5000)
            .map(|i| format!("('{i:08}', '居民{i}', 'd{}', {i})", i % 10))
            .collect();
        db.exec(&format!(
            "INSERT INTO {t} (id, name, district, size) VALUES {}",
            rows.join(",")
        ))
        .await;
    }
    assert_eq!(db.count(&t).await, 100_000);
    eprintln!(
        "{:?}: 100,000 rows inserted in {:?}",
        db.kind,
        started.elapsed()
    );
    let s = load(db, &persons_resource(db, &t, &db.url, ""));
    let r = rn("persons");

    let rec = s
        .fetch(&r, &key("00076543"), &names(&["name"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.fields["name"], Value::string("居民76543"));
    assert_eq!(rec.fields["household_size"], Value::int(76543));

    // Every tenth row matches; 10,000 in pages of 999.
    let filters = [filter("district", Value::string("d3"))];
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let p = s
            .search(
                &r,
                &filters,
                &names(&["id_number"]),
                page(999, token.take()),
            )
            .await
            .unwrap();
        pages += 1;
        seen.extend(
            p.records
                .iter()
                .map(|r| r.fields["id_number"].as_str().unwrap().to_owned()),
        );
        match p.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 11);
    assert_eq!(seen.len(), 10_000);
    let want: Vec<String> = (0..100_000)
        .filter(|i| i % 10 == 3)
        .map(|i| format!("{i:08}"))
        .collect();
    assert_eq!(seen, want, "every match once, in key order");

    // A page token is bound to its search and opaque.
    let first = s
        .search(&r, &filters, &names(&["id_number"]), page(10, None))
        .await
        .unwrap();
    let tok = first.next_token.unwrap();
    assert!(!tok.contains("0000"), "the token must not carry the key");
    let other = [filter("district", Value::string("d4"))];
    let e = s
        .search(&r, &other, &names(&["id_number"]), page(10, Some(tok)))
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::BadPageToken), "{e}");
    let e = s
        .search(
            &r,
            &filters,
            &names(&["id_number"]),
            page(10, Some("forged".into())),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::BadPageToken), "{e}");

    db.drop_table(&t).await;
}

on_every_database!(injection: postgres_injection, mysql_injection, sqlite_injection);

/// Values that would change the meaning of a statement built by pasting them in find nothing
/// and break nothing: they are bound as parameters.
async fn injection(db: &Db) {
    let t = unique("inject");
    db.exec(&db.persons_ddl(&t)).await;
    db.exec(&format!(
        "INSERT INTO {t} (id, name, district) VALUES ('a1', '张三', 'x'), ('a2', '李四', 'y')"
    ))
    .await;
    let s = load(db, &persons_resource(db, &t, &db.url, ""));
    let r = rn("persons");
    let attacks = [
        "x' OR '1'='1",
        "x\" OR \"1\"=\"1",
        "' OR 1=1 --",
        "a1'; DROP TABLE persons;--",
        "a1;--",
        "a1\\'; SELECT 1; --",
        "%' OR name LIKE '%",
        "a1\0",
        "\u{2019} OR 1=1",
    ];
    for a in attacks {
        let got = s.fetch(&r, &key(a), &all_fields()).await;
        assert!(matches!(got, Ok(None)), "fetch {a:?}: {got:?}");
        for field in ["district", "name", "id_number"] {
            let got = s
                .search(
                    &r,
                    &[filter(field, Value::string(a))],
                    &all_fields(),
                    page(10, None),
                )
                .await;
            match got {
                Ok(p) => assert!(p.records.is_empty(), "search {field}={a:?} found records"),
                Err(e) => panic!("search {field}={a:?}: {e}"),
            }
        }
    }
    assert_eq!(db.count(&t).await, 2, "the table is intact");
    db.drop_table(&t).await;
}

/// Column and table names come only from the configuration, and only plain identifiers are
/// accepted there.
#[test]
fn identifiers_with_sql_in_them_are_refused_by_the_config() {
    let dir = TempDir::new("ident");
    for (table, columns, at) in [
        ("t; DROP TABLE x", "", "resources[0].source.table"),
        (
            "persons",
            "columns = { name = \"n\\\" OR 1=1 --\" }",
            "resources[0].source.columns.name",
        ),
        ("persons\"--", "", "resources[0].source.table"),
    ] {
        let text = format!(
            "dept = \"public-security\"\ntls = {{ ca = \"c\", cert = \"c\", key = \"k\" }}\n\
             [[resources]]\nname = \"persons\"\ntitle = \"P\"\nsharing_class = \"open\"\n\
             key_fields = [\"name\"]\n[resources.source]\nkind = \"sql\"\nurl = \"sqlite:x.db\"\n\
             table = {table:?}\n{columns}\n[[resources.fields]]\nname = \"name\"\ntype = \"string\"\n\
             sensitivity = \"public\"\n"
        );
        let path = dir.write("adapter.toml", &text);
        let e = huitong_adapter::AdapterConfig::load(&path).unwrap_err();
        assert_eq!(e.key(), Some(at), "{e}");
        assert!(e.problem().contains("is not"), "{e}");
    }
}

on_every_database!(query_resources: postgres_query_resources, mysql_query_resources, sqlite_query_resources);

/// A resource can be a SELECT of the configuration, its `:name` placeholders bound to params.
async fn query_resources(db: &Db) {
    let t = unique("query");
    db.exec(&db.persons_ddl(&t)).await;
    db.exec(&format!(
        "INSERT INTO {t} (id, name, district, size) VALUES ('a1', '张三', '东城区', 2), ('a2', '李四', '西城区', 3), ('a3', '王五', '东城区', 4)"
    ))
    .await;
    let resource = format!(
        "[[resources]]\nname = \"east\"\ntitle = \"East\"\nsharing_class = \"open\"\nkey_fields = [\"id_number\"]\n\
         [resources.source]\nkind = \"sql\"\nurl = \"{url}\"\n\
         query = \"SELECT id AS id_number, name, size * 10 AS score FROM {t} WHERE district = :district AND size > :min\"\n\
         params = {{ district = \"东城区\", min = 2 }}\n\
         [[resources.fields]]\nname = \"id_number\"\ntype = \"string\"\nsensitivity = \"public\"\n\
         [[resources.fields]]\nname = \"name\"\ntype = \"string\"\nsensitivity = \"public\"\n\
         [[resources.fields]]\nname = \"score\"\ntype = \"int\"\nsensitivity = \"public\"\n",
        url = db.url
    );
    let s = load(db, &resource);
    let r = rn("east");
    let p = s
        .search(&r, &[], &names(&["name"]), page(10, None))
        .await
        .unwrap();
    assert_eq!(p.records.len(), 1);
    assert_eq!(p.records[0].fields["name"], Value::string("王五"));
    assert_eq!(p.records[0].fields["score"], Value::int(40));
    assert!(
        s.fetch(&r, &key("a1"), &names(&["name"]))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.fetch(&r, &key("a3"), &names(&["name"]))
            .await
            .unwrap()
            .is_some()
    );
    db.drop_table(&t).await;
}

async fn next(stream: &mut ChangeStream) -> Change {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(c))) => c,
        Ok(Some(Err(e))) => panic!("the stream failed: {e}"),
        Ok(None) => panic!("the stream ended"),
        Err(_) => panic!("no change within 10 s"),
    }
}

fn id_of(c: &Change) -> String {
    c.key[0].1.as_str().unwrap().to_owned()
}

on_every_database!(changes_by_polling: postgres_changes_by_polling, mysql_changes_by_polling, sqlite_changes_by_polling);

/// Rows whose change column grew reach watchers in order; a watcher resuming from a cursor
/// gets exactly what came after it, even from a newly loaded source (an adapter restart).
async fn changes_by_polling(db: &Db) {
    let t = unique("poll");
    db.exec(&db.persons_ddl(&t)).await;
    db.exec(&format!(
        "INSERT INTO {t} (id, name, seq) VALUES ('a1', '张三', 1), ('a2', '李四', 2)"
    ))
    .await;
    let resource = persons_resource(
        db,
        &t,
        &db.url,
        "changes = { column = \"seq\", poll_interval_ms = 100 }",
    );
    let s = load(db, &resource);
    let r = rn("persons");

    let mut all = s.watch(&r, None).await.unwrap();
    let first = next(&mut all).await;
    assert_eq!(id_of(&first), "a1");
    assert_eq!(
        first.record.as_ref().unwrap().fields["name"],
        Value::string("张三")
    );
    let second = next(&mut all).await;
    assert_eq!(id_of(&second), "a2");

    // An insert and an update, in change-column order (a2 is updated after a3 is inserted).
    db.exec(&format!(
        "INSERT INTO {t} (id, name, seq) VALUES ('a3', '王五', 3)"
    ))
    .await;
    db.exec(&format!(
        "UPDATE {t} SET name = '李四四', seq = 4 WHERE id = 'a2'"
    ))
    .await;
    let third = next(&mut all).await;
    assert_eq!(id_of(&third), "a3");
    let fourth = next(&mut all).await;
    assert_eq!(id_of(&fourth), "a2");
    assert_eq!(
        fourth.record.unwrap().fields["name"],
        Value::string("李四四")
    );

    // Resuming after the first: a3 then the updated a2 (its old position, seq 2, is gone).
    let mut resumed = s.watch(&r, Some(&first.cursor)).await.unwrap();
    assert_eq!(id_of(&next(&mut resumed).await), "a3");
    assert_eq!(id_of(&next(&mut resumed).await), "a2");

    // Cursors outlive the source.
    drop(s);
    let again = load(db, &resource);
    let mut after_restart = again.watch(&r, Some(&third.cursor)).await.unwrap();
    assert_eq!(id_of(&next(&mut after_restart).await), "a2");
    db.exec(&format!(
        "INSERT INTO {t} (id, name, seq) VALUES ('a4', '赵六', 5)"
    ))
    .await;
    assert_eq!(id_of(&next(&mut after_restart).await), "a4");

    // Cursors of another resource, or none of ours, are refused.
    for bad in ["", "s1.", "garbage", &third.cursor.replace("s1.", "s2.")] {
        let e = again.watch(&r, Some(bad)).await.err().unwrap();
        assert!(matches!(e, SourceError::BadCursor), "{bad:?}: {e}");
    }
    db.drop_table(&t).await;
}

#[tokio::test]
async fn a_resource_without_a_change_column_cannot_be_watched() {
    let db = Db::get(Kind2::Sqlite).await.unwrap();
    let t = unique("nochanges");
    db.exec(&db.persons_ddl(&t)).await;
    let s = load(&db, &persons_resource(&db, &t, &db.url, ""));
    let e = s.watch(&rn("persons"), None).await.err().unwrap();
    assert!(matches!(e, SourceError::ChangesUnsupported), "{e}");
}

/// With a notify channel, a NOTIFY makes watchers look at once, long before the next poll.
#[tokio::test]
async fn postgres_listen_notify_delivers_changes_at_once() {
    let Some(db) = Db::get(Kind2::Postgres).await else {
        return;
    };
    let t = unique("notify");
    db.exec(&db.persons_ddl(&t)).await;
    let channel = format!("{t}_changes");
    let resource = persons_resource(
        &db,
        &t,
        &db.url,
        &format!(
            "changes = {{ column = \"seq\", poll_interval_ms = 600000, notify_channel = \"{channel}\" }}"
        ),
    );
    let s = load(&db, &resource);
    let r = rn("persons");
    let mut stream = s.watch(&r, None).await.unwrap();
    // The first poll has found nothing; a NOTIFY before the listener LISTENs would be lost.
    let Admin::Postgres(pool) = &db.admin else {
        unreachable!("notify tests run on PostgreSQL")
    };
    wait_until_listening(pool, &channel).await;
    let mut cursor = None;
    for (i, id) in ["n1", "n2"].iter().enumerate() {
        let started = Instant::now();
        db.exec(&format!(
            "INSERT INTO {t} (id, name, seq) VALUES ('{id}', '通知', {}); NOTIFY {channel}, 'ignored'",
            i + 1
        ))
        .await;
        let c = next(&mut stream).await;
        assert_eq!(id_of(&c), *id);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        cursor = Some(c.cursor);
    }
    // Resume from the last cursor through a fresh watch: nothing old comes back.
    let mut resumed = s.watch(&r, cursor.as_deref()).await.unwrap();
    db.exec(&format!(
        "INSERT INTO {t} (id, name, seq) VALUES ('n3', '通知', 3); NOTIFY {channel}"
    ))
    .await;
    assert_eq!(id_of(&next(&mut resumed).await), "n3");
    db.drop_table(&t).await;
}

async fn database_goes_down_and_comes_back(db: &Db) {
    let t = unique("down");
    db.exec(&db.persons_ddl(&t)).await;
    db.exec(&format!("INSERT INTO {t} (id, name) VALUES ('a1', '张三')"))
        .await;
    let mut proxy = Proxy::start(url_addr(&db.url)).await;
    let via = url_via(&db.url, proxy.addr);
    let s = load(db, &persons_resource(db, &t, &via, ""));
    let r = rn("persons");
    assert!(
        s.fetch(&r, &key("a1"), &all_fields())
            .await
            .unwrap()
            .is_some()
    );

    proxy.stop().await;
    let started = Instant::now();
    match s.fetch(&r, &key("a1"), &all_fields()).await {
        Err(SourceError::Unavailable(why)) => {
            assert!(why.contains("the database"), "{why}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let e = s
        .search(&r, &[], &all_fields(), page(5, None))
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Unavailable(_)), "{e}");

    proxy.restart().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match s.fetch(&r, &key("a1"), &all_fields()).await {
            Ok(Some(rec)) => {
                assert_eq!(rec.fields["name"], Value::string("张三"));
                break;
            }
            other if Instant::now() > deadline => panic!("not back after 15 s: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    proxy.stop().await;
    db.drop_table(&t).await;
}

#[tokio::test]
async fn postgres_down_and_back() {
    if let Some(db) = Db::get(Kind2::Postgres).await {
        database_goes_down_and_comes_back(&db).await;
    }
}

#[tokio::test]
async fn mysql_down_and_back() {
    if let Some(db) = Db::get(Kind2::MySql).await {
        database_goes_down_and_comes_back(&db).await;
    }
}

/// A database that is down when the adapter starts does not stop it loading.
#[tokio::test]
async fn a_database_down_at_start_is_unavailable_not_fatal() {
    let dir = TempDir::new("downstart");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let resource = format!(
        "[[resources]]\nname = \"persons\"\ntitle = \"P\"\nsharing_class = \"open\"\nkey_fields = [\"id_number\"]\n\
         [resources.source]\nkind = \"sql\"\nurl = \"postgres://nobody@127.0.0.1:{port}/none\"\ntable = \"persons\"\n\
         connect_timeout_ms = 1000\n\
         [[resources.fields]]\nname = \"id_number\"\ntype = \"string\"\nsensitivity = \"public\"\n"
    );
    let s = crate::load(&config(&dir, &resource)).unwrap();
    let e = s
        .fetch(&rn("persons"), &key("a"), &names(&["id_number"]))
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Unavailable(_)), "{e}");
}

/// Secrets: a URL with a password is refused inline; a missing variable or file is named.
#[tokio::test]
async fn secrets_are_read_from_files_and_variables_and_never_shown() {
    let dir = TempDir::new("secrets");
    let base = |source: &str| {
        format!(
            "[[resources]]\nname = \"persons\"\ntitle = \"P\"\nsharing_class = \"open\"\nkey_fields = [\"id_number\"]\n\
             [resources.source]\nkind = \"sql\"\ntable = \"persons\"\n{source}\n\
             [[resources.fields]]\nname = \"id_number\"\ntype = \"string\"\nsensitivity = \"public\"\n"
        )
    };
    let text = format!(
        "dept = \"public-security\"\ntls = {{ ca = \"c\", cert = \"c\", key = \"k\" }}\n{}",
        base("url = \"postgres://u:hunter2@db/hr\"")
    );
    let path = dir.write("adapter.toml", &text);
    let e = huitong_adapter::AdapterConfig::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("resources[0].source.url: it holds a password"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");

    let c = config(
        &dir,
        &base("url_env = \"HUITONG_TEST_SURELY_UNSET_VARIABLE\""),
    );
    let e = crate::check(&c).unwrap_err().to_string();
    assert!(
        e.ends_with("resources[0].source.url_env: the environment variable HUITONG_TEST_SURELY_UNSET_VARIABLE is not set"),
        "{e}"
    );
    let c = config(&dir, &base("url_file = \"missing.url\""));
    let e = crate::check(&c).unwrap_err().to_string();
    assert!(
        e.contains("resources[0].source.url_file: cannot read"),
        "{e}"
    );

    dir.write("db.url", "postgres://u:hunter2@127.0.0.1:1/hr\n");
    let c = config(&dir, &base("url_file = \"db.url\""));
    crate::check(&c).unwrap();
    let s = crate::load(&c).unwrap();
    assert!(!format!("{s:?}").contains("hunter2"));
    dir.write("bad.url", "oracle://u:hunter2@db\n");
    let c = config(&dir, &base("url_file = \"bad.url\""));
    let e = crate::check(&c).unwrap_err().to_string();
    assert!(
        e.contains("resources[0].source.url_file: it is not a postgres://"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn cursors_round_trip_and_name_their_resource() {
    let r = rn("persons");
    let c = super::cursor(&r, &Value::int(5), &[Value::string("a'1")]);
    assert_eq!(
        super::parse_cursor(&c, &r, 1),
        Some((Value::int(5), vec![Value::string("a'1")]))
    );
    assert_eq!(super::parse_cursor(&c, &rn("other"), 1), None);
    assert_eq!(super::parse_cursor(&c, &r, 2), None);
}
