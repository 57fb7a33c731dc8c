use super::*;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("huitong-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"
[[grants]]
consumer = "civil-affairs"
resource = "public-security/household-register"
fields = ["name", "birth_date", "address"]
purposes = ["marriage registration"]
expires = "2099-12-31"
masks = { address = "address" }
"#;

#[test]
fn a_policy_file_declares_grants() {
    let grants = load_policy_file(&write("good.toml", GOOD)).unwrap();
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(g.id(), "P-1");
    assert_eq!(g.consumer().as_str(), "civil-affairs");
    assert!(g.is_active(SystemTime::now()));
    assert_eq!(g.masks().len(), 1);
}

fn problem(name: &str, text: &str) -> String {
    load_policy_file(&write(name, text))
        .unwrap_err()
        .to_string()
}

#[test]
fn policy_file_mistakes_name_file_key_and_problem() {
    let e = problem("a.toml", &GOOD.replace("\"civil-affairs\"", "\"Civil\""));
    assert!(e.contains("a.toml: grants[0].consumer:"), "{e}");
    let e = problem(
        "b.toml",
        &GOOD.replace("public-security/household-register", "register"),
    );
    assert!(e.contains("grants[0].resource:"), "{e}");
    let e = problem("c.toml", &GOOD.replace("2099-12-31", "next year"));
    assert!(e.contains("grants[0].expires: expected a date"), "{e}");
    let e = problem(
        "d.toml",
        &GOOD.replace("address = \"address\"", "address = \"scramble\""),
    );
    assert!(
        e.contains("grants[0].masks:") && e.contains("scramble"),
        "{e}"
    );
    let e = problem(
        "d2.toml",
        &GOOD.replace("address = \"address\"", "address = \"keep:3\""),
    );
    assert!(
        e.contains(
            "d2.toml: grants[0].masks: field address: mask \"keep:3\" is incomplete: write \
             keep:N:M"
        ),
        "{e}"
    );
    let e = problem(
        "e.toml",
        &GOOD.replace(
            "masks = { address = \"address\" }",
            "masks = { salary = \"redact\" }",
        ),
    );
    assert!(e.contains("grants[0]") && e.contains("salary"), "{e}");
    let e = problem("f.toml", &GOOD.replace("purposes", "purpose"));
    assert!(e.contains("f.toml") && e.contains("purpose"), "{e}");
}

#[test]
fn quotas_are_read_and_their_mistakes_named() {
    let text = format!(
        "{GOOD}\n[[quotas]]\nconsumer = \"civil-affairs\"\nper_second = 50\n\n[[quotas]]\nconsumer = \"civil-affairs\"\nresource = \"public-security/household-register\"\nper_second = 5\nburst = 10\n"
    );
    let q = load_quotas(&write("q.toml", &text)).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].burst, 50.0);
    assert!(q[1].resource.is_some());
    let e = load_quotas(&write(
        "q1.toml",
        &text.replace("per_second = 5\n", "per_second = 0\n"),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("q1.toml: quotas[1].per_second: must be a number greater than 0"),
        "{e}"
    );
    let e = load_quotas(&write(
        "q2.toml",
        &text.replace("burst = 10", "burst = 0.5"),
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("quotas[1].burst"), "{e}");
    let e = load_quotas(&write(
        "q3.toml",
        &text.replace("per_second = 50", "per_secnd = 50"),
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("q3.toml") && e.contains("per_secnd"), "{e}");
    // Grants still load from a file with quotas.
    assert_eq!(load_policy_file(&write("q4.toml", &text)).unwrap().len(), 1);
}

#[test]
fn a_policy_file_grant_may_allow_matching_on_its_masked_fields() {
    let text = GOOD.replace(
        "masks = { address = \"address\" }",
        "masks = { address = \"address\" }\nmatch_fields = [\"address\"]",
    );
    let grants = load_policy_file(&write("match.toml", &text)).unwrap();
    assert_eq!(grants[0].match_fields().len(), 1);
    assert!(grants[0].allows_match(&FieldName::new("address").unwrap()));
    let grants = load_policy_file(&write("nomatch.toml", GOOD)).unwrap();
    assert!(!grants[0].allows_match(&FieldName::new("address").unwrap()));
    let e = problem(
        "g.toml",
        &text.replace(
            "match_fields = [\"address\"]",
            "match_fields = [\"salary\"]",
        ),
    );
    assert!(
        e.contains("g.toml: grants[0]") && e.contains("salary") && e.contains("match_fields"),
        "{e}"
    );
    let e = problem(
        "h.toml",
        &text.replace(
            "match_fields = [\"address\"]",
            "match_fields = [\"Address\"]",
        ),
    );
    assert!(e.contains("grants[0].match_fields:"), "{e}");
}

#[test]
fn a_policy_file_grant_names_at_most_16_purposes() {
    let many: Vec<String> = (0..17).map(|i| format!("\"purpose {i}\"")).collect();
    let e = problem(
        "p.toml",
        &GOOD.replace(
            "purposes = [\"marriage registration\"]",
            &format!("purposes = [{}]", many.join(", ")),
        ),
    );
    assert!(
        e.contains("grants[0].purposes:") && e.contains("at most 16"),
        "{e}"
    );
}

#[test]
fn a_policy_file_grant_declares_its_bounds() {
    // Without them: the resource's default lookup, no caps, no case needed.
    let grants = load_policy_file(&write("nobounds.toml", GOOD)).unwrap();
    assert_eq!(*grants[0].bounds(), Bounds::default());
    let text = format!(
        "{GOOD}lookup = \"search\"\nmax_records_per_query = 20\nmax_subjects_per_day = 500\nrequire_case = true\n"
    );
    let grants = load_policy_file(&write("bounds.toml", &text)).unwrap();
    assert_eq!(
        *grants[0].bounds(),
        Bounds {
            lookup: Some(huitong_core::Lookup::Search),
            max_records_per_query: Some(20),
            max_subjects_per_day: Some(500),
            require_case: true,
        }
    );
    let key = format!("{GOOD}lookup = \"key\"\n");
    let grants = load_policy_file(&write("key.toml", &key)).unwrap();
    assert_eq!(grants[0].bounds().lookup, Some(huitong_core::Lookup::Key));
}

#[test]
fn bad_bounds_in_a_policy_file_name_the_key_and_what_to_write() {
    let e = problem("l.toml", &format!("{GOOD}lookup = \"bulk\"\n"));
    assert!(
        e.contains("l.toml: grants[0].lookup: \"bulk\" is not \"key\"") && e.contains("\"search\""),
        "{e}"
    );
    let e = problem("m.toml", &format!("{GOOD}max_records_per_query = 0\n"));
    assert!(
        e.contains(
            "m.toml: grants[0].max_records_per_query: must be at least 1; leave it out for no cap"
        ),
        "{e}"
    );
    let e = problem("n.toml", &format!("{GOOD}max_subjects_per_day = 0\n"));
    assert!(
        e.contains("grants[0].max_subjects_per_day: must be at least 1"),
        "{e}"
    );
    let e = problem("o.toml", &format!("{GOOD}max_subjects_per_day = -5\n"));
    assert!(
        e.contains("o.toml") && e.contains("max_subjects_per_day"),
        "{e}"
    );
    let e = problem(
        "p.toml",
        &format!("{GOOD}max_records_per_query = \"ten\"\n"),
    );
    assert!(
        e.contains("p.toml") && e.contains("max_records_per_query"),
        "{e}"
    );
    let e = problem("q.toml", &format!("{GOOD}require_case = \"yes\"\n"));
    assert!(e.contains("q.toml") && e.contains("require_case"), "{e}");
    let e = problem("r.toml", &format!("{GOOD}max_subjects_a_day = 5\n"));
    assert!(
        e.contains("r.toml") && e.contains("max_subjects_a_day"),
        "{e}"
    );
}
