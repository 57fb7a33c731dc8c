//! Starts the broker: connects the providers, loads the catalogue, serves `Exchange` with
//! health checking and reflection.

use std::future::Future;
use std::sync::Arc;

use huitong_proto::transport::{self, MessageLimitLayer, OneRequestLayer};
use huitong_proto::v1::admin_server::{self, AdminServer};
use huitong_proto::v1::audit_server::{self, AuditServer};
use huitong_proto::v1::exchange_server::{self, ExchangeServer};
use huitong_tls::{Role, ServerTls, guard};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tracing::info;

use crate::admin::AdminService;
use crate::audit::AuditService;
use crate::cache::RecordCache;
use crate::config::BrokerConfig;
use crate::error::Error;
use crate::events::EventLog;
use crate::exchange::{ExchangeParts, ExchangeService, Paging};
use crate::governance::Governance;
use crate::log::ExchangeLog;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::providers::Providers;

/// A broker whose certificates, policy store and adapter connections are checked and ready.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    tls: Arc<ServerTls>,
    policy: Arc<Policy>,
    providers: Arc<Providers>,
    log: Arc<ExchangeLog>,
    events: Arc<EventLog>,
    metrics: Arc<Metrics>,
    /// Bound before the gRPC address is announced, so a taken metrics port stops the start.
    metrics_listener: Option<std::net::TcpListener>,
}

impl Broker {
    /// Loads the certificates, opens the policy store, reads the policy file and opens the
    /// exchange log (recovering it after a crash and checking it against its last signed
    /// checkpoint). A broker that cannot authenticate, decide or record must not start, so
    /// every such mistake surfaces here, before the caller announces a listening address.
    /// Blocking: opening a large log reads it whole.
    pub fn new(config: BrokerConfig) -> Result<Broker, Error> {
        let tls = Arc::new(ServerTls::load(&config.tls)?.with_limits(config.connections)?);
        // The log first: if it fails its checks, nothing in the data directory may have been
        // written yet (opening a sled store writes to it), so the evidence stays as found.
        let origin = format!("{}/huitong/exchange-log", tls.id().trust_domain);
        let log = Arc::new(ExchangeLog::open(&config.data_dir, &origin)?);
        let policy = Arc::new(Policy::open(
            &config.data_dir,
            config.policy.as_deref(),
            config.reply_deadline_working_days,
            config.work_calendar.clone(),
        )?);
        // What changed while the broker was down is recorded before it serves: a provider
        // added to or removed from the configuration, a certificate revoked.
        let providers_now: Vec<String> =
            config.adapters.iter().map(|a| a.dept.to_string()).collect();
        policy.note_departments(&providers_now)?;
        if let Some(crl) = &config.tls.crl {
            policy.note_revocations(crl)?;
        }
        let providers = Arc::new(Providers::new(&config)?);
        let events = Arc::new(EventLog::open(
            &config.data_dir,
            config.event_retention,
            &config.event_keys_dir,
        )?);
        let metrics_listener = match config.metrics_listen {
            None => None,
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr).map_err(|source| Error::Listen {
                    what: "metrics",
                    addr,
                    source,
                })?;
                l.set_nonblocking(true).map_err(|source| Error::Listen {
                    what: "metrics",
                    addr,
                    source,
                })?;
                Some(l)
            }
        };
        let metrics = Arc::new(Metrics::new());
        metrics.facts().set_tls(&tls);
        metrics.facts().set_peers(providers.client_tls());
        Ok(Broker {
            config,
            tls,
            policy,
            providers,
            log,
            events,
            metrics,
            metrics_listener,
        })
    }

    /// What reloads the policy file on request (SIGHUP), if the broker has one.
    pub fn policy_reloader(&self) -> Option<PolicyReloader> {
        self.config.policy.clone().map(|path| PolicyReloader {
            policy: Arc::clone(&self.policy),
            metrics: Arc::clone(&self.metrics),
            path,
        })
    }

    /// Serves until `shutdown` completes, then finishes in-flight exchanges and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        serve_ready(self, listener, shutdown).await
    }
}

/// Reloads the broker's policy file while it serves.
#[derive(Debug, Clone)]
pub struct PolicyReloader {
    policy: Arc<Policy>,
    metrics: Arc<Metrics>,
    path: std::path::PathBuf,
}

impl PolicyReloader {
    /// Reads the policy file again; on a mistake the grants in force stay and the error says
    /// which file, key and problem.
    pub fn reload(&self) -> Result<usize, crate::policy::PolicyError> {
        let result = self.policy.reload_policy_file(&self.path);
        self.metrics.policy_reloaded(result.is_ok());
        result
    }
}

/// [`Broker::new`] (off the async workers) then [`Broker::serve`].
pub async fn serve(
    config: BrokerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let broker = tokio::task::spawn_blocking(move || Broker::new(config))
        .await
        .map_err(|e| Error::Log(crate::log::LogError::Task(e.to_string())))??;
    broker.serve(listener, shutdown).await
}

async fn serve_ready(
    broker: Broker,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let Broker {
        config,
        tls,
        policy,
        providers,
        log,
        events,
        metrics,
        metrics_listener,
    } = broker;
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    if let Some(l) = metrics_listener {
        let l = TcpListener::from_std(l).map_err(|source| Error::Listen {
            what: "metrics",
            addr: config.metrics_listen.unwrap_or(([0, 0, 0, 0], 0).into()),
            source,
        })?;
        match l.local_addr() {
            Ok(addr) => info!(%addr, "metrics served at /metrics"),
            Err(_) => info!("metrics served at /metrics"),
        }
        let mut stopped = metrics_stopped.clone();
        tokio::spawn(huitong_proto::metrics::serve(
            l,
            metrics.registry(),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
    }
    let cache =
        (config.cache_max_bytes > 0).then(|| Arc::new(RecordCache::new(config.cache_max_bytes)));
    let cache_for_gauges = cache.clone();
    let alert_watch = config.alerts.map(|t| {
        let w = Arc::new(crate::alerts::AlertWatch::new(t, Arc::clone(&metrics)));
        log.watch_alerts(Arc::clone(&w));
        w
    });
    // Gauges are read from their owners once a second rather than on every change.
    let gauges = {
        let (metrics, providers, log) = (
            Arc::clone(&metrics),
            Arc::clone(&providers),
            Arc::clone(&log),
        );
        let data_dir = config.data_dir.clone();
        tokio::spawn(async move {
            let mut tick: u64 = 0;
            loop {
                // Disk figures walk directories: every 10 s is enough for an alert.
                if tick.is_multiple_of(10) {
                    let (log_dir, data_dir) = (log.log().dir().to_owned(), data_dir.clone());
                    if let Ok((bytes, checkpoint, available)) =
                        tokio::task::spawn_blocking(move || disk_figures(&log_dir, &data_dir)).await
                    {
                        let size = log.log().latest_checkpoint().map(|c| c.size);
                        metrics.disk(bytes, checkpoint.zip(size), available);
                    }
                }
                // Certificates are warned about at start and then daily (see docs/runbook.md).
                if tick.is_multiple_of(86_400) {
                    metrics.facts().warn_of_expiry();
                }
                tick += 1;
                for p in providers.iter() {
                    metrics.adapter_reachable(p.dept.as_str(), p.is_reachable());
                    metrics.breaker_state(p.dept.as_str(), p.guard.breaker_state());
                }
                if let Some(cache) = &cache_for_gauges {
                    let (entries, bytes) = cache.usage();
                    metrics.cache_usage(entries, bytes);
                }
                let stats = log.log().stats();
                metrics.log(log.log().size(), stats.syncs);
                if let Some(indexed) = log.indexed_size() {
                    metrics.indexed(indexed);
                }
                if let Some(w) = &alert_watch {
                    w.tick(huitong_audit::record::micros(std::time::SystemTime::now()));
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    };
    let upkeep = tokio::spawn(Arc::clone(&log).upkeep(
        config.checkpoint_interval,
        config.subject_key_retention_months,
    ));
    // One pass before serving, so that a broker whose departments are up starts with a full
    // catalogue; departments that are down are retried in the background.
    providers.refresh().await;
    let refresher = tokio::spawn(Arc::clone(&providers).refresh_forever(config.catalogue_refresh));
    let mut watchers: Vec<tokio::task::JoinHandle<()>> = providers
        .iter()
        .map(|p| tokio::spawn(Arc::clone(p).watch_health()))
        .collect();
    watchers.push(tokio::spawn(crate::changes::follow_all(
        Arc::clone(&providers),
        crate::changes::Sinks {
            events: Arc::clone(&events),
            cache: cache.clone(),
            policy: Arc::clone(&policy),
        },
    )));
    watchers.push(tokio::spawn(crate::events::upkeep(
        Arc::clone(&events),
        std::time::Duration::from_secs(30),
    )));

    let governance = Arc::new(Governance::new(Arc::clone(&policy), Arc::clone(&log)));
    // Entries queued at start (or left by a crash) reach the log before anything is served.
    if let Err(e) = governance.flush().await {
        tracing::warn!(error = %e, "governance entries stay queued until the exchange log can be written");
    }
    watchers.push(tokio::spawn(Arc::clone(&governance).run(
        config.tls.crl.as_ref().map(|_| tls.revocation_changes()),
        config.tls.crl.clone(),
    )));
    let admin = AdminService::new(
        Arc::clone(&policy),
        Arc::clone(&providers),
        Arc::clone(&governance),
    );
    let audit = AuditService::new(Arc::clone(&log), Arc::clone(&providers));
    let exchange = ExchangeService::new(ExchangeParts {
        providers: Arc::clone(&providers),
        policy: Arc::clone(&policy),
        log: Arc::clone(&log),
        metrics: Arc::clone(&metrics),
        cache,
        events: Arc::clone(&events),
        max_in_flight: config.max_in_flight,
        adapter_timeout: config.adapter_timeout,
        paging: Paging {
            default_size: config.default_page_size,
            max_size: config.max_page_size,
        },
    });
    let max = config.max_message_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("huitong.v1.Exchange", ServingStatus::Serving)
        .await;
    health.set_service_status("", ServingStatus::Serving).await;
    let services = [
        exchange_server::SERVICE_NAME,
        admin_server::SERVICE_NAME,
        audit_server::SERVICE_NAME,
    ];
    let reflection_v1 = transport::reflection(&services)
        .build_v1()
        .map_err(|e| Error::Reflection(e.to_string()))?;
    let reflection_v1alpha = transport::reflection(&services)
        .build_v1alpha()
        .map_err(|e| Error::Reflection(e.to_string()))?;

    match listener.local_addr() {
        Ok(addr) => info!(%addr, resources = providers.catalogue().len(), "broker serving"),
        Err(_) => info!(resources = providers.catalogue().len(), "broker serving"),
    }
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping.send(true);
        // Tell load balancers first, so that no new work is sent while in-flight work drains.
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health
            .set_service_status("huitong.v1.Exchange", ServingStatus::NotServing)
            .await;
    };
    let server = tonic::transport::Server::builder()
        .layer(MessageLimitLayer::new(max))
        .layer(OneRequestLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            ExchangeServer::new(exchange)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            guard::require(Arc::clone(&tls), "the Exchange service", &[Role::Consumer]),
        ))
        .add_service(InterceptedService::new(
            AdminServer::new(admin)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            // Auditors may list grants and access requests; the handlers refuse them changes.
            guard::require(
                Arc::clone(&tls),
                "the Admin service",
                &[Role::Admin, Role::Auditor],
            ),
        ))
        .add_service(InterceptedService::new(
            AuditServer::new(audit)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            // Checkpoints and proofs are for every party; the handlers keep entries and
            // subject reports to auditors.
            guard::require(
                Arc::clone(&tls),
                "the Audit service",
                &[Role::Consumer, Role::Admin, Role::Auditor],
            ),
        ))
        .serve_with_incoming_shutdown(tls.incoming(listener), shutdown);
    // Graceful, within a bound: once asked to stop, the server stops accepting and in-flight
    // exchanges get `shutdown_grace` to finish; whatever is still running then is cancelled.
    // A cancelled exchange releases nothing, since its answer leaves only after its log record.
    let grace = config.shutdown_grace;
    let result = tokio::select! {
        r = server => r,
        () = async move {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "exchanges still in flight after the shutdown grace period were cancelled");
            Ok(())
        }
    };
    for w in watchers {
        w.abort();
    }
    refresher.abort();
    upkeep.abort();
    gauges.abort();
    let _ = stop_metrics.send(true);
    // Every exchange answered has been recorded; let the writer finish and sign where it ended.
    log.log().close().await;
    let final_log = Arc::clone(&log);
    match tokio::task::spawn_blocking(move || final_log.log().checkpoint()).await {
        Ok(Ok(cp)) => info!(
            size = cp.size,
            root = %hex(&cp.root),
            "checkpoint signed; the broker stopped"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not sign a final checkpoint"),
        Err(e) => tracing::warn!(error = %e, "the final checkpoint task failed"),
    }
    result.map_err(Error::Serve)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Bytes under the log's directory, when its checkpoint file was last written (Unix seconds),
/// and the space left on the data directory's filesystem. Blocking.
fn disk_figures(
    log_dir: &std::path::Path,
    data_dir: &std::path::Path,
) -> (u64, Option<i64>, Option<u64>) {
    fn walk(dir: &std::path::Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    let signed_at = std::fs::metadata(log_dir.join(huitong_audit::store::CHECKPOINT_FILE))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok());
    (
        walk(log_dir),
        signed_at,
        fs2::available_space(data_dir).ok(),
    )
}
