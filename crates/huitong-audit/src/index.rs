//! Secondary indexes over the exchange log, in sled: entries by consumer, provider, resource,
//! subject, outcome, kind, acting official, case and time.
//!
//! The indexes are derived data. The log ([`Log`]) is the only copy of the entries, and the
//! indexes can be deleted at any time: [`Index::catch_up`] rebuilds them. That is also why sled
//! is acceptable here although its `flush` is weaker than fsync (sled issue #1452): losing the
//! last index writes in a crash costs a re-index, never an entry.
//!
//! # Layout: postings in blocks
//!
//! One sled tree per field. Each catch-up step (up to [`CATCH_UP_STEP`] entries) writes, for each
//! value seen in the step, one key `<value>\0<last log index of the block, u64 big-endian>`
//! whose value lists the block's log indexes (LEB128: the first, then the gaps). The subject and
//! the official (both HMACs, never the identifiers) are stored as lowercase hex. The `time` tree buckets entries by second: key `<second,
//! sign-flipped i64 big-endian><last log index>`, value the block's `(index, time)` pairs.
//!
//! Why blocks and not a key per entry: sled writes are costly, and one key per entry and field
//! (seven per exchange) took about half of the broker's CPU under load. Blocks make it one key
//! per distinct value and step, so a busy broker writes a few keys per thousand exchanges plus
//! one per subject.
//!
//! Keying a block by its *last* index means a seek to `value\0i` lands on the only block that
//! can hold `i`, so a query intersects its conditions by leapfrogging ([`Index::query`]) and
//! never reads the log. Blocks of one value are disjoint, except after a crash between writing
//! a step and moving the high-water mark: the step is redone, possibly longer, and its blocks
//! cover the earlier ones. Readers only move forward, so such overlaps are skipped.
//!
//! The default tree holds the high-water mark (every entry below it is indexed), the leaf hash
//! of entry 0 and the layout version; an index in another layout is cleared and rebuilt.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use huitong_proto::v1::ExchangeRecord;
use prost::Message;
use tracing::{info, warn};

use crate::error::Error;
use crate::merkle::{Hash, hex};
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

/// The index layout this code writes; see the module docs. Version 1 had a key per entry;
/// version 2 indexed only a key lookup's subject, not every record released; version 3 had no
/// kind, official or case trees.
const LAYOUT: &[u8] = b"layout";
const LAYOUT_VERSION: u8 = 4;

/// Entries decoded and indexed per step of [`Index::catch_up`]: the most one block spans.
pub const CATCH_UP_STEP: u64 = 1024;

/// Width of a time bucket, in microseconds.
const BUCKET_MICROS: i64 = 1_000_000;

/// Trees of earlier layouts that this one no longer uses.
const OLD_TREES: [&str; 1] = ["times"];

/// Which entries a query wants. `None` matches anything; the time range is
/// `since_micros <= time_micros < until_micros`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    pub consumer: Option<String>,
    pub provider: Option<String>,
    pub resource: Option<String>,
    pub outcome: Option<String>,
    /// The entry kind (`huitong_audit::record::kind`).
    pub kind: Option<String>,
    /// The case reference, exactly as recorded.
    pub case_ref: Option<String>,
    /// HMACs of one official (one per subject-key period, since the key changes each period):
    /// an entry matches if its official is any of them. Empty matches anything.
    pub officials: Vec<[u8; 32]>,
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
    kind: sled::Tree,
    official: sled::Tree,
    case: sled::Tree,
    time: sled::Tree,
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

/// A time that sorts as its big-endian bytes: the sign bit flipped.
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

#[cfg(test)]
fn time_from_bytes(b: &[u8]) -> Option<i64> {
    let raw = u64::from_be_bytes(b.try_into().ok()?);
    Some((raw ^ (1 << 63)) as i64)
}

/// The bucket of a time: whole seconds, rounded down (also before the epoch).
fn bucket(t: i64) -> i64 {
    t.div_euclid(BUCKET_MICROS)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift > 63 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A block of ascending log indexes: the first, then the gaps.
fn encode_block(indexes: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(indexes.len() * 2 + 8);
    let mut prev = 0;
    for &i in indexes {
        put_varint(&mut out, i - prev);
        prev = i;
    }
    out
}

fn decode_block(buf: &[u8]) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut prev = 0u64;
    while pos < buf.len() {
        let i = prev.checked_add(get_varint(buf, &mut pos)?)?;
        if !out.is_empty() && i <= prev {
            return None;
        }
        out.push(i);
        prev = i;
    }
    (!out.is_empty()).then_some(out)
}

/// A time block: `(index, time)` pairs, indexes ascending; index gaps and time differences.
fn encode_time_block(entries: &[(u64, i64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 4 + 8);
    let (mut prev_i, mut prev_t) = (0u64, 0i64);
    for &(i, t) in entries {
        put_varint(&mut out, i - prev_i);
        put_varint(&mut out, zigzag(t.wrapping_sub(prev_t)));
        (prev_i, prev_t) = (i, t);
    }
    out
}

fn decode_time_block(buf: &[u8]) -> Option<Vec<(u64, i64)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let (mut prev_i, mut prev_t) = (0u64, 0i64);
    while pos < buf.len() {
        let i = prev_i.checked_add(get_varint(buf, &mut pos)?)?;
        let t = prev_t.wrapping_add(unzigzag(get_varint(buf, &mut pos)?));
        if !out.is_empty() && i <= prev_i {
            return None;
        }
        out.push((i, t));
        (prev_i, prev_t) = (i, t);
    }
    (!out.is_empty()).then_some(out)
}

/// The last log index in a block key `<prefix><index BE>`, if the key is `prefix` plus 8 bytes.
fn block_last(key: &[u8], prefix: &[u8]) -> Option<u64> {
    if key.len() != prefix.len() + 8 || !key.starts_with(prefix) {
        return None;
    }
    Some(u64::from_be_bytes(key[prefix.len()..].try_into().ok()?))
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
    /// Opens (creating if needed) `dir/index.sled`. An index in an older layout is cleared
    /// here and rebuilt by the next [`catch_up`](Index::catch_up). Blocking.
    pub fn open(dir: &Path) -> Result<Index, Error> {
        let path = dir.join(INDEX_DIR);
        let db = open_sled(&path, INDEX_CACHE_BYTES).map_err(Error::index("open"))?;
        let tree = |name: &str| db.open_tree(name).map_err(Error::index("open a tree"));
        let index = Index {
            consumer: tree("consumer")?,
            provider: tree("provider")?,
            resource: tree("resource")?,
            subject: tree("subject")?,
            outcome: tree("outcome")?,
            kind: tree("kind")?,
            official: tree("official")?,
            case: tree("case")?,
            time: tree("time")?,
            db,
            path,
            writing: Mutex::new(()),
        };
        let layout = index
            .db
            .get(LAYOUT)
            .map_err(Error::index("read the layout"))?;
        if layout.as_deref() != Some(&[LAYOUT_VERSION][..]) {
            if index.indexed_size()? > 0 {
                info!(path = %index.path.display(), "the audit index has an older layout; rebuilding it");
            }
            for name in OLD_TREES {
                index
                    .db
                    .drop_tree(name)
                    .map_err(Error::index("drop an old tree"))?;
            }
            index.clear()?;
            index
                .db
                .insert(LAYOUT, &[LAYOUT_VERSION][..])
                .map_err(Error::index("write the layout"))?;
        }
        Ok(index)
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
            let mut step = Step::default();
            for (index, data) in log.read(from, to)? {
                match ExchangeRecord::decode(data.as_slice()) {
                    Ok(record) => step.add(index, &record),
                    Err(e) => warn!(
                        entry = index,
                        error = %e,
                        "a log entry is not an ExchangeRecord; it is not indexed"
                    ),
                }
            }
            // Blocks first, the mark after: a crash between leaves a step written twice at
            // worst (readers skip the overlap), never a mark over missing entries.
            self.apply(step)?;
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

    fn trees(&self) -> [&sled::Tree; 9] {
        [
            &self.consumer,
            &self.provider,
            &self.resource,
            &self.subject,
            &self.outcome,
            &self.kind,
            &self.official,
            &self.case,
            &self.time,
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

    /// Writes one step's blocks, one sled batch per tree.
    fn apply(&self, step: Step) -> Result<(), Error> {
        let fields = [
            (&self.consumer, step.consumer),
            (&self.provider, step.provider),
            (&self.resource, step.resource),
            (&self.subject, step.subject),
            (&self.outcome, step.outcome),
            (&self.kind, step.kind),
            (&self.official, step.official),
            (&self.case, step.case),
        ];
        for (tree, postings) in fields {
            let mut batch = sled::Batch::default();
            for (value, indexes) in postings {
                if let Some(&last) = indexes.last() {
                    batch.insert(value_key(&value, last), encode_block(&indexes));
                }
            }
            tree.apply_batch(batch).map_err(Error::index("write"))?;
        }
        let mut batch = sled::Batch::default();
        for (b, entries) in step.time {
            if let Some(&(last, _)) = entries.last() {
                let mut key = Vec::with_capacity(16);
                key.extend_from_slice(&time_bytes(b));
                key.extend_from_slice(&last.to_be_bytes());
                batch.insert(key, encode_time_block(&entries));
            }
        }
        self.time
            .apply_batch(batch)
            .map_err(Error::index("write"))?;
        Ok(())
    }

    fn damaged(&self, what: &'static str) -> Error {
        Error::IndexDamaged {
            path: self.path.clone(),
            what,
        }
    }

    /// Log indexes of every indexed entry whose subject is `subject`, in order.
    pub fn by_subject(&self, subject: &[u8; 32]) -> Result<Vec<u64>, Error> {
        let mut prefix = hex(subject).into_bytes();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.subject.scan_prefix(&prefix) {
            let (key, block) = item.map_err(Error::index("scan"))?;
            if block_last(&key, &prefix).is_some() {
                out.extend(decode_block(&block).ok_or_else(|| self.damaged("a subject block"))?);
            }
        }
        // Overlapping blocks (a step redone after a crash) repeat entries.
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Log indexes in `[start, end)` of the indexed entries matching `filter`, in order, at most
    /// `limit` of them.
    ///
    /// Each condition becomes a sorted stream of log indexes that can skip ahead; the streams
    /// are intersected by leapfrogging (each seeks to the largest index another has reached), so
    /// a rare value paired with a common one costs about one seek per match of the rare one.
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
        let mut streams = Vec::new();
        let equal = [
            (&self.consumer, &filter.consumer),
            (&self.provider, &filter.provider),
            (&self.resource, &filter.resource),
            (&self.outcome, &filter.outcome),
            (&self.kind, &filter.kind),
            (&self.case, &filter.case_ref),
        ];
        for (tree, value) in equal {
            if let Some(v) = value {
                let postings = Postings::new(self, tree, v.as_bytes(), end);
                streams.push(Stream::Postings(Box::new(postings)));
            }
        }
        if !filter.officials.is_empty() {
            let any = filter
                .officials
                .iter()
                .map(|mac| Postings::new(self, &self.official, hex(mac).as_bytes(), end))
                .collect();
            streams.push(Stream::Any(any));
        }
        if filter.since_micros.is_some() || filter.until_micros.is_some() {
            let since = filter.since_micros.unwrap_or(i64::MIN);
            if filter.until_micros.is_some_and(|u| u <= since) {
                return Ok(Vec::new());
            }
            let within = self.time_window(since, filter.until_micros, start, end)?;
            streams.push(Stream::List {
                items: within,
                at: 0,
            });
        }
        if streams.is_empty() {
            let n = usize::try_from(end - start)
                .unwrap_or(usize::MAX)
                .min(limit);
            return Ok((start..end).take(n).collect());
        }

        let mut out = Vec::new();
        let mut target = start;
        'matches: while target < end {
            // Find the smallest index >= target that every stream holds.
            let mut agreed = 0;
            let mut i = 0;
            while agreed < streams.len() {
                let Some(found) = streams[i].seek(target)? else {
                    break 'matches;
                };
                if found == target {
                    agreed += 1;
                } else {
                    target = found;
                    agreed = 1;
                }
                i = (i + 1) % streams.len();
            }
            out.push(target);
            if out.len() == limit {
                break;
            }
            target += 1;
        }
        Ok(out)
    }

    /// Log indexes in `[start, end)` of entries with `since <= time < until`, sorted, each once.
    fn time_window(
        &self,
        since: i64,
        until: Option<i64>,
        start: u64,
        end: u64,
    ) -> Result<Vec<u64>, Error> {
        let lo = [time_bytes(bucket(since)), [0; 8]].concat();
        let iter = match until {
            // until > since >= i64::MIN, so until - 1 does not overflow.
            Some(u) => self
                .time
                .range(lo..=[time_bytes(bucket(u - 1)), [0xff; 8]].concat()),
            None => self.time.range(lo..),
        };
        let mut out = Vec::new();
        for item in iter {
            let (key, block) = item.map_err(Error::index("scan"))?;
            if key.len() != 16 {
                return Err(self.damaged("a time key"));
            }
            let entries = decode_time_block(&block).ok_or_else(|| self.damaged("a time block"))?;
            out.extend(entries.into_iter().filter_map(|(i, t)| {
                ((start..end).contains(&i) && t >= since && until.is_none_or(|u| t < u))
                    .then_some(i)
            }));
        }
        // Log order is only roughly time order, and a redone step repeats entries.
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// One condition of a query as a sorted stream of log indexes.
enum Stream<'a> {
    Postings(Box<Postings<'a>>),
    List {
        items: Vec<u64>,
        at: usize,
    },
    /// Any of several values of one field (an official's HMAC in each period).
    Any(Vec<Postings<'a>>),
}

impl Stream<'_> {
    /// The smallest index >= `target` in the stream, or `None` when there is none below the
    /// window's end. Targets never decrease.
    fn seek(&mut self, target: u64) -> Result<Option<u64>, Error> {
        match self {
            Stream::Postings(p) => p.seek(target),
            Stream::List { items, at } => {
                *at += items[*at..].partition_point(|&i| i < target);
                Ok(items.get(*at).copied())
            }
            Stream::Any(all) => {
                let mut least = None;
                for p in all {
                    if let Some(i) = p.seek(target)? {
                        least = Some(least.map_or(i, |l: u64| l.min(i)));
                    }
                }
                Ok(least)
            }
        }
    }
}

/// The blocks of one value in one tree, read forward from wherever a seek lands.
struct Postings<'a> {
    index: &'a Index,
    tree: &'a sled::Tree,
    /// `<value>\0`: every block key of this value starts with it.
    prefix: Vec<u8>,
    end: u64,
    iter: Option<sled::Iter>,
    block: Vec<u64>,
    at: usize,
}

impl<'a> Postings<'a> {
    fn new(index: &'a Index, tree: &'a sled::Tree, value: &[u8], end: u64) -> Self {
        let mut prefix = Vec::with_capacity(value.len() + 1);
        prefix.extend_from_slice(value);
        prefix.push(0);
        Postings {
            index,
            tree,
            prefix,
            end,
            iter: None,
            block: Vec::new(),
            at: 0,
        }
    }

    fn seek(&mut self, target: u64) -> Result<Option<u64>, Error> {
        loop {
            self.at += self.block[self.at..].partition_point(|&i| i < target);
            if let Some(&i) = self.block.get(self.at) {
                return Ok((i < self.end).then_some(i));
            }
            // The block is used up. Read on if the target may be in the next block; otherwise
            // seek afresh to the only block that can hold it (the first whose last index is
            // >= target), which skips everything between in one descent.
            let next_in_order = self.block.last().is_some_and(|&l| target <= l + 1);
            if self.iter.is_none() || !next_in_order {
                let mut lo = self.prefix.clone();
                lo.extend_from_slice(&target.to_be_bytes());
                let mut hi = self.prefix.clone();
                hi.extend_from_slice(&u64::MAX.to_be_bytes());
                self.iter = Some(self.tree.range(lo..=hi));
            }
            let Some(iter) = self.iter.as_mut() else {
                return Ok(None);
            };
            let Some(item) = iter.next() else {
                self.block.clear();
                self.at = 0;
                return Ok(None);
            };
            let (key, block) = item.map_err(Error::index("scan"))?;
            if block_last(&key, &self.prefix).is_none() {
                return Err(self.index.damaged("a block key"));
            }
            self.block = decode_block(&block).ok_or_else(|| self.index.damaged("a block"))?;
            self.at = 0;
            if self.block.first().is_some_and(|&f| f >= self.end) {
                return Ok(None);
            }
        }
    }
}

/// One catch-up step's postings, per field and value, before they become blocks.
#[derive(Default)]
struct Step {
    consumer: HashMap<Vec<u8>, Vec<u64>>,
    provider: HashMap<Vec<u8>, Vec<u64>>,
    resource: HashMap<Vec<u8>, Vec<u64>>,
    subject: HashMap<Vec<u8>, Vec<u64>>,
    outcome: HashMap<Vec<u8>, Vec<u64>>,
    kind: HashMap<Vec<u8>, Vec<u64>>,
    official: HashMap<Vec<u8>, Vec<u64>>,
    case: HashMap<Vec<u8>, Vec<u64>>,
    time: HashMap<i64, Vec<(u64, i64)>>,
}

impl Step {
    /// Adds entry `index`; entries come in ascending order.
    fn add(&mut self, index: u64, r: &ExchangeRecord) {
        // An entry is posted once per value, however often the value occurs in it (a key
        // lookup's subject is also among the subjects it released): blocks hold ascending
        // indexes without repeats.
        let post = |map: &mut HashMap<Vec<u8>, Vec<u64>>, value: &[u8]| match map.get_mut(value) {
            Some(list) if list.last() == Some(&index) => {}
            Some(list) => list.push(index),
            None => {
                map.insert(value.to_vec(), vec![index]);
            }
        };
        post(&mut self.consumer, r.consumer.as_bytes());
        post(&mut self.provider, r.provider.as_bytes());
        post(&mut self.resource, r.resource.as_bytes());
        post(&mut self.outcome, r.outcome.as_bytes());
        post(&mut self.kind, r.kind.as_bytes());
        // Most entries name no official or case; posting the empty value would make one
        // enormous useless list.
        if r.official.len() == 32 {
            post(&mut self.official, hex(&r.official).as_bytes());
        }
        if !r.case_ref.is_empty() {
            post(&mut self.case, r.case_ref.as_bytes());
        }
        // Every person the entry reached or tried to reach: the key looked up, and each record
        // released, whether found by key, by filters or delivered. Early refusals of searches
        // have none; there is nothing to find them by.
        for subject in std::iter::once(&r.subject).chain(&r.subjects) {
            if subject.len() == 32 {
                post(&mut self.subject, hex(subject).as_bytes());
            }
        }
        self.time
            .entry(bucket(r.time_micros))
            .or_default()
            .push((index, r.time_micros));
    }
}
