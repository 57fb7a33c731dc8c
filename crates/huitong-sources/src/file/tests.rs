use std::time::Duration;

use huitong_adapter::{Change, ChangeStream, Source, SourceError};
use tokio_stream::StreamExt;

use super::*;
use crate::test_support::{TempDir, config, names, rn};

const FIELDS: &str = r#"
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
[[resources.fields]]
name = "active"
type = "bool"
sensitivity = "public"
"#;

fn resource(name: &str, source: &str) -> String {
    format!(
        "[[resources]]\nname = \"{name}\"\ntitle = \"{name}\"\nsharing_class = \"open\"\n\
         key_fields = [\"licence_no\"]\nsource = {source}\n{FIELDS}"
    )
}

fn key(no: &str) -> Vec<(FieldName, Value)> {
    vec![(FieldName::new("licence_no").unwrap(), Value::string(no))]
}

fn all() -> Vec<FieldName> {
    names(&["licence_no", "name", "capital", "founded", "active"])
}

const CSV: &str = "\u{feff}执照号,企业名称,capital,founded,active,unused\r\n\
    L1,\"北京某某科技有限公司, 分公司\",1000000.5,2010-05-04,true,x\r\n\
    L2,\"\"\"引号\"\" 商行\",,,false,y\r\n\
    L3,\"\",0,2020-01-31,,z\r\n";

fn csv_source(dir: &TempDir) -> FileSource {
    dir.write("licences.csv", CSV);
    let c = config(
        dir,
        &resource(
            "licences",
            "{ kind = \"csv\", path = \"licences.csv\", columns = { licence_no = \"执照号\", name = \"企业名称\" } }",
        ),
    );
    let (spec, source) = c.sources().next().unwrap();
    let huitong_adapter::config::SourceConfig::Csv(csv) = source else {
        panic!("not csv");
    };
    FileSource::load([(
        spec.clone(),
        dir.path().join("licences.csv"),
        Format::csv(csv).unwrap(),
    )])
    .unwrap()
}

#[tokio::test]
async fn csv_cells_are_typed_empty_is_null_and_quoted_empty_is_text() {
    let dir = TempDir::new("csv");
    let s = csv_source(&dir);
    let r = rn("licences");
    let l1 = s.fetch(&r, &key("L1"), &all()).await.unwrap().unwrap();
    assert_eq!(
        l1.fields["name"],
        Value::string("北京某某科技有限公司, 分公司")
    );
    assert_eq!(l1.fields["capital"], Value::double(1_000_000.5));
    assert_eq!(l1.fields["founded"], Value::date(2010, 5, 4));
    assert_eq!(l1.fields["active"], Value::bool(true));
    let l2 = s.fetch(&r, &key("L2"), &all()).await.unwrap().unwrap();
    assert_eq!(l2.fields["name"], Value::string("\"引号\" 商行"));
    assert_eq!(l2.fields["capital"], Value::null());
    assert_eq!(l2.fields["founded"], Value::null());
    let l3 = s.fetch(&r, &key("L3"), &all()).await.unwrap().unwrap();
    assert_eq!(l3.fields["name"], Value::string(""));
    assert_eq!(l3.fields["active"], Value::null());
    let inactive = s
        .search(
            &r,
            &[(FieldName::new("active").unwrap(), Value::bool(false))],
            &all(),
            PageRequest {
                size: 10,
                token: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(inactive.records.len(), 1);
}

#[test]
fn bad_csv_files_name_file_line_and_field() {
    let dir = TempDir::new("badcsv");
    let spec = {
        let c = config(
            &dir,
            &resource("licences", "{ kind = \"csv\", path = \"x.csv\" }"),
        );
        c.resources().next().unwrap().clone()
    };
    let header = "licence_no,name,capital,founded,active\n";
    let cases = [
        ("", 1, None, "the file is empty"),
        (
            "licence_no,name\n",
            1,
            Some("capital"),
            "the header has no column \"capital\"",
        ),
        (
            &format!("{header}L1,a,1,2020-01-01,true\nL2,b,x,,\n") as &str,
            3,
            Some("capital"),
            "expected a number",
        ),
        (
            &format!("{header}L1,a,1,2020-02-30,true\n"),
            2,
            Some("founded"),
            "expected a date",
        ),
        (
            &format!("{header}L1,a,1\n"),
            2,
            None,
            "it has 3 cells; the header has 5 columns",
        ),
        (
            &format!("{header}L1,a,,,\nL1,b,,,\n"),
            3,
            None,
            "the same key as line 2",
        ),
        (
            &format!("{header},a,,,\n"),
            2,
            Some("licence_no"),
            "the key field is empty",
        ),
        (
            &format!("{header}L1,\"a,,,\n"),
            2,
            None,
            "a quoted cell is not closed",
        ),
    ];
    for (i, (text, line, field, problem)) in cases.into_iter().enumerate() {
        let path = dir.write("x.csv", text);
        let e = read(
            spec.clone(),
            &path,
            &Format::Csv {
                delimiter: b',',
                columns: Default::default(),
            },
        )
        .unwrap_err();
        let msg = e.to_string();
        match e {
            Error::Data(huitong_adapter::Error::Data {
                line: l, field: f, ..
            }) => {
                assert_eq!(l, line, "case {i}: {msg}");
                assert_eq!(f.as_deref(), field, "case {i}: {msg}");
            }
            other => panic!("case {i}: {other}"),
        }
        assert!(msg.contains(problem), "case {i}: {msg}");
        assert!(msg.contains("x.csv, line "), "case {i}: {msg}");
    }
}

async fn next(stream: &mut ChangeStream) -> Change {
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(c))) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

/// A reload reports each key added, changed or removed, once, and nothing for unchanged ones;
/// a file that no longer parses leaves the loaded records in service.
#[tokio::test]
async fn reloads_publish_what_changed_and_survive_bad_files() {
    let dir = TempDir::new("reload");
    let s = csv_source(&dir);
    let r = rn("licences");
    let mut watch = s.watch(&r, None).await.unwrap();
    assert_eq!(s.reload(), 0, "nothing changed yet");

    // L1 changed, L2 removed, L3 unchanged, L4 new; written elsewhere and renamed in place.
    let newer = "执照号,企业名称,capital,founded,active,unused\n\
        L1,北京某某科技有限公司,2000000,2010-05-04,true,x\n\
        L3,\"\",0,2020-01-31,,other-unused-value\n\
        L4,新公司,1,2024-06-01,true,\n";
    dir.write("licences.csv.tmp", newer);
    std::fs::rename(
        dir.path().join("licences.csv.tmp"),
        dir.path().join("licences.csv"),
    )
    .unwrap();
    assert_eq!(s.reload(), 3);
    let mut got = Vec::new();
    for _ in 0..3 {
        let c = next(&mut watch).await;
        got.push((c.key[0].1.as_str().unwrap().to_owned(), c.record.is_some()));
    }
    assert_eq!(
        got,
        [
            ("L1".into(), true),
            ("L4".into(), true),
            ("L2".into(), false)
        ]
    );
    assert!(s.fetch(&r, &key("L2"), &all()).await.unwrap().is_none());
    assert_eq!(
        s.fetch(&r, &key("L4"), &all())
            .await
            .unwrap()
            .unwrap()
            .fields["name"],
        Value::string("新公司")
    );

    // A broken file: nothing changes, the old records stay.
    dir.write("licences.csv", "执照号,企业名称\nL9,\"unclosed\n");
    assert_eq!(s.reload(), 0);
    assert_eq!(s.record_count(&r), Some(3));
    assert!(s.fetch(&r, &key("L4"), &all()).await.unwrap().is_some());
}

#[tokio::test]
async fn page_tokens_do_not_cross_a_reload() {
    let dir = TempDir::new("tokens");
    let s = csv_source(&dir);
    let r = rn("licences");
    let first = s
        .search(
            &r,
            &[],
            &all(),
            PageRequest {
                size: 1,
                token: None,
            },
        )
        .await
        .unwrap();
    let token = first.next_token.unwrap();
    let second = s
        .search(
            &r,
            &[],
            &all(),
            PageRequest {
                size: 1,
                token: Some(token.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.records[0].fields["licence_no"], Value::string("L2"));
    dir.write("licences.csv", format!("{CSV}L5,x,,,,\n"));
    s.reload();
    let e = s
        .search(
            &r,
            &[],
            &all(),
            PageRequest {
                size: 1,
                token: Some(token),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::BadPageToken), "{e}");
}

/// The whole path `huitong adapter` takes: a jsonl resource from the configuration, reloaded
/// by the background task, its changes watched.
#[tokio::test]
async fn jsonl_files_from_the_config_reload_in_the_background() {
    let dir = TempDir::new("jsonl");
    dir.write(
        "licences.jsonl",
        "{\"licence_no\":\"L1\",\"name\":\"甲\"}\n{\"licence_no\":\"L2\",\"name\":\"乙\"}\n",
    );
    let c = config(
        &dir,
        &resource(
            "licences",
            "{ kind = \"jsonl\", path = \"licences.jsonl\" }",
        ),
    );
    let s = crate::load(&c).unwrap();
    assert_eq!(s.kind(), "file");
    let r = rn("licences");
    let cursor = {
        let mut w = s.watch(&r, None).await.unwrap();
        dir.write(
            "licences.jsonl",
            "{\"licence_no\":\"L1\",\"name\":\"甲改\"}\n{\"licence_no\":\"L2\",\"name\":\"乙\"}\n",
        );
        let c = next(&mut w).await;
        assert_eq!(c.key[0].1, Value::string("L1"));
        assert_eq!(c.record.unwrap().fields["name"], Value::string("甲改"));
        c.cursor
    };
    dir.write(
        "licences.jsonl",
        "{\"licence_no\":\"L1\",\"name\":\"甲改\"}\n",
    );
    let mut resumed = s.watch(&r, Some(&cursor)).await.unwrap();
    let gone = next(&mut resumed).await;
    assert_eq!(gone.key[0].1, Value::string("L2"));
    assert!(gone.record.is_none());
}
