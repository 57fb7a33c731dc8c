//! Following the providers' change streams (`Adapter.WatchChanges`): every change a department
//! reports drops the cached copy of the changed record at once, not when its age runs out, and
//! is stored in the event log for subscribers, cut down to what the grants in force could
//! release to one (see [`minimise_for_subscribers`]).
//!
//! One stream per resource, resumed after a break (and after a broker restart) from the cursor
//! stored with the last event kept, so a change made while the stream was down is still seen.
//! Where the broker cannot know what it missed (a cursor the adapter no longer retains), it
//! drops the resource's whole cache and starts again from what the adapter retains.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use huitong_core::{FieldName, ResourceId};
use huitong_proto::v1::{ChangeEvent, WatchChangesRequest};
use tonic::Code;
use tracing::{debug, info, warn};

use crate::cache::{CacheKey, RecordCache};
use crate::error::ExchangeError;
use crate::events::EventLog;
use crate::policy::Policy;
use crate::providers::{Provider, Providers};
use crate::resilience::backoff;

/// How often the catalogue is looked at for new resources.
const RESCAN: Duration = Duration::from_secs(2);
/// How long to wait before asking again an adapter that offers no change stream for a
/// resource (it may be upgraded meanwhile).
const UNOFFERED_RETRY: Duration = Duration::from_secs(60);
/// Most changes stored in one batch (one flush).
const BATCH: usize = 512;
/// Longest pause between attempts at a stream the adapter refuses (it may be reconfigured)
/// and at one that cannot be reached (it may come back).
const REFUSED_CAP: Duration = Duration::from_secs(300);
const UNREACHABLE_CAP: Duration = Duration::from_secs(30);

/// Where a follower stands, logged only when it changes, not at every retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Following,
    Refused(Code),
    Unreachable,
}

impl StreamState {
    /// Logs the change from `before`; returns the new state.
    fn enter(
        self,
        before: StreamState,
        resource: &ResourceId,
        status: Option<&tonic::Status>,
    ) -> StreamState {
        if self == before {
            return self;
        }
        let message = status.map(|s| s.message()).unwrap_or_default();
        match self {
            StreamState::Following => info!(%resource, "following changes"),
            StreamState::Refused(code) => warn!(
                %resource, ?code, reason = message,
                cap_s = REFUSED_CAP.as_secs(),
                "the adapter refuses the change stream; retrying with back-off, logged again only when this changes"
            ),
            StreamState::Unreachable => info!(
                %resource, reason = message,
                cap_s = UNREACHABLE_CAP.as_secs(),
                "change stream unavailable; retrying with back-off"
            ),
        }
        self
    }

    /// The pause before attempt `attempt` in this state: doubling, capped, jittered.
    fn pause(self, attempt: u32) -> Duration {
        match self {
            StreamState::Following => Duration::from_millis(50),
            StreamState::Refused(_) => {
                (Duration::from_secs(1).saturating_mul(1 << attempt.min(9))).min(REFUSED_CAP)
            }
            StreamState::Unreachable => {
                Duration::from_millis(50)
                    + backoff(attempt.min(10), Duration::from_millis(40)).min(UNREACHABLE_CAP)
            }
        }
    }
}

/// Codes that say the stream is not for us (as configured), as against "not now".
fn is_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::InvalidArgument
            | Code::Unauthenticated
    )
}

/// Where changes go.
#[derive(Debug, Clone)]
pub struct Sinks {
    pub events: Arc<EventLog>,
    pub cache: Option<Arc<RecordCache<ExchangeError>>>,
    /// Decides what of each change is kept.
    pub policy: Arc<Policy>,
}

/// Keeps one change-stream follower running per catalogued resource.
pub async fn follow_all(providers: Arc<Providers>, sinks: Sinks) {
    let mut following: HashSet<ResourceId> = HashSet::new();
    loop {
        let catalogue = providers.catalogue();
        for spec in catalogue.iter() {
            // A not-shared resource is never served, so its changes have no subscriber and
            // no cached copy to drop; asking for them would only fill the provider's log.
            if following.contains(spec.id()) || spec.check_shared().is_err() {
                continue;
            }
            let Some(provider) = providers.get(spec.id().provider()) else {
                continue;
            };
            following.insert(spec.id().clone());
            tokio::spawn(follow(
                Arc::clone(provider),
                Arc::clone(&providers),
                spec.id().clone(),
                sinks.clone(),
            ));
        }
        tokio::time::sleep(RESCAN).await;
    }
}

/// Follows one resource's change stream for as long as the broker runs.
async fn follow(
    provider: Arc<Provider>,
    providers: Arc<Providers>,
    resource: ResourceId,
    sinks: Sinks,
) {
    let mut attempt = 0u32;
    let mut state = StreamState::Following;
    loop {
        let cursor = match sinks.events.cursor(&resource) {
            Ok(c) => c,
            Err(e) => {
                warn!(%resource, error = %e, "cannot read the change cursor");
                String::new()
            }
        };
        let mut client = provider.client();
        let request = WatchChangesRequest {
            resource: resource.name().to_string(),
            cursor: cursor.clone(),
        };
        match client.watch_changes(request).await {
            Ok(stream) => {
                // Without a cursor there is no telling what changed before the stream began.
                if cursor.is_empty()
                    && let Some(cache) = &sinks.cache
                {
                    cache.invalidate_resource(&resource);
                }
                if state == StreamState::Following {
                    debug!(%resource, "following changes");
                } else {
                    state = StreamState::Following.enter(state, &resource, None);
                    attempt = 0;
                }
                let mut stream = stream.into_inner();
                loop {
                    let first = match stream.message().await {
                        Ok(Some(event)) => event,
                        Ok(None) => break,
                        Err(status) => {
                            if status.code() == Code::OutOfRange {
                                resynchronise(&sinks, &resource, &status);
                            } else if is_refusal(status.code()) {
                                state = StreamState::Refused(status.code()).enter(
                                    state,
                                    &resource,
                                    Some(&status),
                                );
                            }
                            break;
                        }
                    };
                    attempt = 0;
                    // Whatever else has already arrived goes into the same batch: one flush
                    // for a burst of changes.
                    let mut batch = vec![first];
                    let mut ended = None;
                    while batch.len() < BATCH {
                        match tokio::time::timeout(Duration::ZERO, stream.message()).await {
                            Ok(Ok(Some(event))) => batch.push(event),
                            Ok(Ok(None)) => {
                                ended = Some(None);
                                break;
                            }
                            Ok(Err(status)) => {
                                ended = Some(Some(status));
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if !store(&sinks, &providers, &resource, batch).await {
                        break;
                    }
                    match ended {
                        None => {}
                        Some(None) => break,
                        Some(Some(status)) => {
                            if status.code() == Code::OutOfRange {
                                resynchronise(&sinks, &resource, &status);
                            }
                            break;
                        }
                    }
                }
            }
            Err(status) if status.code() == Code::Unimplemented => {
                info!(%resource, "the adapter offers no change stream; subscribers get no events and cached copies expire by age only");
                tokio::time::sleep(UNOFFERED_RETRY).await;
                continue;
            }
            Err(status) if status.code() == Code::OutOfRange => {
                resynchronise(&sinks, &resource, &status);
            }
            Err(status) if is_refusal(status.code()) => {
                state = StreamState::Refused(status.code()).enter(state, &resource, Some(&status));
            }
            Err(status) => {
                debug!(%resource, code = ?status.code(), "change stream unavailable");
                // One broken stream is routine (an adapter restart); from the second failed
                // attempt on it is a state worth one line.
                if attempt >= 1 {
                    state = StreamState::Unreachable.enter(state, &resource, Some(&status));
                }
            }
        }
        let pause = match state {
            StreamState::Following => StreamState::Unreachable.pause(attempt.min(6)),
            other => other.pause(attempt),
        };
        tokio::time::sleep(pause).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Stores a batch in the event log, then drops the changed records from the cache. The cache
/// goes second so that a subscriber told of a change and querying at once finds it.
async fn store(
    sinks: &Sinks,
    providers: &Providers,
    resource: &ResourceId,
    batch: Vec<ChangeEvent>,
) -> bool {
    let cursor = batch
        .iter()
        .rev()
        .find(|e| !e.cursor.is_empty())
        .map(|e| e.cursor.clone())
        .unwrap_or_default();
    let keys: Vec<_> = batch.iter().map(|e| e.key.clone()).collect();
    let releasable = match providers.catalogue().get(resource).ok() {
        Some(spec) => sinks.policy.releasable_fields(spec, SystemTime::now()),
        // Not (or no longer) catalogued: nobody can subscribe to it.
        None => Vec::new(),
    };
    let batch = minimise_for_subscribers(batch, &releasable);
    if let Err(e) = sinks.events.append(resource, batch, &cursor).await {
        warn!(%resource, error = %e, "cannot store changes; the stream is resumed from the last stored one");
        return false;
    }
    if let Some(cache) = &sinks.cache {
        match providers.catalogue().get(resource).ok() {
            Some(spec) => {
                for key in &keys {
                    cache.invalidate(&CacheKey::new(spec, key)).await;
                }
            }
            None => cache.invalidate_resource(resource),
        }
    }
    true
}

/// What the event log keeps of a batch: for each change, the key that identifies the record
/// (needed to record each delivery's subject) and only the `releasable` fields of the record;
/// nothing at all when no field is releasable, since then nobody may subscribe (the cursor is
/// still stored, so the stream resumes where it was). Run on every batch against the grants in
/// force, so a grant approved, revoked or expiring, or a policy reload, changes what is kept
/// from the next change on; events stored earlier keep what was kept then.
fn minimise_for_subscribers(
    mut batch: Vec<ChangeEvent>,
    releasable: &[FieldName],
) -> Vec<ChangeEvent> {
    if releasable.is_empty() {
        return Vec::new();
    }
    for change in &mut batch {
        if let Some(record) = &mut change.record {
            record
                .fields
                .retain(|name, _| releasable.iter().any(|f| f.as_str() == name));
        }
    }
    batch
}

/// The adapter no longer holds the changes after our cursor: drop everything of the resource
/// from the cache and start again from what it retains.
fn resynchronise(sinks: &Sinks, resource: &ResourceId, status: &tonic::Status) {
    warn!(%resource, message = status.message(), "missed changes; the resource's cache is dropped and its stream restarted");
    if let Some(cache) = &sinks.cache {
        cache.invalidate_resource(resource);
    }
    if let Err(e) = sinks.events.forget_cursor(resource) {
        warn!(%resource, error = %e, "cannot reset the change cursor");
    }
}
