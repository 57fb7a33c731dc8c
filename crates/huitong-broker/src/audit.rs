//! The `Audit` gRPC service: checkpoints and proofs for every party, entries and subject
//! reports for auditors.

use std::sync::Arc;

use huitong_audit::index::EntryFilter;
use huitong_audit::subject::normalise_key;
use huitong_proto::v1::audit_server::Audit;
use huitong_proto::v1::{
    Checkpoint, ConsistencyProof, ExchangeRecord, GetCheckpointRequest, GetConsistencyProofRequest,
    GetInclusionProofRequest, InclusionProof, ListEntriesRequest, ListEntriesResponse, LogEntry,
    SubjectReportRequest, SubjectReportResponse,
};
use huitong_tls::Role;
use huitong_tls::guard::verified_peer;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::log::ExchangeLog;
use crate::providers::Providers;

/// Most entries one ListEntries call returns.
const MAX_ENTRIES_PER_CALL: u32 = 10_000;

/// Most bytes of entries one answer carries. A page stops here and names where to continue:
/// clients keep tonic's default 4 MiB decoding limit, and a fixed count alone overshoots it
/// once records grow (10,000 entries of ~430 bytes did).
const MAX_BYTES_PER_CALL: usize = 2 << 20;

/// The `Audit` gRPC service.
#[derive(Debug, Clone)]
pub struct AuditService {
    log: Arc<ExchangeLog>,
    /// The catalogue a subject report's resource and key are checked against, as a query's are.
    providers: Arc<Providers>,
}

impl AuditService {
    pub fn new(log: Arc<ExchangeLog>, providers: Arc<Providers>) -> Self {
        Self { log, providers }
    }
}

/// A subject report's resource and key, checked as a query's are: a resource of the catalogue
/// and exactly its key fields, each with a value. A mistake is INVALID_ARGUMENT naming it,
/// never an empty report, which would read as "nobody looked at this person".
fn check_report_request(providers: &Providers, r: &SubjectReportRequest) -> Result<(), Status> {
    let invalid = |e: huitong_core::Error| Status::invalid_argument(e.to_string());
    let resource = huitong_core::ResourceId::parse(&r.resource).map_err(invalid)?;
    if let Some(p) = providers.get(resource.provider())
        && !p.is_described()
    {
        return Err(Status::unavailable(format!(
            "the catalogue of {} has not loaded yet, so the key of {resource} cannot be checked; try again shortly",
            resource.provider()
        )));
    }
    let catalogue = providers.catalogue();
    let spec = catalogue.get(&resource).map_err(|_| {
        Status::invalid_argument(format!(
            "resource {resource} is not in the catalogue; a subject report names the resource              whose key identifies the person (list the catalogue to see what is offered)"
        ))
    })?;
    if r.key.is_empty() {
        return Err(Status::invalid_argument(format!(
            "give the person's key: one value per key field of {resource} ({})",
            key_names(spec)
        )));
    }
    spec.check_key_text(r.key.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(invalid)
}

/// A resource and a key in it, as text: one place a subject report looks.
type ReportTarget = (String, Vec<(String, String)>);

/// The (resource, key) pairs a subject report looks for. With `identifier`, every resource of
/// the catalogue whose key is one field (or only `resource`, if given); otherwise `resource`
/// and `key`, checked as a query's are.
fn report_targets(
    providers: &Providers,
    r: &SubjectReportRequest,
) -> Result<Vec<ReportTarget>, Status> {
    let identifier = r.identifier.trim();
    if identifier.is_empty() {
        check_report_request(providers, r)?;
        let key = r.key.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        return Ok(vec![(r.resource.clone(), key)]);
    }
    if !r.key.is_empty() {
        return Err(Status::invalid_argument(
            "give either identifier (matched against every resource keyed by one field) or resource and key, not both",
        ));
    }
    if identifier.chars().count() > 256 {
        return Err(Status::invalid_argument(
            "identifier is longer than 256 characters; give the person's identifier, e.g. a resident ID number",
        ));
    }
    // A catalogue that has not loaded would leave resources out and make the report look
    // complete when it is not.
    if let Some(p) = providers.iter().find(|p| !p.is_described()) {
        return Err(Status::unavailable(format!(
            "the catalogue of {} has not loaded yet, so its resources cannot be searched; try again shortly, or name a resource with --resource",
            p.dept
        )));
    }
    let catalogue = providers.catalogue();
    if !r.resource.is_empty() {
        let id = huitong_core::ResourceId::parse(&r.resource)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if catalogue.get(&id).is_err() {
            return Err(Status::invalid_argument(format!(
                "resource {id} is not in the catalogue; leave --resource out to search every resource"
            )));
        }
    }
    let targets: Vec<_> = catalogue
        .iter()
        .filter(|s| r.resource.is_empty() || s.id().to_string() == r.resource)
        .filter(|s| s.key_fields().len() == 1)
        .map(|s| {
            (
                s.id().to_string(),
                vec![(s.key_fields()[0].to_string(), identifier.to_owned())],
            )
        })
        .collect();
    if targets.is_empty() {
        return Err(Status::invalid_argument(if r.resource.is_empty() {
            "no resource in the catalogue is keyed by a single field; name the resource and give its key".to_owned()
        } else {
            format!(
                "{} is keyed by several fields; give its key (one value per key field) instead of an identifier",
                r.resource
            )
        }));
    }
    Ok(targets)
}

fn key_names(spec: &huitong_core::ResourceSpec) -> String {
    let names: Vec<&str> = spec.key_fields().iter().map(|k| k.as_str()).collect();
    names.join(", ")
}

fn audit_status(e: huitong_audit::Error) -> Status {
    use huitong_audit::Error as E;
    match e {
        E::OutOfRange { .. } => Status::out_of_range(e.to_string()),
        other => {
            tracing::error!(error = %other, "exchange log failure");
            Status::internal("the exchange log could not answer; its operators have the details")
        }
    }
}

fn log_status(e: crate::log::LogError) -> Status {
    match e {
        crate::log::LogError::Audit(e) => audit_status(e),
        other => {
            tracing::error!(error = %other, "exchange log failure");
            Status::internal("the exchange log could not answer; its operators have the details")
        }
    }
}

/// Runs blocking log work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Status::internal("the exchange log task failed"))?
}

fn require_auditor<T>(request: &Request<T>) -> Result<(), Status> {
    let peer = verified_peer(request)?;
    if peer.role != Role::Auditor {
        return Err(Status::permission_denied(format!(
            "log entries and subject reports are for auditor certificates; yours is {} ({peer})",
            peer.role.as_str()
        )));
    }
    Ok(())
}

/// Reads the entries at `indexes` until the answer would pass [`MAX_BYTES_PER_CALL`] (always at
/// least one). Returns them and the first index left out, if any.
fn entries(log: &ExchangeLog, indexes: &[u64]) -> Result<(Vec<LogEntry>, Option<u64>), Status> {
    let mut out = Vec::with_capacity(indexes.len().min(1024));
    let mut bytes = 0usize;
    for &i in indexes {
        let (_, data) = log
            .log()
            .read(i, i + 1)
            .map_err(audit_status)?
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("an indexed entry is missing from the log"))?;
        let leaf_hash = log.log().leaf_hash(i).map_err(audit_status)?.to_vec();
        let record = ExchangeRecord::decode(data.as_slice()).ok();
        let entry = LogEntry {
            index: i,
            leaf_hash,
            record,
            data,
        };
        // Field tag and length prefix of the repeated entry: at most 6 bytes.
        bytes += entry.encoded_len() + 6;
        if bytes > MAX_BYTES_PER_CALL && !out.is_empty() {
            return Ok((out, Some(i)));
        }
        out.push(entry);
    }
    Ok((out, None))
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn get_checkpoint(
        &self,
        _request: Request<GetCheckpointRequest>,
    ) -> Result<Response<Checkpoint>, Status> {
        let log = Arc::clone(&self.log);
        let cp = blocking(move || {
            let l = log.log();
            // Signed on demand when the log has grown since the last one, so that every receipt
            // already handed out can be proven against the answer.
            match l.latest_checkpoint() {
                Some(c) if c.size == l.size() => Ok(c),
                _ => l.checkpoint().map_err(audit_status),
            }
        })
        .await?;
        Ok(Response::new(Checkpoint {
            note: cp.note,
            tree_size: cp.size,
            root_hash: cp.root.to_vec(),
            verifier_key: self.log.log().verifier_key(),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<GetInclusionProofRequest>,
    ) -> Result<Response<InclusionProof>, Status> {
        let r = request.into_inner();
        let log = Arc::clone(&self.log);
        let proof = blocking(move || {
            let l = log.log();
            let size = if r.tree_size == 0 {
                l.latest_checkpoint().map_or(l.size(), |c| c.size)
            } else {
                r.tree_size
            };
            if r.index >= size {
                return Err(Status::out_of_range(format!(
                    "entry {} is not in a tree of {size} entries; ask for a larger tree_size or fetch a newer checkpoint",
                    r.index
                )));
            }
            let hashes = l.inclusion_proof(r.index, size).map_err(audit_status)?;
            let leaf = l.leaf_hash(r.index).map_err(audit_status)?;
            Ok(InclusionProof {
                index: r.index,
                tree_size: size,
                leaf_hash: leaf.to_vec(),
                hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            })
        })
        .await?;
        Ok(Response::new(proof))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProof>, Status> {
        let r = request.into_inner();
        let log = Arc::clone(&self.log);
        let proof = blocking(move || {
            let l = log.log();
            let new = if r.new_size == 0 {
                l.latest_checkpoint().map_or(l.size(), |c| c.size)
            } else {
                r.new_size
            };
            if r.old_size > new {
                return Err(Status::invalid_argument(format!(
                    "old_size {} is larger than new_size {new}",
                    r.old_size
                )));
            }
            let hashes = l.consistency_proof(r.old_size, new).map_err(audit_status)?;
            Ok(ConsistencyProof {
                old_size: r.old_size,
                new_size: new,
                hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            })
        })
        .await?;
        Ok(Response::new(proof))
    }

    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        require_auditor(&request)?;
        let r = request.into_inner();
        let invalid = |e: huitong_core::Error| Status::invalid_argument(e.to_string());
        // Checked as a query's are, so that what is searched for can have been recorded.
        let official = crate::exchange::actor_text("official", &r.official).map_err(invalid)?;
        let case_ref = crate::exchange::actor_text("case_ref", &r.case_ref).map_err(invalid)?;
        if official.is_some() && r.consumer.is_empty() {
            return Err(Status::invalid_argument(
                "an official is one consumer department's own id: give the consumer as well (--consumer)",
            ));
        }
        if !r.kind.is_empty() && !huitong_audit::record::kind::ALL.contains(&r.kind.as_str()) {
            return Err(Status::invalid_argument(format!(
                "kind {:?} is not an entry kind; use one of {}",
                r.kind,
                huitong_audit::record::kind::ALL.join(", ")
            )));
        }
        let log = Arc::clone(&self.log);
        let resp = blocking(move || {
            log.catch_up().map_err(log_status)?;
            // The official's HMAC key changes every period: look for it under each one kept.
            let mut officials = Vec::new();
            if let Some(official) = &official {
                for period in log.subjects().periods() {
                    let mac = log
                        .subjects()
                        .official(&period, &r.consumer, official)
                        .map_err(audit_status)?;
                    officials.push(mac);
                }
            }
            if r.end != 0 && r.end < r.start {
                return Err(Status::invalid_argument(format!(
                    "end ({}) is before start ({}); give end > start, or end = 0 for the end of the log",
                    r.end, r.start
                )));
            }
            let size = log.log().size();
            let end = if r.end == 0 { size } else { r.end.min(size) };
            let limit = match r.limit {
                0 => MAX_ENTRIES_PER_CALL,
                n => n.min(MAX_ENTRIES_PER_CALL),
            } as usize;
            let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            let filter = EntryFilter {
                consumer: text(&r.consumer),
                provider: text(&r.provider),
                resource: text(&r.resource),
                outcome: text(&r.outcome),
                kind: text(&r.kind),
                case_ref,
                officials,
                since_micros: (r.since_micros != 0).then_some(r.since_micros),
                until_micros: (r.until_micros != 0).then_some(r.until_micros),
            };
            let indexes = log
                .index()
                .map_err(log_status)?
                .query(&filter, r.start, end, limit + 1)
                .map_err(audit_status)?;
            let more = indexes.len() > limit;
            let indexes = &indexes[..indexes.len().min(limit)];
            let (entries, cut) = entries(&log, indexes)?;
            let next_start = match cut {
                Some(i) => i,
                None if more => indexes.last().map_or(0, |i| i + 1),
                None => 0,
            };
            Ok(ListEntriesResponse {
                entries,
                next_start,
            })
        })
        .await?;
        Ok(Response::new(resp))
    }

    async fn subject_report(
        &self,
        request: Request<SubjectReportRequest>,
    ) -> Result<Response<SubjectReportResponse>, Status> {
        require_auditor(&request)?;
        let r = request.into_inner();
        let targets = report_targets(&self.providers, &r)?;
        let start = r.start;
        let log = Arc::clone(&self.log);
        let resp = blocking(move || {
            log.catch_up().map_err(log_status)?;
            let index = log.index().map_err(log_status)?;
            // A subject is the normalised key, so resources keyed by the same field share one
            // HMAC: each distinct key is looked up once, and an entry it finds counts only if
            // it is of one of that key's resources.
            let mut keys: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
            for (resource, key) in &targets {
                let parts: Vec<(&str, &str)> =
                    key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                keys.entry(normalise_key(&parts))
                    .or_default()
                    .push(resource.as_str());
            }
            let mut found: std::collections::BTreeMap<u64, Vec<&[&str]>> = Default::default();
            let periods = log.subjects().periods();
            for (normalised, resources) in &keys {
                for period in &periods {
                    let mac = log
                        .subjects()
                        .subject(period, normalised)
                        .map_err(audit_status)?;
                    for i in index.by_subject(&mac).map_err(audit_status)? {
                        if i >= start {
                            found.entry(i).or_default().push(resources);
                        }
                    }
                }
            }
            let indexes: Vec<u64> = found.keys().copied().collect();
            let (read, cut) = entries(&log, &indexes)?;
            let entries = read
                .into_iter()
                .filter(|e| {
                    e.record.as_ref().is_some_and(|rec| {
                        found.get(&e.index).is_some_and(|groups| {
                            groups.iter().any(|g| g.contains(&rec.resource.as_str()))
                        })
                    })
                })
                .collect();
            Ok(SubjectReportResponse {
                entries,
                unlinkable_periods: log.subjects().destroyed(),
                next_start: cut.unwrap_or(0),
                resources: targets.iter().map(|(res, _)| res.clone()).collect(),
            })
        })
        .await?;
        Ok(Response::new(resp))
    }
}
