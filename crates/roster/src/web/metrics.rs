//! `/metrics` in the Prometheus text format: sockets open, users online, frames and batches
//! sent, lagging clients (resynced or closed), the deepest send queue seen, HTTP latency.
//!
//! Hub figures are read from `Hub::stats()` at scrape time, so the hot path pays nothing for
//! them; HTTP latency is a histogram recorded by the access log middleware.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, Method};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls are no-ops).
pub fn install() {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("roster_http_request_duration_seconds".to_owned()),
                &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            )
            .ok()?;
        match builder.install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        }
    });
}

pub fn record_http(method: &Method, status: u16, secs: f64) {
    metrics::histogram!("roster_http_request_duration_seconds", "method" => method.to_string(), "status" => status.to_string())
        .record(secs);
}

pub async fn render(State(app): State<AppState>) -> impl IntoResponse {
    let s = app.hub.stats();
    metrics::gauge!("roster_sockets_open").set(s.sockets_open as f64);
    metrics::gauge!("roster_users_online").set(s.users_online as f64);
    metrics::gauge!("roster_users_registered").set(s.registered_count as f64);
    metrics::counter!("roster_frames_sent_total").absolute(s.frames_sent);
    metrics::counter!("roster_batches_sent_total").absolute(s.batches_sent);
    metrics::counter!("roster_lagging_resyncs_total").absolute(s.lagging_resyncs);
    metrics::counter!("roster_lagging_closes_total").absolute(s.lagging_closes);
    metrics::gauge!("roster_send_queue_max_depth").set(s.max_queue_depth as f64);
    metrics::gauge!("roster_send_queue_capacity").set(s.queue_capacity as f64);
    let body = HANDLE.get().and_then(Option::as_ref).map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}
