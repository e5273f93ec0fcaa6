//! The opening handshake of `GET /users/` (RFC 6455 §4.2): what makes a request a valid one,
//! the `Sec-WebSocket-Accept` answer, the subprotocol and (roster.v2) window it asks for, and
//! every reason a handshake is refused, each with its status and its label in
//! `roster_ws_handshakes_refused_total` (a fixed set).

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use presence::protocol::views::WindowError;
use presence::{Protocol, Window};
use sha1::{Digest, Sha1};

/// RFC 6455 §1.3.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a handshake was refused. Each refusal path of [`crate::ws::users_socket`] has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a GET (405).
    Method,
    /// `Connection: upgrade` or `Upgrade: websocket` missing (400).
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not 13 (400).
    Version,
    /// `Sec-WebSocket-Key` missing, empty or too long (400).
    Key,
    /// The connection cannot be taken over (no HTTP/1.1 upgrade available; 426).
    NotUpgradable,
    /// No session of an active user: anonymous, logged out, expired or deactivated (403).
    NoSession,
    /// An `Origin` that is neither this site nor one of `--allowed-origins` (403).
    Origin,
    /// A `roster.v2` handshake whose window (`offset`, `limit`, `q`) is invalid (400).
    Window,
    /// The account already has `--max-sockets-per-user` pages open (429).
    TooManyPages,
    /// The session expired between its lookup and the hub's check (403).
    SessionExpired,
    /// The server is stopping (503).
    ShuttingDown,
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::Method,
        Refusal::NotUpgrade,
        Refusal::Version,
        Refusal::Key,
        Refusal::NotUpgradable,
        Refusal::NoSession,
        Refusal::Origin,
        Refusal::Window,
        Refusal::TooManyPages,
        Refusal::SessionExpired,
        Refusal::ShuttingDown,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Method => "method",
            Refusal::NotUpgrade => "not_upgrade",
            Refusal::Version => "version",
            Refusal::Key => "key",
            Refusal::NotUpgradable => "not_upgradable",
            Refusal::NoSession => "no_session",
            Refusal::Origin => "origin",
            Refusal::Window => "window",
            Refusal::TooManyPages => "too_many_pages",
            Refusal::SessionExpired => "session_expired",
            Refusal::ShuttingDown => "shutting_down",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Method => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::NotUpgrade | Refusal::Version | Refusal::Key | Refusal::Window => StatusCode::BAD_REQUEST,
            Refusal::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            Refusal::NoSession | Refusal::Origin | Refusal::SessionExpired => StatusCode::FORBIDDEN,
            Refusal::TooManyPages => StatusCode::TOO_MANY_REQUESTS,
            Refusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The plain-text answer (`message` says what was wrong), counted under this reason.
    pub fn respond(self, message: &'static str) -> Response {
        metrics::counter!("roster_ws_handshakes_refused_total", "reason" => self.label()).increment(1);
        (self.status(), [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
    }
}

/// The `Sec-WebSocket-Key` of a valid opening handshake (RFC 6455 §4.2.1), or why it is not one.
pub fn handshake_key(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, (Refusal, &'static str)> {
    if method != Method::GET {
        return Err((Refusal::Method, "A WebSocket handshake is a GET request."));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err((Refusal::NotUpgrade, "Connection header did not include 'upgrade'."));
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err((Refusal::NotUpgrade, "Upgrade header did not include 'websocket'."));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err((Refusal::Version, "Sec-WebSocket-Version must be 13."));
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if !key.is_empty() && key.len() <= 64 => Ok(key.clone()),
        _ => Err((Refusal::Key, "Sec-WebSocket-Key is missing.")),
    }
}

/// The subprotocol the handshake offers, and for roster.v2 the window to watch, which comes with
/// the handshake URL so the page needs no round trip.
pub fn protocol_and_window(
    headers: &HeaderMap,
    query: Option<&str>,
    page_size: u32,
) -> Result<(Protocol, Option<Window>), WindowError> {
    let protocol = Protocol::negotiate(
        headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',')),
    );
    let window = match protocol {
        Protocol::RosterV2 => Some(Window::from_query(query.unwrap_or(""), page_size)?),
        _ => None,
    };
    Ok((protocol, window))
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> HeaderValue {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    let value = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    HeaderValue::from_str(&value).expect("base64 is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn handshakes_are_checked() {
        let ok = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            handshake_key(&Method::GET, &h).map_err(|e| e.0)
        };
        let good = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert!(ok(&good).is_ok());
        assert_eq!(ok(&good[1..]), Err(Refusal::NotUpgrade), "no Connection: upgrade");
        assert_eq!(ok(&[good[0], good[2], good[3]]), Err(Refusal::NotUpgrade), "no Upgrade");
        assert_eq!(ok(&[good[0], good[1], ("sec-websocket-version", "8"), good[3]]), Err(Refusal::Version));
        assert_eq!(ok(&good[..3]), Err(Refusal::Key), "no key");
        assert_eq!(handshake_key(&Method::POST, &HeaderMap::new()).map_err(|e| e.0), Err(Refusal::Method));
    }

    #[test]
    fn every_refusal_has_its_own_label_and_an_error_status() {
        let labels: std::collections::BTreeSet<_> = Refusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Refusal::ALL.len());
        assert!(Refusal::ALL.iter().all(|r| r.status().is_client_error() || r.status().is_server_error()));
    }
}
