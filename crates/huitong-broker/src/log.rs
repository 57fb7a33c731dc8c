//! The broker's side of the exchange log: what is recorded for each exchange, and the upkeep
//! that keeps the log useful (indexes, checkpoints, subject-key retention).
//!
//! The log itself (`huitong_audit::store::Log`) is the single owner of the files: one writer
//! thread, group commit, fdatasync before any receipt is returned. Nothing here blocks the
//! exchange path except that one wait for durability, which is the point.

use std::path::Path;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use huitong_audit::index::Index;
use huitong_audit::store::{Log, LogOptions};
use huitong_audit::subject::{SubjectKeys, normalise_key};
use huitong_proto::v1::{ExchangeRecord, Receipt};
use prost::Message;
use tokio::sync::Notify;
use tracing::{info, warn};

/// How long the indexer lets appends gather before indexing them.
const INDEX_GATHER: Duration = Duration::from_millis(100);

/// Why the exchange log could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error(transparent)]
    Audit(#[from] huitong_audit::Error),
    #[error("the log's upkeep task failed: {0}")]
    Task(String),
}

impl LogError {
    /// Whether the log's disk is full (see [`huitong_audit::Error::is_disk_full`]).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, LogError::Audit(e) if e.is_disk_full())
    }
}

/// The exchange log as the broker uses it.
#[derive(Debug)]
pub struct ExchangeLog {
    log: Log,
    subjects: SubjectKeys,
    /// `None` while it cannot be reopened (see [`ExchangeLog::catch_up`]).
    index: RwLock<Option<Arc<Index>>>,
    /// Wakes the indexer after appends, so that queries see recent entries soon.
    appended: Notify,
    /// Counts every recorded entry for the bulk-lookup alert, when configured.
    alerts: OnceLock<Arc<crate::alerts::AlertWatch>>,
}

impl ExchangeLog {
    /// Opens (or creates) the log in `dir`, recovering from a crash and checking it against
    /// its last signed checkpoint, and brings the indexes up to date. Blocking.
    pub fn open(dir: &Path, origin: &str) -> Result<ExchangeLog, LogError> {
        let log = Log::open(
            &dir.join("log"),
            LogOptions {
                origin: origin.to_owned(),
                key_name: origin.to_owned(),
                ..LogOptions::default()
            },
        )?;
        let subjects = SubjectKeys::open(&dir.join("log"))?;
        let index = Index::open(&dir.join("log"))?;
        index.catch_up(&log)?;
        info!(entries = log.size(), "exchange log open");
        Ok(ExchangeLog {
            log,
            subjects,
            index: RwLock::new(Some(Arc::new(index))),
            appended: Notify::new(),
            alerts: OnceLock::new(),
        })
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn subjects(&self) -> &SubjectKeys {
        &self.subjects
    }

    /// The audit index, reopened first if an earlier failure closed it.
    pub fn index(&self) -> Result<Arc<Index>, LogError> {
        if let Some(index) = &*self.index.read().unwrap_or_else(PoisonError::into_inner) {
            return Ok(Arc::clone(index));
        }
        self.reopen_index()
    }

    /// Drops the audit index and opens it again. sled keeps the first I/O error it meets (a
    /// full disk, say) and fails every later call with it, so after one the index is useless
    /// until reopened; it is derived data, and the reopened one catches up from the log.
    fn reopen_index(&self) -> Result<Arc<Index>, LogError> {
        let mut slot = self.index.write().unwrap_or_else(PoisonError::into_inner);
        // Our handle goes before the open, which waits for sled's lock to be released.
        slot.take();
        let index = Arc::new(Index::open(self.log.dir())?);
        *slot = Some(Arc::clone(&index));
        info!("audit index reopened");
        Ok(index)
    }

    /// The subject of a key lookup: HMAC of the normalised key under this period's key, and the
    /// period. The identifier itself is never written anywhere.
    pub fn subject(
        &self,
        key: &[(&str, &str)],
        time_micros: i64,
    ) -> Result<(Vec<u8>, String), LogError> {
        let period = SubjectKeys::period_of(time_micros);
        let mac = self.subjects.subject(&period, &normalise_key(key))?;
        Ok((mac.to_vec(), period))
    }

    /// The HMAC of an acting official of `consumer`, and its period (see
    /// [`SubjectKeys::official`]).
    pub fn official(
        &self,
        consumer: &str,
        official: &str,
        time_micros: i64,
    ) -> Result<(Vec<u8>, String), LogError> {
        let period = SubjectKeys::period_of(time_micros);
        let mac = self.subjects.official(&period, consumer, official)?;
        Ok((mac.to_vec(), period))
    }

    /// From now on, every entry recorded is counted by `watch` (once; later calls are
    /// ignored).
    pub fn watch_alerts(&self, watch: Arc<crate::alerts::AlertWatch>) {
        let _ = self.alerts.set(watch);
    }

    /// Appends `record`; returns once it is durable. Every entry the broker writes passes
    /// here, so this is where the alert rule sees them, and only once they are recorded.
    pub async fn record(&self, record: &ExchangeRecord) -> Result<Receipt, LogError> {
        let receipt = self.log.append(record.encode_to_vec()).await?;
        self.appended.notify_one();
        if let Some(watch) = self.alerts.get() {
            watch.observe(record);
        }
        Ok(Receipt {
            index: receipt.index,
            leaf_hash: receipt.leaf_hash.to_vec(),
        })
    }

    /// Entries the audit index holds, for the indexer-lag metric; `None` while it is closed
    /// after a failure.
    pub fn indexed_size(&self) -> Option<u64> {
        let slot = self.index.read().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().and_then(|i| i.indexed_size().ok())
    }

    /// Brings the indexes up to date now (blocking; call from a blocking task).
    pub fn catch_up(&self) -> Result<(), LogError> {
        let index = self.index()?;
        match index.catch_up(&self.log) {
            Ok(()) => Ok(()),
            Err(e @ huitong_audit::Error::Index { .. }) => {
                drop(index);
                if let Err(again) = self.reopen_index() {
                    warn!(error = %again, "the audit index could not be reopened; retrying later");
                }
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps the indexes current, signs a checkpoint every `checkpoint_every` when the log has
    /// grown, and applies the subject-key retention once a day.
    pub async fn upkeep(self: Arc<Self>, checkpoint_every: Duration, retention_months: u32) {
        let mut last_checkpoint = tokio::time::Instant::now();
        let mut last_retention: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = self.appended.notified() => {
                    // Let appends gather: the index writes a block per value and step, so
                    // bigger steps mean fewer sled writes. Auditors' queries catch up
                    // themselves, so nobody reads a stale index.
                    tokio::time::sleep(INDEX_GATHER).await;
                },
                () = tokio::time::sleep(Duration::from_secs(1)) => {},
            }
            let me = Arc::clone(&self);
            let due_checkpoint = last_checkpoint.elapsed() >= checkpoint_every;
            let due_retention = retention_months > 0
                && last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(86_400));
            let work = tokio::task::spawn_blocking(move || {
                // Each task on its own: an index that cannot be written (a full disk, say)
                // must not stop checkpoints, which auditors need to confirm receipts.
                if let Err(e) = me.catch_up() {
                    warn!(error = %e, "exchange log upkeep: indexing failed");
                }
                if due_checkpoint {
                    let grown = me
                        .log
                        .latest_checkpoint()
                        .is_none_or(|c| c.size < me.log.size());
                    if grown && let Err(e) = me.log.checkpoint() {
                        warn!(error = %e, "exchange log upkeep: signing a checkpoint failed");
                    }
                }
                if due_retention
                    && let Err(e) = me.apply_retention(retention_months, SystemTime::now())
                {
                    warn!(error = %e, "exchange log upkeep: subject-key retention failed");
                }
            })
            .await;
            if let Err(e) = work {
                warn!(error = %e, "exchange log upkeep task failed");
            }
            if due_checkpoint {
                last_checkpoint = tokio::time::Instant::now();
            }
            if due_retention {
                last_retention = Some(tokio::time::Instant::now());
            }
        }
    }

    /// Destroys the subject keys of periods older than `months` before `now`: entries of those
    /// periods stay in the log and keep verifying, but can no longer be linked to a person.
    pub fn apply_retention(&self, months: u32, now: SystemTime) -> Result<Vec<String>, LogError> {
        let period = SubjectKeys::period_of(huitong_audit::record::micros(now));
        let cutoff = months_before(&period, months);
        let destroyed = self.subjects.destroy_before(&cutoff)?;
        if !destroyed.is_empty() {
            info!(periods = ?destroyed, "subject keys destroyed under the retention policy");
        }
        Ok(destroyed)
    }
}

/// The "YYYY-MM" period `months` before `period`.
fn months_before(period: &str, months: u32) -> String {
    let (y, m) = period
        .split_once('-')
        .and_then(|(y, m)| Some((y.parse::<i64>().ok()?, m.parse::<i64>().ok()?)))
        .unwrap_or((1970, 1));
    let total = y * 12 + (m - 1) - i64::from(months);
    format!(
        "{:04}-{:02}",
        total.div_euclid(12),
        total.rem_euclid(12) + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods_count_back_in_months() {
        assert_eq!(months_before("2026-11", 0), "2026-11");
        assert_eq!(months_before("2026-11", 11), "2025-12");
        assert_eq!(months_before("2026-01", 1), "2025-12");
        assert_eq!(months_before("2026-03", 27), "2023-12");
    }
}
