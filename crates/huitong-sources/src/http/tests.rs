//! The HTTP source against a small REST API served by axum in the test.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use huitong_adapter::{PageRequest, Source, SourceError};

use super::*;
use crate::Sources;
use crate::test_support::{TempDir, config, names, rn};

const TOKEN: &str = "Bearer s3cret-token";

fn people() -> J {
    json!([
        { "sfzh": "110101199001010011", "person": { "fullName": "张三", "age": "34" }, "district": "东城区", "married": true },
        { "sfzh": "110101199001010022", "person": { "fullName": "李四", "age": 51 }, "district": "东城区", "married": "false" },
        { "sfzh": "110101199001010033", "person": { "fullName": "王五", "age": null }, "district": "西城区" },
        { "sfzh": "110101199001010044", "person": { "fullName": "赵六", "age": 20 }, "district": "东城区x" }
    ])
}

/// The API: `/people/{id}` and `/people?district=`, behind a bearer token; `/slow/…` never
/// answers in time and `/down/…` is overloaded. Paths it was asked for are recorded.
async fn api() -> (String, Arc<Mutex<Vec<String>>>) {
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&asked);
    let handler = move |uri: Uri, headers: HeaderMap| {
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push(uri.to_string());
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
                return (StatusCode::UNAUTHORIZED, "no").into_response();
            }
            let path = uri.path();
            if path.starts_with("/slow/") {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            if path.starts_with("/down/") {
                return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
            }
            let body = if let Some(id) = path.strip_prefix("/people/") {
                let id = percent_encoding::percent_decode_str(id)
                    .decode_utf8_lossy()
                    .into_owned();
                match people()
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["sfzh"] == id.as_str())
                {
                    Some(p) => json!({ "code": 0, "data": p }),
                    None => return (StatusCode::NOT_FOUND, "{}").into_response(),
                }
            } else if path == "/people" {
                let q = uri.query().unwrap_or("");
                let district = q
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("district="))
                    .map(|v| {
                        percent_encoding::percent_decode_str(v)
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .unwrap_or_default();
                // A loose match, as some APIs do: a prefix.
                let items: Vec<J> = people()
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["district"].as_str().unwrap_or("").starts_with(&district))
                    .cloned()
                    .collect();
                json!({ "data": { "items": items } })
            } else {
                return (StatusCode::NOT_FOUND, "{}").into_response();
            };
            ([("content-type", "application/json")], body.to_string()).into_response()
        }
    };
    let app = Router::new().fallback(get(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), asked)
}

fn resource(base: &str, prefix: &str, extra: &str) -> String {
    format!(
        r#"[[resources]]
name = "people"
title = "People"
sharing_class = "open"
key_fields = ["id_number"]
[resources.source]
kind = "http"
fetch = "{base}/{prefix}/{{id_number}}"
search = ["{base}/people?district={{district}}"]
record = "data"
records = "data.items"
paths = {{ id_number = "sfzh", name = "person.fullName", age = "$.person.age" }}
auth_file = "token"
timeout_ms = 500
{extra}
[[resources.fields]]
name = "id_number"
type = "string"
sensitivity = "personal"
[[resources.fields]]
name = "name"
type = "string"
sensitivity = "personal"
[[resources.fields]]
name = "age"
type = "int"
sensitivity = "personal"
[[resources.fields]]
name = "district"
type = "string"
sensitivity = "internal"
[[resources.fields]]
name = "married"
type = "bool"
sensitivity = "personal"
"#
    )
}

fn load(dir: &TempDir, text: &str) -> Sources {
    dir.write("token", format!("{TOKEN}\n"));
    crate::load(&config(dir, text)).unwrap()
}

fn key(id: &str) -> Vec<(FieldName, Value)> {
    vec![(FieldName::new("id_number").unwrap(), Value::string(id))]
}

fn district(d: &str) -> Vec<(FieldName, Value)> {
    vec![(FieldName::new("district").unwrap(), Value::string(d))]
}

fn all() -> Vec<FieldName> {
    names(&["id_number", "name", "age", "district", "married"])
}

fn page(size: u32, token: Option<String>) -> PageRequest {
    PageRequest { size, token }
}

#[tokio::test]
async fn fetches_map_json_paths_to_typed_fields() {
    let (base, asked) = api().await;
    let dir = TempDir::new("http");
    let s = load(&dir, &resource(&base, "people", ""));
    let r = rn("people");
    let p = s
        .fetch(&r, &key("110101199001010011"), &all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.fields["name"], Value::string("张三"));
    assert_eq!(
        p.fields["age"],
        Value::int(34),
        "a number written as a string"
    );
    assert_eq!(p.fields["married"], Value::bool(true));
    let q = s
        .fetch(&r, &key("110101199001010033"), &all())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q.fields["age"], Value::null());
    assert_eq!(q.fields["married"], Value::null(), "absent is null");
    assert!(
        s.fetch(&r, &key("nobody"), &all()).await.unwrap().is_none(),
        "404 is no record"
    );

    // Values are percent-encoded: they cannot add a path segment or a query parameter.
    for sneaky in [
        "../admin",
        "x?district=东城区",
        "a/b#c",
        "110101199001010011/../x",
    ] {
        assert!(
            s.fetch(&r, &key(sneaky), &all()).await.unwrap().is_none(),
            "{sneaky}"
        );
    }
    let log = asked.lock().unwrap().clone();
    assert!(log.iter().any(|u| u == "/people/..%2Fadmin"), "{log:?}");
    assert!(
        log.iter()
            .all(|u| !u.contains("/admin") || u.contains("%2F")),
        "{log:?}"
    );
}

#[tokio::test]
async fn searches_filter_exactly_and_page() {
    let (base, _) = api().await;
    let dir = TempDir::new("http-search");
    let s = load(&dir, &resource(&base, "people", ""));
    let r = rn("people");
    // The API matches 东城区x too; the source keeps exact matches only.
    let first = s
        .search(&r, &district("东城区"), &all(), page(1, None))
        .await
        .unwrap();
    assert_eq!(first.records.len(), 1);
    let token = first.next_token.unwrap();
    assert!(!token.contains("1101"), "tokens carry no keys");
    let second = s
        .search(
            &r,
            &district("东城区"),
            &all(),
            page(5, Some(token.clone())),
        )
        .await
        .unwrap();
    assert_eq!(second.records.len(), 1);
    assert!(second.next_token.is_none());
    let ids: Vec<&Value> = first
        .records
        .iter()
        .chain(&second.records)
        .map(|r| &r.fields["id_number"])
        .collect();
    assert_eq!(
        ids,
        [
            &Value::string("110101199001010011"),
            &Value::string("110101199001010022")
        ]
    );

    // More filters than the URL takes are applied by the source.
    let mut married = district("东城区");
    married.push((FieldName::new("married").unwrap(), Value::bool(false)));
    let p = s
        .search(&r, &married, &all(), page(10, None))
        .await
        .unwrap();
    assert_eq!(p.records.len(), 1);

    // A token of another search, and a search no URL serves, are refused.
    let e = s
        .search(&r, &district("西城区"), &all(), page(5, Some(token)))
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::BadPageToken), "{e}");
    let by_name = vec![(FieldName::new("name").unwrap(), Value::string("张三"))];
    match s.search(&r, &by_name, &all(), page(5, None)).await {
        Err(SourceError::UnsupportedSearch(m)) => {
            assert_eq!(
                m,
                "public-security/people can be searched only with filters on (district)"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn failures_are_unavailable_or_internal_as_they_should_be() {
    let (base, _) = api().await;
    let dir = TempDir::new("http-fail");
    let r = rn("people");

    let slow = load(&dir, &resource(&base, "slow", ""));
    let started = Instant::now();
    match slow.fetch(&r, &key("110101199001010011"), &all()).await {
        Err(SourceError::Unavailable(m)) => assert!(m.contains("within 500 ms"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));

    let down = load(&dir, &resource(&base, "down", ""));
    match down.fetch(&r, &key("110101199001010011"), &all()).await {
        Err(SourceError::Unavailable(m)) => assert!(m.contains("HTTP 503"), "{m}"),
        other => panic!("{other:?}"),
    }

    dir.write("token", "Bearer wrong\n");
    let c = config(&dir, &resource(&base, "people", ""));
    let wrong = crate::load(&c).unwrap();
    match wrong.fetch(&r, &key("110101199001010011"), &all()).await {
        Err(SourceError::Internal(m)) => {
            assert!(m.contains("HTTP 401"), "{m}");
            assert!(!m.contains("wrong"), "{m}");
        }
        other => panic!("{other:?}"),
    }

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gone = load(&dir, &resource(&format!("http://{closed}"), "people", ""));
    match gone.fetch(&r, &key("110101199001010011"), &all()).await {
        Err(SourceError::Unavailable(m)) => assert!(m.contains("cannot be reached"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_options_are_named() {
    let dir = TempDir::new("http-config");
    let base = "http://127.0.0.1:1";
    let cases = [
        (
            resource(base, "people", "").replace("{id_number}", "{name}"),
            "resources[0].source.fetch: its placeholders must be the key fields, each once: {id_number}",
        ),
        (
            resource(base, "people", "").replace("district={district}", "x={salary}"),
            "resources[0].source.search[0]: \"salary\" is not one of the resource's fields",
        ),
        (
            resource("http://{id_number}.example", "people", ""),
            "resources[0].source.fetch: placeholders may appear only in the path and query",
        ),
        (
            resource(base, "people", "")
                .replace("records = \"data.items\"", "records = \"data..items\""),
            "resources[0].source.records: \"data..items\" is not a JSON path",
        ),
    ];
    for (text, want) in cases {
        let full = format!(
            "dept = \"public-security\"\ntls = {{ ca = \"c\", cert = \"c\", key = \"k\" }}\n{text}"
        );
        let path = dir.write("adapter.toml", &full);
        let e = huitong_adapter::AdapterConfig::load(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}\nwanted {want}");
    }
    // The credential file is read when the source loads.
    let c = config(&dir, &resource(base, "people", ""));
    let e = crate::check(&c).unwrap_err().to_string();
    assert!(
        e.contains("resources[0].source.auth_file: cannot read"),
        "{e}"
    );
}
