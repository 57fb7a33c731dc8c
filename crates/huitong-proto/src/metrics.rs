//! The metrics endpoint every Huitong server offers: Prometheus/OpenMetrics text at `/metrics`
//! over plain HTTP, on its own port.
//!
//! Plain HTTP on a separate listener, because scrapers do not speak our mutual TLS and the
//! numbers carry no personal data; bind it where only the monitoring network reaches.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Certificates that stop being valid within this are warned about in the log.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// Histogram buckets for request and stage durations, in seconds: 100 µs to about 13 s.
pub fn duration_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 18)
}

/// Serves `registry` at `GET /metrics` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = Arc::clone(&registry);
            async move { render(&registry) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn render(registry: &Registry) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => (
            http::StatusCode::OK,
            [(
                http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics could not be encoded\n".to_owned(),
        )
            .into_response(),
    }
}

/// What every Huitong server exports besides its own metrics, read at each scrape:
/// `huitong_build_info`, `huitong_certificate_expiry_timestamp_seconds{cert}` (own and CA),
/// `huitong_auth_failures_total{reason}`, for a client of other servers (the broker)
/// `huitong_adapter_certificate_expiry_timestamp_seconds{dept}`, and the `process_*` metrics.
///
/// Register it on a registry without prefix; the TLS parts appear once [`ServerFacts::set_tls`]
/// (and [`ServerFacts::set_peers`]) are called, so a registry can be built before TLS is loaded.
#[derive(Debug)]
pub struct ServerFacts {
    service: &'static str,
    started: f64,
    tls: OnceLock<huitong_tls::ServerTls>,
    peers: OnceLock<huitong_tls::ClientTls>,
}

impl ServerFacts {
    /// `service` is `broker` or `adapter`, the `service` label of `huitong_build_info`.
    pub fn new(service: &'static str) -> Arc<ServerFacts> {
        Arc::new(ServerFacts {
            service,
            started: unix_seconds(SystemTime::now()),
            tls: OnceLock::new(),
            peers: OnceLock::new(),
        })
    }

    /// The server's own TLS: its certificates' expiry and failed authentications.
    pub fn set_tls(&self, tls: &huitong_tls::ServerTls) {
        let _ = self.tls.set(tls.clone());
    }

    /// The client TLS this server dials others with: their certificates' expiry.
    pub fn set_peers(&self, client: &huitong_tls::ClientTls) {
        let _ = self.peers.set(client.clone());
    }

    /// Logs a warning for each certificate of `tls` that stops being valid within
    /// [`EXPIRY_WARNING`]; servers call it at start and then daily.
    pub fn warn_of_expiry(&self) {
        let now = unix_seconds(SystemTime::now());
        let warn = |what: &str, who: &str, not_after: i64| {
            #[allow(clippy::cast_precision_loss)]
            let left = (not_after as f64 - now) / 86_400.0;
            if left * 86_400.0 < EXPIRY_WARNING.as_secs_f64() {
                tracing::warn!(
                    certificate = what,
                    %who,
                    not_after = %huitong_tls::format_utc(system_time(not_after)),
                    days_left = format!("{left:.1}"),
                    "a certificate expires soon; issue a new one (huitong pki issue --force) and restart or reload"
                );
            }
        };
        if let Some(tls) = self.tls.get() {
            let e = tls.expiry();
            warn("own", &tls.id().to_string(), e.own);
            warn("ca", "the exchange CA", e.ca);
        }
        if let Some(peers) = self.peers.get() {
            for (id, not_after) in peers.peer_expiries() {
                warn("peer", &id.to_string(), not_after);
            }
        }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn system_time(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0))
}

type LabelPairs = Vec<(&'static str, String)>;

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(LabelPairs, f64)],
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(0.0_f64);
    let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    for (labels, value) in samples {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(LabelPairs, f64)],
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(0.0_f64);
    let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
    for (labels, value) in samples {
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for ServerFacts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        #[allow(clippy::cast_precision_loss)]
        let secs = |t: i64| t as f64;
        gauges(
            &mut encoder,
            "huitong_build_info",
            "Always 1; the labels say which build and service this is",
            &[(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").to_owned()),
                    ("service", self.service.to_owned()),
                ],
                1.0,
            )],
        )?;
        if let Some(tls) = self.tls.get() {
            let e = tls.expiry();
            gauges(
                &mut encoder,
                "huitong_certificate_expiry_timestamp_seconds",
                "When this server's own certificate and the exchange CA's stop being valid (Unix time)",
                &[
                    (vec![("cert", "own".to_owned())], secs(e.own)),
                    (vec![("cert", "ca".to_owned())], secs(e.ca)),
                ],
            )?;
            let failures: Vec<_> = tls
                .auth_failures()
                .into_iter()
                .map(|(reason, n)| {
                    #[allow(clippy::cast_precision_loss)]
                    let n = n as f64;
                    (vec![("reason", reason.to_owned())], n)
                })
                .collect();
            counters(
                &mut encoder,
                "huitong_auth_failures",
                "Requests refused for their certificate, by reason: no_certificate, foreign_ca, revoked, expired, wrong_role, bad_certificate",
                &failures,
            )?;
        }
        if let Some(peers) = self.peers.get() {
            let mut by_dept: Vec<(LabelPairs, f64)> = peers
                .peer_expiries()
                .into_iter()
                .map(|(id, t)| (vec![("dept", id.dept.to_string())], secs(t)))
                .collect();
            by_dept.sort_by(|a, b| a.0.cmp(&b.0));
            gauges(
                &mut encoder,
                "huitong_adapter_certificate_expiry_timestamp_seconds",
                "When each adapter's certificate, as last verified by this broker, stops being valid (Unix time)",
                &by_dept,
            )?;
        }
        process(&mut encoder, self.started)
    }
}

/// The standard `process_*` metrics, from /proc (Linux); elsewhere only the start time.
fn process(encoder: &mut DescriptorEncoder, started: f64) -> Result<(), std::fmt::Error> {
    gauges(
        encoder,
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds",
        &[(Vec::new(), started)],
    )?;
    if let Some(cpu) = proc_cpu_seconds() {
        counters(
            encoder,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            &[(Vec::new(), cpu)],
        )?;
    }
    if let Some(rss) = proc_resident_bytes() {
        gauges(
            encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            &[(Vec::new(), rss)],
        )?;
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        #[allow(clippy::cast_precision_loss)]
        let fds = dir.count() as f64;
        gauges(
            encoder,
            "process_open_fds",
            "Number of open file descriptors",
            &[(Vec::new(), fds)],
        )?;
    }
    Ok(())
}

/// utime + stime from /proc/self/stat, in the kernel's USER_HZ (100 on every Linux port
/// that Huitong runs on; reading it properly needs sysconf, i.e. unsafe code).
fn proc_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn proc_resident_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read_from_proc() {
        let facts = ServerFacts::new("adapter");
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::clone(&facts)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("huitong_build_info{version=\""), "{text}");
        assert!(text.contains("service=\"adapter\"} 1"), "{text}");
        assert!(text.contains("process_start_time_seconds "), "{text}");
        if cfg!(target_os = "linux") {
            assert!(text.contains("process_cpu_seconds_total "), "{text}");
            assert!(text.contains("process_resident_memory_bytes "), "{text}");
            assert!(text.contains("process_open_fds "), "{text}");
        }
        // Without TLS set, no certificate series is made up.
        assert!(!text.contains("certificate_expiry"), "{text}");
    }
}
