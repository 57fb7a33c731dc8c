//! The one error type of `huitong-core`.
//!
//! Messages are written for the caller who must fix the request: each names what was wrong and,
//! where it helps, what would be accepted. None of them repeats a key value, because keys are
//! personal identifiers.

use crate::calendar::format_date;
use crate::ids::{DeptId, ResourceId};
use crate::policy::{PolicyRefusal, RequestState, Revocation};

/// Why an identifier, a resource description, a query or an administrative action was refused.
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
    /// The acting official or the case reference of a request is not usable text. The value
    /// is not repeated: an official id is the consumer's own data about its staff.
    #[error("{field} {problem}")]
    BadActor {
        /// `official` or `case_ref`.
        field: &'static str,
        /// What is wrong and what to give instead.
        problem: &'static str,
    },
    /// A key or filter value cannot match anything, or is missing.
    #[error("the {what} on {field:?} {problem}")]
    BadValue {
        /// `filter` or `key`.
        what: &'static str,
        /// The field.
        field: String,
        /// What is wrong and what to give instead.
        problem: String,
    },
    /// The resource is catalogued as not shared (不予共享).
    #[error(
        "resource {resource} is catalogued as not shared (不予共享){basis}; it is never served"
    )]
    NotShared { resource: ResourceId, basis: String },
    /// A provider described a resource inconsistently.
    #[error("resource {resource}: {problem}")]
    InvalidResource { resource: String, problem: String },
    /// The sharing policy refused the exchange: no grant, an expired or revoked one, or one that
    /// does not cover the fields or the purpose.
    #[error(transparent)]
    Policy(#[from] PolicyRefusal),
    /// Someone other than the provider tried to approve or deny an access request.
    #[error(
        "only {}, the provider of {resource}, can {action} access request {request}; you are {by}",
        .resource.provider()
    )]
    NotProvider {
        /// `approve` or `deny`.
        action: &'static str,
        /// The access request's id.
        request: String,
        /// The resource asked for; its provider decides.
        resource: ResourceId,
        /// The department that tried.
        by: DeptId,
    },
    /// Someone other than the provider or the holder tried to revoke a grant.
    #[error(
        "only {} (the provider of {resource}) or {consumer} (the holder) can revoke grant {grant}; you are {by}",
        .resource.provider()
    )]
    NotPartyToGrant {
        /// The grant's id.
        grant: String,
        /// The resource it covers.
        resource: ResourceId,
        /// The department that holds it.
        consumer: DeptId,
        /// The department that tried.
        by: DeptId,
    },
    /// A department asked for access to, or was granted, its own resource.
    #[error(
        "{dept} provides {resource} itself and already holds its data; no access request or grant is needed"
    )]
    OwnResource {
        /// The department, which is the provider.
        dept: DeptId,
        /// Its resource.
        resource: ResourceId,
    },
    /// An access request or grant names more purposes than allowed.
    #[error(
        "{count} purposes were named; at most 16 are allowed: name the uses your department actually has"
    )]
    TooManyPurposes {
        /// How many were named.
        count: usize,
    },
    /// A purpose was named twice in one list.
    #[error("purpose {0:?} is named twice")]
    DuplicatePurpose(String),
    /// The legal basis of an access request is missing or unusable.
    #[error("{0}")]
    InvalidLegalBasis(&'static str),
    /// The duration asked for a grant is out of range.
    #[error("a grant lasts 1 to 1095 days (three years); {days} days were asked for")]
    InvalidDuration {
        /// The duration asked for.
        days: u32,
    },
    /// The written reason of a denial or revocation is missing or unusable.
    #[error("{0}")]
    InvalidReason(&'static str),
    /// The terms of a grant are inconsistent: narrowing beyond the request, masks on fields it
    /// does not list, an expiry before the grant.
    #[error("{0}")]
    InvalidGrant(String),
    /// The access request was already approved or denied.
    #[error("{}", already_decided(.request, .state))]
    AlreadyDecided {
        /// The access request's id.
        request: String,
        /// Its decision: approved or denied.
        state: RequestState,
    },
    /// The grant was already revoked.
    #[error(
        "grant {grant} was already revoked on {} by {}: {}",
        format_date(.revocation.at), .revocation.by, .revocation.reason
    )]
    AlreadyRevoked {
        /// The grant's id.
        grant: String,
        /// The earlier revocation.
        revocation: Revocation,
    },
}

fn already_decided(request: &str, state: &RequestState) -> String {
    match state {
        RequestState::Approved { at, by, grant_id } => format!(
            "request {request} was already approved on {} by {by} (grant {grant_id}); \
             to withdraw access, revoke the grant",
            format_date(*at)
        ),
        RequestState::Denied { at, by, reason } => format!(
            "request {request} was already denied on {} by {by}: {reason}; \
             the consumer can file a new access request",
            format_date(*at)
        ),
        RequestState::Pending => format!("request {request} is still pending"),
    }
}

impl Error {
    /// The broad kind of the error, for mapping to a wire status in one place.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnknownResource(_) => ErrorKind::NotFound,
            Error::Policy(refusal) => refusal.kind(),
            Error::NotShared { .. } | Error::NotProvider { .. } | Error::NotPartyToGrant { .. } => {
                ErrorKind::PermissionDenied
            }
            Error::InvalidResource { .. } => ErrorKind::ProviderFault,
            Error::AlreadyDecided { .. } | Error::AlreadyRevoked { .. } => ErrorKind::Conflict,
            Error::InvalidId { .. }
            | Error::InvalidPurpose(_)
            | Error::UnknownField { .. }
            | Error::NoFieldsRequested
            | Error::DuplicateField(_)
            | Error::BadSelector(_)
            | Error::BadKey { .. }
            | Error::WrongValueType { .. }
            | Error::BadValue { .. }
            | Error::BadActor { .. }
            | Error::OwnResource { .. }
            | Error::DuplicatePurpose(_)
            | Error::TooManyPurposes { .. }
            | Error::InvalidLegalBasis(_)
            | Error::InvalidDuration { .. }
            | Error::InvalidReason(_)
            | Error::InvalidGrant(_) => ErrorKind::InvalidRequest,
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
    /// The target is no longer in a state that allows the action (an access request already
    /// decided, a grant already revoked); look at its current state. gRPC: `FAILED_PRECONDITION`.
    Conflict,
    /// A bound of the grant is reached (records per query, people per day): a narrower query,
    /// or the same one later, succeeds. gRPC: `RESOURCE_EXHAUSTED`.
    Exhausted,
    /// The request is well formed, but the grant it rests on requires something it lacks (a
    /// case reference). Not `InvalidRequest`: the same request is fine under another grant, so
    /// what is missing is set by the state of the exchange, not by the protocol.
    /// gRPC: `FAILED_PRECONDITION`.
    Precondition,
}
