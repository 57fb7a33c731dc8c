//! The exchange path: one consumer query, from the wire to the answer.
//!
//! Each step is a small function and the steps run in this order, top to bottom:
//!
//! 0. **authenticate**: done before this module, by the interceptor that guards the service
//!    (`huitong_tls::guard`): the caller's certificate is verified and must have the consumer
//!    role; its department is the consumer, whatever the request says;
//! 1. **validate**: raw strings become checked ids, fields and a purpose ([`validate`]);
//! 2. **catalogue**: the resource exists, may be shared, and has the fields and key asked for
//!    ([`check_against_catalogue`]);
//! 3. **authorise**: the consumer is within its rate limits (checked right after step 1), and
//!    its grants allow these fields for this purpose
//!    ([`Policy::decide`]); the decision says which masks apply;
//! 4. **route**: a key lookup of a cacheable resource is answered from the cache when the copy
//!    is young enough ([`ExchangeService::through_cache`]); otherwise the provider's adapter
//!    answers within the deadline, through its guard: a bound on concurrent calls, a circuit
//!    breaker, retries of connection failures within a budget ([`route`]);
//! 5. **minimise and mask**: only the fields asked for leave the broker, whatever the adapter
//!    sent, masked as the grant requires ([`minimise`], [`mask`]);
//! 6. **answer**: records with provenance, the grant used and the request id;
//! 7. **audit**: the exchange, answered or refused, is appended to the exchange log and the
//!    answer leaves only once that record is durable; it carries the record's receipt.
//!
//! A refusal at any step ends the exchange with the status from [`crate::error`]. Before step 1,
//! an exchange beyond the broker's `max_in_flight` is shed with UNAVAILABLE, unrecorded: it was
//! refused for the broker's sake, before anything about it was decided or read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use huitong_core::policy::Decision;
use huitong_core::{DeptId, FieldName, Purpose, ResourceId, ResourceSpec, Selection, Why};
use huitong_proto::trace::TraceContext;
use huitong_proto::v1::exchange_server::Exchange;
use huitong_proto::v1::value::Kind;
use huitong_proto::v1::{
    AcknowledgeRequest, AcknowledgeResponse, CatalogueEntry, ExchangeRecord, FetchRequest, Filter,
    ListCatalogueRequest, ListCatalogueResponse, Provenance, QueryRequest, QueryResponse, Record,
    SearchRequest, SubscribeRequest, Value,
};
use huitong_proto::{Timestamp, convert};
use huitong_tls::guard::verified_peer;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info, info_span};

use crate::cache::{CacheKey, RecordCache};
use crate::daily::{Admit, Reservation};
use crate::deadline::Deadline;
use crate::error::{AdapterCall, ExchangeError};
use crate::events::EventLog;
use crate::log::ExchangeLog;
use crate::metrics::{Metrics, Stage};
use crate::policy::Policy;
use crate::providers::{Provider, Providers};
use crate::release::{Released, release, subject_of};
use crate::resilience::{Refusal, backoff};

/// What the exchange log records about one exchange, filled in as the steps run.
struct Trail {
    record: ExchangeRecord,
    /// The people counted against the grant's daily cap, uncounted if the answer cannot be
    /// recorded and so does not leave.
    counted: Option<Reservation>,
}

impl Trail {
    fn start(request_id: &str, consumer: &DeptId, raw: &QueryRequest) -> Trail {
        // Raw request text is bounded before it is written; ids are checked later, but a refusal
        // of a malformed request is recorded too.
        let resource: String = raw.resource.chars().take(130).collect();
        let provider = resource.split('/').next().unwrap_or_default().to_owned();
        let bounded = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        let mut selected_by: Vec<String> = raw
            .key
            .keys()
            .chain(raw.filters.iter().map(|f| &f.field))
            .take(32)
            .map(|f| bounded(f, 64))
            .collect();
        selected_by.sort();
        selected_by.dedup();
        Trail {
            record: ExchangeRecord {
                time_micros: huitong_audit::record::micros(SystemTime::now()),
                request_id: request_id.to_owned(),
                kind: huitong_audit::record::kind::QUERY.into(),
                consumer: consumer.to_string(),
                provider,
                resource,
                purpose: raw.purpose.trim().chars().take(200).collect(),
                fields_asked: raw.fields.iter().take(64).map(|f| bounded(f, 64)).collect(),
                selected_by,
                ..Default::default()
            },
            counted: None,
        }
    }

    /// Who asked and for which case, once both are known to be well formed. The official is
    /// recorded only as its HMAC: it is the consumer's assertion about one of its staff.
    fn actor(&mut self, log: &ExchangeLog, official: Option<&str>, case_ref: Option<&str>) {
        if let Some(id) = official {
            match log.official(&self.record.consumer, id, self.record.time_micros) {
                Ok((mac, period)) => {
                    self.record.official = mac;
                    self.record.subject_period = period;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no subject key; the exchange is recorded without its official");
                }
            }
        }
        self.record.case_ref = case_ref.unwrap_or_default().to_owned();
    }

    /// The subject of a key lookup, once the key is known to be well formed.
    fn subject(&mut self, log: &ExchangeLog, key: &std::collections::HashMap<String, Value>) {
        if let Some((mac, period)) = subject_of(log, key, self.record.time_micros) {
            self.record.subject = mac;
            self.record.subject_period = period;
        }
    }

    fn served(&mut self, routed: &Routed) {
        self.record.cache_hit = routed.from_cache;
        self.record.stale = routed.stale;
    }

    fn released(&mut self, fields: &[FieldName], count: usize, released: Released) {
        self.record.fields = fields.iter().map(|f| f.to_string()).collect();
        self.record.record_count = count as u32;
        self.record.answer_digest = released.answer_digest;
        self.record.masked_fields = released.masked_fields;
        if !released.subjects.is_empty() {
            self.record.subjects = released.subjects;
            self.record.subject_period = released.subject_period;
        }
    }

    fn finish(
        mut self,
        result: &Result<QueryResponse, ExchangeError>,
        latency_micros: i64,
    ) -> ExchangeRecord {
        self.record.latency_micros = latency_micros;
        match result {
            Ok(_) => {
                self.record.outcome = huitong_audit::record::outcome::ANSWERED.into();
                self.record.status_code = 0;
            }
            Err(e) => {
                self.record.outcome = outcome_of(e).into();
                self.record.status_code = tonic::Code::from(e) as i32;
                self.record.refusal = e.recorded();
                self.record.fields.clear();
                self.record.masked_fields.clear();
                self.record.subjects.clear();
            }
        }
        self.record
    }
}

/// How an exchange that did not answer is recorded: the provider has no such record, the
/// provider or broker could not answer, or policy or the request's form refused it. Auditors
/// count these apart: a not-found is an answer about a person, a failure is an outage.
pub(crate) fn outcome_of(e: &ExchangeError) -> &'static str {
    use huitong_audit::record::outcome;
    match e {
        ExchangeError::NoRecord { .. } => outcome::NOT_FOUND,
        e if could_not_answer(e)
            || matches!(
                tonic::Code::from(e),
                tonic::Code::Internal | tonic::Code::Unavailable
            ) =>
        {
            outcome::FAILED
        }
        _ => outcome::REFUSED,
    }
}

/// Page limits for filter queries.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub default_size: u32,
    pub max_size: u32,
}

/// The `Exchange` gRPC service.
#[derive(Debug, Clone)]
pub struct ExchangeService {
    pub(crate) providers: Arc<Providers>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) log: Arc<ExchangeLog>,
    pub(crate) metrics: Arc<Metrics>,
    cache: Option<Arc<RecordCache<ExchangeError>>>,
    pub(crate) events: Arc<EventLog>,
    in_flight: Arc<tokio::sync::Semaphore>,
    adapter_timeout: Duration,
    paging: Paging,
}

/// What an [`ExchangeService`] is built from.
#[derive(Debug)]
pub struct ExchangeParts {
    pub providers: Arc<Providers>,
    pub policy: Arc<Policy>,
    pub log: Arc<ExchangeLog>,
    pub metrics: Arc<Metrics>,
    /// `None` when caching is off.
    pub cache: Option<Arc<RecordCache<ExchangeError>>>,
    pub events: Arc<EventLog>,
    pub max_in_flight: usize,
    pub adapter_timeout: Duration,
    pub paging: Paging,
}

impl ExchangeService {
    pub fn new(p: ExchangeParts) -> Self {
        Self {
            providers: p.providers,
            policy: p.policy,
            log: p.log,
            metrics: p.metrics,
            cache: p.cache,
            events: p.events,
            in_flight: Arc::new(tokio::sync::Semaphore::new(p.max_in_flight.max(1))),
            adapter_timeout: p.adapter_timeout,
            paging: p.paging,
        }
    }
}

/// How long a shed consumer is told to wait: long enough for a burst to pass.
const SHED_RETRY_AFTER: Duration = Duration::from_millis(200);

#[tonic::async_trait]
impl Exchange for ExchangeService {
    type SubscribeStream = crate::subscribe::EventStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        crate::subscribe::subscribe(self, request).await
    }

    async fn acknowledge(
        &self,
        request: Request<AcknowledgeRequest>,
    ) -> Result<Response<AcknowledgeResponse>, Status> {
        crate::subscribe::acknowledge(self, request).await
    }

    async fn list_catalogue(
        &self,
        request: Request<ListCatalogueRequest>,
    ) -> Result<Response<ListCatalogueResponse>, Status> {
        let provider = request.into_inner().provider;
        let only = if provider.is_empty() {
            None
        } else {
            Some(
                huitong_core::DeptId::new(&provider)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            )
        };
        let catalogue = self.providers.catalogue();
        let entries = catalogue
            .iter()
            .filter(|s| only.as_ref().is_none_or(|d| s.id().provider() == d))
            .map(|s| CatalogueEntry {
                resource: s.id().to_string(),
                provider: s.id().provider().to_string(),
                description: Some(convert::resource_description(s)),
                provider_reachable: self
                    .providers
                    .get(s.id().provider())
                    .is_some_and(|p| p.is_reachable()),
            })
            .collect();
        Ok(Response::new(ListCatalogueResponse { entries }))
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        let started = Instant::now();
        let request_id = next_request_id();
        // Load shedding: each exchange holds a slot until it has answered, so the broker's
        // memory is bounded by max_in_flight times the largest message.
        let Ok(_slot) = self.in_flight.try_acquire() else {
            self.metrics.shed();
            return Err(ExchangeError::Overloaded {
                retry_after: SHED_RETRY_AFTER,
            }
            .into_status(&request_id));
        };
        let consumer = verified_peer(&request)?.dept.clone();
        let deadline = Deadline::from_request(request.metadata(), self.adapter_timeout);
        // The consumer's trace continues through the broker to the adapter; without one, the
        // exchange starts its own.
        let trace =
            TraceContext::from_metadata(request.metadata()).unwrap_or_else(TraceContext::new_root);
        let raw = request.into_inner();
        let span = info_span!("exchange", request_id = %request_id, trace_id = %trace.trace_id_hex(), consumer = %consumer, resource = %raw.resource.chars().take(130).collect::<String>());
        huitong_proto::trace::link_span(&span, &trace);
        async move {
            let mut trail = Trail::start(&request_id, &consumer, &raw);
            let result = self
                .exchange(raw, &consumer, deadline, &trace, &request_id, &mut trail)
                .await;
            // Step 7, audit: the exchange is recorded, allowed or refused, and the answer leaves
            // only once the record is durable. If it cannot be recorded, nothing is released.
            let micros = started.elapsed().as_micros() as i64;
            let counted = trail.counted.take();
            let record = trail.finish(&result, micros);
            let appending = Instant::now();
            let logged = self.log.record(&record).await;
            self.metrics.stage(Stage::LogAppend, appending.elapsed());
            let (outcome, code) = match &result {
                Ok(_) => ("answered", tonic::Code::Ok),
                Err(e) => ("refused", tonic::Code::from(e)),
            };
            self.metrics.exchange(
                &record.consumer,
                &record.provider,
                &record.resource,
                outcome,
                if logged.is_ok() { code } else { tonic::Code::Unavailable },
                started.elapsed(),
            );
            let receipt = match logged {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the exchange log could not record an exchange");
                    if let Some(r) = counted {
                        self.policy.uncount_subjects(r).await;
                    }
                    return Err(ExchangeError::from_log(&e, "exchange").into_status(&request_id));
                }
            };
            match result {
                Ok(mut answer) => {
                    info!(outcome = "answered", records = answer.records.len(), micros, index = receipt.index, "exchange");
                    answer.receipt = Some(receipt);
                    Ok(Response::new(answer))
                }
                Err(e) => {
                    info!(outcome = "refused", code = ?tonic::Code::from(&e), reason = %e, micros, index = receipt.index, "exchange");
                    Err(e.into_status(&request_id))
                }
            }
        }
        .instrument(span)
        .await
    }
}

impl ExchangeService {
    async fn exchange(
        &self,
        mut raw: QueryRequest,
        consumer: &DeptId,
        deadline: Deadline,
        trace: &TraceContext,
        request_id: &str,
        trail: &mut Trail,
    ) -> Result<QueryResponse, ExchangeError> {
        canonicalise_id_numbers(&mut raw);
        // Whose record is looked up is known as soon as the key is well formed: from then on a
        // refusal is recorded against that person too, so that attempts show in their report.
        let catalogue = self.providers.catalogue();
        if let Ok(spec) = ResourceId::parse(&raw.resource).and_then(|r| catalogue.get(&r).cloned())
        {
            let key_ok = !raw.key.is_empty()
                && spec
                    .check_key(
                        raw.key
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.value_kind(), v.is_empty_text())),
                    )
                    .is_ok();
            if key_ok {
                trail.subject(&self.log, &raw.key);
            }
        }
        let query = validate(&raw)?;
        // The log records the purpose as matched against the grants, not as typed.
        trail.record.purpose = query.purpose.to_string();
        trail.actor(
            &self.log,
            query.official.as_deref(),
            query.case_ref.as_deref(),
        );
        // Rate limits come first among the checks that need no adapter: an over-quota consumer
        // costs the broker as little as possible.
        self.policy
            .check_quota(consumer, &query.resource)
            .map_err(|q| ExchangeError::OverQuota {
                consumer: consumer.clone(),
                scope: q.scope,
                per_second: q.per_second,
                retry_after: q.retry_after,
            })?;
        let provider = self.provider_of(&query.resource)?;
        let spec = catalogue.get(&query.resource)?;
        let checked = check_against_catalogue(spec, &raw)?;
        let fields = checked.fields;
        let deciding = Instant::now();
        let decision = self.policy.decide(
            spec,
            consumer,
            &fields,
            Selection {
                filters: &checked.filters,
                key: &checked.key,
            },
            Why {
                purpose: &query.purpose,
                has_case: query.case_ref.is_some(),
            },
            SystemTime::now(),
        );
        self.metrics.stage(Stage::Policy, deciding.elapsed());
        let decision = decision?;
        trail.record.grant_id = decision.grant_id.clone().unwrap_or_default();
        let selector = if raw.key.is_empty() {
            Selector::Filters {
                filters: raw.filters,
                // A page beyond the grant's cap on records per query is refused here, before
                // the provider is asked.
                page_size: decision
                    .page_size(raw.page_size, self.paging.default_size)?
                    .min(self.paging.max_size),
                page_token: raw.page_token,
            }
        } else {
            Selector::Key(raw.key)
        };
        let max_age = match (&self.cache, &selector) {
            (Some(_), Selector::Key(_)) => self.policy.max_cache_age(spec),
            _ => Duration::ZERO,
        };
        let routing = Instant::now();
        let routed = match (&self.cache, selector) {
            (Some(cache), Selector::Key(key)) if !max_age.is_zero() => {
                self.through_cache(cache, provider, spec, key, max_age, deadline, trace)
                    .await
            }
            (_, selector) => {
                // The adapter returns the key fields too, whatever the consumer asked for: they
                // say whose records these are, for the subject report; minimising drops them.
                let mut asked = fields.clone();
                for k in spec.key_fields() {
                    if !asked.contains(k) {
                        asked.push(k.clone());
                    }
                }
                route(
                    provider,
                    &query.resource,
                    &selector,
                    &asked,
                    deadline,
                    trace,
                )
                .await
            }
        };
        self.metrics.stage(Stage::Adapter, routing.elapsed());
        let routed = routed?;
        trail.served(&routed);
        // An adapter may answer more than the page it was asked for: beyond the grant's cap,
        // nothing leaves.
        decision.check_released(routed.records.len())?;
        let mut records = routed.records;
        let released = release(
            &self.log,
            spec,
            &decision,
            &fields,
            &mut records,
            trail.record.time_micros,
        );
        trail.counted = self.count_subjects(&decision, &released).await?;
        let masked_fields = released.masked_fields.clone();
        trail.released(&fields, records.len(), released);
        Ok(QueryResponse {
            records,
            provenance: Some(Provenance {
                provider: query.resource.provider().to_string(),
                resource: query.resource.to_string(),
                fetched_at: Some(Timestamp::from(routed.fetched_at)),
                from_cache: routed.from_cache,
                age_millis: u64::try_from(routed.age.as_millis()).unwrap_or(u64::MAX),
                stale: routed.stale,
            }),
            next_page_token: routed.next_page_token,
            request_id: request_id.to_owned(),
            grant_id: decision.grant_id.unwrap_or_default(),
            masked_fields,
            receipt: None,
        })
    }

    /// Step 4 for a key lookup of a cacheable resource: a copy no older than `max_age` is
    /// served from the cache; otherwise the provider is asked (one call for all the exchanges
    /// that miss on the key at once) for the whole record, which is cached and then minimised
    /// per consumer like any answer. If the provider cannot answer and the resource allows it,
    /// a copy within its stale-if-error window is served, flagged stale.
    #[allow(clippy::too_many_arguments)]
    async fn through_cache(
        &self,
        cache: &RecordCache<ExchangeError>,
        provider: &Provider,
        spec: &ResourceSpec,
        key: std::collections::HashMap<String, Value>,
        max_age: Duration,
        deadline: Deadline,
        trace: &TraceContext,
    ) -> Result<Routed, ExchangeError> {
        let ck = CacheKey::new(spec, &key);
        let held = cache.get(&ck).await;
        if let Some(c) = &held
            && c.age() <= max_age
        {
            self.metrics.cache_lookup(spec.id(), "hit");
            return Ok(Routed::cached(c, false));
        }
        self.metrics.cache_lookup(spec.id(), "miss");
        let stale_window = Duration::from_secs(u64::from(spec.stale_if_error_seconds));
        let all: Vec<FieldName> = spec.fields().iter().map(|f| f.name.clone()).collect();
        let fetch = || async {
            let selector = Selector::Key(key);
            match route(provider, spec.id(), &selector, &all, deadline, trace).await {
                Ok(routed) => Ok(routed
                    .records
                    .into_iter()
                    .next()
                    .map(|r| (r, routed.fetched_at))),
                Err(ExchangeError::NoRecord { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        // Waiting on another exchange's fetch must not outlast this exchange's own deadline.
        let fetched = tokio::time::timeout(
            deadline.remaining(),
            cache.fetch(&ck, max_age + stale_window, fetch),
        )
        .await
        .unwrap_or_else(|_| {
            Err(ExchangeError::ProviderTimeout {
                dept: provider.dept.clone(),
                after: deadline.remaining(),
            })
        });
        match fetched {
            Ok(Some(c)) => Ok(Routed {
                records: vec![c.record.clone()],
                next_page_token: String::new(),
                fetched_at: c.fetched_at,
                from_cache: false,
                age: Duration::ZERO,
                stale: false,
            }),
            Ok(None) => Err(ExchangeError::NoRecord {
                resource: spec.id().clone(),
            }),
            Err(e) => match held {
                Some(c) if could_not_answer(&e) && c.age() <= max_age + stale_window => {
                    self.metrics.cache_lookup(spec.id(), "stale");
                    tracing::info!(error = %e, age_ms = c.age().as_millis() as u64, "provider could not answer; serving a stale copy");
                    Ok(Routed::cached(&c, true))
                }
                _ => Err(e),
            },
        }
    }

    /// The provider's adapter; a resource of a configured department whose catalogue has not
    /// loaded yet is UNAVAILABLE (try later), not NOT_FOUND (it may well exist).
    fn provider_of(&self, resource: &ResourceId) -> Result<&Arc<Provider>, ExchangeError> {
        match self.providers.get(resource.provider()) {
            Some(p) if !p.is_described() => Err(ExchangeError::ProviderUnavailable {
                dept: p.dept.clone(),
            }),
            Some(p) => Ok(p),
            None => Err(huitong_core::Error::UnknownResource(resource.clone()).into()),
        }
    }

    /// Counts the people an answer releases against its grant's daily cap, if it has one; an
    /// answer that would go beyond it is refused whole. A record whose subject is unknown
    /// cannot be counted, so under a daily cap it stops the answer.
    async fn count_subjects(
        &self,
        decision: &Decision,
        released: &Released,
    ) -> Result<Option<Reservation>, ExchangeError> {
        let Some(grant) = decision
            .max_subjects_per_day()
            .and(decision.grant_id.as_deref())
        else {
            return Ok(None);
        };
        let uncounted = || ExchangeError::Uncounted {
            grant: grant.to_owned(),
        };
        if released.subjects.is_empty() && released.unidentified == 0 {
            return Ok(None);
        }
        if released.unidentified > 0 {
            tracing::warn!(
                records = released.unidentified,
                "records without a subject under a daily cap; nothing is released"
            );
            return Err(uncounted());
        }
        let counted = self
            .policy
            .count_subjects(decision, released.subjects.clone(), Admit::Whole)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the policy store could not count subjects");
                uncounted()
            })?;
        match counted {
            None => Ok(None),
            Some(c) => match c.refusal {
                Some(refusal) => Err(refusal.into()),
                None => Ok(Some(c.reservation)),
            },
        }
    }
}

/// Key and filter values that are resident ID numbers typed loosely (spaces, hyphens,
/// full-width digits, a lowercase `x`) take their canonical form, the one the exchange log's
/// subject and the subject report use (`huitong_audit::canonical_id_number`): the adapter is
/// asked for the number that was meant, and the person's report shows the exchange.
fn canonicalise_id_numbers(raw: &mut QueryRequest) {
    let fix = |v: &mut Value| {
        if let Some(Kind::StringValue(s)) = &mut v.kind
            && let Some(id) = huitong_audit::canonical_id_number(s)
        {
            *s = id;
        }
    };
    raw.key.values_mut().for_each(fix);
    raw.filters
        .iter_mut()
        .filter_map(|f| f.value.as_mut())
        .for_each(fix);
}

/// A query whose identifiers have been checked.
#[derive(Debug)]
struct ValidQuery {
    resource: ResourceId,
    purpose: Purpose,
    official: Option<String>,
    case_ref: Option<String>,
}

/// Most characters of an official id or a case reference.
pub(crate) const MAX_ACTOR_CHARS: usize = 64;

/// An official id or case reference: trimmed; empty means none; otherwise at most
/// [`MAX_ACTOR_CHARS`] characters with no control or invisible formatting characters, so that
/// what the auditor searches for is what was recorded.
pub(crate) fn actor_text(
    field: &'static str,
    raw: &str,
) -> Result<Option<String>, huitong_core::Error> {
    use huitong_core::ids::{is_invisible, trim_text};
    let t = trim_text(raw);
    if t.is_empty() {
        return Ok(None);
    }
    if t.chars().count() > MAX_ACTOR_CHARS {
        return Err(huitong_core::Error::BadActor {
            field,
            problem: "is longer than 64 characters; give the id your department's own system uses",
        });
    }
    // Inner spaces are kept ("HY 2026 0007"); anything else that shows nothing is refused.
    if t.chars().any(|c| c != ' ' && is_invisible(c)) {
        return Err(huitong_core::Error::BadActor {
            field,
            problem: "contains control or invisible characters; give printable text",
        });
    }
    Ok(Some(t.to_owned()))
}

/// Step 1: raw strings become checked identifiers.
fn validate(raw: &QueryRequest) -> Result<ValidQuery, ExchangeError> {
    let resource = ResourceId::parse(&raw.resource)?;
    let purpose = Purpose::new(&raw.purpose)?;
    if raw.key.is_empty() == raw.filters.is_empty() {
        let msg = if raw.key.is_empty() {
            "give either a key (one value per key field) or at least one filter"
        } else {
            "give either a key or filters, not both"
        };
        return Err(huitong_core::Error::BadSelector(msg.into()).into());
    }
    Ok(ValidQuery {
        resource,
        purpose,
        official: actor_text("official", &raw.official)?,
        case_ref: actor_text("case_ref", &raw.case_ref)?,
    })
}

/// What step 2 found: the fields to release, and the fields records are selected by, which
/// the policy weighs too (a match on a field reveals it as surely as releasing it does).
struct Checked {
    fields: Vec<FieldName>,
    filters: Vec<FieldName>,
    key: Vec<FieldName>,
}

/// Step 2: the catalogue's rules for the resource: shared at all, known fields, a whole key,
/// well-typed filters.
fn check_against_catalogue(
    spec: &ResourceSpec,
    raw: &QueryRequest,
) -> Result<Checked, ExchangeError> {
    spec.check_shared()?;
    let fields = spec.check_requested_fields(raw.fields.iter().map(String::as_str))?;
    let bad = |what, field: &str, problem| huitong_core::Error::BadValue {
        what,
        field: field.chars().take(80).collect(),
        problem,
    };
    let mut key = Vec::new();
    if !raw.key.is_empty() {
        for (k, v) in &raw.key {
            if let Some(problem) = huitong_proto::value::match_value_problem(v) {
                return Err(bad("key", k, problem).into());
            }
        }
        spec.check_key(
            raw.key
                .iter()
                .map(|(k, v)| (k.as_str(), v.value_kind(), v.is_empty_text())),
        )?;
        key = spec.key_fields().to_vec();
    }
    let mut filters: Vec<FieldName> = Vec::new();
    for f in &raw.filters {
        spec.check_filter(&f.field, huitong_core::ValueKind::Null)?;
        let value = match &f.value {
            Some(v) if v.kind.is_some() => v,
            _ => {
                return Err(bad(
                    "filter",
                    &f.field,
                    "has no value; give the value to match (null_value matches records where \
                     the field is empty)"
                        .into(),
                )
                .into());
            }
        };
        if let Some(problem) = huitong_proto::value::match_value_problem(value) {
            return Err(bad("filter", &f.field, problem).into());
        }
        let name = spec.check_filter(&f.field, value.value_kind())?;
        if !filters.contains(&name) {
            filters.push(name);
        }
    }
    Ok(Checked {
        fields,
        filters,
        key,
    })
}

enum Selector {
    Key(std::collections::HashMap<String, Value>),
    Filters {
        filters: Vec<Filter>,
        page_size: u32,
        page_token: String,
    },
}

struct Routed {
    records: Vec<Record>,
    next_page_token: String,
    fetched_at: SystemTime,
    from_cache: bool,
    age: Duration,
    stale: bool,
}

impl Routed {
    fn fetched(records: Vec<Record>, next_page_token: String) -> Self {
        Self {
            records,
            next_page_token,
            fetched_at: SystemTime::now(),
            from_cache: false,
            age: Duration::ZERO,
            stale: false,
        }
    }

    fn cached(c: &crate::cache::Cached, stale: bool) -> Self {
        Self {
            records: vec![c.record.clone()],
            next_page_token: String::new(),
            fetched_at: c.fetched_at,
            from_cache: true,
            age: c.age(),
            stale,
        }
    }
}

/// Failures of the provider to answer at all, where a stale copy may stand in; a refusal or a
/// "no such record" is an answer.
fn could_not_answer(e: &ExchangeError) -> bool {
    matches!(
        e,
        ExchangeError::ProviderUnavailable { .. }
            | ExchangeError::ProviderTimeout { .. }
            | ExchangeError::ProviderFailed { .. }
            | ExchangeError::BreakerOpen { .. }
            | ExchangeError::ProviderSaturated { .. }
    )
}

/// Connection failures are retried at most this many times, budget and deadline permitting.
const MAX_RETRIES: u32 = 2;
const RETRY_BACKOFF: Duration = Duration::from_millis(10);

/// Step 4: the provider's adapter answers within the deadline, through its guard. Every
/// adapter call is a read, so a call that failed to reach the adapter may be tried again:
/// after a jittered pause, while the deadline allows and the retry budget lasts.
async fn route(
    provider: &Provider,
    resource: &ResourceId,
    selector: &Selector,
    fields: &[FieldName],
    deadline: Deadline,
    trace: &TraceContext,
) -> Result<Routed, ExchangeError> {
    let budget = deadline.remaining();
    let dept = || provider.dept.clone();
    let admitted = provider
        .guard
        .admit(budget)
        .await
        .map_err(|refusal| match refusal {
            Refusal::BreakerOpen(retry_after) => ExchangeError::BreakerOpen {
                dept: dept(),
                retry_after,
            },
            Refusal::Saturated => ExchangeError::ProviderSaturated { dept: dept() },
            Refusal::Deadline => ExchangeError::ProviderTimeout {
                dept: dept(),
                after: budget,
            },
        })?;
    provider.guard.attempted();
    let mut retries = 0;
    let result = loop {
        let result = call_adapter(provider, resource, selector, fields, deadline, trace).await;
        match &result {
            Err(ExchangeError::ProviderUnavailable { .. }) if retries < MAX_RETRIES => {
                let pause = backoff(retries, RETRY_BACKOFF);
                if deadline.remaining() <= pause + RETRY_BACKOFF || !provider.guard.may_retry() {
                    break result;
                }
                tokio::time::sleep(pause).await;
                retries += 1;
            }
            _ => break result,
        }
    };
    let failed = matches!(
        result,
        Err(ExchangeError::ProviderUnavailable { .. } | ExchangeError::ProviderTimeout { .. })
    );
    admitted.finish(failed);
    provider.mark(!matches!(
        result,
        Err(ExchangeError::ProviderUnavailable { .. })
    ));
    result
}

/// One call to the adapter.
async fn call_adapter(
    provider: &Provider,
    resource: &ResourceId,
    selector: &Selector,
    fields: &[FieldName],
    deadline: Deadline,
    trace: &TraceContext,
) -> Result<Routed, ExchangeError> {
    let hop = trace.child();
    let budget = deadline.remaining();
    let timed_out = || ExchangeError::ProviderTimeout {
        dept: provider.dept.clone(),
        after: budget,
    };
    let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    let name = resource.name().to_string();
    let mut client = provider.client();
    let call = async {
        match selector {
            Selector::Key(key) => {
                let mut req = Request::new(FetchRequest {
                    resource: name,
                    key: key.clone(),
                    fields,
                });
                req.set_timeout(budget);
                hop.inject(req.metadata_mut());
                client.fetch(req).await.map(|r| {
                    Routed::fetched(r.into_inner().record.into_iter().collect(), String::new())
                })
            }
            Selector::Filters {
                filters,
                page_size,
                page_token,
            } => {
                let mut req = Request::new(SearchRequest {
                    resource: name,
                    filters: filters.clone(),
                    fields,
                    page_size: *page_size,
                    page_token: page_token.clone(),
                });
                req.set_timeout(budget);
                hop.inject(req.metadata_mut());
                client.search(req).await.map(|r| {
                    let r = r.into_inner();
                    Routed::fetched(r.records, r.next_page_token)
                })
            }
        }
    };
    match tokio::time::timeout(budget, call).await {
        Err(_) => Err(timed_out()),
        Ok(Ok(routed)) => Ok(routed),
        // The adapter's server ends a call past our grpc-timeout with CANCELLED or
        // DEADLINE_EXCEEDED; either way the budget is what ran out.
        Ok(Err(status))
            if status.code() == tonic::Code::DeadlineExceeded || deadline.remaining().is_zero() =>
        {
            Err(timed_out())
        }
        Ok(Err(status)) => {
            // Only the code: the adapter's message may hold key values, and this log is on disk.
            tracing::debug!(code = ?status.code(), "adapter answered with an error");
            let call = match selector {
                Selector::Key(_) => AdapterCall::Fetch,
                Selector::Filters { .. } => AdapterCall::Search,
            };
            Err(ExchangeError::from_adapter(
                &provider.dept,
                resource,
                call,
                &status,
            ))
        }
    }
}

/// Unique across restarts: the process start time, then a counter.
pub(crate) fn next_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    });
    format!("{epoch:x}-{:06x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Steps 1 and 2 alone: the checks a query meets before policy, routing or the log, against
/// one resource's description. The fuzz targets (fuzz/) run decoded requests through it, so
/// they test the server's own checks rather than a copy of them.
pub fn check_request(spec: &ResourceSpec, raw: &QueryRequest) -> Result<(), ExchangeError> {
    validate(raw)?;
    check_against_catalogue(spec, raw).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_needs_exactly_one_of_key_and_filters() {
        let mut q = QueryRequest {
            resource: "a/b".into(),
            purpose: "p".into(),
            ..Default::default()
        };
        assert!(validate(&q).is_err());
        q.key.insert("k".into(), Value::string("v"));
        assert!(validate(&q).is_ok());
        q.filters.push(Filter {
            field: "f".into(),
            value: Some(Value::int(1)),
        });
        assert!(validate(&q).is_err());
    }

    #[test]
    fn request_ids_differ() {
        assert_ne!(next_request_id(), next_request_id());
    }
}
