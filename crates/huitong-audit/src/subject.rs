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

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tracing::{info, warn};

use crate::error::Error;
use crate::store::{sync_dir, write_atomically};

#[cfg(test)]
mod tests;

/// The directory of subject keys, under the log directory.
pub const SUBJECT_KEYS_DIR: &str = "subject-keys";
/// The list of destroyed periods, one per line, in the subject-key directory.
pub const DESTROYED_FILE: &str = "destroyed.txt";

const KEY_LEN: usize = 32;
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
pub struct SubjectKeys {
    dir: PathBuf,
    rng: SystemRandom,
    /// Keys loaded so far and the destroyed periods. One lock for both, so that a key cannot be
    /// loaded or created while its period is being destroyed.
    state: Mutex<State>,
}

struct State {
    keys: HashMap<String, hmac::Key>,
    destroyed: BTreeSet<String>,
}

impl std::fmt::Debug for SubjectKeys {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKeys")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SubjectKeys {
    /// Opens (creating if needed, mode 0700) `dir/subject-keys`. Keys are read or created when
    /// first used. Blocking.
    pub fn open(dir: &Path) -> Result<SubjectKeys, Error> {
        let keys_dir = dir.join(SUBJECT_KEYS_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&keys_dir)
            .map_err(Error::io("create directory", &keys_dir))?;
        let list = keys_dir.join(DESTROYED_FILE);
        let mut destroyed = BTreeSet::new();
        match fs::read_to_string(&list) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    let period = line.trim();
                    if period.is_empty() {
                        continue;
                    }
                    check_period(period).map_err(|_| Error::Corrupt {
                        path: list.clone(),
                        offset: 0,
                        problem: format!("line {} is {period:?}, not a YYYY-MM period", i + 1),
                    })?;
                    destroyed.insert(period.to_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read", &list)(e)),
        }
        Ok(SubjectKeys {
            dir: keys_dir,
            rng: SystemRandom::new(),
            state: Mutex::new(State {
                keys: HashMap::new(),
                destroyed,
            }),
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
        check_period(period)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.destroyed.contains(period) {
            return Err(Error::SubjectKeyDestroyed {
                period: period.to_owned(),
            });
        }
        if !state.keys.contains_key(period) {
            let key = self.load_or_create(period)?;
            state.keys.insert(period.to_owned(), key);
        }
        let key = state.keys.get(period).ok_or_else(|| {
            Error::Key(format!("the subject key of {period} vanished while in use"))
        })?;
        let tag = hmac::sign(key, normalised_key.as_bytes());
        let mut out = [0u8; 32];
        // HMAC-SHA-256 tags are 32 bytes.
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    fn key_path(&self, period: &str) -> PathBuf {
        self.dir.join(format!("{period}.key"))
    }

    fn load_or_create(&self, period: &str) -> Result<hmac::Key, Error> {
        let path = self.key_path(period);
        match fs::read(&path) {
            Ok(bytes) => return key_from_bytes(&path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read", &path)(e)),
        }
        let mut bytes = [0u8; KEY_LEN];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| Error::Key("the system random number generator failed".into()))?;
        // Written under a temporary name and linked into place: the link fails if another
        // process created the key meanwhile, and then that key is the one to use (two keys
        // for one period would split its subjects).
        let tmp = self.dir.join(format!("{period}.key.tmp"));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Error::io("create", &tmp))?;
        f.write_all(&bytes).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
        drop(f);
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(&self.dir)?;
                info!(period, "created a subject key");
                Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let existing = fs::read(&path).map_err(Error::io("read", &path))?;
                key_from_bytes(&path, &existing)
            }
            Err(e) => Err(Error::io("link into place", &path)(e)),
        }
    }

    /// Periods that have a key, oldest first.
    pub fn periods(&self) -> Vec<String> {
        match self.periods_on_disk() {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "listing subject keys failed");
                Vec::new()
            }
        }
    }

    fn periods_on_disk(&self) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(Error::io("list", &self.dir))? {
            let entry = entry.map_err(Error::io("list", &self.dir))?;
            let name = entry.file_name();
            let Some(period) = name.to_str().and_then(|n| n.strip_suffix(".key")) else {
                continue;
            };
            if check_period(period).is_ok() {
                out.push(period.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Destroys the keys of every period before `period` (retention): the destruction is first
    /// recorded in `destroyed.txt`, then each key file is overwritten with zeros, synced and
    /// removed. Returns the periods whose keys this call destroyed, oldest first.
    ///
    /// The log is not touched: entries of those periods stay in it and keep verifying, but can
    /// no longer be linked to a person. Overwriting is best effort on copy-on-write file systems
    /// and SSDs, and backups hold their own copies: retention must cover them too.
    pub fn destroy_before(&self, period: &str) -> Result<Vec<String>, Error> {
        check_period(period)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let doomed: Vec<String> = self
            .periods_on_disk()?
            .into_iter()
            .filter(|p| p.as_str() < period)
            .collect();
        if doomed.is_empty() {
            return Ok(doomed);
        }
        // Recorded before the files go: after a crash in between, the key is still refused (a
        // destroyed period is never used again) and the next call finishes the removal.
        let mut destroyed = state.destroyed.clone();
        destroyed.extend(doomed.iter().cloned());
        let text: String = destroyed.iter().map(|p| format!("{p}\n")).collect();
        write_atomically(&self.dir, DESTROYED_FILE, text.as_bytes(), 0o600)?;
        state.destroyed = destroyed;
        for p in &doomed {
            state.keys.remove(p);
            let path = self.key_path(p);
            // Overwritten in place (not truncated first, which would free the old blocks
            // with the key still in them), synced, then unlinked.
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(Error::io("open", &path))?;
            let len = f.metadata().map_err(Error::io("stat", &path))?.len();
            let zeros = vec![0u8; usize::try_from(len).unwrap_or(KEY_LEN).max(KEY_LEN)];
            f.write_all_at(&zeros, 0)
                .map_err(Error::io("overwrite", &path))?;
            f.sync_all().map_err(Error::io("fsync", &path))?;
            drop(f);
            fs::remove_file(&path).map_err(Error::io("remove", &path))?;
        }
        sync_dir(&self.dir)?;
        info!(periods = ?doomed, "destroyed subject keys");
        Ok(doomed)
    }

    /// Periods whose keys were destroyed, oldest first: their accesses cannot be linked.
    pub fn destroyed(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .destroyed
            .iter()
            .cloned()
            .collect()
    }
}

fn key_from_bytes(path: &Path, bytes: &[u8]) -> Result<hmac::Key, Error> {
    if bytes.len() != KEY_LEN {
        return Err(Error::Key(format!(
            "{} holds {} bytes, not a {KEY_LEN}-byte subject key",
            path.display(),
            bytes.len()
        )));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, bytes))
}
