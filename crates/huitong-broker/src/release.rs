//! What leaves the broker, decided in one place for queries and subscription deliveries alike:
//! who the released records are about, which fields leave, masked as the grant says, and the
//! digest of exactly what was sent.
//!
//! Both surfaces call [`release`], so a rule added here (a new mask, a new thing recorded about
//! each record) holds for every way data leaves. The order matters: the subjects are computed
//! from the records' key fields *before* minimising, because the consumer may not be given the
//! key (a search for `name` only) and the person must still show in their subject report.

use std::collections::HashMap;

use huitong_core::masking::apply_text;
use huitong_core::policy::Decision;
use huitong_core::{FieldName, ResourceSpec};
use huitong_proto::v1::value::Kind;
use huitong_proto::v1::{Record, Value};

use crate::log::ExchangeLog;

/// What [`release`] did to a set of records, for the exchange log.
#[derive(Debug, Default)]
pub struct Released {
    /// The subject of every record, each once, in order of release.
    pub subjects: Vec<Vec<u8>>,
    /// The subject-key period of `subjects`; empty when there are none.
    pub subject_period: String,
    /// Released fields whose values were masked.
    pub masked_fields: Vec<String>,
    /// SHA-256 of the records as released (see `huitong_audit::record::answer_digest`).
    pub answer_digest: Vec<u8>,
    /// Records released without a subject (key fields missing, or no subject key): a grant
    /// with a daily cap on people cannot count them, and releases nothing.
    pub unidentified: usize,
}

/// Releases `records` of `spec`'s resource under `decision`: records their subjects, keeps only
/// `fields`, applies the grant's masks, and digests the result. `records` is changed in place
/// into exactly what the consumer receives.
///
/// A record without all of the resource's key fields has no subject; that is logged (the
/// broker asks adapters for the key fields, so it means the adapter left them out) and the
/// record is released without one rather than withheld, as for a missing subject key.
pub fn release(
    log: &ExchangeLog,
    spec: &ResourceSpec,
    decision: &Decision,
    fields: &[FieldName],
    records: &mut [Record],
    time_micros: i64,
) -> Released {
    let mut out = Released::default();
    let key_fields = spec.key_fields();
    for r in records.iter() {
        let key: Option<Vec<(&str, &Value)>> = key_fields
            .iter()
            .map(|k| {
                r.fields
                    .get_key_value(k.as_str())
                    .filter(|(_, v)| v.kind.is_some())
                    .map(|(name, v)| (name.as_str(), v))
            })
            .collect();
        let Some(key) = key else {
            tracing::warn!(resource = %spec.id(), "an adapter answered a record without its key fields; it is released without a subject");
            out.unidentified += 1;
            continue;
        };
        match subject_from(log, &key, time_micros) {
            Some((mac, period)) => {
                if !out.subjects.contains(&mac) {
                    out.subjects.push(mac);
                    out.subject_period = period;
                }
            }
            None => out.unidentified += 1,
        }
    }
    minimise(records, fields);
    out.masked_fields = mask(records, decision, fields);
    out.answer_digest = huitong_audit::record::answer_digest(records);
    out
}

/// Whose record a key names: the HMAC of the normalised key under the period's subject key,
/// and the period. `None` (logged) if the subject key is unavailable: the exchange is then
/// recorded without a subject rather than not at all.
pub fn subject_of(
    log: &ExchangeLog,
    key: &HashMap<String, Value>,
    time_micros: i64,
) -> Option<(Vec<u8>, String)> {
    let pairs: Vec<(&str, &Value)> = key.iter().map(|(k, v)| (k.as_str(), v)).collect();
    subject_from(log, &pairs, time_micros)
}

/// [`subject_of`] for a key given as (field, value) pairs.
fn subject_from(
    log: &ExchangeLog,
    key: &[(&str, &Value)],
    time_micros: i64,
) -> Option<(Vec<u8>, String)> {
    if key.is_empty() {
        return None;
    }
    let text: Vec<(&str, String)> = key.iter().map(|(k, v)| (*k, key_text(v))).collect();
    let parts: Vec<(&str, &str)> = text.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match log.subject(&parts, time_micros) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no subject key; the exchange is recorded without a subject");
            None
        }
    }
}

/// A key value as the text its subject is computed from: a string as it is, anything else in
/// its JSON form. The subject report types identifiers as text, so both sides must agree.
pub fn key_text(v: &Value) -> String {
    match v.to_json() {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Only the requested fields leave the broker.
pub fn minimise(records: &mut [Record], fields: &[FieldName]) {
    for r in records {
        r.fields
            .retain(|name, _| fields.iter().any(|f| f.as_str() == name));
    }
}

/// Masks from the grant. A text mask on a value that is not text, and the `redact` mask,
/// release null. Returns the names of the released fields that were masked.
pub fn mask(records: &mut [Record], decision: &Decision, released: &[FieldName]) -> Vec<String> {
    for r in records.iter_mut() {
        for (field, m) in &decision.masks {
            if let Some(v) = r.fields.get_mut(field.as_str()) {
                let masked = match &v.kind {
                    Some(Kind::StringValue(s)) => apply_text(*m, s).map(Value::string),
                    Some(Kind::NullValue(_)) | None => continue,
                    _ => None,
                };
                *v = masked.unwrap_or_else(Value::null);
            }
        }
    }
    decision
        .masks
        .iter()
        .filter(|(f, _)| released.contains(f))
        .map(|(f, _)| f.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimise_keeps_only_requested_fields() {
        let mut r = Record::default();
        for f in ["id_number", "name", "address"] {
            r.fields.insert(f.into(), Value::string("x"));
        }
        let mut records = vec![r];
        minimise(&mut records, &[FieldName::new("name").unwrap()]);
        assert_eq!(records[0].fields.keys().collect::<Vec<_>>(), ["name"]);
    }

    #[test]
    fn masks_apply_to_text_and_null_everything_else() {
        use huitong_core::Mask;
        let mut r = Record::default();
        r.fields.insert("name".into(), Value::string("欧阳娜娜"));
        r.fields
            .insert("id_number".into(), Value::string("110105199001011234"));
        r.fields.insert("score".into(), Value::int(7));
        let decision = Decision {
            grant_id: Some("G-1".into()),
            masks: vec![
                (FieldName::new("name").unwrap(), Mask::Name),
                (FieldName::new("id_number").unwrap(), Mask::IdNumber),
                (FieldName::new("score").unwrap(), Mask::Name),
            ],
            ..Decision::default()
        };
        let mut records = vec![r];
        let released: Vec<FieldName> = decision.masks.iter().map(|(f, _)| f.clone()).collect();
        let masked = mask(&mut records, &decision, &released[..2]);
        assert_eq!(masked, ["name", "id_number"]);
        assert_eq!(records[0].fields["name"], Value::string("欧阳**"));
        assert_eq!(
            records[0].fields["id_number"],
            Value::string("110105********1234")
        );
        assert_eq!(records[0].fields["score"], Value::null());
    }
}
