//! CSRF protection the way Django does it, so the tutorial's forms and clients keep working.
//!
//! A 32-character secret lives in the `csrftoken` cookie. Forms carry
//! `csrfmiddlewaretoken`: the secret masked with a fresh one-time pad per page (64
//! characters, so the token differs on every response, defeating BREACH), or the bare
//! 32-character secret; JavaScript may send the `X-CSRFToken` header instead. Every request
//! whose method is not safe must present a token that unmasks to the cookie's secret, else 403.
//!
//! The middleware also buffers the (size-limited) body of those requests once, so the handler
//! and the check read the same bytes. It knows nothing about users or sessions.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use subtle::ConstantTimeEq;

use super::cookies::{cookie_value, set_cookie, CookieOptions};
use super::error::AppError;
use super::form::Form;

pub const CSRF_COOKIE: &str = "csrftoken";
pub const CSRF_FIELD: &str = "csrfmiddlewaretoken";
pub const CSRF_HEADER: &str = "x-csrftoken";
const ALPHABET: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_LEN: usize = 32;
/// Largest request body accepted by any form (sign up, log in, log out). Larger gets 413.
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// The csrftoken cookie lives about a year, like Django's.
const CSRF_COOKIE_MAX_AGE: u64 = 31_449_600;

/// The request's CSRF secret, available to handlers as an extension.
#[derive(Clone)]
pub struct CsrfToken {
    secret: String,
}

impl CsrfToken {
    /// A fresh random secret.
    pub fn generate() -> CsrfToken {
        CsrfToken { secret: random_chars(SECRET_LEN) }
    }

    /// The value to put in a form's `csrfmiddlewaretoken` field: masked, different every time.
    pub fn form_token(&self) -> String {
        let mask = random_chars(SECRET_LEN);
        let cipher: String =
            self.secret.bytes().zip(mask.bytes()).map(|(s, m)| ALPHABET[(index(s) + index(m)) % 62] as char).collect();
        mask + &cipher
    }

    /// The `Set-Cookie` value that stores this secret.
    pub fn cookie(&self, opts: CookieOptions) -> HeaderValue {
        set_cookie(CSRF_COOKIE, &self.secret, Some(CSRF_COOKIE_MAX_AGE), false, opts)
    }

    /// Whether a submitted token (masked or bare) belongs to this secret, in constant time.
    pub fn matches(&self, submitted: &str) -> bool {
        let candidate = match submitted.len() {
            64 if is_token_chars(submitted) => {
                let (mask, cipher) = submitted.split_at(SECRET_LEN);
                cipher
                    .bytes()
                    .zip(mask.bytes())
                    .map(|(c, m)| ALPHABET[(index(c) + 62 - index(m)) % 62])
                    .collect::<Vec<u8>>()
            }
            SECRET_LEN if is_token_chars(submitted) => submitted.as_bytes().to_vec(),
            _ => return false,
        };
        candidate.ct_eq(self.secret.as_bytes()).into()
    }
}

fn index(c: u8) -> usize {
    ALPHABET.iter().position(|&a| a == c).unwrap_or(0)
}

fn is_token_chars(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn random_chars(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| ALPHABET[rng.gen_range(0..62)] as char).collect()
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Why a request failed the check; shown on the 403 page (never the token itself).
fn reject(reason: &'static str) -> Response {
    AppError::Forbidden(reason).into_response()
}

/// Middleware: ensures every client has a CSRF secret, and checks unsafe requests. The body of
/// an unsafe request must arrive within `body_timeout` (else 408), so a client trickling a form
/// cannot hold its connection.
pub async fn csrf_middleware(cookie_opts: CookieOptions, body_timeout: Duration, req: Request, next: Next) -> Response {
    let existing = cookie_value(req.headers(), CSRF_COOKIE)
        .filter(|v| v.len() == SECRET_LEN && is_token_chars(v))
        .map(|secret| CsrfToken { secret: secret.to_owned() });
    let fresh = existing.is_none();
    let token = existing.unwrap_or_else(CsrfToken::generate);

    let mut req = req;
    if !is_safe(req.method()) {
        if let Err(reason) = check_origin(req.headers()) {
            return reject(reason);
        }
        let (parts, body) = req.into_parts();
        let bytes = match tokio::time::timeout(body_timeout, to_bytes(body, MAX_FORM_BYTES)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => return AppError::PayloadTooLarge.into_response(),
            Err(_) => return AppError::RequestTimeout.into_response(),
        };
        if fresh {
            return reject("CSRF cookie not set.");
        }
        let header_token = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let submitted = match header_token {
            Some(t) => Some(t),
            None => match Form::field_from_body(&parts.headers, &bytes, CSRF_FIELD) {
                Ok(field) => field,
                Err(e) => return e.into_response(),
            },
        };
        match submitted {
            None => return reject("CSRF token missing."),
            Some(t) if !token.matches(&t) => return reject("CSRF token incorrect."),
            Some(_) => {}
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }

    req.extensions_mut().insert(token.clone());
    let mut response = next.run(req).await;
    let handler_set_it =
        response.headers().get_all(header::SET_COOKIE).iter().any(|v| v.as_bytes().starts_with(CSRF_COOKIE.as_bytes()));
    if fresh && !handler_set_it {
        response.headers_mut().append(header::SET_COOKIE, token.cookie(cookie_opts));
    }
    response
}

/// A cross-site form post from a browser carries an `Origin` that is not ours: refuse it even
/// before looking at the token (Django does the same for HTTPS via Referer).
fn check_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().map_err(|_| "Origin checking failed.")?;
    if origin == "null" {
        return Err("Origin checking failed: null origin.");
    }
    if origin_is_own_host(origin, headers) {
        Ok(())
    } else {
        Err("Origin checking failed: the form was posted from another site.")
    }
}

/// Whether `origin` (`http://host:port`, as browsers send it) names this request's `Host`.
/// Shared by the CSRF check and the WebSocket handshake.
pub fn origin_is_own_host(origin: &str, headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let origin = origin.trim_end_matches('/');
    origin.split_once("://").is_some_and(|(scheme, h)| {
        (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
            && !host.is_empty()
            && h.eq_ignore_ascii_case(host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_tokens_unmask_to_the_secret() {
        let t = CsrfToken::generate();
        let a = t.form_token();
        let b = t.form_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b, "each page gets a differently masked token");
        assert!(t.matches(&a) && t.matches(&b));
        assert!(t.matches(&t.secret));
        let other = CsrfToken::generate();
        assert!(!other.matches(&a));
        assert!(!t.matches(""));
        assert!(!t.matches(&"x".repeat(64)));
        assert!(!t.matches("é".repeat(32).as_str()));
    }

    #[test]
    fn origin_must_be_ours() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        assert!(check_origin(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8000"));
        assert!(check_origin(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(check_origin(&h).is_err());
    }
}
