//! The crate's error type: why the exchange log could not be opened, written or read.
//!
//! Every variant names what went wrong and where (a path, an offset, the sizes and roots that
//! disagree), so that an operator can act on the message alone. Errors from the Merkle tree and
//! from signed notes convert with `From`.

use std::path::PathBuf;

use crate::merkle::TreeError;
use crate::note::NoteError;

/// Why the exchange log, its indexes or its subject keys could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system call failed. `action` says what was being done ("fdatasync", "read", ...).
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Stored data is damaged in a way that start-up must not repair by itself, or a read found
    /// a frame that does not check out. `offset` is a byte offset in `path`.
    #[error("{} is corrupt at byte {offset}: {problem}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        problem: String,
    },

    /// The log on disk does not match the checkpoint it signed: entries covered by the signed
    /// tree head were changed, removed or reordered, or the checkpoint itself does not verify.
    /// The log refuses to open rather than sign a history that contradicts the old one.
    #[error(
        "the log in {} does not match its signed checkpoint: {problem} \
         (checkpoint: size {checkpoint_size}, root {checkpoint_root}; \
         log on disk: {log_size} entries, root at the checkpoint size {log_root})",
        path.display()
    )]
    CheckpointMismatch {
        path: PathBuf,
        problem: String,
        checkpoint_size: u64,
        /// Hex, or a note on why there is none.
        checkpoint_root: String,
        log_size: u64,
        /// Hex, or a note on why there is none.
        log_root: String,
    },

    /// The log failed its checks on open: an entry that was acknowledged or signed is damaged,
    /// changed or missing. Nothing on disk was changed, so the evidence is as it was found.
    #[error(
        "the exchange log in {} failed its checks: {damage}. Nothing on disk was changed. \
         Investigate read-only with `huitong audit verify <data_dir> --log-key <the log's \
         verifier key>`; to recover, restore the data directory from a backup (docs/operations.md, \
         \"Back up and restore\") and keep this copy as evidence",
        dir.display()
    )]
    Damaged {
        dir: std::path::PathBuf,
        damage: Damage,
    },

    /// An index, size or range beyond the durable log.
    #[error("{what} is out of range: the log holds {size} entries")]
    OutOfRange { what: String, size: u64 },

    /// The log was closed; nothing more is appended.
    #[error("the exchange log is closed")]
    Closed,

    /// The writer stopped after an I/O failure whose effect on disk it cannot know (a failed
    /// fdatasync may have dropped written pages). Reopening re-scans and repairs the files.
    #[error("the exchange log writer stopped and the log must be reopened: {reason}")]
    Halted { reason: String },

    /// A payload the log does not store: empty, or larger than the frame limit.
    #[error("a log entry must be 1 to {max} bytes; this one is {len}")]
    InvalidPayload { len: usize, max: usize },

    /// An option given to [`Log::open`](crate::store::Log::open) that cannot work.
    #[error("unusable log option: {0}")]
    Config(String),

    /// The log's signing key, or a subject key, is missing, unreadable or malformed.
    #[error("key problem: {0}")]
    Key(String),

    /// A subject-key period that is not `YYYY-MM`.
    #[error("{period:?} is not a subject-key period; periods are calendar months, \"YYYY-MM\"")]
    InvalidPeriod { period: String },

    /// The subject key of `period` was destroyed under the retention policy; it is never
    /// recreated, since a new key would not link to the old entries anyway and would suggest it
    /// did.
    #[error("the subject key of {period} was destroyed; accesses in that period cannot be linked")]
    SubjectKeyDestroyed { period: String },

    /// A sealed value (see [`crate::seal`]) that is not one, was altered, or was moved from the
    /// place it was sealed for.
    #[error("a sealed value does not open: {0}")]
    Unsealable(String),

    /// The sled secondary index failed. It can be deleted and rebuilt from the log.
    #[error("the audit index: {action}: {source}")]
    Index {
        action: &'static str,
        #[source]
        source: sled::Error,
    },

    /// An index record that does not decode. The index is derived data: deleting `path` makes
    /// the broker rebuild it from the log.
    #[error("the audit index in {} is damaged ({what}); delete it and it is rebuilt from the log", path.display())]
    IndexDamaged { path: PathBuf, what: &'static str },

    /// The Merkle tree could not answer (a size beyond the tree, or a leaf read failed).
    #[error(transparent)]
    Tree(#[from] TreeError),

    /// A signed note could not be made or checked.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// What [`Error::Damaged`] found: the first bad entry and what differs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Damage {
    /// The entry's frame does not check out (CRC mismatch, impossible or overlong length),
    /// although `witness` shows it was durable: damage, not a torn write.
    #[error(
        "entry {entry} (the frame at byte {offset} of entries.log): {problem}; {witness}, so this is damage to a logged entry, not a torn write"
    )]
    Frame {
        entry: u64,
        offset: u64,
        problem: String,
        witness: Witness,
    },
    /// `entries.log` ends before entry `entry`, which `witness` shows was durable.
    #[error(
        "entries from {entry} on are missing: entries.log ends at byte {offset}, but {witness}"
    )]
    Missing {
        entry: u64,
        offset: u64,
        witness: Witness,
    },
    /// The entry's frame is whole and its CRC matches, but its leaf hash is not the one
    /// `index.bin` recorded when the entry was written: its bytes were rewritten, CRC and all.
    #[error(
        "entry {entry} (the frame at byte {offset} of entries.log): its leaf hash is {recomputed}, but index.bin recorded {stored} when it was written; its CRC matches its bytes, so they were rewritten rather than damaged"
    )]
    LeafHashDiffers {
        entry: u64,
        offset: u64,
        stored: String,
        recomputed: String,
    },
    /// The entry's leaf hash agrees with `index.bin`, but not where its frame is.
    #[error(
        "entry {entry}: index.bin records its frame at byte {stored} of entries.log, but it is at byte {offset}: entries before it were changed in length, added or removed"
    )]
    OffsetDiffers {
        entry: u64,
        offset: u64,
        stored: u64,
    },
    /// The first `size` entries do not hash to the signed root. `index.bin` agrees with them, so
    /// it was rewritten too and cannot tell which entry changed.
    #[error(
        "the first {size} entries, which the checkpoint signs, hash to root {root}, not to the signed root {signed_root}: at least one of them was changed, and index.bin was rewritten to match, so it cannot tell which; compare the leaf hashes with a backup or an export bundle"
    )]
    RootDiffers {
        size: u64,
        signed_root: String,
        root: String,
    },
}

impl Damage {
    /// The first entry found bad, when one can be named.
    pub fn entry(&self) -> Option<u64> {
        match self {
            Damage::Frame { entry, .. }
            | Damage::Missing { entry, .. }
            | Damage::LeafHashDiffers { entry, .. }
            | Damage::OffsetDiffers { entry, .. } => Some(*entry),
            Damage::RootDiffers { .. } => None,
        }
    }
}

/// What shows that an entry was durable (and so cannot be a torn write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Witness {
    /// `index.bin` holds `records` records; each is written only after its frame was synced.
    #[error("index.bin records {records} entries, written only after their frames were synced")]
    Index { records: u64 },
    /// The signed checkpoint covers `size` entries.
    #[error("the signed checkpoint covers {size} entries")]
    Checkpoint { size: u64 },
}

impl Error {
    /// Whether this is the disk being full (ENOSPC, or a quota): an exchange refused for it can
    /// be retried once space is freed, without a restart.
    pub fn is_disk_full(&self) -> bool {
        let io = match self {
            Error::Io { source, .. } => source,
            _ => return false,
        };
        matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
    }

    /// An [`Error::Io`] for `path`, for use with `map_err`.
    pub(crate) fn io<'a>(
        action: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// An [`Error::Index`], for use with `map_err`.
    pub(crate) fn index(action: &'static str) -> impl FnOnce(sled::Error) -> Error {
        move |source| Error::Index { action, source }
    }
}
