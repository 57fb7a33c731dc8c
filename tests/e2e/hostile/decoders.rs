//! Hostile cases found by fuzzing the decoders of outside input (fuzz/, docs/security.md
//! "Fuzzing"): each crash the fuzzer found that a client can reach, end to end.

use huitong_client::{ClientError, Query, Value};
use huitong_proto::Timestamp;
use huitong_proto::v1::value::Kind;
use huitong_tests::{Exchange, MARRIAGE, marriage_check};
use tonic::Code;

/// The broker renders key values as text to find their subject before it checks them; a
/// timestamp past year 9999 panicked in that rendering (humantime cannot write such a year),
/// which killed the call instead of answering it. It must be refused like any other key of
/// the wrong type, and the consumer's connection must go on serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_timestamp_past_year_9999_is_refused_not_a_panic() {
    let ex = Exchange::start("");
    let mut c = ex.consumer("civil-affairs").await;
    for (seconds, nanos) in [
        (253_402_300_800, 0),
        (253_402_300_799, 1_500_000_000),
        (i64::MAX, 0),
    ] {
        let far = Value {
            kind: Some(Kind::TimestampValue(Timestamp { seconds, nanos })),
        };
        let q = Query::by_key("public-security/household-register", "id_number", far)
            .fields(["name"])
            .purpose(MARRIAGE);
        match c.query(q).await {
            Err(ClientError::Status(s)) => {
                assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
                assert!(s.message().contains("id_number"), "{}", s.message());
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
    let answer = c.query(marriage_check(&ex.person(0))).await.unwrap();
    assert_eq!(answer.records.len(), 1);
}
