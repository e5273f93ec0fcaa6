//! The HTTP edge: routes, shared state, and the middleware every request passes through
//! (access log, security headers, CSRF, body limits).
//!
//! Handlers live in `pages` (and the staff pages in `admin`); authentication in `session`
//! extractors; CSRF in `csrf`. This module must not contain SQL or presence logic: it calls
//! `Store`, `Accounts` and `Hub`.

pub mod access_log;
pub mod admin;
pub mod api;
pub mod assets;
pub mod client;
pub mod cookies;
pub mod csrf;
pub mod error;
pub mod form;
pub mod headers;
pub mod metrics;
pub mod pages;
pub mod session;
pub mod templates;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use presence::Hub;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::accounts::{Accounts, Reach};
use crate::accounts::{LogInLimitSettings, LogInLimits, RetryAfter, Throttle};
use crate::settings::ServeArgs;
use crate::store::Store;
use crate::ws::Heartbeat;
use client::{ClientAddr, TrustedProxies};
use cookies::CookieOptions;
use csrf::CsrfPolicy;
use session::SessionCache;

/// What every handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Store,
    pub hub: Hub,
    /// The account operations (sign up ... delete), reaching this node's hub and cache.
    pub accounts: Accounts,
    pub page_size: u32,
    /// The window over which pages spread their reconnects after a node stops (see
    /// [`reconnect_spread`]); handed to the page script.
    pub reconnect_spread: Duration,
    pub session_ttl: Duration,
    pub cookies: CookieOptions,
    pub heartbeat: Heartbeat,
    /// Cancelled when the server stops; socket loops select on it.
    pub shutdown: CancellationToken,
    /// Socket tasks register here (axum does not wait for upgraded connections, axum#3003), so
    /// a shutdown waits for their close frames to go out.
    pub tasks: TaskTracker,
    /// The runtime socket loops are spawned on (not the one serving HTTP; see `app.rs`).
    pub sockets: tokio::runtime::Handle,
    /// Recently looked-up sessions (shared with the account reconciler).
    pub sessions: Arc<SessionCache>,
    /// Failed log-ins per (account, address), per address and per account (locks internally,
    /// never across `.await`).
    pub log_in_limits: LogInLimits,
    /// Accounts created per client address (`--signup-limit` per `--signup-window`).
    pub sign_ups: Throttle,
    /// Whose forwarding headers name the client (`--trusted-proxies`).
    pub trusted_proxies: Arc<TrustedProxies>,
    /// `/metrics` is served on its own listener (`--metrics-bind`), not on the main one.
    pub metrics_elsewhere: bool,
    /// What CSRF (and the socket's `Origin` check) know about the site.
    pub csrf: Arc<CsrfPolicy>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(
        store: Store,
        hub: Hub,
        sessions: Arc<SessionCache>,
        sockets: tokio::runtime::Handle,
        settings: &ServeArgs,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> AppState {
        AppState(Arc::new(Shared {
            accounts: Accounts::new(store.clone(), Reach::Server { hub: hub.clone(), sessions: sessions.clone() }),
            tasks,
            sessions,
            sockets,
            store,
            hub,
            heartbeat: Heartbeat { interval: settings.ping_interval, timeout: settings.ping_timeout },
            shutdown,
            page_size: settings.page_size,
            reconnect_spread: reconnect_spread(settings.presence_grace),
            session_ttl: settings.session_ttl,
            cookies: CookieOptions { secure: settings.secure_cookies },
            log_in_limits: LogInLimits::new(LogInLimitSettings {
                per_pair: settings.login_limit,
                per_address: settings.login_address_limit,
                per_account: settings.login_account_limit,
                window: settings.login_window,
            }),
            sign_ups: Throttle::new(settings.signup_limit, settings.signup_window),
            trusted_proxies: Arc::new(TrustedProxies::new(settings.trusted_proxies.clone())),
            metrics_elsewhere: settings.metrics_bind.is_some(),
            csrf: Arc::new(CsrfPolicy {
                cookies: CookieOptions { secure: settings.secure_cookies },
                body_timeout: settings.header_read_timeout,
                allowed_origins: settings
                    .allowed_origins
                    .iter()
                    .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            }),
        }))
    }

    /// Whether a WebSocket handshake's `Origin` may connect ([`CsrfPolicy::socket_origin_allowed`]).
    pub fn origin_allowed(&self, headers: &axum::http::HeaderMap, client: &ClientAddr) -> bool {
        self.csrf.socket_origin_allowed(headers, self.csrf.is_https(client))
    }
}

/// The longest window over which pages spread their reconnects after a node stops.
const MAX_RECONNECT_SPREAD: Duration = Duration::from_secs(10);

/// When a node stops, every page on it gets its 1001 close at once. Each page waits a random
/// time in [0, this) before it reconnects (to another node, or to this one restarted), so the
/// reconnects arrive spread out, not as one burst. Half the presence grace: a page back within
/// the grace never shows its user Offline, and the other half is margin for the reconnect
/// itself. At most [`MAX_RECONNECT_SPREAD`]; with no grace, the page's ordinary backoff.
pub fn reconnect_spread(grace: Duration) -> Duration {
    (grace / 2).min(MAX_RECONNECT_SPREAD)
}

/// How long `/readyz` waits for the database before calling it unreachable.
const READYZ_DATABASE_WAIT: Duration = Duration::from_secs(2);

/// `/readyz`: 200 when the database answers and the presence layer is ready (the in-process
/// one always is), else 503 naming what is not.
async fn readyz(axum::extract::State(app): axum::extract::State<AppState>) -> Response {
    let mut problems = Vec::new();
    match tokio::time::timeout(READYZ_DATABASE_WAIT, app.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readyz: database unreachable");
            problems.push("database unreachable".to_owned());
        }
        Err(_) => problems.push("database unreachable (no answer in time)".to_owned()),
    }
    let layer = app.hub.layer_status();
    if !layer.ready {
        problems.push(format!("presence layer not ready: {}", layer.reason.as_deref().unwrap_or("unknown")));
    }
    if problems.is_empty() {
        "ready".into_response()
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, problems.join("; ")).into_response()
    }
}

/// A `302 Found` redirect, as Django answers (axum's `Redirect::to` is 303). `location` is a
/// local path we built or checked with `session::safe_next`.
pub fn found(location: &str) -> Response {
    let value = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    (axum::http::StatusCode::FOUND, [(header::LOCATION, value)]).into_response()
}

/// A 429 with `Retry-After` (whole seconds, rounded up), counted under what was throttled:
/// every 429 the server sends goes through here.
pub fn too_many(what: metrics::Throttled, wait: RetryAfter, mut response: Response) -> Response {
    what.count();
    *response.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs_ceil()));
    response
}

/// "45 seconds", "1 minute", "15 minutes": how long to wait, for a person, rounded up.
pub fn wait_phrase(wait: Duration) -> String {
    let secs = RetryAfter(wait).as_secs_ceil();
    let (n, unit) = if secs < 120 { (secs, "second") } else { (secs.div_ceil(60), "minute") };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Content-Security-Policy: no inline script or style, nothing from other origins, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn router(state: AppState) -> Router {
    let csrf = state.csrf.clone();
    let secure_site = state.cookies.secure;
    let trusted = state.trusted_proxies.clone();
    Router::new()
        .route("/", headers::private(get(pages::user_list)))
        .route("/sign_up/", headers::private(get(pages::sign_up_form).post(pages::sign_up)))
        .route("/log_in/", headers::private(get(pages::log_in_form).post(pages::log_in)))
        .route("/log_out/", headers::private(get(pages::log_out_form).post(pages::log_out)))
        .route("/users/", get(crate::ws::users_socket))
        .route("/api/users/", headers::private(get(api::users)))
        .route("/admin/", headers::private(get(admin::users)))
        .route("/admin/users/{id}/{action}/", headers::private(get(admin::confirm).post(admin::act)))
        .route("/static/{name}", get(assets::serve))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render_guarded))
        .fallback(pages::not_found)
        .layer(middleware::from_fn(move |req, next| csrf::csrf_middleware(csrf.clone(), req, next)))
        .layer(DefaultBodyLimit::max(csrf::MAX_FORM_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(middleware::from_fn(move |req, next| headers::hsts(secure_site, req, next)))
        .layer(middleware::from_fn(access_log::access_log))
        .layer(middleware::from_fn(move |req, next| client::resolve_client(trusted.clone(), req, next)))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_spread_over_half_the_grace_up_to_a_cap() {
        assert_eq!(reconnect_spread(Duration::from_secs(5)), Duration::from_millis(2500));
        assert_eq!(reconnect_spread(Duration::ZERO), Duration::ZERO);
        assert_eq!(reconnect_spread(Duration::from_secs(600)), MAX_RECONNECT_SPREAD);
    }
}
