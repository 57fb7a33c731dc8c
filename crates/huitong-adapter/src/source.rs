//! The trait a department implements to connect its records to Huitong.

use std::pin::Pin;

use huitong_core::{FieldName, ResourceName, ResourceSpec};
use huitong_proto::v1::{Record, Value};
use tokio_stream::Stream;

/// A department's records, as the adapter server sees them.
///
/// The server validates every request against [`Source::resources`] before calling the source:
/// the resource is one of them, a key names exactly the key fields with values of the right
/// type, fields and filters name declared fields with values of the right type. A source can
/// therefore trust its arguments and only has to look records up. Records it returns are trimmed
/// to the requested fields by the server, so returning a whole row is fine.
#[tonic::async_trait]
pub trait Source: Send + Sync + 'static {
    /// The resources served; called once when the server starts. Specs must belong to the
    /// adapter's department and have distinct names.
    fn resources(&self) -> Vec<ResourceSpec>;

    /// A short name for the kind of source, shown to operators in `Describe`, e.g. `jsonl`.
    fn kind(&self) -> &str {
        "custom"
    }

    /// One record by key. `key` holds one value per key field, in the resource's `key_fields`
    /// order, already type-checked (ints given for double fields are converted to doubles).
    /// `Ok(None)` means there is no such record.
    async fn fetch(
        &self,
        resource: &ResourceName,
        key: &[(FieldName, Value)],
        fields: &[FieldName],
    ) -> Result<Option<Record>, SourceError>;

    /// Records whose fields equal all `filters`, in a stable order, one page of at most
    /// `page.size` records. A null filter value matches a null field.
    async fn search(
        &self,
        resource: &ResourceName,
        filters: &[(FieldName, Value)],
        fields: &[FieldName],
        page: PageRequest,
    ) -> Result<Page, SourceError>;

    /// Changes to a resource's records after `cursor` (`None`: from the oldest change still
    /// retained), then new changes as they happen. The stream should not end while the source
    /// runs; an `Err` item ends it with that error.
    ///
    /// The default answers [`SourceError::ChangesUnsupported`]. A source that keeps its
    /// records in memory can hold a [`ChangeFeed`](crate::ChangeFeed), call
    /// [`publish`](crate::ChangeFeed::publish) on every change and answer here with
    /// [`ChangeFeed::watch`](crate::ChangeFeed::watch); a source with a natural cursor (a
    /// sequence or updated-at column) can implement this itself. Either way:
    ///
    /// - a cursor this source did not issue is [`SourceError::BadCursor`];
    /// - a cursor older than the retained changes is [`SourceError::CursorExpired`], before or
    ///   after some changes were streamed (a watcher that fell too far behind), never a silent
    ///   gap.
    async fn watch(
        &self,
        resource: &ResourceName,
        cursor: Option<&str>,
    ) -> Result<ChangeStream, SourceError> {
        let _ = (resource, cursor);
        Err(SourceError::ChangesUnsupported)
    }
}

/// One change to a record, as a source reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The changed record's key: one value per key field.
    pub key: Vec<(String, Value)>,
    /// The record as it is now; `None` when it was deleted.
    pub record: Option<Record>,
    /// Passed back to [`Source::watch`] to resume after this change.
    pub cursor: String,
}

/// The changes [`Source::watch`] streams.
pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<Change, SourceError>> + Send>>;

/// Which page of a search to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many records; the server has already clamped it to `1..=max_page_size`.
    pub size: u32,
    /// `None` for the first page, else a `next_token` this source issued earlier.
    pub token: Option<String>,
}

/// One page of search results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub records: Vec<Record>,
    /// `None` when there are no more records; else passed back as [`PageRequest::token`].
    pub next_token: Option<String>,
}

/// Why a source could not answer. The server turns each into a gRPC status; details given
/// here are logged on the adapter and never sent to the caller, since a backing store's error
/// text may quote the very identifiers it was asked about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The backing store cannot be reached or is overloaded; the caller may retry later.
    /// Answered with UNAVAILABLE.
    #[error("the backing store is unavailable: {0}")]
    Unavailable(String),
    /// The page token is not one this source issued. Answered with INVALID_ARGUMENT.
    #[error("the page_token is not one this adapter issued; start again without one")]
    BadPageToken,
    /// A search the source cannot answer for the filters given (e.g. an HTTP API without a
    /// query for them); the message names the fields, never values, and goes to the caller.
    /// Answered with INVALID_ARGUMENT.
    #[error("{0}")]
    UnsupportedSearch(String),
    /// The source does not report changes. Answered with UNIMPLEMENTED.
    #[error("this source does not report changes")]
    ChangesUnsupported,
    /// The change cursor is not one this source issued. Answered with INVALID_ARGUMENT.
    #[error("the cursor is not one this adapter issued; watch again without one")]
    BadCursor,
    /// The changes after the cursor are no longer retained, or the watcher fell further behind
    /// than the adapter buffers. The caller must read the resource afresh and watch again
    /// without a cursor. Answered with OUT_OF_RANGE.
    #[error("the changes after this cursor are no longer retained: {0}")]
    CursorExpired(String),
    /// Anything else: a bug, or data the source cannot read. Answered with INTERNAL.
    #[error("internal error: {0}")]
    Internal(String),
}
