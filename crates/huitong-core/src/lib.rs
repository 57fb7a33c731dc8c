//! Huitong's domain: validated identifiers, the catalogue and query validation. No I/O.
//!
//! Raw strings from the network or from config files become the types here at the edge
//! ("parse, don't validate"); the rest of Huitong never handles an unchecked id or field name.

#![forbid(unsafe_code)]

pub mod catalogue;
pub mod error;
pub mod ids;

pub use catalogue::{
    Catalogue, FieldSpec, FieldType, ResourceSpec, ResourceSpecParts, Sensitivity, SharingClass,
    ValueKind,
};
pub use error::Error;
pub use ids::{DeptId, FieldName, Purpose, ResourceId, ResourceName};
