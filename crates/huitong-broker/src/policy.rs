//! Lawful sharing at the broker: the grants that decide each exchange, the access requests that
//! create them, and where both are kept.
//!
//! The rules themselves are `huitong_core::policy` (pure, tested there). This module owns their
//! state: access requests and approved grants in sled under the data directory, grants declared
//! in the policy file, and an in-memory snapshot of every grant that the exchange path reads
//! without touching the disk or holding a lock while it waits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use huitong_audit::record::kind;
use huitong_core::{
    AccessRequest, AccessRequestForm, Bounds, Decision, DeptId, FieldName, Grant, GrantOrigin,
    GrantParts, Purpose, ResourceId, ResourceSpec, Selection, Terms, Why,
};
use huitong_proto::convert;
use huitong_proto::v1::ExchangeRecord;
use prost::Message;

use crate::daily::{Admit, Counted, DailySubjects, Reservation};
use crate::governance;
use crate::quota::{QuotaRule, Quotas};
use serde::Deserialize;

/// Why the policy state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("opening the data directory {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("reading or writing grants and access requests: {0}")]
    Store(#[from] sled::Error),
    #[error("stored record {key} is unreadable: {problem}")]
    Corrupt { key: String, problem: String },
    #[error("{}: {problem}", path.display())]
    PolicyFile { path: PathBuf, problem: String },
    #[error(transparent)]
    Rule(#[from] huitong_core::Error),
    #[error("no access request {0}; list them with `huitong admin requests`")]
    NoSuchRequest(String),
    #[error("no grant {0}; list them with `huitong admin grants`")]
    NoSuchGrant(String),
    #[error("grant {0} is declared in the exchange's policy file; remove it there")]
    PolicyFileGrant(String),
}

type GrantIndex = HashMap<(DeptId, ResourceId), Vec<Grant>>;
type CacheLimits = HashMap<ResourceId, u32>;

/// The broker's grants and access requests.
#[derive(Debug)]
pub struct Policy {
    db: sled::Db,
    /// Rate limits from the policy file.
    quotas: Quotas,
    /// Cache age limits from the policy file, lower than the providers' where they differ.
    cache_limits: RwLock<Arc<CacheLimits>>,
    /// Every grant, by (consumer, resource). Replaced whole on change: the exchange path clones
    /// the `Arc` and never holds the lock while it works.
    grants: RwLock<Arc<GrantIndex>>,
    /// Serialises read-modify-write of stored records; taken only inside blocking sections.
    write: Mutex<()>,
    /// The people each grant released today, for `max_subjects_per_day`.
    daily: DailySubjects,
    /// Counts replacements of `grants`, for open subscriptions that must end at once when
    /// their grant goes.
    changed: tokio::sync::watch::Sender<u64>,
    reply_working_days: u32,
    calendar: huitong_core::calendar::WorkCalendar,
    /// Woken whenever a governance entry is queued (see [`crate::governance`]).
    outbox_filled: Arc<tokio::sync::Notify>,
    /// Grant expiries already recorded, so that the once-a-second look reads no store.
    expiries_noted: Mutex<std::collections::HashSet<String>>,
}

const REQUEST: &str = "request/";
const GRANT: &str = "grant/";
/// Governance entries written with the act they describe, waiting to be appended to the log.
const OUTBOX: &str = "outbox/";
/// `expired/<grant id>/<expiry, Unix micros>`: the grant's expiry is in the log.
const EXPIRED: &str = "expired/";
/// What the log was last told about the files and configuration, to record changes at start.
const META_POLICY_DIGEST: &str = "meta/policy_digest";
const META_POLICY_GRANTS: &str = "meta/policy_grants";
const META_DEPARTMENTS: &str = "meta/departments";
const META_REVOKED: &str = "meta/revoked";
const META_GOV_SEQ: &str = "meta/gov_seq";

impl Policy {
    /// Opens (or creates) the store in `data_dir` and loads the grants declared in `policy_file`.
    pub fn open(
        data_dir: &Path,
        policy_file: Option<&Path>,
        reply_working_days: u32,
        calendar: huitong_core::calendar::WorkCalendar,
    ) -> Result<Policy, PolicyError> {
        let db = huitong_audit::open_sled(&data_dir.join("policy.sled"), 4 * 1024 * 1024).map_err(
            |source| PolicyError::Open {
                path: data_dir.to_owned(),
                source,
            },
        )?;
        let mut index = GrantIndex::new();
        for item in db.scan_prefix(GRANT) {
            let (k, v) = item?;
            let grant = decode_grant(&k, &v)?;
            index
                .entry((grant.consumer().clone(), grant.resource().clone()))
                .or_default()
                .push(grant);
        }
        let quotas = Quotas::new(match policy_file {
            Some(path) => load_quotas(path)?,
            None => Vec::new(),
        });
        if let Some(path) = policy_file {
            for grant in load_policy_file(path)? {
                index
                    .entry((grant.consumer().clone(), grant.resource().clone()))
                    .or_default()
                    .push(grant);
            }
        }
        let cache_limits = match policy_file {
            Some(path) => load_cache_limits(path)?,
            None => CacheLimits::new(),
        };
        let daily = DailySubjects::open(&db, SystemTime::now())?;
        let policy = Policy {
            daily,
            db,
            quotas,
            cache_limits: RwLock::new(Arc::new(cache_limits)),
            grants: RwLock::new(Arc::new(index)),
            write: Mutex::new(()),
            changed: tokio::sync::watch::Sender::new(0),
            reply_working_days,
            calendar,
            outbox_filled: Arc::new(tokio::sync::Notify::new()),
            expiries_noted: Mutex::new(Default::default()),
        };
        if let Some(path) = policy_file {
            // A file edited while the broker was down is a reload nobody saw: record it now.
            let digest = file_digest(path)?;
            if policy.db.get(META_POLICY_DIGEST)?.as_deref() != Some(&digest[..]) {
                let mut batch = sled::Batch::default();
                let declared = policy.policy_file_grants();
                let changes = policy.note_policy_grants(&mut batch, &declared)?;
                let entry = governance::policy_entry(
                    digest.clone(),
                    huitong_audit::record::outcome::DONE,
                    format!(
                        "{} loaded at start: {} grants declared{changes}",
                        path.display(),
                        declared.len()
                    ),
                    SystemTime::now(),
                );
                policy.queue(&mut batch, entry)?;
                batch.insert(META_POLICY_DIGEST, digest);
                policy.db.apply_batch(batch)?;
                policy.db.flush()?;
            }
        }
        Ok(policy)
    }

    /// Replaces the grants declared in the policy file with those now in `path`. A file with a
    /// mistake changes nothing: the grants in force stay, and the error says what to fix.
    /// Exchanges in flight keep the snapshot they started with.
    /// Every reload, and every failed one, is an entry in the exchange log with the file's
    /// digest.
    pub fn reload_policy_file(&self, path: &Path) -> Result<usize, PolicyError> {
        let _w = self.lock_writes();
        let digest = file_digest(path).unwrap_or_default();
        match self.apply_policy_file(path) {
            Ok(count) => {
                let mut batch = sled::Batch::default();
                let declared = self.policy_file_grants();
                let grants = self.note_policy_grants(&mut batch, &declared)?;
                let entry = governance::policy_entry(
                    digest.clone(),
                    huitong_audit::record::outcome::DONE,
                    format!(
                        "{} reloaded: {count} grants declared{grants}",
                        path.display()
                    ),
                    SystemTime::now(),
                );
                self.queue(&mut batch, entry)?;
                batch.insert(META_POLICY_DIGEST, digest);
                self.db.apply_batch(batch)?;
                self.db.flush()?;
                Ok(count)
            }
            Err(e) => {
                let mut batch = sled::Batch::default();
                let entry = governance::policy_entry(
                    digest,
                    huitong_audit::record::outcome::FAILED,
                    format!(
                        "{} NOT reloaded, the grants in force stay: {e}",
                        path.display()
                    ),
                    SystemTime::now(),
                );
                self.queue(&mut batch, entry)?;
                self.db.apply_batch(batch)?;
                self.db.flush()?;
                Err(e)
            }
        }
    }

    fn apply_policy_file(&self, path: &Path) -> Result<usize, PolicyError> {
        // Both parts are read before either is applied: a mistake in one changes nothing.
        let quotas = load_quotas(path)?;
        let cache_limits = Arc::new(load_cache_limits(path)?);
        let declared = load_policy_file(path)?;
        self.quotas.replace(quotas);
        match self.cache_limits.write() {
            Ok(mut c) => *c = cache_limits,
            Err(p) => *p.into_inner() = cache_limits,
        }
        let count = declared.len();
        let mut next = (*self.snapshot()).clone();
        for list in next.values_mut() {
            list.retain(|g| *g.origin() != GrantOrigin::PolicyFile);
        }
        for grant in declared {
            next.entry((grant.consumer().clone(), grant.resource().clone()))
                .or_default()
                .push(grant);
        }
        next.retain(|_, list| !list.is_empty());
        let next = Arc::new(next);
        match self.grants.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        self.changed.send_modify(|n| *n += 1);
        Ok(count)
    }

    /// The grants the policy file declares now.
    fn policy_file_grants(&self) -> Vec<Grant> {
        let mut out: Vec<Grant> = self
            .snapshot()
            .values()
            .flatten()
            .filter(|g| *g.origin() == GrantOrigin::PolicyFile)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id().cmp(b.id()));
        out
    }

    /// Queues `grant_created` for each policy-file grant not declared at the last load and
    /// `grant_revoked` for each no longer declared; returns a summary for the reload's entry.
    fn note_policy_grants(
        &self,
        batch: &mut sled::Batch,
        declared: &[Grant],
    ) -> Result<String, PolicyError> {
        let before = self.list(META_POLICY_GRANTS)?;
        let now = SystemTime::now();
        let mut added = Vec::new();
        for g in declared
            .iter()
            .filter(|g| !before.iter().any(|b| b == g.id()))
        {
            added.push(g.id().to_owned());
            let entry =
                governance::grant_entry(kind::GRANT_CREATED, g, governance::BROKER, "", now);
            self.queue(batch, entry)?;
        }
        let mut removed = Vec::new();
        for id in before
            .iter()
            .filter(|b| !declared.iter().any(|g| g.id() == *b))
        {
            removed.push(id.clone());
            let mut entry = governance::policy_entry(
                Vec::new(),
                huitong_audit::record::outcome::DONE,
                format!("grant {id} is no longer declared in the policy file"),
                now,
            );
            entry.kind = kind::GRANT_REVOKED.to_owned();
            entry.grant_id = id.clone();
            entry.reason = "removed from the policy file".to_owned();
            self.queue(batch, entry)?;
        }
        let ids: Vec<&str> = declared.iter().map(|g| g.id()).collect();
        batch.insert(META_POLICY_GRANTS, ids.join("\n").as_bytes());
        let mut summary = String::new();
        if !added.is_empty() {
            summary.push_str(&format!("; added {}", added.join(", ")));
        }
        if !removed.is_empty() {
            summary.push_str(&format!("; removed {}", removed.join(", ")));
        }
        Ok(summary)
    }

    /// Adds `entry` to `batch` as the next queued governance entry, with its `request_id`.
    fn queue(&self, batch: &mut sled::Batch, mut entry: ExchangeRecord) -> Result<(), PolicyError> {
        // A sequence of its own, so that request and grant ids (from `generate_id`) stay
        // consecutive for the people who read them.
        let next = self.db.update_and_fetch(META_GOV_SEQ, |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        let n = next
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        entry.request_id = format!("gov-{n}");
        batch.insert(format!("{OUTBOX}{n:020}").as_bytes(), entry.encode_to_vec());
        self.outbox_filled.notify_one();
        Ok(())
    }

    /// The governance entries waiting for the log, oldest first, with their outbox keys.
    pub fn outbox(&self) -> Result<Vec<(Vec<u8>, ExchangeRecord)>, PolicyError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(OUTBOX) {
            let (k, v) = item?;
            let entry = ExchangeRecord::decode(v.as_ref()).map_err(|e| corrupt(&k, e))?;
            out.push((k.to_vec(), entry));
        }
        Ok(out)
    }

    /// Deletes a queued entry once the log holds it.
    pub fn outbox_done(&self, key: &[u8]) -> Result<(), PolicyError> {
        self.db.remove(key)?;
        self.db.flush()?;
        Ok(())
    }

    /// Woken whenever a governance entry is queued.
    pub fn outbox_filled(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.outbox_filled)
    }

    /// Queues `grant_expired` for each grant whose expiry has passed (unless it was revoked
    /// before), once per grant and expiry.
    pub fn note_expiries(&self, now: SystemTime) -> Result<usize, PolicyError> {
        let due: Vec<Grant> = {
            let noted = self
                .expiries_noted
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.snapshot()
                .values()
                .flatten()
                .filter(|g| g.expires_at() <= now)
                .filter(|g| g.revocation().is_none_or(|r| r.at > g.expires_at()))
                .filter(|g| !noted.contains(&expiry_key(g)))
                .cloned()
                .collect()
        };
        if due.is_empty() {
            return Ok(0);
        }
        let _w = self.lock_writes();
        let mut batch = sled::Batch::default();
        let mut recorded = 0;
        for g in &due {
            let k = expiry_key(g);
            if self.db.get(&k)?.is_none() {
                let entry = governance::grant_entry(
                    kind::GRANT_EXPIRED,
                    g,
                    governance::BROKER,
                    "",
                    g.expires_at(),
                );
                self.queue(&mut batch, entry)?;
                batch.insert(k.as_bytes(), &[][..]);
                recorded += 1;
            }
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        let mut noted = self
            .expiries_noted
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        noted.extend(due.iter().map(expiry_key));
        Ok(recorded)
    }

    /// Queues `department_added` / `department_removed` for the providers configured now
    /// against those at the last start.
    pub fn note_departments(&self, providers: &[String]) -> Result<(), PolicyError> {
        let _w = self.lock_writes();
        let before = self.list(META_DEPARTMENTS)?;
        let now = SystemTime::now();
        let mut batch = sled::Batch::default();
        for d in providers.iter().filter(|d| !before.contains(d)) {
            self.queue(
                &mut batch,
                governance::department_entry(kind::DEPARTMENT_ADDED, d, now),
            )?;
        }
        for d in before.iter().filter(|d| !providers.contains(d)) {
            self.queue(
                &mut batch,
                governance::department_entry(kind::DEPARTMENT_REMOVED, d, now),
            )?;
        }
        let mut sorted = providers.to_vec();
        sorted.sort();
        batch.insert(META_DEPARTMENTS, sorted.join("\n").as_bytes());
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Queues `certificate_revoked` for each certificate on the revocation list at `crl` that
    /// was not on it when last looked at (at start, or when the broker saw the file change).
    pub fn note_revocations(&self, crl: &Path) -> Result<usize, PolicyError> {
        let bad = |problem: String| PolicyError::PolicyFile {
            path: crl.to_owned(),
            problem,
        };
        let bytes = std::fs::read(crl).map_err(|e| bad(e.to_string()))?;
        let listed = huitong_tls::pki::revoked_serials(crl).map_err(|e| bad(e.to_string()))?;
        let digest = huitong_audit::record::file_digest(&bytes);
        let _w = self.lock_writes();
        let before = self.list(META_REVOKED)?;
        let now = SystemTime::now();
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for r in listed.iter().filter(|r| !before.contains(&r.serial)) {
            let entry = governance::certificate_entry(&r.serial, &r.reason, digest.clone(), now);
            self.queue(&mut batch, entry)?;
            n += 1;
        }
        let mut serials: Vec<&str> = listed.iter().map(|r| r.serial.as_str()).collect();
        serials.sort_unstable();
        batch.insert(META_REVOKED, serials.join("\n").as_bytes());
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(n)
    }

    fn list(&self, key: &str) -> Result<Vec<String>, PolicyError> {
        Ok(match self.db.get(key)? {
            Some(v) => String::from_utf8_lossy(&v)
                .split('\n')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => Vec::new(),
        })
    }

    /// Changes whenever the grants do (approved, revoked, the policy file reloaded).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn snapshot(&self) -> Arc<GrantIndex> {
        match self.grants.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    fn replace_grant(&self, grant: Grant) {
        let mut next = (*self.snapshot()).clone();
        let list = next
            .entry((grant.consumer().clone(), grant.resource().clone()))
            .or_default();
        list.retain(|g| g.id() != grant.id());
        list.push(grant);
        let next = Arc::new(next);
        match self.grants.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// The exchange path's rate limit: takes a token for `consumer` and `resource`.
    pub fn check_quota(
        &self,
        consumer: &DeptId,
        resource: &ResourceId,
    ) -> Result<(), crate::quota::OverQuota> {
        self.quotas
            .check(consumer, resource, std::time::Instant::now())
    }

    /// How long a cached copy of `spec`'s records may be served: the provider's limit, lowered
    /// (never raised) by the policy file. Zero means never cache.
    pub fn max_cache_age(&self, spec: &ResourceSpec) -> std::time::Duration {
        let limits = match self.cache_limits.read() {
            Ok(c) => Arc::clone(&c),
            Err(p) => Arc::clone(&p.into_inner()),
        };
        let provider = spec.max_cache_age_seconds;
        let seconds = limits
            .get(spec.id())
            .map_or(provider, |l| (*l).min(provider));
        std::time::Duration::from_secs(u64::from(seconds))
    }

    /// The authorise step of queries and subscriptions: may `consumer` receive `fields` for
    /// the purpose (and case) in `why`, selecting records by `selection`? The rules are
    /// `huitong_core::decide`.
    pub fn decide(
        &self,
        spec: &ResourceSpec,
        consumer: &DeptId,
        fields: &[FieldName],
        selection: Selection<'_>,
        why: Why<'_>,
        now: SystemTime,
    ) -> Result<Decision, huitong_core::Error> {
        let grants = self.snapshot();
        let key = (consumer.clone(), spec.id().clone());
        let held = grants.get(&key).map(Vec::as_slice).unwrap_or_default();
        huitong_core::decide(spec, consumer, fields, selection, why, held, now)
    }

    /// Counts the people (`subjects`, HMACs in order of release) an answer under
    /// `decision`'s grant would release today, against its `max_subjects_per_day`
    /// ([`Decision::over_subjects_per_day`]), and makes the count durable before returning, so
    /// that a restart cannot forget what was released. `None` when the grant has no such cap.
    pub async fn count_subjects(
        self: &Arc<Self>,
        decision: &Decision,
        subjects: Vec<Vec<u8>>,
        admit: Admit,
    ) -> Result<Option<Counted<huitong_core::Error>>, PolicyError> {
        let (Some(_), Some(grant)) = (decision.max_subjects_per_day(), decision.grant_id.clone())
        else {
            return Ok(None);
        };
        let me = Arc::clone(self);
        let decision = decision.clone();
        blocking(move || {
            let counted =
                me.daily
                    .count(&grant, &subjects, SystemTime::now(), admit, |used, new| {
                        decision.over_subjects_per_day(used, new)
                    })?;
            if !counted.reservation.is_empty() {
                me.daily.flush()?;
            }
            Ok(Some(counted))
        })
        .await
    }

    /// Uncounts people counted by [`Policy::count_subjects`] for an answer that was not
    /// released after all.
    pub async fn uncount_subjects(self: &Arc<Self>, r: Reservation) {
        let me = Arc::clone(self);
        let done = blocking(move || {
            me.daily.uncount(r)?;
            Ok(())
        })
        .await;
        if let Err(e) = done {
            // Counting too many is the safe side: the consumer reaches the cap early.
            tracing::warn!(error = %e, "an answer that was not released stays counted against its grant's daily cap");
        }
    }

    /// The fields of `spec` that any department other than its provider may receive now
    /// (`huitong_core::releasable_fields` over every grant in force): all the event log keeps
    /// of a change besides its key.
    pub fn releasable_fields(&self, spec: &ResourceSpec, now: SystemTime) -> Vec<FieldName> {
        let grants = self.snapshot();
        huitong_core::releasable_fields(
            spec,
            grants
                .iter()
                .filter(|((_, r), _)| r == spec.id())
                .flat_map(|(_, list)| list.iter()),
            now,
        )
    }

    /// Files an access request from `consumer`, checked against the catalogue entry `spec`.
    pub async fn file_request(
        self: &Arc<Self>,
        consumer: DeptId,
        spec: Arc<ResourceSpec>,
        fields: Vec<String>,
        purposes: Vec<String>,
        legal_basis: String,
        duration_days: u32,
    ) -> Result<AccessRequest, PolicyError> {
        let me = Arc::clone(self);
        blocking(move || {
            let _w = me.lock_writes();
            let id = format!("AR-{}", me.db.generate_id()? + 1);
            let request = AccessRequest::file(
                AccessRequestForm {
                    id,
                    consumer,
                    fields,
                    purposes,
                    legal_basis,
                    duration_days,
                },
                &spec,
                SystemTime::now(),
                me.reply_working_days,
                &me.calendar,
            )?;
            let mut batch = sled::Batch::default();
            batch.insert(
                key(REQUEST, request.id()).as_bytes(),
                encode_request(&request),
            );
            let entry = governance::request_entry(
                kind::REQUEST_FILED,
                &request,
                request.consumer(),
                "",
                request.filed_at(),
            );
            me.queue(&mut batch, entry)?;
            me.db.apply_batch(batch)?;
            me.db.flush()?;
            Ok(request)
        })
        .await
    }

    /// The provider approves request `id` on `terms`; returns the grant created.
    pub async fn approve(
        self: &Arc<Self>,
        id: String,
        by: DeptId,
        terms: Terms,
    ) -> Result<Grant, PolicyError> {
        let me = Arc::clone(self);
        let grant = blocking(move || {
            let _w = me.lock_writes();
            let mut request = me.request(&id)?;
            let grant_id = format!("G-{}", me.db.generate_id()? + 1);
            let grant = request.approve(&by, SystemTime::now(), grant_id, terms)?;
            // Request, grant and their log entries are written in one batch: a crash leaves
            // none or all.
            let mut batch = sled::Batch::default();
            batch.insert(
                key(REQUEST, request.id()).as_bytes(),
                encode_request(&request),
            );
            batch.insert(key(GRANT, grant.id()).as_bytes(), encode_grant(&grant));
            let at = grant.granted_at();
            let approved = governance::request_entry(kind::REQUEST_APPROVED, &request, &by, "", at);
            me.queue(
                &mut batch,
                ExchangeRecord {
                    grant_id: grant.id().to_owned(),
                    ..approved
                },
            )?;
            let created = governance::grant_entry(kind::GRANT_CREATED, &grant, by.as_str(), "", at);
            me.queue(&mut batch, created)?;
            me.db.apply_batch(batch)?;
            me.db.flush()?;
            Ok(grant)
        })
        .await?;
        self.replace_grant(grant.clone());
        Ok(grant)
    }

    /// The provider denies request `id` with a written reason.
    pub async fn deny(
        self: &Arc<Self>,
        id: String,
        by: DeptId,
        reason: String,
    ) -> Result<AccessRequest, PolicyError> {
        let me = Arc::clone(self);
        blocking(move || {
            let _w = me.lock_writes();
            let mut request = me.request(&id)?;
            let now = SystemTime::now();
            request.deny(&by, now, &reason)?;
            let mut batch = sled::Batch::default();
            batch.insert(
                key(REQUEST, request.id()).as_bytes(),
                encode_request(&request),
            );
            let entry =
                governance::request_entry(kind::REQUEST_DENIED, &request, &by, &reason, now);
            me.queue(&mut batch, entry)?;
            me.db.apply_batch(batch)?;
            me.db.flush()?;
            Ok(request)
        })
        .await
    }

    /// The provider or the consumer revokes grant `id`.
    pub async fn revoke(
        self: &Arc<Self>,
        id: String,
        by: DeptId,
        reason: String,
    ) -> Result<Grant, PolicyError> {
        let me = Arc::clone(self);
        let grant = blocking(move || {
            let _w = me.lock_writes();
            let mut grant = me
                .snapshot()
                .values()
                .flatten()
                .find(|g| g.id() == id)
                .cloned()
                .ok_or_else(|| PolicyError::NoSuchGrant(id.clone()))?;
            // Who may revoke is checked first: a department party to neither side of the grant
            // is refused as such, whatever the grant's origin.
            if by != *grant.resource().provider() && by != *grant.consumer() {
                return Err(huitong_core::Error::NotPartyToGrant {
                    grant: grant.id().to_owned(),
                    resource: grant.resource().clone(),
                    consumer: grant.consumer().clone(),
                    by,
                }
                .into());
            }
            if *grant.origin() == GrantOrigin::PolicyFile {
                return Err(PolicyError::PolicyFileGrant(id));
            }
            let now = SystemTime::now();
            grant.revoke(&by, now, &reason)?;
            let mut batch = sled::Batch::default();
            batch.insert(key(GRANT, grant.id()).as_bytes(), encode_grant(&grant));
            let entry =
                governance::grant_entry(kind::GRANT_REVOKED, &grant, by.as_str(), &reason, now);
            me.queue(&mut batch, entry)?;
            me.db.apply_batch(batch)?;
            me.db.flush()?;
            Ok(grant)
        })
        .await?;
        self.replace_grant(grant.clone());
        Ok(grant)
    }

    /// Access requests `dept` filed or must decide (every department's, for `None`: an
    /// auditor), oldest first.
    pub fn requests_of(&self, dept: Option<&DeptId>) -> Result<Vec<AccessRequest>, PolicyError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(REQUEST) {
            let (k, v) = item?;
            let r = decode_request(&k, &v)?;
            if dept.is_none_or(|d| r.consumer() == d || r.resource().provider() == d) {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.filed_at());
        Ok(out)
    }

    /// Grants `dept` holds or has given (every department's, for `None`: an auditor).
    pub fn grants_of(&self, dept: Option<&DeptId>) -> Vec<Grant> {
        let mut out: Vec<Grant> = self
            .snapshot()
            .values()
            .flatten()
            .filter(|g| dept.is_none_or(|d| g.consumer() == d || g.resource().provider() == d))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id().cmp(b.id()));
        out
    }

    fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        match self.write.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn request(&self, id: &str) -> Result<AccessRequest, PolicyError> {
        let k = key(REQUEST, id);
        let v = self
            .db
            .get(&k)?
            .ok_or_else(|| PolicyError::NoSuchRequest(id.chars().take(40).collect()))?;
        decode_request(k.as_bytes(), &v)
    }
}

/// Runs store work off the async workers: sled's writes and flushes block.
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

fn expiry_key(g: &Grant) -> String {
    format!(
        "{EXPIRED}{}/{}",
        g.id(),
        huitong_audit::record::micros(g.expires_at())
    )
}

/// SHA-256 of the file as it is now.
fn file_digest(path: &Path) -> Result<Vec<u8>, PolicyError> {
    let bytes = std::fs::read(path).map_err(|e| PolicyError::PolicyFile {
        path: path.to_owned(),
        problem: format!("cannot be read: {e}"),
    })?;
    Ok(huitong_audit::record::file_digest(&bytes))
}

fn key(prefix: &str, id: &str) -> String {
    format!("{prefix}{id}")
}

fn encode_request(r: &AccessRequest) -> Vec<u8> {
    convert::request_to_wire(r, SystemTime::now()).encode_to_vec()
}

fn encode_grant(g: &Grant) -> Vec<u8> {
    convert::grant_to_wire(g, SystemTime::now()).encode_to_vec()
}

fn corrupt(k: &[u8], problem: impl std::fmt::Display) -> PolicyError {
    PolicyError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        problem: problem.to_string(),
    }
}

fn decode_request(k: &[u8], v: &[u8]) -> Result<AccessRequest, PolicyError> {
    let w = huitong_proto::v1::AccessRequest::decode(v).map_err(|e| corrupt(k, e))?;
    convert::request_from_wire(&w).map_err(|e| corrupt(k, e))
}

fn decode_grant(k: &[u8], v: &[u8]) -> Result<Grant, PolicyError> {
    let w = huitong_proto::v1::Grant::decode(v).map_err(|e| corrupt(k, e))?;
    convert::grant_from_wire(&w).map_err(|e| corrupt(k, e))
}

// ---------------------------------------------------------------------------------------------
// The policy file
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    grants: Vec<PolicyGrant>,
    #[serde(default)]
    quotas: Vec<PolicyQuota>,
    #[serde(default)]
    cache: Vec<PolicyCache>,
}

/// `[[cache]]`: the exchange's own limit on how long a resource's records may be cached.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyCache {
    resource: String,
    /// Lowers the provider's `max_cache_age_seconds`; 0 turns caching off for the resource.
    max_age_seconds: u32,
}

/// Reads the `[[cache]]` limits of a policy file; every mistake names the file, the key and
/// the problem.
pub fn load_cache_limits(path: &Path) -> Result<HashMap<ResourceId, u32>, PolicyError> {
    let err = |problem: String| PolicyError::PolicyFile {
        path: path.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let file: PolicyFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut out = HashMap::with_capacity(file.cache.len());
    for (i, c) in file.cache.iter().enumerate() {
        let resource =
            ResourceId::parse(&c.resource).map_err(|e| err(format!("cache[{i}].resource: {e}")))?;
        if out.insert(resource, c.max_age_seconds).is_some() {
            return Err(err(format!(
                "cache[{i}].resource: {} is limited twice",
                c.resource
            )));
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyQuota {
    consumer: String,
    /// Omitted: the quota covers all of the consumer's exchanges together.
    resource: Option<String>,
    per_second: f64,
    /// Most requests at once after a quiet spell; default one second's worth.
    burst: Option<f64>,
}

/// Reads the `[[quotas]]` of a policy file; every mistake names the file, the key and the
/// problem.
pub fn load_quotas(path: &Path) -> Result<Vec<QuotaRule>, PolicyError> {
    let err = |problem: String| PolicyError::PolicyFile {
        path: path.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let file: PolicyFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::with_capacity(file.quotas.len());
    for (i, q) in file.quotas.iter().enumerate() {
        let at = |k: &str, e: &dyn std::fmt::Display| err(format!("quotas[{i}].{k}: {e}"));
        let consumer = DeptId::new(&q.consumer).map_err(|e| at("consumer", &e))?;
        let resource = match &q.resource {
            None => None,
            Some(r) => Some(ResourceId::parse(r).map_err(|e| at("resource", &e))?),
        };
        if !(q.per_second.is_finite() && q.per_second > 0.0) {
            return Err(at("per_second", &"must be a number greater than 0"));
        }
        let burst = q.burst.unwrap_or(q.per_second.max(1.0));
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(at("burst", &"must be at least 1"));
        }
        out.push(QuotaRule {
            consumer,
            resource,
            per_second: q.per_second,
            burst,
        });
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyGrant {
    consumer: String,
    resource: String,
    fields: Vec<String>,
    #[serde(default)]
    purposes: Vec<String>,
    /// `YYYY-MM-DD`: the grant is active until the start of that day (UTC).
    expires: String,
    #[serde(default)]
    masks: HashMap<String, String>,
    /// Masked fields a filter or key may still match on.
    #[serde(default)]
    match_fields: Vec<String>,
    /// `"key"` or `"search"`; omitted, the resource's default (key if it has personal or
    /// sensitive fields).
    lookup: Option<String>,
    /// Most records per query; omitted, no cap.
    max_records_per_query: Option<u32>,
    /// Most different people per UTC day; omitted, no cap.
    max_subjects_per_day: Option<u32>,
    /// Every query and subscription must give a case reference.
    #[serde(default)]
    require_case: bool,
}

/// The bounds of a policy-file grant, each mistake named by its key.
fn policy_bounds(
    g: &PolicyGrant,
    at: &dyn Fn(&str, &dyn std::fmt::Display) -> PolicyError,
) -> Result<Bounds, PolicyError> {
    let lookup = match g.lookup.as_deref() {
        None => None,
        Some(l) => Some(huitong_core::Lookup::parse(l).ok_or_else(|| {
            at(
                "lookup",
                &format!(
                    "{l:?} is not \"key\" (one record at a time, by its key) or \"search\" (also \
                     by filters); leave it out for the resource's default"
                ),
            )
        })?),
    };
    for (key, cap) in [
        ("max_records_per_query", g.max_records_per_query),
        ("max_subjects_per_day", g.max_subjects_per_day),
    ] {
        if cap == Some(0) {
            return Err(at(key, &"must be at least 1; leave it out for no cap"));
        }
    }
    Ok(Bounds {
        lookup,
        max_records_per_query: g.max_records_per_query,
        max_subjects_per_day: g.max_subjects_per_day,
        require_case: g.require_case,
    })
}

/// What a policy file declares, as start-up and reloads read it.
#[derive(Debug)]
pub struct PolicyFileContents {
    pub grants: Vec<Grant>,
    pub quotas: Vec<QuotaRule>,
    pub cache_limits: HashMap<ResourceId, u32>,
}

/// Reads a policy file whole, as the broker does at start and on reload (grants, quotas and
/// cache limits): for `huitong config check`, which must refuse what start-up refuses.
pub fn check_policy_file(path: &Path) -> Result<PolicyFileContents, PolicyError> {
    Ok(PolicyFileContents {
        grants: load_policy_file(path)?,
        quotas: load_quotas(path)?,
        cache_limits: load_cache_limits(path)?,
    })
}

/// Reads grants declared in a policy file; every mistake names the file, the key and the problem.
pub fn load_policy_file(path: &Path) -> Result<Vec<Grant>, PolicyError> {
    let err = |problem: String| PolicyError::PolicyFile {
        path: path.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let file: PolicyFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let now = SystemTime::now();
    let mut out: Vec<Grant> = Vec::with_capacity(file.grants.len());
    for (i, g) in file.grants.iter().enumerate() {
        let at = |k: &str, e: &dyn std::fmt::Display| err(format!("grants[{i}].{k}: {e}"));
        let consumer = DeptId::new(&g.consumer).map_err(|e| at("consumer", &e))?;
        let resource = ResourceId::parse(&g.resource).map_err(|e| at("resource", &e))?;
        let fields = g
            .fields
            .iter()
            .map(|f| FieldName::new(f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| at("fields", &e))?;
        huitong_core::policy::check_purpose_count(g.purposes.len())
            .map_err(|e| at("purposes", &e))?;
        let purposes = g
            .purposes
            .iter()
            .map(|p| Purpose::new(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| at("purposes", &e))?;
        let expires = huitong_proto::value::parse_date(&g.expires)
            .map(|d| {
                let days = huitong_core::calendar::days_from_civil(
                    i64::from(d.year),
                    d.month as u32,
                    d.day as u32,
                );
                UNIX_EPOCH + Duration::from_secs(u64::try_from(days.max(0)).unwrap_or(0) * 86_400)
            })
            .ok_or_else(|| at("expires", &"expected a date as \"YYYY-MM-DD\""))?;
        let masks = convert::masks_from_wire(&g.masks).map_err(|e| at("masks", &e))?;
        let match_fields = g
            .match_fields
            .iter()
            .map(|f| FieldName::new(f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| at("match_fields", &e))?;
        let bounds = policy_bounds(g, &at)?;
        let grant = Grant::new(GrantParts {
            id: format!("P-{}", i + 1),
            consumer,
            resource,
            fields,
            purposes,
            masks,
            match_fields,
            // Declared grants have no approval moment; an already expired one is dated a day
            // before its expiry so that it still reads as a (lapsed) grant.
            granted_at: if now < expires {
                now
            } else {
                expires
                    .checked_sub(Duration::from_secs(86_400))
                    .unwrap_or(expires)
            },
            expires_at: expires,
            revoked: None,
            origin: GrantOrigin::PolicyFile,
            bounds,
        })
        .map_err(|e| err(format!("grants[{i}]: {e}")))?;
        out.push(grant);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
