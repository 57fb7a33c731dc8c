//! Checkpoints and signed notes as witnesses, auditors and a restarted broker read them:
//! bodies, notes with any signatures, verifier and signer key strings. Also the promises the
//! format makes: a body parses only in its one canonical text, and what the log signs verifies.
#![no_main]

use huitong_audit::note::{CheckpointBody, Signer, Verifier};
use huitong_fuzz::{log_signer, sections};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let ours = log_signer().verifier();
    match which % 5 {
        0 => {
            if let Ok(body) = CheckpointBody::parse(&text) {
                assert_eq!(
                    body.encode(),
                    text,
                    "a checkpoint body parsed from a non-canonical text"
                );
            }
        }
        1 => {
            let _ = ours.verify(&text);
            let _ = ours.verify_text(&text);
        }
        2 => {
            let parts = sections(rest, 2);
            let vkey = String::from_utf8_lossy(parts[0]);
            if let Ok(v) = Verifier::from_vkey(&vkey) {
                assert!(
                    Verifier::from_vkey(&v.to_vkey()).is_ok(),
                    "a verifier key does not read back: {vkey:?}"
                );
                let _ = v.verify(&String::from_utf8_lossy(parts[1]));
            }
        }
        3 => {
            if let Ok(s) = Signer::from_skey_string(&text) {
                let _ = Verifier::from_vkey(&s.verifier_key());
            }
        }
        _ => {
            if let Ok(note) = log_signer().sign(&text) {
                let verified = ours.verify_text(&note);
                assert_eq!(
                    verified.ok(),
                    Some(text.as_ref()),
                    "a note the log signed does not verify: {note:?}"
                );
            }
        }
    }
});
