//! Hostile cases: policy walked around (filters on masked fields, subject reports, small gaps).
//!
//! Each test runs the real broker and the demo's adapters over mutual TLS.

use huitong_client::{Admin, Audit, ClientError, Query, Value};
use huitong_proto::v1::exchange_client::ExchangeClient;
use huitong_proto::v1::{Date, Filter, ListEntriesRequest, QueryRequest, value::Kind};
use huitong_tests::{Exchange, MARRIAGE, Role};
use tonic::Code;

const REGISTER: &str = "public-security/household-register";
const AUDITOR: &str = "discipline-inspection";

fn status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (Code, String) {
    match r {
        Err(ClientError::Status(s)) => (s.code(), s.message().to_owned()),
        other => panic!("expected a status, got {other:?}"),
    }
}

fn text(record: &huitong_proto::v1::Record, field: &str) -> String {
    record.fields[field].as_str().unwrap_or_default().to_owned()
}

/// The generated client over a mutual TLS channel as `dept`'s consumer, to send requests the
/// SDK would not build.
async fn raw_exchange(ex: &Exchange, dept: &str) -> ExchangeClient<tonic::transport::Channel> {
    ExchangeClient::new(channel(ex, dept).await)
}

async fn channel(ex: &Exchange, dept: &str) -> tonic::transport::Channel {
    let tls = huitong_tls::ClientTls::load(&ex.identity(dept, Role::Consumer)).unwrap();
    huitong_tls::endpoint(&ex.broker.endpoint())
        .unwrap()
        .connect_with_connector(tls.connector(huitong_tls::Expect::Role(Role::Broker)))
        .await
        .unwrap()
}

async fn auditor(ex: &Exchange) -> Audit {
    Audit::connect(&ex.broker.endpoint(), &ex.identity(AUDITOR, Role::Auditor))
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Matching on masked fields (issue 18 item 2)
// ---------------------------------------------------------------------------------------------

/// Taxation may match on the address it receives masked: the policy file says so. Both
/// grants may search (the demo's marriage grant P-1 allows key lookups only); civil affairs'
/// (P-6) masks the address like P-1 and allows no match on it.
const TAX_ADDRESS_GRANT: &str = r#"
[[grants]]
consumer = "taxation"
resource = "public-security/household-register"
fields = ["name", "address"]
purposes = ["tax audit"]
expires = "2099-12-31"
masks = { address = "address" }
match_fields = ["address"]
lookup = "search"

[[grants]]
consumer = "civil-affairs"
resource = "public-security/household-register"
fields = ["name", "address"]
purposes = ["婚姻登记 marriage registration"]
expires = "2099-12-31"
masks = { address = "address" }
lookup = "search"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_on_a_masked_address_cannot_confirm_who_lives_there() {
    let ex = Exchange::start_with_policy("", TAX_ADDRESS_GRANT);
    let person = &ex.records("household-register.jsonl")[0];
    let address = person["address"].as_str().unwrap().to_owned();
    let name = person["name"].as_str().unwrap().to_owned();
    let mut civil = ex.consumer("civil-affairs").await;

    // Civil affairs' search grant P-6 releases the address only to the district.
    let (code, msg) = status(
        civil
            .query(
                Query::search(REGISTER)
                    .filter("address", address.as_str())
                    .fields(["name"])
                    .purpose(MARRIAGE),
            )
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(
        msg.contains("grant P-6")
            && msg.contains("\"address\"")
            && msg.contains("match_fields")
            && msg.contains("public-security"),
        "{msg}"
    );
    assert!(
        !msg.contains(&address),
        "the refusal quotes the address: {msg}"
    );

    // A filter on a field released unmasked works; the address still leaves masked.
    let answer = civil
        .query(
            Query::search(REGISTER)
                .filter("name", name.as_str())
                .fields(["name", "address"])
                .purpose(MARRIAGE),
        )
        .await
        .unwrap();
    assert!(!answer.records.is_empty());
    assert!(answer.records.iter().all(|r| text(r, "name") == name));
    assert!(answer.records.iter().all(|r| text(r, "address") != address));
    assert_eq!(answer.masked_fields, ["address"]);

    // A grant that allows matching on the address lets the filter through, still masked.
    let mut tax = ex.consumer("taxation").await;
    let answer = tax
        .query(
            Query::search(REGISTER)
                .filter("address", address.as_str())
                .fields(["name", "address"])
                .purpose("tax audit"),
        )
        .await
        .unwrap();
    assert!(answer.records.iter().any(|r| text(r, "name") == name));
    assert!(answer.records.iter().all(|r| text(r, "address") != address));
}

async fn file_tax_request(admin: &mut Admin) -> huitong_proto::v1::AccessRequest {
    admin
        .file_request(
            REGISTER,
            &["name", "id_number"],
            &["tax audit"],
            "《税收征收管理法》第五十七条",
            30,
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_on_a_masked_id_number_needs_the_providers_match_fields() {
    let ex = Exchange::start("");
    let id = ex.person(3);
    let mut tax_admin = ex.admin("taxation").await;
    let mut provider = ex.admin("public-security").await;
    let by_id = || {
        Query::by_key(REGISTER, "id_number", id.as_str())
            .fields(["name", "id_number"])
            .purpose("tax audit")
    };
    let filed = file_tax_request(&mut tax_admin).await;
    let masked = provider
        .approve(&filed.id, &[], &[("id_number", "id-number")])
        .await
        .unwrap();
    assert!(masked.match_fields.is_empty());
    let mut tax = ex.consumer("taxation").await;
    let (code, msg) = status(tax.query(by_id()).await);
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(
        msg.contains(&format!("grant {}", masked.id))
            && msg.contains("\"id_number\"")
            && msg.contains("key"),
        "{msg}"
    );
    assert!(
        !msg.contains(&id),
        "the refusal quotes the id number: {msg}"
    );

    let filed = file_tax_request(&mut tax_admin).await;
    let matching = provider
        .approve_matching(
            &filed.id,
            &[],
            &[("id_number", "id-number")],
            &["id_number"],
        )
        .await
        .unwrap();
    assert_eq!(matching.match_fields, ["id_number"]);
    let answer = tax.query(by_id()).await.unwrap();
    assert_eq!(answer.grant_id, matching.id);
    assert_ne!(text(&answer.records[0], "id_number"), id);

    // match_fields name granted fields only.
    let filed = file_tax_request(&mut tax_admin).await;
    let (code, msg) = status(
        provider
            .approve_matching(&filed.id, &["name"], &[], &["id_number"])
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(
        msg.contains("match_fields") && msg.contains("id_number"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Subject reports validate like Query (issue 18 item 6)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn subject_report_mistakes_are_invalid_argument_not_an_empty_report() {
    let ex = Exchange::start("");
    let id = ex.person(0);
    let mut audit = auditor(&ex).await;
    for (resource, key, names) in [
        (
            "public-security/no-such-register",
            "id_number",
            "public-security/no-such-register",
        ),
        ("tax-bureau/returns", "id_number", "tax-bureau/returns"),
        (REGISTER, "ID_NUMBER", "ID_NUMBER"),
        (REGISTER, "name", "\"name\" is not a key field"),
    ] {
        let err = audit
            .subject_report(resource, &[(key, id.as_str())])
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(Code::InvalidArgument),
            "{resource} {key}: {err}"
        );
        assert!(err.to_string().contains(names), "{resource} {key}: {err}");
    }
    let err = audit
        .subject_report(REGISTER, &[("id_number", "\u{200B}")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    let err = audit.subject_report(REGISTER, &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains("id_number"), "{err}");
}

/// `110105 19491231 002x`, `110105-19491231-002X` and full-width digits are one person for
/// queries, the log and the subject report.
#[tokio::test(flavor = "multi_thread")]
async fn id_numbers_typed_loosely_are_one_person_in_queries_and_reports() {
    let ex = Exchange::start("");
    let persons = ex.records("household-register.jsonl");
    // A resident whose check character is X shows the lowercase case too.
    let id = persons
        .iter()
        .filter_map(|p| p["id_number"].as_str())
        .find(|id| id.ends_with('X'))
        .unwrap_or_else(|| persons[0]["id_number"].as_str().unwrap())
        .to_owned();
    let spaced = format!("{} {} {}", &id[..6], &id[6..14], &id[14..]).to_lowercase();
    let hyphened = format!("{}-{}-{}", &id[..6], &id[6..14], &id[14..]);
    let full_width: String = id
        .chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(u32::from(c) - u32::from('0') + 0xFF10).unwrap(),
            'X' => 'ｘ',
            c => c,
        })
        .collect();
    let mut civil = ex.consumer("civil-affairs").await;
    for typed in [&id, &spaced, &hyphened, &full_width] {
        let answer = civil
            .query(huitong_tests::marriage_check(typed))
            .await
            .unwrap_or_else(|e| panic!("{typed:?}: {e}"));
        assert_eq!(answer.records.len(), 1, "{typed:?}");
    }
    let mut audit = auditor(&ex).await;
    for typed in [&id, &spaced, &hyphened, &full_width] {
        let report = audit
            .subject_report(REGISTER, &[("id_number", typed.as_str())])
            .await
            .unwrap();
        let answered = report
            .entries
            .iter()
            .filter(|e| e.record.as_ref().is_some_and(|r| r.outcome == "answered"))
            .count();
        assert_eq!(answered, 4, "{typed:?}: {:?}", report.entries.len());
    }
}

// ---------------------------------------------------------------------------------------------
// The smaller gaps (issue 18 item 7)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_denial_reason_of_only_invisible_characters_is_refused() {
    let ex = Exchange::start("");
    let mut hr = ex.admin("human-resources").await;
    let filed = hr
        .file_request(
            REGISTER,
            &["name"],
            &["employment screening"],
            "内部制度",
            30,
        )
        .await
        .unwrap();
    let mut provider = ex.admin("public-security").await;
    for reason in ["\u{200B}", " \u{200B}\u{FEFF}\u{2060} ", "\u{3000}\u{200D}"] {
        let (code, msg) = status(provider.deny(&filed.id, reason).await);
        assert_eq!(code, Code::InvalidArgument, "{reason:?}: {msg}");
        assert!(msg.contains("reason"), "{msg}");
    }
    let pending = hr.list_requests(false, None).await.unwrap();
    assert!(
        pending
            .iter()
            .any(|r| r.id == filed.id && r.denial_reason.is_empty())
    );
    let denied = provider
        .deny(&filed.id, "\u{200B}not a lawful use\u{200B}")
        .await
        .unwrap();
    assert_eq!(denied.denial_reason, "not a lawful use");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_request_with_10000_purposes_is_refused() {
    let ex = Exchange::start("");
    let mut hr = ex.admin("human-resources").await;
    let purposes: Vec<String> = (0..10_000).map(|i| format!("purpose {i}")).collect();
    let refs: Vec<&str> = purposes.iter().map(String::as_str).collect();
    let (code, msg) = status(
        hr.file_request(REGISTER, &["name"], &refs, "内部制度", 30)
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("10000") && msg.contains("at most 16"), "{msg}");
    let (code, msg) = status(
        hr.file_request(REGISTER, &["name"], &refs[..17], "内部制度", 30)
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    hr.file_request(REGISTER, &["name"], &refs[..16], "内部制度", 30)
        .await
        .unwrap();
    assert!(hr.list_requests(false, None).await.unwrap().len() == 1);
}

fn birth_date_filter(value: Option<Value>) -> QueryRequest {
    QueryRequest {
        resource: REGISTER.into(),
        fields: vec!["name".into()],
        purpose: MARRIAGE.into(),
        filters: vec![Filter {
            field: "birth_date".into(),
            value,
        }],
        ..Default::default()
    }
}

fn date(year: i32, month: i32, day: i32) -> Option<Value> {
    Some(Value {
        kind: Some(Kind::DateValue(Date { year, month, day })),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_with_an_impossible_date_or_no_value_are_invalid_argument() {
    // The last query searches by birth date, which the demo's marriage grant (key lookups
    // only) would refuse; the malformed ones are refused before any grant is looked at.
    let ex = Exchange::start_with_policy(
        "",
        r#"
[[grants]]
consumer = "civil-affairs"
resource = "public-security/household-register"
fields = ["name", "birth_date"]
purposes = ["婚姻登记 marriage registration"]
expires = "2099-12-31"
lookup = "search"
"#,
    );
    let mut raw = raw_exchange(&ex, "civil-affairs").await;
    for (value, expect) in [
        (date(2000, 13, 1), "2000-13-1"),
        (date(0, 0, 0), "0-0-0"),
        (date(2023, 2, 29), "2023-2-29"),
        (None, "has no value"),
        (Some(Value { kind: None }), "has no value"),
    ] {
        let s = raw.query(birth_date_filter(value)).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{expect}: {}", s.message());
        assert!(
            s.message().contains("birth_date") && s.message().contains(expect),
            "{}",
            s.message()
        );
    }
    // A key holding an impossible date is refused alike.
    let mut key_query = birth_date_filter(None);
    key_query.filters.clear();
    key_query
        .key
        .insert("id_number".into(), date(2000, 2, 30).unwrap());
    let s = raw.query(key_query).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
    // A real date is a query like any other.
    let birth = ex.records("household-register.jsonl")[0]["birth_date"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = huitong_proto::value::parse_date(&birth).unwrap();
    let answer = raw
        .query(birth_date_filter(date(d.year, d.month, d.day)))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.records.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_entries_with_end_before_start_is_invalid_argument() {
    let ex = Exchange::start("");
    let mut civil = ex.consumer("civil-affairs").await;
    civil
        .query(huitong_tests::marriage_check(&ex.person(0)))
        .await
        .unwrap();
    let mut audit = auditor(&ex).await;
    let err = audit
        .entries(ListEntriesRequest {
            start: 5,
            end: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(
        err.to_string().contains("end (2) is before start (5)"),
        "{err}"
    );
    let all = audit
        .entries(ListEntriesRequest {
            start: 0,
            end: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.entries.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_policy_file_grant_one_is_not_party_to_is_permission_denied() {
    let ex = Exchange::start("");
    // P-1: civil affairs' marriage grant on public security's register.
    let mut hr = ex.admin("human-resources").await;
    let (code, msg) = status(hr.revoke("P-1", "no reason").await);
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("only public-security"), "{msg}");
    // Its parties are told where it is declared.
    let mut provider = ex.admin("public-security").await;
    let (code, msg) = status(provider.revoke("P-1", "no longer needed").await);
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("policy file"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purpose_with_trailing_space_is_the_grants_purpose_and_is_logged_as_such() {
    let ex = Exchange::start("");
    let id = ex.person(2);
    let mut civil = ex.consumer("civil-affairs").await;
    for typed in [
        format!("{MARRIAGE} "),
        format!(" {MARRIAGE}\t"),
        format!("{MARRIAGE}\u{200B}"),
        format!("\u{FEFF}{MARRIAGE}\u{3000}"),
    ] {
        let answer = civil
            .query(
                Query::by_key(REGISTER, "id_number", id.as_str())
                    .fields(["name"])
                    .purpose(&typed),
            )
            .await
            .unwrap_or_else(|e| panic!("{typed:?}: {e}"));
        assert_eq!(answer.grant_id, "P-1");
    }
    // Anything else is another purpose, refused.
    let (code, msg) = status(
        civil
            .query(
                Query::by_key(REGISTER, "id_number", id.as_str())
                    .fields(["name"])
                    .purpose(&MARRIAGE.replace(' ', "  ")),
            )
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    // The log records the purpose that was matched, not the text as typed.
    let mut audit = auditor(&ex).await;
    let entries = audit
        .entries(ListEntriesRequest::default())
        .await
        .unwrap()
        .entries;
    let answered: Vec<String> = entries
        .iter()
        .filter_map(|e| e.record.as_ref())
        .filter(|r| r.outcome == "answered")
        .map(|r| r.purpose.clone())
        .collect();
    assert_eq!(answered, vec![MARRIAGE.to_owned(); 4]);
}

/// Every Huitong method takes one request; tonic would read the first and drop the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_unary_call_carrying_two_messages_is_refused() {
    let ex = Exchange::start("");
    let (a, b) = (ex.person(0), ex.person(1));
    let one = |id: &str| QueryRequest {
        resource: REGISTER.into(),
        fields: vec!["name".into()],
        purpose: MARRIAGE.into(),
        key: [("id_number".to_owned(), Value::string(id))].into(),
        ..Default::default()
    };
    let path = http::uri::PathAndQuery::from_static("/huitong.v1.Exchange/Query");
    let mut grpc = tonic::client::Grpc::new(channel(&ex, "civil-affairs").await);
    // A client-streaming call puts as many messages as it likes on the unary method's stream.
    let send = |grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
                messages: Vec<QueryRequest>| {
        let mut grpc = grpc.clone();
        let path = path.clone();
        async move {
            grpc.ready().await.unwrap();
            grpc.client_streaming::<_, QueryRequest, huitong_proto::v1::QueryResponse, _>(
                tonic::Request::new(tokio_stream::iter(messages)),
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await
        }
    };
    let s = send(&mut grpc, vec![one(&a), one(&b)]).await.unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented, "{}", s.message());
    assert!(
        s.message().contains("more than one request message"),
        "{}",
        s.message()
    );
    // One message on the same path is answered: the refusal is about the count.
    let answer = send(&mut grpc, vec![one(&a)]).await.unwrap().into_inner();
    assert_eq!(answer.records.len(), 1);
    // The refused call was never handled: only the single one is in the log.
    let mut audit = auditor(&ex).await;
    let entries = audit
        .entries(ListEntriesRequest::default())
        .await
        .unwrap()
        .entries;
    let queries = entries
        .iter()
        .filter(|e| e.record.as_ref().is_some_and(|r| r.kind == "query"))
        .count();
    assert_eq!(queries, 1, "{entries:?}");
}
