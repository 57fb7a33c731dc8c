//! The metrics endpoint every Huitong server offers: Prometheus/OpenMetrics text at `/metrics`
//! over plain HTTP, on its own port.
//!
//! Plain HTTP on a separate listener, because scrapers do not speak our mutual TLS and the
//! numbers carry no personal data; bind it where only the monitoring network reaches.

use std::future::Future;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

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
