//! Following the providers' change streams (`Adapter.WatchChanges`) so that a change reported
//! by a department drops the cached copy at once, not when its age runs out.
//!
//! One stream per cached resource, resumed from the last cursor after a break, so a change made
//! while the stream was down is still seen. Where the broker cannot know what it missed (no
//! cursor yet, or one the adapter no longer retains), it drops the resource's whole cache.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use huitong_core::ResourceSpec;
use huitong_proto::v1::WatchChangesRequest;
use tonic::Code;
use tracing::{debug, info, warn};

use crate::cache::{CacheKey, RecordCache};
use crate::error::ExchangeError;
use crate::providers::{Provider, Providers};
use crate::resilience::backoff;

/// How often the catalogue is looked at for resources that became cacheable.
const RESCAN: Duration = Duration::from_secs(5);
/// How long to wait before asking again an adapter that offers no change stream for a
/// resource (it may be upgraded meanwhile).
const UNOFFERED_RETRY: Duration = Duration::from_secs(60);

/// Keeps one change-stream follower running per cacheable resource of every provider.
pub async fn follow_all(providers: Arc<Providers>, cache: Arc<RecordCache<ExchangeError>>) {
    let mut following: HashSet<huitong_core::ResourceId> = HashSet::new();
    loop {
        let catalogue = providers.catalogue();
        for spec in catalogue.iter() {
            if spec.max_cache_age_seconds == 0 || following.contains(spec.id()) {
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
                Arc::clone(&cache),
            ));
        }
        tokio::time::sleep(RESCAN).await;
    }
}

/// Follows one resource's change stream for as long as the broker runs.
async fn follow(
    provider: Arc<Provider>,
    providers: Arc<Providers>,
    resource: huitong_core::ResourceId,
    cache: Arc<RecordCache<ExchangeError>>,
) {
    let mut cursor = String::new();
    let mut attempt = 0u32;
    loop {
        let mut client = provider.client();
        let request = WatchChangesRequest {
            resource: resource.name().to_string(),
            cursor: cursor.clone(),
        };
        match client.watch_changes(request).await {
            Ok(stream) => {
                // Without a cursor there is no telling what changed before the stream began.
                if cursor.is_empty() {
                    cache.invalidate_resource(&resource);
                }
                debug!(%resource, "following changes");
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(event)) => {
                            attempt = 0;
                            let spec = providers.catalogue().get(&resource).ok().cloned();
                            match spec {
                                Some(spec) => invalidate(&cache, &spec, &event.key).await,
                                None => cache.invalidate_resource(&resource),
                            }
                            if !event.cursor.is_empty() {
                                cursor = event.cursor;
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            if status.code() == Code::OutOfRange {
                                resynchronise(&cache, &resource, &mut cursor, &status);
                            }
                            break;
                        }
                    }
                }
            }
            Err(status) if status.code() == Code::Unimplemented => {
                info!(%resource, "the adapter offers no change stream; cached copies expire by age only");
                tokio::time::sleep(UNOFFERED_RETRY).await;
                continue;
            }
            Err(status) if status.code() == Code::OutOfRange => {
                resynchronise(&cache, &resource, &mut cursor, &status);
            }
            Err(status) => {
                debug!(%resource, code = ?status.code(), "change stream unavailable");
            }
        }
        tokio::time::sleep(
            Duration::from_millis(50) + backoff(attempt.min(6), Duration::from_millis(40)),
        )
        .await;
        attempt = attempt.saturating_add(1);
    }
}

/// The adapter no longer holds the changes after our cursor: drop everything of the resource
/// and start again from what it retains.
fn resynchronise(
    cache: &RecordCache<ExchangeError>,
    resource: &huitong_core::ResourceId,
    cursor: &mut String,
    status: &tonic::Status,
) {
    warn!(%resource, message = status.message(), "missed changes; the resource's cache is dropped");
    cache.invalidate_resource(resource);
    cursor.clear();
}

async fn invalidate(
    cache: &RecordCache<ExchangeError>,
    spec: &ResourceSpec,
    key: &std::collections::HashMap<String, huitong_proto::v1::Value>,
) {
    cache.invalidate(&CacheKey::new(spec, key)).await;
}
