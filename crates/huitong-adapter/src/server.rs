//! The gRPC server that serves a [`Source`]: request validation, the `Adapter` service, gRPC
//! health and server reflection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use huitong_core::{DeptId, FieldName, FieldType, ResourceId, ResourceName, ResourceSpec};
use huitong_proto::convert;
use huitong_proto::transport::{
    self, DEFAULT_MAX_MESSAGE_BYTES, MessageLimitLayer, OneRequestLayer,
};
use huitong_proto::v1::adapter_server::{self, Adapter, AdapterServer};
use huitong_proto::v1::value::Kind;
use huitong_proto::v1::{
    ChangeEvent, DescribeRequest, DescribeResponse, FetchRequest, FetchResponse, Filter, Record,
    SearchRequest, SearchResponse, Value, WatchChangesRequest,
};
use huitong_tls::{ConnectionLimits, PeerId, Role, ServerTls, guard};
use tokio::net::TcpListener;
use tokio_stream::Stream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};
use tracing::{Instrument, field};

use crate::error::Error;
use crate::metrics::AdapterMetrics;
use crate::source::{Change, ChangeStream, PageRequest, Source};
use crate::status;

/// Smallest `max_message_bytes` accepted: below this a single ordinary record may not fit.
pub const MIN_MESSAGE_BYTES: usize = 16 * 1024;
/// Largest `max_message_bytes` accepted. Pages bigger than this belong in several requests.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Longest change cursor accepted; sources issue far shorter ones.
pub const MAX_CURSOR_BYTES: usize = 4096;

/// Limits of the adapter server, and whom it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Largest request or response message, in bytes; larger requests are answered with
    /// RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Page size of a search that asks for none (`page_size` 0).
    pub default_page_size: u32,
    /// Larger requested page sizes are reduced to this.
    pub max_page_size: u32,
    /// Where to serve Prometheus metrics over plain HTTP (`/metrics`); `None` serves none.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The broker identities served (the config's `brokers`), one per broker of a cluster.
    /// Empty means the exchange's default broker, [`default_broker`] of this adapter's trust
    /// domain. No other certificate is served, whatever its role says.
    pub brokers: Vec<PeerId>,
    /// Against floods of idle or slow connections.
    pub connections: ConnectionLimits,
    /// On shutdown, how long calls in flight get to finish before they are cut (the broker
    /// retries a cut call on the adapter's replacement or reports UNAVAILABLE).
    pub shutdown_grace: std::time::Duration,
}

/// [`ServeOptions::shutdown_grace`] by default: below the 30 s systemd and Kubernetes give
/// a process between SIGTERM and SIGKILL.
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            default_page_size: 100,
            max_page_size: 1000,
            metrics_listen: None,
            brokers: Vec::new(),
            connections: ConnectionLimits::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// The broker an adapter in `trust_domain` serves when its config names none: the exchange
/// office's, `spiffe://<trust-domain>/dept/exchange-office/broker`, as `huitong pki init`
/// lists it and the demo and `deploy/` name it.
pub fn default_broker(trust_domain: &str) -> Result<PeerId, huitong_tls::Error> {
    let dept = DeptId::new(huitong_tls::pki::DEFAULT_BROKER_DEPT)
        .map_err(|e| huitong_tls::Error::InvalidArgument(e.to_string()))?;
    PeerId::new(trust_domain, dept, Role::Broker)
}

impl ServeOptions {
    /// The first out-of-range option, as (option name, problem); the names are those of the
    /// config file, so that the config loader can point at the key.
    pub(crate) fn problem(&self) -> Option<(&'static str, String)> {
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Some((
                "max_message_bytes",
                format!(
                    "{} is out of range; use {MIN_MESSAGE_BYTES} to {MAX_MESSAGE_BYTES} \
                     (the default is {DEFAULT_MAX_MESSAGE_BYTES})",
                    self.max_message_bytes
                ),
            ));
        }
        if self.default_page_size == 0 {
            return Some(("default_page_size", "it must be at least 1".into()));
        }
        if self.max_page_size < self.default_page_size {
            return Some((
                "max_page_size",
                format!(
                    "{} is smaller than default_page_size ({}); it must be at least as large",
                    self.max_page_size, self.default_page_size
                ),
            ));
        }
        None
    }

    fn check(&self) -> Result<(), Error> {
        match self.problem() {
            Some((key, problem)) => Err(Error::InvalidOptions(format!("{key}: {problem}"))),
            None => Ok(()),
        }
    }

    /// The page size to use for a requested one: 0 means the default, and no page is larger
    /// than the maximum.
    fn page_size(&self, requested: u32) -> u32 {
        match requested {
            0 => self.default_page_size,
            n => n.min(self.max_page_size),
        }
    }
}

/// The `huitong.v1.Adapter` service over a [`Source`]. [`serve`] runs it; build it directly to
/// add it to a tonic server of your own.
pub struct AdapterService<S> {
    metrics: Arc<AdapterMetrics>,
    dept: DeptId,
    source: Arc<S>,
    resources: HashMap<ResourceName, ResourceSpec>,
    describe: DescribeResponse,
    options: ServeOptions,
    closer: WatchCloser,
}

/// Ends every open `WatchChanges` stream of an [`AdapterService`] with UNAVAILABLE.
///
/// A change stream does not end on its own, and a graceful shutdown waits for open calls to
/// finish, so whoever serves the service must close the streams when shutdown begins; [`serve`]
/// does. Streams opened after [`close`](WatchCloser::close) end at once.
#[derive(Debug, Clone)]
pub struct WatchCloser(Arc<tokio::sync::watch::Sender<bool>>);

impl WatchCloser {
    pub fn close(&self) {
        self.0.send_replace(true);
    }

    /// Completes once [`close`](WatchCloser::close) was called (or the service is gone).
    fn closed(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut rx = self.0.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|closed| *closed).await;
        })
    }
}

impl<S> std::fmt::Debug for AdapterService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterService")
            .field("dept", &self.dept)
            .field("resources", &self.resources.keys().collect::<Vec<_>>())
            .field("software", &self.describe.software)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<S: Source> AdapterService<S> {
    /// The service's metrics, to serve with [`huitong_proto::metrics::serve`].
    pub fn metrics(&self) -> Arc<AdapterMetrics> {
        Arc::clone(&self.metrics)
    }

    /// What ends the service's open change streams; see [`WatchCloser`].
    pub fn watch_closer(&self) -> WatchCloser {
        self.closer.clone()
    }

    /// Checks the source's resources (each of `dept`, names distinct, at least one) and the
    /// options.
    pub fn new(dept: DeptId, source: S, options: &ServeOptions) -> Result<Self, Error> {
        options.check()?;
        let specs = source.resources();
        if specs.is_empty() {
            return Err(Error::NoResources(dept));
        }
        let mut resources = HashMap::with_capacity(specs.len());
        let mut descriptions = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.id().provider() != &dept {
                return Err(Error::ForeignResource {
                    dept,
                    resource: spec.id().clone(),
                });
            }
            if resources.contains_key(spec.id().name()) {
                return Err(Error::DuplicateResource(spec.id().clone()));
            }
            descriptions.push(convert::resource_description(&spec));
            resources.insert(spec.id().name().clone(), spec);
        }
        let describe = DescribeResponse {
            dept_id: dept.to_string(),
            resources: descriptions,
            software: format!(
                "huitong-adapter/{} {}",
                env!("CARGO_PKG_VERSION"),
                source.kind()
            ),
        };
        Ok(Self {
            metrics: Arc::new(AdapterMetrics::default()),
            dept,
            source: Arc::new(source),
            resources,
            describe,
            options: options.clone(),
            closer: WatchCloser(Arc::new(tokio::sync::watch::channel(false).0)),
        })
    }

    /// The department whose resources are served.
    pub fn dept(&self) -> &DeptId {
        &self.dept
    }

    /// The served resource a request names, by its local name (`household-register`) or its
    /// catalogue id (`public-security/household-register`).
    fn resource(&self, raw: &str) -> Result<&ResourceSpec, Status> {
        let not_served = |what: &dyn std::fmt::Display| {
            Status::not_found(format!(
                "resource {what} is not served by department {}; Describe lists what is",
                self.dept
            ))
        };
        let name = if raw.contains('/') {
            let id = ResourceId::parse(raw).map_err(|e| status::from_core(&e))?;
            if id.provider() != &self.dept {
                return Err(not_served(&id));
            }
            id.name().clone()
        } else {
            ResourceName::new(raw).map_err(|e| status::from_core(&e))?
        };
        let spec = self.resources.get(&name).ok_or_else(|| not_served(&name))?;
        spec.check_shared().map_err(|e| status::from_core(&e))?;
        Ok(spec)
    }

    async fn fetch_checked(&self, req: FetchRequest) -> Result<FetchResponse, Status> {
        let spec = self.resource(&req.resource)?;
        let key = checked_key(spec, req.key)?;
        let fields = spec
            .check_requested_fields(req.fields.iter().map(String::as_str))
            .map_err(|e| status::from_core(&e))?;
        let found = self
            .source
            .fetch(spec.id().name(), &key, &fields)
            .await
            .map_err(|e| source_failed(&e, spec.id()))?;
        match found {
            Some(record) => Ok(FetchResponse {
                record: Some(trimmed(record, &fields)),
            }),
            None => Err(Status::not_found(format!(
                "no record of {} has that key",
                spec.id()
            ))),
        }
    }

    async fn search_checked(&self, req: SearchRequest) -> Result<SearchResponse, Status> {
        let spec = self.resource(&req.resource)?;
        let filters = checked_filters(spec, req.filters)?;
        let fields = spec
            .check_requested_fields(req.fields.iter().map(String::as_str))
            .map_err(|e| status::from_core(&e))?;
        let page = PageRequest {
            size: self.options.page_size(req.page_size),
            token: Some(req.page_token).filter(|t| !t.is_empty()),
        };
        let page = self
            .source
            .search(spec.id().name(), &filters, &fields, page)
            .await
            .map_err(|e| source_failed(&e, spec.id()))?;
        tracing::Span::current().record("records", page.records.len());
        Ok(SearchResponse {
            records: page
                .records
                .into_iter()
                .map(|r| trimmed(r, &fields))
                .collect(),
            next_page_token: page.next_token.unwrap_or_default(),
        })
    }

    async fn watch_checked(&self, req: WatchChangesRequest) -> Result<ChangeEvents, Status> {
        let spec = self.resource(&req.resource)?;
        if req.cursor.len() > MAX_CURSOR_BYTES {
            return Err(Status::invalid_argument(format!(
                "the cursor is longer than any this adapter issues ({MAX_CURSOR_BYTES} bytes); \
                 pass back the cursor of an event, or none"
            )));
        }
        let cursor = Some(req.cursor.as_str()).filter(|c| !c.is_empty());
        let changes = self
            .source
            .watch(spec.id().name(), cursor)
            .await
            .map_err(|e| source_failed(&e, spec.id()))?;
        Ok(ChangeEvents {
            changes,
            spec: spec.clone(),
            dept: self.dept.clone(),
            closed: self.closer.closed(),
            done: false,
        })
    }
}

/// A source's changes as `ChangeEvent`s, until the source fails or the adapter shuts down.
struct ChangeEvents {
    changes: ChangeStream,
    spec: ResourceSpec,
    dept: DeptId,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    done: bool,
}

impl ChangeEvents {
    /// The event for one change: the key checked against the resource's key fields, since
    /// the broker files the change under it, and the record trimmed to the declared fields.
    fn event(&self, change: Change) -> Result<ChangeEvent, Status> {
        let id = self.spec.id();
        self.spec
            .check_key(
                change
                    .key
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.value_kind(), v.is_empty_text())),
            )
            .map_err(|e| {
                tracing::error!(resource = %id, error = %e, "the source reported a change with a malformed key");
                Status::internal(format!(
                    "the adapter reported a malformed change of {id}; its operators have the \
                     details in its log; watch again from the cursor of the last event"
                ))
            })?;
        let record = change.record.map(|mut r| {
            r.fields.retain(|name, _| self.spec.field(name).is_some());
            r
        });
        Ok(ChangeEvent {
            resource: id.to_string(),
            key: change.key.into_iter().collect(),
            record,
            cursor: change.cursor,
        })
    }
}

impl Stream for ChangeEvents {
    type Item = Result<ChangeEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.closed.as_mut().poll(cx).is_ready() {
            this.done = true;
            tracing::info!(resource = %this.spec.id(), "change stream closed: shutting down");
            return Poll::Ready(Some(Err(Status::unavailable(format!(
                "department {}'s adapter is shutting down; watch again later from the cursor \
                 of the last event received",
                this.dept
            )))));
        }
        let item = match this.changes.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        let out = match item {
            Some(Ok(change)) => this.event(change),
            Some(Err(e)) => Err(source_failed(&e, this.spec.id())),
            // Sources keep their streams open; one that ends has stopped watching.
            None => Err(Status::unavailable(format!(
                "the change stream of {} ended; watch again from the cursor of the last event",
                this.spec.id()
            ))),
        };
        if let Err(status) = &out {
            this.done = true;
            tracing::info!(
                resource = %this.spec.id(),
                code = ?status.code(),
                reason = status.message(),
                "change stream ended"
            );
        }
        Poll::Ready(Some(out))
    }
}

/// The key in key-field order, each value coerced to its field's type.
fn checked_key(
    spec: &ResourceSpec,
    mut key: HashMap<String, Value>,
) -> Result<Vec<(FieldName, Value)>, Status> {
    spec.check_key(
        key.iter()
            .map(|(name, v)| (name.as_str(), v.value_kind(), v.is_empty_text())),
    )
    .map_err(|e| status::from_core(&e))?;
    spec.key_fields()
        .iter()
        .map(|name| {
            // check_key has seen exactly the key fields, so each is present.
            let value = key.remove(name.as_str()).ok_or_else(|| {
                Status::internal(format!("key field {name} vanished after the key check"))
            })?;
            Ok((name.clone(), coerced(field_type(spec, name), value)))
        })
        .collect()
}

/// The filters, each on a declared field with a value of its type, none on a field twice.
fn checked_filters(
    spec: &ResourceSpec,
    filters: Vec<Filter>,
) -> Result<Vec<(FieldName, Value)>, Status> {
    let mut out: Vec<(FieldName, Value)> = Vec::with_capacity(filters.len());
    for f in filters {
        let value = f.value.unwrap_or_else(Value::null);
        let name = spec
            .check_filter(&f.field, value.value_kind())
            .map_err(|e| status::from_core(&e))?;
        if out.iter().any(|(n, _)| n == &name) {
            return Err(status::from_core(&huitong_core::Error::DuplicateField(
                name.to_string(),
            )));
        }
        let value = coerced(field_type(spec, &name), value);
        out.push((name, value));
    }
    Ok(out)
}

fn field_type(spec: &ResourceSpec, name: &FieldName) -> Option<FieldType> {
    spec.field(name.as_str()).map(|f| f.ty)
}

/// One canonical form per value, so that a source can compare with `==`: ints in double
/// fields become doubles, every null is the same null, timestamps are normalised.
fn coerced(ty: Option<FieldType>, value: Value) -> Value {
    match (ty, value.kind) {
        (_, None | Some(Kind::NullValue(_))) => Value::null(),
        (Some(FieldType::Double), Some(Kind::IntValue(i))) => Value::double(i as f64),
        (_, Some(Kind::TimestampValue(mut t))) => {
            t.normalize();
            Value {
                kind: Some(Kind::TimestampValue(t)),
            }
        }
        (_, kind) => Value { kind },
    }
}

/// Only the requested fields: a source may return whole rows, and nothing else may leave.
fn trimmed(mut record: Record, fields: &[FieldName]) -> Record {
    record
        .fields
        .retain(|name, _| fields.iter().any(|f| f.as_str() == name));
    record
}

/// Logs a source's failure with its detail and answers with a status that omits it.
fn source_failed(e: &crate::SourceError, resource: &ResourceId) -> Status {
    match e {
        crate::SourceError::BadPageToken
        | crate::SourceError::BadCursor
        | crate::SourceError::UnsupportedSearch(_)
        | crate::SourceError::ChangesUnsupported => {}
        crate::SourceError::CursorExpired(_) => {
            tracing::info!(%resource, error = %e, "a watcher must resynchronise");
        }
        crate::SourceError::Unavailable(_) => {
            tracing::warn!(%resource, error = %e, "the source is unavailable");
        }
        crate::SourceError::Internal(_) => {
            tracing::error!(%resource, error = %e, "the source failed");
        }
    }
    status::from_source(e, &resource.to_string())
}

/// The caller's W3C trace id, so that the broker's and the adapter's lines for one exchange can
/// be joined; empty when the call carries none.
fn trace_id<T>(request: &Request<T>) -> String {
    huitong_proto::trace::TraceContext::from_metadata(request.metadata())
        .map(|t| t.trace_id_hex())
        .unwrap_or_default()
}

/// Joins the call's span to the caller's trace for OpenTelemetry export.
fn link<T>(span: &tracing::Span, request: &Request<T>) {
    if let Some(t) = huitong_proto::trace::TraceContext::from_metadata(request.metadata()) {
        huitong_proto::trace::link_span(span, &t);
    }
}

/// The resource as a request named it, cut short, for spans.
fn resource_field(raw: &str) -> String {
    raw.chars().take(80).collect()
}

impl<S> AdapterService<S> {
    /// Records how a call ended: on its span, in the access log and in the metrics.
    fn finish<T>(
        &self,
        method: &'static str,
        resource: &str,
        started: std::time::Instant,
        result: Result<T, Status>,
    ) -> Result<Response<T>, Status> {
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        // Resources outside the catalogue are one label, so a caller cannot grow the metrics.
        let label = if resource.is_empty()
            || self
                .resources
                .keys()
                .any(|r| r.as_str() == resource || resource.ends_with(&format!("/{r}")))
        {
            resource
        } else {
            "unknown"
        };
        self.metrics.call(method, label, code, started.elapsed());
        finish(result)
    }
}

/// Records how a call ended on its span, and logs refusals.
fn finish<T>(result: Result<T, Status>) -> Result<Response<T>, Status> {
    let span = tracing::Span::current();
    match result {
        Ok(answer) => {
            span.record("outcome", "ok");
            // One line per answered call: the adapter's access log (no key values in it).
            tracing::info!("answered");
            Ok(Response::new(answer))
        }
        Err(status) => {
            let outcome = format!("{:?}", status.code());
            span.record("outcome", outcome.as_str());
            tracing::info!(reason = status.message(), "refused");
            Err(status)
        }
    }
}

#[tonic::async_trait]
impl<S: Source> Adapter for AdapterService<S> {
    async fn describe(
        &self,
        _request: Request<DescribeRequest>,
    ) -> Result<Response<DescribeResponse>, Status> {
        let span = tracing::info_span!("describe", outcome = field::Empty);
        let started = std::time::Instant::now();
        async { self.finish("describe", "", started, Ok(self.describe.clone())) }
            .instrument(span)
            .await
    }

    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let trace = trace_id(&request);
        let span = tracing::info_span!(
            "fetch",
            trace_id = %trace,
            resource = %resource_field(&request.get_ref().resource),
            fields = request.get_ref().fields.len(),
            outcome = field::Empty,
        );
        link(&span, &request);
        let req = request.into_inner();
        let started = std::time::Instant::now();
        let resource = resource_field(&req.resource);
        async { self.finish("fetch", &resource, started, self.fetch_checked(req).await) }
            .instrument(span)
            .await
    }

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        let trace = trace_id(&request);
        let r = request.get_ref();
        let span = tracing::info_span!(
            "search",
            trace_id = %trace,
            resource = %resource_field(&r.resource),
            filters = r.filters.len(),
            fields = r.fields.len(),
            page_size = r.page_size,
            continued = !r.page_token.is_empty(),
            records = field::Empty,
            outcome = field::Empty,
        );
        link(&span, &request);
        let req = request.into_inner();
        let started = std::time::Instant::now();
        let resource = resource_field(&req.resource);
        async { self.finish("search", &resource, started, self.search_checked(req).await) }
            .instrument(span)
            .await
    }

    type WatchChangesStream = Pin<Box<dyn Stream<Item = Result<ChangeEvent, Status>> + Send>>;

    async fn watch_changes(
        &self,
        request: Request<WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let trace = trace_id(&request);
        let span = tracing::info_span!(
            "watch_changes",
            trace_id = %trace,
            resource = %resource_field(&request.get_ref().resource),
            resumed = !request.get_ref().cursor.is_empty(),
            outcome = field::Empty,
        );
        link(&span, &request);
        let req = request.into_inner();
        let started = std::time::Instant::now();
        let resource = resource_field(&req.resource);
        async {
            let result = self
                .watch_checked(req)
                .await
                .map(|events| -> Self::WatchChangesStream { Box::pin(events) });
            self.finish("watch_changes", &resource, started, result)
        }
        .instrument(span)
        .await
    }
}

/// Serves `source` as department `dept`'s adapter on `listener` until `shutdown` completes,
/// then finishes the calls in flight and returns.
///
/// Besides `huitong.v1.Adapter`, it serves gRPC health (`""` and `huitong.v1.Adapter` are
/// SERVING until shutdown begins, NOT_SERVING after) and server reflection (v1 and v1alpha). The source's
/// resources and the options are checked first, so a misdescribed source fails here with a
/// precise error rather than answering requests wrongly.
pub async fn serve<S: Source>(
    dept: DeptId,
    source: S,
    listener: TcpListener,
    options: ServeOptions,
    tls: ServerTls,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let brokers = accepted_brokers(&options, tls.id())?;
    let tls = Arc::new(
        tls.with_limits(options.connections)
            .map_err(|e| Error::InvalidOptions(format!("connection limits: {e}")))?,
    );
    let service = AdapterService::new(dept, source, &options)?;
    service.metrics().facts().set_tls(&tls);
    let closer = service.watch_closer();
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    if let Some(addr) = options.metrics_listen {
        let listener = transport::bind(addr).map_err(|e| {
            Error::io(
                "listen for metrics on",
                std::path::Path::new(&addr.to_string()),
                e,
            )
        })?;
        let mut stopped = metrics_stopped.clone();
        tokio::spawn(huitong_proto::metrics::serve(
            listener,
            service.metrics().registry(),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
    }
    // After the metrics listener is up, so that whoever reads the warning can scrape the gauge.
    service.metrics().facts().warn_of_expiry();
    let dept = service.dept.clone();
    let resources = service.resources.len();
    let max = options.max_message_bytes;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(
            adapter_server::SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;

    // Only the services served here: the protocol's descriptor set also holds the broker's.
    let reflection_v1 = transport::reflection(&[adapter_server::SERVICE_NAME]).build_v1()?;
    let reflection_v1alpha =
        transport::reflection(&[adapter_server::SERVICE_NAME]).build_v1alpha()?;

    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let signal = {
        let dept = dept.clone();
        async move {
            shutdown.await;
            let _ = stopping.send(true);
            // NOT_SERVING first, so that health checks send new work elsewhere; then the
            // change streams end (UNAVAILABLE, which the broker resumes elsewhere) and tonic
            // sends GOAWAY on every connection and lets calls in flight finish.
            for name in ["", adapter_server::SERVICE_NAME] {
                health
                    .set_service_status(name, tonic_health::ServingStatus::NotServing)
                    .await;
            }
            closer.close();
            let _ = stop_metrics.send(true);
            tracing::info!(%dept, "adapter shutting down");
        }
    };
    // Daily, so that a certificate running out is in the log for weeks before it does.
    let expiry_warnings = {
        let metrics = service.metrics();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
                metrics.facts().warn_of_expiry();
            }
        })
    };
    let grace = options.shutdown_grace;

    match listener.local_addr() {
        Ok(addr) => tracing::info!(%dept, %addr, resources, "adapter serving"),
        Err(_) => tracing::info!(%dept, resources, "adapter serving"),
    }
    let server = tonic::transport::Server::builder()
        .layer(MessageLimitLayer::new(max))
        .layer(OneRequestLayer)
        .add_service(InterceptedService::new(
            AdapterServer::new(service)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            // Only the exchange's broker calls adapters: neither a consumer certificate nor a
            // broker-role certificate of some department may bypass the broker's policy and
            // its log by dialling a department directly.
            guard::require_ids(
                Arc::clone(&tls),
                "a department's adapter",
                &brokers,
                "brokers",
            ),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(tls.incoming(listener), signal);
    // A client may keep its connection, and calls on it, open past GOAWAY: after the grace
    // the server is dropped, which cuts whatever is left, so that a stop always ends.
    let result = tokio::select! {
        r = server => r,
        () = async move {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(%dept, grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX), "calls still open after the shutdown grace period were cut");
            Ok(())
        }
    };
    expiry_warnings.abort();
    result?;
    tracing::info!(%dept, "adapter stopped");
    Ok(())
}

/// The broker identities to serve: the configured ones, each a broker of this adapter's own
/// exchange, or the default broker.
fn accepted_brokers(options: &ServeOptions, own: &PeerId) -> Result<Vec<PeerId>, Error> {
    if options.brokers.is_empty() {
        return default_broker(&own.trust_domain)
            .map(|b| vec![b])
            .map_err(|e| Error::InvalidOptions(format!("brokers: {e}")));
    }
    for (i, b) in options.brokers.iter().enumerate() {
        if b.role != Role::Broker {
            return Err(Error::InvalidOptions(format!(
                "brokers[{i}]: {b} is not a broker identity; its role must be broker"
            )));
        }
        if b.trust_domain != own.trust_domain {
            return Err(Error::InvalidOptions(format!(
                "brokers[{i}]: {b} is not of this exchange, whose trust domain is {:?} \
                 (from this adapter's certificate)",
                own.trust_domain
            )));
        }
    }
    Ok(options.brokers.clone())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod watch_tests;
