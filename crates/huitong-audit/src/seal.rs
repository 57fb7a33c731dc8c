//! Sealing what the broker must keep for a while (change events, provider cursors) under daily
//! keys, so that retention destroys it everywhere at once (crypto-shredding) and a copy of the
//! stored bytes without the keys reveals nothing.
//!
//! Each sealed value is AES-256-GCM under the key of the UTC day it was written (one file per
//! day in the key directory, see [`crate::keys`]), with a random 96-bit nonce per value and the
//! caller's context (for an event: its resource and sequence number) as associated data, so a
//! value moved to another place, or altered, does not open. Layout:
//!
//! ```text
//! 0x01 | written at (Unix µs, 8 bytes BE) | key fingerprint (8) | nonce (12) | ciphertext+tag
//! ```
//!
//! The time is in clear so that retention by age needs no key; the fingerprint (a MAC of a
//! fixed label under the key, revealing nothing of it) tells a value whose key was replaced
//! from one that was damaged. Nonces are random rather than counted because the broker may
//! write two different values under one (resource, sequence) after a crash, before the
//! position that claimed the first was stored.

use std::path::PathBuf;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::Error;
use crate::keys::{KEY_LEN, KeyKind, Lookup, PeriodKeys};

#[cfg(test)]
mod tests;

const VERSION: u8 = 1;
const FINGERPRINT_LEN: usize = 8;
const HEADER_LEN: usize = 1 + 8 + FINGERPRINT_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;

/// One day's key.
pub struct DayKey {
    aead: LessSafeKey,
    fingerprint: [u8; FINGERPRINT_LEN],
}

impl std::fmt::Debug for DayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DayKey")
    }
}

fn make_day_key(bytes: &[u8; KEY_LEN]) -> Result<DayKey, Error> {
    let aead = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| Error::Key("an event key is not an AES-256 key".into()))?;
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, bytes),
        b"huitong event key fingerprint",
    );
    let mut fingerprint = [0u8; FINGERPRINT_LEN];
    fingerprint.copy_from_slice(&tag.as_ref()[..FINGERPRINT_LEN]);
    Ok(DayKey {
        aead: LessSafeKey::new(aead),
        fingerprint,
    })
}

/// Accepts `YYYY-MM-DD` with a month from 01 to 12 and a day from 01 to 31.
fn check_day(period: &str) -> Result<(), Error> {
    let b = period.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = b.len() == 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!((b[5], b[6]), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'))
        && matches!(
            (b[8], b[9]),
            (b'0', b'1'..=b'9') | (b'1' | b'2', _) | (b'3', b'0' | b'1')
        );
    if ok {
        Ok(())
    } else {
        Err(Error::Key(format!(
            "{period:?} is not an event-key period; periods are UTC days, \"YYYY-MM-DD\""
        )))
    }
}

const EVENT_KEY: KeyKind<DayKey> = KeyKind {
    what: "event key",
    format: "YYYY-MM-DD",
    check: check_day,
    make: make_day_key,
};

/// What a sealed value opened to.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsealed {
    Plain(Vec<u8>),
    /// Its key was destroyed, or is not the key it was sealed under: the value is gone, as if
    /// retention had dropped it.
    KeyGone {
        period: String,
    },
}

/// The event keys of one directory; see the module documentation.
#[derive(Debug)]
pub struct EventKeys {
    keys: PeriodKeys<DayKey>,
    rng: SystemRandom,
}

impl EventKeys {
    /// Opens (creating if needed, mode 0700) the key directory `dir`. Blocking.
    pub fn open(dir: PathBuf) -> Result<EventKeys, Error> {
        Ok(EventKeys {
            keys: PeriodKeys::open(dir, EVENT_KEY)?,
            rng: SystemRandom::new(),
        })
    }

    /// The `YYYY-MM-DD` (UTC) day of a time in Unix microseconds.
    pub fn day_of(time_micros: i64) -> Result<String, Error> {
        let t = time::OffsetDateTime::from_unix_timestamp(time_micros.div_euclid(1_000_000))
            .map_err(|_| Error::Key(format!("{time_micros} µs is not a time of day")))?;
        Ok(format!(
            "{:04}-{:02}-{:02}",
            t.year(),
            u8::from(t.month()),
            t.day()
        ))
    }

    /// Seals `plain` under the key of the day of `time_micros`, bound to `context`.
    /// Blocking the first time a day is used in this process.
    pub fn seal(&self, time_micros: i64, context: &[u8], plain: &[u8]) -> Result<Vec<u8>, Error> {
        let day = Self::day_of(time_micros)?;
        let key = match self.keys.get_or_create(&day)? {
            Lookup::Key(k) => k,
            Lookup::Destroyed | Lookup::Missing => {
                return Err(Error::Key(format!(
                    "the event key of {day} was destroyed; nothing more is sealed under it (is the clock right?)"
                )));
            }
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Error::Key("the system random number generator failed".into()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&time_micros.to_be_bytes());
        out.extend_from_slice(&key.fingerprint);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&out, context)),
                &mut body,
            )
            .map_err(|_| Error::Key("sealing failed".into()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a value sealed by [`EventKeys::seal`] with the same `context`.
    ///
    /// # Errors
    ///
    /// [`Error::Unsealable`] for a value that is not one, was altered, or belongs elsewhere.
    pub fn open_sealed(&self, sealed: &[u8], context: &[u8]) -> Result<Unsealed, Error> {
        let time_micros = sealed_at(sealed)?;
        let day = Self::day_of(time_micros)?;
        let key = match self.keys.get(&day)? {
            Lookup::Key(k) => k,
            Lookup::Destroyed | Lookup::Missing => return Ok(Unsealed::KeyGone { period: day }),
        };
        let (header, body) = sealed.split_at(HEADER_LEN);
        if header[9..9 + FINGERPRINT_LEN] != key.fingerprint {
            return Ok(Unsealed::KeyGone { period: day });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[9 + FINGERPRINT_LEN..]);
        let mut body = body.to_vec();
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(header, context)),
                &mut body,
            )
            .map_err(|_| Error::Unsealable("it was altered or belongs to another place".into()))?;
        let len = plain.len();
        body.truncate(len);
        Ok(Unsealed::Plain(body))
    }

    /// Destroys the keys of every day before the day of `time_micros`: whatever was sealed
    /// under them is gone. Returns the days destroyed.
    pub fn destroy_before(&self, time_micros: i64) -> Result<Vec<String>, Error> {
        self.keys.destroy_before(&Self::day_of(time_micros)?)
    }

    /// Days that have a key, oldest first.
    pub fn days(&self) -> Vec<String> {
        self.keys.periods()
    }

    /// Days whose keys were destroyed, oldest first.
    pub fn destroyed(&self) -> Vec<String> {
        self.keys.destroyed()
    }
}

/// When a sealed value was written (Unix µs), readable without its key.
pub fn sealed_at(sealed: &[u8]) -> Result<i64, Error> {
    if sealed.len() < HEADER_LEN + TAG_LEN {
        return Err(Error::Unsealable(format!(
            "{} bytes is too short for a sealed value",
            sealed.len()
        )));
    }
    if sealed[0] != VERSION {
        return Err(Error::Unsealable(format!(
            "format {} is not a sealed value (expected {VERSION})",
            sealed[0]
        )));
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&sealed[1..9]);
    Ok(i64::from_be_bytes(t))
}

/// Whether `bytes` is in the sealed format at all (for telling values written before sealing).
pub fn is_sealed(bytes: &[u8]) -> bool {
    sealed_at(bytes).is_ok()
}

fn aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(HEADER_LEN + context.len() + 20);
    a.extend_from_slice(b"huitong sealed v1\0");
    a.extend_from_slice(&header[..HEADER_LEN]);
    a.extend_from_slice(context);
    a
}
