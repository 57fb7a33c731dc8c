//! The consumer SDK: query the exchange's catalogue and records from Rust.
//!
//! ```no_run
//! # async fn run() -> Result<(), huitong_client::ClientError> {
//! use huitong_client::{Client, Query};
//! use huitong_client::TlsFiles;
//! let identity = TlsFiles {
//!     ca: "pki/ca.pem".into(),
//!     cert: "pki/civil-affairs-consumer.pem".into(),
//!     key: "pki/civil-affairs-consumer.key".into(),
//!     crl: None,
//! };
//! let mut client = Client::connect("https://127.0.0.1:7400", &identity).await?;
//! let answer = client
//!     .query(
//!         Query::by_key("public-security/household-register", "id_number", "110105199001011234")
//!             .fields(["name", "birth_date", "marital_status"])
//!             .purpose("marriage registration"),
//!     )
//!     .await?;
//! for record in &answer.records {
//!     println!("{:?}", record.fields.get("name"));
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

use std::time::Duration;

use huitong_core::{DeptId, ResourceId, ResourceSpec};
use huitong_proto::convert;
use huitong_proto::v1::admin_client::AdminClient;
use huitong_proto::v1::audit_client::AuditClient;
use huitong_proto::v1::exchange_client::ExchangeClient;
use huitong_proto::v1::{
    AccessRequest, ApproveAccessRequestRequest, CatalogueEntry, DenyAccessRequestRequest,
    FileAccessRequestRequest, Filter, Grant, ListAccessRequestsRequest, ListCatalogueRequest,
    ListGrantsRequest, QueryRequest, RevokeGrantRequest, SubscribeRequest,
};
use huitong_tls::{ClientTls, Expect, Role};
use tonic::transport::Channel;

pub use huitong_proto::v1::{
    AccessRequestState, Checkpoint, ConsistencyProof, Event, ExchangeRecord, InclusionProof,
    ListEntriesRequest, ListEntriesResponse, LogEntry, QueryResponse, Receipt, Record,
    SubjectReportResponse, SubscribeResponse, Value,
};
pub use huitong_tls::TlsFiles;

/// Why a call did not return an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker address is malformed or the broker cannot be reached. The message carries
    /// the whole cause chain, so the cause is not also a `source` (printers of error chains
    /// would repeat it).
    #[error("cannot connect to the broker at {endpoint}: {}", error_chain(.cause))]
    Connect {
        endpoint: String,
        cause: tonic::transport::Error,
    },
    /// Our own certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] huitong_tls::Error),
    /// The broker answered with an error status; its message says what to fix. The status is
    /// not a `source`: its own text repeats the code and message.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(tonic::Status),
    /// The catalogue entry the broker sent is not usable.
    #[error("the broker described {resource} inconsistently: {problem}")]
    BadDescription { resource: String, problem: String },
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        // The caller did not cancel (dropping the future would end the call silently): a
        // CANCELLED status means the connection closed under the call, as when a broker
        // stops. That is UNAVAILABLE, the code for "try again", which retry logic looks for.
        if s.code() == tonic::Code::Cancelled {
            return ClientError::Status(tonic::Status::unavailable(format!(
                "the connection closed before the answer arrived ({}); the server may be \
                 restarting: try again",
                s.message()
            )));
        }
        ClientError::Status(s)
    }
}

impl ClientError {
    /// The gRPC code, for errors the broker answered with.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// The whole cause chain: tonic's transport error alone says only "transport error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

pub use huitong_proto::transport::code_name;

/// A query, built up step by step.
#[derive(Debug, Clone, Default)]
pub struct Query {
    request: QueryRequest,
    timeout: Option<Duration>,
    traceparent: Option<String>,
}

impl Query {
    /// One record by a single-field key.
    pub fn by_key(resource: &str, key_field: &str, key: impl Into<Value>) -> Self {
        let mut q = Self::resource(resource);
        q.request.key.insert(key_field.to_owned(), key.into());
        q
    }

    /// Records matching filters; add them with [`Query::filter`].
    pub fn search(resource: &str) -> Self {
        Self::resource(resource)
    }

    fn resource(resource: &str) -> Self {
        Self {
            request: QueryRequest {
                resource: resource.to_owned(),
                ..Default::default()
            },
            timeout: None,
            traceparent: None,
        }
    }

    /// Adds a key field, for resources with a composite key.
    pub fn key(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.request.key.insert(field.to_owned(), value.into());
        self
    }

    /// Adds an equality filter.
    pub fn filter(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.request.filters.push(Filter {
            field: field.to_owned(),
            value: Some(value.into()),
        });
        self
    }

    /// The fields wanted; nothing else is released.
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.request.fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Why the data is needed; recorded with the exchange.
    pub fn purpose(mut self, purpose: &str) -> Self {
        self.request.purpose = purpose.to_owned();
        self
    }

    /// The official acting for your department: the opaque id your own system gives them (not
    /// a name or an ID number). The broker records only its HMAC, and auditors can ask for
    /// every exchange of that official.
    pub fn official(mut self, id: &str) -> Self {
        self.request.official = id.to_owned();
        self
    }

    /// The case (办件编号) the data is needed for; some grants require one.
    pub fn case_ref(mut self, case: &str) -> Self {
        self.request.case_ref = case.to_owned();
        self
    }

    pub fn page_size(mut self, n: u32) -> Self {
        self.request.page_size = n;
        self
    }

    /// Continues a filter query from a previous answer's `next_page_token`.
    pub fn page_token(mut self, token: &str) -> Self {
        self.request.page_token = token.to_owned();
        self
    }

    /// A W3C `traceparent` to continue the caller's trace through broker and adapter; their log
    /// lines for this exchange then carry its trace id.
    pub fn traceparent(mut self, header: &str) -> Self {
        self.traceparent = Some(header.to_owned());
        self
    }

    /// The longest the caller will wait; the broker passes it on to the provider.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A connection to a broker's `Exchange` service. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    inner: ExchangeClient<Channel>,
}

/// Connects to a broker over mutual TLS: we present `identity`; the broker must present a
/// certificate from the same CA with the `broker` role.
async fn connect_channel(endpoint: &str, identity: &TlsFiles) -> Result<Channel, ClientError> {
    let err = |cause| ClientError::Connect {
        endpoint: endpoint.to_owned(),
        cause,
    };
    let tls = ClientTls::load(identity)?;
    huitong_tls::endpoint(endpoint)?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tls.connector(Expect::Role(Role::Broker)))
        .await
        .map_err(err)
}

impl Client {
    /// Connects to `endpoint`, e.g. `https://127.0.0.1:7400`, as the department and role of
    /// `identity`'s certificate (a consumer certificate for queries).
    pub async fn connect(endpoint: &str, identity: &TlsFiles) -> Result<Self, ClientError> {
        Ok(Self {
            inner: ExchangeClient::new(connect_channel(endpoint, identity).await?),
        })
    }

    /// The catalogue, or one provider's part of it.
    pub async fn catalogue(
        &mut self,
        provider: Option<&str>,
    ) -> Result<Vec<CatalogueEntry>, ClientError> {
        let resp = self
            .inner
            .list_catalogue(ListCatalogueRequest {
                provider: provider.unwrap_or_default().to_owned(),
            })
            .await?;
        Ok(resp.into_inner().entries)
    }

    /// One resource's description, typed, e.g. to parse key values typed by a person.
    pub async fn describe(&mut self, resource: &str) -> Result<ResourceSpec, ClientError> {
        let id = ResourceId::parse(resource)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let entries = self.catalogue(Some(id.provider().as_str())).await?;
        let entry = entries
            .into_iter()
            .find(|e| e.resource == resource)
            .ok_or_else(|| {
                tonic::Status::not_found(format!(
                    "resource {resource} is not in the catalogue; list the catalogue to see what is offered"
                ))
            })?;
        let bad = |problem: String| ClientError::BadDescription {
            resource: resource.to_owned(),
            problem,
        };
        let dept = DeptId::new(&entry.provider).map_err(|e| bad(e.to_string()))?;
        let desc = entry
            .description
            .ok_or_else(|| bad("no description".into()))?;
        convert::resource_spec(&dept, &desc).map_err(|e| bad(e.to_string()))
    }

    /// Opens a subscription; the first connection is made here, so a refusal (no grant, an
    /// unknown resource) is reported at once.
    pub async fn subscribe(&mut self, subscribe: Subscribe) -> Result<Subscription, ClientError> {
        let stream = self.inner.subscribe(subscribe.request.clone()).await?;
        let mut request = subscribe.request;
        request.after = None;
        Ok(Subscription {
            inner: self.inner.clone(),
            acker: Acker::start(self.inner.clone(), &request),
            request,
            stream: Some(stream.into_inner()),
            yielded: 0,
            reconnects: 0,
        })
    }

    /// Runs a query.
    pub async fn query(&mut self, query: Query) -> Result<QueryResponse, ClientError> {
        let mut req = tonic::Request::new(query.request);
        if let Some(t) = query.timeout {
            req.set_timeout(t);
        }
        if let Some(tp) = query.traceparent.as_deref().and_then(|h| h.parse().ok()) {
            req.metadata_mut().insert("traceparent", tp);
        }
        Ok(self.inner.query(req).await?.into_inner())
    }
}

/// What to subscribe to: a resource's events, the fields to release with each and why.
#[derive(Debug, Clone, Default)]
pub struct Subscribe {
    request: SubscribeRequest,
}

impl Subscribe {
    pub fn new(resource: &str) -> Self {
        Self {
            request: SubscribeRequest {
                resource: resource.to_owned(),
                ..Default::default()
            },
        }
    }

    /// Names the subscription (default `default`); its position is kept per name.
    pub fn name(mut self, name: &str) -> Self {
        self.request.subscription = name.to_owned();
        self
    }

    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.request.fields = fields.into_iter().map(Into::into).collect();
        self
    }

    pub fn purpose(mut self, purpose: &str) -> Self {
        self.request.purpose = purpose.to_owned();
        self
    }

    /// The official acting for your department, as for a query ([`Query::official`]).
    pub fn official(mut self, id: &str) -> Self {
        self.request.official = id.to_owned();
        self
    }

    /// The case the deliveries are for, as for a query ([`Query::case_ref`]).
    pub fn case_ref(mut self, case: &str) -> Self {
        self.request.case_ref = case.to_owned();
        self
    }

    /// Starts after this sequence number (0: the oldest retained event) instead of after the
    /// subscription's acknowledged position. Applies to the first connection only; reconnects
    /// always resume after what was acknowledged.
    pub fn after(mut self, sequence: u64) -> Self {
        self.request.after = Some(sequence);
        self
    }
}

/// An open subscription: [`Subscription::next`] yields events in order, each once, and
/// acknowledges them; a broken connection or a restarted broker is reconnected to behind the
/// scenes, resuming after the last acknowledged event.
///
/// An event is acknowledged once the following one is asked for, i.e. once the caller has
/// finished with it. Acknowledgements are sent by a background task, coalesced, and never
/// waited for while reading: a reader that stopped to wait for an acknowledgement would leave
/// its stream's data unread, and on a connection shared by many subscriptions that data can hold
/// the very flow-control window the acknowledgement's answer needs. After a crash of the
/// caller, events it had not finished are delivered again; [`Subscription::close`] sends the
/// last acknowledgement and waits for it.
#[derive(Debug)]
pub struct Subscription {
    inner: ExchangeClient<Channel>,
    request: SubscribeRequest,
    stream: Option<tonic::Streaming<SubscribeResponse>>,
    /// The highest sequence number yielded; later copies of it and of earlier ones are dropped.
    yielded: u64,
    acker: Acker,
    /// Connection attempts since the last event, for backing off.
    reconnects: u32,
}

/// The background task that sends acknowledgements: the latest wanted position in, the
/// broker's acknowledged position out.
#[derive(Debug)]
struct Acker {
    want: tokio::sync::watch::Sender<u64>,
    acknowledged: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Acker {
    fn start(mut client: ExchangeClient<Channel>, request: &SubscribeRequest) -> Self {
        let (want, mut wanted) = tokio::sync::watch::channel(0u64);
        let (acked, acknowledged) = tokio::sync::watch::channel(0u64);
        let (resource, subscription) = (request.resource.clone(), request.subscription.clone());
        let task = tokio::spawn(async move {
            let mut failures = 0u32;
            while wanted.changed().await.is_ok() {
                let sequence = *wanted.borrow_and_update();
                if sequence <= *acked.borrow() {
                    continue;
                }
                let request = huitong_proto::v1::AcknowledgeRequest {
                    resource: resource.clone(),
                    subscription: subscription.clone(),
                    sequence,
                };
                match client.acknowledge(request).await {
                    Ok(r) => {
                        failures = 0;
                        acked.send_replace(r.into_inner().acknowledged);
                    }
                    // Not acknowledged now means delivered again later: at least once, never
                    // lost. Retry after a pause, unless a later position replaces it.
                    Err(status) => {
                        tracing::debug!(code = ?status.code(), "acknowledgement not taken");
                        failures = failures.saturating_add(1);
                        tokio::time::sleep(Duration::from_millis(
                            100 * u64::from(failures.min(20)),
                        ))
                        .await;
                        wanted.mark_changed();
                    }
                }
            }
        });
        Self {
            want,
            acknowledged,
            task,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.acker.task.abort();
    }
}

/// Events yielded between acknowledgements at most, while events keep arriving.
const ACK_EVERY: u64 = 64;

impl Subscription {
    /// The next event. Errors are the broker's refusals (no grant, a grant expired or revoked,
    /// fields outside the grant, events no longer retained: OUT_OF_RANGE, resynchronise); a
    /// connection that breaks is reconnected instead.
    pub async fn next(&mut self) -> Result<SubscribeResponse, ClientError> {
        // The caller is done with what it was given before.
        let done = self.yielded;
        if done >= *self.acker.want.borrow() + ACK_EVERY {
            self.acker.want.send_replace(done);
        }
        loop {
            let stream = match &mut self.stream {
                Some(s) => s,
                None => {
                    self.connect().await?;
                    continue;
                }
            };
            // Before waiting on the network, everything finished is acknowledged.
            let message = match tokio::time::timeout(Duration::ZERO, stream.message()).await {
                Ok(m) => m,
                Err(_) => {
                    if done > *self.acker.want.borrow() {
                        self.acker.want.send_replace(done);
                    }
                    stream.message().await
                }
            };
            match message {
                Ok(Some(response)) => {
                    self.reconnects = 0;
                    let seq = response.event.as_ref().map_or(0, |e| e.sequence);
                    if seq <= self.yielded {
                        continue;
                    }
                    self.yielded = seq;
                    return Ok(response);
                }
                Ok(None) => self.stream = None,
                Err(status) if reconnectable(status.code()) => self.stream = None,
                Err(status) => return Err(status.into()),
            }
        }
    }

    /// Acknowledges every event up to `sequence` now and waits for the broker's answer, which
    /// says what was wrong if it refused (a sequence number beyond the latest event).
    pub async fn acknowledge(&mut self, sequence: u64) -> Result<u64, ClientError> {
        let request = huitong_proto::v1::AcknowledgeRequest {
            resource: self.request.resource.clone(),
            subscription: self.request.subscription.clone(),
            sequence,
        };
        let acknowledged = self
            .inner
            .acknowledge(request)
            .await?
            .into_inner()
            .acknowledged;
        Ok(acknowledged)
    }

    /// Acknowledges everything yielded and waits until the broker has taken it (at most
    /// `timeout`; what is not taken is delivered again next time).
    pub async fn close(self) -> Result<(), ClientError> {
        self.close_within(Duration::from_secs(5)).await
    }

    /// [`Subscription::close`] with a bound on the wait.
    pub async fn close_within(mut self, timeout: Duration) -> Result<(), ClientError> {
        let done = self.yielded;
        self.stream = None;
        self.acker.want.send_replace(done);
        let mut acknowledged = self.acker.acknowledged.clone();
        match tokio::time::timeout(timeout, acknowledged.wait_for(|a| *a >= done)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "the broker did not take the acknowledgement of event {done} within {} ms; it will be delivered again",
                timeout.as_millis()
            ))
            .into()),
        }
    }

    async fn connect(&mut self) -> Result<(), ClientError> {
        if self.reconnects > 0 {
            let pause = Duration::from_millis(100 * u64::from(self.reconnects.min(20)));
            tokio::time::sleep(pause.min(Duration::from_secs(2))).await;
        }
        self.reconnects = self.reconnects.saturating_add(1);
        match self.inner.subscribe(self.request.clone()).await {
            Ok(stream) => {
                self.stream = Some(stream.into_inner());
                // From now on, resume after what was acknowledged.
                self.request.after = None;
                Ok(())
            }
            Err(status) if reconnectable(status.code()) => Ok(()),
            Err(status) => Err(status.into()),
        }
    }
}

/// Codes that mean the connection or the broker went away, not that the request is wrong.
fn reconnectable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unavailable | Unknown | Cancelled | Internal | Aborted | DeadlineExceeded
    )
}

/// A connection to a broker's `Admin` service, for a department's administrator (a certificate
/// with the `admin` role): access requests and grants.
/// The terms a provider approves an access request on ([`Admin::approve_with`]). Without any
/// of them, the grant releases every requested field unmasked, with the resource's default
/// lookup (key lookups only for a resource about people) and no caps.
#[derive(Debug, Clone, Default)]
pub struct Approval {
    req: ApproveAccessRequestRequest,
}

impl Approval {
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants only these of the requested fields.
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.req.fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Masks `field` with `mask` (`id-number`, `name`, `address`, `phone`, `bank-card`, `email`,
    /// `licence-plate`, `redact`, or `keep:N:M` / `keep:N:M:C`; see docs/masking.md).
    pub fn mask(mut self, field: &str, mask: &str) -> Self {
        self.req.masks.insert(field.to_owned(), mask.to_owned());
        self
    }

    /// Masked fields the consumer may still filter or key on.
    pub fn match_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.req.match_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// `"key"` (one record at a time, by its key) or `"search"` (also by filters).
    pub fn lookup(mut self, lookup: &str) -> Self {
        self.req.lookup = lookup.to_owned();
        self
    }

    /// Most records one query may release.
    pub fn max_records_per_query(mut self, n: u32) -> Self {
        self.req.max_records_per_query = n;
        self
    }

    /// Most different people released to the consumer per UTC day.
    pub fn max_subjects_per_day(mut self, n: u32) -> Self {
        self.req.max_subjects_per_day = n;
        self
    }

    /// Every query and subscription must give a case reference.
    pub fn require_case(mut self) -> Self {
        self.req.require_case = true;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Admin {
    inner: AdminClient<Channel>,
}

impl Admin {
    pub async fn connect(endpoint: &str, identity: &TlsFiles) -> Result<Self, ClientError> {
        Ok(Self {
            inner: AdminClient::new(connect_channel(endpoint, identity).await?),
        })
    }

    /// Files an access request as our department.
    pub async fn file_request(
        &mut self,
        resource: &str,
        fields: &[&str],
        purposes: &[&str],
        legal_basis: &str,
        duration_days: u32,
    ) -> Result<AccessRequest, ClientError> {
        let req = FileAccessRequestRequest {
            resource: resource.to_owned(),
            fields: fields.iter().map(|s| (*s).to_owned()).collect(),
            purposes: purposes.iter().map(|s| (*s).to_owned()).collect(),
            legal_basis: legal_basis.to_owned(),
            duration_days,
        };
        Ok(self.inner.file_access_request(req).await?.into_inner())
    }

    /// Requests we filed or must decide.
    pub async fn list_requests(
        &mut self,
        overdue_only: bool,
        state: Option<AccessRequestState>,
    ) -> Result<Vec<AccessRequest>, ClientError> {
        let req = ListAccessRequestsRequest {
            overdue_only,
            state: state.unwrap_or(AccessRequestState::Unspecified) as i32,
            ..Default::default()
        };
        self.requests(req).await
    }

    /// Requests matching `req`: our department's, or every department's for an auditor
    /// certificate (which may list but not change them).
    pub async fn requests(
        &mut self,
        req: ListAccessRequestsRequest,
    ) -> Result<Vec<AccessRequest>, ClientError> {
        Ok(self
            .inner
            .list_access_requests(req)
            .await?
            .into_inner()
            .requests)
    }

    /// Approves a request for one of our resources; `masks` maps field -> mask name.
    pub async fn approve(
        &mut self,
        id: &str,
        fields: &[&str],
        masks: &[(&str, &str)],
    ) -> Result<Grant, ClientError> {
        self.approve_matching(id, fields, masks, &[]).await
    }

    /// Approves a request like [`Admin::approve`], and lets the consumer filter or key on the
    /// masked fields in `match_fields` (a filter or key on any other masked field is refused).
    pub async fn approve_matching(
        &mut self,
        id: &str,
        fields: &[&str],
        masks: &[(&str, &str)],
        match_fields: &[&str],
    ) -> Result<Grant, ClientError> {
        let approval = Approval::new()
            .fields(fields.iter().copied())
            .match_fields(match_fields.iter().copied());
        let approval = masks
            .iter()
            .fold(approval, |a, (field, mask)| a.mask(field, mask));
        self.approve_with(id, &approval).await
    }

    /// Approves a request on all the terms of `approval`: fields, masks, matching, and the
    /// bounds on bulk reads (lookup, caps, case reference).
    pub async fn approve_with(
        &mut self,
        id: &str,
        approval: &Approval,
    ) -> Result<Grant, ClientError> {
        let mut req = approval.req.clone();
        req.id = id.to_owned();
        Ok(self.inner.approve_access_request(req).await?.into_inner())
    }

    /// Denies a request for one of our resources, with the reason the consumer will read.
    pub async fn deny(&mut self, id: &str, reason: &str) -> Result<AccessRequest, ClientError> {
        let req = DenyAccessRequestRequest {
            id: id.to_owned(),
            reason: reason.to_owned(),
        };
        Ok(self.inner.deny_access_request(req).await?.into_inner())
    }

    pub async fn list_grants(&mut self, include_inactive: bool) -> Result<Vec<Grant>, ClientError> {
        self.grants(ListGrantsRequest {
            include_inactive,
            ..Default::default()
        })
        .await
    }

    /// Grants matching `req` (say, those in force on a date): our department's, or every
    /// department's for an auditor certificate (which may list but not change them).
    pub async fn grants(&mut self, req: ListGrantsRequest) -> Result<Vec<Grant>, ClientError> {
        Ok(self.inner.list_grants(req).await?.into_inner().grants)
    }

    pub async fn revoke(&mut self, id: &str, reason: &str) -> Result<Grant, ClientError> {
        let req = RevokeGrantRequest {
            id: id.to_owned(),
            reason: reason.to_owned(),
        };
        Ok(self.inner.revoke_grant(req).await?.into_inner())
    }
}

/// A connection to a broker's `Audit` service: checkpoints and proofs for anyone with a
/// certificate of the exchange; entries and subject reports for auditors.
#[derive(Debug, Clone)]
pub struct Audit {
    inner: AuditClient<Channel>,
}

/// Why a receipt could not be confirmed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the log key is not usable: {0}")]
    Key(String),
    #[error("the checkpoint does not verify with the log key: {0}")]
    Checkpoint(String),
    #[error("the broker's proof does not show entry {index} in the signed log: {problem}")]
    NotIncluded { index: u64, problem: String },
}

impl Audit {
    pub async fn connect(endpoint: &str, identity: &TlsFiles) -> Result<Self, ClientError> {
        Ok(Self {
            inner: AuditClient::new(connect_channel(endpoint, identity).await?),
        })
    }

    /// The latest signed checkpoint.
    pub async fn checkpoint(&mut self) -> Result<Checkpoint, ClientError> {
        Ok(self
            .inner
            .get_checkpoint(huitong_proto::v1::GetCheckpointRequest {})
            .await?
            .into_inner())
    }

    pub async fn inclusion_proof(
        &mut self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, ClientError> {
        let req = huitong_proto::v1::GetInclusionProofRequest { index, tree_size };
        Ok(self.inner.get_inclusion_proof(req).await?.into_inner())
    }

    pub async fn consistency_proof(
        &mut self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, ClientError> {
        let req = huitong_proto::v1::GetConsistencyProofRequest { old_size, new_size };
        Ok(self.inner.get_consistency_proof(req).await?.into_inner())
    }

    /// Entries by range and filter (auditor certificates only).
    pub async fn entries(
        &mut self,
        request: ListEntriesRequest,
    ) -> Result<ListEntriesResponse, ClientError> {
        Ok(self.inner.list_entries(request).await?.into_inner())
    }

    /// Every recorded access to the person with `identifier` (e.g. a resident ID number) in
    /// every resource keyed by one field, or only in `resource` (auditor certificates only):
    /// key lookups, filter queries on any page and deliveries alike. Follows the broker's pages.
    pub async fn person_report(
        &mut self,
        identifier: &str,
        resource: Option<&str>,
    ) -> Result<SubjectReportResponse, ClientError> {
        let req = huitong_proto::v1::SubjectReportRequest {
            resource: resource.unwrap_or_default().to_owned(),
            identifier: identifier.to_owned(),
            ..Default::default()
        };
        self.report_pages(req).await
    }

    async fn report_pages(
        &mut self,
        mut req: huitong_proto::v1::SubjectReportRequest,
    ) -> Result<SubjectReportResponse, ClientError> {
        let mut report = self.inner.subject_report(req.clone()).await?.into_inner();
        while report.next_start > req.start {
            req.start = report.next_start;
            let page = self.inner.subject_report(req.clone()).await?.into_inner();
            report.entries.extend(page.entries);
            report.unlinkable_periods = page.unlinkable_periods;
            report.next_start = page.next_start;
        }
        report.next_start = 0;
        Ok(report)
    }

    /// Every recorded access to the record with `key` in `resource` (auditor certificates only).
    /// Follows the broker's pages, so a long history arrives whole.
    pub async fn subject_report(
        &mut self,
        resource: &str,
        key: &[(&str, &str)],
    ) -> Result<SubjectReportResponse, ClientError> {
        let req = huitong_proto::v1::SubjectReportRequest {
            resource: resource.to_owned(),
            key: key
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        };
        self.report_pages(req).await
    }

    /// Confirms that `receipt` is in the log the broker signed: fetches the latest checkpoint,
    /// verifies its signature with `verifier_key` (obtained out of band, not from the broker),
    /// and checks the inclusion proof against it. Returns the checkpoint's tree size.
    pub async fn confirm(
        &mut self,
        receipt: &Receipt,
        verifier_key: &str,
    ) -> Result<u64, ReceiptError> {
        use huitong_audit::{merkle, note};
        let verifier = note::Verifier::from_vkey(verifier_key)
            .map_err(|e| ReceiptError::Key(e.to_string()))?;
        let cp = self.checkpoint().await?;
        let body = verifier
            .verify(&cp.note)
            .map_err(|e| ReceiptError::Checkpoint(e.to_string()))?;
        let proof = self.inclusion_proof(receipt.index, body.size).await?;
        let not_included = |problem: String| ReceiptError::NotIncluded {
            index: receipt.index,
            problem,
        };
        let leaf: merkle::Hash = receipt
            .leaf_hash
            .as_slice()
            .try_into()
            .map_err(|_| not_included("the receipt's leaf hash is not 32 bytes".into()))?;
        let hashes = proof
            .hashes
            .iter()
            .map(|h| merkle::Hash::try_from(h.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| not_included("a proof hash is not 32 bytes".into()))?;
        merkle::verify_inclusion(receipt.index, body.size, &leaf, &hashes, &body.root)
            .map_err(|e| not_included(e.to_string()))?;
        Ok(body.size)
    }
}
