//! The adapter's metrics, served at `/metrics` when `metrics_listen` is set.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn histogram() -> Histogram {
    Histogram::new(huitong_proto::metrics::duration_buckets())
}

/// Calls by method, resource and gRPC code, and their durations.
#[derive(Debug)]
pub struct AdapterMetrics {
    registry: Arc<Registry>,
    requests: Family<Labels, Counter>,
    seconds: Family<Labels, Histogram, fn() -> Histogram>,
    facts: Arc<huitong_proto::metrics::ServerFacts>,
}

impl Default for AdapterMetrics {
    fn default() -> Self {
        // The root holds what every server exports (`process_*` has no prefix).
        let mut root = Registry::default();
        let facts = huitong_proto::metrics::ServerFacts::new("adapter");
        root.register_collector(Box::new(Arc::clone(&facts)));
        let registry = root.sub_registry_with_prefix("huitong_adapter");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Calls by method, resource and gRPC code",
            requests.clone(),
        );
        let seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        registry.register(
            "request_duration_seconds",
            "Time to answer a call, by method",
            seconds.clone(),
        );
        AdapterMetrics {
            registry: Arc::new(root),
            requests,
            seconds,
            facts,
        }
    }
}

impl AdapterMetrics {
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Build, process, certificate and authentication metrics; TLS is attached by `serve`.
    pub fn facts(&self) -> &huitong_proto::metrics::ServerFacts {
        &self.facts
    }

    pub(crate) fn call(
        &self,
        method: &'static str,
        resource: &str,
        code: tonic::Code,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("resource", resource.to_owned()),
                ("code", format!("{code:?}")),
            ])
            .inc();
        self.seconds
            .get_or_create(&vec![("method", method.to_owned())])
            .observe(took.as_secs_f64());
    }
}
