//! CSRF protection the way Django does it, so the tutorial's forms and clients keep working.
//!
//! A 32-character secret lives in the `csrftoken` cookie. Forms carry
//! `csrfmiddlewaretoken`: the secret masked with a fresh one-time pad per page (64
//! characters, so the token differs on every response, defeating BREACH), or the bare
//! 32-character secret; JavaScript may send the `X-CSRFToken` header instead. Every request
//! whose method is not safe must present a token that unmasks to the cookie's secret, else 403.
//! Before the token, the request's source is checked as Django does: a present `Origin` must be
//! this site's own scheme and host or one of `--allowed-origins`; on HTTPS (`--secure-cookies`,
//! or a trusted proxy's `X-Forwarded-Proto`) a request without `Origin` needs an `https`
//! `Referer` of this host or an allowed origin.
//!
//! The middleware also buffers the (size-limited) body of those requests once, so the handler
//! and the check read the same bytes. It knows nothing about users or sessions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use subtle::ConstantTimeEq;

use super::client::{client_of, ClientAddr};
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

    /// The secret of a request's `csrftoken` cookie, if it has a well-formed one.
    pub(crate) fn from_cookie(headers: &HeaderMap) -> Option<CsrfToken> {
        cookie_value(headers, CSRF_COOKIE)
            .filter(|v| v.len() == SECRET_LEN && is_token_chars(v))
            .map(|secret| CsrfToken { secret: secret.to_owned() })
    }

    /// The secret itself (what the cookie holds).
    pub(crate) fn secret(&self) -> &str {
        &self.secret
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
    AppError::CsrfFailed(reason).into_response()
}

/// What the check needs to know about the site. Built once from the settings.
#[derive(Debug, Clone)]
pub struct CsrfPolicy {
    pub cookies: CookieOptions,
    /// How long an unsafe request's body may take to arrive (`--header-read-timeout`).
    pub body_timeout: Duration,
    /// `--allowed-origins`, lowercased, without a trailing slash.
    pub allowed_origins: Vec<String>,
}

impl CsrfPolicy {
    /// Whether a request counts as HTTPS: the site says so (`--secure-cookies`: its cookies
    /// only travel over HTTPS) or a trusted proxy does (`X-Forwarded-Proto`).
    pub fn is_https(&self, client: &ClientAddr) -> bool {
        self.cookies.secure || client.https
    }

    /// Whether a page of `origin` may act here: this request's own scheme and host (as
    /// Django's `good_origin`), or one of `--allowed-origins`. Shared by the CSRF check and the
    /// WebSocket handshake.
    pub fn origin_allowed(&self, origin: &str, headers: &HeaderMap, https: bool) -> bool {
        let origin = origin.trim_end_matches('/');
        let scheme = if https { "https" } else { "http" };
        let own = split_url(origin).is_some_and(|(s, host)| {
            s.eq_ignore_ascii_case(scheme) && request_host(headers).is_some_and(|h| h.eq_ignore_ascii_case(host))
        });
        own || self.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(origin))
    }

    /// Whether a WebSocket handshake's `Origin` may connect: absent (not a browser), this
    /// site's own scheme and host, or one of `--allowed-origins` (the same rule as CSRF).
    pub fn socket_origin_allowed(&self, headers: &HeaderMap, https: bool) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else { return true };
        let Ok(origin) = origin.to_str() else { return false };
        self.origin_allowed(origin, headers, https)
    }

    /// Django's source check for an unsafe request: a present `Origin` must be allowed; on
    /// HTTPS without `Origin`, a `Referer` is required and must be an `https` URL of this host
    /// or of an `https` allowed origin (so a man in the middle of plain HTTP cannot post).
    pub(crate) fn check_source(&self, headers: &HeaderMap, https: bool) -> Result<(), &'static str> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| "Origin checking failed.")?;
            if origin == "null" {
                return Err("Origin checking failed: null origin.");
            }
            return if self.origin_allowed(origin, headers, https) {
                Ok(())
            } else {
                Err("Origin checking failed: the form was posted from another site.")
            };
        }
        if !https {
            return Ok(());
        }
        let referer = headers.get(header::REFERER).ok_or("Referer checking failed - no Referer.")?;
        let referer = referer.to_str().map_err(|_| "Referer checking failed - Referer is malformed.")?;
        let (scheme, host) = split_url(referer).ok_or("Referer checking failed - Referer is malformed.")?;
        if !scheme.eq_ignore_ascii_case("https") {
            return Err("Referer checking failed - Referer is insecure while host is secure.");
        }
        let own = request_host(headers).is_some_and(|h| h.eq_ignore_ascii_case(host));
        let allowed = self
            .allowed_origins
            .iter()
            .filter_map(|a| split_url(a))
            .any(|(s, h)| s.eq_ignore_ascii_case("https") && h.eq_ignore_ascii_case(host));
        if own || allowed {
            Ok(())
        } else {
            Err("Referer checking failed - the Referer does not match any trusted origin.")
        }
    }
}

/// `(scheme, host[:port])` of an absolute URL.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    (!scheme.is_empty() && !host.is_empty()).then_some((scheme, host))
}

/// The request's `Host`, if present and readable.
fn request_host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty())
}

/// The token a request submits: the `X-CSRFToken` header, else the form's `csrfmiddlewaretoken`
/// field (an undecodable form body is a 400).
pub(crate) fn submitted_token(headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, AppError> {
    match headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        Some(t) => Ok(Some(t.to_owned())),
        None => Form::field_from_body(headers, body, CSRF_FIELD),
    }
}

/// Middleware: ensures every client has a CSRF secret, and checks unsafe requests (source,
/// then token). The body of an unsafe request must arrive within the policy's `body_timeout`
/// (else 408), so a client trickling a form cannot hold its connection.
pub async fn csrf_middleware(policy: Arc<CsrfPolicy>, req: Request, next: Next) -> Response {
    let existing = CsrfToken::from_cookie(req.headers());
    let fresh = existing.is_none();
    let token = existing.unwrap_or_else(CsrfToken::generate);

    let mut req = req;
    if !is_safe(req.method()) {
        let https = policy.is_https(&client_of(req.extensions()));
        if let Err(reason) = policy.check_source(req.headers(), https) {
            return reject(reason);
        }
        let (parts, body) = req.into_parts();
        let bytes = match tokio::time::timeout(policy.body_timeout, to_bytes(body, MAX_FORM_BYTES)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => return AppError::PayloadTooLarge.into_response(),
            Err(_) => return AppError::RequestTimeout.into_response(),
        };
        if fresh {
            return reject("CSRF cookie not set.");
        }
        let submitted = match submitted_token(&parts.headers, &bytes) {
            Ok(submitted) => submitted,
            Err(e) => return e.into_response(),
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
        response.headers_mut().append(header::SET_COOKIE, token.cookie(policy.cookies));
    }
    response
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

    fn policy(allowed: &[&str]) -> CsrfPolicy {
        CsrfPolicy {
            cookies: CookieOptions::default(),
            body_timeout: Duration::from_secs(10),
            allowed_origins: allowed.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_be_ours_scheme_included() {
        let p = policy(&["https://roster.example"]);
        let host = ("host", "127.0.0.1:8000");
        assert!(p.check_source(&headers(&[host]), false).is_ok(), "plain HTTP without Origin: the token decides");
        assert!(p.check_source(&headers(&[host, ("origin", "http://127.0.0.1:8000")]), false).is_ok());
        assert!(p.check_source(&headers(&[host, ("origin", "https://127.0.0.1:8000")]), false).is_err());
        assert!(p.check_source(&headers(&[host, ("origin", "http://127.0.0.1:8000")]), true).is_err());
        assert!(p.check_source(&headers(&[host, ("origin", "https://127.0.0.1:8000")]), true).is_ok());
        assert!(p.check_source(&headers(&[host, ("origin", "http://evil.example")]), false).is_err());
        assert!(p.check_source(&headers(&[host, ("origin", "null")]), false).is_err());
        assert!(p.check_source(&headers(&[host, ("origin", "https://roster.example")]), true).is_ok(), "allowed");
        assert!(p.check_source(&headers(&[("origin", "http://127.0.0.1:8000")]), false).is_err(), "no Host");
    }

    #[test]
    fn https_without_origin_needs_a_secure_referer_of_ours() {
        let p = policy(&["https://roster.example"]);
        let host = ("host", "127.0.0.1:8000");
        assert_eq!(p.check_source(&headers(&[host]), true), Err("Referer checking failed - no Referer."));
        assert!(p.check_source(&headers(&[host, ("referer", "https://127.0.0.1:8000/log_in/?next=/")]), true).is_ok());
        assert!(p.check_source(&headers(&[host, ("referer", "https://roster.example/x")]), true).is_ok());
        assert!(p.check_source(&headers(&[host, ("referer", "http://127.0.0.1:8000/log_in/")]), true).is_err());
        assert!(p.check_source(&headers(&[host, ("referer", "https://evil.example/")]), true).is_err());
        assert!(p.check_source(&headers(&[host, ("referer", "not a url")]), true).is_err());
        assert!(p.check_source(&headers(&[host, ("referer", "https://127.0.0.1:8000.evil/")]), true).is_err());
    }
}
