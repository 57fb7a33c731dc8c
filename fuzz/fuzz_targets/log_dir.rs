//! Opening the exchange log on a directory made from the input: `entries.log` frames,
//! `index.bin` records and a checkpoint, as a crash, a bad disk or a tamperer could leave
//! them. Open must refuse or recover, never panic; what it opens must read and prove.
//!
//! The first byte says which files exist; the rest is sections (see `huitong_fuzz::sections`):
//! entries.log, index.bin, the checkpoint, log.key. With bit 2 set the checkpoint section is a
//! body that the harness signs with the log's key, so that the checks behind the signature run.
#![no_main]

use huitong_audit::store::{CHECKPOINT_FILE, ENTRIES_FILE, INDEX_FILE, KEY_FILE};
use huitong_audit::{Log, LogOptions};
use huitong_fuzz::{LOG_ORIGIN, log_signer, reset, runtime, scratch, sections, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let parts = sections(rest, 4);
    let dir = scratch("log");
    reset(&dir);
    write(&dir.join(ENTRIES_FILE), parts[0]);
    if flags & 1 != 0 {
        write(&dir.join(INDEX_FILE), parts[1]);
    }
    if flags & 2 != 0 {
        let text = String::from_utf8_lossy(parts[2]);
        let note = if flags & 4 != 0 {
            log_signer()
                .sign(&text)
                .unwrap_or_else(|_| text.into_owned())
        } else {
            text.into_owned()
        };
        write(&dir.join(CHECKPOINT_FILE), note.as_bytes());
    }
    if flags & 8 != 0 {
        write(&dir.join(KEY_FILE), parts[3]);
    } else {
        write(
            &dir.join(KEY_FILE),
            log_signer().to_skey_string().as_bytes(),
        );
    }
    let options = LogOptions {
        origin: LOG_ORIGIN.into(),
        key_name: LOG_ORIGIN.into(),
        max_batch: 16,
    };
    let Ok(log) = Log::open(&dir, options) else {
        return;
    };
    // An opened log answers for every entry it holds.
    let size = log.size();
    let last = size.saturating_sub(1);
    let read = log.read(0, size.min(64));
    assert!(
        read.is_ok(),
        "an opened log cannot read its entries: {read:?}"
    );
    let _ = log.leaf_hashes(0, size.min(64));
    if size > 0 {
        let _ = log.inclusion_proof(last, size);
        let _ = log.consistency_proof(1, size);
        let _ = log.root_at(size);
    }
    let _ = log.latest_checkpoint();
    // One append and a checkpoint over what was recovered: the tree must still add up.
    let rt = runtime();
    let appended = rt.block_on(log.append(b"fuzz".to_vec()));
    if let Ok(receipt) = appended {
        assert_eq!(
            receipt.index, size,
            "the append did not land after the recovered entries"
        );
        let checkpoint = log.checkpoint();
        assert!(
            checkpoint.is_ok(),
            "no checkpoint over a recovered log: {checkpoint:?}"
        );
    }
    rt.block_on(log.close());
});
