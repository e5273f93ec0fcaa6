//! `/metrics` in the Prometheus text format: sockets open, users online, frames and batches
//! sent, lagging clients (resynced or closed), the deepest send queue seen, live view groups
//! and the accounts behind them, HTTP latency, WebSocket handshakes refused by reason, sockets
//! opened and closed, 429s by what was throttled, and the presence layer's figures (ready,
//! reconnects, resyncs, sequence gaps, sweeps, fencings; the Redis layer also records each
//! script's round trip as `roster_layer_redis_seconds`). docs/operations.md lists them all.
//!
//! Every labelled counter whose labels come from a fixed set is registered at 0 for each label
//! at start-up, so a series exists before its first event (a `rate()` sees the first one).
//!
//! Hub figures are read from `Hub::stats()` at scrape time, so the hot path pays nothing for
//! them; HTTP latency is a histogram recorded by the access log middleware, labelled only with
//! values from fixed sets: a known method (else `other`), the matched route pattern (e.g.
//! `/static/{name}`; no route: `other`) and the status number. Nothing a client writes becomes a
//! label, so the number of series is bounded whatever is sent.
//!
//! Who may read: with `--metrics-bind`, only the separate listener serves `/metrics`
//! ([`listener_router`]) and the main one answers 404; without it, the main listener serves
//! `/metrics` to loopback clients only (after trusted-proxy resolution), 404 to others.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::client::ClientAddr;
use super::error::AppError;
use super::AppState;
use crate::ws::{End, Refusal, PROTOCOL_LABELS};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls are no-ops).
pub fn install() {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("roster_http_request_duration_seconds".to_owned()),
                &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            )
            .ok()?
            // Recorded by the Redis layer around every script call.
            .set_buckets_for_metric(
                Matcher::Full("roster_layer_redis_seconds".to_owned()),
                &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5],
            )
            .ok()?;
        match builder.install_recorder() {
            Ok(handle) => {
                register_known_series();
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        }
    });
}

/// Creates every fixed-label counter at 0.
fn register_known_series() {
    for refusal in Refusal::ALL {
        metrics::counter!("roster_ws_handshakes_refused_total", "reason" => refusal.label()).absolute(0);
    }
    for protocol in PROTOCOL_LABELS {
        metrics::counter!("roster_ws_sockets_opened_total", "protocol" => protocol).absolute(0);
    }
    for reason in End::LABELS {
        metrics::counter!("roster_ws_sockets_closed_total", "reason" => reason).absolute(0);
    }
    for what in Throttled::ALL {
        metrics::counter!("roster_throttled_total", "what" => what.label()).absolute(0);
    }
}

/// What a 429 refused: the `what` label of `roster_throttled_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttled {
    /// A log-in, past `--login-limit` or `--login-address-limit`.
    LogIn,
    /// A sign-up, past `--signup-limit`.
    SignUp,
    /// A page's socket, past `--max-sockets-per-user`.
    Pages,
}

impl Throttled {
    pub const ALL: [Throttled; 3] = [Throttled::LogIn, Throttled::SignUp, Throttled::Pages];

    pub fn label(self) -> &'static str {
        match self {
            Throttled::LogIn => "log_in",
            Throttled::SignUp => "sign_up",
            Throttled::Pages => "pages",
        }
    }

    /// Counts one 429.
    pub fn count(self) {
        metrics::counter!("roster_throttled_total", "what" => self.label()).increment(1);
    }
}

/// The `method` label: a standard method's name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Records one request's latency. `route` is the matched route pattern (`None`: no route).
pub fn record_http(method: &'static str, route: Option<String>, status: u16, secs: f64) {
    let route = route.unwrap_or_else(|| "other".to_owned());
    metrics::histogram!("roster_http_request_duration_seconds",
        "method" => method, "route" => route, "status" => status.to_string())
    .record(secs);
}

/// `/metrics` on the main listener: loopback clients only, and only without `--metrics-bind`.
pub async fn render_guarded(State(app): State<AppState>, client: ClientAddr) -> Response {
    if app.metrics_elsewhere || !client.ip.is_loopback() {
        return AppError::NotFound.into_response();
    }
    render(State(app)).await.into_response()
}

/// The separate `--metrics-bind` listener: `/metrics` and nothing else.
pub fn listener_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
}

/// The metrics page, for whoever the caller has let through.
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
    metrics::counter!("roster_cluster_resyncs_applied_total").absolute(s.cluster_resyncs);
    let layer = app.hub.layer_status();
    metrics::gauge!("roster_layer_ready").set(if layer.ready { 1.0 } else { 0.0 });
    metrics::counter!("roster_layer_reconnects_total").absolute(layer.reconnects);
    metrics::counter!("roster_layer_resyncs_total").absolute(layer.resyncs);
    metrics::counter!("roster_layer_seq_gaps_total").absolute(layer.seq_gaps);
    metrics::counter!("roster_layer_sweeps_total").absolute(layer.sweeps);
    metrics::counter!("roster_layer_fenced_total").absolute(layer.fenced);
    metrics::gauge!("roster_view_groups").set(s.view_groups as f64);
    metrics::gauge!("roster_directory_accounts").set(s.directory_accounts as f64);
    // Tasks alive on each runtime: HTTP and the Redis layer on this one, socket loops and the hub
    // on their own (`app.sockets`). Flat under steady load; a steady climb is a leak.
    if let Ok(main) = tokio::runtime::Handle::try_current() {
        metrics::gauge!("roster_tasks_alive", "runtime" => "main").set(main.metrics().num_alive_tasks() as f64);
    }
    metrics::gauge!("roster_tasks_alive", "runtime" => "sockets").set(app.sockets.metrics().num_alive_tasks() as f64);
    let body = HANDLE.get().and_then(Option::as_ref).map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}
