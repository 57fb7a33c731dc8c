//! The exchange path end to end: real adapters and a real broker as processes on loopback,
//! queried over gRPC with the consumer SDK; answers checked field by field against the files
//! the adapters serve, and every bad input checked for its status and message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use huitong_client::{Client, ClientError, Query, Value};
use huitong_proto::value::timestamp_to_system_time;
use huitong_tests::{Exchange, MARRIAGE, Role};
use tonic::Code;

const REGISTER: &str = "public-security/household-register";
const LICENCES: &str = "market-regulation/business-licences";

/// Civil affairs, which the demo's policy grants part of the household register.
async fn client(ex: &Exchange) -> Client {
    ex.consumer("civil-affairs").await
}

fn refused(r: Result<huitong_client::QueryResponse, ClientError>) -> (Code, String) {
    match r {
        Ok(a) => panic!("expected a refusal, got {} records", a.records.len()),
        Err(ClientError::Status(s)) => (s.code(), s.message().to_owned()),
        Err(e) => panic!("expected a status, got {e}"),
    }
}

fn person_query(id: &str) -> Query {
    Query::by_key(REGISTER, "id_number", id)
        .fields(["name", "birth_date", "marital_status"])
        .purpose(MARRIAGE)
}

#[tokio::test(flavor = "multi_thread")]
async fn query_by_key_returns_exactly_the_requested_fields_with_provenance() {
    let ex = Exchange::start("");
    let people = ex.records("household-register.jsonl");
    let mut c = client(&ex).await;
    for person in people.iter().step_by(97).take(5) {
        let id = person["id_number"].as_str().unwrap();
        let answer = c.query(person_query(id)).await.unwrap();
        assert_eq!(answer.records.len(), 1);
        let got = &answer.records[0].fields;
        let names: BTreeSet<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from(["birth_date", "marital_status", "name"])
        );
        for f in ["name", "birth_date", "marital_status"] {
            assert_eq!(got[f].to_json(), person[f], "field {f} of {id}");
        }
        let p = answer.provenance.unwrap();
        assert_eq!(p.provider, "public-security");
        assert_eq!(p.resource, REGISTER);
        assert!(!p.from_cache);
        let fetched = timestamp_to_system_time(&p.fetched_at.unwrap()).unwrap();
        let age = SystemTime::now()
            .duration_since(fetched)
            .unwrap_or_default();
        assert!(age < Duration::from_secs(60), "fetched_at is {age:?} old");
        assert!(!answer.request_id.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_query_pages_through_every_match_exactly_once() {
    let ex = Exchange::start("");
    let expected: BTreeSet<String> = ex
        .records("business-licences.jsonl")
        .iter()
        .filter(|b| b["status"] == "active")
        .map(|b| b["credit_code"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        expected.len() > 40,
        "the demo data should have many active licences"
    );
    let mut c = client(&ex).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let answer = c
            .query(
                Query::search(LICENCES)
                    .filter("status", "active")
                    .fields(["credit_code", "status"])
                    .purpose("tax registration check")
                    .page_size(25)
                    .page_token(&token),
            )
            .await
            .unwrap();
        assert!(answer.records.len() <= 25);
        for r in &answer.records {
            assert_eq!(r.fields["status"], Value::string("active"));
            seen.push(r.fields["credit_code"].as_str().unwrap().to_owned());
        }
        pages += 1;
        token = answer.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        expected.len(),
        "duplicates or gaps across pages"
    );
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
    assert!(pages > 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn catalogue_lists_every_resource_with_its_provider_reachable() {
    let ex = Exchange::start("");
    let mut c = client(&ex).await;
    let entries = c.catalogue(None).await.unwrap();
    let names: BTreeSet<&str> = entries.iter().map(|e| e.resource.as_str()).collect();
    for r in [
        REGISTER,
        "public-security/criminal-records",
        "civil-affairs/marriage-registrations",
        LICENCES,
    ] {
        assert!(names.contains(r), "{r} missing from {names:?}");
    }
    assert!(entries.iter().all(|e| e.provider_reachable));
    let register = entries.iter().find(|e| e.resource == REGISTER).unwrap();
    let d = register.description.as_ref().unwrap();
    assert_eq!(d.key_fields, ["id_number"]);
    assert!(d.fields.iter().any(|f| f.name == "birth_date"));
    let only = c.catalogue(Some("civil-affairs")).await.unwrap();
    assert!(only.iter().all(|e| e.provider == "civil-affairs") && !only.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_that_name_nothing_real_are_not_found() {
    let ex = Exchange::start("");
    let mut c = client(&ex).await;
    let (code, msg) = refused(
        c.query(
            Query::by_key("public-security/tax-returns", "id", "1")
                .fields(["x"])
                .purpose("audit"),
        )
        .await,
    );
    assert_eq!(code, Code::NotFound);
    assert!(
        msg.contains("public-security/tax-returns is not in the catalogue"),
        "{msg}"
    );

    let (code, _) = refused(
        c.query(
            Query::by_key("health/records", "id", "1")
                .fields(["x"])
                .purpose("p"),
        )
        .await,
    );
    assert_eq!(code, Code::NotFound);

    // A well-formed ID number that nobody holds.
    let (code, msg) = refused(c.query(person_query("110105190001010000")).await);
    assert_eq!(code, Code::NotFound);
    assert!(
        msg.contains("no record of public-security/household-register"),
        "{msg}"
    );
    assert!(
        !msg.contains("110105190001010000"),
        "the key must not be echoed: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_empty_or_wrong_keys_are_invalid_arguments() {
    let ex = Exchange::start("");
    let mut c = client(&ex).await;
    let cases = [
        (
            Query::search(REGISTER).fields(["name"]).purpose("p"),
            "give either a key",
        ),
        (person_query(""), "the value for id_number is empty"),
        (
            Query::by_key(REGISTER, "name", "王伟")
                .fields(["name"])
                .purpose("p"),
            "\"name\" is not a key field",
        ),
        (
            Query::by_key(REGISTER, "id_number", 110105_i64)
                .fields(["name"])
                .purpose("p"),
            "holds string values, but an int was given",
        ),
        (
            Query::search(REGISTER)
                .key("id_number", "110105199001011234")
                .filter("name", "王伟")
                .fields(["name"])
                .purpose("p"),
            "not both",
        ),
        (
            Query::by_key("Public Security/register", "id", "1")
                .fields(["x"])
                .purpose("p"),
            "department id",
        ),
    ];
    for (q, want) in cases {
        let (code, msg) = refused(c.query(q).await);
        assert_eq!(code, Code::InvalidArgument, "{msg}");
        assert!(msg.contains(want), "{msg:?} should contain {want:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_are_invalid_arguments_that_name_the_field() {
    let ex = Exchange::start("");
    let mut c = client(&ex).await;
    let id = ex.records("household-register.jsonl")[0]["id_number"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, msg) = refused(
        c.query(
            Query::by_key(REGISTER, "id_number", id.as_str())
                .fields(["name", "salary"])
                .purpose("p"),
        )
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        msg.contains("\"salary\" is not a field of public-security/household-register"),
        "{msg}"
    );
    assert!(
        msg.contains("birth_date"),
        "the message should list the fields: {msg}"
    );

    let (code, msg) = refused(
        c.query(
            Query::search(REGISTER)
                .filter("wealth", "high")
                .fields(["name"])
                .purpose("p"),
        )
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("\"wealth\""), "{msg}");

    let (code, msg) = refused(
        c.query(Query::by_key(REGISTER, "id_number", id.as_str()).purpose("p"))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("name the fields you need"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_without_a_purpose_is_refused() {
    let ex = Exchange::start("");
    let mut c = client(&ex).await;
    for purpose in ["", "   "] {
        let (code, msg) = refused(
            c.query(
                Query::by_key(REGISTER, "id_number", "110105199001011234")
                    .fields(["name"])
                    .purpose(purpose),
            )
            .await,
        );
        assert_eq!(code, Code::InvalidArgument);
        assert!(msg.contains("declare a purpose"), "{msg}");
    }
}

/// A `keep:N:M` mask from the policy file, applied by a real broker: a name of three or more
/// characters shows its first and last, a two-character one shows nothing (N + M covers it).
#[tokio::test(flavor = "multi_thread")]
async fn a_keep_mask_from_the_policy_file_is_applied_by_the_broker() {
    let policy = r#"
[[grants]]
consumer = "taxation"
resource = "public-security/household-register"
fields = ["name", "birth_date"]
purposes = ["税务稽查 tax audit"]
expires = "2099-12-31"
masks = { name = "keep:1:1" }
"#;
    let ex = Exchange::start_with_policy("", policy);
    let people = ex.records("household-register.jsonl");
    let name_of = |p: &serde_json::Map<String, serde_json::Value>| {
        p["name"].as_str().unwrap().chars().collect::<Vec<char>>()
    };
    let long = people.iter().find(|p| name_of(p).len() >= 3).unwrap();
    let short = people.iter().find(|p| name_of(p).len() == 2).unwrap();
    let mut c = ex.consumer("taxation").await;
    for person in [long, short] {
        let id = person["id_number"].as_str().unwrap();
        let answer = c
            .query(
                Query::by_key(REGISTER, "id_number", id)
                    .fields(["name", "birth_date"])
                    .purpose("税务稽查 tax audit"),
            )
            .await
            .unwrap();
        assert_eq!(answer.masked_fields, ["name"]);
        let got = &answer.records[0].fields;
        assert_eq!(got["birth_date"].to_json(), person["birth_date"]);
        let name = name_of(person);
        let want: String = if name.len() <= 2 {
            "*".repeat(name.len())
        } else {
            let hidden = "*".repeat(name.len() - 2);
            format!("{}{hidden}{}", name[0], name[name.len() - 1])
        };
        assert_eq!(got["name"].as_str().unwrap(), want, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_not_shared_resource_is_never_served() {
    let ex = Exchange::start("");
    let mut c = client(&ex).await;
    let record = &ex.records("criminal-records.jsonl")[0];
    let (code, msg) = refused(
        c.query(
            Query::by_key(
                "public-security/criminal-records",
                "case_no",
                record["case_no"].as_str().unwrap(),
            )
            .fields(["offence"])
            .purpose("employment screening"),
        )
        .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    assert!(msg.contains("not shared"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_adapter_is_unavailable_and_named_while_others_still_answer() {
    let mut ex = Exchange::start("");
    let marriages = ex.records("marriage-registrations.jsonl");
    let person = ex.records("household-register.jsonl")[0]["id_number"]
        .as_str()
        .unwrap()
        .to_owned();
    ex.adapter("civil-affairs").kill();
    let mut c = client(&ex).await;
    let (code, msg) = refused(
        c.query(
            Query::by_key(
                "civil-affairs/marriage-registrations",
                "registration_no",
                marriages[0]["registration_no"].as_str().unwrap(),
            )
            .fields(["status"])
            .purpose("pension survivor check"),
        )
        .await,
    );
    assert_eq!(code, Code::Unavailable, "{msg}");
    assert!(
        msg.contains("department civil-affairs is unavailable"),
        "{msg}"
    );
    assert!(
        !msg.contains("127.0.0.1"),
        "internal addresses must not leak: {msg}"
    );
    // The other departments are not affected.
    c.query(person_query(&person)).await.unwrap();
    let entries = c.catalogue(Some("civil-affairs")).await.unwrap();
    assert!(entries.iter().all(|e| !e.provider_reachable));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_request_is_resource_exhausted_with_the_limit() {
    let ex = Exchange::start("max_message_bytes = 65536");
    let mut c = client(&ex).await;
    let huge = "x".repeat(100_000);
    let (code, msg) = refused(
        c.query(
            Query::search(REGISTER)
                .filter("name", huge.as_str())
                .fields(["name"])
                .purpose("p"),
        )
        .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert!(msg.contains("65536"), "{msg}");
    // The broker still serves normal requests afterwards.
    let id = ex.records("household-register.jsonl")[1]["id_number"]
        .as_str()
        .unwrap()
        .to_owned();
    c.query(person_query(&id)).await.unwrap();
}

/// Sends bytes that are not a protobuf message to `Exchange/Query`.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_request_is_invalid_argument() {
    let ex = Exchange::start("");
    let tls = huitong_tls::ClientTls::load(&ex.identity("civil-affairs", Role::Consumer)).unwrap();
    let channel = huitong_tls::endpoint(&ex.broker.endpoint())
        .unwrap()
        .connect_with_connector(tls.connector(huitong_tls::Expect::Role(Role::Broker)))
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    // Field 1 declared as a 200-byte string, then the message ends.
    let garbage = vec![0x0a, 0xc8, 0x01, b'x'];
    let status = grpc
        .unary::<Vec<u8>, Vec<u8>, _>(
            tonic::Request::new(garbage),
            http::uri::PathAndQuery::from_static("/huitong.v1.Exchange/Query"),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().contains("QueryRequest"),
        "{}",
        status.message()
    );
}

/// Passes bytes through unchanged, to put arbitrary bytes on the wire.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}
