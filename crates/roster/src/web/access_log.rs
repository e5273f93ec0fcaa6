//! The access log: one line per request in the tutorial's console shape,
//! `HTTP GET / 200 [0.02, 127.0.0.1:52757]`, and the HTTP latency metric.
//!
//! What a client sends is cut before it is written: the method to [`MAX_METHOD`] bytes and the
//! path to [`MAX_PATH`] bytes, every byte outside printable ASCII escaped as `\xNN`, so no
//! request makes a long line or writes control characters into the log. The query string is
//! not logged (it may hold search text); no cookie or form field ever is. Knows nothing about
//! sessions, SQL or presence.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::client::client_of;
use super::metrics;

/// Longest method written to the log, in bytes (the longest standard method has 7).
pub const MAX_METHOD: usize = 32;
/// Longest path written to the log, in bytes.
pub const MAX_PATH: usize = 256;

/// Middleware: logs the request when its response is ready, and records its latency under the
/// matched route pattern (never the raw path).
pub async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = loggable(req.method().as_str().as_bytes(), MAX_METHOD);
    let path = loggable(req.uri().path().as_bytes(), MAX_PATH);
    let method_label = metrics::method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let peer = client_of(req.extensions());
    let upgrade = req.headers().get(header::UPGRADE).is_some();
    let response = next.run(req).await;
    let secs = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    metrics::record_http(method_label, route, status, secs);
    if upgrade {
        tracing::info!(target: "roster::http", method = %method, path = %path, status, secs, peer = %peer,
            "WebSocket HANDSHAKING {path} [{peer}]");
    } else {
        tracing::info!(target: "roster::http", method = %method, path = %path, status, secs, peer = %peer,
            "HTTP {method} {path} {status} [{secs:.2}, {peer}]");
    }
    response
}

/// `bytes` as a log-safe string of at most about `max` bytes: printable ASCII as it is (a
/// backslash doubled), anything else as `\xNN`; when cut, it ends with `...`.
pub fn loggable(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(max) + 3);
    for &b in bytes {
        let piece_len = match b {
            b'\\' => 2,
            0x21..=0x7e => 1,
            _ => 4,
        };
        if out.len() + piece_len > max {
            out.push_str("...");
            break;
        }
        match b {
            b'\\' => out.push_str("\\\\"),
            0x21..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_escapes_and_cuts() {
        assert_eq!(loggable(b"/static/app.css", MAX_PATH), "/static/app.css");
        assert_eq!(loggable("/caf\u{e9} x\n\\".as_bytes(), MAX_PATH), "/caf\\xc3\\xa9\\x20x\\x0a\\\\");
        let long = loggable(&[b'M'; 1000], MAX_METHOD);
        assert_eq!(long, format!("{}...", "M".repeat(MAX_METHOD)));
        assert!(loggable(&[0xff; 1000], MAX_PATH).len() <= MAX_PATH + 3);
        assert_eq!(loggable(b"", 10), "");
    }
}
