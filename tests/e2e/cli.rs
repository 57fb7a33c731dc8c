//! The `huitong` command as a user runs it: the demo, the query command, config checks and a
//! broker refusing to start half-configured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use huitong_tests::{Exchange, MARRIAGE, Role, TempDir, huitong_bin, init_demo};

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(huitong_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_walks_through_exchanges_across_three_departments_and_exits_zero() {
    let (ok, stdout, stderr) = run(&["demo", "--persons", "800"]);
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    for dept in ["public-security", "civil-affairs", "market-regulation"] {
        assert!(stdout.contains(dept), "{dept} missing from:\n{stdout}");
    }
    assert!(stdout.contains("0 surprises"), "{stdout}");
    assert!(stdout.contains("refused as it should be"), "{stdout}");
    // The auditor reads times in the exchange's zone, and the zone is shown.
    assert!(stdout.contains("+08:00  civil-affairs"), "{stdout}");
    // ID numbers are shown masked only. `--init` with the same size and seed writes the same people.
    let dir = TempDir::new("demo-ids");
    init_demo(dir.path(), 800);
    for r in huitong_tests::read_jsonl(&dir.path().join("household-register.jsonl")) {
        let id = r["id_number"].as_str().unwrap();
        assert!(!stdout.contains(id), "a full ID number was printed");
    }
}

#[test]
fn query_prints_the_records_as_json() {
    let ex = Exchange::start("");
    let person = &ex.records("household-register.jsonl")[5];
    let id = person["id_number"].as_str().unwrap();
    let id_files = ex.identity("civil-affairs", Role::Consumer);
    let ca = id_files.ca.to_str().unwrap().to_owned();
    let cert = id_files.cert.to_str().unwrap().to_owned();
    let (ok, stdout, stderr) = run(&[
        "query",
        "--broker",
        &ex.broker.endpoint(),
        "--ca",
        &ca,
        "--cert",
        &cert,
        "public-security/household-register",
        "--key",
        &format!("id_number={id}"),
        "--fields",
        "name,birth_date",
        "--purpose",
        MARRIAGE,
    ]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["records"][0]["name"], person["name"]);
    assert_eq!(json["records"][0]["birth_date"], person["birth_date"]);
    assert_eq!(json["records"][0].as_object().unwrap().len(), 2);
    assert_eq!(json["provenance"]["provider"], "public-security");

    let (ok, _, stderr) = run(&[
        "query",
        "--broker",
        &ex.broker.endpoint(),
        "--ca",
        &ca,
        "--cert",
        &cert,
        "public-security/household-register",
        "--key",
        &format!("id_number={id}"),
        "--fields",
        "name",
        "--purpose",
        "",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("INVALID_ARGUMENT") && stderr.contains("declare a purpose"),
        "{stderr}"
    );
}

#[test]
fn the_demo_configs_pass_config_check() {
    let dir = TempDir::new("check");
    init_demo(dir.path(), 500);
    for f in [
        "public-security.toml",
        "civil-affairs.toml",
        "market-regulation.toml",
        "broker.toml",
    ] {
        let (ok, stdout, stderr) = run(&["config", "check", dir.path().join(f).to_str().unwrap()]);
        assert!(ok, "{f}: {stderr}");
        assert!(stdout.contains("is valid"), "{stdout}");
    }
}

#[test]
fn a_broker_config_with_a_mistake_names_file_key_and_problem_and_nothing_starts() {
    let dir = TempDir::new("badcfg");
    let tls = "[tls]\nca = \"ca.pem\"\ncert = \"b.pem\"\nkey = \"b.key\"\n";
    let head = "[broker]\nlisten = \"127.0.0.1:0\"\n";
    let adapter = |dept: &str, endpoint: &str| {
        format!("[[adapters]]\ndept = \"{dept}\"\nendpoint = \"{endpoint}\"\n")
    };
    let cases = [
        (
            format!(
                "{head}adapter_timeout = 5\n{tls}{}",
                adapter("a", "https://127.0.0.1:1")
            ),
            "adapter_timeout",
        ),
        (
            format!(
                "{head}{tls}{}",
                adapter("Public Security", "https://127.0.0.1:1")
            ),
            "adapters[0].dept",
        ),
        (
            format!("{head}{tls}{}", adapter("a", "http://127.0.0.1:1")),
            "adapters[0].endpoint",
        ),
        (format!("{head}{tls}"), "no adapters are configured"),
        (
            format!("{head}{}", adapter("a", "https://127.0.0.1:1")),
            "tls: missing",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let (ok, stdout, stderr) = run(&["broker", "--config", path.to_str().unwrap()]);
        assert!(!ok, "case {i} started");
        assert!(
            !stdout.contains("listening on"),
            "case {i} listened: {stdout}"
        );
        assert!(
            stderr.contains(&format!("bad{i}.toml")),
            "case {i}: {stderr}"
        );
        assert!(stderr.contains(want), "case {i}: {stderr}");
        let (ok, _, stderr) = run(&["config", "check", path.to_str().unwrap()]);
        assert!(
            !ok && stderr.contains(want),
            "config check, case {i}: {stderr}"
        );
    }
}

#[test]
fn an_adapter_config_with_a_mistake_names_file_key_and_problem() {
    let dir = TempDir::new("badadapter");
    init_demo(dir.path(), 500);
    let path = dir.path().join("civil-affairs.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let broken = text.replacen("sensitivity = \"personal\"", "sensitivity = \"secret\"", 1);
    assert_ne!(text, broken);
    std::fs::write(&path, broken).unwrap();
    let (ok, stdout, stderr) = run(&["adapter", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(!stdout.contains("listening on"));
    assert!(stderr.contains("civil-affairs.toml"), "{stderr}");
    assert!(
        stderr.contains("sensitivity") && stderr.contains("\"secret\""),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_broker_and_adapters_cleanly() {
    let ex = Exchange::start("");
    let status = ex.broker.terminate();
    assert!(status.success(), "broker: {status:?}");
    for (dept, adapter) in ex.adapters {
        let status = adapter.terminate();
        assert!(status.success(), "{dept}: {status:?}");
    }
}

/// Splits a printed command line on spaces, honouring double quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[test]
fn the_commands_demo_serve_suggests_work_and_ctrl_c_stops_it() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(huitong_bin())
        .args(["demo", "--serve", "--persons", "500"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut suggested = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(cmd) = line.trim().strip_prefix("huitong ") {
            suggested.push(shell_words(cmd));
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    assert_eq!(suggested.len(), 5, "{suggested:?}");
    for args in &suggested {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, stdout, stderr) = run(&args);
        assert!(ok, "huitong {args:?} failed: {stderr}");
        assert!(!stdout.trim().is_empty());
        if args.contains(&"--zone") {
            assert!(stdout.contains("+08:00"), "{stdout}");
        }
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn pki_commands_create_issue_and_revoke() {
    let dir = TempDir::new("pki-cli");
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    let (ok, out, err) = run(&[
        "pki",
        "init",
        "--dir",
        pki_s,
        "--trust-domain",
        "gov.example",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("gov.example"), "{out}");
    // A second init must not replace the CA every certificate hangs on.
    let (ok, _, err) = run(&[
        "pki",
        "init",
        "--dir",
        pki_s,
        "--trust-domain",
        "gov.example",
    ]);
    assert!(!ok && err.contains("CA"), "{err}");
    let (ok, out, err) = run(&[
        "pki",
        "issue",
        "--dir",
        pki_s,
        "--dept",
        "civil-affairs",
        "--role",
        "consumer",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("spiffe://gov.example/dept/civil-affairs/consumer"),
        "{out}"
    );
    let (ok, _, err) = run(&[
        "pki", "issue", "--dir", pki_s, "--dept", "Civil", "--role", "consumer",
    ]);
    assert!(!ok && err.contains("--dept"), "{err}");
    let (ok, _, err) = run(&[
        "pki",
        "issue",
        "--dir",
        pki_s,
        "--dept",
        "civil-affairs",
        "--role",
        "king",
    ]);
    assert!(!ok && err.contains("--role"), "{err}");
    let cert = pki.join("civil-affairs-consumer.pem");
    let before = std::fs::read(pki.join("crl.pem")).unwrap();
    let (ok, _, err) = run(&[
        "pki",
        "revoke",
        "--dir",
        pki_s,
        "--cert",
        cert.to_str().unwrap(),
        "--reason",
        "key-compromise",
    ]);
    assert!(ok, "{err}");
    assert_ne!(
        std::fs::read(pki.join("crl.pem")).unwrap(),
        before,
        "the CRL was not rewritten"
    );
}

/// Runs `huitong admin` as `dept`'s administrator against the exchange.
fn admin(ex: &Exchange, dept: &str, args: &[&str]) -> (bool, serde_json::Value, String) {
    let id = ex.identity(dept, Role::Admin);
    let mut all = vec![
        "admin".to_owned(),
        "--broker".to_owned(),
        ex.broker.endpoint(),
        "--ca".to_owned(),
        id.ca.to_str().unwrap().to_owned(),
        "--cert".to_owned(),
        id.cert.to_str().unwrap().to_owned(),
    ];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let (ok, out, err) = run(&all);
    let json = if ok {
        serde_json::from_str(&out).unwrap()
    } else {
        serde_json::Value::Null
    };
    (ok, json, err)
}

#[test]
fn admin_commands_file_approve_list_and_revoke() {
    let ex = Exchange::start("");
    let (ok, filed, err) = admin(
        &ex,
        "taxation",
        &[
            "request",
            "public-security/household-register",
            "--fields",
            "name,address",
            "--purpose",
            "tax audit",
            "--legal-basis",
            "《税收征收管理法》第五十七条",
            "--days",
            "30",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(filed["state"], "pending");
    let id = filed["id"].as_str().unwrap().to_owned();
    let (ok, pending, err) = admin(&ex, "public-security", &["requests", "--state", "pending"]);
    assert!(ok, "{err}");
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str())
    );
    let (ok, grant, err) = admin(
        &ex,
        "public-security",
        &[
            "approve",
            &id,
            "--fields",
            "name,address",
            "--mask",
            "address=address",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(grant["masks"]["address"], "address");
    assert_eq!(grant["active"], true);
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    let (ok, grants, err) = admin(&ex, "taxation", &["grants"]);
    assert!(ok, "{err}");
    assert!(
        grants
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == grant_id.as_str())
    );
    let (ok, _, err) = admin(
        &ex,
        "public-security",
        &["approve", &id, "--mask", "address=blur"],
    );
    assert!(!ok && err.contains("blur"), "{err}");
    let (ok, revoked, err) = admin(
        &ex,
        "public-security",
        &["revoke", &grant_id, "--reason", "audit closed"],
    );
    assert!(ok, "{err}");
    assert_eq!(revoked["active"], false);
    assert_eq!(revoked["revocation_reason"], "audit closed");
    let (ok, _, err) = admin(&ex, "public-security", &["deny", &id, "--reason", ""]);
    assert!(!ok && err.contains("FAILED_PRECONDITION"), "{err}");
}

/// A provider that lets a request pass its reply deadline sees it listed as overdue. The
/// deadline is moved into the past in the stored record, as the passing of two weeks would.
#[test]
fn overdue_access_requests_are_listed() {
    use prost::Message;
    let mut ex = Exchange::start("");
    let (ok, filed, err) = admin(
        &ex,
        "taxation",
        &[
            "request",
            "public-security/household-register",
            "--fields",
            "name",
            "--purpose",
            "tax audit",
            "--legal-basis",
            "《税收征收管理法》",
        ],
    );
    assert!(ok, "{err}");
    let id = filed["id"].as_str().unwrap().to_owned();
    let (_, overdue, _) = admin(&ex, "public-security", &["requests", "--overdue"]);
    assert!(overdue.as_array().unwrap().is_empty());

    ex.broker.kill();
    {
        let db = sled::open(ex.dir.path().join("broker-test.toml-data/policy.sled")).unwrap();
        let key = format!("request/{id}");
        let mut r =
            huitong_proto::v1::AccessRequest::decode(&*db.get(&key).unwrap().unwrap()).unwrap();
        let weeks_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(21 * 86_400);
        r.filed_at = Some(weeks_ago.into());
        r.reply_due = Some((weeks_ago + std::time::Duration::from_secs(14 * 86_400)).into());
        db.insert(key.as_bytes(), r.encode_to_vec()).unwrap();
        db.flush().unwrap();
    }
    ex.restart_broker();
    let (ok, overdue, err) = admin(&ex, "public-security", &["requests", "--overdue"]);
    assert!(ok, "{err}");
    let list = overdue.as_array().unwrap();
    assert_eq!(list.len(), 1, "{overdue}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["overdue"], true);
}

/// `huitong audit entries --json | head -1`: the reader leaves after one line and the listing
/// ends quietly, with no panic message and a success exit, through a real pipe.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_into_a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let ex = Exchange::start("");
    let mut civil = ex.consumer("civil-affairs").await;
    for i in 0..300 {
        civil
            .query(huitong_tests::marriage_check(&ex.person(i)))
            .await
            .unwrap();
    }
    let id = ex.identity("discipline-inspection", Role::Auditor);
    let entries = || {
        let mut cmd = Command::new(huitong_bin());
        cmd.args([
            "audit",
            "entries",
            "--json",
            "--broker",
            &ex.broker.endpoint(),
        ])
        .arg("--ca")
        .arg(&id.ca)
        .arg("--cert")
        .arg(&id.cert);
        cmd
    };
    // The whole listing is far more than a pipe holds, so the writer must meet the closed end.
    let whole = entries().output().unwrap();
    assert!(whole.status.success());
    assert!(
        whole.stdout.len() > 4 * 65_536,
        "only {} bytes: too little to fill a pipe",
        whole.stdout.len()
    );

    let mut child = entries()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here, as `head -1` exits: the pipe's read end is closed.
    assert!(first.starts_with("{\""), "{first}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the listing did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.is_empty(), "not quiet: {stderr}");
}

/// `huitong admin approve` sets a grant's bounds on bulk reads, and the listing shows them.
#[test]
fn admin_approve_with_bounds_shows_them_in_the_listing() {
    let ex = Exchange::start("");
    let (ok, filed, err) = admin(
        &ex,
        "taxation",
        &[
            "request",
            "public-security/household-register",
            "--fields",
            "name,marital_status",
            "--purpose",
            "tax audit",
            "--legal-basis",
            "《税收征收管理法》第五十七条",
        ],
    );
    assert!(ok, "{err}");
    let id = filed["id"].as_str().unwrap().to_owned();
    // Mistakes are named before anything is sent.
    let (ok, _, err) = admin(&ex, "public-security", &["approve", &id, "--lookup", "all"]);
    assert!(
        !ok && err.contains("--lookup \"all\": use key or search"),
        "{err}"
    );
    let (ok, _, err) = admin(
        &ex,
        "public-security",
        &["approve", &id, "--max-records-per-query", "0"],
    );
    assert!(!ok && err.contains("--max-records-per-query"), "{err}");
    let (ok, grant, err) = admin(
        &ex,
        "public-security",
        &[
            "approve",
            &id,
            "--lookup",
            "search",
            "--max-records-per-query",
            "20",
            "--max-subjects-per-day",
            "300",
            "--require-case",
        ],
    );
    assert!(ok, "{err}");
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    let (ok, grants, err) = admin(&ex, "taxation", &["grants"]);
    assert!(ok, "{err}");
    let listed = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == grant_id.as_str())
        .unwrap();
    assert_eq!(listed["lookup"], "search");
    assert_eq!(listed["max_records_per_query"], 20);
    assert_eq!(listed["max_subjects_per_day"], 300);
    assert_eq!(listed["require_case"], true);
    // A policy-file grant without bounds: the register's default lookup, no caps.
    let (ok, grants, err) = admin(&ex, "civil-affairs", &["grants"]);
    assert!(ok, "{err}");
    let p1 = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "P-1")
        .unwrap();
    assert_eq!(p1["lookup"], "key");
    assert!(p1["max_records_per_query"].is_null() && p1["max_subjects_per_day"].is_null());
    assert_eq!(p1["require_case"], false);
}

/// A second demo exchange on the same machine: `--port-base` moves every port, so both run.
#[test]
fn demo_init_port_base_gives_a_second_exchange_its_own_ports() {
    let dir = TempDir::new("port-base");
    let base = huitong_tests::free_port().saturating_sub(10).max(20_000);
    let (ok, stdout, stderr) = run(&[
        "demo",
        "--init",
        dir.path().to_str().unwrap(),
        "--persons",
        "500",
        "--port-base",
        &base.to_string(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("HUITONG_BROKER=https://127.0.0.1:{base}")),
        "{stdout}"
    );
    let broker = std::fs::read_to_string(dir.path().join("broker.toml")).unwrap();
    assert!(
        broker.contains(&format!("listen = \"127.0.0.1:{base}\"")),
        "{broker}"
    );
    for (i, dept) in ["public-security", "civil-affairs", "market-regulation"]
        .iter()
        .enumerate()
    {
        let port = base + 1 + i as u16;
        assert!(
            broker.contains(&format!("endpoint = \"https://127.0.0.1:{port}\"")),
            "{broker}"
        );
        let adapter = std::fs::read_to_string(dir.path().join(format!("{dept}.toml"))).unwrap();
        assert!(adapter.contains(&format!("127.0.0.1:{port}")), "{adapter}");
    }
    // The ports it names are the ones the parts listen on.
    let adapter = huitong_tests::Proc::start(&[
        "adapter",
        "--config",
        dir.path().join("public-security.toml").to_str().unwrap(),
    ]);
    assert_eq!(adapter.addr.port(), base + 1);
    // A port base that leaves no room for the adapters is refused by the parser.
    let (ok, _, stderr) = run(&["demo", "--init", "x", "--port-base", "65534"]);
    assert!(!ok && stderr.contains("--port-base"), "{stderr}");
}
