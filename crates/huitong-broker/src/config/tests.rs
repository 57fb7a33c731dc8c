use super::*;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("huitong-broker-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"
[broker]
listen = "127.0.0.1:0"
adapter_timeout_ms = 2000

[tls]
ca = "pki/ca.pem"
cert = "pki/exchange-broker.pem"
key = "pki/exchange-broker.key"

[[adapters]]
dept = "public-security"
endpoint = "https://127.0.0.1:7401"

[[adapters]]
dept = "civil-affairs"
endpoint = "https://127.0.0.1:7402"
"#;

#[test]
fn a_good_file_loads_with_defaults_filled_in() {
    let c = BrokerConfig::load(&write("good.toml", GOOD)).unwrap();
    assert_eq!(c.adapters.len(), 2);
    assert_eq!(c.adapter_timeout, Duration::from_secs(2));
    assert_eq!(c.max_page_size, 1000);
    // Relative paths start at the config file's directory.
    let dir = std::env::temp_dir().join(format!("huitong-broker-config-{}", std::process::id()));
    assert_eq!(c.tls.ca, dir.join("pki/ca.pem"));
    assert_eq!(c.data_dir, dir.join("huitong-data"));
}

#[test]
fn tls_is_required() {
    let text = GOOD.replace("[tls]", "[unused]");
    let e = problem("notls.toml", &text);
    assert!(e.contains("unknown field") || e.contains("tls"), "{e}");
    let start = GOOD.find("[tls]").unwrap();
    let end = GOOD.find("[[adapters]]").unwrap();
    let text = format!("{}{}", &GOOD[..start], &GOOD[end..]);
    let e = problem("notls2.toml", &text);
    assert!(e.contains("tls: missing"), "{e}");
}

fn problem(name: &str, text: &str) -> String {
    BrokerConfig::load(&write(name, text))
        .unwrap_err()
        .to_string()
}

#[test]
fn unknown_keys_name_the_file_and_the_key() {
    let e = problem(
        "unknown.toml",
        &GOOD.replace("adapter_timeout_ms", "adapter_timout_ms"),
    );
    assert!(e.contains("unknown.toml"), "{e}");
    assert!(e.contains("adapter_timout_ms"), "{e}");
}

#[test]
fn bad_values_name_key_and_problem() {
    let e = problem(
        "dept.toml",
        &GOOD.replace("\"civil-affairs\"", "\"Civil Affairs\""),
    );
    assert!(e.contains("dept.toml: adapters[1].dept:"), "{e}");
    let e = problem(
        "dup.toml",
        &GOOD.replace("civil-affairs", "public-security"),
    );
    assert!(
        e.contains("adapters[1].dept: department public-security is listed twice"),
        "{e}"
    );
    let e = problem(
        "ep.toml",
        &GOOD.replace("https://127.0.0.1:7402", "127.0.0.1:7402"),
    );
    assert!(e.contains("adapters[1].endpoint:"), "{e}");
    let e = problem("listen.toml", &GOOD.replace("127.0.0.1:0", "localhost"));
    assert!(e.contains("broker.listen:"), "{e}");
    let e = problem("zero.toml", &GOOD.replace("2000", "0"));
    assert!(
        e.contains("broker.adapter_timeout_ms: must be greater than 0"),
        "{e}"
    );
}

#[test]
fn type_errors_keep_the_line() {
    let e = problem("type.toml", &GOOD.replace("2000", "\"2s\""));
    assert!(e.contains("type.toml"), "{e}");
    assert!(e.contains("line"), "{e}");
}

#[test]
fn a_missing_file_says_so() {
    let e = BrokerConfig::load(Path::new("/nonexistent/broker.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/broker.toml: cannot read"), "{e}");
}

#[test]
fn holidays_and_make_up_days_shape_the_reply_deadline_calendar() {
    let with = |lists: &str| GOOD.replace("adapter_timeout_ms = 2000", lists);
    let c = BrokerConfig::load(&write(
        "holidays.toml",
        &with(
            "holidays = [\"2025-10-01\", \"2025-10-02\"]\nmake_up_working_days = [\"2025-09-28\"]",
        ),
    ))
    .unwrap();
    let day = |s| huitong_core::calendar::parse_date(s).unwrap();
    assert!(!c.work_calendar.is_working_day(day("2025-10-01")));
    assert!(c.work_calendar.is_working_day(day("2025-09-28")));
    assert!(
        c.work_calendar.is_working_day(day("2025-10-03")),
        "not listed"
    );

    let e = problem(
        "holiday-bad.toml",
        &with("holidays = [\"2025-10-01\", \"2025-10-32\"]"),
    );
    assert!(
        e.contains("broker.holidays[1]: \"2025-10-32\" is not a date; write YYYY-MM-DD"),
        "{e}"
    );
    let e = problem(
        "make-up-weekday.toml",
        &with("make_up_working_days = [\"2025-09-30\"]"),
    );
    assert!(
        e.contains("broker.make_up_working_days: 2025-09-30 is a Tuesday"),
        "{e}"
    );
    let e = problem(
        "both.toml",
        &with("holidays = [\"2025-09-28\"]\nmake_up_working_days = [\"2025-09-28\"]"),
    );
    assert!(
        e.contains(
            "broker.holidays: 2025-09-28 is listed both as a holiday and as a make-up working day"
        ),
        "{e}"
    );
}

#[test]
fn connection_limits_default_to_the_tls_defaults_and_are_read() {
    let c = BrokerConfig::load(&write("limits-default.toml", GOOD)).unwrap();
    assert_eq!(c.connections, huitong_tls::ConnectionLimits::default());
    let text = GOOD.replace(
        "adapter_timeout_ms = 2000",
        "adapter_timeout_ms = 2000\nhandshake_timeout_ms = 1500\n\
         max_pending_handshakes_per_address = 8\nmax_connections_per_address = 20000",
    );
    let c = BrokerConfig::load(&write("limits.toml", &text)).unwrap();
    assert_eq!(
        c.connections,
        huitong_tls::ConnectionLimits {
            handshake_timeout: Duration::from_millis(1500),
            pending_handshakes_per_address: 8,
            connections_per_address: 20000,
        }
    );
    let e = problem(
        "limits-zero.toml",
        &GOOD.replace(
            "adapter_timeout_ms = 2000",
            "adapter_timeout_ms = 2000\nmax_connections_per_address = 0",
        ),
    );
    assert!(
        e.contains("broker.max_connections_per_address: must be greater than 0"),
        "{e}"
    );
}

#[test]
fn alert_thresholds_are_off_unless_configured_and_checked() {
    let c = BrokerConfig::load(&write("noalerts.toml", GOOD)).unwrap();
    assert_eq!(c.alerts, None);
    let with = |table: &str| format!("{GOOD}\n[alerts]\n{table}\n");
    let c = BrokerConfig::load(&write(
        "alerts.toml",
        &with("subjects_per_hour = 500\nrefusals_per_hour = 100"),
    ))
    .unwrap();
    assert_eq!(
        c.alerts,
        Some(huitong_audit::alerts::Thresholds {
            subjects_per_hour: Some(500),
            refusals_per_hour: Some(100),
        })
    );
    let c = BrokerConfig::load(&write("alerts1.toml", &with("refusals_per_hour = 3"))).unwrap();
    assert_eq!(c.alerts.and_then(|a| a.subjects_per_hour), None);
    let e = problem("alerts0.toml", &with("subjects_per_hour = 0"));
    assert!(
        e.contains("alerts.subjects_per_hour: must be at least 1"),
        "{e}"
    );
    let e = problem("alertsnone.toml", &with(""));
    assert!(e.contains("alerts: is empty"), "{e}");
    let e = problem("alertstypo.toml", &with("subject_per_hour = 5"));
    assert!(e.contains("subject_per_hour"), "{e}");
}
