//! The exchange log: an append-only, fsynced Merkle log of exchange records, with proofs, signed checkpoints and offline verification.

#![forbid(unsafe_code)]
