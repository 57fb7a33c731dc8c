use super::*;

use crate::merkle::leaf_hash;

fn body() -> CheckpointBody {
    CheckpointBody {
        origin: "huitong.example/log".into(),
        size: 1234,
        root: leaf_hash(b"root"),
    }
}

fn signer(name: &str, byte: u8) -> Signer {
    Signer::from_seed(name, &[byte; 32]).unwrap()
}

/// The text after the blank line: the signature lines.
fn signature_lines(note: &str) -> &str {
    let split = note.rfind("\n\n").unwrap();
    &note[split + 2..]
}

#[test]
fn sign_verify_round_trip() {
    let s = Signer::generate("huitong.example/log").unwrap();
    let v = Verifier::from_vkey(&s.verifier_key()).unwrap();
    let note = s.sign_checkpoint(&body()).unwrap();
    assert!(note.starts_with(&body().encode()));
    assert_eq!(v.verify(&note).unwrap(), body());
    assert_eq!(s.verifier(), v);

    // The exact wire shape: body, blank line, one em-dash signature line of 4 + 64 bytes.
    let text = body().encode();
    let sig = signature_lines(&note);
    assert_eq!(note, format!("{text}\n{sig}"));
    let rest = sig.strip_prefix("\u{2014} huitong.example/log ").unwrap();
    let blob = B64.decode(rest.strip_suffix('\n').unwrap()).unwrap();
    assert_eq!(blob.len(), 68);
    assert_eq!(blob[..4], s.key_id().to_be_bytes());
}

#[test]
fn encode_is_the_tlog_checkpoint_form() {
    let b = CheckpointBody {
        origin: "example.com/log".into(),
        size: 0,
        root: crate::merkle::empty_root(),
    };
    assert_eq!(
        b.encode(),
        "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    );
    assert_eq!(CheckpointBody::parse(&b.encode()).unwrap(), b);
}

#[test]
fn any_flipped_byte_fails() {
    let s = signer("huitong.example/log", 3);
    let v = s.verifier();
    let note = s.sign_checkpoint(&body()).unwrap();
    let text_len = body().encode().len();

    // Every byte of the body (all ASCII here): changing it must break the signature.
    for i in 0..text_len {
        let mut bytes = note.clone().into_bytes();
        // Toggle between two printable characters so the note stays well-formed text where
        // possible; a newline that changes is a structural change, also rejected.
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(
            v.verify(&tampered).is_err(),
            "body byte {i} changed, still verified"
        );
    }

    // Every bit of the signature blob: a changed key id means the signature is not ours, a
    // changed signature must fail Ed25519.
    let sig = signature_lines(&note);
    let prefix = "\u{2014} huitong.example/log ";
    let blob = B64
        .decode(sig.strip_prefix(prefix).unwrap().trim_end())
        .unwrap();
    let text = &note[..text_len];
    for i in 0..blob.len() {
        for bit in 0..8 {
            let mut b = blob.clone();
            b[i] ^= 1 << bit;
            let tampered = format!("{text}\n{prefix}{}\n", B64.encode(&b));
            let err = v.verify(&tampered).unwrap_err();
            if i < 4 {
                assert!(matches!(err, NoteError::UnknownKeyId { .. }), "{err}");
            } else {
                assert!(matches!(err, NoteError::BadSignature { .. }), "{err}");
            }
        }
    }

    // And every character of the base64 text itself.
    let b64_start = note.len() - sig.len() + prefix.len();
    for i in b64_start..note.len() - 1 {
        let mut bytes = note.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(
            v.verify(&tampered).is_err(),
            "signature char {i} changed, still verified"
        );
    }
}

#[test]
fn foreign_signatures_do_not_hurt() {
    let log = signer("huitong.example/log", 1);
    let witness = signer("witness.example/w1", 2);
    let text = body().encode();
    let ours = log.sign(&text).unwrap();
    let theirs = witness.signature_line(&text).unwrap();

    // Witness line after ours, before ours, and a cosignature-shaped line of another length.
    let after = format!("{ours}{theirs}");
    let before = format!("{text}\n{theirs}{}", signature_lines(&ours));
    let cosig = format!(
        "{ours}\u{2014} witness.example/w2 {}\n",
        B64.encode([9u8; 4 + 8 + 64])
    );
    for note in [&after, &before, &cosig] {
        assert_eq!(log.verifier().verify(note).unwrap(), body(), "{note}");
    }
    assert_eq!(witness.verifier().verify(&after).unwrap(), body());
    // A note signed only by the witness is not ours.
    let only_witness = witness.sign(&text).unwrap();
    assert_eq!(
        log.verifier().verify(&only_witness),
        Err(NoteError::NoSignature {
            name: "huitong.example/log".into(),
            key_id: log.key_id()
        })
    );
    // Our name with someone else's key: named as an unknown key id.
    let impostor = signer("huitong.example/log", 7);
    let forged = impostor.sign(&text).unwrap();
    assert!(matches!(
        log.verifier().verify(&forged),
        Err(NoteError::UnknownKeyId { line: 5, found, expected, .. })
            if found == impostor.key_id() && expected == log.key_id()
    ));
    // ... but does not block our own valid signature next to it.
    let both = format!("{forged}{}", signature_lines(&ours));
    assert_eq!(log.verifier().verify(&both).unwrap(), body());
    // Two signatures by our key are ambiguous.
    let twice = format!("{ours}{}", signature_lines(&ours));
    assert!(matches!(
        log.verifier().verify(&twice),
        Err(NoteError::DuplicateSignature { .. })
    ));
}

#[test]
fn key_strings_round_trip() {
    let s = signer("huitong.example/log", 5);
    let vkey = s.verifier_key();
    let v = Verifier::from_vkey(&vkey).unwrap();
    assert_eq!(v.to_vkey(), vkey);
    assert_eq!(v.name(), "huitong.example/log");
    assert_eq!(v.key_id(), s.key_id());

    let skey = s.to_skey_string();
    assert!(skey.starts_with("PRIVATE+KEY+huitong.example/log+"));
    let s2 = Signer::from_skey_string(&skey).unwrap();
    assert_eq!(s2.verifier_key(), vkey);
    assert_eq!(s2.to_skey_string(), skey);
    // Ed25519 is deterministic: the same key signs the same text identically.
    let text = body().encode();
    assert_eq!(s2.sign(&text).unwrap(), s.sign(&text).unwrap());
    // The seed stays out of Debug output.
    let dbg = format!("{s:?}");
    assert!(
        dbg.contains("huitong.example/log") && !dbg.contains("seed"),
        "{dbg}"
    );
}

#[test]
fn key_id_known_answer() {
    // Recompute the key id by hand from its components.
    let name = "huitong.example/log";
    let s = signer(name, 0x42);
    let pair = Ed25519KeyPair::from_seed_unchecked(&[0x42; 32]).unwrap();
    let pk = pair.public_key().as_ref().to_vec();
    let mut msg = name.as_bytes().to_vec();
    msg.push(b'\n');
    msg.push(0x01);
    msg.extend_from_slice(&pk);
    let d = digest::digest(&digest::SHA256, &msg);
    let want = u32::from_be_bytes(d.as_ref()[..4].try_into().unwrap());
    assert_eq!(s.key_id(), want);
    let mut alg_pk = vec![0x01];
    alg_pk.extend_from_slice(&pk);
    assert_eq!(
        s.verifier_key(),
        format!("{name}+{want:08x}+{}", B64.encode(&alg_pk))
    );
}

// The example of golang.org/x/mod/sumdb/note (and of the C2SP signed-note spec's ecosystem):
// an independent implementation's keys and signature, checked byte for byte.
const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_NOTE_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn go_sumdb_note_known_answer() {
    let s = Signer::from_skey_string(GO_SKEY).unwrap();
    assert_eq!(s.verifier_key(), GO_VKEY);
    assert_eq!(s.to_skey_string(), GO_SKEY);
    assert_eq!(s.key_id(), 0xc74f20a3);
    let note = s.sign(GO_TEXT).unwrap();
    assert_eq!(note, format!("{GO_TEXT}\n{GO_NOTE_SIG}"));
    let v = Verifier::from_vkey(GO_VKEY).unwrap();
    assert_eq!(v.verify_text(&note).unwrap(), GO_TEXT);
    // Not a checkpoint, so `verify` names the body line it chokes on.
    assert!(matches!(
        v.verify(&note),
        Err(NoteError::MalformedBody { line: 2, .. })
    ));
}

#[test]
fn verifier_key_with_plus_in_base64() {
    // From transparency-dev/formats tests: the base64 part contains '+'.
    let v =
        Verifier::from_vkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6").unwrap();
    assert_eq!(v.name(), "TEST");
    assert_eq!(v.key_id(), 0x7997405c);
}

#[test]
fn malformed_keys_are_rejected() {
    let good = signer("log", 1).verifier_key();
    let (name_id, key) = good.rsplit_once('+').unwrap();
    let id = name_id.split_once('+').unwrap().1;

    assert!(matches!(
        Verifier::from_vkey("log+deadbeef"),
        Err(NoteError::MalformedKey { .. })
    ));
    // Wrong key id.
    let wrong = format!("log+{:08x}+{key}", u32::from_str_radix(id, 16).unwrap() ^ 1);
    assert!(matches!(
        Verifier::from_vkey(&wrong),
        Err(NoteError::KeyIdMismatch { .. })
    ));
    // Key id not 8 hex digits.
    for bad_id in ["1234567", "123456789", "1234567g", ""] {
        assert!(matches!(
            Verifier::from_vkey(&format!("log+{bad_id}+{key}")),
            Err(NoteError::MalformedKey { .. })
        ));
    }
    // Another name with this key: the id no longer matches.
    assert!(matches!(
        Verifier::from_vkey(&format!("other+{id}+{key}")),
        Err(NoteError::KeyIdMismatch { .. })
    ));
    // Unsupported algorithm byte.
    let mut raw = B64.decode(key).unwrap();
    raw[0] = 0x04;
    assert_eq!(
        Verifier::from_vkey(&format!("log+{id}+{}", B64.encode(&raw))),
        Err(NoteError::UnsupportedAlgorithm(0x04))
    );
    // Truncated key.
    raw[0] = 0x01;
    raw.pop();
    assert!(matches!(
        Verifier::from_vkey(&format!("log+{id}+{}", B64.encode(&raw))),
        Err(NoteError::MalformedKey { .. })
    ));
    assert!(matches!(
        Verifier::from_vkey(&format!("log+{id}+not base64")),
        Err(NoteError::MalformedKey { .. })
    ));
    // Signer keys: prefix required, and the id must match the derived public key.
    assert!(matches!(
        Signer::from_skey_string(&good),
        Err(NoteError::MalformedKey { kind: "signer", .. })
    ));
    let skey = signer("log", 1).to_skey_string();
    let other_id = skey.replacen(id, "00000000", 1);
    assert!(matches!(
        Signer::from_skey_string(&other_id),
        Err(NoteError::KeyIdMismatch { .. })
    ));
}

#[test]
fn key_name_rules() {
    for bad in ["", "a b", "a+b", "a\tb", "a\nb", "a\u{a0}b"] {
        assert!(
            matches!(
                Signer::from_seed(bad, &[1; 32]),
                Err(NoteError::InvalidKeyName { .. })
            ),
            "{bad:?}"
        );
    }
    for good in ["log", "huitong.example/log", "例子/日志", "a-b_c.d/e:f"] {
        Signer::from_seed(good, &[1; 32]).unwrap();
    }
}

#[test]
fn sign_refuses_bad_text() {
    let s = signer("log", 1);
    assert!(matches!(s.sign(""), Err(NoteError::InvalidText(_))));
    assert!(matches!(
        s.sign("no newline"),
        Err(NoteError::InvalidText(_))
    ));
    assert!(matches!(
        s.sign("tab\there\n"),
        Err(NoteError::InvalidText(_))
    ));
    let mut b = body();
    b.origin = "two\nlines".into();
    assert!(matches!(
        s.sign_checkpoint(&b),
        Err(NoteError::MalformedBody { .. })
    ));
}

#[test]
fn malformed_notes_are_rejected() {
    let s = signer("log", 1);
    let v = s.verifier();
    let text = body().encode();
    let note = s.sign(&text).unwrap();
    let sig = signature_lines(&note);
    let cases: Vec<(String, &str)> = vec![
        (note.trim_end().to_owned(), "no final newline"),
        (text.clone(), "no signatures"),
        (format!("{text}\n"), "blank line but no signatures"),
        (format!("{text}{sig}"), "no blank line"),
        (
            format!("{text}\n{}", sig.replacen('\u{2014}', "-", 1)),
            "hyphen not em dash",
        ),
        (
            format!("{text}\n{}", sig.replacen("\u{2014} ", "\u{2014}", 1)),
            "no space after dash",
        ),
        (
            format!("{text}\n{sig}\u{2014} w\n"),
            "line without signature",
        ),
        (
            format!("{text}\n{sig}\u{2014} w AAAA\n"),
            "signature too short",
        ),
        (
            format!("{text}\n{sig}\u{2014} a+b AAAAAAAA\n"),
            "bad foreign key name",
        ),
        (format!("{text}\n{sig}\u{2014} w !!!!\n"), "bad base64"),
    ];
    for (n, what) in &cases {
        let err = v.verify(n).unwrap_err();
        assert!(
            matches!(
                err,
                NoteError::MalformedNote(_) | NoteError::MalformedSignatureLine { .. }
            ),
            "{what}: {err}"
        );
    }
    // Line numbers count the whole note: 3 body lines, the blank line, then signatures.
    let extra = format!("{note}oops\n");
    assert!(matches!(
        v.verify(&extra),
        Err(NoteError::MalformedSignatureLine { line: 6, .. })
    ));
    // Too many signature lines.
    let foreign = format!("\u{2014} w {}\n", B64.encode([0u8; 68]));
    let many = format!("{note}{}", foreign.repeat(100));
    assert_eq!(
        v.verify(&many),
        Err(NoteError::MalformedNote("more than 100 signature lines"))
    );
}

#[test]
fn body_parse_is_strict() {
    let root = B64.encode(leaf_hash(b"r"));
    let ok = format!("o\n5\n{root}\n");
    assert_eq!(CheckpointBody::parse(&ok).unwrap().size, 5);

    let cases: Vec<(String, usize)> = vec![
        (format!("o\n5\n{root}"), 3),
        (String::new(), 1),
        (format!("\n5\n{root}\n"), 1),
        (format!("o\u{7}x\n5\n{root}\n"), 1),
        (format!("\u{2014} o\n5\n{root}\n"), 1),
        ("o\n".to_owned(), 2),
        (format!("o\n\n{root}\n"), 2),
        (format!("o\n05\n{root}\n"), 2),
        (format!("o\n+5\n{root}\n"), 2),
        (format!("o\n-5\n{root}\n"), 2),
        (format!("o\n 5\n{root}\n"), 2),
        (format!("o\n5 \n{root}\n"), 2),
        (format!("o\n18446744073709551616\n{root}\n"), 2),
        ("o\n5\n".to_owned(), 3),
        ("o\n5\n\n".to_owned(), 3),
        (format!("o\n5\n{}\n", &root[..root.len() - 1]), 3),
        (format!("o\n5\n{}\n", root.trim_end_matches('=')), 3),
        (format!("o\n5\n{}\n", B64.encode([1u8; 31])), 3),
        (format!("o\n5\n{}\n", B64.encode([1u8; 33])), 3),
        (
            format!("o\n5\n{}\n", root.replace('+', "-").replace('/', "_")),
            3,
        ),
        (format!("o\n5\n{root}\nextension\n"), 4),
        (format!("o\n5\n{root}\n\n"), 4),
    ];
    for (text, line) in cases {
        match CheckpointBody::parse(&text) {
            Err(NoteError::MalformedBody { line: got, reason }) => {
                assert_eq!(got, line, "{text:?}: {reason}")
            }
            other => panic!("{text:?} gave {other:?}"),
        }
    }
    // Size 0 and u64::MAX are fine.
    assert_eq!(
        CheckpointBody::parse(&format!("o\n0\n{root}\n"))
            .unwrap()
            .size,
        0
    );
    assert_eq!(
        CheckpointBody::parse(&format!("o\n18446744073709551615\n{root}\n"))
            .unwrap()
            .size,
        u64::MAX
    );
}

#[test]
fn non_canonical_base64_root_is_rejected() {
    // The last base64 character of a 32-byte value carries 2 unused bits; setting them gives
    // another spelling of the same bytes, which must not parse.
    let root = B64.encode(leaf_hash(b"r"));
    let last = root.as_bytes()[root.len() - 2];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pos = alphabet.iter().position(|&c| c == last).unwrap();
    let mut alt = root.clone().into_bytes();
    alt[root.len() - 2] = alphabet[pos ^ 1];
    let alt = String::from_utf8(alt).unwrap();
    assert!(matches!(
        CheckpointBody::parse(&format!("o\n5\n{alt}\n")),
        Err(NoteError::MalformedBody { line: 3, .. })
    ));
}
