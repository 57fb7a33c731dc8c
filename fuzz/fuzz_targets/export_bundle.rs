//! Offline verification of an export bundle made from the input, as an auditor runs it on a
//! bundle that may have been altered after export.
//!
//! The first byte's bits: 1, the checkpoint section is a body the harness signs with the
//! log's key; 4, the harness writes the body itself, signing the Merkle root of the first
//! `n` hashes in hashes.bin (`n` from the checkpoint section's first byte), so that the entry
//! and proof checks behind the root run; 2, consistency.json is present. Sections:
//! checkpoint, entries.log, hashes.bin, consistency.json.
#![no_main]

use huitong_audit::bundle::{self, CHECKPOINT, CONSISTENCY, ENTRIES, HASHES};
use huitong_audit::merkle::{self, Hash};
use huitong_audit::note::CheckpointBody;
use huitong_fuzz::{LOG_ORIGIN, log_signer, reset, scratch, sections, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let parts = sections(rest, 4);
    let dir = scratch("bundle");
    reset(&dir);
    let signer = log_signer();
    let note = if flags & 4 != 0 {
        let hashes: Vec<Hash> = parts[2]
            .chunks_exact(32)
            .filter_map(|c| merkle::hash_from_slice(c).ok())
            .collect();
        let size = parts[0].first().map_or(0, |b| *b as usize) % (hashes.len() + 1);
        let body = CheckpointBody {
            origin: LOG_ORIGIN.into(),
            size: size as u64,
            root: merkle::mth(&hashes[..size]),
        };
        match signer.sign_checkpoint(&body) {
            Ok(n) => n,
            Err(e) => panic!("the harness cannot sign a checkpoint: {e}"),
        }
    } else if flags & 1 != 0 {
        let text = String::from_utf8_lossy(parts[0]);
        signer.sign(&text).unwrap_or_else(|_| text.into_owned())
    } else {
        String::from_utf8_lossy(parts[0]).into_owned()
    };
    write(&dir.join(CHECKPOINT), note.as_bytes());
    write(&dir.join(ENTRIES), parts[1]);
    write(&dir.join(HASHES), parts[2]);
    if flags & 2 != 0 {
        write(&dir.join(CONSISTENCY), parts[3]);
    }
    let _ = bundle::verify(&dir, &signer.verifier_key());
});
