//! Page tokens and change cursors: typed values written as text, and sealed tokens.
//!
//! A page token that resumes after the last key of a page would carry that key, a personal
//! identifier, to the consumer, who may not be allowed to see it (a search by district that
//! releases only names). Page tokens are therefore sealed (ChaCha20-Poly1305 under a key
//! drawn when the source starts): opaque to the caller and impossible to forge. They do not
//! outlive the adapter, which is acceptable for paging. Change cursors go only to the broker,
//! which receives the key in the same event, and must outlive restarts; they are plain.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use huitong_adapter::Value;
use huitong_proto::v1::Date;
use huitong_proto::v1::value::Kind;
use ring::aead::{CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value as J, json};

/// A value with its type, as JSON.
pub(crate) fn value_to_json(v: &Value) -> J {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => json!({ "n": 0 }),
        Some(Kind::StringValue(s)) => json!({ "s": s }),
        Some(Kind::IntValue(i)) => json!({ "i": i }),
        // Bits, so that the value comes back exactly.
        Some(Kind::DoubleValue(d)) => json!({ "d": d.to_bits() }),
        Some(Kind::BoolValue(b)) => json!({ "b": b }),
        Some(Kind::BytesValue(b)) => json!({ "y": URL_SAFE_NO_PAD.encode(b) }),
        Some(Kind::DateValue(d)) => json!({ "D": [d.year, d.month, d.day] }),
        Some(Kind::TimestampValue(t)) => json!({ "T": [t.seconds, t.nanos] }),
    }
}

pub(crate) fn value_from_json(j: &J) -> Option<Value> {
    let o = j.as_object()?;
    if o.len() != 1 {
        return None;
    }
    let (tag, v) = o.iter().next()?;
    let kind = match tag.as_str() {
        "n" => Kind::NullValue(true),
        "s" => Kind::StringValue(v.as_str()?.to_owned()),
        "i" => Kind::IntValue(v.as_i64()?),
        "d" => Kind::DoubleValue(f64::from_bits(v.as_u64()?)),
        "b" => Kind::BoolValue(v.as_bool()?),
        "y" => Kind::BytesValue(URL_SAFE_NO_PAD.decode(v.as_str()?).ok()?),
        "D" => {
            let a = v.as_array()?;
            let part = |i: usize| -> Option<i32> { i32::try_from(a.get(i)?.as_i64()?).ok() };
            if a.len() != 3 {
                return None;
            }
            Kind::DateValue(Date {
                year: part(0)?,
                month: part(1)?,
                day: part(2)?,
            })
        }
        "T" => {
            let a = v.as_array()?;
            if a.len() != 2 {
                return None;
            }
            Kind::TimestampValue(prost_types_timestamp(
                a.first()?.as_i64()?,
                i32::try_from(a.get(1)?.as_i64()?).ok()?,
            ))
        }
        _ => return None,
    };
    Some(Value { kind: Some(kind) })
}

fn prost_types_timestamp(seconds: i64, nanos: i32) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos }
}

/// Values as compact text: base64url of their typed JSON.
pub(crate) fn encode_values(values: &[Value]) -> String {
    let json = J::Array(values.iter().map(value_to_json).collect());
    URL_SAFE_NO_PAD.encode(json.to_string())
}

pub(crate) fn decode_values(text: &str) -> Option<Vec<Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let json: J = serde_json::from_slice(&bytes).ok()?;
    json.as_array()?.iter().map(value_from_json).collect()
}

/// A short digest of a search (resource and filters), so that a page token is accepted only
/// for the search that issued it.
pub(crate) fn search_digest(
    resource: &str,
    filters: &[(huitong_core::FieldName, Value)],
) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(resource.as_bytes());
    for (name, value) in filters {
        ctx.update(&[0]);
        ctx.update(name.as_str().as_bytes());
        ctx.update(&[0]);
        ctx.update(value_to_json(value).to_string().as_bytes());
    }
    let d = ctx.finish();
    URL_SAFE_NO_PAD.encode(d.as_ref().get(..12).unwrap_or_default())
}

/// Seals and opens page tokens with a key of its own.
pub(crate) struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

impl Sealer {
    pub(crate) fn new() -> Result<Self, String> {
        let rng = SystemRandom::new();
        let mut key = [0u8; 32];
        rng.fill(&mut key)
            .map_err(|_| "the system's random number generator failed".to_owned())?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &key)
            .map_err(|_| "cannot make a token key".to_owned())?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng,
        })
    }

    /// `plain` sealed: base64url of nonce, ciphertext and tag.
    pub(crate) fn seal(&self, plain: &J) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "the system's random number generator failed".to_owned())?;
        let mut data = plain.to_string().into_bytes();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut data,
            )
            .map_err(|_| "cannot seal a page token".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// What a token this sealer issued holds; `None` for anything else.
    pub(crate) fn open(&self, token: &str) -> Option<J> {
        let mut data = URL_SAFE_NO_PAD.decode(token).ok()?;
        if data.len() < NONCE_LEN {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(data.get(..NONCE_LEN)?);
        let body = data.get_mut(NONCE_LEN..)?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                body,
            )
            .ok()?;
        serde_json::from_slice(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_exactly() {
        let values = vec![
            Value::null(),
            Value::string("张三 x' OR '1'='1"),
            Value::int(-7),
            Value::double(0.1),
            Value::bool(true),
            Value {
                kind: Some(Kind::BytesValue(vec![0, 255, 3])),
            },
            Value::date(2024, 2, 29),
            Value {
                kind: Some(Kind::TimestampValue(prost_types_timestamp(
                    1_700_000_000,
                    123_456_000,
                ))),
            },
        ];
        assert_eq!(decode_values(&encode_values(&values)).unwrap(), values);
        assert!(decode_values("not base64!").is_none());
        assert!(decode_values(&URL_SAFE_NO_PAD.encode("[{\"q\":1}]")).is_none());
    }

    #[test]
    fn sealed_tokens_open_only_with_their_key_and_unchanged() {
        let a = Sealer::new().unwrap();
        let b = Sealer::new().unwrap();
        let t = a.seal(&json!({"k": "110101199001010001"})).unwrap();
        assert!(!t.contains("110101"));
        assert_eq!(a.open(&t).unwrap()["k"], "110101199001010001");
        assert!(b.open(&t).is_none());
        let mut tampered = t.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(a.open(std::str::from_utf8(&tampered).unwrap()).is_none());
        assert!(a.open("").is_none());
    }
}
