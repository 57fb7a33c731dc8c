//! The broker's record cache: whole records per (resource, key), bounded by bytes.
//!
//! Records are cached as the provider holds them, every field, and minimised and masked per
//! consumer on the way out, so one entry serves consumers with different grants. What may be
//! cached, and for how long, is the provider's to say (`max_cache_age_seconds`, lowered but
//! never raised by the exchange policy).
//!
//! Three rules keep it honest:
//! - **coalescing**: concurrent misses for one key make one adapter call;
//! - **invalidation wins**: a change reported by the provider drops the entry at once, and a
//!   fetch that was already under way when the change arrived is neither cached nor shared with
//!   exchanges that arrive after the change;
//! - **stale only where allowed**: past its age an entry is served only when the provider
//!   cannot answer, only within the resource's `stale_if_error_seconds`, and flagged stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use huitong_core::{FieldType, ResourceId, ResourceSpec};
use huitong_proto::v1::value::Kind;
use huitong_proto::v1::{Record, Value};
use prost::Message;
use tokio::sync::OnceCell;

/// Identifies one record: its resource and its key's values in key-field order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    resource: ResourceId,
    key: Box<[u8]>,
}

impl CacheKey {
    /// `key` as the consumer (or a change event) gave it. Values are read in the resource's
    /// key-field order, and an int given for a double field counts as that double, as the
    /// adapter reads it, so that a change event and a query name the same entry. A key missing
    /// a field has been refused before this is called; it would simply never hit.
    pub fn new(spec: &ResourceSpec, key: &HashMap<String, Value>) -> Self {
        let mut bytes = Vec::with_capacity(16 * spec.key_fields().len());
        for f in spec.key_fields() {
            let double = spec
                .field(f.as_str())
                .is_some_and(|s| s.ty == FieldType::Double);
            match key.get(f.as_str()) {
                Some(Value {
                    kind: Some(Kind::IntValue(i)),
                }) if double => Value::double(*i as f64).encode_length_delimited(&mut bytes),
                // Length-delimited, so that no two keys encode alike.
                Some(v) => v.encode_length_delimited(&mut bytes),
                None => {
                    bytes.push(0xff);
                    Ok(())
                }
            }
            // Encoding into a Vec cannot run out of room.
            .unwrap_or_default();
        }
        Self {
            resource: spec.id().clone(),
            key: bytes.into_boxed_slice(),
        }
    }

    pub fn resource(&self) -> &ResourceId {
        &self.resource
    }
}

/// One cached record.
#[derive(Debug)]
pub struct Cached {
    pub record: Record,
    /// When the provider answered, for the consumer's provenance.
    pub fetched_at: SystemTime,
    stored: Instant,
    /// How long the entry lives at all: its age limit plus its stale-if-error window.
    lifetime: Duration,
}

impl Cached {
    pub fn age(&self) -> Duration {
        self.stored.elapsed()
    }
}

/// What a fetch through the cache gives back to every exchange that waited for it; `None` when
/// the provider has no such record.
pub type Shared<E> = Result<Option<Arc<Cached>>, E>;

/// The cache; see the module documentation.
#[derive(Debug)]
pub struct RecordCache<E> {
    entries: moka::future::Cache<CacheKey, Arc<Cached>>,
    in_flight: Mutex<HashMap<CacheKey, Arc<OnceCell<Shared<E>>>>>,
    /// Bumped by every invalidation; a fetch whose start predates a bump is not stored.
    epoch: AtomicU64,
}

struct Lifetime;

impl moka::Expiry<CacheKey, Arc<Cached>> for Lifetime {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Cached>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.lifetime)
    }
}

/// Bytes an entry is charged: its record encoded, plus the key and bookkeeping.
fn weight(key: &CacheKey, value: &Arc<Cached>) -> u32 {
    let bytes = value.record.encoded_len() + key.key.len() + 160;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

impl<E: Clone + Send + Sync + 'static> RecordCache<E> {
    /// A cache holding at most `max_bytes` of records; 0 disables it.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(weight)
                .expire_after(Lifetime)
                .support_invalidation_closures()
                .build(),
            in_flight: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// The entry for `key`, fresh or stale; the caller judges its age.
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<Cached>> {
        self.entries.get(key).await
    }

    /// Fetches `key` with `fetch` unless an identical fetch is already under way, in which case
    /// this waits for that one's result. A record fetched is stored for `lifetime` unless the
    /// key was invalidated meanwhile. `Ok(None)` from `fetch` (no such record) is not cached.
    ///
    /// If the exchange that started the fetch gives up (its consumer went away), a waiting one
    /// takes over with its own `fetch`.
    pub async fn fetch<F, Fut>(&self, key: &CacheKey, lifetime: Duration, fetch: F) -> Shared<E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<(Record, SystemTime)>, E>>,
    {
        let cell = {
            let mut in_flight = self.lock();
            Arc::clone(in_flight.entry(key.clone()).or_default())
        };
        let outcome = cell
            .get_or_init(|| async {
                let epoch = self.epoch.load(Ordering::Acquire);
                let fetched = fetch().await;
                self.finish(key, epoch, lifetime, fetched).await
            })
            .await
            .clone();
        // Only the exchange that finds its own cell still registered removes it, so that a cell
        // started after an invalidation is not removed by a waiter of the one before.
        {
            let mut in_flight = self.lock();
            if in_flight.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                in_flight.remove(key);
            }
        }
        outcome
    }

    async fn finish(
        &self,
        key: &CacheKey,
        epoch: u64,
        lifetime: Duration,
        fetched: Result<Option<(Record, SystemTime)>, E>,
    ) -> Shared<E> {
        // "No such record" is shared with the waiters but never stored: a record created
        // later must be found at once.
        let Some((record, fetched_at)) = fetched? else {
            return Ok(None);
        };
        let cached = Arc::new(Cached {
            record,
            fetched_at,
            stored: Instant::now(),
            lifetime: lifetime.max(Duration::from_millis(1)),
        });
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.entries.insert(key.clone(), Arc::clone(&cached)).await;
            // An invalidation between the check and the insert bumped the epoch first and may
            // have missed the entry: look again and drop it.
            if self.epoch.load(Ordering::Acquire) != epoch {
                self.entries.invalidate(key).await;
            }
        }
        Ok(Some(cached))
    }

    /// The provider changed `key`: drop it, and make exchanges arriving from now on fetch
    /// afresh rather than wait for a fetch that began before the change.
    pub async fn invalidate(&self, key: &CacheKey) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.lock().remove(key);
        self.entries.invalidate(key).await;
    }

    /// Drops every entry of `resource`: the broker may have missed its changes.
    pub fn invalidate_resource(&self, resource: &ResourceId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.lock().retain(|k, _| &k.resource != resource);
        let resource = resource.clone();
        // Only fails when closures are not enabled, which `new` does.
        let _ = self
            .entries
            .invalidate_entries_if(move |k, _| k.resource == resource);
    }

    /// Entries and bytes held, for metrics. Approximate: moka counts lazily.
    pub fn usage(&self) -> (u64, u64) {
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<OnceCell<Shared<E>>>>> {
        // A map of cells: a panic while it was held left it whole.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
