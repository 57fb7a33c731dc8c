//! The broker's durable event log: every change the providers report, numbered per resource,
//! kept (sled) until retention drops it, with each provider stream's cursor and each
//! subscription's acknowledged position.
//!
//! An event is stored with the provider's cursor in one atomic batch and flushed before it is
//! offered to subscribers, so after a crash the broker resumes the provider's stream exactly
//! after the last event it kept: nothing is lost, and nothing a subscriber saw is renumbered.
//!
//! What is kept is personal data, so it is kept as little and as briefly as the subscriptions
//! allow:
//!
//! - the caller ([`crate::changes`]) stores only the fields some grant could release to a
//!   subscriber (`huitong_core::releasable_fields`), plus the record's key; a resource nobody
//!   may receive anything of has only its cursor stored;
//! - every event and every provider cursor (a SQL source's cursor holds a key value) is sealed
//!   (`huitong_audit::seal`: AES-256-GCM under the key of the day it arrived, bound to its
//!   resource and sequence number), so that retention destroys it by destroying the day's key,
//!   and a copy of `events.sled` without the key directory reveals nothing;
//! - an event whose key is gone counts as dropped by retention: a subscriber behind it is told
//!   to resynchronise (OUT_OF_RANGE), as for any expired event.
//!
//! In clear remain the resource names, sequence numbers, arrival times, subscription names and
//! positions: no record content.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use huitong_audit::seal::{EventKeys, Unsealed, sealed_at};
use huitong_core::{DeptId, ResourceId};
use huitong_proto::Timestamp;
use huitong_proto::v1::{ChangeEvent, Event};
use prost::Message;
use tokio::sync::watch;
use tracing::{info, warn};

/// The default key directory's name, under the data directory.
pub const KEYS_DIR: &str = "event-keys";

/// `meta` key saying the log's values are sealed; absent in logs written before sealing.
const FORMAT_KEY: &[u8] = b"format";
const FORMAT_SEALED: &[u8] = b"sealed-v1";

/// What went wrong with the event log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("cannot open the event log in {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("the event log: {0}")]
    Store(#[from] sled::Error),
    #[error("the event log holds an unreadable entry under {key}")]
    Corrupt { key: String },
    #[error("the event log's keys: {0}")]
    Keys(#[from] huitong_audit::Error),
    #[error("rewriting the event log {} without its plain-text events: {source}", path.display())]
    Migrate {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Retention limits, per resource.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_events: u64,
}

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The last event acknowledged; 0 when none.
    pub acknowledged: u64,
}

/// The event log; see the module documentation.
#[derive(Debug)]
pub struct EventLog {
    db: sled::Db,
    /// Events: `e/<resource>\0<seq, 8 bytes big-endian>` → sealed [`Event`].
    events: sled::Tree,
    /// `seq/<resource>`, `first/<resource>`, `cursor/<resource>` (sealed), `format`.
    meta: sled::Tree,
    /// `<consumer>\0<resource>\0<subscription>` → acknowledged sequence number.
    subscriptions: sled::Tree,
    /// The latest durable sequence number per resource, for subscribers to wait on.
    latest: Mutex<HashMap<ResourceId, watch::Sender<u64>>>,
    /// Serialises appends to one resource (numbering) and retention.
    write: Mutex<()>,
    retention: Retention,
    keys: EventKeys,
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn read_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes)
}

fn event_key(resource: &ResourceId, seq: u64) -> Vec<u8> {
    let mut k = event_prefix(resource);
    k.extend_from_slice(&be(seq));
    k
}

fn event_prefix(resource: &ResourceId) -> Vec<u8> {
    let mut k = format!("e/{resource}").into_bytes();
    k.push(0);
    k
}

fn meta_key(what: &str, resource: &ResourceId) -> Vec<u8> {
    format!("{what}/{resource}").into_bytes()
}

fn subscription_key(consumer: &DeptId, resource: &ResourceId, name: &str) -> Vec<u8> {
    format!("{consumer}\0{resource}\0{name}").into_bytes()
}

/// What an event is sealed to: its resource and number, so it cannot be moved to another.
fn event_context(resource: &ResourceId, seq: u64) -> Vec<u8> {
    let mut c = format!("event\0{resource}\0").into_bytes();
    c.extend_from_slice(&be(seq));
    c
}

fn cursor_context(resource: &ResourceId) -> Vec<u8> {
    format!("cursor\0{resource}").into_bytes()
}

fn seq_of_key(k: &[u8]) -> u64 {
    k.len()
        .checked_sub(8)
        .and_then(|i| <[u8; 8]>::try_from(&k[i..]).ok())
        .map_or(0, u64::from_be_bytes)
}

impl EventLog {
    /// Opens (or creates) `dir/events.sled`, sealed under the keys in `keys_dir`. A log
    /// written before events were sealed is rewritten without its events (see
    /// [`EventLog::migrate`]). Blocking.
    pub fn open(dir: &Path, retention: Retention, keys_dir: &Path) -> Result<EventLog, EventError> {
        let path = dir.join("events.sled");
        let keys = EventKeys::open(keys_dir.to_owned())?;
        let db = Self::open_db(&path)?;
        let db = if Self::is_plain(&db)? {
            drop(db);
            Self::migrate(&path, &keys)?;
            Self::open_db(&path)?
        } else {
            db
        };
        db.open_tree("meta")?.insert(FORMAT_KEY, FORMAT_SEALED)?;
        Ok(EventLog {
            events: db.open_tree("events")?,
            meta: db.open_tree("meta")?,
            subscriptions: db.open_tree("subscriptions")?,
            db,
            latest: Mutex::new(HashMap::new()),
            write: Mutex::new(()),
            retention,
            keys,
        })
    }

    fn open_db(path: &Path) -> Result<sled::Db, EventError> {
        huitong_audit::open_sled(path, 8 * 1024 * 1024).map_err(|source| EventError::Open {
            path: path.to_owned(),
            source,
        })
    }

    /// Whether `db` was written before sealing: it holds something and no format mark.
    fn is_plain(db: &sled::Db) -> Result<bool, EventError> {
        let meta = db.open_tree("meta")?;
        if meta.get(FORMAT_KEY)?.is_some() {
            return Ok(false);
        }
        Ok(!meta.is_empty() || !db.open_tree("events")?.is_empty())
    }

    /// Rewrites a log from before sealing into a fresh directory: numbering, positions and
    /// subscriptions are kept, cursors are sealed, and the events, stored whole in plain text,
    /// are dropped (subscribers behind them are told to resynchronise). A fresh directory
    /// rather than deletions in place, because sled keeps removed values in its files until it
    /// reuses the space. Blocking.
    fn migrate(path: &Path, keys: &EventKeys) -> Result<(), EventError> {
        let io = |source| EventError::Migrate {
            path: path.to_owned(),
            source,
        };
        let fresh_path = path.with_extension("sled.sealing");
        let old_path = path.with_extension("sled.plain");
        let _ = std::fs::remove_dir_all(&fresh_path);
        let (dropped, resources) = {
            let old = Self::open_db(path)?;
            let fresh = Self::open_db(&fresh_path)?;
            let (old_meta, new_meta) = (old.open_tree("meta")?, fresh.open_tree("meta")?);
            let now = huitong_audit::record::micros(SystemTime::now());
            let mut resources = 0;
            for item in old_meta.iter() {
                let (k, v) = item?;
                if let Some(r) = k.strip_prefix(b"seq/") {
                    resources += 1;
                    let mut first = b"first/".to_vec();
                    first.extend_from_slice(r);
                    new_meta.insert(first, &be(read_u64(Some(v.clone())) + 1))?;
                    new_meta.insert(&k, v)?;
                } else if let Some(r) = k.strip_prefix(b"cursor/") {
                    let resource = std::str::from_utf8(r)
                        .ok()
                        .and_then(|r| ResourceId::parse(r).ok());
                    if let Some(resource) = resource {
                        new_meta.insert(&k, keys.seal(now, &cursor_context(&resource), &v)?)?;
                    }
                }
            }
            let subscriptions = fresh.open_tree("subscriptions")?;
            for item in old.open_tree("subscriptions")?.iter() {
                let (k, v) = item?;
                subscriptions.insert(k, v)?;
            }
            new_meta.insert(FORMAT_KEY, FORMAT_SEALED)?;
            fresh.flush()?;
            (old.open_tree("events")?.len(), resources)
        };
        std::fs::rename(path, &old_path).map_err(io)?;
        std::fs::rename(&fresh_path, path).map_err(io)?;
        std::fs::remove_dir_all(&old_path).map_err(io)?;
        warn!(
            path = %path.display(),
            dropped,
            resources,
            "the event log held events in plain text (written before events were sealed); they were dropped and the log rewritten; subscribers behind them are told to resynchronise. Copies of the old files (backups) still hold them"
        );
        Ok(())
    }

    /// The provider stream's cursor to resume from; empty when there is none.
    pub fn cursor(&self, resource: &ResourceId) -> Result<String, EventError> {
        let Some(v) = self.meta.get(meta_key("cursor", resource))? else {
            return Ok(String::new());
        };
        match self.keys.open_sealed(&v, &cursor_context(resource)) {
            Ok(Unsealed::Plain(c)) => Ok(String::from_utf8_lossy(&c).into_owned()),
            Ok(Unsealed::KeyGone { period }) => {
                // Not written for longer than retention: start again from what the provider
                // retains, as after a cursor it no longer knows.
                info!(%resource, period, "the change cursor's key is gone; following the provider from its oldest retained change");
                Ok(String::new())
            }
            Err(_) => Err(EventError::Corrupt {
                key: String::from_utf8_lossy(&meta_key("cursor", resource)).into_owned(),
            }),
        }
    }

    /// Forgets the provider stream's cursor: the provider no longer holds what follows it.
    pub fn forget_cursor(&self, resource: &ResourceId) -> Result<(), EventError> {
        self.meta.remove(meta_key("cursor", resource))?;
        Ok(())
    }

    /// The latest event's sequence number; 0 when there has been none.
    pub fn latest(&self, resource: &ResourceId) -> Result<u64, EventError> {
        Ok(read_u64(self.meta.get(meta_key("seq", resource))?))
    }

    /// The oldest retained event's sequence number (latest + 1 when none is retained).
    pub fn first_retained(&self, resource: &ResourceId) -> Result<u64, EventError> {
        let first = read_u64(self.meta.get(meta_key("first", resource))?);
        Ok(first.max(1))
    }

    /// Stores `changes` of `resource`, numbered after the latest, together with the provider
    /// cursor to resume after them, and flushes; then wakes the resource's subscribers.
    /// Returns the last sequence number.
    pub async fn append(
        &self,
        resource: &ResourceId,
        changes: Vec<ChangeEvent>,
        cursor: &str,
    ) -> Result<u64, EventError> {
        let last = {
            let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
            let mut seq = self.latest(resource)?;
            let now = SystemTime::now();
            let micros = huitong_audit::record::micros(now);
            let received_at = Some(Timestamp::from(now));
            let mut events = sled::Batch::default();
            for change in changes {
                seq += 1;
                let deleted = change.record.is_none();
                let event = Event {
                    sequence: seq,
                    resource: resource.to_string(),
                    key: change.key,
                    record: change.record,
                    deleted,
                    received_at,
                };
                let sealed = self.keys.seal(
                    micros,
                    &event_context(resource, seq),
                    &event.encode_to_vec(),
                )?;
                events.insert(event_key(resource, seq), sealed);
            }
            let mut meta = sled::Batch::default();
            meta.insert(meta_key("seq", resource), &be(seq));
            if !cursor.is_empty() {
                let sealed =
                    self.keys
                        .seal(micros, &cursor_context(resource), cursor.as_bytes())?;
                meta.insert(meta_key("cursor", resource), sealed);
            }
            // Events first, then the position that claims them: a crash between the two leaves
            // events that will be fetched and numbered again, never a position past a gap.
            self.events.apply_batch(events)?;
            self.meta.apply_batch(meta)?;
            // The count limit is kept as events arrive, so that a burst cannot outgrow it
            // between two rounds of the age limit.
            self.drop_before(resource, seq.saturating_sub(self.retention.max_events) + 1)?;
            seq
        };
        self.db.flush_async().await?;
        self.sender(resource).send_replace(last);
        Ok(last)
    }

    /// Up to `limit` events of `resource` after `after`, in order. Events whose key is gone
    /// are dropped as retention would have (with every older one), so the answer then starts
    /// after a gap, which the caller reports like any expiry.
    pub fn read(
        &self,
        resource: &ResourceId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, EventError> {
        let start = event_key(resource, after.saturating_add(1));
        let mut end = event_prefix(resource);
        end.extend_from_slice(&be(u64::MAX));
        let mut out = Vec::with_capacity(limit.min(256));
        let mut gone_through = None;
        for item in self.events.range(start..=end).take(limit) {
            let (k, v) = item?;
            let corrupt = || EventError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
            };
            let seq = seq_of_key(&k);
            match self
                .keys
                .open_sealed(&v, &event_context(resource, seq))
                .map_err(|_| corrupt())?
            {
                Unsealed::Plain(plain) => {
                    out.push(Event::decode(plain.as_slice()).map_err(|_| corrupt())?);
                }
                Unsealed::KeyGone { .. } => {
                    out.clear();
                    gone_through = Some(seq);
                }
            }
        }
        if let Some(seq) = gone_through {
            let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
            let dropped = self.drop_before(resource, seq + 1)?;
            info!(%resource, through = seq, dropped, "events whose key is gone were dropped");
        }
        Ok(out)
    }

    /// A receiver that sees the latest durable sequence number of `resource` change.
    pub fn subscribe_latest(
        &self,
        resource: &ResourceId,
    ) -> Result<watch::Receiver<u64>, EventError> {
        let rx = self.sender(resource).subscribe();
        Ok(rx)
    }

    fn sender(&self, resource: &ResourceId) -> watch::Sender<u64> {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest
            .entry(resource.clone())
            .or_insert_with(|| watch::channel(self.latest(resource).unwrap_or(0)).0)
            .clone()
    }

    /// The subscription's position; `None` if it was never opened.
    pub fn position(
        &self,
        consumer: &DeptId,
        resource: &ResourceId,
        name: &str,
    ) -> Result<Option<Position>, EventError> {
        Ok(self
            .subscriptions
            .get(subscription_key(consumer, resource, name))?
            .map(|v| Position {
                acknowledged: read_u64(Some(v)),
            }))
    }

    /// Opens a subscription at `acknowledged` if it does not exist yet; returns its position.
    pub fn open_subscription(
        &self,
        consumer: &DeptId,
        resource: &ResourceId,
        name: &str,
        acknowledged: u64,
    ) -> Result<Position, EventError> {
        let key = subscription_key(consumer, resource, name);
        let _ =
            self.subscriptions
                .compare_and_swap(&key, None::<&[u8]>, Some(&be(acknowledged)))?;
        Ok(Position {
            acknowledged: read_u64(self.subscriptions.get(&key)?),
        })
    }

    /// Moves the subscription's acknowledged position forward to `seq` (never back); returns
    /// the position after. `None` if the subscription does not exist.
    pub fn acknowledge(
        &self,
        consumer: &DeptId,
        resource: &ResourceId,
        name: &str,
        seq: u64,
    ) -> Result<Option<u64>, EventError> {
        let key = subscription_key(consumer, resource, name);
        let mut missing = false;
        let after = self.subscriptions.update_and_fetch(&key, |old| match old {
            None => {
                missing = true;
                None
            }
            Some(old) => {
                let old = read_u64(Some(sled::IVec::from(old)));
                Some(be(old.max(seq)).to_vec())
            }
        })?;
        if missing {
            return Ok(None);
        }
        Ok(Some(read_u64(after)))
    }

    /// Makes acknowledgements durable; they are otherwise flushed within half a second, and a
    /// lost one only means a redelivery.
    pub async fn flush(&self) -> Result<(), EventError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Drops the events of `resource` numbered below `keep_from`; returns how many.
    fn drop_before(&self, resource: &ResourceId, keep_from: u64) -> Result<u64, EventError> {
        let first = self.first_retained(resource)?;
        if keep_from <= first {
            return Ok(0);
        }
        for seq in first..keep_from {
            self.events.remove(event_key(resource, seq))?;
        }
        self.meta
            .insert(meta_key("first", resource), &be(keep_from))?;
        Ok(keep_from - first)
    }

    /// Drops events older than the retention allows; returns how many were dropped. Blocking.
    pub fn apply_retention(&self, now: SystemTime) -> Result<u64, EventError> {
        let retention = self.retention;
        let resources: Vec<ResourceId> = self
            .meta
            .scan_prefix(b"seq/")
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| {
                std::str::from_utf8(&k[4..])
                    .ok()
                    .and_then(|r| ResourceId::parse(r).ok())
            })
            .collect();
        let oldest_kept = now
            .checked_sub(retention.max_age)
            .map(huitong_audit::record::micros);
        let mut dropped = 0;
        for resource in resources {
            let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
            let latest = self.latest(&resource)?;
            let mut first = self.first_retained(&resource)?;
            let by_count = latest
                .saturating_sub(retention.max_events)
                .saturating_add(1);
            while first <= latest {
                let key = event_key(&resource, first);
                let too_many = first < by_count;
                // The arrival time is readable without the key; a value that is not even a
                // sealed value is dropped as well.
                let too_old = match (oldest_kept, self.events.get(&key)?) {
                    (Some(limit), Some(v)) => sealed_at(&v).ok().is_none_or(|t| t < limit),
                    _ => false,
                };
                if !(too_many || too_old) {
                    break;
                }
                self.events.remove(&key)?;
                first += 1;
                dropped += 1;
            }
            self.meta.insert(meta_key("first", &resource), &be(first))?;
        }
        // Then the keys of the days wholly before the oldest time kept: whatever they sealed
        // (copies in sled's free space, in backups) is gone with them. A cursor not rewritten
        // since is gone too, and the provider is followed again from what it retains.
        if let Some(limit) = oldest_kept {
            let days = self.keys.destroy_before(limit)?;
            if !days.is_empty() {
                info!(days = ?days, "event keys destroyed under the retention policy");
            }
        }
        Ok(dropped)
    }

    /// The key store (for tests and tools).
    pub fn keys(&self) -> &EventKeys {
        &self.keys
    }
}

/// Runs retention every `every` for as long as the broker runs.
pub async fn upkeep(log: Arc<EventLog>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let l = Arc::clone(&log);
        match tokio::task::spawn_blocking(move || l.apply_retention(SystemTime::now())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(dropped = n, "event retention"),
            Ok(Err(e)) => tracing::warn!(error = %e, "event retention failed"),
            Err(e) => tracing::warn!(error = %e, "event retention task failed"),
        }
    }
}

#[cfg(test)]
mod tests;
