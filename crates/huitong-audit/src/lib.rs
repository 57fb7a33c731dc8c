//! The exchange log: an append-only, fsynced Merkle log of exchange records, with proofs, signed checkpoints and offline verification.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod bundle;
pub mod error;
pub mod index;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod record;
pub mod seal;
pub mod stats;
pub mod store;
pub mod subject;

pub use error::Error;
pub use index::{EntryFilter, Index, open_sled};
pub use store::{Log, LogOptions, LogStats, Receipt, SignedCheckpoint};
pub use subject::{SubjectKeys, canonical_id_number, normalise_key, normalise_value};
