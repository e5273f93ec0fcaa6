//! Response headers that depend on what is answered or to whom: authenticated pages are not
//! cached by browsers or proxies, and an HTTPS site tells browsers to stay on HTTPS.
//! (The headers every response carries, CSP and the like, are set in `web/mod.rs`.)
//! Knows nothing about sessions or routes beyond the request's [`ClientAddr`].

use std::convert::Infallible;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::MethodRouter;
use tower_http::set_header::SetResponseHeaderLayer;

use super::client::client_of;

/// `Strict-Transport-Security`: one year, this host only (subdomains are not ours to decide).
pub const HSTS: &str = "max-age=31536000";

/// A route whose answers depend on who asks (the session cookie): `Cache-Control: no-store,
/// private` and `Vary: Cookie`, so no browser or shared cache keeps or replays one person's page.
pub fn private<S>(route: MethodRouter<S>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let no_store =
        SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store, private"));
    let vary = SetResponseHeaderLayer::appending(header::VARY, HeaderValue::from_static("Cookie"));
    route.layer::<_, Infallible>(no_store).layer::<_, Infallible>(vary)
}

/// Middleware: `Strict-Transport-Security` on every answer of an HTTPS site (`--secure-cookies`)
/// or to a request a trusted proxy says came over HTTPS.
pub async fn hsts(secure_site: bool, req: Request, next: Next) -> Response {
    let https = secure_site || client_of(req.extensions()).https;
    let mut response = next.run(req).await;
    if https {
        response.headers_mut().entry(header::STRICT_TRANSPORT_SECURITY).or_insert(HeaderValue::from_static(HSTS));
    }
    response
}
