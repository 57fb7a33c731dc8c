//! The broker's metrics, served at `/metrics` when `broker.metrics_listen` is set.
//!
//! Labels are departments, resources, outcomes and codes: all bounded by the catalogue and the
//! certificates issued, never request ids or keys.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn histogram() -> Histogram {
    Histogram::new(huitong_proto::metrics::duration_buckets())
}

/// Every metric the broker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    exchanges: Family<Labels, Counter>,
    exchange_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    stage_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    adapter_reachable: Family<Labels, Gauge>,
    log_entries: Gauge,
    log_syncs: Counter,
    log_bytes: Gauge,
    log_indexed: Gauge,
    checkpoint_time: Gauge,
    checkpoint_size: Gauge,
    data_dir_available: Gauge,
    policy_reloads: Family<Labels, Counter>,
    facts: Arc<huitong_proto::metrics::ServerFacts>,
    cache_lookups: Family<Labels, Counter>,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    breaker_state: Family<Labels, Gauge>,
    shed: Counter,
    events_delivered: Family<Labels, Counter>,
    delivery_seconds: Histogram,
    consumer_subjects: Family<Labels, Gauge>,
    consumer_refusals: Family<Labels, Gauge>,
    alert_active: Family<Labels, Gauge>,
    alerts_raised: Family<Labels, Counter>,
}

/// The stages of the exchange path that are timed separately.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    Policy,
    Adapter,
    LogAppend,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Policy => "policy",
            Stage::Adapter => "adapter",
            Stage::LogAppend => "log_append",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // The root holds what every server exports (`process_*` has no prefix); the broker's
        // own metrics are under `huitong_`.
        let mut root = Registry::default();
        let facts = huitong_proto::metrics::ServerFacts::new("broker");
        root.register_collector(Box::new(Arc::clone(&facts)));
        let registry = root.sub_registry_with_prefix("huitong");
        let exchanges = Family::<Labels, Counter>::default();
        registry.register(
            "exchanges",
            "Exchanges by consumer, provider, resource, outcome and gRPC code",
            exchanges.clone(),
        );
        let exchange_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        registry.register(
            "exchange_duration_seconds",
            "End-to-end exchange time in the broker, by outcome, provider and resource",
            exchange_seconds.clone(),
        );
        let stage_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        registry.register(
            "stage_duration_seconds",
            "Time spent per stage of the exchange path: policy, adapter, log_append",
            stage_seconds.clone(),
        );
        let adapter_reachable = Family::<Labels, Gauge>::default();
        registry.register(
            "adapter_reachable",
            "1 when the department's adapter answered the broker's last call, else 0",
            adapter_reachable.clone(),
        );
        let log_entries = Gauge::default();
        registry.register(
            "log_entries",
            "Entries in the exchange log",
            log_entries.clone(),
        );
        let log_syncs = Counter::default();
        registry.register(
            "log_syncs",
            "fdatasync calls by the exchange log since start (one per group commit)",
            log_syncs.clone(),
        );
        let log_bytes = Gauge::default();
        registry.register(
            "log_bytes",
            "Bytes of the exchange log on disk (entries, their index and the subject indexes)",
            log_bytes.clone(),
        );
        let log_indexed = Gauge::default();
        registry.register(
            "log_indexed_entries",
            "Entries the audit index (subjects, officials, cases, kinds) holds; huitong_log_entries minus this is the indexer's lag",
            log_indexed.clone(),
        );
        let checkpoint_time = Gauge::default();
        registry.register(
            "log_checkpoint_timestamp_seconds",
            "When the latest checkpoint was signed (Unix time); checkpoints are signed only while the log grows",
            checkpoint_time.clone(),
        );
        let checkpoint_size = Gauge::default();
        registry.register(
            "log_checkpoint_size",
            "Entries the latest signed checkpoint covers; huitong_log_entries minus this is not yet under a signature",
            checkpoint_size.clone(),
        );
        let data_dir_available = Gauge::default();
        registry.register(
            "data_dir_available_bytes",
            "Free bytes on the filesystem of the broker's data directory (the log stops answering when it is full)",
            data_dir_available.clone(),
        );
        let policy_reloads = Family::<Labels, Counter>::default();
        // Both series from the start, so that a dashboard sees 0 before the first reload.
        for result in ["ok", "failed"] {
            let _ = policy_reloads.get_or_create(&vec![("result", result.to_owned())]);
        }
        registry.register(
            "policy_reloads",
            "Policy file reloads (SIGHUP) by result: ok, or failed (the previous grants stay in force)",
            policy_reloads.clone(),
        );
        let cache_lookups = Family::<Labels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Key lookups of cacheable resources by result: hit, miss, or stale (served past its age because the provider could not answer)",
            cache_lookups.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "cache_entries",
            "Records held in the cache",
            cache_entries.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "cache_bytes",
            "Bytes charged to the records held in the cache",
            cache_bytes.clone(),
        );
        let breaker_state = Family::<Labels, Gauge>::default();
        registry.register(
            "adapter_breaker_state",
            "Circuit breaker per department: 0 closed, 1 half-open (probing), 2 open",
            breaker_state.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "exchanges_shed",
            "Exchanges refused with UNAVAILABLE because the broker was at max_in_flight",
            shed.clone(),
        );
        let events_delivered = Family::<Labels, Counter>::default();
        registry.register(
            "events_delivered",
            "Events delivered to subscribers, by resource",
            events_delivered.clone(),
        );
        let delivery_seconds = histogram();
        registry.register(
            "event_release_duration_seconds",
            "Time to authorise, mask and record a batch of events for one subscriber",
            delivery_seconds.clone(),
        );
        // The bulk-lookup alert (see `crate::alerts`); labelled by consumer department only.
        let consumer_subjects = Family::<Labels, Gauge>::default();
        registry.register(
            "consumer_subjects_last_hour",
            "Distinct people named by the consumer's queries in the sliding hour (counted up to twice the [alerts] threshold)",
            consumer_subjects.clone(),
        );
        let consumer_refusals = Family::<Labels, Gauge>::default();
        registry.register(
            "consumer_refusals_last_hour",
            "The consumer's refused queries in the sliding hour",
            consumer_refusals.clone(),
        );
        let alert_active = Family::<Labels, Gauge>::default();
        registry.register(
            "alert_active",
            "1 while the consumer's count of kind (subjects_per_hour, refusals_per_hour) in the sliding hour is over its [alerts] threshold",
            alert_active.clone(),
        );
        let alerts_raised = Family::<Labels, Counter>::default();
        registry.register(
            "alerts_raised",
            "Times the consumer's alert of kind went on",
            alerts_raised.clone(),
        );
        Metrics {
            registry: Arc::new(root),
            log_bytes,
            log_indexed,
            checkpoint_time,
            checkpoint_size,
            data_dir_available,
            policy_reloads,
            facts,
            consumer_subjects,
            consumer_refusals,
            alert_active,
            alerts_raised,
            events_delivered,
            delivery_seconds,
            cache_lookups,
            cache_entries,
            cache_bytes,
            breaker_state,
            shed,
            exchanges,
            exchange_seconds,
            stage_seconds,
            adapter_reachable,
            log_entries,
            log_syncs,
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Build, process, certificate and authentication metrics; TLS is attached once loaded.
    pub fn facts(&self) -> &huitong_proto::metrics::ServerFacts {
        &self.facts
    }

    /// One finished exchange.
    pub fn exchange(
        &self,
        consumer: &str,
        provider: &str,
        resource: &str,
        outcome: &'static str,
        code: tonic::Code,
        took: Duration,
    ) {
        self.exchanges
            .get_or_create(&vec![
                ("consumer", consumer.to_owned()),
                ("provider", provider.to_owned()),
                ("resource", resource.to_owned()),
                ("outcome", outcome.to_owned()),
                ("code", format!("{code:?}")),
            ])
            .inc();
        self.exchange_seconds
            .get_or_create(&vec![
                ("outcome", outcome.to_owned()),
                ("provider", provider.to_owned()),
                ("resource", resource.to_owned()),
            ])
            .observe(took.as_secs_f64());
    }

    pub fn stage(&self, stage: Stage, took: Duration) {
        self.stage_seconds
            .get_or_create(&vec![("stage", stage.as_str().to_owned())])
            .observe(took.as_secs_f64());
    }

    pub fn adapter_reachable(&self, dept: &str, reachable: bool) {
        self.adapter_reachable
            .get_or_create(&vec![("dept", dept.to_owned())])
            .set(i64::from(reachable));
    }

    pub fn cache_lookup(&self, resource: &huitong_core::ResourceId, result: &'static str) {
        self.cache_lookups
            .get_or_create(&vec![
                ("resource", resource.to_string()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    pub fn cache_usage(&self, entries: u64, bytes: u64) {
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn breaker_state(&self, dept: &str, state: crate::resilience::BreakerState) {
        self.breaker_state
            .get_or_create(&vec![("dept", dept.to_owned())])
            .set(state.as_gauge());
    }

    pub fn delivered(&self, resource: &huitong_core::ResourceId, events: u64, took: Duration) {
        self.events_delivered
            .get_or_create(&vec![("resource", resource.to_string())])
            .inc_by(events);
        self.delivery_seconds.observe(took.as_secs_f64());
    }

    /// One consumer's counts in the sliding hour.
    pub fn consumer_hour(&self, consumer: &str, subjects: u64, refusals: u64) {
        let labels = vec![("consumer", consumer.to_owned())];
        self.consumer_subjects
            .get_or_create(&labels)
            .set(i64::try_from(subjects).unwrap_or(i64::MAX));
        self.consumer_refusals
            .get_or_create(&labels)
            .set(i64::try_from(refusals).unwrap_or(i64::MAX));
    }

    /// Whether one consumer's alert of `kind` is on; `raised` when it just went on.
    pub fn alert(&self, consumer: &str, kind: &str, active: bool, raised: bool) {
        let labels = vec![("consumer", consumer.to_owned()), ("kind", kind.to_owned())];
        self.alert_active
            .get_or_create(&labels)
            .set(i64::from(active));
        let raised_total = self.alerts_raised.get_or_create(&labels);
        if raised {
            raised_total.inc();
        }
    }

    pub fn shed(&self) {
        self.shed.inc();
    }

    /// The log's size and the writer's fsync count since start (a counter: only the increase
    /// since the last call is added).
    pub fn log(&self, entries: u64, syncs: u64) {
        self.log_entries.set(gauge(entries));
        let seen = self.log_syncs.get();
        if syncs > seen {
            self.log_syncs.inc_by(syncs - seen);
        }
    }

    /// What is on disk: the log's bytes, the latest checkpoint and the space left.
    pub fn disk(&self, log_bytes: u64, checkpoint: Option<(i64, u64)>, available: Option<u64>) {
        self.log_bytes.set(gauge(log_bytes));
        if let Some((signed_at, size)) = checkpoint {
            self.checkpoint_time.set(signed_at);
            self.checkpoint_size.set(gauge(size));
        }
        if let Some(a) = available {
            self.data_dir_available.set(gauge(a));
        }
    }

    pub fn indexed(&self, entries: u64) {
        self.log_indexed.set(gauge(entries));
    }

    pub fn policy_reloaded(&self, ok: bool) {
        self.policy_reloads
            .get_or_create(&vec![(
                "result",
                if ok { "ok" } else { "failed" }.to_owned(),
            )])
            .inc();
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
