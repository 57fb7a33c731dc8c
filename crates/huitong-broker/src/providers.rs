//! The departments' adapters as the broker sees them: one reusable HTTP/2 channel each, a guard
//! (concurrency bound, circuit breaker, retry budget) each, whether each is reachable (from its
//! health stream and from the calls made), and the catalogue built from their descriptions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use huitong_core::{Catalogue, DeptId, ResourceSpec};
use huitong_proto::convert;
use huitong_proto::v1::DescribeRequest;
use huitong_proto::v1::adapter_client::AdapterClient;
use huitong_tls::{ClientTls, Expect, PeerId, Role};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::error::Error;
use crate::resilience::{AdapterGuard, backoff};

/// One department's adapter.
#[derive(Debug)]
pub struct Provider {
    pub dept: DeptId,
    client: AdapterClient<Channel>,
    channel: Channel,
    pub guard: AdapterGuard,
    reachable: AtomicBool,
    /// Whether a description was ever loaded; until then its resources are unknown.
    described: AtomicBool,
}

impl Provider {
    /// A client for one call. Cloning shares the underlying connection.
    pub fn client(&self) -> AdapterClient<Channel> {
        self.client.clone()
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub fn is_described(&self) -> bool {
        self.described.load(Ordering::Relaxed)
    }

    /// Records the outcome of a call, so that the catalogue shows who answers.
    pub fn mark(&self, reachable: bool) {
        if self.reachable.swap(reachable, Ordering::Relaxed) != reachable {
            if reachable {
                info!(dept = %self.dept, "adapter reachable");
            } else {
                warn!(dept = %self.dept, "adapter unreachable");
            }
        }
    }
}

/// Every configured provider and the current catalogue.
#[derive(Debug)]
pub struct Providers {
    by_dept: HashMap<DeptId, Arc<Provider>>,
    // A snapshot swapped whole on refresh: a query clones the Arc and never holds the lock.
    catalogue: RwLock<Arc<Catalogue>>,
    call_timeout: Duration,
    tls: ClientTls,
}

impl Providers {
    /// Channels are connected lazily and reconnect by themselves, so a department that is down
    /// when the broker starts is picked up when it comes back.
    ///
    /// Each channel is mutual TLS, and the adapter must present exactly the identity
    /// `spiffe://<our trust domain>/dept/<its dept>/adapter`: an adapter of another department,
    /// or a consumer's certificate, is refused at the handshake.
    pub fn new(config: &BrokerConfig) -> Result<Self, Error> {
        let tls = ClientTls::load(&config.tls)?;
        let trust_domain = tls.id().trust_domain.clone();
        let mut by_dept = HashMap::with_capacity(config.adapters.len());
        for a in &config.adapters {
            let expect = PeerId::new(&trust_domain, a.dept.clone(), Role::Adapter)?;
            let endpoint = huitong_tls::endpoint(&a.endpoint)?
                .connect_timeout(config.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true);
            let channel =
                endpoint.connect_with_connector_lazy(tls.connector(Expect::Exactly(expect)));
            let client = AdapterClient::new(channel.clone())
                .max_decoding_message_size(config.max_message_bytes)
                .max_encoding_message_size(config.max_message_bytes);
            by_dept.insert(
                a.dept.clone(),
                Arc::new(Provider {
                    dept: a.dept.clone(),
                    client,
                    channel,
                    guard: AdapterGuard::new(config.adapter_limits),
                    reachable: AtomicBool::new(false),
                    described: AtomicBool::new(false),
                }),
            );
        }
        Ok(Self {
            by_dept,
            catalogue: RwLock::new(Arc::new(Catalogue::default())),
            call_timeout: config.adapter_timeout,
            tls,
        })
    }

    /// The TLS the broker dials adapters with (it remembers their certificates' expiry).
    pub fn client_tls(&self) -> &ClientTls {
        &self.tls
    }

    pub fn get(&self, dept: &DeptId) -> Option<&Arc<Provider>> {
        self.by_dept.get(dept)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.by_dept.values()
    }

    /// The current catalogue snapshot.
    pub fn catalogue(&self) -> Arc<Catalogue> {
        match self.catalogue.read() {
            Ok(c) => Arc::clone(&c),
            // A writer panicked mid-swap; the Arc it left is still a whole catalogue.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Asks every adapter to describe itself, concurrently, and swaps in the new catalogue.
    /// A department that does not answer keeps the resources it last described.
    pub async fn refresh(&self) {
        let calls = self.by_dept.values().map(|p| {
            let p = Arc::clone(p);
            let timeout = self.call_timeout;
            tokio::spawn(async move {
                let specs = describe(&p, timeout).await;
                (p, specs)
            })
        });
        let mut updates = Vec::with_capacity(self.by_dept.len());
        for call in calls.collect::<Vec<_>>() {
            if let Ok(update) = call.await {
                updates.push(update);
            }
        }
        let mut next = (*self.catalogue()).clone();
        for (p, specs) in updates {
            let Some(specs) = specs else { continue };
            match next.with_provider(&p.dept, specs) {
                Ok(c) => {
                    next = c;
                    p.described.store(true, Ordering::Relaxed);
                }
                Err(e) => warn!(dept = %p.dept, error = %e, "description refused"),
            }
        }
        let next = Arc::new(next);
        match self.catalogue.write() {
            Ok(mut c) => *c = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    /// Refreshes the catalogue every `every`, and every 2 s while a department is missing.
    pub async fn refresh_forever(self: Arc<Self>, every: Duration) {
        loop {
            let all_up = self.iter().all(|p| p.is_reachable() && p.is_described());
            tokio::time::sleep(if all_up {
                every
            } else {
                every.min(Duration::from_secs(2))
            })
            .await;
            self.refresh().await;
        }
    }
}

impl Provider {
    /// Follows the adapter's `grpc.health.v1` status for as long as the broker runs. A broken
    /// stream means the adapter went away: the breaker opens at once, so consumers get
    /// UNAVAILABLE now rather than after their calls fail; "serving" again closes it, so
    /// recovery needs no restart and no wait for the next probe.
    pub async fn watch_health(self: Arc<Self>) {
        let mut attempt = 0u32;
        loop {
            let mut client = HealthClient::new(self.channel.clone());
            match client
                .watch(HealthCheckRequest {
                    service: String::new(),
                })
                .await
            {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    while let Ok(Some(answer)) = stream.message().await {
                        attempt = 0;
                        if answer.status == ServingStatus::Serving as i32 {
                            self.mark(true);
                            self.guard.reset();
                        } else {
                            self.mark(false);
                            self.guard.trip();
                        }
                    }
                    self.mark(false);
                    self.guard.trip();
                }
                Err(status) if status.code() == tonic::Code::Unimplemented => {
                    info!(dept = %self.dept, "adapter serves no health checks; its state is learnt from calls alone");
                    return;
                }
                Err(_) => {
                    self.mark(false);
                    self.guard.trip();
                }
            }
            // Reconnect quickly at first, then back off to a couple of seconds.
            tokio::time::sleep(
                Duration::from_millis(50) + backoff(attempt.min(6), Duration::from_millis(40)),
            )
            .await;
            attempt = attempt.saturating_add(1);
        }
    }
}

/// One adapter's resources, or None if it did not answer properly.
async fn describe(p: &Provider, timeout: Duration) -> Option<Vec<ResourceSpec>> {
    let mut req = tonic::Request::new(DescribeRequest {});
    req.set_timeout(timeout);
    let answer = tokio::time::timeout(timeout, p.client().describe(req)).await;
    let resp = match answer {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            p.mark(false);
            warn!(dept = %p.dept, code = ?status.code(), message = status.message(), cause = %error_chain(&status), "describe failed");
            return None;
        }
        Err(_) => {
            p.mark(false);
            warn!(dept = %p.dept, "describe timed out");
            return None;
        }
    };
    p.mark(true);
    if resp.dept_id != p.dept.as_str() {
        warn!(dept = %p.dept, answered_as = %resp.dept_id, "adapter describes itself as another department; ignored");
        return None;
    }
    let mut specs = Vec::with_capacity(resp.resources.len());
    for d in &resp.resources {
        match convert::resource_spec(&p.dept, d) {
            Ok(s) => specs.push(s),
            Err(e) => warn!(dept = %p.dept, error = %e, "resource description refused"),
        }
    }
    info!(dept = %p.dept, resources = specs.len(), "catalogue loaded");
    Some(specs)
}

/// The whole cause chain of a status: a refused TLS identity is only visible at its end.
fn error_chain(status: &tonic::Status) -> String {
    let mut out = String::new();
    let mut cur = std::error::Error::source(status);
    while let Some(e) = cur {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}
