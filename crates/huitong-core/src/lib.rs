//! Huitong's domain: validated identifiers, the catalogue, query validation and the lawful-sharing
//! policy (grants, access requests, masks, reply deadlines). No I/O, no clock: times are passed in.
//!
//! Raw strings from the network or from config files become the types here at the edge
//! ("parse, don't validate"); the rest of Huitong never handles an unchecked id or field name.

#![forbid(unsafe_code)]

pub mod calendar;
pub mod catalogue;
pub mod error;
pub mod ids;
pub mod masking;
pub mod policy;

pub use catalogue::{
    Catalogue, FieldSpec, FieldType, ResourceSpec, ResourceSpecParts, Sensitivity, SharingClass,
    ValueKind,
};
pub use error::Error;
pub use ids::{DeptId, FieldName, Purpose, ResourceId, ResourceName};
pub use masking::Mask;
pub use policy::{
    AccessRequest, AccessRequestForm, AccessRequestParts, Bounds, Caps, Decision, Grant,
    GrantOrigin, GrantParts, Lookup, MatchKind, PolicyRefusal, RequestState, Revocation, Selection,
    Terms, Why, decide, releasable_fields,
};
