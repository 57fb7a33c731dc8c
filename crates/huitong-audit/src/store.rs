//! The exchange log on disk: one writer thread, group commit, durable before any receipt.
//!
//! # Files, under one directory
//!
//! - `entries.log`, the source of truth: append-only frames `[u32 LE length][u32 LE CRC-32 of
//!   payload][payload]`, where the payload is the entry's leaf data (the broker stores the
//!   protobuf encoding of an `ExchangeRecord`; this module stores bytes and does not look inside).
//! - `index.bin`: 40 bytes per entry, its leaf hash and the byte offset of its frame (`u64` LE).
//!   Derived from `entries.log` and recomputed from it on start-up wherever it is missing (a
//!   record that disagrees is evidence that an entry changed, and is refused, not rewritten);
//!   it makes reads and proofs cost one positioned read per entry (or per 256-leaf tile) instead
//!   of a scan.
//! - `checkpoint`: the latest signed checkpoint (a C2SP signed note), replaced atomically.
//! - `log.key`: the checkpoint signing key (mode 0600), created on first open.
//!
//! # Durability
//!
//! An [`append`](Log::append) returns only after its frame is written and `entries.log` is
//! `fdatasync`ed, and readers (sizes, proofs, reads) see an entry only from then on. Writing goes
//! through a single thread that commits in groups: it takes one queued append, everything else
//! already queued (up to `max_batch`), writes all their frames with one write, syncs once, and
//! wakes every waiter. No timer is involved: a lone append costs exactly one sync, and under load
//! one sync is shared by the whole queue.
//!
//! `index.bin` is written after `entries.log` has been synced and is *not* synced per batch: it
//! can always be recomputed from `entries.log`, and start-up checks every record of it. Writing it
//! only after the entries are durable gives start-up a fact to rely on: every complete record in
//! `index.bin` describes a frame that was durable, so a damaged frame that `index.bin` knows about
//! is damage to acknowledged data, not a torn write, and is refused rather than cut.
//!
//! # Recovery on open
//!
//! Start-up checks before it writes (the `check` module): a log that fails is refused with
//! [`Error::Damaged`] naming the first bad entry, and every file is left as found, for whoever
//! investigates. A crash can leave, after the last synced frame, a partial or garbled frame
//! from a batch that was being written (none of whose appends were acknowledged), and
//! `index.bin` records that are missing or unwritten; once the checks pass, start-up cuts that
//! torn tail and recomputes those records. A damaged frame that `index.bin` or the signed
//! checkpoint covers is not a torn tail: it was durable, so it is damage, and it is refused.
//!
//! One process owns a log directory at a time; nothing here locks it against a second writer.
//!
//! # Locks
//!
//! The tree sits behind an `RwLock` taken briefly by the writer (to push a batch's hashes) and by
//! readers (to compute a root or a proof: at most two 256-leaf reads). Checkpointing takes its own
//! mutex first and the tree lock second, never the other way round. No lock is held across an
//! `.await`.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::error::Error;
use crate::merkle::{self, Hash, LeafHashes, Tree};
use crate::note::{CheckpointBody, Signer};

mod check;
#[cfg(test)]
pub(crate) mod tests;

pub use check::{DirReport, verify_dir};

/// The frames of every entry.
pub const ENTRIES_FILE: &str = "entries.log";
/// Leaf hash and frame offset of every entry.
pub const INDEX_FILE: &str = "index.bin";
/// The latest signed checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// The checkpoint signing key.
pub const KEY_FILE: &str = "log.key";

/// Bytes before each payload in `entries.log`: length and CRC-32.
pub const FRAME_HEADER_LEN: u64 = 8;
/// Bytes per entry in `index.bin`: leaf hash and frame offset.
pub const INDEX_RECORD_LEN: u64 = 40;
/// The largest payload one entry may have. Exchange records are a few hundred bytes; the limit
/// only keeps a garbled length field from being believed.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// The largest `max_batch` honoured; larger values are lowered to it.
pub const MAX_BATCH_LIMIT: usize = 1 << 20;

/// Leaf hashes and index records are read in runs of this many: one tile of the tree.
const READ_RUN: u64 = merkle::TILE_WIDTH;

/// How [`Log::open`] sets up the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// The checkpoint origin line: the log's name for verifiers and witnesses, e.g.
    /// `"exchange.example.gov/huitong"`. Must not change over the log's life.
    pub origin: String,
    /// The name in the signing key, used only when `log.key` is created.
    pub key_name: String,
    /// Most appends committed with one write and one sync (default 4096; 1 to
    /// [`MAX_BATCH_LIMIT`]). Larger batches amortise the sync further; the limit bounds the
    /// memory and latency of one commit. The queue holds up to two batches before appenders
    /// wait for room.
    pub max_batch: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            origin: "huitong.invalid/exchange-log".to_owned(),
            key_name: "huitong.invalid/exchange-log".to_owned(),
            max_batch: 4096,
        }
    }
}

/// Proof of an append: where the entry is and what its leaf hash is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub index: u64,
    pub leaf_hash: Hash,
}

/// A signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The signed note, ready to verify with [`Log::verifier_key`].
    pub note: String,
    pub size: u64,
    pub root: Hash,
}

/// Counters of the writer since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// Appends made durable.
    pub appends: u64,
    /// `fdatasync` calls on `entries.log`, one per committed batch.
    pub syncs: u64,
}

/// The exchange log: a cheap, cloneable handle to one writer thread and the shared tree.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Handle>,
}

/// What the handles share. The queue's sender lives here rather than in [`Shared`] so that the
/// writer (which holds `Shared`) stops by itself once the last handle is dropped.
struct Handle {
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    /// Turns true when the writer thread has exited.
    done: watch::Receiver<bool>,
}

struct Shared {
    dir: PathBuf,
    entries_path: PathBuf,
    index_path: PathBuf,
    /// Written only by the writer thread, at the durable end; read anywhere below it.
    entries: File,
    index: File,
    tree: RwLock<Durable>,
    /// Serialises [`Log::checkpoint`] so that stored checkpoints never go backwards.
    checkpointing: Mutex<()>,
    latest: RwLock<Option<SignedCheckpoint>>,
    signer: Signer,
    verifier_key: String,
    origin: String,
    appends: AtomicU64,
    syncs: AtomicU64,
    /// Set when the writer stopped on an I/O failure; appends then fail with this reason.
    halted: Mutex<Option<String>>,
}

/// The durable part of the log, as readers may see it.
struct Durable {
    tree: Tree,
    /// Bytes of `entries.log` holding the tree's entries.
    end: u64,
}

struct Request {
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<Receipt, Error>>,
}

/// `index.bin` as the tree's leaf store: `len` records, read with positioned reads.
struct Leaves<'a> {
    file: &'a File,
    len: u64,
}

impl LeafHashes for Leaves<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, start: u64, out: &mut [Hash]) -> io::Result<()> {
        let end = start.checked_add(out.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "leaf hashes [{start}, {start}+{}) are past the {} entries of the log",
                    out.len(),
                    self.len
                ),
            ));
        }
        let mut buf = [0u8; (READ_RUN * INDEX_RECORD_LEN) as usize];
        let mut at = start;
        for run in out.chunks_mut(READ_RUN as usize) {
            let bytes = &mut buf[..run.len() * INDEX_RECORD_LEN as usize];
            self.file.read_exact_at(bytes, at * INDEX_RECORD_LEN)?;
            for (hash, record) in run
                .iter_mut()
                .zip(bytes.chunks_exact(INDEX_RECORD_LEN as usize))
            {
                hash.copy_from_slice(&record[..32]);
            }
            at += run.len() as u64;
        }
        Ok(())
    }
}

/// One `index.bin` record.
fn index_record(hash: &Hash, offset: u64) -> [u8; INDEX_RECORD_LEN as usize] {
    let mut r = [0u8; INDEX_RECORD_LEN as usize];
    r[..32].copy_from_slice(hash);
    r[32..].copy_from_slice(&offset.to_le_bytes());
    r
}

/// The leaf hash in an `index.bin` record.
fn record_hash(record: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(&record[..32]);
    h
}

/// The frame offset in an `index.bin` record.
fn record_offset(record: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&record[32..40]);
    u64::from_le_bytes(b)
}

/// The frame header of `payload`, whose length the caller has checked against [`MAX_PAYLOAD`].
fn frame_header(payload: &[u8]) -> [u8; FRAME_HEADER_LEN as usize] {
    let mut h = [0u8; FRAME_HEADER_LEN as usize];
    // MAX_PAYLOAD < 2^32, checked before a payload is queued, so the length fits.
    h[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    h
}

fn parse_header(h: &[u8; FRAME_HEADER_LEN as usize]) -> (u32, u32) {
    (
        u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
        u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
    )
}

/// Writes `bytes` to `dir/name` so that a crash leaves either the old file or the new one:
/// temporary file, fsync, rename, fsync of the directory (which makes the rename durable).
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<(), Error> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(Error::io("create", &tmp))?;
        // `mode` applies only when the file is created; a stale temporary file keeps its own.
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(Error::io("set permissions of", &tmp))?;
        f.write_all(bytes).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))
    })();
    if let Err(e) = written {
        // A half-written temporary file (a full disk, typically) holds space and nothing else.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &path).map_err(Error::io("rename into place", &path))?;
    sync_dir(dir)
}

/// Makes creations, renames and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// A copy of an I/O error for each of several waiters (`io::Error` is not `Clone`).
fn copy_io(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

impl Log {
    /// Opens the log in `dir`, creating it (and its signing key) if needed.
    ///
    /// First it checks the directory without writing anything (see [`verify_dir`], which runs
    /// the same checks for an operator): every frame's CRC, every entry's leaf hash and offset
    /// against its `index.bin` record, and the tree against the stored checkpoint (signature,
    /// origin, root at the signed size). Only a log that passes is repaired, and only of crash
    /// effects: a torn tail (bytes after the last whole frame that no index record or
    /// checkpoint vouches for) is cut, and missing or unwritten `index.bin` records are
    /// recomputed.
    ///
    /// # Errors
    ///
    /// [`Error::Damaged`], naming the first bad entry and what differs, if an entry that
    /// `index.bin` or the checkpoint shows was durable is damaged, changed or gone;
    /// [`Error::CheckpointMismatch`] if the checkpoint does not verify or names another origin;
    /// [`Error::Key`] if `log.key` is unusable, or missing while a checkpoint exists. In each
    /// case nothing on disk was modified.
    ///
    /// Blocking: call it from `spawn_blocking` or before the runtime serves.
    pub fn open(dir: &Path, options: LogOptions) -> Result<Log, Error> {
        // The origin must survive the round trip through a checkpoint body, or no checkpoint
        // this log signs would verify.
        let probe = CheckpointBody {
            origin: options.origin.clone(),
            size: 0,
            root: merkle::empty_root(),
        };
        if let Err(e) = CheckpointBody::parse(&probe.encode()) {
            return Err(Error::Config(format!(
                "the checkpoint origin {:?} is unusable: {e}",
                options.origin
            )));
        }
        let entries_path = dir.join(ENTRIES_FILE);
        let index_path = dir.join(INDEX_FILE);

        // Frames a previous process wrote but did not get to sync may still be only in the page
        // cache, yet the checks will take them as entries (and they may be signed soon).
        // Syncing first makes them durable before anything relies on them. It changes no byte.
        if let Ok(f) = File::open(&entries_path) {
            f.sync_all().map_err(Error::io("fsync", &entries_path))?;
        }

        // Every check before any write: a log that fails them stays exactly as found.
        let signer = load_key(dir)?;
        let found = check::inspect(
            dir,
            Some(&options.origin),
            signer.as_ref().map(Signer::verifier_key).as_deref(),
        )?;

        // The log passed. What is left to repair are crash effects only.
        fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        let signer = match signer {
            Some(s) => s,
            None => create_key(dir, &options.key_name)?,
        };
        let verifier_key = signer.verifier_key();
        let open_rw = |path: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(Error::io("open", path))
        };
        let entries = open_rw(&entries_path)?;
        let index = open_rw(&index_path)?;
        // Make the files' creation durable, so that a synced entry is never in a file whose
        // directory entry a crash could lose.
        sync_dir(dir)?;

        if let Some(torn) = &found.torn {
            warn!(
                path = %entries_path.display(),
                whole_entries = found.count,
                cut_at = found.end,
                cut_bytes = found.file_len - found.end,
                problem = %torn,
                "cutting a torn tail left by an interrupted write (no index record or checkpoint covers it)"
            );
            entries
                .set_len(found.end)
                .map_err(Error::io("truncate", &entries_path))?;
            entries
                .sync_all()
                .map_err(Error::io("fsync", &entries_path))?;
        }
        if let Some(from) = found.reindex_from {
            let records =
                check::reindex(&entries, &entries_path, &index, &index_path, from, &found)?;
            info!(
                path = %index_path.display(),
                records,
                "recomputed missing leaf-hash records from entries.log"
            );
        }
        let check::Found {
            tree,
            end,
            checkpoint: latest,
            ..
        } = found;
        let size = tree.size();
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            entries_path,
            index_path,
            entries,
            index,
            tree: RwLock::new(Durable { tree, end }),
            checkpointing: Mutex::new(()),
            latest: RwLock::new(latest),
            signer,
            verifier_key,
            origin: options.origin,
            appends: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            halted: Mutex::new(None),
        });

        let max_batch = options.max_batch.clamp(1, MAX_BATCH_LIMIT);
        // Room for two full batches: one being committed and the next gathering. A full queue
        // makes appenders wait for room, which is the back-pressure a slow disk should exert.
        let (sender, receiver) = mpsc::channel(max_batch.saturating_mul(2));
        let (done_tx, done) = watch::channel(false);
        let writer = Writer {
            shared: Arc::clone(&shared),
            next_index: size,
            end,
            max_batch,
        };
        std::thread::Builder::new()
            .name("huitong-log-writer".to_owned())
            .spawn(move || {
                writer.run(receiver);
                done_tx.send_replace(true);
            })
            .map_err(Error::io("start the writer thread for", dir))?;

        debug!(dir = %dir.display(), entries = size, "exchange log open");
        Ok(Log {
            inner: Arc::new(Handle {
                shared,
                sender: Mutex::new(Some(sender)),
                done,
            }),
        })
    }

    /// Appends one entry and returns once it is durable: its frame written and `entries.log`
    /// fdatasynced. Appends queued together share one write and one sync.
    ///
    /// An error means the entry is not known to be durable (not that it is absent: a write that
    /// failed late may still surface on reopen). If the future is dropped after the entry was
    /// queued, the entry is still written.
    pub async fn append(&self, payload: Vec<u8>) -> Result<Receipt, Error> {
        if payload.is_empty() || payload.len() > MAX_PAYLOAD {
            return Err(Error::InvalidPayload {
                len: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let sender = self
            .inner
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(sender) = sender else {
            return Err(self.stopped());
        };
        let (reply, answer) = oneshot::channel();
        if sender.send(Request { payload, reply }).await.is_err() {
            return Err(self.stopped());
        }
        drop(sender);
        answer.await.unwrap_or_else(|_| Err(self.stopped()))
    }

    /// Why appends no longer go through: the writer halted, or the log was closed.
    fn stopped(&self) -> Error {
        match &*self
            .inner
            .shared
            .halted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(reason) => Error::Halted {
                reason: reason.clone(),
            },
            None => Error::Closed,
        }
    }

    fn durable(&self) -> std::sync::RwLockReadGuard<'_, Durable> {
        self.inner
            .shared
            .tree
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn leaves(&self, len: u64) -> Leaves<'_> {
        Leaves {
            file: &self.inner.shared.index,
            len,
        }
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.durable().tree.size()
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Counters of the writer since open.
    pub fn stats(&self) -> LogStats {
        let s = &self.inner.shared;
        LogStats {
            appends: s.appends.load(Ordering::Relaxed),
            syncs: s.syncs.load(Ordering::Relaxed),
        }
    }

    /// The root of the tree of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        let d = self.durable();
        let tree_size = d.tree.size();
        if size > tree_size {
            return Err(Error::OutOfRange {
                what: format!("the root of a tree of {size} entries"),
                size: tree_size,
            });
        }
        Ok(d.tree.root_at(size, &self.leaves(tree_size))?)
    }

    /// Signs the current tree head and stores it as the latest checkpoint (replacing the file
    /// atomically). Blocking (one signature and a few fsyncs).
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, Error> {
        let s = &self.inner.shared;
        let _one_at_a_time = s
            .checkpointing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (size, root) = {
            let d = self.durable();
            (d.tree.size(), d.tree.root())
        };
        // The checkpoint does not depend on index.bin (it is rebuilt from entries.log, which is
        // durable up to `size`), but syncing it here spares the next start-up rewriting it.
        s.index
            .sync_data()
            .map_err(Error::io("fdatasync", &s.index_path))?;
        let body = CheckpointBody {
            origin: s.origin.clone(),
            size,
            root,
        };
        let note = s.signer.sign_checkpoint(&body)?;
        write_atomically(&s.dir, CHECKPOINT_FILE, note.as_bytes(), 0o644)?;
        let cp = SignedCheckpoint { note, size, root };
        *s.latest.write().unwrap_or_else(PoisonError::into_inner) = Some(cp.clone());
        Ok(cp)
    }

    /// The latest stored checkpoint, if one was ever signed.
    pub fn latest_checkpoint(&self) -> Option<SignedCheckpoint> {
        self.inner
            .shared
            .latest
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The log's verifier key in signed-note form, `<name>+<key id hex>+<base64 key>`.
    pub fn verifier_key(&self) -> String {
        self.inner.shared.verifier_key.clone()
    }

    /// The inclusion proof of entry `index` in the tree of the first `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        let d = self.durable();
        let tree_size = d.tree.size();
        if size > tree_size || index >= size {
            return Err(Error::OutOfRange {
                what: format!("an inclusion proof of entry {index} in a tree of {size}"),
                size: tree_size,
            });
        }
        Ok(d.tree
            .inclusion_proof(index, size, &self.leaves(tree_size))?)
    }

    /// The proof that the tree of `old` entries is a prefix of the tree of `new` entries.
    /// There is none from the empty tree (`old == 0`): it is a prefix of every tree.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        let d = self.durable();
        let tree_size = d.tree.size();
        if old == 0 || old > new || new > tree_size {
            return Err(Error::OutOfRange {
                what: format!(
                    "a consistency proof from size {old} to size {new} (sizes must satisfy 0 < old <= new <= log size)"
                ),
                size: tree_size,
            });
        }
        Ok(d.tree
            .consistency_proof(old, new, &self.leaves(tree_size))?)
    }

    /// The leaf hash of entry `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, Error> {
        let size = self.size();
        if index >= size {
            return Err(Error::OutOfRange {
                what: format!("entry {index}"),
                size,
            });
        }
        let mut out = [[0u8; 32]];
        self.leaves(size)
            .read(index, &mut out)
            .map_err(Error::io("read", &self.inner.shared.index_path))?;
        Ok(out[0])
    }

    /// The leaf hashes of entries `[start, end)`, e.g. for an export bundle.
    pub fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Hash>, Error> {
        let size = self.size();
        if start > end || end > size {
            return Err(Error::OutOfRange {
                what: format!("leaf hashes [{start}, {end})"),
                size,
            });
        }
        let n = usize::try_from(end - start).map_err(|_| Error::OutOfRange {
            what: format!("{} leaf hashes in memory at once", end - start),
            size,
        })?;
        let mut out = vec![[0u8; 32]; n];
        self.leaves(size)
            .read(start, &mut out)
            .map_err(Error::io("read", &self.inner.shared.index_path))?;
        Ok(out)
    }

    /// Entries `[start, end)` as `(index, payload)`. Frames are found through `index.bin`, read
    /// a run of up to 256 at a time, and each is checked against its CRC.
    pub fn read(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let (size, log_end) = {
            let d = self.durable();
            (d.tree.size(), d.end)
        };
        if start > end || end > size {
            return Err(Error::OutOfRange {
                what: format!("entries [{start}, {end})"),
                size,
            });
        }
        let s = &self.inner.shared;
        let index_corrupt = |at: u64, problem: String| Error::Corrupt {
            path: s.index_path.clone(),
            offset: at * INDEX_RECORD_LEN,
            problem,
        };
        let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0).min(4096));
        let mut records = Vec::new();
        let mut frames = Vec::new();
        let mut at = start;
        while at < end {
            let n = (end - at).min(READ_RUN);
            // One more record than the run, when there is one, gives the run's end offset.
            let with_next = if at + n < size { n + 1 } else { n };
            records.resize((with_next * INDEX_RECORD_LEN) as usize, 0);
            s.index
                .read_exact_at(&mut records, at * INDEX_RECORD_LEN)
                .map_err(Error::io("read", &s.index_path))?;
            let offsets: Vec<u64> = records
                .chunks_exact(INDEX_RECORD_LEN as usize)
                .map(record_offset)
                .collect();
            let first = offsets[0];
            let last = if with_next > n {
                offsets[n as usize]
            } else {
                log_end
            };
            if first > last || last > log_end {
                return Err(index_corrupt(
                    at,
                    format!(
                        "entries {at}..{} are recorded at bytes {first}..{last}, outside the {log_end} durable bytes",
                        at + n
                    ),
                ));
            }
            let span = usize::try_from(last - first).map_err(|_| {
                index_corrupt(
                    at,
                    format!("a run of {n} entries spans {} bytes", last - first),
                )
            })?;
            frames.resize(span, 0);
            s.entries
                .read_exact_at(&mut frames, first)
                .map_err(Error::io("read", &s.entries_path))?;
            let mut pos = 0usize;
            for (k, &offset) in offsets.iter().take(n as usize).enumerate() {
                let index = at + k as u64;
                let here = first + pos as u64;
                if offset != here {
                    return Err(index_corrupt(
                        index,
                        format!(
                            "entry {index} is recorded at byte {offset}, but the frames before it end at {here}"
                        ),
                    ));
                }
                let corrupt = |problem: String| Error::Corrupt {
                    path: s.entries_path.clone(),
                    offset,
                    problem: format!("entry {index}: {problem}"),
                };
                let header: [u8; FRAME_HEADER_LEN as usize] = frames
                    .get(pos..pos + FRAME_HEADER_LEN as usize)
                    .and_then(|h| h.try_into().ok())
                    .ok_or_else(|| corrupt("its frame header is cut short".into()))?;
                let (len, crc) = parse_header(&header);
                let body = pos + FRAME_HEADER_LEN as usize;
                let payload = frames.get(body..body + len as usize).ok_or_else(|| {
                    corrupt(format!(
                        "its frame claims {len} bytes, past the entries after it"
                    ))
                })?;
                if crc32fast::hash(payload) != crc {
                    return Err(corrupt("its CRC does not match its bytes".into()));
                }
                out.push((index, payload.to_vec()));
                pos = body + len as usize;
            }
            if pos != frames.len() {
                return Err(index_corrupt(
                    at + n,
                    format!(
                        "the frames of entries {at}..{} end at byte {}, not at {last} where the next entry is recorded",
                        at + n,
                        first + pos as u64
                    ),
                ));
            }
            at += n;
        }
        Ok(out)
    }

    /// Stops the writer once everything queued is committed, and waits for it. Later appends
    /// fail with [`Error::Closed`]. Reads and proofs keep working.
    pub async fn close(&self) {
        let sender = self
            .inner
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The writer ends when every sender is gone: this one, and the clones that appends in
        // flight hold until their request is queued.
        drop(sender);
        let mut done = self.inner.done.clone();
        // An error means the writer thread is gone without saying so; either way it has stopped.
        let _ = done.wait_for(|d| *d).await;
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.shared.dir)
            .field("origin", &self.inner.shared.origin)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

/// Reads `log.key`, if there is one. A missing key while a checkpoint exists is refused: a new
/// key would sign a second history that verifiers of the first cannot check.
fn load_key(dir: &Path) -> Result<Option<Signer>, Error> {
    let path = dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            if let Ok(meta) = fs::metadata(&path)
                && meta.permissions().mode() & 0o077 != 0
            {
                warn!(path = %path.display(), "the log signing key is readable by other users; it should be mode 0600");
            }
            Signer::from_skey_string(text.trim())
                .map(Some)
                .map_err(|e| {
                    Error::Key(format!(
                        "{} is not a usable signing key: {e}",
                        path.display()
                    ))
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let checkpoint = dir.join(CHECKPOINT_FILE);
            if checkpoint.exists() {
                return Err(Error::Key(format!(
                    "{} is missing but {} exists: restore the key it was signed with",
                    path.display(),
                    checkpoint.display()
                )));
            }
            Ok(None)
        }
        Err(e) => Err(Error::io("read", &path)(e)),
    }
}

/// Creates the signing key of a new log.
fn create_key(dir: &Path, key_name: &str) -> Result<Signer, Error> {
    let signer = Signer::generate(key_name)?;
    write_atomically(dir, KEY_FILE, signer.to_skey_string().as_bytes(), 0o600)?;
    info!(path = %dir.join(KEY_FILE).display(), verifier_key = %signer.verifier_key(), "created the log signing key");
    Ok(signer)
}

/// The one thread that writes the log files.
struct Writer {
    shared: Arc<Shared>,
    /// Index of the next entry, and the byte where its frame goes.
    next_index: u64,
    end: u64,
    max_batch: usize,
}

/// Buffers reused from batch to batch.
#[derive(Default)]
struct Buffers {
    frames: Vec<u8>,
    records: Vec<u8>,
    hashes: Vec<Hash>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(self.max_batch.min(4096));
        let mut buffers = Buffers::default();
        // Sleeps until there is work; then takes whatever else is already waiting, without
        // waiting for more: batching comes from appends queuing up behind a sync, not a timer.
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if let Err(reason) = self.commit(&mut batch, &mut buffers) {
                self.halt(reason, queue);
                return;
            }
        }
        self.finish();
    }

    /// Writes, syncs and publishes one batch, then answers its waiters. `Err` means the writer
    /// must stop (every waiter of the batch has been answered already).
    fn commit(&mut self, batch: &mut Vec<Request>, b: &mut Buffers) -> Result<(), String> {
        let s = Arc::clone(&self.shared);
        b.frames.clear();
        b.records.clear();
        b.hashes.clear();
        for r in batch.iter() {
            let offset = self.end + b.frames.len() as u64;
            b.frames.extend_from_slice(&frame_header(&r.payload));
            b.frames.extend_from_slice(&r.payload);
            let hash = merkle::leaf_hash(&r.payload);
            b.records.extend_from_slice(&index_record(&hash, offset));
            b.hashes.push(hash);
        }

        if let Err(e) = s.entries.write_all_at(&b.frames, self.end) {
            // Nothing of the batch was acknowledged. Cut off whatever part of it reached the
            // file, so that a later, shorter batch does not leave stale frames behind it that
            // recovery would take for entries. If the cut works, the log is as before and the
            // next batch may succeed (e.g. once space is freed).
            let cut = s.entries.set_len(self.end);
            fail_all(batch, || Error::Io {
                action: "write",
                path: s.entries_path.clone(),
                source: copy_io(&e),
            });
            return match cut {
                Ok(()) => {
                    warn!(error = %e, path = %s.entries_path.display(), "writing a batch of log entries failed; the batch was refused");
                    Ok(())
                }
                Err(c) => Err(format!(
                    "writing {} failed ({e}) and cutting the partial write back failed too ({c})",
                    s.entries_path.display()
                )),
            };
        }
        if let Err(e) = s.entries.sync_data() {
            fail_all(batch, || Error::Io {
                action: "fdatasync",
                path: s.entries_path.clone(),
                source: copy_io(&e),
            });
            // After a failed fdatasync the kernel may have dropped the dirty pages and cleared
            // the error, so a later sync that succeeds would prove nothing about them. Only a
            // reopen, which re-reads the file, knows what is on disk.
            return Err(format!(
                "fdatasync {} failed: {e}",
                s.entries_path.display()
            ));
        }
        s.syncs.fetch_add(1, Ordering::Relaxed);

        // The entries are durable. Their index records go in now and are not synced: start-up
        // recomputes any that a crash loses. They must be written before the tree grows, since
        // proofs read leaf hashes from index.bin.
        if let Err(e) = s
            .index
            .write_all_at(&b.records, self.next_index * INDEX_RECORD_LEN)
        {
            // Typically a full disk: the frames fitted, their records did not. No append of the
            // batch was acknowledged, and no checkpoint covers it, so the batch is taken back
            // whole: index.bin first (a record without its frame would read as a lost entry),
            // then entries.log, synced so that no later start-up finds the frames. The log is
            // then as before, and the next batch may succeed once space is freed.
            let cut = s
                .index
                .set_len(self.next_index * INDEX_RECORD_LEN)
                .map_err(|c| format!("cutting {} back failed too ({c})", s.index_path.display()))
                .and_then(|()| {
                    s.entries
                        .set_len(self.end)
                        .and_then(|()| s.entries.sync_data())
                        .map_err(|c| {
                            format!("cutting {} back failed too ({c})", s.entries_path.display())
                        })
                });
            fail_all(batch, || Error::Io {
                action: "write",
                path: s.index_path.clone(),
                source: copy_io(&e),
            });
            return match cut {
                Ok(()) => {
                    warn!(error = %e, path = %s.index_path.display(), "writing the index records of a batch failed; the batch was taken back and refused");
                    Ok(())
                }
                Err(c) => Err(format!(
                    "writing {} failed after the entries were synced ({e}) and {c}; reopening the log repairs it",
                    s.index_path.display()
                )),
            };
        }

        let first = self.next_index;
        self.next_index += batch.len() as u64;
        self.end += b.frames.len() as u64;
        {
            let mut d = s.tree.write().unwrap_or_else(PoisonError::into_inner);
            d.tree.push(&b.hashes);
            d.end = self.end;
        }
        s.appends.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for ((i, r), hash) in batch.drain(..).enumerate().zip(&b.hashes) {
            // A waiter that gave up (its future was dropped) has no one to tell.
            let _ = r.reply.send(Ok(Receipt {
                index: first + i as u64,
                leaf_hash: *hash,
            }));
        }
        Ok(())
    }

    /// Stops on an I/O failure: every append queued now or later fails with the reason.
    fn halt(self, reason: String, mut queue: mpsc::Receiver<Request>) {
        error!(reason = %reason, "the exchange log writer stopped; reopen the log to recover");
        *self
            .shared
            .halted
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason.clone());
        // Refuse new requests, then answer the ones already queued.
        queue.close();
        while let Some(r) = queue.blocking_recv() {
            let _ = r.reply.send(Err(Error::Halted {
                reason: reason.clone(),
            }));
        }
        self.finish();
    }

    fn finish(self) {
        // Not needed for correctness (see the module notes), but a clean shutdown should leave
        // nothing for the next start-up to redo.
        if let Err(e) = self.shared.index.sync_data() {
            warn!(error = %e, path = %self.shared.index_path.display(), "fdatasync at shutdown failed");
        }
    }
}

fn fail_all(batch: &mut Vec<Request>, error: impl Fn() -> Error) {
    for r in batch.drain(..) {
        let _ = r.reply.send(Err(error()));
    }
}
