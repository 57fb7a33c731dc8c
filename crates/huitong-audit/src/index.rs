//! Secondary indexes over the exchange log, in sled: entries by consumer, provider, resource,
//! subject, outcome and time.
//!
//! The indexes are derived data. The log ([`Log`]) is the only copy of the entries, and the
//! indexes can be deleted at any time: [`Index::catch_up`] rebuilds them. That is also why sled
//! is acceptable here although its `flush` is weaker than fsync (sled issue #1452): losing the
//! last index writes in a crash costs a re-index, never an entry.
//!
//! # Layout
//!
//! One sled tree per field. Keys are `<value>\0<log index, u64 big-endian>` with empty values,
//! so that a range scan over one value yields log indexes in order, and a range
//! `[value\0start, value\0end)` yields exactly the entries of a window. The subject is stored as
//! lowercase hex. The `time` tree is keyed by `<time, sign-flipped i64 big-endian><index>` so
//! that it sorts by time; `times` maps each index to its time, so that a time condition can be
//! checked without reading the log. The default tree holds the high-water mark: every entry below
//! it is indexed.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use huitong_proto::v1::ExchangeRecord;
use prost::Message;
use tracing::{info, warn};

use crate::error::Error;
use crate::merkle::{self, Hash};
use crate::store::Log;

#[cfg(test)]
mod tests;

/// The sled directory, under the log directory.
pub const INDEX_DIR: &str = "index.sled";

/// Meta keys in the default tree.
const INDEXED_SIZE: &[u8] = b"indexed_size";
/// The leaf hash of entry 0 when the index was built, to notice an index left over from a
/// different log.
const FIRST_LEAF: &[u8] = b"first_leaf";

/// Entries decoded and indexed per step of [`Index::catch_up`].
const CATCH_UP_STEP: u64 = 1024;

/// Which entries a query wants. `None` matches anything; the time range is
/// `since_micros <= time_micros < until_micros`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    pub consumer: Option<String>,
    pub provider: Option<String>,
    pub resource: Option<String>,
    pub outcome: Option<String>,
    pub since_micros: Option<i64>,
    pub until_micros: Option<i64>,
}

/// The exchange log's secondary indexes.
pub struct Index {
    path: PathBuf,
    db: sled::Db,
    consumer: sled::Tree,
    provider: sled::Tree,
    resource: sled::Tree,
    subject: sled::Tree,
    outcome: sled::Tree,
    time: sled::Tree,
    times: sled::Tree,
    /// Serialises writers, so that the high-water mark only moves forward.
    writing: Mutex<()>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("indexed_size", &self.indexed_size().ok())
            .finish_non_exhaustive()
    }
}

/// `<value>\0<index BE>`.
fn value_key(value: &[u8], index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(value.len() + 9);
    k.extend_from_slice(value);
    k.push(0);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The log index in a `value_key`, if the key holds exactly `value`.
fn index_of(key: &[u8], value: &[u8]) -> Option<u64> {
    if key.len() != value.len() + 9 || !key.starts_with(value) || key[value.len()] != 0 {
        return None;
    }
    Some(u64::from_be_bytes(key[value.len() + 1..].try_into().ok()?))
}

/// A time that sorts as its big-endian bytes: the sign bit flipped.
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from_bytes(b: &[u8]) -> Option<i64> {
    let raw = u64::from_be_bytes(b.try_into().ok()?);
    Some((raw ^ (1 << 63)) as i64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One condition of a filter, resolved to where it can be looked up.
enum Condition<'a> {
    /// The entry's value in `tree` is `value`.
    Equal {
        tree: &'a sled::Tree,
        value: &'a [u8],
    },
    /// `since <= time < until`.
    Time { since: i64, until: Option<i64> },
}

/// Opens a sled database whose page cache holds at most `cache_bytes`, waiting briefly for a
/// lock that a just-dropped handle still holds.
///
/// The cache bound matters: sled's default is 1 GiB per database, and a broker keeps several.
/// The lock wait matters because sled releases its file lock from background threads after the
/// last handle is dropped, so a process that closes and reopens a database (a restart in place,
/// a rebuild, a test) can find it still locked for a moment. A lock held longer than
/// [`SLED_LOCK_WAIT`] belongs to someone else, usually a second process on the same data
/// directory, and is reported as sled's error.
pub fn open_sled(path: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    let give_up = std::time::Instant::now() + SLED_LOCK_WAIT;
    loop {
        match sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < give_up =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// The index's page cache. Queries touch recent entries and a few keys, not the whole index,
/// and sled's memory runs to several times its cache capacity under heavy writing (measured:
/// 400 MiB for 300,000 index writes at 64 MiB, 130 MiB at 1 MiB), so it is kept small; the
/// operating system's page cache holds the rest.
const INDEX_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// How long [`open_sled`] waits for a lock to be released.
pub const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Index {
    /// Opens (creating if needed) `dir/index.sled`. Blocking.
    pub fn open(dir: &Path) -> Result<Index, Error> {
        let path = dir.join(INDEX_DIR);
        let db = open_sled(&path, INDEX_CACHE_BYTES).map_err(Error::index("open"))?;
        let tree = |name: &str| db.open_tree(name).map_err(Error::index("open a tree"));
        Ok(Index {
            consumer: tree("consumer")?,
            provider: tree("provider")?,
            resource: tree("resource")?,
            subject: tree("subject")?,
            outcome: tree("outcome")?,
            time: tree("time")?,
            times: tree("times")?,
            db,
            path,
            writing: Mutex::new(()),
        })
    }

    /// Every entry below this index is indexed.
    pub fn indexed_size(&self) -> Result<u64, Error> {
        let v = self
            .db
            .get(INDEXED_SIZE)
            .map_err(Error::index("read the high-water mark"))?;
        Ok(
            v.and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
                .unwrap_or(0),
        )
    }

    /// Indexes one entry. The high-water mark moves only if this is the next entry in order
    /// (otherwise [`catch_up`](Index::catch_up) fills the gap; indexing twice is harmless).
    pub fn add(&self, index: u64, record: &ExchangeRecord) -> Result<(), Error> {
        let _one_writer = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batches = Batches::default();
        batches.add(index, record);
        self.apply(batches)?;
        if index == self.indexed_size()? {
            if index == 0 {
                // The leaf data of a record is its encoding, which is deterministic.
                self.set_first_leaf(&merkle::leaf_hash(&record.encode_to_vec()))?;
            }
            self.set_indexed_size(index + 1)?;
        }
        Ok(())
    }

    /// Indexes every entry from the high-water mark to the end of the durable log. If the index
    /// is ahead of the log or was built from a different log, it is cleared and rebuilt; an
    /// empty index (say, the sled directory was deleted) is rebuilt from the start. Entries
    /// that are not `ExchangeRecord`s are logged and skipped. Blocking: run it off the request
    /// path.
    pub fn catch_up(&self, log: &Log) -> Result<(), Error> {
        let _one_writer = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let size = log.size();
        let mut from = self.indexed_size()?;
        if from > 0 && !self.same_log(log, from, size)? {
            warn!(
                path = %self.path.display(),
                indexed = from,
                log_size = size,
                "the audit index does not belong to this log; rebuilding it"
            );
            self.clear()?;
            from = 0;
        }
        let started = from;
        while from < size {
            let to = (from + CATCH_UP_STEP).min(size);
            let mut batches = Batches::default();
            for (index, data) in log.read(from, to)? {
                match ExchangeRecord::decode(data.as_slice()) {
                    Ok(record) => batches.add(index, &record),
                    Err(e) => warn!(
                        entry = index,
                        error = %e,
                        "a log entry is not an ExchangeRecord; it is not indexed"
                    ),
                }
            }
            // Index entries first, the mark after: a crash between leaves entries indexed
            // twice at worst, never a mark over missing entries.
            self.apply(batches)?;
            if from == 0 {
                self.set_first_leaf(&log.leaf_hash(0)?)?;
            }
            self.set_indexed_size(to)?;
            from = to;
        }
        if size > started {
            self.db.flush().map_err(Error::index("flush"))?;
            if started == 0 && size > CATCH_UP_STEP {
                info!(entries = size, "rebuilt the audit index");
            }
        }
        Ok(())
    }

    /// Whether the index built up to `indexed` was built from this log.
    fn same_log(&self, log: &Log, indexed: u64, size: u64) -> Result<bool, Error> {
        if indexed > size {
            return Ok(false);
        }
        let first = self
            .db
            .get(FIRST_LEAF)
            .map_err(Error::index("read the first leaf"))?;
        let Some(first) = first else {
            return Ok(false);
        };
        Ok(first.as_ref() == log.leaf_hash(0)?.as_slice())
    }

    fn clear(&self) -> Result<(), Error> {
        for t in self.trees() {
            t.clear().map_err(Error::index("clear"))?;
        }
        self.db
            .remove(INDEXED_SIZE)
            .map_err(Error::index("clear the high-water mark"))?;
        self.db
            .remove(FIRST_LEAF)
            .map_err(Error::index("clear the first leaf"))?;
        Ok(())
    }

    fn trees(&self) -> [&sled::Tree; 7] {
        [
            &self.consumer,
            &self.provider,
            &self.resource,
            &self.subject,
            &self.outcome,
            &self.time,
            &self.times,
        ]
    }

    fn set_indexed_size(&self, size: u64) -> Result<(), Error> {
        self.db
            .insert(INDEXED_SIZE, &size.to_be_bytes()[..])
            .map_err(Error::index("write the high-water mark"))?;
        Ok(())
    }

    fn set_first_leaf(&self, hash: &Hash) -> Result<(), Error> {
        self.db
            .insert(FIRST_LEAF, hash.as_slice())
            .map_err(Error::index("write the first leaf"))?;
        Ok(())
    }

    fn apply(&self, b: Batches) -> Result<(), Error> {
        let pairs = [
            (&self.consumer, b.consumer),
            (&self.provider, b.provider),
            (&self.resource, b.resource),
            (&self.subject, b.subject),
            (&self.outcome, b.outcome),
            (&self.time, b.time),
            (&self.times, b.times),
        ];
        for (tree, batch) in pairs {
            tree.apply_batch(batch).map_err(Error::index("write"))?;
        }
        Ok(())
    }

    /// Log indexes of every indexed entry whose subject is `subject`, in order.
    pub fn by_subject(&self, subject: &[u8; 32]) -> Result<Vec<u64>, Error> {
        let value = hex(subject);
        let mut prefix = value.clone().into_bytes();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.subject.scan_prefix(&prefix) {
            let (key, _) = item.map_err(Error::index("scan"))?;
            if let Some(i) = index_of(&key, value.as_bytes()) {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Log indexes in `[start, end)` of the indexed entries matching `filter`, in order, at most
    /// `limit` of them.
    ///
    /// It counts each condition's matches in the window (stopping once a count cannot beat the
    /// best so far), walks the most selective one, and checks the others by point lookups in
    /// their own indexes, so the log is not read.
    pub fn query(
        &self,
        filter: &EntryFilter,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<u64>, Error> {
        let end = end.min(self.indexed_size()?);
        if limit == 0 || start >= end {
            return Ok(Vec::new());
        }
        let mut conditions = Vec::new();
        let equal = [
            (&self.consumer, &filter.consumer),
            (&self.provider, &filter.provider),
            (&self.resource, &filter.resource),
            (&self.outcome, &filter.outcome),
        ];
        for (tree, value) in equal {
            if let Some(v) = value {
                conditions.push(Condition::Equal {
                    tree,
                    value: v.as_bytes(),
                });
            }
        }
        if filter.since_micros.is_some() || filter.until_micros.is_some() {
            let since = filter.since_micros.unwrap_or(i64::MIN);
            if filter.until_micros.is_some_and(|u| u <= since) {
                return Ok(Vec::new());
            }
            conditions.push(Condition::Time {
                since,
                until: filter.until_micros,
            });
        }
        if conditions.is_empty() {
            let n = usize::try_from(end - start)
                .unwrap_or(usize::MAX)
                .min(limit);
            return Ok((start..end).take(n).collect());
        }

        // The condition with the fewest matches in the window drives the walk.
        let mut best: Option<(usize, usize)> = None;
        for (i, c) in conditions.iter().enumerate() {
            let cap = best.map_or(usize::MAX, |(_, n)| n);
            let n = self.count(c, start, end, cap)?;
            if best.is_none_or(|(_, b)| n < b) {
                best = Some((i, n));
            }
        }
        let Some((driver, _)) = best else {
            return Ok(Vec::new());
        };
        let candidates = self.candidates(&conditions[driver], start, end)?;
        let mut out = Vec::new();
        'next: for index in candidates {
            for (i, c) in conditions.iter().enumerate() {
                if i != driver && !self.holds(c, index)? {
                    continue 'next;
                }
            }
            out.push(index);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Matches of `c` in `[start, end)`, counting no further than `cap`.
    fn count(&self, c: &Condition<'_>, start: u64, end: u64, cap: usize) -> Result<usize, Error> {
        let mut n = 0;
        match c {
            Condition::Equal { tree, value } => {
                for item in tree.range(value_key(value, start)..value_key(value, end)) {
                    let (key, _) = item.map_err(Error::index("scan"))?;
                    if index_of(&key, value).is_some() {
                        n += 1;
                        if n >= cap {
                            break;
                        }
                    }
                }
            }
            Condition::Time { since, until } => {
                for index in self.time_range(*since, *until)? {
                    let index = index?;
                    if (start..end).contains(&index) {
                        n += 1;
                        if n >= cap {
                            break;
                        }
                    }
                }
            }
        }
        Ok(n)
    }

    /// Log indexes in `[start, end)` matching `c`, in order.
    fn candidates(&self, c: &Condition<'_>, start: u64, end: u64) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        match c {
            Condition::Equal { tree, value } => {
                for item in tree.range(value_key(value, start)..value_key(value, end)) {
                    let (key, _) = item.map_err(Error::index("scan"))?;
                    if let Some(i) = index_of(&key, value) {
                        out.push(i);
                    }
                }
            }
            Condition::Time { since, until } => {
                // The time tree sorts by time, and log order is only roughly time order.
                for index in self.time_range(*since, *until)? {
                    let index = index?;
                    if (start..end).contains(&index) {
                        out.push(index);
                    }
                }
                out.sort_unstable();
            }
        }
        Ok(out)
    }

    /// Log indexes of entries with `since <= time < until`, in time order.
    fn time_range(
        &self,
        since: i64,
        until: Option<i64>,
    ) -> Result<impl Iterator<Item = Result<u64, Error>> + '_, Error> {
        let lo = [time_bytes(since), [0; 8]].concat();
        let iter = match until {
            Some(u) => self.time.range(lo..[time_bytes(u), [0; 8]].concat()),
            None => self.time.range(lo..),
        };
        Ok(iter.map(|item| {
            let (key, _) = item.map_err(Error::index("scan"))?;
            key.get(8..16)
                .and_then(|b| Some(u64::from_be_bytes(b.try_into().ok()?)))
                .ok_or_else(|| Error::Index {
                    action: "read a time key",
                    source: sled::Error::Unsupported(format!(
                        "a time key of {} bytes, not 16",
                        key.len()
                    )),
                })
        }))
    }

    /// Whether entry `index` satisfies `c`.
    fn holds(&self, c: &Condition<'_>, index: u64) -> Result<bool, Error> {
        match c {
            Condition::Equal { tree, value } => tree
                .contains_key(value_key(value, index))
                .map_err(Error::index("look up")),
            Condition::Time { since, until } => {
                let t = self
                    .times
                    .get(index.to_be_bytes())
                    .map_err(Error::index("look up"))?;
                Ok(t.and_then(|t| time_from_bytes(&t))
                    .is_some_and(|t| t >= *since && until.is_none_or(|u| t < u)))
            }
        }
    }
}

/// The index writes for a run of entries, one batch per tree.
#[derive(Default)]
struct Batches {
    consumer: sled::Batch,
    provider: sled::Batch,
    resource: sled::Batch,
    subject: sled::Batch,
    outcome: sled::Batch,
    time: sled::Batch,
    times: sled::Batch,
}

impl Batches {
    fn add(&mut self, index: u64, r: &ExchangeRecord) {
        let empty: &[u8] = &[];
        self.consumer
            .insert(value_key(r.consumer.as_bytes(), index), empty);
        self.provider
            .insert(value_key(r.provider.as_bytes(), index), empty);
        self.resource
            .insert(value_key(r.resource.as_bytes(), index), empty);
        self.outcome
            .insert(value_key(r.outcome.as_bytes(), index), empty);
        // Searches and early refusals have no subject; there is nothing to find them by.
        if !r.subject.is_empty() {
            self.subject
                .insert(value_key(hex(&r.subject).as_bytes(), index), empty);
        }
        let mut time_key = Vec::with_capacity(16);
        time_key.extend_from_slice(&time_bytes(r.time_micros));
        time_key.extend_from_slice(&index.to_be_bytes());
        self.time.insert(time_key, empty);
        self.times
            .insert(&index.to_be_bytes()[..], &time_bytes(r.time_micros)[..]);
    }
}
