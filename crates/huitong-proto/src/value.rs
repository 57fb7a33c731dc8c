//! Working with [`Value`]s: constructors, type checks, and the JSON form used at the edges.
//!
//! JSON forms: strings, numbers and booleans as themselves; dates as `"YYYY-MM-DD"`;
//! timestamps as RFC 3339 strings in UTC; bytes as base64; null as `null`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use huitong_core::{FieldType, ValueKind};

use crate::v1::{Date, Value, value::Kind};

/// Why a JSON or text value could not become a typed [`Value`]. Never quotes the value, which
/// may be a personal identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}")]
pub struct ValueError {
    pub expected: &'static str,
}

fn expected(expected: &'static str) -> ValueError {
    ValueError { expected }
}

impl Value {
    pub fn null() -> Self {
        Value {
            kind: Some(Kind::NullValue(true)),
        }
    }

    pub fn string(s: impl Into<String>) -> Self {
        Value {
            kind: Some(Kind::StringValue(s.into())),
        }
    }

    pub fn int(i: i64) -> Self {
        Value {
            kind: Some(Kind::IntValue(i)),
        }
    }

    pub fn double(d: f64) -> Self {
        Value {
            kind: Some(Kind::DoubleValue(d)),
        }
    }

    pub fn bool(b: bool) -> Self {
        Value {
            kind: Some(Kind::BoolValue(b)),
        }
    }

    pub fn date(year: i32, month: i32, day: i32) -> Self {
        Value {
            kind: Some(Kind::DateValue(Date { year, month, day })),
        }
    }

    pub fn timestamp(t: SystemTime) -> Self {
        Value {
            kind: Some(Kind::TimestampValue(prost_types::Timestamp::from(t))),
        }
    }

    /// The kind of this value; an unset value counts as null.
    pub fn value_kind(&self) -> ValueKind {
        match &self.kind {
            None | Some(Kind::NullValue(_)) => ValueKind::Null,
            Some(Kind::StringValue(_)) => ValueKind::String,
            Some(Kind::IntValue(_)) => ValueKind::Int,
            Some(Kind::DoubleValue(_)) => ValueKind::Double,
            Some(Kind::BoolValue(_)) => ValueKind::Bool,
            Some(Kind::BytesValue(_)) => ValueKind::Bytes,
            Some(Kind::DateValue(_)) => ValueKind::Date,
            Some(Kind::TimestampValue(_)) => ValueKind::Timestamp,
        }
    }

    /// An empty string or empty bytes: not a usable key.
    pub fn is_empty_text(&self) -> bool {
        match &self.kind {
            Some(Kind::StringValue(s)) => s.trim().is_empty(),
            Some(Kind::BytesValue(b)) => b.is_empty(),
            _ => false,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Some(Kind::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    /// The JSON form (see the module docs).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            None | Some(Kind::NullValue(_)) => J::Null,
            Some(Kind::StringValue(s)) => J::String(s.clone()),
            Some(Kind::IntValue(i)) => J::from(*i),
            Some(Kind::DoubleValue(d)) => {
                serde_json::Number::from_f64(*d).map_or(J::Null, J::Number)
            }
            Some(Kind::BoolValue(b)) => J::Bool(*b),
            Some(Kind::BytesValue(b)) => J::String(base64_encode(b)),
            Some(Kind::DateValue(d)) => J::String(format_date(d)),
            Some(Kind::TimestampValue(t)) => J::String(format_timestamp(t)),
        }
    }

    /// Reads the JSON form of a value for a field of type `ty`.
    pub fn from_json(json: &serde_json::Value, ty: FieldType) -> Result<Value, ValueError> {
        use serde_json::Value as J;
        if json.is_null() {
            return Ok(Value::null());
        }
        Ok(match (ty, json) {
            (FieldType::String, J::String(s)) => Value::string(s.as_str()),
            (FieldType::Int, J::Number(n)) => {
                Value::int(n.as_i64().ok_or_else(|| expected("a whole number"))?)
            }
            (FieldType::Double, J::Number(n)) => {
                Value::double(n.as_f64().ok_or_else(|| expected("a number"))?)
            }
            (FieldType::Bool, J::Bool(b)) => Value::bool(*b),
            (FieldType::Bytes, J::String(s)) => Value {
                kind: Some(Kind::BytesValue(
                    base64_decode(s).ok_or_else(|| expected("base64 text"))?,
                )),
            },
            (FieldType::Date | FieldType::Timestamp, J::String(s)) => Value::parse_text(s, ty)?,
            (FieldType::String, _) => return Err(expected("a string")),
            (FieldType::Int, _) => return Err(expected("a whole number")),
            (FieldType::Double, _) => return Err(expected("a number")),
            (FieldType::Bool, _) => return Err(expected("true or false")),
            (FieldType::Bytes, _) => return Err(expected("base64 text")),
            (FieldType::Date, _) => return Err(expected("a date as \"YYYY-MM-DD\"")),
            (FieldType::Timestamp, _) => {
                return Err(expected("a timestamp as \"YYYY-MM-DDTHH:MM:SSZ\""));
            }
        })
    }

    /// Reads a value typed on a command line, for a field of type `ty`.
    pub fn parse_text(s: &str, ty: FieldType) -> Result<Value, ValueError> {
        Ok(match ty {
            FieldType::String => Value::string(s),
            FieldType::Int => Value::int(s.trim().parse().map_err(|_| expected("a whole number"))?),
            FieldType::Double => Value::double(s.trim().parse().map_err(|_| expected("a number"))?),
            FieldType::Bool => Value::bool(match s.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(expected("true or false")),
            }),
            FieldType::Bytes => Value {
                kind: Some(Kind::BytesValue(
                    base64_decode(s).ok_or_else(|| expected("base64 text"))?,
                )),
            },
            FieldType::Date => {
                let d = parse_date(s.trim()).ok_or_else(|| expected("a date as \"YYYY-MM-DD\""))?;
                Value {
                    kind: Some(Kind::DateValue(d)),
                }
            }
            FieldType::Timestamp => {
                let t = humantime_parse(s.trim())
                    .ok_or_else(|| expected("a timestamp as \"YYYY-MM-DDTHH:MM:SSZ\""))?;
                Value::timestamp(t)
            }
        })
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::string(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::string(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::int(i)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Value::double(d)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::bool(b)
    }
}

fn days_in_month(year: i32, month: i32) -> i32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// Whether the date exists: year 1 to 9999, month 1 to 12, a day the month has.
pub fn is_valid_date(d: &Date) -> bool {
    (1..=9999).contains(&d.year)
        && (1..=12).contains(&d.month)
        && d.day >= 1
        && d.day <= days_in_month(d.year, d.month)
}

/// What is wrong with a value given to match on (a key or filter value), if anything: a date
/// that does not exist (month 13, 0-0-0, 30 February), or a timestamp with nanoseconds out of
/// range. Such a value can match nothing, so an answer of no records would mislead.
pub fn match_value_problem(v: &Value) -> Option<String> {
    match &v.kind {
        Some(Kind::DateValue(d)) if !is_valid_date(d) => Some(format!(
            "is not a date that exists ({}-{}-{}); give year 1 to 9999, month 1 to 12 and a day the month has",
            d.year, d.month, d.day
        )),
        Some(Kind::TimestampValue(t)) if !(0..1_000_000_000).contains(&t.nanos) => Some(format!(
            "is not a valid timestamp: nanos {} is outside 0 to 999999999",
            t.nanos
        )),
        _ => None,
    }
}

/// Parses `YYYY-MM-DD`, checking that the day exists.
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i32 = s[0..4].parse().ok()?;
    let month: i32 = s[5..7].parse().ok()?;
    let day: i32 = s[8..10].parse().ok()?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(Date { year, month, day })
}

pub fn format_date(d: &Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

/// The last second RFC 3339 can write (its years have four digits): 9999-12-31T23:59:59Z.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// RFC 3339 in UTC, whole seconds unless the timestamp has a fraction; seconds since the epoch
/// (`<n>s`) for a time RFC 3339 cannot write. Total: the value may come from any client, and
/// humantime's formatter fails past year 9999, which `to_string` turns into a panic.
pub fn format_timestamp(t: &prost_types::Timestamp) -> String {
    match timestamp_to_system_time(t) {
        // Out-of-range nanos carry into the seconds, so the check is on the time itself.
        Some(st)
            if st
                .duration_since(UNIX_EPOCH)
                .map_or(true, |d| d.as_secs() > LAST_RFC3339_SECOND) =>
        {
            format!("{}s", t.seconds)
        }
        Some(st) if t.nanos == 0 => humantime::format_rfc3339_seconds(st).to_string(),
        Some(st) => humantime::format_rfc3339_millis(st).to_string(),
        None => format!("{}s", t.seconds),
    }
}

pub fn timestamp_to_system_time(t: &prost_types::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

fn humantime_parse(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_impossible_days_are_refused() {
        let v = Value::parse_text("1990-02-28", FieldType::Date).unwrap();
        assert_eq!(v.to_json(), serde_json::json!("1990-02-28"));
        assert!(Value::parse_text("1990-02-29", FieldType::Date).is_err());
        assert!(Value::parse_text("2000-02-29", FieldType::Date).is_ok());
        assert!(Value::parse_text("1990-13-01", FieldType::Date).is_err());
        assert!(Value::parse_text("19900101", FieldType::Date).is_err());
    }

    #[test]
    fn json_values_are_typed_by_the_field() {
        let j = serde_json::json!(42);
        assert_eq!(
            Value::from_json(&j, FieldType::Int).unwrap(),
            Value::int(42)
        );
        assert_eq!(
            Value::from_json(&j, FieldType::Double).unwrap(),
            Value::double(42.0)
        );
        assert!(Value::from_json(&j, FieldType::String).is_err());
        assert_eq!(
            Value::from_json(&serde_json::Value::Null, FieldType::Int).unwrap(),
            Value::null()
        );
    }

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        let v = Value::parse_text("2024-05-01T08:30:00Z", FieldType::Timestamp).unwrap();
        assert_eq!(v.to_json(), serde_json::json!("2024-05-01T08:30:00Z"));
    }

    /// Found by the adapter_response fuzz target: a timestamp past year 9999 (any client can
    /// send one, as a key or filter value) panicked in humantime's formatter.
    #[test]
    fn timestamps_past_year_9999_format_without_panicking() {
        for (seconds, nanos) in [
            (253_402_300_799, 0),
            (253_402_300_799, 999_999_999),
            (253_402_300_799, 1_500_000_000),
            (253_402_300_800, 0),
            (i64::MAX, 0),
            (-1, 0),
        ] {
            let t = prost_types::Timestamp { seconds, nanos };
            let text = format_timestamp(&t);
            assert!(!text.is_empty());
            let v = Value {
                kind: Some(Kind::TimestampValue(t)),
            };
            assert_eq!(v.to_json(), serde_json::json!(text));
        }
        let last = prost_types::Timestamp {
            seconds: 253_402_300_799,
            nanos: 0,
        };
        assert_eq!(format_timestamp(&last), "9999-12-31T23:59:59Z");
        let past = prost_types::Timestamp {
            seconds: 253_402_300_800,
            nanos: 0,
        };
        assert_eq!(format_timestamp(&past), "253402300800s");
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0, 255, 128, 7, 9]] {
            let s = base64_encode(data);
            assert_eq!(base64_decode(&s).unwrap(), data);
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
    }

    #[test]
    fn value_errors_never_quote_the_value() {
        let e = Value::parse_text("11010519900101123X", FieldType::Int).unwrap_err();
        assert!(!e.to_string().contains("1101"));
    }
}
