//! Export bundles and their offline verification.
//!
//! A bundle is a directory an auditor can take away and check without the broker:
//!
//! - `checkpoint.note`: the signed checkpoint the bundle is cut at (C2SP signed note);
//! - `entries.log`: the first `size` entries, framed exactly as the broker stores them
//!   (`u32` length, `u32` CRC-32, leaf data);
//! - `hashes.bin`: the log's stored leaf hashes, 32 bytes each, in order;
//! - `entries.jsonl`: the same entries decoded, one JSON object per line, for reading;
//! - `consistency.json` (optional): a consistency proof from an earlier checkpoint the auditor
//!   already trusted, so the new checkpoint is shown to extend it.
//!
//! Verification needs only the bundle and the log's verifier key. It checks the checkpoint's
//! signature; that `hashes.bin` hashes to the signed root (so the list of hashes is the one the
//! log signed); that every entry's leaf hash equals its listed hash (so the first tampered,
//! missing or reordered entry is named by index); and the consistency proof if present.
//!
//! People read `entries.jsonl` and `consistency.json`, not the binary files, so "verified" must
//! cover them too: each line of `entries.jsonl` must be, byte for byte, the rendering
//! ([`readable_line`]) of the signed entry at its index, and `consistency.json` the rendering of
//! the proof that verified. A file the bundle does not define is refused as well, since verify
//! could not vouch for it. The rendering is fixed (times in UTC, keys sorted), so that it does
//! not depend on who exports or verifies.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::merkle::{self, Hash};
use crate::note::{CheckpointBody, Verifier};
use crate::record;

pub const CHECKPOINT: &str = "checkpoint.note";
pub const ENTRIES: &str = "entries.log";
pub const HASHES: &str = "hashes.bin";
pub const ENTRIES_JSON: &str = "entries.jsonl";
pub const CONSISTENCY: &str = "consistency.json";

/// Every file a bundle may hold.
const FILES: [&str; 5] = [CHECKPOINT, ENTRIES, HASHES, ENTRIES_JSON, CONSISTENCY];

/// Why a bundle could not be written or does not verify. Verification failures name the first
/// bad index where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the checkpoint signature does not verify with the given log key: {0}")]
    Signature(String),
    #[error("{0}")]
    Malformed(String),
    #[error(
        "the leaf hashes in hashes.bin do not hash to the signed root: the bundle's hash list was altered"
    )]
    HashListAltered,
    #[error("entry {index} does not match the signed log: {problem}")]
    BadEntry { index: u64, problem: String },
    #[error(
        "the bundle holds {got} entries but the checkpoint signs {want}; entries from index {got} on are missing"
    )]
    MissingEntries { got: u64, want: u64 },
    #[error("entries.log has data after the {0} entries the checkpoint signs")]
    ExtraEntries(u64),
    #[error("the consistency proof from size {old} to {new} does not verify: {problem}")]
    Inconsistent { old: u64, new: u64, problem: String },
    #[error("{file} line {line} (entry {index}) does not show the signed entry: {problem}")]
    ReadableEntry {
        file: &'static str,
        line: u64,
        index: u64,
        problem: String,
    },
    #[error(
        "{file} has lines from line {line} on after the {size} signed entries (entries {size} and later are not in the signed log)"
    )]
    ReadableExtra {
        file: &'static str,
        line: u64,
        size: u64,
    },
    #[error(
        "{file} is not the rendering of the proof it carries (it was edited); the proof itself {proof}"
    )]
    ReadableProof { file: &'static str, proof: String },
    #[error(
        "the bundle holds {} that an export does not write; verify cannot vouch for what it does not check: move it out of the bundle",
        .0.join(", ")
    )]
    UnexpectedFiles(Vec<String>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An earlier checkpoint and the proof that the new one extends it.
#[derive(Debug, Clone)]
pub struct Consistency {
    pub old_size: u64,
    pub old_root: Hash,
    pub proof: Vec<Hash>,
}

/// The line of `entries.jsonl` for the entry at `index` with leaf `data` (no newline): its
/// [`record::to_json`] rendering with the time in UTC. `None` if `data` is not an
/// `ExchangeRecord`.
pub fn readable_line(index: u64, leaf_hash: &Hash, data: &[u8]) -> Option<String> {
    let r = huitong_proto::v1::ExchangeRecord::decode(data).ok()?;
    Some(record::to_json(index, leaf_hash, &r).to_string())
}

/// Writes a bundle of `entries` (leaf data, in index order from 0) and `hashes` (their stored
/// leaf hashes) cut at the signed `note`.
pub fn write(
    dir: &Path,
    note: &str,
    entries: &[Vec<u8>],
    hashes: &[Hash],
    consistency: Option<&Consistency>,
) -> Result<(), BundleError> {
    if entries.len() != hashes.len() {
        return Err(BundleError::Malformed(format!(
            "{} entries but {} leaf hashes to write",
            entries.len(),
            hashes.len()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let p = dir.join(CHECKPOINT);
    std::fs::write(&p, note).map_err(io(&p))?;

    let p = dir.join(ENTRIES);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&p).map_err(io(&p))?);
    for e in entries {
        out.write_all(&frame_header(e)).map_err(io(&p))?;
        out.write_all(e).map_err(io(&p))?;
    }
    out.flush().map_err(io(&p))?;

    let p = dir.join(HASHES);
    let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.iter().copied()).collect();
    std::fs::write(&p, bytes).map_err(io(&p))?;

    let p = dir.join(ENTRIES_JSON);
    let mut text = String::new();
    for (i, (e, h)) in entries.iter().zip(hashes).enumerate() {
        let line = readable_line(i as u64, h, e).ok_or_else(|| BundleError::BadEntry {
            index: i as u64,
            problem: "it is not an ExchangeRecord".into(),
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&p, text).map_err(io(&p))?;

    if let Some(c) = consistency {
        let p = dir.join(CONSISTENCY);
        std::fs::write(&p, consistency_json(c)).map_err(io(&p))?;
    }
    Ok(())
}

/// The frame header of one entry: length and CRC-32, little-endian.
pub fn frame_header(payload: &[u8]) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    h
}

fn b64(h: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn consistency_json(c: &Consistency) -> String {
    let mut s = format!(
        "{{\"old_size\": {}, \"old_root\": \"{}\", \"proof\": [",
        c.old_size,
        b64(&c.old_root)
    );
    for (i, h) in c.proof.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "\"{}\"", b64(h));
    }
    s.push_str("]}\n");
    s
}

/// A tiny reader for the one JSON shape above, so that verification needs no JSON library.
fn parse_consistency(text: &str) -> Option<Consistency> {
    let num = |key: &str| -> Option<u64> {
        let i = text.find(&format!("\"{key}\":"))? + key.len() + 3;
        let rest = text[i..].trim_start();
        let end = rest.find(|c: char| !c.is_ascii_digit())?;
        rest[..end].parse().ok()
    };
    let string = |key: &str| -> Option<String> {
        let i = text.find(&format!("\"{key}\":"))? + key.len() + 3;
        let rest = text[i..].trim_start().strip_prefix('"')?;
        Some(rest[..rest.find('"')?].to_owned())
    };
    let hash = |s: &str| -> Option<Hash> { unb64(s)?.try_into().ok() };
    let old_size = num("old_size")?;
    let old_root = hash(&string("old_root")?)?;
    let list = &text[text.find('[')? + 1..text.rfind(']')?];
    let proof = list
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .map(hash)
        .collect::<Option<Vec<_>>>()?;
    Some(Consistency {
        old_size,
        old_root,
        proof,
    })
}

/// What a successful verification established.
#[derive(Debug, Clone)]
pub struct Verified {
    pub checkpoint: CheckpointBody,
    pub entries: u64,
    /// The earlier size the checkpoint was shown to extend, if the bundle carried a proof.
    pub extends: Option<u64>,
}

/// Verifies a bundle offline with the log's verifier key (`<name>+<id>+<key>`).
pub fn verify(dir: &Path, verifier_key: &str) -> Result<Verified, BundleError> {
    let verifier = Verifier::from_vkey(verifier_key)
        .map_err(|e| BundleError::Malformed(format!("the log key is not usable: {e}")))?;
    let mut unexpected = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let name = entry.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if !FILES.contains(&name.as_ref()) {
            unexpected.push(name.into_owned());
        }
    }
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(BundleError::UnexpectedFiles(unexpected));
    }
    let p = dir.join(CHECKPOINT);
    let note = std::fs::read_to_string(&p).map_err(io(&p))?;
    let checkpoint = verifier
        .verify(&note)
        .map_err(|e| BundleError::Signature(e.to_string()))?;
    let size = checkpoint.size;

    let p = dir.join(HASHES);
    let raw = std::fs::read(&p).map_err(io(&p))?;
    if raw.len() % 32 != 0 {
        return Err(BundleError::Malformed(format!(
            "{} is {} bytes, not a whole number of 32-byte hashes",
            p.display(),
            raw.len()
        )));
    }
    let hashes: Vec<Hash> = raw
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect();
    if (hashes.len() as u64) < size {
        return Err(BundleError::Malformed(format!(
            "hashes.bin lists {} leaves but the checkpoint signs {size}",
            hashes.len()
        )));
    }
    let signed = &hashes[..size as usize];
    if merkle::mth(signed) != checkpoint.root {
        return Err(BundleError::HashListAltered);
    }

    // A missing entries.jsonl is reported after the entries themselves are checked: a
    // tampered entry is the graver finding.
    let readable_path = dir.join(ENTRIES_JSON);
    let (readable, missing_readable) = match std::fs::read(&readable_path) {
        Ok(bytes) => (bytes, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    // Invalid UTF-8 becomes U+FFFD, which no rendering contains: the line is reported.
    let readable = String::from_utf8_lossy(&readable);
    let mut readable_at = 0usize;

    let p = dir.join(ENTRIES);
    let data = std::fs::read(&p).map_err(io(&p))?;
    let mut offset = 0usize;
    let mut index = 0u64;
    while offset < data.len() {
        if index == size {
            return Err(BundleError::ExtraEntries(size));
        }
        let bad = |problem: String| BundleError::BadEntry { index, problem };
        let header = data
            .get(offset..offset + 8)
            .ok_or_else(|| bad("its frame header is cut short".into()))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let payload = data.get(offset + 8..offset + 8 + len).ok_or_else(|| {
            bad(format!(
                "its frame claims {len} bytes, past the end of the file"
            ))
        })?;
        if crc32fast::hash(payload) != crc {
            return Err(bad("its CRC does not match its bytes".into()));
        }
        if merkle::leaf_hash(payload) != signed[index as usize] {
            return Err(bad(
                "its leaf hash differs from the signed one (altered, dropped or reordered)".into(),
            ));
        }
        let Some(want) = readable_line(index, &signed[index as usize], payload) else {
            return Err(bad("it is not an ExchangeRecord".into()));
        };
        let rest = &readable[readable_at..];
        let got = &rest[..rest.find('\n').map_or(rest.len(), |e| e + 1)];
        if missing_readable.is_none() && got.strip_suffix('\n') != Some(want.as_str()) {
            return Err(BundleError::ReadableEntry {
                file: ENTRIES_JSON,
                line: index + 1,
                index,
                problem: line_difference(index, got, &want),
            });
        }
        readable_at += got.len();
        offset += 8 + len;
        index += 1;
    }
    if index < size {
        return Err(BundleError::MissingEntries {
            got: index,
            want: size,
        });
    }
    if let Some(e) = missing_readable {
        return Err(io(&readable_path)(e));
    }
    if readable_at < readable.len() {
        return Err(BundleError::ReadableExtra {
            file: ENTRIES_JSON,
            line: size + 1,
            size,
        });
    }

    let p = dir.join(CONSISTENCY);
    let extends = match std::fs::read_to_string(&p) {
        Ok(text) => {
            let c = parse_consistency(&text).ok_or_else(|| {
                BundleError::Malformed(format!("{} is not a consistency proof", p.display()))
            })?;
            let checked = merkle::verify_consistency(
                c.old_size,
                size,
                &c.old_root,
                &checkpoint.root,
                &c.proof,
            );
            if text != consistency_json(&c) {
                return Err(BundleError::ReadableProof {
                    file: CONSISTENCY,
                    proof: match &checked {
                        Ok(()) => "verifies, as parsed from the edited text".into(),
                        Err(e) => format!("does not verify either: {e}"),
                    },
                });
            }
            checked.map_err(|e| BundleError::Inconsistent {
                old: c.old_size,
                new: size,
                problem: e.to_string(),
            })?;
            Some(c.old_size)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&p)(e)),
    };
    Ok(Verified {
        checkpoint,
        entries: index,
        extends,
    })
}

/// What differs between a line of `entries.jsonl` (with its newline, if any) and the rendering
/// of the signed entry, in words an auditor can act on.
fn line_difference(index: u64, got: &str, want: &str) -> String {
    use serde_json::Value;
    if got.is_empty() {
        return "the file ends before this entry's line".into();
    }
    let Ok(Value::Object(got_obj)) = serde_json::from_str::<Value>(got) else {
        return "the line is not a JSON object".into();
    };
    let Ok(Value::Object(want_obj)) = serde_json::from_str::<Value>(want) else {
        return "the signed entry has no rendering".into();
    };
    if let Some(other) = got_obj.get("index").and_then(Value::as_u64)
        && other != index
    {
        return format!(
            "it is the line of entry {other}: lines were dropped, inserted or reordered"
        );
    }
    let short = |v: &Value| {
        let s = v.to_string();
        match s.char_indices().nth(80) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s,
        }
    };
    for (key, want_value) in &want_obj {
        match got_obj.get(key) {
            None => {
                return format!(
                    "it lacks \"{key}\" (the signed entry has {})",
                    short(want_value)
                );
            }
            Some(v) if v != want_value => {
                return format!(
                    "\"{key}\" reads {} but the signed entry has {}",
                    short(v),
                    short(want_value)
                );
            }
            Some(_) => {}
        }
    }
    if let Some(key) = got_obj.keys().find(|k| !want_obj.contains_key(*k)) {
        return format!("it adds \"{key}\", which the signed entry does not have");
    }
    "its values match but its text does not (spacing, escapes, key order or the line end)".into()
}
