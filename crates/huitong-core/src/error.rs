//! The one error type of `huitong-core`.
//!
//! Messages are written for the caller who must fix the request: each names what was wrong and,
//! where it helps, what would be accepted. None of them repeats a key value, because keys are
//! personal identifiers.

use crate::ids::ResourceId;

/// Why an identifier, a resource description or a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An identifier (department, resource, field) is not well formed.
    #[error("{what} {value:?} is not valid: {reason}")]
    InvalidId {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// No purpose was declared, or it is unusable.
    #[error("{0}")]
    InvalidPurpose(&'static str),
    /// The resource is not in the catalogue.
    #[error("resource {0} is not in the catalogue; list the catalogue to see what is offered")]
    UnknownResource(ResourceId),
    /// A field name is not declared by the resource.
    #[error("field {field:?} is not a field of {resource}; its fields are: {known}")]
    UnknownField {
        resource: ResourceId,
        field: String,
        known: String,
    },
    /// The query asked for no fields.
    #[error("name the fields you need in `fields`; nothing is released by default")]
    NoFieldsRequested,
    /// A field was named twice in one list.
    #[error("field {0:?} is named twice")]
    DuplicateField(String),
    /// The query gave neither a key nor filters, or both.
    #[error("{0}")]
    BadSelector(String),
    /// A key does not match the resource's key fields.
    #[error("the key of {resource} is ({expected}); {problem}")]
    BadKey {
        resource: ResourceId,
        expected: String,
        problem: String,
    },
    /// A key or filter value has the wrong type for its field.
    #[error("field {field:?} of {resource} holds {expected} values, but {got} was given")]
    WrongValueType {
        resource: ResourceId,
        field: String,
        expected: &'static str,
        got: &'static str,
    },
    /// The resource is catalogued as not shared (不予共享).
    #[error(
        "resource {resource} is catalogued as not shared (不予共享){basis}; it is never served"
    )]
    NotShared { resource: ResourceId, basis: String },
    /// A provider described a resource inconsistently.
    #[error("resource {resource}: {problem}")]
    InvalidResource { resource: String, problem: String },
}

impl Error {
    /// The broad kind of the error, for mapping to a wire status in one place.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnknownResource(_) => ErrorKind::NotFound,
            Error::NotShared { .. } => ErrorKind::PermissionDenied,
            Error::InvalidResource { .. } => ErrorKind::ProviderFault,
            Error::InvalidId { .. }
            | Error::InvalidPurpose(_)
            | Error::UnknownField { .. }
            | Error::NoFieldsRequested
            | Error::DuplicateField(_)
            | Error::BadSelector(_)
            | Error::BadKey { .. }
            | Error::WrongValueType { .. } => ErrorKind::InvalidRequest,
        }
    }
}

/// What the caller can do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Fix the request.
    InvalidRequest,
    /// Ask for something that exists.
    NotFound,
    /// Policy forbids it; no change to the request helps.
    PermissionDenied,
    /// The provider's description is wrong; its operators must fix it.
    ProviderFault,
}
