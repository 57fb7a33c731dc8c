//! The one place where errors become gRPC statuses.

use huitong_core::error::ErrorKind;
use tonic::{Code, Status};

use crate::source::SourceError;

/// The gRPC code for each kind of domain error.
fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidRequest => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        // The adapter's own descriptions were checked at start-up, so a provider fault at
        // request time is the adapter's bug, not the caller's.
        ErrorKind::ProviderFault => Code::Internal,
        _ => Code::Internal,
    }
}

/// A refused request. Core messages never quote key values, so they can go to the caller.
pub(crate) fn from_core(e: &huitong_core::Error) -> Status {
    Status::new(code(e.kind()), e.to_string())
}

/// A source's failure, with a message fit for the caller; `what` names the resource, e.g.
/// `public-security/household-register`. The source's detail is logged by the caller of this
/// function, not sent.
pub(crate) fn from_source(e: &SourceError, what: &str) -> Status {
    match e {
        SourceError::Unavailable(_) => Status::unavailable(format!(
            "the records of {what} are unavailable at the moment; try again later"
        )),
        SourceError::BadPageToken | SourceError::BadCursor | SourceError::UnsupportedSearch(_) => {
            Status::invalid_argument(e.to_string())
        }
        SourceError::ChangesUnsupported => Status::unimplemented(format!(
            "the source of {what} does not report changes, so they cannot be watched; \
             read it with Fetch or Search instead"
        )),
        SourceError::CursorExpired(_) => Status::out_of_range(format!(
            "the changes of {what} after this cursor are no longer retained (the adapter \
             restarted, or this watcher fell too far behind); resynchronise: read {what} \
             afresh, then watch again with an empty cursor"
        )),
        SourceError::Internal(_) => Status::internal(format!(
            "the adapter failed to read {what}; its operators have the details in its log"
        )),
    }
}
