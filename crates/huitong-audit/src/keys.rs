//! Keys kept one per period in a directory, for crypto-shredding: whatever was written under a
//! period's key becomes unreadable (or unlinkable) the moment that key is destroyed, wherever
//! copies of the data went, without rewriting the data itself.
//!
//! Each key is 32 random bytes in `<dir>/<period>.key` (mode 0600; the directory 0700),
//! created on first use. Destroyed periods are listed in `<dir>/destroyed.txt`, written before
//! any key file is removed, so that a destroyed key is never silently recreated (a fresh key
//! would not read the old data anyway, and would suggest it did). Periods are text that sorts
//! in time order (`YYYY-MM`, `YYYY-MM-DD`), so "every period before P" is a string comparison.
//!
//! Used by the subject keys ([`crate::subject`], monthly) and the event keys
//! ([`crate::seal`], daily).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ring::rand::{SecureRandom, SystemRandom};
use tracing::{info, warn};

use crate::error::Error;
use crate::store::{sync_dir, write_atomically};

/// The list of destroyed periods, one per line, in a key directory.
pub const DESTROYED_FILE: &str = "destroyed.txt";

/// Length of every key, in bytes.
pub const KEY_LEN: usize = 32;

/// What kind of key a directory holds.
#[derive(Debug, Clone, Copy)]
pub struct KeyKind<T> {
    /// For messages: "subject key", "event key".
    pub what: &'static str,
    /// For messages: the period's format, e.g. "YYYY-MM".
    pub format: &'static str,
    /// Accepts exactly the periods of this kind. Periods become file names, so nothing else may
    /// pass.
    pub check: fn(&str) -> Result<(), Error>,
    /// Turns key bytes into what is used (an HMAC key, an AEAD key).
    pub make: fn(&[u8; KEY_LEN]) -> Result<T, Error>,
}

/// The answer for one period.
#[derive(Debug)]
pub enum Lookup<T> {
    Key(Arc<T>),
    /// Destroyed under the retention policy; never recreated.
    Destroyed,
    /// No key file (only from [`PeriodKeys::get`], which never creates one).
    Missing,
}

/// The keys of one directory; see the module documentation.
pub struct PeriodKeys<T> {
    dir: PathBuf,
    kind: KeyKind<T>,
    rng: SystemRandom,
    /// Keys loaded so far and the destroyed periods. One lock for both, so that a key cannot be
    /// loaded or created while its period is being destroyed.
    state: Mutex<State<T>>,
}

struct State<T> {
    keys: HashMap<String, Arc<T>>,
    destroyed: BTreeSet<String>,
}

impl<T> std::fmt::Debug for PeriodKeys<T> {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeriodKeys")
            .field("dir", &self.dir)
            .field("what", &self.kind.what)
            .finish_non_exhaustive()
    }
}

impl<T> PeriodKeys<T> {
    /// Opens (creating if needed, mode 0700) `dir`. Keys are read or created when first used.
    /// Blocking.
    pub fn open(dir: PathBuf, kind: KeyKind<T>) -> Result<PeriodKeys<T>, Error> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(Error::io("create directory", &dir))?;
        let list = dir.join(DESTROYED_FILE);
        let mut destroyed = BTreeSet::new();
        match fs::read_to_string(&list) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    let period = line.trim();
                    if period.is_empty() {
                        continue;
                    }
                    (kind.check)(period).map_err(|_| Error::Corrupt {
                        path: list.clone(),
                        offset: 0,
                        problem: format!(
                            "line {} is {period:?}, not a {} period",
                            i + 1,
                            kind.format
                        ),
                    })?;
                    destroyed.insert(period.to_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read", &list)(e)),
        }
        Ok(PeriodKeys {
            dir,
            kind,
            rng: SystemRandom::new(),
            state: Mutex::new(State {
                keys: HashMap::new(),
                destroyed,
            }),
        })
    }

    /// The directory the keys are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of `period`, created if it has none yet (never for a destroyed period).
    /// Blocking the first time a period is used in this process.
    pub fn get_or_create(&self, period: &str) -> Result<Lookup<T>, Error> {
        self.lookup(period, true)
    }

    /// The key of `period` if it has one; never creates one. Blocking the first time a period
    /// is used in this process.
    pub fn get(&self, period: &str) -> Result<Lookup<T>, Error> {
        self.lookup(period, false)
    }

    fn lookup(&self, period: &str, create: bool) -> Result<Lookup<T>, Error> {
        (self.kind.check)(period)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.destroyed.contains(period) {
            return Ok(Lookup::Destroyed);
        }
        if let Some(k) = state.keys.get(period) {
            return Ok(Lookup::Key(Arc::clone(k)));
        }
        let Some(bytes) = self.load(period, create)? else {
            return Ok(Lookup::Missing);
        };
        let key = Arc::new((self.kind.make)(&bytes)?);
        state.keys.insert(period.to_owned(), Arc::clone(&key));
        Ok(Lookup::Key(key))
    }

    fn key_path(&self, period: &str) -> PathBuf {
        self.dir.join(format!("{period}.key"))
    }

    fn load(&self, period: &str, create: bool) -> Result<Option<[u8; KEY_LEN]>, Error> {
        let path = self.key_path(period);
        match fs::read(&path) {
            Ok(bytes) => return self.key_bytes(&path, &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read", &path)(e)),
        }
        if !create {
            return Ok(None);
        }
        let mut bytes = [0u8; KEY_LEN];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| Error::Key("the system random number generator failed".into()))?;
        // Written under a temporary name and linked into place: the link fails if another
        // process created the key meanwhile, and then that key is the one to use (two keys
        // for one period would split its data).
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
                info!(period, what = self.kind.what, "created a key");
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let existing = fs::read(&path).map_err(Error::io("read", &path))?;
                self.key_bytes(&path, &existing).map(Some)
            }
            Err(e) => Err(Error::io("link into place", &path)(e)),
        }
    }

    fn key_bytes(&self, path: &Path, bytes: &[u8]) -> Result<[u8; KEY_LEN], Error> {
        <[u8; KEY_LEN]>::try_from(bytes).map_err(|_| {
            Error::Key(format!(
                "{} holds {} bytes, not a {KEY_LEN}-byte {}",
                path.display(),
                bytes.len(),
                self.kind.what
            ))
        })
    }

    /// Periods that have a key, oldest first.
    pub fn periods(&self) -> Vec<String> {
        match self.periods_on_disk() {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, what = self.kind.what, "listing keys failed");
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
            if (self.kind.check)(period).is_ok() {
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
    /// Overwriting is best effort on copy-on-write file systems and SSDs, and backups hold their
    /// own copies: retention must cover them too.
    pub fn destroy_before(&self, period: &str) -> Result<Vec<String>, Error> {
        (self.kind.check)(period)?;
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
        info!(periods = ?doomed, what = self.kind.what, "destroyed keys");
        Ok(doomed)
    }

    /// Periods whose keys were destroyed, oldest first.
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
