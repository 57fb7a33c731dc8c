//! Signed checkpoints in the C2SP formats, so that third-party witnesses and verifiers can read
//! them: the body is a [tlog-checkpoint], wrapped in a [signed-note] signed with Ed25519.
//!
//! A signed checkpoint looks like this (the signature line starts with U+2014 EM DASH):
//!
//! ```text
//! <origin, e.g. huitong.example/log>
//! <tree size in decimal>
//! <base64 of the 32-byte root hash>
//!
//! — <key name> <base64 of key id (4 bytes) and Ed25519 signature (64 bytes)>
//! — <other signers, e.g. witnesses: ignored unless they claim this key's name>
//! ```
//!
//! Keys are the signed-note text forms: verifier `<name>+<key id hex>+<base64(0x01 || public
//! key)>`, signer `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>`, where the key id is
//! the first four bytes of `SHA-256(name || "\n" || 0x01 || public key)`.
//!
//! [tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
//! [signed-note]: https://c2sp.org/signed-note

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::digest;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

use crate::merkle::Hash;

#[cfg(test)]
mod tests;

/// The signed-note algorithm byte for Ed25519.
pub const ALG_ED25519: u8 = 0x01;

/// Signature lines start with an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Prefix of a signer key string.
const SKEY_PREFIX: &str = "PRIVATE+KEY+";

/// Notes from elsewhere (witnesses add cosignatures) are bounded, so that a hostile note cannot
/// make verification parse without limit; C2SP verifiers commonly cap at 100 as well.
const MAX_SIGNATURES: usize = 100;

/// Why a key, note or checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    #[error("invalid key name {name:?}: {reason}")]
    InvalidKeyName { name: String, reason: &'static str },
    #[error("malformed {kind} key: {reason}")]
    MalformedKey { kind: &'static str, reason: String },
    #[error("unsupported signature algorithm {0:#04x} (only Ed25519, 0x01, is supported)")]
    UnsupportedAlgorithm(u8),
    #[error(
        "key id mismatch: the key string says {stated:08x} but the key hashes to {computed:08x}"
    )]
    KeyIdMismatch { stated: u32, computed: u32 },
    #[error("the seed is not a usable Ed25519 key: {0}")]
    BadSeed(String),
    #[error("the system random number generator failed")]
    Random,
    #[error("text cannot be signed as a note: {0}")]
    InvalidText(&'static str),
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    #[error("malformed signature on note line {line}: {reason}")]
    MalformedSignatureLine { line: usize, reason: String },
    #[error("no signature by key {name}+{key_id:08x}")]
    NoSignature { name: String, key_id: u32 },
    #[error(
        "unknown key id: note line {line} is signed by {name} with key id {found:08x}, \
         but this verifier's key id is {expected:08x} (a different key under the same name)"
    )]
    UnknownKeyId {
        line: usize,
        name: String,
        found: u32,
        expected: u32,
    },
    #[error("more than one signature by key {name}+{key_id:08x}")]
    DuplicateSignature { name: String, key_id: u32 },
    #[error(
        "bad signature by key {name}+{key_id:08x}: the note was altered or not signed by this key"
    )]
    BadSignature { name: String, key_id: u32 },
    #[error("malformed checkpoint body, line {line}: {reason}")]
    MalformedBody { line: usize, reason: String },
}

fn body_err(line: usize, reason: impl Into<String>) -> NoteError {
    NoteError::MalformedBody {
        line,
        reason: reason.into(),
    }
}

/// A tlog-checkpoint body: the log's origin, its size and its root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointBody {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl CheckpointBody {
    /// `<origin>\n<size>\n<base64 root>\n`. The origin is not checked here; signing goes
    /// through [`Signer::sign_checkpoint`], which refuses a body that would not parse back.
    pub fn encode(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a body strictly: exactly the three lines, each in its one canonical form, so
    /// that a checkpoint has one text and therefore one signature.
    pub fn parse(text: &str) -> Result<CheckpointBody, NoteError> {
        let Some(body) = text.strip_suffix('\n') else {
            let line = text.split('\n').count();
            return Err(body_err(line, "the body does not end with a newline"));
        };
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        check_origin(origin)?;

        let size = lines
            .next()
            .ok_or_else(|| body_err(2, "missing: the tree size"))?;
        let size = parse_size(size)?;

        let root = lines
            .next()
            .ok_or_else(|| body_err(3, "missing: the root hash"))?;
        let root = parse_root(root)?;

        if lines.next().is_some() {
            return Err(body_err(
                4,
                "extension lines are not part of this log's checkpoints",
            ));
        }
        Ok(CheckpointBody {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn check_origin(origin: &str) -> Result<(), NoteError> {
    if origin.is_empty() {
        return Err(body_err(1, "the origin is empty"));
    }
    if origin.chars().any(char::is_control) {
        return Err(body_err(1, "the origin contains a control character"));
    }
    // A line starting with the em dash would read as a signature line.
    if origin.starts_with('\u{2014}') {
        return Err(body_err(1, "the origin starts with an em dash"));
    }
    Ok(())
}

fn parse_size(s: &str) -> Result<u64, NoteError> {
    if s.is_empty() {
        return Err(body_err(2, "the tree size is empty"));
    }
    // u64::from_str would accept a leading '+'; the format is plain decimal digits.
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(body_err(
            2,
            format!("the tree size {s:?} is not a decimal number"),
        ));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(body_err(
            2,
            format!("the tree size {s:?} has a leading zero"),
        ));
    }
    s.parse()
        .map_err(|_| body_err(2, format!("the tree size {s:?} does not fit in 64 bits")))
}

fn parse_root(s: &str) -> Result<Hash, NoteError> {
    let bytes = B64
        .decode(s)
        .map_err(|e| body_err(3, format!("the root hash is not standard base64: {e}")))?;
    let root: Hash = bytes
        .as_slice()
        .try_into()
        .map_err(|_| body_err(3, format!("the root hash is {} bytes, not 32", bytes.len())))?;
    // The decoder already refuses stray trailing bits; comparing with the re-encoding also pins
    // the padding, so only the one canonical spelling is accepted.
    if B64.encode(root) != s {
        return Err(body_err(3, "the root hash is not in canonical base64"));
    }
    Ok(root)
}

/// Checks a key name: non-empty, no whitespace, no '+' (which separates key string fields).
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.chars().any(char::is_whitespace) {
        "it contains whitespace"
    } else if name.contains('+') {
        "it contains '+'"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(NoteError::InvalidKeyName {
        name: name.to_owned(),
        reason,
    })
}

/// The signed-note key id of an Ed25519 key: the first four bytes, big-endian, of
/// `SHA-256(name || "\n" || 0x01 || public key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public_key);
    let d = ctx.finish();
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Splits `<name>+<key id hex>+<base64(alg || key)>` (the base64 may itself contain '+') and
/// checks the name, key id syntax and algorithm; returns the name, stated key id and 32 key
/// bytes.
fn split_key<'a>(s: &'a str, kind: &'static str) -> Result<(&'a str, u32, [u8; 32]), NoteError> {
    let malformed = |reason: String| NoteError::MalformedKey { kind, reason };
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("expected <name>+<key id>+<key>".into()));
    };
    check_key_name(name)?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(format!(
            "the key id {id:?} is not 8 hexadecimal digits"
        )));
    }
    let stated =
        u32::from_str_radix(id, 16).map_err(|e| malformed(format!("the key id {id:?}: {e}")))?;
    let bytes = B64
        .decode(key)
        .map_err(|e| malformed(format!("the key is not standard base64: {e}")))?;
    let Some((&alg, key)) = bytes.split_first() else {
        return Err(malformed("the key is empty".into()));
    };
    if alg != ALG_ED25519 {
        return Err(NoteError::UnsupportedAlgorithm(alg));
    }
    let key: [u8; 32] = key.try_into().map_err(|_| {
        malformed(format!(
            "an Ed25519 key is 32 bytes, this one is {}",
            key.len()
        ))
    })?;
    Ok((name, stated, key))
}

fn vkey_string(name: &str, id: u32, public_key: &[u8; 32]) -> String {
    let mut key = Vec::with_capacity(33);
    key.push(ALG_ED25519);
    key.extend_from_slice(public_key);
    format!("{name}+{id:08x}+{}", B64.encode(key))
}

/// Checks that text can be the signed part of a note: non-empty, ends with a newline, and
/// holds no control characters but newlines (signed-note rules).
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() {
        return Err(NoteError::InvalidText("the text is empty"));
    }
    if !text.ends_with('\n') {
        return Err(NoteError::InvalidText(
            "the text does not end with a newline",
        ));
    }
    if text.chars().any(|c| c != '\n' && c.is_control()) {
        return Err(NoteError::InvalidText(
            "the text contains a control character other than newline",
        ));
    }
    Ok(())
}

/// Signs notes with an Ed25519 key.
pub struct Signer {
    name: String,
    key_id: u32,
    public_key: [u8; 32],
    // Kept only so that the key can be written back out (`to_skey_string`); ring does not give
    // the seed back from a key pair.
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl fmt::Debug for Signer {
    // The seed must never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a 32-byte Ed25519 seed (RFC 8032 private key) and a key name.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Signer, NoteError> {
        check_key_name(name)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| NoteError::BadSeed(e.to_string()))?;
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(pair.public_key().as_ref());
        Ok(Signer {
            name: name.to_owned(),
            key_id: key_id(name, &public_key),
            public_key,
            seed: *seed,
            pair,
        })
    }

    /// A new random key from the system's random number generator.
    pub fn generate(name: &str) -> Result<Signer, NoteError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| NoteError::Random)?;
        Signer::from_seed(name, &seed)
    }

    /// Reads `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`, checking the key id
    /// against the key.
    pub fn from_skey_string(s: &str) -> Result<Signer, NoteError> {
        let rest = s
            .strip_prefix(SKEY_PREFIX)
            .ok_or_else(|| NoteError::MalformedKey {
                kind: "signer",
                reason: format!("it does not start with {SKEY_PREFIX}"),
            })?;
        let (name, stated, seed) = split_key(rest, "signer")?;
        let signer = Signer::from_seed(name, &seed)?;
        if signer.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                stated,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`: the form to store the key in.
    pub fn to_skey_string(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_ED25519);
        key.extend_from_slice(&self.seed);
        format!(
            "{SKEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(key)
        )
    }

    /// `<name>+<key id>+<base64(0x01 || public key)>`: the form to give verifiers.
    pub fn verifier_key(&self) -> String {
        vkey_string(&self.name, self.key_id, &self.public_key)
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: self.public_key,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature line `— <name> <base64(key id || signature)>\n` over `text`, for adding
    /// to a note that others sign too.
    pub fn signature_line(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.pair.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(sig.as_ref());
        Ok(format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob)))
    }

    /// The signed note: `text`, a blank line, and this key's signature line. `text` must be
    /// non-empty, end with a newline and hold no other control characters.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        let line = self.signature_line(text)?;
        Ok(format!("{text}\n{line}"))
    }

    /// Signs a checkpoint, refusing one whose encoding would not parse back to itself (an
    /// origin with a newline, say), so that every checkpoint this log signs also verifies.
    pub fn sign_checkpoint(&self, body: &CheckpointBody) -> Result<String, NoteError> {
        let text = body.encode();
        CheckpointBody::parse(&text)?;
        self.sign(&text)
    }
}

/// Verifies notes signed by one Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    public_key: [u8; 32],
}

impl Verifier {
    /// Reads `<name>+<key id>+<base64(0x01 || public key)>`, checking the key id against the
    /// name and key.
    pub fn from_vkey(s: &str) -> Result<Verifier, NoteError> {
        let (name, stated, public_key) = split_key(s, "verifier")?;
        let computed = key_id(name, &public_key);
        if computed != stated {
            return Err(NoteError::KeyIdMismatch { stated, computed });
        }
        Ok(Verifier {
            name: name.to_owned(),
            key_id: computed,
            public_key,
        })
    }

    /// The verifier key string.
    pub fn to_vkey(&self) -> String {
        vkey_string(&self.name, self.key_id, &self.public_key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Verifies a signed checkpoint and returns its body. Signatures by other keys (witness
    /// cosignatures) are allowed and left unchecked; this key's must be present exactly once
    /// and valid.
    pub fn verify(&self, note: &str) -> Result<CheckpointBody, NoteError> {
        let text = self.verify_text(note)?;
        CheckpointBody::parse(text)
    }

    /// Verifies a signed note of any content and returns the signed text (ending in newline).
    pub fn verify_text<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, sigs) = split_note(note)?;
        let mut ours = None;
        let mut same_name = None;
        for sig in &sigs {
            if sig.name != self.name {
                continue;
            }
            if sig.key_id != self.key_id {
                same_name.get_or_insert(sig);
                continue;
            }
            if ours.replace(sig).is_some() {
                return Err(NoteError::DuplicateSignature {
                    name: self.name.clone(),
                    key_id: self.key_id,
                });
            }
        }
        let Some(sig) = ours else {
            return Err(match same_name {
                Some(other) => NoteError::UnknownKeyId {
                    line: other.line,
                    name: self.name.clone(),
                    found: other.key_id,
                    expected: self.key_id,
                },
                None => NoteError::NoSignature {
                    name: self.name.clone(),
                    key_id: self.key_id,
                },
            });
        };
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(text.as_bytes(), &sig.signature)
            .map_err(|_| NoteError::BadSignature {
                name: self.name.clone(),
                key_id: self.key_id,
            })?;
        Ok(text)
    }
}

/// One parsed signature line.
#[derive(Debug)]
struct SignatureLine<'a> {
    /// 1-based line number in the whole note.
    line: usize,
    name: &'a str,
    key_id: u32,
    signature: Vec<u8>,
}

/// Splits a note at its last blank line into the signed text (with its final newline) and the
/// parsed signature lines. Every signature line must be well-formed, ours or not.
fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    if !note.ends_with('\n') {
        return Err(NoteError::MalformedNote("it does not end with a newline"));
    }
    let Some(split) = note.rfind("\n\n") else {
        return Err(NoteError::MalformedNote(
            "no blank line separates the text from the signatures",
        ));
    };
    let text = &note[..split + 1];
    let block = &note[split + 2..];
    if block.is_empty() {
        return Err(NoteError::MalformedNote(
            "no signature lines after the blank line",
        ));
    }
    // The text's lines, then the blank line, then the signatures.
    let first_sig_line = text.matches('\n').count() + 2;
    let mut sigs = Vec::new();
    // `block` ends with the note's final newline; it holds no blank line (the split is at the last).
    let block = block.strip_suffix('\n').unwrap_or(block);
    for (i, line) in block.split('\n').enumerate() {
        let line_no = first_sig_line + i;
        if i == MAX_SIGNATURES {
            return Err(NoteError::MalformedNote("more than 100 signature lines"));
        }
        sigs.push(parse_signature_line(line, line_no)?);
    }
    Ok((text, sigs))
}

fn parse_signature_line(line: &str, line_no: usize) -> Result<SignatureLine<'_>, NoteError> {
    let bad = |reason: String| NoteError::MalformedSignatureLine {
        line: line_no,
        reason,
    };
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or_else(|| bad("it does not start with an em dash (U+2014) and a space".into()))?;
    let (name, blob) = rest
        .split_once(' ')
        .ok_or_else(|| bad("expected a key name, a space and a base64 signature".into()))?;
    check_key_name(name).map_err(|e| bad(e.to_string()))?;
    let bytes = B64
        .decode(blob)
        .map_err(|e| bad(format!("the signature is not standard base64: {e}")))?;
    // Four bytes of key id and at least one of signature.
    if bytes.len() < 5 {
        return Err(bad(format!(
            "the signature is {} bytes, too short to hold a key id and a signature",
            bytes.len()
        )));
    }
    Ok(SignatureLine {
        line: line_no,
        name,
        key_id: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        signature: bytes[4..].to_vec(),
    })
}
