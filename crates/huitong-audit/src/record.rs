//! Exchange records: what the broker writes for each exchange, and how auditors read them.

use std::time::{SystemTime, UNIX_EPOCH};

use huitong_proto::v1::{ExchangeRecord, Record};

use crate::merkle::hex;
use prost::Message;
use ring::digest;
use serde_json::json;

/// The values of `ExchangeRecord.kind`: what an entry records.
pub mod kind {
    /// A consumer's query.
    pub const QUERY: &str = "query";
    /// A change event delivered on a subscription.
    pub const DELIVERY: &str = "delivery";
    /// A consumer opened (or was refused) a subscription.
    pub const SUBSCRIBE: &str = "subscribe";
    /// A consumer department filed an access request.
    pub const REQUEST_FILED: &str = "request_filed";
    /// The provider approved an access request (the grant it created has its own entry).
    pub const REQUEST_APPROVED: &str = "request_approved";
    /// The provider denied an access request, with a reason.
    pub const REQUEST_DENIED: &str = "request_denied";
    /// A grant came into force (from an approval or a policy file).
    pub const GRANT_CREATED: &str = "grant_created";
    /// A grant reached its expiry.
    pub const GRANT_EXPIRED: &str = "grant_expired";
    /// A grant was revoked, with a reason.
    pub const GRANT_REVOKED: &str = "grant_revoked";
    /// The broker loaded a policy file (at start or on reload), with the file's digest.
    pub const POLICY_RELOADED: &str = "policy_reloaded";
    /// A certificate appeared on the exchange's revocation list.
    pub const CERTIFICATE_REVOKED: &str = "certificate_revoked";
    /// A department joined the exchange's configuration.
    pub const DEPARTMENT_ADDED: &str = "department_added";
    /// A department left the exchange's configuration.
    pub const DEPARTMENT_REMOVED: &str = "department_removed";

    /// Every kind, exchanges first.
    pub const ALL: [&str; 13] = [
        QUERY,
        DELIVERY,
        SUBSCRIBE,
        REQUEST_FILED,
        REQUEST_APPROVED,
        REQUEST_DENIED,
        GRANT_CREATED,
        GRANT_EXPIRED,
        GRANT_REVOKED,
        POLICY_RELOADED,
        CERTIFICATE_REVOKED,
        DEPARTMENT_ADDED,
        DEPARTMENT_REMOVED,
    ];

    /// Whether entries of this kind are exchanges of data (as opposed to governance acts).
    pub fn is_exchange(kind: &str) -> bool {
        kind == QUERY || kind == DELIVERY || kind == SUBSCRIBE
    }
}

/// The values of `ExchangeRecord.outcome`.
pub mod outcome {
    /// Records were released (possibly none, for a search that matched nothing).
    pub const ANSWERED: &str = "answered";
    /// The provider has no record under the key asked for.
    pub const NOT_FOUND: &str = "not_found";
    /// Policy or the request's form refused it; nothing was released.
    pub const REFUSED: &str = "refused";
    /// The provider or the broker could not answer (unavailable, timed out, an error).
    pub const FAILED: &str = "failed";
    /// A governance act that took effect.
    pub const DONE: &str = "done";

    /// Every outcome.
    pub const ALL: [&str; 5] = [ANSWERED, NOT_FOUND, REFUSED, FAILED, DONE];
}

/// SHA-256 over the released records, each length-delimited in its protobuf encoding, in order:
/// what the consumer received, so that a consumer can prove which answer it got.
pub fn answer_digest(records: &[Record]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = Vec::new();
    for r in records {
        buf.clear();
        // Encoding into a Vec cannot fail: it grows as needed.
        let _ = r.encode_length_delimited(&mut buf);
        ctx.update(&buf);
    }
    ctx.finish().as_ref().to_vec()
}

/// SHA-256 of a file as read (a policy file, a revocation list): what a governance entry's
/// `digest` holds, so that an auditor can tell which version was in force.
pub fn file_digest(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

/// Microseconds since the Unix epoch.
pub fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// RFC 3339 UTC with microseconds.
pub fn format_micros(us: i64) -> String {
    let days = us.div_euclid(86_400_000_000);
    let rem = us.rem_euclid(86_400_000_000);
    let (y, m, d) = civil(days);
    let secs = rem / 1_000_000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rem % 1_000_000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One entry as a JSON object, for `entries.jsonl` and `huitong audit entries --json`.
pub fn to_json(index: u64, leaf_hash: &[u8], r: &ExchangeRecord) -> serde_json::Value {
    json!({
        "index": index,
        "leaf_hash": hex(leaf_hash),
        "time": format_micros(r.time_micros),
        "request_id": r.request_id,
        "kind": r.kind,
        "consumer": r.consumer,
        "provider": r.provider,
        "resource": r.resource,
        "purpose": r.purpose,
        "fields": r.fields,
        "outcome": r.outcome,
        "status_code": r.status_code,
        "refusal": r.refusal,
        "cache_hit": r.cache_hit,
        "stale": r.stale,
        "latency_micros": r.latency_micros,
        "record_count": r.record_count,
        "grant_id": r.grant_id,
        "answer_digest": hex(&r.answer_digest),
        "subject": hex(&r.subject),
        "subject_period": r.subject_period,
        "subjects": r.subjects.iter().map(|s| hex(s)).collect::<Vec<_>>(),
        "official": hex(&r.official),
        "case_ref": r.case_ref,
        "fields_asked": r.fields_asked,
        "masked_fields": r.masked_fields,
        "selected_by": r.selected_by,
        "actor": r.actor,
        "access_request": r.access_request,
        "reason": r.reason,
        "digest": hex(&r.digest),
        "detail": r.detail,
    })
}

/// The CSV header matching [`to_csv_row`]. Columns are only ever added at the end, so that a
/// spreadsheet or script reading columns by position keeps working; lists (`fields`,
/// `fields_asked`, `masked_fields`) are space-separated; `official` is the whole HMAC in hex.
pub const CSV_HEADER: &str = "index,time,request_id,consumer,provider,resource,purpose,fields,outcome,status_code,cache_hit,latency_micros,record_count,grant_id,\
kind,refusal,reason,official,case_ref,fields_asked,masked_fields,subject_count,actor,access_request,detail";

/// One entry as a CSV row (RFC 4180 quoting), its time in UTC.
pub fn to_csv_row(index: u64, r: &ExchangeRecord) -> String {
    to_csv_row_at(index, r, &format_micros(r.time_micros))
}

/// One entry as a CSV row with its time already written (in the reader's zone).
pub fn to_csv_row_at(index: u64, r: &ExchangeRecord, time: &str) -> String {
    let q = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    format!(
        "{index},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        q(time),
        q(&r.request_id),
        q(&r.consumer),
        q(&r.provider),
        q(&r.resource),
        q(&r.purpose),
        q(&r.fields.join(" ")),
        q(&r.outcome),
        r.status_code,
        r.cache_hit,
        r.latency_micros,
        r.record_count,
        q(&r.grant_id),
        q(&r.kind),
        q(&r.refusal),
        q(&r.reason),
        hex(&r.official),
        q(&r.case_ref),
        q(&r.fields_asked.join(" ")),
        q(&r.masked_fields.join(" ")),
        r.subjects.len(),
        q(&r.actor),
        q(&r.access_request),
        q(&r.detail),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_micros(1_764_130_000_123_456),
            "2025-11-26T04:06:40.123456Z"
        );
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let r = ExchangeRecord {
            purpose: "a, \"b\"".into(),
            ..Default::default()
        };
        assert!(to_csv_row(3, &r).contains("\"a, \"\"b\"\"\""));
    }

    #[test]
    fn every_csv_row_has_a_value_for_every_header_column() {
        let r = ExchangeRecord {
            kind: kind::QUERY.into(),
            outcome: outcome::REFUSED.into(),
            refusal: "no grant for this purpose".into(),
            fields_asked: vec!["name".into(), "bank_account".into()],
            subjects: vec![vec![1; 32], vec![2; 32]],
            official: vec![0xab; 32],
            case_ref: "HY-1".into(),
            ..Default::default()
        };
        let row = to_csv_row(7, &r);
        let header: Vec<&str> = CSV_HEADER.split(',').collect();
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(header.len(), cells.len(), "{row}");
        let cell = |name: &str| cells[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(cell("kind"), "query");
        assert_eq!(cell("refusal"), "no grant for this purpose");
        assert_eq!(cell("fields_asked"), "name bank_account");
        assert_eq!(cell("subject_count"), "2");
        assert_eq!(cell("official"), "ab".repeat(32));
        assert_eq!(cell("case_ref"), "HY-1");
    }

    #[test]
    fn digests_depend_on_content_and_order() {
        let mut a = Record::default();
        a.fields
            .insert("x".into(), huitong_proto::v1::Value::string("1"));
        let b = Record::default();
        assert_ne!(
            answer_digest(&[a.clone(), b.clone()]),
            answer_digest(&[b, a.clone()])
        );
        assert_eq!(answer_digest(&[a.clone()]), answer_digest(&[a]));
    }
}
