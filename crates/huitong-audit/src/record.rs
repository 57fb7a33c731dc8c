//! Exchange records: what the broker writes for each exchange, and how auditors read them.

use std::time::{SystemTime, UNIX_EPOCH};

use huitong_proto::v1::{ExchangeRecord, Record};

use crate::merkle::hex;
use prost::Message;
use ring::digest;
use serde_json::json;

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
    })
}

/// The CSV header matching [`to_csv_row`].
pub const CSV_HEADER: &str = "index,time,request_id,consumer,provider,resource,purpose,fields,outcome,status_code,cache_hit,latency_micros,record_count,grant_id";

/// One entry as a CSV row (RFC 4180 quoting).
pub fn to_csv_row(index: u64, r: &ExchangeRecord) -> String {
    let q = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    format!(
        "{index},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        format_micros(r.time_micros),
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
