//! Bulk reads bounded by the grant: key lookups only unless a search is allowed, caps on
//! records per query and on people per day (across broker restarts), a case reference where
//! the grant requires one. Every refusal is checked for its status, for a message naming the
//! grant and the bound, and for its entry in the exchange log. Real broker and adapters over
//! mutual TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use huitong_client::{
    Approval, Audit, ClientError, ExchangeRecord, ListEntriesRequest, Query, Subscribe,
    SubscribeResponse, Subscription,
};
use huitong_tests::parcels::{Parcels, Setup};
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

/// The refusals recorded for `consumer`, oldest first.
async fn refusals(
    endpoint: &str,
    auditor: &huitong_tls::TlsFiles,
    consumer: &str,
) -> Vec<ExchangeRecord> {
    let mut audit = Audit::connect(endpoint, auditor).await.unwrap();
    audit
        .entries(ListEntriesRequest {
            consumer: consumer.into(),
            outcome: "refused".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .entries
        .into_iter()
        .filter_map(|e| e.record)
        .collect()
}

async fn refusals_of(ex: &Exchange, consumer: &str) -> Vec<ExchangeRecord> {
    refusals(
        &ex.broker.endpoint(),
        &ex.identity(AUDITOR, Role::Auditor),
        consumer,
    )
    .await
}

fn today() -> i64 {
    huitong_core::calendar::days_since_epoch(SystemTime::now())
}

// ---------------------------------------------------------------------------------------------
// Lookup
// ---------------------------------------------------------------------------------------------

/// The hole a new user found: a filter query under a grant meant for checking one applicant
/// listed everyone who matched. The demo's marriage grant P-1 leaves the lookup to the
/// register's default, which is key lookups only (it is about people).
#[tokio::test(flavor = "multi_thread")]
async fn a_search_under_a_key_grant_is_refused_and_recorded() {
    let ex = Exchange::start("");
    let mut civil = ex.consumer("civil-affairs").await;
    let (code, msg) = status(
        civil
            .query(
                Query::search(REGISTER)
                    .filter("marital_status", "single")
                    .fields(["name", "birth_date"])
                    .purpose(MARRIAGE)
                    .page_size(100),
            )
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(
        msg.contains("your grant P-1 allows key lookups only")
            && msg.contains("marital_status")
            && msg.contains("by its key (id_number)")
            && msg.contains("lookup = \"search\""),
        "{msg}"
    );
    // The same grant still answers a key lookup.
    civil
        .query(huitong_tests::marriage_check(&ex.person(0)))
        .await
        .unwrap();
    let refused = refusals_of(&ex, "civil-affairs").await;
    let r = refused
        .iter()
        .find(|r| r.refusal.contains("allows key lookups only"))
        .unwrap_or_else(|| panic!("no refusal recorded: {refused:?}"));
    assert_eq!(r.outcome, "refused");
    assert_eq!(r.status_code, Code::PermissionDenied as i32);
    assert_eq!(r.resource, REGISTER);
    assert_eq!(r.selected_by, ["marital_status"]);
    assert!(r.subjects.is_empty() && r.record_count == 0, "{r:?}");
}

/// A search grant lets filters through, but a filter still counts as asking for the field:
/// no inference through filters on fields the grant does not release.
#[tokio::test(flavor = "multi_thread")]
async fn a_search_grant_searches_but_not_on_fields_it_does_not_release() {
    let ex = Exchange::start_with_policy(
        "",
        r#"
[[grants]]
consumer = "taxation"
resource = "public-security/household-register"
fields = ["name", "marital_status"]
purposes = ["tax audit"]
expires = "2099-12-31"
lookup = "search"
"#,
    );
    let mut tax = ex.consumer("taxation").await;
    let answer = tax
        .query(
            Query::search(REGISTER)
                .filter("marital_status", "married")
                .fields(["name"])
                .purpose("tax audit")
                .page_size(5),
        )
        .await
        .unwrap();
    assert_eq!(answer.records.len(), 5);
    assert_eq!(answer.grant_id, "P-5");
    let (code, msg) = status(
        tax.query(
            Query::search(REGISTER)
                .filter("gender", "female")
                .fields(["name"])
                .purpose("tax audit"),
        )
        .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(
        msg.contains("field \"gender\" is outside your grant P-5"),
        "{msg}"
    );
    let refused = refusals_of(&ex, "taxation").await;
    assert!(
        refused.iter().any(|r| r.refusal.contains("\"gender\"")),
        "{refused:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Records per query
// ---------------------------------------------------------------------------------------------

const CAPPED_SEARCH: &str = r#"
[[grants]]
consumer = "taxation"
resource = "public-security/household-register"
fields = ["name", "marital_status"]
purposes = ["tax audit"]
expires = "2099-12-31"
lookup = "search"
max_records_per_query = 3
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_cap_on_records_per_query_refuses_a_bigger_page() {
    let ex = Exchange::start_with_policy("", CAPPED_SEARCH);
    let mut tax = ex.consumer("taxation").await;
    let married = |page: u32, token: &str| {
        Query::search(REGISTER)
            .filter("marital_status", "married")
            .fields(["name"])
            .purpose("tax audit")
            .page_size(page)
            .page_token(token)
    };
    let (code, msg) = status(tax.query(married(10, "")).await);
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert_eq!(
        msg,
        "your grant P-5 releases at most 3 records per query, and this query asks for a page of \
         10; ask for at most 3 per page (page_size) or narrow the filters, or ask \
         public-security for a higher max_records_per_query"
    );
    // A page within the cap is answered; so is the default page, lowered to the cap.
    let first = tax.query(married(3, "")).await.unwrap();
    assert_eq!(first.records.len(), 3);
    let default = tax.query(married(0, "")).await.unwrap();
    assert_eq!(default.records.len(), 3);
    assert!(!default.next_page_token.is_empty());
    let next = tax
        .query(married(0, &default.next_page_token))
        .await
        .unwrap();
    assert!(next.records.len() <= 3);
    // The refusal is on the record, with nothing released.
    let refused = refusals_of(&ex, "taxation").await;
    let r = refused
        .iter()
        .find(|r| r.refusal.contains("at most 3 records per query"))
        .unwrap_or_else(|| panic!("no refusal recorded: {refused:?}"));
    assert_eq!(r.status_code, Code::ResourceExhausted as i32);
    assert_eq!(r.grant_id, "P-5");
    assert!(r.subjects.is_empty() && r.record_count == 0, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// People per day
// ---------------------------------------------------------------------------------------------

const CAPPED_PEOPLE: &str = r#"
[[grants]]
consumer = "taxation"
resource = "public-security/household-register"
fields = ["name", "marital_status"]
purposes = ["tax audit"]
expires = "2099-12-31"
max_subjects_per_day = 3
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_cap_on_subjects_per_day_holds_across_a_broker_restart() {
    let day = today();
    let mut ex = Exchange::start_with_policy("", CAPPED_PEOPLE);
    let ids: Vec<String> = (0..5).map(|i| ex.person(i)).collect();
    let lookup = |i: usize| {
        Query::by_key(REGISTER, "id_number", ids[i].as_str())
            .fields(["name"])
            .purpose("tax audit")
    };
    let mut tax = ex.consumer("taxation").await;
    tax.query(lookup(0)).await.unwrap();
    tax.query(lookup(1)).await.unwrap();
    // The same person again costs nothing.
    tax.query(lookup(0)).await.unwrap();

    ex.restart_broker();
    let mut tax = ex.consumer("taxation").await;
    tax.query(lookup(2)).await.unwrap();
    tax.query(lookup(1)).await.unwrap();
    let (code, msg) = status(tax.query(lookup(3)).await);
    if today() != day {
        eprintln!("the UTC day changed during the test; its counts are not comparable");
        return;
    }
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert_eq!(
        msg,
        "your grant P-5 releases the records of at most 3 different people per day (UTC), 3 of \
         them today, and this answer would reach 1 more, so nothing was released; try again \
         after 00:00 UTC, or ask public-security for a higher max_subjects_per_day"
    );
    // Those already reached today may still be looked up again.
    tax.query(lookup(2)).await.unwrap();

    let refused = refusals_of(&ex, "taxation").await;
    let r = refused
        .iter()
        .find(|r| r.refusal.contains("at most 3 different people per day"))
        .unwrap_or_else(|| panic!("no refusal recorded: {refused:?}"));
    assert_eq!(r.status_code, Code::ResourceExhausted as i32);
    assert!(r.subjects.is_empty() && r.record_count == 0, "{r:?}");

    // The count keeps subject HMACs only: no id number in the policy store.
    let store = ex
        .dir
        .path()
        .join("broker-test.toml-data")
        .join("policy.sled");
    assert!(store.exists(), "{}", store.display());
    for file in walk(&store) {
        let bytes = std::fs::read(&file).unwrap();
        for id in &ids {
            assert!(
                !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
                "{} holds an id number",
                file.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Concurrent lookups of different people cannot together go past the cap.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_queries_do_not_slip_past_the_cap_on_people() {
    let ex = Exchange::start_with_policy("", CAPPED_PEOPLE);
    let day = today();
    let tax = ex.consumer("taxation").await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let mut c = tax.clone();
            let id = ex.person(i);
            tokio::spawn(async move {
                c.query(
                    Query::by_key(REGISTER, "id_number", id.as_str())
                        .fields(["name"])
                        .purpose("tax audit"),
                )
                .await
            })
        })
        .collect();
    let mut answered = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => answered += 1,
            Err(ClientError::Status(s)) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message())
            }
            Err(e) => panic!("{e}"),
        }
    }
    if today() == day {
        assert_eq!(
            answered, 3,
            "twelve people looked up at once under a cap of three"
        );
    }
}

/// Deliveries reach people as surely as answers do, so they count toward the same cap: a
/// subscription cannot be used to get round it. The stream ends when the cap is reached, and
/// the refusal is on the record.
#[tokio::test(flavor = "multi_thread")]
async fn deliveries_count_toward_the_cap_on_people_and_end_the_stream_at_it() {
    let land = Parcels::conditional("land-resources");
    let policy = r#"
[[grants]]
consumer = "housing"
resource = "land-resources/parcels"
fields = ["parcel_no", "owner"]
purposes = ["property registration"]
expires = "2099-12-31"
max_subjects_per_day = 2
"#;
    let s = Setup::start(&[&land], "", policy).await;
    let day = today();
    let mut sub: Subscription = s
        .consumer("housing")
        .await
        .subscribe(
            Subscribe::new("land-resources/parcels")
                .fields(["parcel_no", "owner"])
                .purpose("property registration"),
        )
        .await
        .unwrap();
    land.change_owner("P-1", "李四");
    land.change_owner("P-2", "王五");
    land.change_owner("P-1", "赵六");
    land.change_owner("P-3", "钱七");
    let mut got: Vec<SubscribeResponse> = Vec::new();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("neither an event nor the end within 10 s")
        {
            Ok(r) => got.push(r),
            Err(e) => break e,
        }
    };
    if today() != day {
        return;
    }
    // P-1, P-2 and P-1 again: two people. P-3 would be a third.
    let parcels: Vec<String> = got
        .iter()
        .map(|r| {
            r.event.as_ref().unwrap().key["parcel_no"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(parcels, ["P-1", "P-2", "P-1"]);
    let ClientError::Status(status) = &end else {
        panic!("the stream ended with {end}");
    };
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .contains("at most 2 different people per day"),
        "{}",
        status.message()
    );
    // The parcels exchange has no auditor; one is issued a certificate like any party.
    huitong_tls::pki::issue(
        &s.dir.path().join("pki"),
        &huitong_tls::pki::IssueOptions::new(
            huitong_core::DeptId::new(AUDITOR).unwrap(),
            Role::Auditor,
        ),
    )
    .unwrap();
    let refused = refusals(
        &s.broker.endpoint(),
        &s.identity(AUDITOR, Role::Auditor),
        "housing",
    )
    .await;
    let r = refused
        .iter()
        .find(|r| r.kind == "delivery")
        .unwrap_or_else(|| panic!("no refused delivery recorded: {refused:?}"));
    assert!(
        r.refusal.contains("at most 2 different people per day"),
        "{r:?}"
    );
    assert!(r.subjects.is_empty() && r.record_count == 0, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Case reference
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_requiring_a_case_refuses_a_query_without_one() {
    let ex = Exchange::start_with_policy(
        "",
        r#"
[[grants]]
consumer = "taxation"
resource = "public-security/household-register"
fields = ["name", "status"]
purposes = ["tax audit"]
expires = "2099-12-31"
require_case = true
"#,
    );
    let mut tax = ex.consumer("taxation").await;
    let lookup = Query::by_key(REGISTER, "id_number", ex.person(0).as_str())
        .fields(["name"])
        .purpose("tax audit");
    let (code, msg) = status(tax.query(lookup.clone()).await);
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert_eq!(
        msg,
        "your grant P-5 requires a case reference (办件编号) with every query and subscription: \
         give the case the data is needed for (case_ref; huitong query --case ...)"
    );
    // Blank is no case.
    let (code, _) = status(tax.query(lookup.clone().case_ref("  ")).await);
    assert_eq!(code, Code::FailedPrecondition);
    let answer = tax
        .query(lookup.case_ref("SW-2026-1202-0031"))
        .await
        .unwrap();
    assert_eq!(answer.grant_id, "P-5");
    // A subscription without a case is refused alike.
    let sub = tax
        .subscribe(
            Subscribe::new(REGISTER)
                .fields(["status"])
                .purpose("tax audit"),
        )
        .await;
    let s = match sub {
        Err(ClientError::Status(s)) => s,
        Err(e) => panic!("expected a status, got {e}"),
        Ok(_) => panic!("a subscription without a case was opened"),
    };
    assert_eq!(s.code(), Code::FailedPrecondition, "{}", s.message());
    assert!(s.message().contains("grant P-5 requires a case reference"));
    tax.subscribe(
        Subscribe::new(REGISTER)
            .fields(["status"])
            .purpose("tax audit")
            .case_ref("SW-2026-1202-0031"),
    )
    .await
    .unwrap();

    let refused = refusals_of(&ex, "taxation").await;
    let kinds: Vec<&str> = refused
        .iter()
        .filter(|r| r.refusal.contains("requires a case reference"))
        .map(|r| r.kind.as_str())
        .collect();
    assert_eq!(kinds, ["query", "query", "subscribe"], "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|r| r.status_code == Code::FailedPrecondition as i32)
    );
}

// ---------------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_sets_the_bounds_and_the_listing_shows_them() {
    let ex = Exchange::start("");
    let filed = ex
        .admin("taxation")
        .await
        .file_request(
            REGISTER,
            &["name", "marital_status"],
            &["tax audit"],
            "《税收征收管理法》第五十七条",
            30,
        )
        .await
        .unwrap();
    let mut police = ex.admin("public-security").await;
    let (code, msg) = status(
        police
            .approve_with(&filed.id, &Approval::new().lookup("bulk"))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(
        msg.contains("lookup \"bulk\" is not \"key\" or \"search\""),
        "{msg}"
    );
    let grant = police
        .approve_with(
            &filed.id,
            &Approval::new()
                .lookup("search")
                .max_records_per_query(2)
                .max_subjects_per_day(40)
                .require_case(),
        )
        .await
        .unwrap();
    let listed = ex.admin("taxation").await.list_grants(false).await.unwrap();
    let g = listed.iter().find(|g| g.id == grant.id).unwrap();
    assert_eq!(
        (
            g.lookup.as_str(),
            g.max_records_per_query,
            g.max_subjects_per_day,
            g.require_case
        ),
        ("search", 2, 40, true)
    );
    // The policy file's grants show their lookup as in force: the register's default.
    let p1 = ex
        .admin("civil-affairs")
        .await
        .list_grants(false)
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.id == "P-1")
        .unwrap();
    assert_eq!(p1.lookup, "key");
    assert_eq!((p1.max_records_per_query, p1.require_case), (0, false));

    // The grant holds after a restart of the broker, bounds and all.
    let mut ex = ex;
    ex.restart_broker();
    let mut tax = ex.consumer("taxation").await;
    let (code, msg) = status(
        tax.query(
            Query::search(REGISTER)
                .filter("marital_status", "married")
                .fields(["name"])
                .purpose("tax audit")
                .case_ref("SW-1")
                .page_size(3),
        )
        .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert!(msg.contains(&format!("grant {}", grant.id)), "{msg}");
    let answer = tax
        .query(
            Query::search(REGISTER)
                .filter("marital_status", "married")
                .fields(["name"])
                .purpose("tax audit")
                .case_ref("SW-1")
                .page_size(2),
        )
        .await
        .unwrap();
    assert_eq!(answer.records.len(), 2);
}
