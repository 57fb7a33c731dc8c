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
    ListGrantsRequest, QueryRequest, RevokeGrantRequest,
};
use huitong_tls::{ClientTls, Expect, Role};
use tonic::transport::Channel;

pub use huitong_proto::v1::{
    AccessRequestState, Checkpoint, ConsistencyProof, ExchangeRecord, InclusionProof,
    ListEntriesRequest, ListEntriesResponse, LogEntry, QueryResponse, Receipt, Record,
    SubjectReportResponse, Value,
};
pub use huitong_tls::TlsFiles;

/// Why a call did not return an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker address is malformed or the broker cannot be reached.
    #[error("cannot connect to the broker at {endpoint}: {}", error_chain(.source))]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// Our own certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] huitong_tls::Error),
    /// The broker answered with an error status; its message says what to fix.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(#[from] tonic::Status),
    /// The catalogue entry the broker sent is not usable.
    #[error("the broker described {resource} inconsistently: {problem}")]
    BadDescription { resource: String, problem: String },
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

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

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
    let err = |source| ClientError::Connect {
        endpoint: endpoint.to_owned(),
        source,
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

/// A connection to a broker's `Admin` service, for a department's administrator (a certificate
/// with the `admin` role): access requests and grants.
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
        };
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
        let req = ApproveAccessRequestRequest {
            id: id.to_owned(),
            fields: fields.iter().map(|s| (*s).to_owned()).collect(),
            masks: masks
                .iter()
                .map(|(f, m)| ((*f).to_owned(), (*m).to_owned()))
                .collect(),
        };
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
        let req = ListGrantsRequest { include_inactive };
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

    /// Every recorded access to the record with `key` in `resource` (auditor certificates only).
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
        };
        Ok(self.inner.subject_report(req).await?.into_inner())
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
