//! The checks a log directory must pass before anything in it is written: read-only, so that a
//! log that fails them is left exactly as found, for whoever investigates.
//!
//! One pass over `entries.log` checks every frame's CRC, compares each entry's leaf hash and
//! offset with its `index.bin` record (written once, after the frame was durable: a record that
//! disagrees is evidence that the entry changed after it was logged), and grows the Merkle tree,
//! whose root is compared with the signed checkpoint when the pass reaches the signed size.
//!
//! What counts as a torn tail, the only damage start-up repairs by itself: bytes after the last
//! whole frame that neither `index.bin` nor the signed checkpoint shows were ever durable. A
//! writer syncs a batch before it writes the batch's index records and before any checkpoint
//! covers it, so a crash can tear only frames that nothing vouches for. Index records that are
//! missing, cut short or all zeros (a file extended but never written, after a power loss) are
//! likewise crash effects: they are recomputed once the checks have passed.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{
    CHECKPOINT_FILE, ENTRIES_FILE, FRAME_HEADER_LEN, INDEX_FILE, INDEX_RECORD_LEN, MAX_PAYLOAD,
    READ_RUN, SignedCheckpoint, index_record, parse_header, read_optional, record_hash,
    record_offset,
};
use crate::error::{Damage, Error, Witness};
use crate::merkle::{self, Tree};
use crate::note::{CheckpointBody, Verifier};

/// What a log directory that passed its checks holds.
#[derive(Debug)]
pub(crate) struct Found {
    /// The tree of the whole entries.
    pub(crate) tree: Tree,
    /// Whole, checked frames from the start of `entries.log`, and the bytes they occupy.
    pub(crate) count: u64,
    pub(crate) end: u64,
    /// Length of `entries.log`; more than `end` when there is a torn tail.
    pub(crate) file_len: u64,
    /// Why the pass stopped before `file_len`: the torn tail.
    pub(crate) torn: Option<String>,
    /// Length of `index.bin`.
    pub(crate) index_len: u64,
    /// The first entry whose `index.bin` record is missing, cut short or unwritten, and the byte
    /// offset of its frame: records from there on are recomputed (`None`: all are right).
    pub(crate) reindex_from: Option<(u64, u64)>,
    /// The stored checkpoint, verified and matching the entries.
    pub(crate) checkpoint: Option<SignedCheckpoint>,
}

/// The result of [`verify_dir`]: a log directory that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirReport {
    /// Whole entries in `entries.log`.
    pub entries: u64,
    /// The signed checkpoint's size and root, when the log has one.
    pub checkpoint: Option<(u64, merkle::Hash)>,
    /// Bytes after the last whole entry that the broker would cut as a torn tail on start-up.
    pub torn_tail_bytes: u64,
    /// Entries whose `index.bin` record the broker would recompute on start-up.
    pub unindexed: u64,
}

/// Checks the log in `dir` (the directory holding `entries.log`) without writing anything: what
/// the broker checks before it starts, for an operator or auditor to run on a live or copied
/// data directory. The checkpoint is verified with `verifier_key` (`<name>+<id>+<key>`).
///
/// # Errors
///
/// [`Error::Damaged`] naming the first bad entry, [`Error::CheckpointMismatch`] if the
/// checkpoint does not verify, or [`Error::Io`].
pub fn verify_dir(dir: &Path, verifier_key: &str) -> Result<DirReport, Error> {
    if !dir.join(ENTRIES_FILE).exists() {
        return Err(Error::Io {
            action: "find the exchange log in",
            path: dir.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, format!("no {ENTRIES_FILE} here")),
        });
    }
    let found = inspect(dir, None, Some(verifier_key))?;
    let unindexed = found
        .reindex_from
        .map_or(0, |(entry, _)| found.count - entry);
    Ok(DirReport {
        entries: found.count,
        checkpoint: found.checkpoint.map(|c| (c.size, c.root)),
        torn_tail_bytes: found.file_len - found.end,
        unindexed,
    })
}

/// Opens `path` for reading if it exists.
fn open_existing(path: &Path) -> Result<Option<File>, Error> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("open", path)(e)),
    }
}

fn len_of(file: Option<&File>, path: &Path) -> Result<u64, Error> {
    match file {
        None => Ok(0),
        Some(f) => Ok(f.metadata().map_err(Error::io("stat", path))?.len()),
    }
}

/// The checks, read-only. `origin`: the origin the checkpoint must carry (`None`: whatever it
/// says). `verifier_key`: the key the checkpoint must verify with; `None` only when there is no
/// signing key yet, and then a checkpoint is refused.
pub(crate) fn inspect(
    dir: &Path,
    origin: Option<&str>,
    verifier_key: Option<&str>,
) -> Result<Found, Error> {
    let entries_path = dir.join(ENTRIES_FILE);
    let index_path = dir.join(INDEX_FILE);
    let damaged = |damage: Damage| Error::Damaged {
        dir: dir.to_owned(),
        damage,
    };

    let signed = match read_optional(&dir.join(CHECKPOINT_FILE))? {
        None => None,
        Some(note) => {
            let Some(key) = verifier_key else {
                return Err(Error::Key(format!(
                    "{} exists but there is no key to verify it with",
                    dir.join(CHECKPOINT_FILE).display()
                )));
            };
            Some(verify_checkpoint(dir, note, key, origin)?)
        }
    };
    let signed_size = signed.as_ref().map_or(0, |(_, b)| b.size);

    let entries = open_existing(&entries_path)?;
    let index = open_existing(&index_path)?;
    let file_len = len_of(entries.as_ref(), &entries_path)?;
    let index_len = len_of(index.as_ref(), &index_path)?;
    let indexed = index_len / INDEX_RECORD_LEN;

    let mut tree = Tree::new();
    let check_root = |tree: &Tree| -> Result<(), Error> {
        if let Some((_, body)) = &signed
            && tree.size() == body.size
            && tree.root() != body.root
        {
            return Err(damaged(Damage::RootDiffers {
                size: body.size,
                signed_root: merkle::hex(&body.root),
                root: merkle::hex(&tree.root()),
            }));
        }
        Ok(())
    };
    check_root(&tree)?;

    // The strongest claim that entry `n` was durable, if any: a frame it covers is not torn.
    let witness = |n: u64| {
        if n < indexed {
            Some(Witness::Index { records: indexed })
        } else if n < signed_size {
            Some(Witness::Checkpoint { size: signed_size })
        } else {
            None
        }
    };

    let (mut pos, mut count, mut torn) = (0u64, 0u64, None);
    let mut reindex_from = None;
    if let Some(entries) = &entries {
        let mut frames = BufReader::with_capacity(1 << 20, entries);
        let mut stored = index
            .as_ref()
            .map(|f| BufReader::with_capacity((READ_RUN * INDEX_RECORD_LEN) as usize, f));
        let mut payload = Vec::new();
        while pos < file_len {
            let left = file_len - pos;
            let problem = frame_problem(&mut frames, &mut payload, pos, left)
                .map_err(Error::io("read", &entries_path))?;
            if let Some(problem) = problem {
                if let Some(witness) = witness(count) {
                    return Err(damaged(Damage::Frame {
                        entry: count,
                        offset: pos,
                        problem,
                        witness,
                    }));
                }
                torn = Some(problem);
                break;
            }
            let hash = merkle::leaf_hash(&payload);
            if count < indexed
                && let Some(stored) = &mut stored
            {
                let mut have = [0u8; INDEX_RECORD_LEN as usize];
                stored
                    .read_exact(&mut have)
                    .map_err(Error::io("read", &index_path))?;
                if have.iter().all(|&b| b == 0) {
                    // Never written (a power loss after the file grew): a crash effect.
                    reindex_from.get_or_insert((count, pos));
                } else if have != index_record(&hash, pos) {
                    let (stored_hash, stored_offset) = (record_hash(&have), record_offset(&have));
                    return Err(damaged(if stored_hash != hash {
                        Damage::LeafHashDiffers {
                            entry: count,
                            offset: pos,
                            stored: merkle::hex(&stored_hash),
                            recomputed: merkle::hex(&hash),
                        }
                    } else {
                        Damage::OffsetDiffers {
                            entry: count,
                            offset: pos,
                            stored: stored_offset,
                        }
                    }));
                }
            } else {
                reindex_from.get_or_insert((count, pos));
            }
            tree.push(&[hash]);
            count += 1;
            pos += FRAME_HEADER_LEN + payload.len() as u64;
            check_root(&tree)?;
        }
    }
    if let Some(witness) = witness(count) {
        // The file ends (or its torn tail starts) before entries something vouches for.
        return Err(damaged(Damage::Missing {
            entry: count,
            offset: pos,
            witness,
        }));
    }
    if reindex_from.is_none() && index_len != count * INDEX_RECORD_LEN {
        // Only a partial record can be past the last whole entry here.
        reindex_from = Some((count, pos));
    }
    Ok(Found {
        tree,
        count,
        end: pos,
        file_len,
        torn,
        index_len,
        reindex_from,
        checkpoint: signed.map(|(note, body)| SignedCheckpoint {
            note,
            size: body.size,
            root: body.root,
        }),
    })
}

/// Reads the frame at `pos` into `payload`; `Some(problem)` if it is not a whole, CRC-checked
/// frame (the reader is then somewhere inside it, which no caller reads on from).
fn frame_problem(
    frames: &mut impl Read,
    payload: &mut Vec<u8>,
    pos: u64,
    left: u64,
) -> io::Result<Option<String>> {
    if left < FRAME_HEADER_LEN {
        return Ok(Some(format!(
            "{left} bytes at byte {pos} are too few for a frame header"
        )));
    }
    let mut header = [0u8; FRAME_HEADER_LEN as usize];
    frames.read_exact(&mut header)?;
    let (len, crc) = parse_header(&header);
    if len == 0 || len as usize > MAX_PAYLOAD {
        return Ok(Some(format!(
            "its frame claims {len} bytes, which no entry has"
        )));
    }
    if u64::from(len) > left - FRAME_HEADER_LEN {
        return Ok(Some(format!(
            "its frame claims {len} bytes but only {} follow",
            left - FRAME_HEADER_LEN
        )));
    }
    payload.resize(len as usize, 0);
    frames.read_exact(payload)?;
    let actual = crc32fast::hash(payload);
    if actual != crc {
        return Ok(Some(format!(
            "CRC mismatch: the frame header says {crc:08x}, its {len} bytes give {actual:08x}"
        )));
    }
    Ok(None)
}

/// Verifies the stored checkpoint's signature and origin (not yet its root).
fn verify_checkpoint(
    dir: &Path,
    note: String,
    verifier_key: &str,
    origin: Option<&str>,
) -> Result<(String, CheckpointBody), Error> {
    let mismatch = |problem: String, size: u64, root: String| Error::CheckpointMismatch {
        path: dir.to_owned(),
        problem,
        checkpoint_size: size,
        checkpoint_root: root,
        log_size: 0,
        log_root: "(not computed)".to_owned(),
    };
    let verifier = Verifier::from_vkey(verifier_key)?;
    let body = match verifier.verify(&note) {
        Ok(body) => body,
        Err(e) => {
            // Name what the checkpoint claims, if its text can be read at all.
            let claimed = note
                .rfind("\n\n")
                .and_then(|split| CheckpointBody::parse(&note[..split + 1]).ok());
            let (size, root) = claimed.map_or((0, "(unreadable)".to_owned()), |b| {
                (b.size, merkle::hex(&b.root))
            });
            return Err(mismatch(
                format!("the checkpoint does not verify with the log's key: {e}"),
                size,
                root,
            ));
        }
    };
    if let Some(origin) = origin
        && body.origin != origin
    {
        return Err(mismatch(
            format!(
                "the checkpoint was signed for origin {:?}, but this log is {origin:?}",
                body.origin
            ),
            body.size,
            merkle::hex(&body.root),
        ));
    }
    Ok((note, body))
}

/// Recomputes the `index.bin` records of entries `from..count`, whose frames start at byte
/// `offset`, and cuts `index.bin` to `count` records. Only after [`inspect`] passed.
pub(crate) fn reindex(
    entries: &File,
    entries_path: &Path,
    index: &File,
    index_path: &Path,
    (from, offset): (u64, u64),
    found: &Found,
) -> Result<u64, Error> {
    const FLUSH_AT: usize = 1 << 20;
    let mut run = Vec::new();
    let mut run_start = from;
    let mut pos = offset;
    let mut frames = BufReader::with_capacity(1 << 20, entries);
    frames
        .seek(SeekFrom::Start(offset))
        .map_err(Error::io("seek in", entries_path))?;
    let mut header = [0u8; FRAME_HEADER_LEN as usize];
    let mut payload = Vec::new();
    for entry in from..found.count {
        // The frames were checked by `inspect` a moment ago, and this process owns the log.
        frames
            .read_exact(&mut header)
            .map_err(Error::io("read", entries_path))?;
        let (len, _) = parse_header(&header);
        payload.resize(len as usize, 0);
        frames
            .read_exact(&mut payload)
            .map_err(Error::io("read", entries_path))?;
        run.extend_from_slice(&index_record(&merkle::leaf_hash(&payload), pos));
        pos += FRAME_HEADER_LEN + u64::from(len);
        if run.len() >= FLUSH_AT {
            index
                .write_all_at(&run, run_start * INDEX_RECORD_LEN)
                .map_err(Error::io("write", index_path))?;
            run_start = entry + 1;
            run.clear();
        }
    }
    if !run.is_empty() {
        index
            .write_all_at(&run, run_start * INDEX_RECORD_LEN)
            .map_err(Error::io("write", index_path))?;
    }
    let want = found.count * INDEX_RECORD_LEN;
    if found.index_len > want {
        index
            .set_len(want)
            .map_err(Error::io("truncate", index_path))?;
    }
    index.sync_all().map_err(Error::io("fsync", index_path))?;
    Ok(found.count - from)
}
