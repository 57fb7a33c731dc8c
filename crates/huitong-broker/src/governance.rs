//! Governance on the record: every act that changes who may see what (access requests filed,
//! approved and denied, grants created, expired and revoked, the policy file loaded, a
//! certificate revoked, a department added or removed) is an entry of its own kind in the same
//! tamper-evident log as the exchanges it governs.
//!
//! # Why an outbox
//!
//! Grants and requests live in `policy.sled`, the log in its own files, and no single write
//! spans both. So the entry describing an act is written in the *same sled batch* as the act
//! (an outbox key), and [`Governance::flush`] moves it into the log and then deletes it. A crash
//! between the two leaves the entry in the outbox and the next start appends it: an act that
//! took effect always reaches the log. The price: a crash after the append and before the
//! delete records that act twice, under the same `request_id` (`gov-<n>`), which an auditor
//! counts once.
//!
//! Entries are built here and nowhere else, so every surface that acts (the Admin service, a
//! policy reload, the revocation watch, start-up) records the same fields the same way.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use huitong_audit::record::{self, kind, outcome};
use huitong_core::{AccessRequest, DeptId, Grant, GrantOrigin};
use huitong_proto::v1::ExchangeRecord;
use tracing::{error, warn};

use crate::log::ExchangeLog;
use crate::policy::{Policy, PolicyError};

/// How often expiries and a queued outbox are looked at when nothing wakes the recorder.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Why an act's entry could not be moved into the log (it stays queued).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovernanceError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
}

/// The entry for an act by `actor` at `at`; the caller fills in what the act concerns.
fn act(kind: &str, actor: &str, at: SystemTime) -> ExchangeRecord {
    ExchangeRecord {
        time_micros: record::micros(at),
        kind: kind.to_owned(),
        outcome: outcome::DONE.to_owned(),
        actor: actor.to_owned(),
        ..ExchangeRecord::default()
    }
}

/// An access request filed, approved or denied (`kind`), by `actor`.
pub fn request_entry(
    kind: &str,
    request: &AccessRequest,
    actor: &DeptId,
    reason: &str,
    at: SystemTime,
) -> ExchangeRecord {
    ExchangeRecord {
        consumer: request.consumer().to_string(),
        provider: request.resource().provider().to_string(),
        resource: request.resource().to_string(),
        purpose: join(request.purposes().iter().map(|p| p.as_str())),
        fields: request.fields().iter().map(|f| f.to_string()).collect(),
        access_request: request.id().to_owned(),
        reason: reason.to_owned(),
        detail: format!(
            "legal basis: {}; for {} days",
            request.legal_basis(),
            request.duration_days()
        ),
        ..act(kind, actor.as_str(), at)
    }
}

/// A grant created, expired or revoked (`kind`), by `actor` (the broker itself for expiries
/// and policy-file grants).
pub fn grant_entry(
    kind: &str,
    grant: &Grant,
    actor: &str,
    reason: &str,
    at: SystemTime,
) -> ExchangeRecord {
    let (access_request, origin) = match grant.origin() {
        GrantOrigin::AccessRequest(id) => (id.clone(), format!("access request {id}")),
        GrantOrigin::PolicyFile => (String::new(), "the policy file".to_owned()),
    };
    ExchangeRecord {
        consumer: grant.consumer().to_string(),
        provider: grant.resource().provider().to_string(),
        resource: grant.resource().to_string(),
        purpose: join(grant.purposes().iter().map(|p| p.as_str())),
        fields: grant.fields().iter().map(|f| f.to_string()).collect(),
        masked_fields: grant.masks().iter().map(|(f, _)| f.to_string()).collect(),
        grant_id: grant.id().to_owned(),
        access_request,
        reason: reason.to_owned(),
        detail: format!(
            "from {origin}; in force {} to {}{}",
            record::format_micros(record::micros(grant.granted_at())),
            record::format_micros(record::micros(grant.expires_at())),
            bounds_text(grant.bounds())
        ),
        ..act(kind, actor, at)
    }
}

/// The policy file loaded (at start, when it changed since the last start) or reloaded.
/// `outcome` is `done`, or `failed` for a reload that changed nothing because of `detail`.
pub fn policy_entry(
    digest: Vec<u8>,
    outcome: &str,
    detail: String,
    at: SystemTime,
) -> ExchangeRecord {
    ExchangeRecord {
        digest,
        detail,
        outcome: outcome.to_owned(),
        ..act(kind::POLICY_RELOADED, BROKER, at)
    }
}

/// A certificate that appeared on the revocation list (`crl_digest`: the list as read).
pub fn certificate_entry(
    serial: &str,
    reason: &str,
    crl_digest: Vec<u8>,
    at: SystemTime,
) -> ExchangeRecord {
    ExchangeRecord {
        digest: crl_digest,
        reason: reason.to_owned(),
        detail: format!("certificate serial {serial}"),
        ..act(kind::CERTIFICATE_REVOKED, BROKER, at)
    }
}

/// A provider department that joined or left the broker's configuration.
pub fn department_entry(kind: &str, dept: &str, at: SystemTime) -> ExchangeRecord {
    ExchangeRecord {
        provider: dept.to_owned(),
        detail: format!("provider {dept} in the broker's configuration"),
        ..act(kind, BROKER, at)
    }
}

/// A grant's bounds on bulk reads, as the auditor reads them in the entry.
fn bounds_text(b: &huitong_core::Bounds) -> String {
    let mut out = String::new();
    out.push_str(match b.lookup {
        Some(l) => match l.as_str() {
            "key" => "; key lookups only",
            _ => "; searches allowed",
        },
        None => "; lookup as the resource's default",
    });
    if let Some(n) = b.max_records_per_query {
        out.push_str(&format!("; at most {n} records per query"));
    }
    if let Some(n) = b.max_subjects_per_day {
        out.push_str(&format!("; at most {n} people per day"));
    }
    if b.require_case {
        out.push_str("; a case reference required");
    }
    out
}

/// The actor of what the broker does by itself (expiries, loading files).
pub const BROKER: &str = "broker";

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// Moves queued governance entries into the exchange log, and notices what happens without a
/// request: grants expiring, the revocation list changing.
#[derive(Debug)]
pub struct Governance {
    policy: Arc<Policy>,
    log: Arc<ExchangeLog>,
    /// One flush at a time, so that an entry is never appended twice by two flushes.
    flushing: tokio::sync::Mutex<()>,
}

impl Governance {
    pub fn new(policy: Arc<Policy>, log: Arc<ExchangeLog>) -> Governance {
        Governance {
            policy,
            log,
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Appends every queued entry to the log, oldest first, each deleted from the outbox once
    /// it is durable. Returns how many were moved. This path holds a lock across the log's
    /// wait on purpose: governance acts are rare, and order matters more than speed.
    pub async fn flush(&self) -> Result<usize, GovernanceError> {
        let _one = self.flushing.lock().await;
        let policy = Arc::clone(&self.policy);
        let queued = blocking(move || policy.outbox()).await?;
        let mut moved = 0;
        for (key, entry) in queued {
            self.log.record(&entry).await?;
            let policy = Arc::clone(&self.policy);
            blocking(move || policy.outbox_done(&key)).await?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Runs for the broker's life: records grant expiries and revocation-list changes, and
    /// moves queued entries (from acts whose own flush failed, a policy reload, start-up) into
    /// the log within [`LOOK_EVERY`].
    pub async fn run(
        self: Arc<Self>,
        mut crl_changes: Option<tokio::sync::watch::Receiver<u64>>,
        crl_path: Option<std::path::PathBuf>,
    ) {
        let queued = self.policy.outbox_filled();
        let mut failing = false;
        loop {
            let crl_changed = async {
                match crl_changes.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let crl = tokio::select! {
                changed = crl_changed => changed,
                () = queued.notified() => false,
                () = tokio::time::sleep(LOOK_EVERY) => false,
            };
            if crl && let Some(path) = crl_path.clone() {
                let policy = Arc::clone(&self.policy);
                if let Err(e) = blocking(move || policy.note_revocations(&path)).await {
                    error!(error = %e, "the revocation list changed but could not be recorded");
                }
            }
            let policy = Arc::clone(&self.policy);
            if let Err(e) = blocking(move || policy.note_expiries(SystemTime::now())).await {
                error!(error = %e, "grant expiries could not be recorded");
            }
            match self.flush().await {
                Ok(_) => failing = false,
                // Reported once per failing spell, not every second.
                Err(e) if !failing => {
                    failing = true;
                    warn!(error = %e, "governance entries stay queued until the exchange log can be written");
                }
                Err(_) => {}
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PolicyError> + Send + 'static,
) -> Result<T, PolicyError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PolicyError::Corrupt {
            key: "-".into(),
            problem: format!("store task failed: {e}"),
        })?
}
