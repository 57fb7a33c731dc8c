use std::cell::Cell;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use super::*;

// ---------------------------------------------------------------------------------------------
// Naive RFC 9162 reference algorithms, written as the RFC states them (recursive, all leaves in
// memory), so the efficient tree is checked against an independent formulation.

/// PATH(m, D[n]) of RFC 9162 §2.1.3.1.
fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n == 1 {
        return Vec::new();
    }
    let k = largest_power_of_two_below(n as u64) as usize;
    if m < k {
        let mut p = naive_path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// PROOF(m, D[n]) of RFC 9162 §2.1.4.1.
fn naive_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if b { Vec::new() } else { vec![mth(leaves)] };
        }
        let k = largest_power_of_two_below(n as u64) as usize;
        if m <= k {
            let mut p = subproof(m, &leaves[..k], b);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(mth(&leaves[..k]));
            p
        }
    }
    subproof(m, leaves, true)
}

fn test_leaves(n: usize) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
        .collect()
}

/// A leaf store that counts the leaf hashes read from it, to check the tree's I/O bounds.
struct Counting<'a> {
    inner: &'a [Hash],
    reads: Cell<u64>,
    leaves_read: Cell<u64>,
}

impl<'a> Counting<'a> {
    fn new(inner: &'a [Hash]) -> Self {
        Counting {
            inner,
            reads: Cell::new(0),
            leaves_read: Cell::new(0),
        }
    }

    fn take(&self) -> (u64, u64) {
        (self.reads.replace(0), self.leaves_read.replace(0))
    }
}

impl LeafHashes for Counting<'_> {
    fn len(&self) -> u64 {
        LeafHashes::len(self.inner)
    }

    fn read(&self, start: u64, out: &mut [Hash]) -> std::io::Result<()> {
        self.reads.set(self.reads.get() + 1);
        self.leaves_read
            .set(self.leaves_read.get() + out.len() as u64);
        LeafHashes::read(self.inner, start, out)
    }
}

/// Indices to probe in a tree of `size`: all of them for small trees, otherwise the edges,
/// tile boundaries and a spread in between.
fn probes(size: u64) -> Vec<u64> {
    if size <= 70 {
        return (0..size).collect();
    }
    let mut v = vec![0, 1, size / 2, size - 2, size - 1];
    let mut t = TILE_WIDTH;
    while t < size {
        v.extend([t - 1, t, t + 1]);
        t += TILE_WIDTH * 3 + 17;
    }
    v.extend((0..size).step_by((size / 23).max(1) as usize));
    v.retain(|&i| i < size);
    v.sort_unstable();
    v.dedup();
    v
}

fn sizes() -> Vec<u64> {
    let mut s: Vec<u64> = (1..=70).collect();
    s.extend([
        127, 128, 129, 255, 256, 257, 300, 511, 512, 513, 767, 768, 769, 1000, 1023, 1024, 1025,
        2048, 3000, 4095, 4096, 4097,
    ]);
    s
}

// ---------------------------------------------------------------------------------------------
// Hashing.

#[test]
fn hashing_matches_rfc_definitions() {
    let sha = |b: &[u8]| to_hash(digest::digest(&digest::SHA256, b));
    assert_eq!(empty_root(), sha(b""));
    assert_eq!(
        hex(&empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(leaf_hash(b"abc"), sha(b"\x00abc"));
    let (l, r) = (leaf_hash(b"l"), leaf_hash(b"r"));
    let mut buf = vec![1u8];
    buf.extend_from_slice(&l);
    buf.extend_from_slice(&r);
    assert_eq!(node_hash(&l, &r), sha(&buf));
    // RFC 6962 reference: the hash of the empty leaf.
    assert_eq!(
        hex(&leaf_hash(b"")),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
}

#[test]
fn mth_small_cases() {
    let l = test_leaves(3);
    assert_eq!(mth(&[]), empty_root());
    assert_eq!(mth(&l[..1]), l[0]);
    assert_eq!(mth(&l[..2]), node_hash(&l[0], &l[1]));
    assert_eq!(mth(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
}

#[test]
fn hash_from_slice_needs_32_bytes() {
    assert_eq!(hash_from_slice(&[7u8; 32]), Ok([7u8; 32]));
    assert_eq!(
        hash_from_slice(&[0u8; 31]),
        Err(ProofError::HashLength { len: 31 })
    );
    assert_eq!(hash_from_slice(&[]), Err(ProofError::HashLength { len: 0 }));
}

// ---------------------------------------------------------------------------------------------
// The shared reference vectors (transparency-dev/merkle testdata).

/// The RFC 9162 vectors (transparency-dev/merkle, Apache-2.0, LICENSE beside them), copied into
/// the crate so that the test runs wherever the repository is cloned.
fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/merkle")
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("bad base64 {s:?}: {e}"))
}

/// A hash field the verifier treats as a hash (leaf, proof node, inclusion root): must be 32
/// bytes, else the vector is rejected at the typed boundary, by `hash_from_slice`.
fn strict(v: &Value, key: &str) -> Result<Hash, ProofError> {
    hash_from_slice(&b64(v[key].as_str().unwrap_or("")))
}

/// A consistency root. The vectors for equal sizes use placeholder strings ("don't care 1") in
/// place of roots, because there the verifier only compares root1 with root2. A typed API
/// cannot take 12-byte roots, so such placeholders are mapped injectively into 32 bytes (bytes,
/// zero padding, length in the last byte): equal placeholders stay equal, different ones stay
/// different, which is all a verifier can observe about them.
fn consistency_root(v: &Value, key: &str) -> Hash {
    let bytes = b64(v[key].as_str().unwrap_or(""));
    if let Ok(h) = hash_from_slice(&bytes) {
        return h;
    }
    assert!(bytes.len() < 32, "placeholder root too long: {bytes:?}");
    let mut h = [0u8; 32];
    h[..bytes.len()].copy_from_slice(&bytes);
    h[31] = bytes.len() as u8;
    h
}

fn proof_field(v: &Value) -> Result<Vec<Hash>, ProofError> {
    match &v["proof"] {
        // Go's nil slice: an empty proof.
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| hash_from_slice(&b64(i.as_str().unwrap_or(""))))
            .collect(),
        other => panic!("proof is neither null nor a list: {other}"),
    }
}

fn number(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a u64: {}", v[key]))
}

fn run_inclusion_vector(v: &Value) -> Result<(), ProofError> {
    let leaf = strict(v, "leafHash")?;
    let root = strict(v, "root")?;
    let proof = proof_field(v)?;
    verify_inclusion(
        number(v, "leafIdx"),
        number(v, "treeSize"),
        &leaf,
        &proof,
        &root,
    )
}

fn run_consistency_vector(v: &Value) -> Result<(), ProofError> {
    let proof = proof_field(v)?;
    verify_consistency(
        number(v, "size1"),
        number(v, "size2"),
        &consistency_root(v, "root1"),
        &consistency_root(v, "root2"),
        &proof,
    )
}

#[test]
fn all_reference_vectors() {
    let dir = vectors_dir();
    assert!(
        dir.is_dir(),
        "the Merkle test vectors are missing: expected them at {} (crates/huitong-audit/testdata/merkle)",
        dir.display()
    );
    let mut failures = Vec::new();
    let mut counts = [0usize; 2];
    for (i, kind) in ["inclusion", "consistency"].iter().enumerate() {
        let sub = dir.join(kind);
        assert!(sub.is_dir(), "missing vector folder {}", sub.display());
        let mut files = Vec::new();
        json_files(&sub, &mut files);
        files.sort();
        assert!(!files.is_empty(), "no vectors under {}", sub.display());
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", f.display()));
            let want_err = v["wantErr"]
                .as_bool()
                .unwrap_or_else(|| panic!("{}: no wantErr", f.display()));
            let got = if i == 0 {
                run_inclusion_vector(&v)
            } else {
                run_consistency_vector(&v)
            };
            match (want_err, got) {
                (false, Err(e)) => {
                    failures.push(format!("{}: should verify, got: {e}", f.display()))
                }
                (true, Ok(())) => failures.push(format!("{}: should be rejected", f.display())),
                _ => {}
            }
            counts[i] += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "checked {} inclusion and {} consistency vectors",
        counts[0], counts[1]
    );
}

// ---------------------------------------------------------------------------------------------
// Verifier edge cases beyond the vectors.

#[test]
fn verify_rejects_tampering_precisely() {
    let leaves = test_leaves(13);
    let root = mth(&leaves);
    let proof = naive_path(5, &leaves);
    verify_inclusion(5, 13, &leaves[5], &proof, &root).unwrap();
    assert!(matches!(
        verify_inclusion(5, 13, &leaves[6], &proof, &root),
        Err(ProofError::RootMismatch { .. })
    ));
    assert!(matches!(
        verify_inclusion(13, 13, &leaves[5], &proof, &root),
        Err(ProofError::IndexOutOfRange {
            index: 13,
            tree_size: 13
        })
    ));
    assert!(matches!(
        verify_inclusion(5, 13, &leaves[5], &proof[1..], &root),
        Err(ProofError::WrongProofLength { got: 3, want: 4 })
    ));
    for i in 0..proof.len() {
        let mut p = proof.clone();
        p[i][0] ^= 1;
        assert!(verify_inclusion(5, 13, &leaves[5], &p, &root).is_err());
    }

    let root7 = mth(&leaves[..7]);
    let cproof = naive_proof(7, &leaves);
    verify_consistency(7, 13, &root7, &root, &cproof).unwrap();
    assert!(matches!(
        verify_consistency(7, 13, &root, &root, &cproof),
        Err(ProofError::OldRootMismatch { .. })
    ));
    assert!(matches!(
        verify_consistency(7, 13, &root7, &root7, &cproof),
        Err(ProofError::NewRootMismatch { .. })
    ));
    assert_eq!(
        verify_consistency(8, 7, &root, &root, &[]),
        Err(ProofError::Size1GreaterThanSize2 { size1: 8, size2: 7 })
    );
    assert_eq!(
        verify_consistency(0, 7, &empty_root(), &root7, &[]),
        Err(ProofError::EmptyFirstTree)
    );
    assert_eq!(
        verify_consistency(7, 13, &root7, &root, &[]),
        Err(ProofError::EmptyProof)
    );
    assert!(matches!(
        verify_consistency(7, 7, &root7, &root7, &cproof),
        Err(ProofError::NonEmptyProofForEqualSizes { size: 7, .. })
    ));
    assert!(matches!(
        verify_consistency(7, 7, &root7, &root, &[]),
        Err(ProofError::EqualSizesDifferentRoots { size: 7, .. })
    ));
    verify_consistency(7, 7, &root7, &root7, &[]).unwrap();
    for i in 0..cproof.len() {
        let mut p = cproof.clone();
        p[i][31] ^= 0x80;
        assert!(verify_consistency(7, 13, &root7, &root, &p).is_err());
    }
}

#[test]
fn verify_survives_extreme_sizes() {
    // Sizes near u64::MAX must give errors, not overflow panics.
    let h = leaf_hash(b"x");
    assert!(verify_inclusion(u64::MAX, u64::MAX, &h, &[h; 64], &h).is_err());
    assert!(verify_inclusion(u64::MAX - 1, u64::MAX, &h, &[h; 64], &h).is_err());
    assert!(verify_inclusion(0, u64::MAX, &h, &[], &h).is_err());
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &h, &h, &[h; 3]).is_err());
    assert!(verify_consistency(1, u64::MAX, &h, &h, &[h; 64]).is_err());
    assert!(verify_consistency(u64::MAX, u64::MAX, &h, &h, &[]).is_ok());
}

// ---------------------------------------------------------------------------------------------
// The tree against the naive algorithms.

#[test]
fn tree_matches_naive_roots_and_proofs() {
    let all = test_leaves(4097 + 300);
    let big = Tree::rebuild(&all).unwrap();
    let big_store = Counting::new(&all);
    for size in sizes() {
        let leaves = &all[..size as usize];
        let exact = Tree::rebuild(leaves).unwrap();
        let store = Counting::new(leaves);
        let want_root = mth(leaves);
        assert_eq!(exact.size(), size);
        assert_eq!(exact.root(), want_root, "root of size {size}");
        assert_eq!(store.take(), (0, 0), "root() read leaves");
        assert_eq!(exact.root_at(size, &store).unwrap(), want_root);
        assert_eq!(
            big.root_at(size, &big_store).unwrap(),
            want_root,
            "root_at({size})"
        );
        assert!(big_store.take().0 <= 1, "root_at reads at most one tile");

        for index in probes(size) {
            let want = naive_path(index as usize, leaves);
            for (tree, st) in [(&exact, &store), (&big, &big_store)] {
                let got = tree.inclusion_proof(index, size, st).unwrap();
                assert_eq!(got, want, "inclusion proof of {index} in {size}");
                let (reads, read) = st.take();
                assert!(
                    reads <= 2 && read <= 2 * TILE_WIDTH,
                    "{reads} reads, {read} leaves"
                );
                verify_inclusion(index, size, &leaves[index as usize], &got, &want_root)
                    .unwrap_or_else(|e| panic!("inclusion {index} in {size}: {e}"));
            }
        }
        let mut olds: Vec<u64> = probes(size + 1).into_iter().filter(|&s| s > 0).collect();
        olds.push(size);
        for size1 in olds {
            let want = naive_proof(size1 as usize, leaves);
            let root1 = mth(&all[..size1 as usize]);
            for (tree, st) in [(&exact, &store), (&big, &big_store)] {
                let got = tree.consistency_proof(size1, size, st).unwrap();
                assert_eq!(got, want, "consistency proof {size1} -> {size}");
                let (reads, read) = st.take();
                assert!(
                    reads <= 2 && read <= 2 * TILE_WIDTH,
                    "{reads} reads, {read} leaves"
                );
                verify_consistency(size1, size, &root1, &want_root, &got)
                    .unwrap_or_else(|e| panic!("consistency {size1} -> {size}: {e}"));
            }
        }
    }
}

#[test]
fn every_pair_in_small_trees() {
    // Exhaustive over all (index, size) and (size1, size2) up to 70 on one tree.
    let all = test_leaves(70);
    let tree = Tree::rebuild(&all).unwrap();
    let roots: Vec<Hash> = (0..=70).map(|n| mth(&all[..n])).collect();
    for size in 1..=70u64 {
        assert_eq!(tree.root_at(size, &all).unwrap(), roots[size as usize]);
        for index in 0..size {
            let p = tree.inclusion_proof(index, size, &all).unwrap();
            assert_eq!(p, naive_path(index as usize, &all[..size as usize]));
            verify_inclusion(index, size, &all[index as usize], &p, &roots[size as usize]).unwrap();
        }
        for size1 in 1..=size {
            let p = tree.consistency_proof(size1, size, &all).unwrap();
            assert_eq!(p, naive_proof(size1 as usize, &all[..size as usize]));
            verify_consistency(
                size1,
                size,
                &roots[size1 as usize],
                &roots[size as usize],
                &p,
            )
            .unwrap();
        }
    }
}

#[test]
fn push_in_odd_chunks_equals_rebuild() {
    let all = test_leaves(3 * 256 * 5 + 77);
    for chunk in [1usize, 3, 7, 100, 255, 256, 257, 1000] {
        let mut tree = Tree::new();
        assert_eq!(tree.root(), empty_root());
        let mut done = 0;
        let mut step = chunk;
        while done < all.len() {
            let end = (done + step).min(all.len());
            tree.push(&all[done..end]);
            done = end;
            // Vary the chunk a little so pushes straddle tile boundaries at different offsets.
            step = chunk + done % 5;
            assert_eq!(tree.size(), done as u64);
            if done % 3 == 0 || done == all.len() {
                assert_eq!(tree.root(), mth(&all[..done]), "chunk {chunk}, size {done}");
            }
        }
        let rebuilt = Tree::rebuild(&all).unwrap();
        assert_eq!(tree.upper, rebuilt.upper, "chunk {chunk}");
        assert_eq!(tree.tail.levels, rebuilt.tail.levels, "chunk {chunk}");
        assert_eq!(tree.size, rebuilt.size);
        let n = all.len() as u64;
        assert_eq!(
            tree.inclusion_proof(300, n, &all).unwrap(),
            rebuilt.inclusion_proof(300, n, &all).unwrap()
        );
    }
}

#[test]
fn rebuild_streams_in_chunks() {
    // 64-tile chunks: a store of 2.5 chunks is read in three full-tile reads plus the tail.
    let all = test_leaves(64 * 256 * 2 + 32 * 256 + 5);
    let store = Counting::new(&all);
    let tree = Tree::rebuild(&store).unwrap();
    let (reads, read) = store.take();
    assert_eq!(read, all.len() as u64);
    assert_eq!(reads, 4);
    assert_eq!(tree.root(), mth(&all));
}

#[test]
fn tree_errors_are_precise() {
    let all = test_leaves(600);
    let tree = Tree::rebuild(&all).unwrap();
    assert!(matches!(
        tree.inclusion_proof(10, 10, &all),
        Err(TreeError::IndexOutOfRange {
            index: 10,
            size: 10
        })
    ));
    assert!(matches!(
        tree.inclusion_proof(0, 0, &all),
        Err(TreeError::IndexOutOfRange { index: 0, size: 0 })
    ));
    assert!(matches!(
        tree.inclusion_proof(0, 601, &all),
        Err(TreeError::SizeBeyondTree {
            size: 601,
            tree_size: 600
        })
    ));
    assert!(matches!(
        tree.root_at(601, &all),
        Err(TreeError::SizeBeyondTree {
            size: 601,
            tree_size: 600
        })
    ));
    assert!(matches!(
        tree.consistency_proof(5, 4, &all),
        Err(TreeError::Size1GreaterThanSize2 { size1: 5, size2: 4 })
    ));
    assert!(matches!(
        tree.consistency_proof(0, 4, &all),
        Err(TreeError::EmptyFirstTree)
    ));
    assert!(matches!(
        tree.consistency_proof(5, 700, &all),
        Err(TreeError::SizeBeyondTree {
            size: 700,
            tree_size: 600
        })
    ));
    assert_eq!(
        tree.consistency_proof(9, 9, &all).unwrap(),
        Vec::<Hash>::new()
    );
    assert_eq!(tree.root_at(0, &all).unwrap(), empty_root());
    // A leaf store behind the tree is named, not read past.
    let short = &all[..300];
    assert!(matches!(
        tree.inclusion_proof(280, 600, short),
        Err(TreeError::LeavesMissing {
            tree_size: 600,
            available: 300
        })
    ));
    // Failing reads come back as I/O errors.
    struct Broken;
    impl LeafHashes for Broken {
        fn len(&self) -> u64 {
            1000
        }
        fn read(&self, _: u64, _: &mut [Hash]) -> std::io::Result<()> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    assert!(matches!(
        tree.inclusion_proof(3, 600, &Broken),
        Err(TreeError::Io(_))
    ));
    assert!(Tree::rebuild(&Broken).is_err());
    // Proofs at the current size that stay within the in-memory tail need no store at all.
    assert_eq!(
        tree.inclusion_proof(599, 600, &[] as &[Hash]).unwrap(),
        naive_path(599, &all)
    );
}

#[test]
fn slice_store_bounds() {
    let all = test_leaves(4);
    let mut out = [[0u8; 32]; 2];
    LeafHashes::read(&all, 2, &mut out).unwrap();
    assert_eq!(out, [all[2], all[3]]);
    assert!(LeafHashes::read(&all, 3, &mut out).is_err());
    assert!(LeafHashes::read(&all, u64::MAX, &mut out).is_err());
    assert!(!LeafHashes::is_empty(&all));
}

/// Timing at 10^6 leaves; run with
/// `cargo test -p huitong-audit --release merkle::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore = "timing report, not a check"]
fn timing_at_one_million() {
    use std::time::Instant;
    const N: u64 = 1_000_000;
    let t = Instant::now();
    let all: Vec<Hash> = (0..N).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    eprintln!("hash {N} leaves: {:?}", t.elapsed());

    let t = Instant::now();
    let tree = Tree::rebuild(&all).unwrap();
    eprintln!("rebuild: {:?}", t.elapsed());

    let t = Instant::now();
    let mut pushed = Tree::new();
    for c in all.chunks(100) {
        pushed.push(c);
    }
    eprintln!("push in chunks of 100: {:?}", t.elapsed());

    let t = Instant::now();
    let root = tree.root();
    eprintln!("root(): {:?}", t.elapsed());
    assert_eq!(root, pushed.root());

    let rounds = 2000u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let t = Instant::now();
    for _ in 0..rounds {
        let size = N - next() % 1000;
        let index = next() % size;
        let p = tree.inclusion_proof(index, size, &all).unwrap();
        std::hint::black_box(p);
    }
    eprintln!(
        "inclusion proof (past size): {:?} each",
        t.elapsed() / rounds as u32
    );

    let t = Instant::now();
    for _ in 0..rounds {
        let index = next() % N;
        let p = tree.inclusion_proof(index, N, &all).unwrap();
        std::hint::black_box(p);
    }
    eprintln!(
        "inclusion proof (current size): {:?} each",
        t.elapsed() / rounds as u32
    );

    let t = Instant::now();
    for _ in 0..rounds {
        let size2 = N - next() % 1000;
        let size1 = 1 + next() % size2;
        let p = tree.consistency_proof(size1, size2, &all).unwrap();
        std::hint::black_box(p);
    }
    eprintln!("consistency proof: {:?} each", t.elapsed() / rounds as u32);

    let t = Instant::now();
    for _ in 0..rounds {
        let size = N - next() % 1000;
        std::hint::black_box(tree.root_at(size, &all).unwrap());
    }
    eprintln!(
        "root_at (past size): {:?} each",
        t.elapsed() / rounds as u32
    );

    let index = 123_457;
    let p = tree.inclusion_proof(index, N, &all).unwrap();
    let t = Instant::now();
    for _ in 0..rounds {
        verify_inclusion(index, N, &all[index as usize], &p, &root).unwrap();
    }
    eprintln!("verify_inclusion: {:?} each", t.elapsed() / rounds as u32);
    eprintln!(
        "memory: {} upper hashes ({} KiB)",
        tree.upper.iter().map(Vec::len).sum::<usize>(),
        tree.upper.iter().map(Vec::len).sum::<usize>() * 32 / 1024
    );
}
