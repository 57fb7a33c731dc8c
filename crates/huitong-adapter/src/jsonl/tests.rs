use std::collections::HashSet;

use huitong_core::{FieldType, Sensitivity, SharingClass};

use super::*;
use crate::test_support::{TempDir, field, household_register, names, spec};

const GOOD: &str = r#"{"id_number":"110101199001010011","name":"张三","birth_date":"1990-01-01","district":"东城区","household_size":3,"floor_area":80,"is_head":true}

{"id_number":"110101199202020022","name":"李四","district":"西城区","household_size":1,"floor_area":45.5}
   
{"id_number":"110101198503030033","name":"王五","birth_date":"1985-03-03","district":"东城区","household_size":2,"floor_area":80.0,"is_head":false}
"#;

fn load_one(dir: &TempDir, text: &str) -> Result<JsonlSource, Error> {
    let path = dir.write("household-register.jsonl", text);
    JsonlSource::load([(household_register(), path)])
}

fn rn(name: &str) -> ResourceName {
    ResourceName::new(name).unwrap()
}

fn key(id: &str) -> Vec<(FieldName, Value)> {
    vec![(FieldName::new("id_number").unwrap(), Value::string(id))]
}

fn page(size: u32, token: Option<&str>) -> PageRequest {
    PageRequest {
        size,
        token: token.map(str::to_owned),
    }
}

#[tokio::test]
async fn values_are_typed_missing_fields_are_null_and_blank_lines_skipped() {
    let dir = TempDir::new("jsonl-good");
    let source = load_one(&dir, GOOD).unwrap();
    let r = rn("household-register");
    assert_eq!(source.record_count(&r), Some(3));
    assert_eq!(source.kind(), "jsonl");
    assert_eq!(source.resources(), vec![household_register()]);

    let all = names(&[
        "id_number",
        "name",
        "birth_date",
        "district",
        "household_size",
        "floor_area",
        "is_head",
    ]);
    let rec = source
        .fetch(&r, &key("110101199001010011"), &all)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.fields["name"], Value::string("张三"));
    assert_eq!(rec.fields["birth_date"], Value::date(1990, 1, 1));
    assert_eq!(rec.fields["household_size"], Value::int(3));
    assert_eq!(rec.fields["floor_area"], Value::double(80.0));
    assert_eq!(rec.fields["is_head"], Value::bool(true));

    let rec = source
        .fetch(&r, &key("110101199202020022"), &all)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.fields["birth_date"], Value::null());
    assert_eq!(rec.fields["is_head"], Value::null());
}

#[tokio::test]
async fn fetch_returns_only_the_requested_fields_and_none_for_an_unknown_key() {
    let dir = TempDir::new("jsonl-fetch");
    let source = load_one(&dir, GOOD).unwrap();
    let r = rn("household-register");
    let rec = source
        .fetch(
            &r,
            &key("110101198503030033"),
            &names(&["name", "district"]),
        )
        .await
        .unwrap()
        .unwrap();
    let mut got: Vec<&str> = rec.fields.keys().map(String::as_str).collect();
    got.sort_unstable();
    assert_eq!(got, ["district", "name"]);
    assert!(
        source
            .fetch(&r, &key("999999999999999999"), &names(&["name"]))
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let dir = TempDir::new("jsonl-bom");
    let source = load_one(&dir, &format!("\u{feff}{GOOD}")).unwrap();
    assert_eq!(source.record_count(&rn("household-register")), Some(3));
}

/// Each bad file fails with its file, line and field named, and never the offending value.
#[test]
fn bad_lines_name_file_line_and_field_but_not_the_value() {
    let secret = "110101199001019999";
    let ok = r#"{"id_number":"110101199001010011","name":"张三"}"#;
    let cases: Vec<(String, usize, Option<&str>, &str)> = vec![
        (
            format!("{ok}\n{{\"id_number\":\"{secret}\",\"name\":"),
            2,
            None,
            "not valid JSON",
        ),
        (
            format!("{ok}\n{{\"id_number\" \"{secret}\"}}"),
            2,
            None,
            "not valid JSON (column",
        ),
        (
            format!("{ok}\n\n[\"{secret}\"]"),
            3,
            None,
            "not a JSON object",
        ),
        (
            format!("{{\"id_number\":\"{secret}\",\"nickname\":\"{secret}\"}}"),
            1,
            Some("nickname"),
            "it is not a field of public-security/household-register; its fields are: id_number, name,",
        ),
        (
            format!("{{\"id_number\":\"{secret}\",\"household_size\":\"{secret}\"}}"),
            1,
            Some("household_size"),
            "expected a whole number",
        ),
        (
            format!("{{\"id_number\":\"{secret}\",\"birth_date\":\"1990-02-30\"}}"),
            1,
            Some("birth_date"),
            "expected a date as \"YYYY-MM-DD\"",
        ),
        (
            format!("{ok}\n{{\"name\":\"{secret}\"}}"),
            2,
            Some("id_number"),
            "the key field is empty",
        ),
        (
            format!("{ok}\n{{\"id_number\":null}}"),
            2,
            Some("id_number"),
            "the key field is empty",
        ),
        (
            format!("{ok}\n{{\"id_number\":\"  \"}}"),
            2,
            Some("id_number"),
            "the key field is empty",
        ),
        (
            format!("{{\"id_number\":\"{secret}\"}}\n{ok}\n{{\"id_number\":\"{secret}\"}}"),
            3,
            None,
            "it has the same key as line 1",
        ),
    ];
    for (i, (text, line, field, problem)) in cases.into_iter().enumerate() {
        let dir = TempDir::new("jsonl-bad");
        let err = load_one(&dir, &text).unwrap_err();
        let msg = err.to_string();
        match &err {
            Error::Data {
                file,
                line: l,
                field: f,
                ..
            } => {
                assert!(
                    file.ends_with("household-register.jsonl"),
                    "case {i}: {msg}"
                );
                assert_eq!(*l, line, "case {i}: {msg}");
                assert_eq!(f.as_deref(), field, "case {i}: {msg}");
            }
            other => panic!("case {i}: not a data error: {other}"),
        }
        assert!(
            msg.contains("household-register.jsonl, line "),
            "case {i}: {msg}"
        );
        if let Some(field) = field {
            assert!(
                msg.contains(&format!(", field {field}: ")),
                "case {i}: {msg}"
            );
        }
        assert!(msg.contains(problem), "case {i}: {msg}");
        assert!(!msg.contains(secret), "case {i} quotes the value: {msg}");
    }
}

#[test]
fn text_that_is_not_utf8_is_refused_by_line() {
    let dir = TempDir::new("jsonl-utf8");
    let mut bytes = b"{\"id_number\":\"1\"}\n{\"id_number\":\"".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\"}\n");
    let path = dir.write("household-register.jsonl", bytes);
    let msg = JsonlSource::load([(household_register(), path)])
        .unwrap_err()
        .to_string();
    assert!(
        msg.ends_with("household-register.jsonl, line 2: it is not UTF-8 text"),
        "{msg}"
    );
}

#[test]
fn a_missing_file_and_a_resource_given_twice_are_refused() {
    let dir = TempDir::new("jsonl-missing");
    let missing = dir.path().join("nowhere.jsonl");
    let msg = JsonlSource::load([(household_register(), missing)])
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("cannot read "), "{msg}");
    assert!(msg.contains("nowhere.jsonl"), "{msg}");

    let path = dir.write("a.jsonl", GOOD);
    let err = JsonlSource::load([
        (household_register(), path.clone()),
        (household_register(), path),
    ])
    .unwrap_err();
    assert!(matches!(err, Error::DuplicateResource(_)), "{err}");
}

/// 40 records, every third in 东城区; pages of 4 must give exactly those, in file order.
#[tokio::test]
async fn search_pages_through_every_match_once_in_file_order() {
    let mut text = String::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        let district = if i % 3 == 0 { "东城区" } else { "西城区" };
        let id = format!("1101011990010{i:05}");
        if i % 3 == 0 {
            expected.push(id.clone());
        }
        text.push_str(&format!(
            "{{\"id_number\":\"{id}\",\"district\":\"{district}\",\"floor_area\":{}}}\n",
            i % 2 * 10
        ));
    }
    let dir = TempDir::new("jsonl-search");
    let source = load_one(&dir, &text).unwrap();
    let r = rn("household-register");
    let filters = vec![(FieldName::new("district").unwrap(), Value::string("东城区"))];
    let fields = names(&["id_number"]);

    let mut got = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let p = source
            .search(&r, &filters, &fields, page(4, token.as_deref()))
            .await
            .unwrap();
        assert!(!p.records.is_empty(), "a token led to an empty page");
        assert!(p.records.len() <= 4);
        pages += 1;
        for rec in p.records {
            assert_eq!(rec.fields.len(), 1);
            got.push(rec.fields["id_number"].as_str().unwrap().to_owned());
        }
        match p.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(got, expected);
    assert_eq!(pages, expected.len().div_ceil(4));
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());

    // Several filters must all hold; 0.0 and -0.0 are the same number.
    let both = vec![
        (FieldName::new("district").unwrap(), Value::string("东城区")),
        (FieldName::new("floor_area").unwrap(), Value::double(-0.0)),
    ];
    let p = source
        .search(&r, &both, &fields, page(100, None))
        .await
        .unwrap();
    assert_eq!(p.records.len(), expected.len().div_ceil(2));
    assert_eq!(p.next_token, None);

    // A null filter matches the records that lack the field.
    let null = vec![(FieldName::new("name").unwrap(), Value::null())];
    let p = source
        .search(&r, &null, &fields, page(100, None))
        .await
        .unwrap();
    assert_eq!(p.records.len(), 40);
}

#[tokio::test]
async fn tokens_it_did_not_issue_are_refused() {
    let dir = TempDir::new("jsonl-token");
    let source = load_one(&dir, GOOD).unwrap();
    let r = rn("household-register");
    let fields = names(&["name"]);
    let east = vec![(FieldName::new("district").unwrap(), Value::string("东城区"))];
    let first = source
        .search(&r, &east, &fields, page(1, None))
        .await
        .unwrap();
    let token = first.next_token.unwrap();
    assert!(
        source
            .search(&r, &east, &fields, page(1, Some(&token)))
            .await
            .is_ok()
    );
    for bad in ["abc", "-1", "+2", "02", "3", "99999999999999999999999", ""] {
        let e = source
            .search(&r, &east, &fields, page(1, Some(bad)))
            .await
            .unwrap_err();
        assert!(matches!(e, SourceError::BadPageToken), "{bad:?}: {e}");
    }
    // The token points at a 东城区 record; with another filter it is not one this search issued.
    let west = vec![(FieldName::new("district").unwrap(), Value::string("西城区"))];
    let e = source
        .search(&r, &west, &fields, page(1, Some(&token)))
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::BadPageToken), "{e}");
}

#[tokio::test]
async fn composite_keys_do_not_run_together() {
    let s = spec(
        "civil-affairs",
        "marriage-registrations",
        vec![
            field("husband", FieldType::String, Sensitivity::Personal),
            field("wife", FieldType::String, Sensitivity::Personal),
            field("year", FieldType::Int, Sensitivity::Internal),
        ],
        &["husband", "wife"],
        SharingClass::Conditional,
    );
    let dir = TempDir::new("jsonl-composite");
    let path = dir.write(
        "m.jsonl",
        "{\"husband\":\"ab\",\"wife\":\"c\",\"year\":2001}\n{\"husband\":\"a\",\"wife\":\"bc\",\"year\":2002}\n",
    );
    let source = JsonlSource::load([(s, path)]).unwrap();
    let r = rn("marriage-registrations");
    let k = |h: &str, w: &str| {
        vec![
            (FieldName::new("husband").unwrap(), Value::string(h)),
            (FieldName::new("wife").unwrap(), Value::string(w)),
        ]
    };
    let year = names(&["year"]);
    let a = source
        .fetch(&r, &k("ab", "c"), &year)
        .await
        .unwrap()
        .unwrap();
    let b = source
        .fetch(&r, &k("a", "bc"), &year)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.fields["year"], Value::int(2001));
    assert_eq!(b.fields["year"], Value::int(2002));
    assert!(
        source
            .fetch(&r, &k("abc", ""), &year)
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn debug_output_holds_no_records() {
    let dir = TempDir::new("jsonl-debug");
    let source = load_one(&dir, GOOD).unwrap();
    let d = format!("{source:?}");
    assert!(
        d.contains("public-security/household-register (3 records"),
        "{d}"
    );
    assert!(!d.contains("张三"), "{d}");
}
