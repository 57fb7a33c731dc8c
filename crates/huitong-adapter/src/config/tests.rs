use std::collections::{BTreeMap, BTreeSet};

use huitong_core::{FieldType, Sensitivity};

use super::*;
use crate::test_support::{TempDir, household_register};

const GOOD: &str = r#"
dept = "public-security"
tls = { ca = "pki/ca.pem", cert = "pki/public-security-adapter.pem", key = "pki/public-security-adapter.key" }

[[resources]]
name = "household-register"
title = "户籍登记 Household register"
description = "One entry per registered resident."
sharing_class = "conditional"
legal_basis = "户口登记条例"
update_cycle = "daily"
key_fields = ["id_number"]
source = { kind = "jsonl", path = "household-register.jsonl" }

[[resources.fields]]
name = "id_number"
type = "string"
sensitivity = "personal"
description = "公民身份号码 citizen ID number"

[[resources.fields]]
name = "name"
type = "string"
sensitivity = "personal"

[[resources.fields]]
name = "birth_date"
type = "date"
sensitivity = "personal"

[[resources.fields]]
name = "district"
type = "string"
sensitivity = "internal"
"#;

/// Writes `text` as `adapter.toml` in a fresh directory and loads it.
fn load(text: &str) -> (TempDir, Result<AdapterConfig, ConfigError>) {
    let dir = TempDir::new("config");
    let path = dir.write("adapter.toml", text);
    let result = AdapterConfig::load(&path);
    (dir, result)
}

/// `GOOD` with one piece of text replaced.
fn good_with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from:?} is not in the good config");
    GOOD.replacen(from, to, 1)
}

#[test]
fn a_good_config_loads_with_defaults_and_its_data() {
    let (dir, config) = load(GOOD);
    let config = config.unwrap();
    assert_eq!(config.dept().as_str(), "public-security");
    assert_eq!(config.listen(), "127.0.0.1:7401".parse().unwrap());
    assert_eq!(config.serve_options(), ServeOptions::default());
    let specs: Vec<&ResourceSpec> = config.resources().collect();
    assert_eq!(specs.len(), 1);
    let spec = specs[0];
    assert_eq!(spec.id().to_string(), "public-security/household-register");
    assert_eq!(spec.title, "户籍登记 Household register");
    assert_eq!(spec.sharing_class, SharingClass::Conditional);
    assert_eq!(spec.max_cache_age_seconds, 0);
    assert_eq!(spec.key_fields()[0].as_str(), "id_number");
    let f = spec.field("birth_date").unwrap();
    assert_eq!(
        (f.ty, f.sensitivity),
        (FieldType::Date, Sensitivity::Personal)
    );
    assert_eq!(
        spec.field("id_number").unwrap().description,
        "公民身份号码 citizen ID number"
    );

    // Data paths are relative to the config file's directory, not the working directory.
    dir.write(
        "household-register.jsonl",
        "{\"id_number\":\"110101199001010011\",\"name\":\"张三\"}\n",
    );
    let source = config.into_source().unwrap();
    assert_eq!(source.record_count(spec.id().name()), Some(1));
}

#[test]
fn optional_settings_are_read() {
    let text = good_with(
        "dept = \"public-security\"\n",
        "dept = \"public-security\"\nlisten = \"[::1]:0\"\nmax_message_bytes = 65536\n\
         default_page_size = 10\nmax_page_size = 10\n\
         brokers = [\"spiffe://gov.example/dept/exchange-a/broker\", \"spiffe://gov.example/dept/exchange-b/broker\"]\n\
         handshake_timeout_ms = 1500\nmax_pending_handshakes_per_address = 8\n\
         max_connections_per_address = 100\nshutdown_grace_seconds = 3\n",
    )
    .replacen(
        "update_cycle",
        "max_cache_age_seconds = 300\nupdate_cycle",
        1,
    );
    let (_dir, config) = load(&text);
    let config = config.unwrap();
    assert_eq!(config.listen(), "[::1]:0".parse().unwrap());
    assert_eq!(
        config.serve_options(),
        ServeOptions {
            max_message_bytes: 65536,
            default_page_size: 10,
            max_page_size: 10,
            metrics_listen: None,
            brokers: ["exchange-a", "exchange-b"]
                .map(|d| huitong_tls::PeerId::new(
                    "gov.example",
                    DeptId::new(d).unwrap(),
                    huitong_tls::Role::Broker
                )
                .unwrap())
                .to_vec(),
            connections: huitong_tls::ConnectionLimits {
                handshake_timeout: std::time::Duration::from_millis(1500),
                pending_handshakes_per_address: 8,
                connections_per_address: 100,
            },
            shutdown_grace: std::time::Duration::from_secs(3),
        }
    );
    assert_eq!(
        config.resources().next().unwrap().max_cache_age_seconds,
        300
    );
}

/// Each bad config is refused with the file, the key path and the problem.
#[test]
fn bad_configs_name_file_key_and_problem() {
    let cases: Vec<(String, &str)> = vec![
        (
            good_with("sensitivity = \"internal\"", "sensitivity = \"secret\""),
            "adapter.toml: resources[0].fields[3].sensitivity: \"secret\" is not one of public, internal, personal, sensitive",
        ),
        (
            good_with("type = \"date\"", "type = \"datetime\""),
            "adapter.toml: resources[0].fields[2].type: \"datetime\" is not one of string, int, double, bool, bytes, date, timestamp",
        ),
        (
            good_with("type = \"date\"\n", ""),
            "adapter.toml: resources[0].fields[2].type: it is missing; use one of string, int,",
        ),
        (
            good_with(
                "sharing_class = \"conditional\"",
                "sharing_class = \"restricted\"",
            ),
            "adapter.toml: resources[0].sharing_class: \"restricted\" is not one of open, conditional, not-shared",
        ),
        (
            good_with("legal_basis = \"户口登记条例\"\n", ""),
            "adapter.toml: resources[0].legal_basis: it is missing; a conditional resource must name the law",
        ),
        (
            good_with("dept = \"public-security\"", "dept = \"Public_Security\""),
            "adapter.toml: dept: department id \"Public_Security\" is not valid",
        ),
        (
            good_with("dept = \"public-security\"", ""),
            "adapter.toml: dept: it is missing",
        ),
        (
            good_with(
                "dept = \"public-security\"",
                "dept = \"public-security\"\nlisten = \"localhost:7401\"",
            ),
            "adapter.toml: listen: \"localhost:7401\" is not an IP address and port",
        ),
        (
            good_with(
                "dept = \"public-security\"",
                "dept = \"public-security\"\nmax_message_bytes = 100",
            ),
            "adapter.toml: max_message_bytes: 100 is out of range; use 16384 to",
        ),
        (
            good_with(
                "dept = \"public-security\"",
                "dept = \"public-security\"\ndefault_page_size = 0",
            ),
            "adapter.toml: default_page_size: it must be at least 1",
        ),
        (
            good_with(
                "dept = \"public-security\"",
                "dept = \"public-security\"\nmax_page_size = 50",
            ),
            "adapter.toml: max_page_size: 50 is smaller than default_page_size (100)",
        ),
        (
            "dept = \"public-security\"\ntls = { ca = \"ca.pem\", cert = \"a.pem\", key = \"a.key\" }\n"
                .to_owned(),
            "adapter.toml: resources: there are none; declare at least one [[resources]] table",
        ),
        (
            format!("{GOOD}\n{}", &GOOD[GOOD.find("[[resources]]").unwrap()..]),
            "adapter.toml: resources[1].name: \"household-register\" is also the name of resources[0]",
        ),
        (
            good_with(
                "name = \"household-register\"",
                "name = \"Household Register\"",
            ),
            "adapter.toml: resources[0].name: resource name \"Household Register\" is not valid",
        ),
        (
            good_with("title = \"户籍登记 Household register\"", "title = \"  \""),
            "adapter.toml: resources[0].title: it is missing",
        ),
        (
            good_with("key_fields = [\"id_number\"]", "key_fields = [\"id_no\"]"),
            "adapter.toml: resources[0].key_fields[0]: \"id_no\" is not one of the resource's fields (id_number, name, birth_date, district)",
        ),
        (
            good_with(
                "key_fields = [\"id_number\"]",
                "key_fields = [\"id_number\", \"id_number\"]",
            ),
            "adapter.toml: resources[0].key_fields[1]: \"id_number\" is named twice",
        ),
        (
            good_with("key_fields = [\"id_number\"]", "key_fields = []"),
            "adapter.toml: resources[0].key_fields: there are none",
        ),
        (
            good_with("name = \"name\"", "name = \"id_number\""),
            "adapter.toml: resources[0].fields[1].name: \"id_number\" is also the name of fields[0]",
        ),
        (
            good_with("name = \"birth_date\"", "name = \"birth-date\""),
            "adapter.toml: resources[0].fields[2].name: field name \"birth-date\" is not valid",
        ),
        (
            GOOD.split("[[resources.fields]]")
                .next()
                .unwrap()
                .to_owned(),
            "adapter.toml: resources[0].fields: there are none",
        ),
        (
            good_with("path = \"household-register.jsonl\"", "path = \"\""),
            "adapter.toml: resources[0].source.path: it is empty",
        ),
    ];
    for (text, expected) in cases {
        let (_dir, result) = load(&text);
        let e = result.unwrap_err();
        let msg = e.to_string();
        let msg = msg.rsplit(std::path::MAIN_SEPARATOR).next().unwrap();
        assert!(
            msg.starts_with(expected),
            "expected {expected:?}\n     got {msg:?}"
        );
        assert!(e.key().is_some(), "{msg}");
    }
}

/// Broker identities and connection limits: their messages quote SPIFFE ids, which hold '/'.
#[test]
fn bad_brokers_and_limits_name_the_key_and_problem() {
    let cases: Vec<(String, &str)> = vec![
        (
            good_with(
                "dept = \"public-security\"",
                "dept = \"public-security\"\nbrokers = []",
            ),
            "adapter.toml: brokers: it is empty, so no broker could call this adapter",
        ),
        (
            good_with(
                "dept = \"public-security\"",
                "dept = \"public-security\"\nbrokers = [\"spiffe://gov.example/dept/exchange-office/broker\", \"spiffe://gov.example/dept/civil-affairs/consumer\"]",
            ),
            "adapter.toml: brokers[1]: spiffe://gov.example/dept/civil-affairs/consumer is not a broker identity",
        ),
        (
            good_with(
                "dept = \"public-security\"",
                "dept = \"public-security\"\nbrokers = [\"exchange-office\"]",
            ),
            "adapter.toml: brokers[0]: \"exchange-office\" is not a Huitong identity",
        ),
        (
            good_with(
                "dept = \"public-security\"",
                "dept = \"public-security\"\nmax_pending_handshakes_per_address = 0",
            ),
            "adapter.toml: max_pending_handshakes_per_address: it must be greater than 0",
        ),
    ];
    for (text, expected) in cases {
        let (_dir, result) = load(&text);
        let e = result.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(expected),
            "expected {expected:?}\n     got {msg:?}"
        );
        assert!(e.key().is_some(), "{msg}");
    }
}

/// Syntax and shape errors come from toml; they keep its line and column and name the file.
#[test]
fn toml_errors_name_the_file_and_keep_the_position() {
    let cases = [
        (
            good_with("dept = \"public-security\"", "dept = public-security"),
            "line 2",
        ),
        (
            good_with(
                "update_cycle = \"daily\"",
                "update_cycle = \"daily\"\ncolour = \"red\"",
            ),
            "unknown field `colour`",
        ),
        (
            good_with("kind = \"jsonl\"", "kind = \"oracle\""),
            "unknown variant `oracle`, expected one of `jsonl`, `csv`, `sql`, `http`",
        ),
        (
            good_with(
                "path = \"household-register.jsonl\"",
                "path = \"x.jsonl\", table = \"t\"",
            ),
            "unknown field `table`",
        ),
        (
            good_with(
                "source = { kind = \"jsonl\", path = \"household-register.jsonl\" }\n",
                "",
            ),
            "missing field `source`",
        ),
        (
            good_with(
                "dept = \"public-security\"",
                "dept = \"public-security\"\nmax_page_size = -1",
            ),
            "max_page_size",
        ),
    ];
    for (text, expected) in cases {
        let (dir, result) = load(&text);
        let e = result.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "{}: TOML parse error at line ",
                dir.path().join("adapter.toml").display()
            )),
            "{msg}"
        );
        assert!(msg.contains(expected), "expected {expected:?} in {msg}");
        assert_eq!(e.key(), None);
    }
}

#[test]
fn an_unreadable_file_is_named() {
    let dir = TempDir::new("config-missing");
    let path = dir.path().join("absent.toml");
    let e = AdapterConfig::load(&path).unwrap_err();
    assert_eq!(e.file(), path);
    assert!(
        e.to_string().contains("absent.toml: cannot read it: "),
        "{e}"
    );
}

#[test]
fn a_missing_data_file_is_named_when_the_source_loads() {
    let (_dir, config) = load(GOOD);
    let e = config.unwrap().into_source().unwrap_err().to_string();
    assert!(e.starts_with("cannot read "), "{e}");
    assert!(e.contains("household-register.jsonl"), "{e}");
}

#[test]
fn tls_is_required_and_resolved_against_the_config_directory() {
    let (dir, config) = load(GOOD);
    let config = config.unwrap();
    assert_eq!(config.tls_files().ca, dir.path().join("pki/ca.pem"));
    let without = GOOD.replace(
        "tls = { ca = \"pki/ca.pem\", cert = \"pki/public-security-adapter.pem\", key = \"pki/public-security-adapter.key\" }\n",
        "",
    );
    let (_dir, e) = load(&without);
    let e = e.unwrap_err().to_string();
    assert!(e.contains("adapter.toml: tls: it is missing"), "{e}");
}

#[test]
fn a_config_built_in_code_is_written_and_read_back() {
    let dir = TempDir::new("config-write");
    let spec = household_register();
    let mut file = ConfigFile::new(
        spec.id().provider(),
        vec![ResourceConfig::from_spec(
            &spec,
            SourceConfig::Jsonl {
                path: "hr.jsonl".into(),
            },
        )],
    );
    file.listen = Some("127.0.0.1:0".into());
    file.max_page_size = Some(500);
    file.tls = Some(TlsConfig {
        ca: "pki/ca.pem".into(),
        cert: "pki/a.pem".into(),
        key: "pki/a.key".into(),
        crl: None,
    });
    let path = dir.path().join("written.toml");
    file.write(&path).unwrap();

    let config = AdapterConfig::load(&path).unwrap();
    assert_eq!(config.raw(), &file);
    assert_eq!(config.resources().collect::<Vec<_>>(), vec![&spec]);
    assert_eq!(config.serve_options().max_page_size, 500);
    assert_eq!(config.listen().port(), 0);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("kind = \"jsonl\""), "{text}");

    // An invalid configuration is refused before anything is written.
    file.resources[0].fields[0].ty = "text".into();
    let bad = dir.path().join("bad.toml");
    let e = file.write(&bad).unwrap_err().to_string();
    assert!(
        e.contains("bad.toml: resources[0].fields[0].type: \"text\" is not one of"),
        "{e}"
    );
    assert!(!bad.exists());
}

// ---------------------------------------------------------------------------------------------
// docs/adapter-config.md against the structs
// ---------------------------------------------------------------------------------------------

const REFERENCE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/adapter-config.md"
));

/// One documented key: its type and required/default cells, and the whole row.
#[derive(Debug)]
struct DocKey {
    ty: String,
    default: String,
    row: String,
}

/// The key tables of the reference (those whose header starts `| key |`), by the text of the
/// heading above each. A row's first cell must be exactly one `key`.
fn documented_tables(doc: &str) -> BTreeMap<String, BTreeMap<String, DocKey>> {
    let mut tables: BTreeMap<String, BTreeMap<String, DocKey>> = BTreeMap::new();
    let mut heading = String::new();
    let mut in_key_table = false;
    for line in doc.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_owned();
            in_key_table = false;
            continue;
        }
        if !line.starts_with('|') {
            in_key_table = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.first() == Some(&"key") {
            in_key_table = true;
            assert!(
                !tables.contains_key(&heading),
                "docs/adapter-config.md: section {heading:?} has two key tables"
            );
            tables.insert(heading.clone(), BTreeMap::new());
            continue;
        }
        if !in_key_table || cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        let key = cells[0]
            .strip_prefix('`')
            .and_then(|k| k.strip_suffix('`'))
            .filter(|k| !k.contains('`'))
            .unwrap_or_else(|| {
                panic!("docs/adapter-config.md, {heading:?}: the row {line:?} must start with one `key`")
            });
        assert!(
            cells.len() == 4,
            "docs/adapter-config.md, {heading:?}: the row of `{key}` must have 4 cells (key, type, required / default, meaning)"
        );
        let keys = tables.get_mut(&heading).unwrap_or_else(|| unreachable!());
        let doc_key = DocKey {
            ty: cells[1].to_owned(),
            default: cells[2].to_owned(),
            row: line.to_owned(),
        };
        assert!(
            keys.insert(key.to_owned(), doc_key).is_none(),
            "docs/adapter-config.md, {heading:?}: `{key}` is documented twice"
        );
    }
    tables
}

/// One key a struct accepts: the TOML type its value is written as, and whether serde needs
/// it (a file without it does not parse).
#[derive(Debug)]
struct StructKey {
    ty: &'static str,
    required: bool,
}

/// The keys `full` is written with, which are all the keys `T` accepts when every optional
/// value of `full` is set (the values below are built without `..Default::default()`, so a new
/// field does not compile until it is given one here).
fn accepted<T>(full: &T) -> BTreeMap<String, StructKey>
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value = toml::Value::try_from(full).unwrap();
    let toml::Value::Table(table) = value else {
        panic!("{full:?} is not written as a table");
    };
    let back: T = toml::Value::Table(table.clone()).try_into().unwrap();
    assert_eq!(&back, full, "written and read back, it changed");
    table
        .iter()
        .map(|(key, v)| {
            let mut without = table.clone();
            without.remove(key);
            let required = toml::Value::Table(without).try_into::<T>().is_err();
            (
                key.clone(),
                StructKey {
                    ty: v.type_str(),
                    required,
                },
            )
        })
        .collect()
}

fn full_tls() -> TlsConfig {
    TlsConfig {
        ca: "pki/ca.pem".into(),
        cert: "pki/a.pem".into(),
        key: "pki/a.key".into(),
        crl: Some("pki/crl.pem".into()),
    }
}

fn full_field() -> FieldConfig {
    FieldConfig {
        name: "id_number".into(),
        ty: "string".into(),
        sensitivity: "personal".into(),
        description: "公民身份号码".into(),
    }
}

fn full_changes() -> SqlChangesConfig {
    SqlChangesConfig {
        column: "change_seq".into(),
        poll_interval_ms: Some(1000),
        notify_channel: Some("hr_changes".into()),
    }
}

fn map(k: &str, v: &str) -> std::collections::BTreeMap<String, String> {
    [(k.to_owned(), v.to_owned())].into()
}

/// One source of each kind, every option set. The match has no wildcard, so a new kind does
/// not compile until it is listed here (and then documented).
fn full_sources() -> Vec<SourceConfig> {
    let all = vec![
        SourceConfig::Jsonl {
            path: "hr.jsonl".into(),
        },
        SourceConfig::Csv(CsvConfig {
            path: "hr.csv".into(),
            delimiter: Some(";".into()),
            columns: map("name", "姓名"),
        }),
        SourceConfig::Sql(SqlConfig {
            url: Some("sqlite:hr.db".into()),
            url_file: Some("secrets/url".into()),
            url_env: Some("HR_URL".into()),
            password_file: Some("secrets/password".into()),
            password_env: Some("HR_PASSWORD".into()),
            table: Some("hr.persons".into()),
            query: Some("SELECT * FROM persons WHERE region = :region".into()),
            params: [("region".to_owned(), QueryParam::String("110000".into()))].into(),
            columns: map("id_number", "sfzh"),
            max_connections: Some(5),
            connect_timeout_ms: Some(5000),
            query_timeout_ms: Some(5000),
            changes: Some(full_changes()),
        }),
        SourceConfig::Http(HttpConfig {
            fetch: "https://api/p/{id_number}".into(),
            search: vec!["https://api/p?d={district}".into()],
            record: Some("data".into()),
            records: Some("data.items".into()),
            paths: map("name", "person.fullName"),
            auth_header: Some("Authorization".into()),
            auth_file: Some("secrets/token".into()),
            auth_env: Some("API_TOKEN".into()),
            ca_file: Some("pki/api-ca.pem".into()),
            timeout_ms: Some(5000),
        }),
    ];
    for s in &all {
        match s {
            SourceConfig::Jsonl { .. }
            | SourceConfig::Csv(_)
            | SourceConfig::Sql(_)
            | SourceConfig::Http(_) => {}
        }
    }
    all
}

fn full_resource() -> ResourceConfig {
    ResourceConfig {
        name: "household-register".into(),
        title: "户籍登记".into(),
        description: "d".into(),
        sharing_class: "conditional".into(),
        legal_basis: "户口登记条例".into(),
        update_cycle: "daily".into(),
        max_cache_age_seconds: 300,
        stale_if_error_seconds: 3600,
        key_fields: vec!["id_number".into()],
        source: SourceConfig::default(),
        fields: vec![full_field()],
    }
}

fn full_file() -> ConfigFile {
    ConfigFile {
        dept: "public-security".into(),
        listen: Some(DEFAULT_LISTEN.into()),
        max_message_bytes: Some(4 << 20),
        default_page_size: Some(100),
        max_page_size: Some(1000),
        metrics_listen: Some("127.0.0.1:9401".into()),
        brokers: Some(vec![
            "spiffe://gov.example/dept/exchange-office/broker".into(),
        ]),
        handshake_timeout_ms: Some(2000),
        max_pending_handshakes_per_address: Some(64),
        max_connections_per_address: Some(1024),
        shutdown_grace_seconds: Some(10),
        tls: Some(full_tls()),
        resources: vec![full_resource()],
    }
}

/// Every table of docs/adapter-config.md lists exactly the keys its struct accepts, with the
/// type they are written as, "required" where the file does not parse without them, and the
/// accepted names of enumerated values.
#[test]
fn the_reference_lists_exactly_the_keys_the_structs_accept() {
    let mut expected: Vec<(String, &str, BTreeMap<String, StructKey>)> = vec![
        ("Top level".into(), "ConfigFile", accepted(&full_file())),
        ("`[tls]`".into(), "TlsConfig", accepted(&full_tls())),
        (
            "`[[resources]]`".into(),
            "ResourceConfig",
            accepted(&full_resource()),
        ),
        (
            "`[[resources.fields]]`".into(),
            "FieldConfig",
            accepted(&full_field()),
        ),
        (
            "`changes` (sql)".into(),
            "SqlChangesConfig",
            accepted(&full_changes()),
        ),
    ];
    for s in full_sources() {
        expected.push((
            format!("`kind = \"{}\"`", s.kind()),
            "SourceConfig",
            accepted(&s),
        ));
    }

    let documented = documented_tables(REFERENCE);
    let mut problems = Vec::new();
    for heading in documented.keys() {
        if !expected.iter().any(|(h, _, _)| h == heading) {
            problems.push(format!(
                "section {heading:?} has a key table, but no struct is compared with it here"
            ));
        }
    }
    for (heading, name, keys) in &expected {
        let Some(doc) = documented.get(heading) else {
            problems.push(format!(
                "there is no section {heading:?} with a key table for {name}"
            ));
            continue;
        };
        for (key, k) in keys {
            let Some(d) = doc.get(key) else {
                problems.push(format!(
                    "{heading}: `{key}` is accepted by {name} but not documented"
                ));
                continue;
            };
            let doc_ty = d.ty.split_whitespace().next().unwrap_or("");
            if doc_ty != k.ty {
                problems.push(format!(
                    "{heading}: `{key}` is documented as {:?}, but {name} writes it as {}",
                    d.ty, k.ty
                ));
            }
            if k.required && !d.default.starts_with("required") {
                problems.push(format!(
                    "{heading}: `{key}` is needed by {name}, but documented as {:?}, not required",
                    d.default
                ));
            }
        }
        for key in doc.keys() {
            if !keys.contains_key(key) {
                problems.push(format!(
                    "{heading}: `{key}` is documented, but {name} does not accept it"
                ));
            }
        }
    }

    // Enumerated values: every accepted name is in the key's row.
    let names = |all: &[&str]| all.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>();
    for (heading, key, accepted) in [
        (
            "`[[resources.fields]]`",
            "type",
            names(
                &FieldType::ALL
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "`[[resources.fields]]`",
            "sensitivity",
            names(
                &Sensitivity::ALL
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "`[[resources]]`",
            "sharing_class",
            names(
                &SharingClass::ALL
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>(),
            ),
        ),
    ] {
        if let Some(d) = documented.get(heading).and_then(|t| t.get(key)) {
            for name in accepted {
                if !d.row.contains(&name) {
                    problems.push(format!("{heading}: `{key}` does not list the value {name}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/adapter-config.md does not match the config structs:\n{}",
        problems.join("\n")
    );
}

/// The fenced TOML blocks of a document not marked `<!-- fragment -->`: (line, text).
fn whole_toml_blocks(doc: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```toml" {
            i += 1;
            continue;
        }
        let fragment = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim().starts_with("<!-- fragment"));
        let start = i + 1;
        let mut text = String::new();
        i += 1;
        while i < lines.len() && !lines[i].trim().starts_with("```") {
            text.push_str(lines[i]);
            text.push('\n');
            i += 1;
        }
        if !fragment {
            out.push((start, text));
        }
        i += 1;
    }
    out
}

/// The reference's examples load (data files are not read here; the deploy tests run them
/// through `huitong config check` with their files), and there is one for every kind of source.
#[test]
fn the_reference_examples_load_and_cover_every_source_kind() {
    let mut kinds = BTreeSet::new();
    for (line, text) in whole_toml_blocks(REFERENCE) {
        let config = AdapterConfig::from_toml_str(&text, format!("adapter-config.md:{line}"))
            .unwrap_or_else(|e| panic!("docs/adapter-config.md:{line}: {e}\n{text}"));
        assert!(
            config.raw().tls.is_some(),
            "docs/adapter-config.md:{line}: no [tls]"
        );
        kinds.extend(config.sources().map(|(_, s)| s.kind()));
    }
    let all: BTreeSet<&str> = full_sources().iter().map(SourceConfig::kind).collect();
    assert_eq!(
        kinds, all,
        "docs/adapter-config.md: the complete examples should use every kind of source"
    );
}

/// The reader above finds what it should, so that an empty reading cannot pass.
#[test]
fn the_reference_reader_reads_tables_and_rows() {
    let doc = "# T\n\n## `[x]`\n\n| key | type | required / default | meaning |\n|---|---|---|---|\n\
               | `a` | string | required | m |\n| `b` | integer | `5` | n |\n\nprose | not a row\n";
    let tables = documented_tables(doc);
    let x = &tables["`[x]`"];
    assert_eq!(x.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(
        (x["b"].ty.as_str(), x["b"].default.as_str()),
        ("integer", "`5`")
    );
    assert_eq!(tables.len(), 1);
    assert!(documented_tables(REFERENCE).len() >= 9);
    let tls = accepted(&full_tls());
    assert!(tls["ca"].required && !tls["crl"].required);
    assert_eq!(tls["ca"].ty, "string");
}

/// The short example in this module's documentation loads too.
#[test]
fn the_module_doc_example_loads() {
    let doc: String = include_str!("../config.rs")
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    let blocks = whole_toml_blocks(&doc);
    assert_eq!(blocks.len(), 1, "{doc}");
    let config = AdapterConfig::from_toml_str(&blocks[0].1, "config.rs").unwrap();
    assert!(config.raw().tls.is_some());
}
