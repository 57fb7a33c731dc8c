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
