//! Who accessed whose records, without storing identifiers.
//!
//! An exchange record names its subject (the person whose record was looked up) only as
//! `HMAC-SHA-256(subject key of the period, normalised key)`. The subject keys are 32 random
//! bytes per calendar month (UTC, `"YYYY-MM"`), one file each in `subject-keys/` (mode 0600),
//! created on first use. Whoever holds a period's key can answer "who looked at this person"
//! for that period by computing the same HMAC and looking it up; nobody else can, and the log
//! itself never holds an identifier.
//!
//! Retention destroys old keys ([`SubjectKeys::destroy_before`]). The log is untouched, so the
//! tree, checkpoints and every proof stay valid; only the link from those entries to a person is
//! gone. Destroyed periods are remembered in `subject-keys/destroyed.txt` so that reports can
//! say which periods are unlinkable, and so that a destroyed key is never silently recreated.

use std::path::Path;

use ring::hmac;

use crate::error::Error;
use crate::keys::{KEY_LEN, KeyKind, Lookup, PeriodKeys};

#[cfg(test)]
mod tests;

/// The directory of subject keys, under the log directory.
pub const SUBJECT_KEYS_DIR: &str = "subject-keys";
/// The list of destroyed periods, one per line, in the subject-key directory.
pub use crate::keys::DESTROYED_FILE;
/// Separates `field=value` pairs in a normalised key: the ASCII unit separator, which no field
/// name or key value contains (see [`normalise_key`]).
const UNIT_SEPARATOR: char = '\u{1f}';

/// The canonical form of a resident ID number (居民身份证号码, GB 11643: 17 digits and a check
/// character, a digit or `X`) typed loosely, or `None` if `value` is not shaped like one.
///
/// Spaces (any Unicode whitespace), hyphens and dashes, and zero-width characters are dropped;
/// full-width digits and `Ｘ`/`ｘ` become ASCII; a lowercase `x` check character becomes `X`.
/// What is left must be 17 ASCII digits and a digit or `X`. The check character is not verified:
/// this says which number was meant, not whether it exists.
///
/// The exchange applies this to key and filter values before it routes a query and before it
/// HMACs a key, and the subject report before it looks one up, so that
/// `110105 19491231 002x`, `110105-19491231-002X` and `１１０１０５１９４９１２３１００２Ｘ` are one
/// person everywhere.
///
/// ```
/// use huitong_audit::subject::canonical_id_number;
/// assert_eq!(canonical_id_number("110105 19491231 002x").as_deref(), Some("11010519491231002X"));
/// assert_eq!(canonical_id_number("1990-01-02"), None);
/// ```
pub fn canonical_id_number(value: &str) -> Option<String> {
    let mut out = String::with_capacity(18);
    for c in value.chars() {
        let c = match c {
            '０'..='９' => char::from_digit(u32::from(c) - u32::from('０'), 10)?,
            'x' | 'Ｘ' | 'ｘ' => 'X',
            '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}' => {
                continue;
            }
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => continue,
            c if c.is_whitespace() || c.is_control() => continue,
            c => c,
        };
        out.push(c);
        if out.len() > 18 {
            return None;
        }
    }
    let b = out.as_bytes();
    let shaped = b.len() == 18
        && b[..17].iter().all(u8::is_ascii_digit)
        && (b[17].is_ascii_digit() || b[17] == b'X');
    shaped.then_some(out)
}

/// Normalises one key or filter value: trimmed, control characters removed, a resident ID
/// number in its canonical form ([`canonical_id_number`]), ASCII letters upper-cased. Already
/// normal input (what the broker recorded before ID numbers were canonicalised) is unchanged
/// apart from the upper-casing it always had.
pub fn normalise_value(value: &str) -> String {
    let clean: String = value.trim().chars().filter(|c| !c.is_control()).collect();
    match canonical_id_number(&clean) {
        Some(id) => id,
        None => clean.to_ascii_uppercase(),
    }
}

/// Normalises a record key (one value per key field) into the one string that is HMACed, so
/// that the broker (when recording) and the subject report (when looking up) agree however the
/// key was typed.
///
/// - pairs are sorted by field name (then value), so their order does not matter;
/// - names and values are trimmed of surrounding whitespace;
/// - a value shaped like a resident ID number is put in its canonical form
///   ([`canonical_id_number`]: no spaces or hyphens, ASCII digits, upper-case `X`);
/// - ASCII letters in values are upper-cased (citizen ID numbers end in `X` or `x`); other
///   characters are kept as they are, since case folding beyond ASCII is locale-dependent;
/// - control characters are removed from names and values, which keeps the separator out of
///   them and makes the encoding unambiguous;
/// - each pair is written `field=value`, pairs joined by U+001F (unit separator).
///
/// ```
/// use huitong_audit::subject::normalise_key;
/// assert_eq!(
///     normalise_key(&[("id_number", " 11010519491231002x ")]),
///     "id_number=11010519491231002X"
/// );
/// assert_eq!(
///     normalise_key(&[("surname", "li"), ("birth_date", "1990-01-02")]),
///     "birth_date=1990-01-02\u{1f}surname=LI"
/// );
/// ```
pub fn normalise_key(parts: &[(&str, &str)]) -> String {
    let clean = |s: &str| -> String { s.trim().chars().filter(|c| !c.is_control()).collect() };
    let mut pairs: Vec<(String, String)> = parts
        .iter()
        .map(|(name, value)| (clean(name), normalise_value(value)))
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(UNIT_SEPARATOR);
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Checks that `period` is `"YYYY-MM"` with a month from 01 to 12. Periods become file names,
/// so nothing else may pass.
fn check_period(period: &str) -> Result<(), Error> {
    let b = period.as_bytes();
    let ok = b.len() == 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..].iter().all(u8::is_ascii_digit)
        && matches!((b[5], b[6]), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidPeriod {
            period: period.to_owned(),
        })
    }
}

/// The subject keys of one log directory.
#[derive(Debug)]
pub struct SubjectKeys {
    keys: PeriodKeys<hmac::Key>,
}

const SUBJECT_KEY: KeyKind<hmac::Key> = KeyKind {
    what: "subject key",
    format: "YYYY-MM",
    check: check_period,
    make: |bytes: &[u8; KEY_LEN]| Ok(hmac::Key::new(hmac::HMAC_SHA256, bytes)),
};

impl SubjectKeys {
    /// Opens (creating if needed, mode 0700) `dir/subject-keys`. Keys are read or created when
    /// first used. Blocking.
    pub fn open(dir: &Path) -> Result<SubjectKeys, Error> {
        Ok(SubjectKeys {
            keys: PeriodKeys::open(dir.join(SUBJECT_KEYS_DIR), SUBJECT_KEY)?,
        })
    }

    /// The `"YYYY-MM"` period (calendar month, UTC) of a time in Unix microseconds.
    pub fn period_of(time_micros: i64) -> String {
        let days = time_micros.div_euclid(86_400_000_000);
        // Days since 1970-01-01 to a civil date, proleptic Gregorian (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!("{year:04}-{month:02}")
    }

    /// `HMAC-SHA-256` of `normalised_key` (see [`normalise_key`]) under the key of `period`,
    /// creating the key if the period has none yet.
    ///
    /// Blocking the first time a period is used in this process (the key file is read, or
    /// created and synced).
    ///
    /// # Errors
    ///
    /// [`Error::SubjectKeyDestroyed`] for a destroyed period: its key is never recreated.
    pub fn subject(&self, period: &str, normalised_key: &str) -> Result<[u8; 32], Error> {
        let key = match self.keys.get_or_create(period)? {
            Lookup::Key(k) => k,
            Lookup::Destroyed | Lookup::Missing => {
                return Err(Error::SubjectKeyDestroyed {
                    period: period.to_owned(),
                });
            }
        };
        let tag = hmac::sign(&key, normalised_key.as_bytes());
        let mut out = [0u8; 32];
        // HMAC-SHA-256 tags are 32 bytes.
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// `HMAC-SHA-256` of an acting official (the id `consumer` assigned) under the key of
    /// `period`. The message starts with U+001E, which no normalised key contains
    /// ([`normalise_key`] removes control characters), so an official never collides with a
    /// subject; the consumer is part of it because official ids are each department's own.
    pub fn official(
        &self,
        period: &str,
        consumer: &str,
        official: &str,
    ) -> Result<[u8; 32], Error> {
        self.subject(
            period,
            &format!("\u{1e}official\u{1f}{consumer}\u{1f}{}", official.trim()),
        )
    }

    /// Periods that have a key, oldest first.
    pub fn periods(&self) -> Vec<String> {
        self.keys.periods()
    }

    /// Destroys the keys of every period before `period` (retention): the destruction is first
    /// recorded in `destroyed.txt`, then each key file is overwritten with zeros, synced and
    /// removed. Returns the periods whose keys this call destroyed, oldest first.
    ///
    /// The log is not touched: entries of those periods stay in it and keep verifying, but can
    /// no longer be linked to a person. Overwriting is best effort on copy-on-write file systems
    /// and SSDs, and backups hold their own copies: retention must cover them too.
    pub fn destroy_before(&self, period: &str) -> Result<Vec<String>, Error> {
        self.keys.destroy_before(period)
    }

    /// Periods whose keys were destroyed, oldest first: their accesses cannot be linked.
    pub fn destroyed(&self) -> Vec<String> {
        self.keys.destroyed()
    }
}
