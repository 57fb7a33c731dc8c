//! The broker's durable event log: every change the providers report, numbered per resource,
//! kept (sled) until retention drops it, with each provider stream's cursor and each
//! subscription's acknowledged position.
//!
//! An event is stored with the provider's cursor in one atomic batch and flushed before it is
//! offered to subscribers, so after a crash the broker resumes the provider's stream exactly
//! after the last event it kept: nothing is lost, and nothing a subscriber saw is renumbered.
//! Events are stored whole and minimised per subscriber on the way out, like cached records.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use huitong_core::{DeptId, ResourceId};
use huitong_proto::Timestamp;
use huitong_proto::v1::{ChangeEvent, Event};
use prost::Message;
use tokio::sync::watch;

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
    /// Events: `e/<resource>\0<seq, 8 bytes big-endian>` → [`Event`] with the whole record.
    events: sled::Tree,
    /// `seq/<resource>`, `first/<resource>`, `cursor/<resource>`.
    meta: sled::Tree,
    /// `<consumer>\0<resource>\0<subscription>` → acknowledged sequence number.
    subscriptions: sled::Tree,
    /// The latest durable sequence number per resource, for subscribers to wait on.
    latest: Mutex<HashMap<ResourceId, watch::Sender<u64>>>,
    /// Serialises appends to one resource (numbering) and retention.
    write: Mutex<()>,
    retention: Retention,
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

impl EventLog {
    /// Opens (or creates) `dir/events.sled`. Blocking.
    pub fn open(dir: &Path, retention: Retention) -> Result<EventLog, EventError> {
        let path = dir.join("events.sled");
        let db = huitong_audit::open_sled(&path, 8 * 1024 * 1024).map_err(|source| {
            EventError::Open {
                path: path.clone(),
                source,
            }
        })?;
        Ok(EventLog {
            events: db.open_tree("events")?,
            meta: db.open_tree("meta")?,
            subscriptions: db.open_tree("subscriptions")?,
            db,
            latest: Mutex::new(HashMap::new()),
            write: Mutex::new(()),
            retention,
        })
    }

    /// The provider stream's cursor to resume from; empty when there is none.
    pub fn cursor(&self, resource: &ResourceId) -> Result<String, EventError> {
        Ok(self
            .meta
            .get(meta_key("cursor", resource))?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default())
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
            let received_at = Some(Timestamp::from(SystemTime::now()));
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
                events.insert(event_key(resource, seq), event.encode_to_vec());
            }
            let mut meta = sled::Batch::default();
            meta.insert(meta_key("seq", resource), &be(seq));
            if !cursor.is_empty() {
                meta.insert(meta_key("cursor", resource), cursor.as_bytes());
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

    /// Up to `limit` events of `resource` after `after`, in order.
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
        for item in self.events.range(start..=end).take(limit) {
            let (k, v) = item?;
            let event = Event::decode(v.as_ref()).map_err(|_| EventError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
            })?;
            out.push(event);
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
        let oldest_kept = now.checked_sub(retention.max_age).map(Timestamp::from);
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
                let too_old = match (&oldest_kept, self.events.get(&key)?) {
                    (Some(limit), Some(v)) => Event::decode(v.as_ref())
                        .ok()
                        .and_then(|e| e.received_at)
                        .is_some_and(|t| (t.seconds, t.nanos) < (limit.seconds, limit.nanos)),
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
        Ok(dropped)
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
