//! RFC 9162 Merkle tree hashing, proof verification, and a proof-serving tree for large logs.
//!
//! Hashing follows RFC 9162 §2.1.1: a leaf is `SHA-256(0x00 || data)`, an interior node
//! `SHA-256(0x01 || left || right)`, and the empty tree hashes to `SHA-256("")`.
//!
//! [`verify_inclusion`] and [`verify_consistency`] are the verification algorithms of RFC 9162
//! §2.1.3.2 and §2.1.4.2; they need nothing but the proof, so auditors can run them offline.
//!
//! [`Tree`] serves roots and proofs for a log whose leaf hashes live on disk (see
//! [`LeafHashes`]). It keeps in memory only the hash of every complete 256-leaf tile and the
//! levels above it (about `2 * n / 256 * 32` bytes, 2.5 MB at 10^7 leaves) plus the leaves of
//! the current partial tile. Any node below tile height is recomputed from one 256-leaf read,
//! and every proof touches at most two tiles: the one holding the proven leaf (or the old
//! tree's last leaf) and the one at the right edge of the tree. Appending reads nothing.

use ring::digest;

#[cfg(test)]
mod tests;

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// Height of the subtrees whose hashes the [`Tree`] keeps: 2^8 = 256 leaves.
pub const TILE_HEIGHT: u32 = 8;
/// Leaves per tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// `SHA-256(0x00 || data)`: the hash of one log entry.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    to_hash(ctx.finish())
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One contiguous buffer and a one-shot digest: this is the hot path of tree building.
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    to_hash(digest::digest(&digest::SHA256, &buf))
}

/// `SHA-256("")`: the root of the empty tree.
pub fn empty_root() -> Hash {
    to_hash(digest::digest(&digest::SHA256, b""))
}

fn to_hash(d: digest::Digest) -> Hash {
    let mut h = [0u8; 32];
    // SHA-256 digests are always 32 bytes; copying from the fixed-size slice cannot fail.
    h.copy_from_slice(d.as_ref());
    h
}

/// Converts bytes received from outside (a proof in a message, a root in a file) to a [`Hash`],
/// rejecting anything that is not exactly 32 bytes.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, ProofError> {
    bytes
        .try_into()
        .map_err(|_| ProofError::HashLength { len: bytes.len() })
}

/// Lowercase hex of a hash or any bytes: for messages, JSON exports and index keys. The one
/// hex encoder of the log crates; it runs per entry when indexing, so it does not go through
/// `fmt`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The Merkle Tree Hash of RFC 9162 §2.1.1, computed directly over all leaf hashes.
///
/// Linear in the number of leaves and needs them all in memory: a reference for tests and for
/// verifying small exports offline, not for serving a large log (use [`Tree`]).
pub fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly less than `n` (`n >= 2`): RFC 9162's split point `k`.
fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("a hash must be 32 bytes, got {len}")]
    HashLength { len: usize },
    #[error("leaf index {index} is not in a tree of size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    #[error("the proof has {got} hashes, but one for these sizes needs exactly {want}")]
    WrongProofLength { got: usize, want: usize },
    #[error("the proof leads to root {computed}, not to the expected root {expected}")]
    RootMismatch { computed: String, expected: String },
    #[error("size1 ({size1}) is larger than size2 ({size2}): a log cannot shrink")]
    Size1GreaterThanSize2 { size1: u64, size2: u64 },
    #[error(
        "size1 is 0: the empty tree is trivially a prefix of every tree, so no proof from it is accepted"
    )]
    EmptyFirstTree,
    #[error("the sizes are equal ({size}), so the proof must be empty, but it has {len} hashes")]
    NonEmptyProofForEqualSizes { size: u64, len: usize },
    #[error("the sizes are equal ({size}) but the roots differ ({root1} vs {root2})")]
    EqualSizesDifferentRoots {
        size: u64,
        root1: String,
        root2: String,
    },
    #[error("a consistency proof between different sizes cannot be empty")]
    EmptyProof,
    #[error("the proof does not lead to the old root: computed {computed}, expected {expected}")]
    OldRootMismatch { computed: String, expected: String },
    #[error("the proof does not lead to the new root: computed {computed}, expected {expected}")]
    NewRootMismatch { computed: String, expected: String },
}

/// Number of hashes in the inclusion proof for `index` in a tree of `size` leaves
/// (`index < size`): `inner` siblings below the level where the paths to `index` and to the
/// last leaf diverge, plus one per left-hand subtree on the right border above that.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    // `inner` reaches 64 when the paths split at the very top of a 2^64 tree; nothing is left.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Verifies that `leaf` is at `index` in the tree of `tree_size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    tree_size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // Step 1.
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    // The RFC's loop rejects a proof of the wrong length as well (sn reaches 0 too early, or
    // is not 0 at the end); checking the length first only makes the error say so.
    let want = inclusion_proof_len(index, tree_size);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    // Steps 2 and 3.
    let mut fn_ = index;
    let mut sn = tree_size - 1;
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch {
            computed: hex(&r),
            expected: hex(root),
        });
    }
    Ok(())
}

/// Verifies that the tree of `size2` leaves with root `root2` extends the tree of `size1`
/// leaves with root `root1` (RFC 9162 §2.1.4.2).
///
/// Edge cases, as the reference vectors require: equal sizes need an empty proof and equal
/// roots; `size1 == 0` is always rejected, since the empty tree is a prefix of every tree and
/// a "proof" from it would show nothing.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::Size1GreaterThanSize2 { size1, size2 });
    }
    if size1 == 0 {
        return Err(ProofError::EmptyFirstTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyProofForEqualSizes {
                size: size1,
                len: proof.len(),
            });
        }
        if root1 != root2 {
            return Err(ProofError::EqualSizesDifferentRoots {
                size: size1,
                root1: hex(root1),
                root2: hex(root2),
            });
        }
        return Ok(());
    }
    // Step 1.
    if proof.is_empty() {
        return Err(ProofError::EmptyProof);
    }
    // As for inclusion, the length check only makes the error precise. The proof is the
    // inclusion path of leaf size1 - 1 in tree size2 above the level where size1's own
    // rightmost complete subtree sits, plus that subtree's hash unless it is root1 itself.
    let shift = size1.trailing_zeros();
    let inner_and_border = inclusion_proof_len(size1 - 1, size2) - shift as usize;
    let want = inner_and_border + usize::from(!size1.is_power_of_two());
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    // Step 2: if size1 is a power of two, the old root is itself a node of the new tree and the
    // proof starts above it.
    let (first, rest) = if size1.is_power_of_two() {
        (root1, proof)
    } else {
        (&proof[0], &proof[1..])
    };
    // Step 3.
    let mut fn_ = size1 - 1;
    let mut sn = size2 - 1;
    // Step 4.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let mut fr = *first;
    let mut sr = *first;
    // Step 6.
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    if fr != *root1 {
        return Err(ProofError::OldRootMismatch {
            computed: hex(&fr),
            expected: hex(root1),
        });
    }
    if sr != *root2 {
        return Err(ProofError::NewRootMismatch {
            computed: hex(&sr),
            expected: hex(root2),
        });
    }
    Ok(())
}

/// Where leaf hashes live; the store module implements it over the on-disk hash file.
pub trait LeafHashes {
    /// Number of leaf hashes available.
    fn len(&self) -> u64;
    /// Leaf hashes `[start, start + out.len())` into `out`.
    fn read(&self, start: u64, out: &mut [Hash]) -> std::io::Result<()>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LeafHashes for [Hash] {
    fn len(&self) -> u64 {
        <[Hash]>::len(self) as u64
    }

    fn read(&self, start: u64, out: &mut [Hash]) -> std::io::Result<()> {
        let range = usize::try_from(start)
            .ok()
            .and_then(|s| Some(s..s.checked_add(out.len())?))
            .filter(|r| r.end <= <[Hash]>::len(self));
        let Some(range) = range else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "leaf hashes [{start}, {start}+{}) are past the {} held",
                    out.len(),
                    <[Hash]>::len(self)
                ),
            ));
        };
        out.copy_from_slice(&self[range]);
        Ok(())
    }
}

impl LeafHashes for Vec<Hash> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read(&self, start: u64, out: &mut [Hash]) -> std::io::Result<()> {
        LeafHashes::read(self.as_slice(), start, out)
    }
}

/// Why the [`Tree`] could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("size {size} is larger than the tree, which has {tree_size} leaves")]
    SizeBeyondTree { size: u64, tree_size: u64 },
    #[error("size1 ({size1}) is larger than size2 ({size2})")]
    Size1GreaterThanSize2 { size1: u64, size2: u64 },
    #[error("a consistency proof needs size1 > 0: the empty tree is a prefix of every tree")]
    EmptyFirstTree,
    #[error("the tree has {tree_size} leaves but the leaf store holds only {available}")]
    LeavesMissing { tree_size: u64, available: u64 },
    #[error("reading leaf hashes: {0}")]
    Io(#[from] std::io::Error),
}

/// All complete nodes of one tile (up to 256 leaves): `levels[0]` the leaf hashes,
/// `levels[h]` the hashes of its complete subtrees of 2^h leaves, left to right.
#[derive(Debug, Clone, Default)]
struct Tile {
    levels: Vec<Vec<Hash>>,
}

impl Tile {
    fn from_leaves(leaves: &[Hash]) -> Tile {
        let mut t = Tile::default();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    /// Appends a leaf and every node it completes, so that nodes are ready without rehashing.
    fn push(&mut self, leaf: Hash) {
        let mut h = 0;
        let mut node = leaf;
        loop {
            if self.levels.len() == h {
                self.levels.push(Vec::new());
            }
            let level = &mut self.levels[h];
            level.push(node);
            if level.len() % 2 == 1 {
                break;
            }
            node = node_hash(&level[level.len() - 2], &level[level.len() - 1]);
            h += 1;
        }
    }

    /// The complete node of height `h` at index `i` within the tile.
    fn node(&self, h: u32, i: u64) -> Option<Hash> {
        self.levels
            .get(h as usize)?
            .get(usize::try_from(i).ok()?)
            .copied()
    }
}

/// The upper levels of the tree in memory, the lower ones recomputed on demand.
///
/// `upper[k]` holds the hash of every complete subtree of `2^(TILE_HEIGHT + k)` leaves;
/// `tail` holds the leaves (and their complete nodes) of the current partial tile, so that
/// appending and computing the current root never read the leaf store.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    size: u64,
    upper: Vec<Vec<Hash>>,
    tail: Tile,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Rebuilds from stored leaf hashes (used at start-up); streams in chunks of 64 tiles, never
    /// holding more than one chunk of leaves.
    pub fn rebuild<L: LeafHashes + ?Sized>(leaves: &L) -> std::io::Result<Tree> {
        const CHUNK_TILES: u64 = 64;
        let total = leaves.len();
        let mut tree = Tree::new();
        let mut buf = vec![[0u8; 32]; total.min(CHUNK_TILES * TILE_WIDTH) as usize];
        let full = total - total % TILE_WIDTH;
        let mut start = 0;
        while start < full {
            let n = (full - start).min(CHUNK_TILES * TILE_WIDTH);
            let chunk = &mut buf[..n as usize];
            leaves.read(start, chunk)?;
            for tile in chunk.chunks_exact(TILE_WIDTH as usize) {
                tree.push_tile(mth(tile));
            }
            start += n;
        }
        let rest = &mut buf[..(total - full) as usize];
        leaves.read(full, rest)?;
        tree.tail = Tile::from_leaves(rest);
        tree.size = total;
        Ok(tree)
    }

    /// Appends leaf hashes. The leaf store must hold them too before proofs that reach into
    /// their tile once it is complete are asked for; the tree itself only keeps the partial tile.
    pub fn push(&mut self, new: &[Hash]) {
        for leaf in new {
            self.tail.push(*leaf);
            self.size += 1;
            // The tail has a node at tile height exactly when its 256th leaf arrives.
            if let Some(root) = self.tail.node(TILE_HEIGHT, 0) {
                self.tail = Tile::default();
                self.push_tile(root);
            }
        }
    }

    /// Adds the hash of a newly completed tile and every upper node it completes.
    fn push_tile(&mut self, tile_root: Hash) {
        let mut k = 0;
        let mut node = tile_root;
        loop {
            if self.upper.len() == k {
                self.upper.push(Vec::new());
            }
            let level = &mut self.upper[k];
            level.push(node);
            if level.len() % 2 == 1 {
                break;
            }
            node = node_hash(&level[level.len() - 2], &level[level.len() - 1]);
            k += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the whole tree; needs no reads.
    pub fn root(&self) -> Hash {
        // The whole tree splits into one complete subtree per set bit of its size, and a level
        // holding an odd number of nodes is exactly such a bit: its last node is that subtree.
        // Folding them from the smallest (rightmost) up is RFC 9162's MTH over the whole tree.
        let tail = self.tail.levels.iter();
        let upper = self.upper.iter();
        tail.chain(upper)
            .filter(|level| level.len() % 2 == 1)
            .filter_map(|level| level.last())
            .fold(None, |acc: Option<Hash>, node| {
                Some(match acc {
                    None => *node,
                    Some(right) => node_hash(node, &right),
                })
            })
            .unwrap_or_else(empty_root)
    }

    /// The root of the first `size` leaves.
    pub fn root_at<L: LeafHashes + ?Sized>(
        &self,
        size: u64,
        leaves: &L,
    ) -> Result<Hash, TreeError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Nodes::new(self, leaves).range(0, size)
    }

    /// The inclusion proof (RFC 9162 §2.1.3.1 `PATH`) of leaf `index` in the tree of the first
    /// `size` leaves, ordered from the leaf up.
    pub fn inclusion_proof<L: LeafHashes + ?Sized>(
        &self,
        index: u64,
        size: u64,
        leaves: &L,
    ) -> Result<Vec<Hash>, TreeError> {
        self.check_size(size)?;
        if index >= size {
            return Err(TreeError::IndexOutOfRange { index, size });
        }
        // PATH(m, D[lo:hi]) descends into the half holding m and appends the other half's hash;
        // walk it top-down, collecting the sibling ranges, then hash them bottom-up.
        let mut siblings = Vec::new();
        let (mut lo, mut hi) = (0, size);
        while hi - lo > 1 {
            let k = largest_power_of_two_below(hi - lo);
            if index < lo + k {
                siblings.push((lo + k, hi));
                hi = lo + k;
            } else {
                siblings.push((lo, lo + k));
                lo += k;
            }
        }
        let mut nodes = Nodes::new(self, leaves);
        siblings
            .iter()
            .rev()
            .map(|&(a, b)| nodes.range(a, b))
            .collect()
    }

    /// The consistency proof (RFC 9162 §2.1.4.1 `PROOF`) that the tree of `size2` leaves extends
    /// the tree of `size1` leaves. Equal sizes give an empty proof; `size1 == 0` is refused
    /// because [`verify_consistency`] accepts no proof from the empty tree.
    pub fn consistency_proof<L: LeafHashes + ?Sized>(
        &self,
        size1: u64,
        size2: u64,
        leaves: &L,
    ) -> Result<Vec<Hash>, TreeError> {
        self.check_size(size2)?;
        if size1 > size2 {
            return Err(TreeError::Size1GreaterThanSize2 { size1, size2 });
        }
        if size1 == 0 {
            return Err(TreeError::EmptyFirstTree);
        }
        // SUBPROOF(m, D[lo:hi], b), walked top-down as in `inclusion_proof`; `whole` is b: true
        // while D[lo:hi] is still a prefix of the old tree's own decomposition, in which case
        // reaching m == hi needs no hash (the verifier has root1).
        let mut siblings = Vec::new();
        let (mut lo, mut hi, mut whole) = (0, size2, true);
        loop {
            if size1 == hi {
                if !whole {
                    siblings.push((lo, hi));
                }
                break;
            }
            let k = largest_power_of_two_below(hi - lo);
            if size1 <= lo + k {
                siblings.push((lo + k, hi));
                hi = lo + k;
            } else {
                siblings.push((lo, lo + k));
                lo += k;
                whole = false;
            }
        }
        let mut nodes = Nodes::new(self, leaves);
        siblings
            .iter()
            .rev()
            .map(|&(a, b)| nodes.range(a, b))
            .collect()
    }

    fn check_size(&self, size: u64) -> Result<(), TreeError> {
        if size > self.size {
            return Err(TreeError::SizeBeyondTree {
                size,
                tree_size: self.size,
            });
        }
        Ok(())
    }
}

/// Node lookups for one query, with the (at most two) complete tiles read for it.
struct Nodes<'a, L: ?Sized> {
    tree: &'a Tree,
    leaves: &'a L,
    tiles: Vec<(u64, Tile)>,
}

impl<'a, L: LeafHashes + ?Sized> Nodes<'a, L> {
    fn new(tree: &'a Tree, leaves: &'a L) -> Self {
        Nodes {
            tree,
            leaves,
            tiles: Vec::with_capacity(2),
        }
    }

    /// MTH(D[a:b]) for a range the proof algorithms produce: `a` aligned to a power of two at
    /// least `b - a`, and `b` either `a` plus that power or the right edge of the tree asked
    /// about. Complete subtrees are looked up; an incomplete one (only ever at the right edge)
    /// splits as RFC 9162 does into a complete left part and a smaller right part.
    fn range(&mut self, a: u64, b: u64) -> Result<Hash, TreeError> {
        let n = b - a;
        if n.is_power_of_two() && a.is_multiple_of(n) {
            return self.complete(n.trailing_zeros(), a >> n.trailing_zeros());
        }
        let k = largest_power_of_two_below(n);
        let left = self.complete(k.trailing_zeros(), a >> k.trailing_zeros())?;
        let right = self.range(a + k, b)?;
        Ok(node_hash(&left, &right))
    }

    /// The complete subtree of `2^h` leaves at index `i` (leaves `[i * 2^h, (i + 1) * 2^h)`),
    /// which lies within the tree.
    fn complete(&mut self, h: u32, i: u64) -> Result<Hash, TreeError> {
        if h >= TILE_HEIGHT {
            let k = (h - TILE_HEIGHT) as usize;
            let node = self
                .tree
                .upper
                .get(k)
                .and_then(|level| level.get(usize::try_from(i).ok()?));
            return Ok(*node.ok_or(TreeError::SizeBeyondTree {
                size: (i + 1) << h,
                tree_size: self.tree.size,
            })?);
        }
        let per_tile = TILE_HEIGHT - h;
        let tile = i >> per_tile;
        let within = i - (tile << per_tile);
        let missing = || TreeError::SizeBeyondTree {
            size: (i + 1) << h,
            tree_size: self.tree.size,
        };
        if tile == self.tree.size / TILE_WIDTH {
            return self.tree.tail.node(h, within).ok_or_else(missing);
        }
        let t = self.tile(tile)?;
        t.node(h, within).ok_or_else(missing)
    }

    /// A complete tile of the tree, read from the leaf store once per query.
    fn tile(&mut self, tile: u64) -> Result<&Tile, TreeError> {
        let pos = match self.tiles.iter().position(|(t, _)| *t == tile) {
            Some(pos) => pos,
            None => {
                let available = self.leaves.len();
                if available < (tile + 1) * TILE_WIDTH {
                    return Err(TreeError::LeavesMissing {
                        tree_size: self.tree.size,
                        available,
                    });
                }
                let mut buf = [[0u8; 32]; TILE_WIDTH as usize];
                self.leaves.read(tile * TILE_WIDTH, &mut buf)?;
                self.tiles.push((tile, Tile::from_leaves(&buf)));
                self.tiles.len() - 1
            }
        };
        Ok(&self.tiles[pos].1)
    }
}
