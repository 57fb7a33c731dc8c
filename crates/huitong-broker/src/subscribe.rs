//! The delivery path: a consumer's subscription to a resource's events, from the event log to
//! the wire.
//!
//! Opening a subscription runs the query path's checks (validate, catalogue, authorise) and is
//! recorded in the exchange log, allowed or refused. Then, for each batch of events read from
//! the event log after the subscription's position:
//!
//! 1. **authorise again**: a grant that expired or was revoked since the subscription opened
//!    ends the stream with PERMISSION_DENIED, before anything more is released, and so does a
//!    subscriber's certificate revoked or expired since, with UNAUTHENTICATED;
//! 2. **minimise and mask**: each event's record and key, exactly as a query's answer;
//! 3. **audit**: one exchange-log record per event (kind `delivery`, with the subject of the
//!    changed record), durable before the event is sent;
//! 4. **send**: into a small bounded channel. A slow subscriber fills its own channel and waits;
//!    it holds no lock and no buffer anyone else needs, so it slows neither the other
//!    subscribers nor the providers' streams.
//!
//! An idle subscription does not wait for the next event to find out: the delivery loop also
//! waits on the revocation of the subscriber's certificate (pushed by huitong-tls within a
//! quarter second of the CRL file changing) and on every change to the grants, and ends the
//! stream at once when either no longer lets it continue.
//!
//! Acknowledgements move the subscription's position forward; a reconnect resumes after it.

use std::time::{Instant, SystemTime};

use huitong_core::policy::Decision;
use huitong_core::{DeptId, FieldName, Purpose, ResourceId, ResourceSpec, Selection, Why};
use huitong_proto::v1::{
    AcknowledgeRequest, AcknowledgeResponse, Event, ExchangeRecord, Record, SubscribeRequest,
    SubscribeResponse,
};
use huitong_tls::CertWatch;
use huitong_tls::guard::{self, verified_peer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};
use tracing::{Instrument, info, info_span, warn};

use crate::daily::Admit;
use crate::error::ExchangeError;
use crate::exchange::{ExchangeService, actor_text, next_request_id};
use crate::release::{mask, minimise, release as release_records, subject_of};

/// The stream of a subscription.
pub type EventStream = ReceiverStream<Result<SubscribeResponse, Status>>;

/// Events read, authorised, recorded and sent together.
const BATCH: usize = 64;
/// Deliveries buffered per subscriber beyond the batch being recorded.
const CHANNEL: usize = 32;

/// A subscription's name when the consumer gives none.
const DEFAULT_NAME: &str = "default";

/// A checked subscription request.
struct Opened {
    consumer: DeptId,
    resource: ResourceId,
    name: String,
    fields: Vec<FieldName>,
    purpose: Purpose,
    grant_id: String,
    official: Option<String>,
    case_ref: Option<String>,
}

pub(crate) async fn subscribe(
    svc: &ExchangeService,
    request: Request<SubscribeRequest>,
) -> Result<Response<EventStream>, Status> {
    let consumer = verified_peer(&request)?.dept.clone();
    let cert = guard::cert_watch(&request)?;
    let raw = request.into_inner();
    let request_id = next_request_id();
    let mut record = ExchangeRecord {
        time_micros: huitong_audit::record::micros(SystemTime::now()),
        request_id: request_id.clone(),
        kind: "subscribe".into(),
        consumer: consumer.to_string(),
        provider: raw
            .resource
            .split('/')
            .next()
            .unwrap_or_default()
            .chars()
            .take(64)
            .collect(),
        resource: raw.resource.chars().take(130).collect(),
        purpose: raw.purpose.trim().chars().take(200).collect(),
        fields_asked: raw
            .fields
            .iter()
            .take(64)
            .map(|f| f.chars().take(64).collect())
            .collect(),
        ..Default::default()
    };
    let opened = open(svc, &consumer, &raw)
        .and_then(|o| start_position(svc, &o, raw.after).map(|start| (o, start)));
    match &opened {
        Ok((o, _)) => {
            record.purpose = o.purpose.to_string();
            record.outcome = "answered".into();
            record.fields = o.fields.iter().map(ToString::to_string).collect();
            record.grant_id = o.grant_id.clone();
            record.case_ref = o.case_ref.clone().unwrap_or_default();
            if let Some(official) = &o.official
                && let Ok((mac, period)) =
                    svc.log
                        .official(&record.consumer, official, record.time_micros)
            {
                record.official = mac;
                record.subject_period = period;
            }
        }
        Err(e) => {
            record.outcome = "refused".into();
            record.status_code = Code::from(e) as i32;
            record.refusal = e.recorded();
        }
    }
    if let Err(e) = svc.log.record(&record).await {
        warn!(error = %e, "the exchange log could not record a subscription");
        return Err(ExchangeError::from_log(&e, "subscription").into_status(&request_id));
    }
    let (opened, start) = match opened {
        Ok(o) => o,
        Err(e) => {
            info!(outcome = "refused", code = ?Code::from(&e), reason = %e, "subscription");
            return Err(e.into_status(&request_id));
        }
    };
    info!(request_id = %request_id, consumer = %opened.consumer, resource = %opened.resource, subscription = %opened.name, after = start, "subscription opened");
    let (tx, rx) = mpsc::channel(CHANNEL);
    let span = info_span!("subscription", request_id = %request_id, consumer = %opened.consumer, resource = %opened.resource);
    let watches = Watches {
        cert,
        grants: svc.policy.changes(),
    };
    tokio::spawn(deliver(svc.clone(), opened, start, request_id, watches, tx).instrument(span));
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// The query path's checks, for a subscription.
fn open(
    svc: &ExchangeService,
    consumer: &DeptId,
    raw: &SubscribeRequest,
) -> Result<Opened, ExchangeError> {
    let resource = ResourceId::parse(&raw.resource)?;
    let purpose = Purpose::new(&raw.purpose)?;
    let name = subscription_name(&raw.subscription)?;
    let catalogue = svc.providers.catalogue();
    if svc.providers.get(resource.provider()).is_none() {
        return Err(huitong_core::Error::UnknownResource(resource).into());
    }
    let spec = catalogue.get(&resource)?;
    spec.check_shared()?;
    let fields = spec.check_requested_fields(raw.fields.iter().map(String::as_str))?;
    let official = actor_text("official", &raw.official)?;
    let case_ref = actor_text("case_ref", &raw.case_ref)?;
    let now = SystemTime::now();
    let why = Why {
        purpose: &purpose,
        has_case: case_ref.is_some(),
    };
    let decision = svc
        .policy
        .decide(spec, consumer, &fields, Selection::NONE, why, now)?;
    // A grant's fields are always kept; this refuses only what no grant releases, which only
    // the provider may ask for (and would silently never receive).
    let kept = svc.policy.releasable_fields(spec, now);
    let not_kept: Vec<&FieldName> = fields.iter().filter(|f| !kept.contains(f)).collect();
    if !not_kept.is_empty() {
        let list = |f: &mut dyn Iterator<Item = &FieldName>| {
            f.map(ToString::to_string).collect::<Vec<_>>().join(", ")
        };
        return Err(ExchangeError::FieldsNotKept {
            resource,
            fields: list(&mut not_kept.into_iter()),
            kept: if kept.is_empty() {
                "nothing (no grant for it is in force)".into()
            } else {
                list(&mut kept.iter())
            },
        });
    }
    Ok(Opened {
        consumer: consumer.clone(),
        resource,
        name,
        fields,
        purpose,
        grant_id: decision.grant_id.unwrap_or_default(),
        official,
        case_ref,
    })
}

fn subscription_name(raw: &str) -> Result<String, ExchangeError> {
    if raw.is_empty() {
        return Ok(DEFAULT_NAME.into());
    }
    let ok = raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(huitong_core::Error::BadSelector(format!(
            "subscription {:?} is not a valid name: use 1 to 64 of a-z, 0-9, '-', '_' and '.'",
            raw.chars().take(80).collect::<String>()
        ))
        .into())
    }
}

/// Where delivery starts: after `after` if given, else after the subscription's acknowledged
/// position, else (a new subscription) after the latest event.
fn start_position(
    svc: &ExchangeService,
    o: &Opened,
    after: Option<u64>,
) -> Result<u64, ExchangeError> {
    let events = &svc.events;
    let store = |e: crate::events::EventError| {
        warn!(error = %e, "event log");
        ExchangeError::EventLog
    };
    let latest = events.latest(&o.resource).map_err(store)?;
    let start = match after {
        Some(a) if a > latest => {
            return Err(ExchangeError::Request(huitong_core::Error::BadSelector(
                format!(
                    "after = {a} is beyond the latest event of {} ({latest}); subscribe without after to resume, or with a number you received",
                    o.resource
                ),
            )));
        }
        Some(a) => {
            // 0 means the oldest retained event, wherever retention has moved it.
            let a = if a == 0 {
                events.first_retained(&o.resource).map_err(store)? - 1
            } else {
                a
            };
            events
                .open_subscription(&o.consumer, &o.resource, &o.name, a)
                .map_err(store)?;
            a
        }
        None => {
            events
                .open_subscription(&o.consumer, &o.resource, &o.name, latest)
                .map_err(store)?
                .acknowledged
        }
    };
    check_retained(svc, &o.resource, start)?;
    Ok(start)
}

/// Refuses a position whose next events retention has already dropped.
fn check_retained(
    svc: &ExchangeService,
    resource: &ResourceId,
    after: u64,
) -> Result<(), ExchangeError> {
    let first = svc.events.first_retained(resource).map_err(|e| {
        warn!(error = %e, "event log");
        ExchangeError::EventLog
    })?;
    if after + 1 < first {
        return Err(ExchangeError::EventsExpired {
            resource: resource.clone(),
            after,
            oldest: first,
        });
    }
    Ok(())
}

/// What can end a subscription while it waits: its subscriber's certificate, and the grants.
struct Watches {
    cert: CertWatch,
    grants: tokio::sync::watch::Receiver<u64>,
}

/// Why an open subscription must end now, if it must: its certificate no longer valid, or no
/// grant that lets it continue.
fn still_allowed(
    svc: &ExchangeService,
    o: &Opened,
    w: &Watches,
    request_id: &str,
) -> Result<(), Status> {
    w.cert
        .check()
        .map_err(|e| ExchangeError::Unauthenticated(e).into_status(request_id))?;
    let catalogue = svc.providers.catalogue();
    let refused = |e: huitong_core::Error| ExchangeError::from(e).into_status(request_id);
    let spec = catalogue.get(&o.resource).map_err(refused)?;
    svc.policy
        .decide(
            spec,
            &o.consumer,
            &o.fields,
            Selection::NONE,
            o.why(),
            SystemTime::now(),
        )
        .map(drop)
        .map_err(refused)
}

impl Opened {
    fn why(&self) -> Why<'_> {
        Why {
            purpose: &self.purpose,
            has_case: self.case_ref.is_some(),
        }
    }
}

/// Ends the stream with `status`, telling the log why.
async fn end(tx: &mpsc::Sender<Result<SubscribeResponse, Status>>, status: Status) {
    info!(code = ?status.code(), reason = %status.message(), "subscription ended");
    let _ = tx.send(Err(status)).await;
}

async fn deliver(
    svc: ExchangeService,
    o: Opened,
    mut after: u64,
    request_id: String,
    mut w: Watches,
    tx: mpsc::Sender<Result<SubscribeResponse, Status>>,
) {
    let mut latest = match svc.events.subscribe_latest(&o.resource) {
        Ok(rx) => rx,
        Err(e) => {
            warn!(error = %e, "event log");
            let _ = tx
                .send(Err(ExchangeError::EventLog.into_status(&request_id)))
                .await;
            return;
        }
    };
    loop {
        // Checked before each batch too, not only when a watch fires: a batch that was ready
        // when the revocation came must not leave.
        if let Err(status) = still_allowed(&svc, &o, &w, &request_id) {
            return end(&tx, status).await;
        }
        let batch = match svc.events.read(&o.resource, after, BATCH) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "event log");
                let _ = tx
                    .send(Err(ExchangeError::EventLog.into_status(&request_id)))
                    .await;
                return;
            }
        };
        if batch.is_empty() || batch[0].sequence != after + 1 {
            // Nothing new, or retention dropped what came next while this subscriber lagged.
            if let Err(e) = check_retained(&svc, &o.resource, after) {
                let _ = tx.send(Err(e.into_status(&request_id))).await;
                return;
            }
            if !batch.is_empty() {
                // A gap without an expiry cannot happen; do not spin if it does.
                warn!(after, next = batch[0].sequence, "gap in the event log");
            }
            tokio::select! {
                // Revocation first: when it and an event arrive together, the event stays.
                biased;
                reason = w.cert.ended() => {
                    let status = ExchangeError::Unauthenticated(reason).into_status(&request_id);
                    return end(&tx, status).await;
                }
                // A grant changed: the check at the top of the loop decides.
                changed = w.grants.changed() => if changed.is_err() { return },
                changed = latest.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
            continue;
        }
        match release(&svc, &o, batch, &request_id, &w.cert).await {
            Ok((responses, held_back)) => {
                for response in responses {
                    let seq = response.event.as_ref().map_or(after, |e| e.sequence);
                    // A slow subscriber can wait here for long: its certificate is watched
                    // while it does.
                    tokio::select! {
                        biased;
                        reason = w.cert.ended() => {
                            let status = ExchangeError::Unauthenticated(reason).into_status(&request_id);
                            return end(&tx, status).await;
                        }
                        sent = tx.send(Ok(response)) => if sent.is_err() { return },
                    }
                    after = seq;
                }
                if let Some(e) = held_back {
                    info!(code = ?Code::from(&e), reason = %e, "subscription ended");
                    let _ = tx.send(Err(e.into_status(&request_id))).await;
                    return;
                }
            }
            Err(e) => {
                info!(code = ?Code::from(&e), reason = %e, "subscription ended");
                let _ = tx.send(Err(e.into_status(&request_id))).await;
                return;
            }
        }
    }
}

/// Steps 1 to 3 for a batch: authorise, minimise and mask, record. Under a grant's daily cap
/// on people, the batch is delivered as far as the cap allows, and the refusal of the rest
/// (recorded against the first event held back) comes with it: the stream ends after those
/// deliveries, and the held-back events wait, unacknowledged, for the next day.
async fn release(
    svc: &ExchangeService,
    o: &Opened,
    batch: Vec<Event>,
    request_id: &str,
    cert: &CertWatch,
) -> Result<(Vec<SubscribeResponse>, Option<ExchangeError>), ExchangeError> {
    let catalogue = svc.providers.catalogue();
    let spec: &ResourceSpec = catalogue.get(&o.resource)?;
    let now = SystemTime::now();
    let decision: Decision =
        svc.policy
            .decide(spec, &o.consumer, &o.fields, Selection::NONE, o.why(), now)?;
    let started = Instant::now();
    let mut responses = Vec::with_capacity(batch.len());
    let mut records = Vec::with_capacity(batch.len());
    let time_micros = huitong_audit::record::micros(now);
    let official = o.official.as_deref().and_then(|id| {
        svc.log
            .official(o.consumer.as_str(), id, time_micros)
            .inspect_err(|e| warn!(error = %e, "no subject key; deliveries are recorded without their official"))
            .ok()
    });
    for mut event in batch {
        let mut released: Vec<Record> = event.record.take().into_iter().collect();
        let r = release_records(
            &svc.log,
            spec,
            &decision,
            &o.fields,
            &mut released,
            time_micros,
        );
        let masked_fields = r.masked_fields.clone();
        event.record = released.first().cloned();
        // The key names the same person as the record; only a deletion, which releases the key
        // alone, needs its subject computed from the key.
        let (subject, subject_period) = match r.subjects.first() {
            Some(s) => (s.clone(), r.subject_period.clone()),
            None => subject_of(&svc.log, &event.key, time_micros).unwrap_or_default(),
        };
        let subjects = if subject.is_empty() {
            Vec::new()
        } else {
            vec![subject.clone()]
        };
        // The key is released like any field: only the key fields asked for, masked alike.
        let mut key = [Record {
            fields: std::mem::take(&mut event.key),
        }];
        minimise(&mut key, &o.fields);
        mask(&mut key, &decision, &o.fields);
        let [key] = key;
        event.key = key.fields;
        let delivery_id = format!("{request_id}/{}", event.sequence);
        let (official, official_period) = official.clone().unwrap_or_default();
        let subject_period = if subject_period.is_empty() {
            official_period
        } else {
            subject_period
        };
        records.push(ExchangeRecord {
            time_micros,
            request_id: delivery_id.clone(),
            kind: "delivery".into(),
            consumer: o.consumer.to_string(),
            provider: o.resource.provider().to_string(),
            resource: o.resource.to_string(),
            purpose: o.purpose.to_string(),
            fields: o.fields.iter().map(ToString::to_string).collect(),
            outcome: "answered".into(),
            record_count: u32::from(!released.is_empty()),
            answer_digest: r.answer_digest,
            subject,
            subjects,
            subject_period,
            official,
            case_ref: o.case_ref.clone().unwrap_or_default(),
            fields_asked: o.fields.iter().map(ToString::to_string).collect(),
            masked_fields: masked_fields.clone(),
            grant_id: decision.grant_id.clone().unwrap_or_default(),
            latency_micros: event
                .received_at
                .as_ref()
                .and_then(huitong_proto::value::timestamp_to_system_time)
                .and_then(|t| now.duration_since(t).ok())
                .map_or(0, |d| d.as_micros() as i64),
            ..Default::default()
        });
        responses.push(SubscribeResponse {
            event: Some(event),
            receipt: None,
            request_id: delivery_id,
            grant_id: decision.grant_id.clone().unwrap_or_default(),
            masked_fields,
        });
    }
    // Last look before anything is recorded as delivered: the CRL may have been reloaded
    // while this batch was prepared.
    cert.check().map_err(ExchangeError::Unauthenticated)?;
    let (counted, held_back) = count_deliveries(svc, &decision, &mut records, &mut responses).await;
    // All of the batch's records are queued at once, so they share the log's group commit.
    let receipts = futures_util::future::join_all(records.iter().map(|r| svc.log.record(r))).await;
    // One receipt per delivery, and one more for the refusal of a batch cut short.
    for (i, receipt) in receipts.into_iter().enumerate() {
        match receipt {
            Ok(r) => {
                if let Some(response) = responses.get_mut(i) {
                    response.receipt = Some(r);
                }
            }
            Err(e) => {
                warn!(error = %e, "the exchange log could not record a delivery");
                if let Some(r) = counted {
                    svc.policy.uncount_subjects(r).await;
                }
                return Err(ExchangeError::from_log(&e, "delivery"));
            }
        }
    }
    svc.metrics
        .delivered(&o.resource, responses.len() as u64, started.elapsed());
    Ok((responses, held_back))
}

/// Counts the people a batch of deliveries reaches against the grant's daily cap, if it has
/// one, and cuts the batch where the cap is reached. The first delivery cut becomes the
/// record of the refusal (outcome refused, nothing released, its subject kept as a refused
/// key lookup's is), so that the auditor sees why the stream ended. Returns what was counted,
/// and the refusal if the batch was cut.
async fn count_deliveries(
    svc: &ExchangeService,
    decision: &Decision,
    records: &mut Vec<ExchangeRecord>,
    responses: &mut Vec<SubscribeResponse>,
) -> (Option<crate::daily::Reservation>, Option<ExchangeError>) {
    let Some(grant) = decision
        .max_subjects_per_day()
        .and(decision.grant_id.clone())
    else {
        return (None, None);
    };
    // A delivery without a subject cannot be counted; the batch stops before it.
    let identified = records.iter().take_while(|r| !r.subject.is_empty()).count();
    let subjects: Vec<Vec<u8>> = records[..identified]
        .iter()
        .map(|r| r.subject.clone())
        .collect();
    let uncounted = || ExchangeError::Uncounted {
        grant: grant.clone(),
    };
    let (admitted, refusal, counted) = match svc
        .policy
        .count_subjects(decision, subjects, Admit::Prefix)
        .await
    {
        Ok(Some(c)) => (
            c.admitted,
            c.refusal.map(ExchangeError::from),
            Some(c.reservation),
        ),
        Ok(None) => (identified, None, None),
        Err(e) => {
            warn!(error = %e, "the policy store could not count subjects");
            (0, Some(uncounted()), None)
        }
    };
    let held_back = refusal.or_else(|| (admitted < records.len()).then(uncounted));
    if let Some(e) = &held_back {
        responses.truncate(admitted);
        records.truncate(admitted + 1);
        if let Some(r) = records.get_mut(admitted) {
            r.outcome = huitong_audit::record::outcome::REFUSED.into();
            r.status_code = Code::from(e) as i32;
            r.refusal = e.recorded();
            r.fields.clear();
            r.masked_fields.clear();
            r.subjects.clear();
            r.record_count = 0;
            r.answer_digest.clear();
        }
    }
    (counted, held_back)
}

pub(crate) async fn acknowledge(
    svc: &ExchangeService,
    request: Request<AcknowledgeRequest>,
) -> Result<Response<AcknowledgeResponse>, Status> {
    let consumer = verified_peer(&request)?.dept.clone();
    let raw = request.into_inner();
    let request_id = next_request_id();
    let bad = |e: ExchangeError| e.into_status(&request_id);
    let resource = ResourceId::parse(&raw.resource).map_err(|e| bad(e.into()))?;
    let name = subscription_name(&raw.subscription).map_err(bad)?;
    let store = |e: crate::events::EventError| {
        warn!(error = %e, "event log");
        bad(ExchangeError::EventLog)
    };
    let latest = svc.events.latest(&resource).map_err(store)?;
    if raw.sequence > latest {
        return Err(bad(ExchangeError::Request(
            huitong_core::Error::BadSelector(format!(
                "sequence {} is beyond the latest event of {resource} ({latest}); acknowledge only events you received",
                raw.sequence
            )),
        )));
    }
    match svc
        .events
        .acknowledge(&consumer, &resource, &name, raw.sequence)
        .map_err(store)?
    {
        Some(acknowledged) => Ok(Response::new(AcknowledgeResponse { acknowledged })),
        None => Err(bad(ExchangeError::NoSubscription { resource, name })),
    }
}
