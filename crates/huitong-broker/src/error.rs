//! The broker's errors and the one table that turns them into gRPC statuses.
//!
//! What a peer sees is written for the peer: what to fix, or whom to ask. Internal detail
//! (addresses, transport errors) goes to the broker's log under the request id, never into the
//! answer.

use std::time::Duration;

use huitong_core::error::ErrorKind;
use huitong_core::{DeptId, ResourceId};
use tonic::{Code, Status};

/// Why the broker could not start or keep serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] huitong_tls::Error),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("the exchange log: {0}")]
    Log(#[from] crate::log::LogError),
    #[error(transparent)]
    Events(#[from] crate::events::EventError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("building the reflection service: {0}")]
    Reflection(String),
    #[error("serving gRPC: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Why one exchange was not answered with records. Clone, because one adapter failure is the
/// answer to every exchange that waited on the same coalesced fetch.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The request broke a rule of the catalogue or of the protocol.
    #[error(transparent)]
    Request(#[from] huitong_core::Error),
    /// The provider's adapter could not be reached, or its catalogue was never loaded.
    #[error("department {dept} is unavailable: its adapter cannot be reached; try again later")]
    ProviderUnavailable { dept: DeptId },
    /// The provider did not answer in time.
    #[error("department {dept} did not answer within {} ms", after.as_millis())]
    ProviderTimeout { dept: DeptId, after: Duration },
    /// The provider has no record with the key.
    #[error("no record of {resource} has that key")]
    NoRecord { resource: ResourceId },
    /// The provider refused the request; its reason is passed on.
    #[error("department {dept} refused the request: {reason}")]
    ProviderRefused {
        dept: DeptId,
        code: Code,
        reason: String,
    },
    /// The consumer is over a rate limit of the exchange's policy.
    #[error("{consumer} is over its quota of {per_second} requests per second for {scope}; retry in {} ms", retry_after.as_millis().max(1))]
    OverQuota {
        consumer: DeptId,
        scope: String,
        per_second: f64,
        retry_after: Duration,
    },
    /// The provider's adapter failed repeatedly; the broker stopped calling it for a while.
    #[error("department {dept} is unavailable: its adapter failed repeatedly, so the broker is not calling it for {} ms; try again then", retry_after.as_millis().max(1))]
    BreakerOpen { dept: DeptId, retry_after: Duration },
    /// Too many exchanges already wait for the provider's adapter.
    #[error(
        "department {dept} is overloaded: too many exchanges are waiting for its adapter; try again shortly"
    )]
    ProviderSaturated { dept: DeptId },
    /// The broker is at its limit of exchanges in progress.
    #[error("the broker is at capacity; try again in {} ms", retry_after.as_millis().max(1))]
    Overloaded { retry_after: Duration },
    /// The events after a subscriber's position are no longer retained.
    #[error(
        "the events of {resource} after {after} are no longer retained (the oldest is {oldest}); resynchronise: query the records you need, then subscribe again without after, or with after = 0 for the oldest retained"
    )]
    EventsExpired {
        resource: ResourceId,
        after: u64,
        oldest: u64,
    },
    /// Subscribing to fields the event log does not keep, because no grant could release them
    /// to anyone (only the provider itself can ask for those).
    #[error(
        "the event log keeps no {fields} of {resource}: changes are stored only with fields some grant releases; subscribe to {kept}, or read your own records from your own system"
    )]
    FieldsNotKept {
        resource: ResourceId,
        fields: String,
        kept: String,
    },
    /// Acknowledging a subscription that was never opened.
    #[error(
        "there is no subscription {name:?} of yours to {resource}; open it with Subscribe first"
    )]
    NoSubscription { resource: ResourceId, name: String },
    /// The event log could not be read or written.
    #[error("the broker's event log is unavailable; try again later")]
    EventLog,
    /// The exchange log could not record the exchange (or delivery), so nothing was released.
    #[error("the exchange log could not record this {what}, so nothing was released; try again")]
    LogUnavailable { what: &'static str },
    /// The exchange log's disk is full: nothing can be recorded, so nothing is released.
    /// Service resumes by itself once space is freed.
    #[error(
        "the exchange log's disk is full, so this {what} could not be recorded and nothing was released; the broker's operators must free space on the log's disk, after which service resumes by itself; try again later"
    )]
    LogDiskFull { what: &'static str },
    /// The people an answer would release could not be counted against its grant's daily cap
    /// (the policy store failed, or the provider answered records without their key fields),
    /// so nothing was released: an uncounted answer could go beyond the cap.
    #[error(
        "the broker could not count the people this answer would reach against the daily cap of grant {grant}, so nothing was released; try again later, and tell the exchange's operators if it persists"
    )]
    Uncounted { grant: String },
    /// The provider failed in a way the consumer cannot fix.
    #[error("department {dept} could not answer; its operators can look up the request id")]
    ProviderFailed { dept: DeptId },
    /// The consumer's certificate stopped being valid (revoked, expired) while its stream was
    /// open.
    #[error(transparent)]
    Unauthenticated(huitong_tls::AuthError),
}

/// The one table from errors to gRPC codes.
impl From<&ExchangeError> for Code {
    fn from(e: &ExchangeError) -> Code {
        match e {
            ExchangeError::Request(e) => core_code(e),
            ExchangeError::ProviderUnavailable { .. }
            | ExchangeError::ProviderFailed { .. }
            | ExchangeError::BreakerOpen { .. }
            | ExchangeError::ProviderSaturated { .. }
            | ExchangeError::Overloaded { .. }
            | ExchangeError::EventLog
            | ExchangeError::LogUnavailable { .. }
            | ExchangeError::LogDiskFull { .. }
            | ExchangeError::Uncounted { .. } => Code::Unavailable,
            ExchangeError::ProviderTimeout { .. } => Code::DeadlineExceeded,
            ExchangeError::NoRecord { .. } => Code::NotFound,
            ExchangeError::OverQuota { .. } => Code::ResourceExhausted,
            ExchangeError::EventsExpired { .. } => Code::OutOfRange,
            ExchangeError::NoSubscription { .. } => Code::NotFound,
            ExchangeError::Unauthenticated(_) => Code::Unauthenticated,
            ExchangeError::FieldsNotKept { .. } => Code::FailedPrecondition,
            ExchangeError::ProviderRefused { code, .. } => *code,
        }
    }
}

/// The status for a failed admin call.
pub fn policy_status(e: crate::policy::PolicyError) -> Status {
    use crate::policy::PolicyError as P;
    match &e {
        P::Rule(rule) => Status::new(core_code(rule), rule.to_string()),
        P::NoSuchRequest(_) | P::NoSuchGrant(_) => Status::not_found(e.to_string()),
        P::PolicyFileGrant(_) => Status::failed_precondition(e.to_string()),
        P::Open { .. } | P::Store(_) | P::Corrupt { .. } | P::PolicyFile { .. } => {
            tracing::error!(error = %e, "policy store failed");
            Status::internal(
                "the broker could not read or write its policy store; its operators have the details",
            )
        }
    }
}

/// The code for a domain error: the same table for the exchange path and for admin calls.
fn core_code(e: &huitong_core::Error) -> Code {
    match e.kind() {
        ErrorKind::InvalidRequest => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::ProviderFault => Code::FailedPrecondition,
        ErrorKind::Conflict => Code::FailedPrecondition,
        ErrorKind::Exhausted => Code::ResourceExhausted,
        ErrorKind::Precondition => Code::FailedPrecondition,
        _ => Code::Internal,
    }
}

/// Which adapter call an error answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterCall {
    Fetch,
    Search,
}

impl ExchangeError {
    /// Why `what` (an exchange, a delivery, a subscription) was not released: the log failed.
    pub fn from_log(e: &crate::log::LogError, what: &'static str) -> Self {
        if e.is_disk_full() {
            ExchangeError::LogDiskFull { what }
        } else {
            ExchangeError::LogUnavailable { what }
        }
    }
    /// What the exchange log keeps as the reason for this refusal.
    ///
    /// The consumer is told everything the display text says; the log, which is kept on disk
    /// for years, never keeps an adapter's own wording: an adapter outside our control may
    /// write key values into its messages, and no plain identifier may enter the log.
    pub fn recorded(&self) -> String {
        match self {
            ExchangeError::ProviderRefused { dept, code, .. } => format!(
                "department {dept} refused the request with {}; its message went to the consumer and is not recorded",
                huitong_proto::transport::code_name(*code)
            ),
            e => e.to_string(),
        }
        .chars()
        .take(300)
        .collect()
    }

    /// The answer to the consumer, tagged with the request id.
    pub fn into_status(self, request_id: &str) -> Status {
        let mut status = Status::new(Code::from(&self), self.to_string());
        if let Ok(v) = request_id.parse() {
            status.metadata_mut().insert("x-huitong-request-id", v);
        }
        if let ExchangeError::OverQuota { retry_after, .. }
        | ExchangeError::BreakerOpen { retry_after, .. }
        | ExchangeError::Overloaded { retry_after } = &self
        {
            // For clients that back off by machine, not by reading the message.
            if let Ok(v) = retry_after.as_millis().max(1).to_string().parse() {
                status.metadata_mut().insert("retry-after-ms", v);
            }
        }
        status
    }

    /// Interprets an adapter's error answer to `call` for `resource`.
    ///
    /// The contract is the status code, never its wording: NOT_FOUND to a Fetch means "no record
    /// has that key", whatever the message says, so that an outside adapter's phrasing decides
    /// nothing here. (To Search or WatchChanges it means the resource is not served.)
    pub fn from_adapter(
        dept: &DeptId,
        resource: &ResourceId,
        call: AdapterCall,
        status: &Status,
    ) -> Self {
        let dept = dept.clone();
        match status.code() {
            Code::NotFound if call == AdapterCall::Fetch => ExchangeError::NoRecord {
                resource: resource.clone(),
            },
            Code::Unavailable | Code::Unknown | Code::Cancelled => {
                ExchangeError::ProviderUnavailable { dept }
            }
            code @ (Code::InvalidArgument
            | Code::NotFound
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::Unimplemented) => ExchangeError::ProviderRefused {
                dept,
                code,
                // Adapter messages are written for callers; bound them all the same.
                reason: status.message().chars().take(300).collect(),
            },
            _ => ExchangeError::ProviderFailed { dept },
        }
    }
}
