//! The Huitong wire protocol: generated gRPC types and services, and their conversions to domain types.
//!
//! Code is generated from `proto/huitong/v1` by `build.rs` with protox, so no `protoc` is needed.
//! Other crates use the generated types through this crate and never depend on prost or the
//! generated module layout directly.

pub mod codec;
pub mod convert;
pub mod metrics;
pub mod trace;
pub mod transport;
pub mod value;

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations,
    missing_docs
)]
mod generated {
    tonic::include_proto!("huitong.v1");
}

/// The generated `huitong.v1` messages and services.
pub mod v1 {
    pub use crate::generated::*;
}

/// Encoded `FileDescriptorSet` of `proto/huitong/v1` and its imports, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/huitong_descriptor.bin"));

pub use prost_types::Timestamp;
