//! Server-side sessions: the `sessionid` cookie holds 32 random bytes (base64url); the store
//! keeps only their SHA-256, so a leaked database holds no usable session.
//!
//! Authentication lives here, in extractors, never in handler bodies: `MaybeUser` for pages
//! anyone may see, `RequireUser` for pages that need a log in (anonymous: 302 to
//! `/log_in/?next=...`), `StaffUser` for the admin pages (the same redirect; a logged-in person
//! who is not staff: 403). Inactive users are treated as logged out.

use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use super::cookies::{clear_cookie, cookie_value, set_cookie, CookieOptions};
use super::error::AppError;
use super::AppState;
use crate::store::User;

use crate::accounts::sessions::SESSION_ID_LEN;
pub use crate::accounts::sessions::{hash_session_id, new_session_id, SessionCache, SESSION_CACHE_TTL};

pub const SESSION_COOKIE: &str = "sessionid";

pub fn session_cookie(id: &str, max_age_secs: u64, opts: CookieOptions) -> HeaderValue {
    set_cookie(SESSION_COOKIE, id, Some(max_age_secs), true, opts)
}

pub fn clear_session_cookie(opts: CookieOptions) -> HeaderValue {
    clear_cookie(SESSION_COOKIE, opts)
}

/// The hash of the request's well-formed session cookie, if any.
pub fn session_hash(parts: &Parts) -> Option<String> {
    cookie_value(&parts.headers, SESSION_COOKIE)
        .filter(|v| v.len() == SESSION_ID_LEN && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map(hash_session_id)
}

/// A logged-in, active user and the session they came with.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user: User,
    pub session_hash: String,
    /// When the session ends (unix ms).
    pub expires_at: i64,
}

/// The current user, if the request carries a valid session of an active user.
pub struct MaybeUser(pub Option<AuthUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(cached) = parts.extensions.get::<Option<AuthUser>>() {
            return Ok(MaybeUser(cached.clone()));
        }
        let user = match session_hash(parts) {
            None => None,
            Some(hash) => {
                let (now, now_ms) = (Instant::now(), crate::now_ms());
                match state.sessions.get(&hash, now, now_ms) {
                    Some((user, expires_at)) => Some(AuthUser { user, session_hash: hash, expires_at }),
                    None => {
                        let epoch = state.sessions.epoch();
                        let found = state.store.session_user_until(&hash, now_ms).await?;
                        found.filter(|(u, _)| u.is_active).map(|(user, expires_at)| {
                            state.sessions.put(hash.clone(), user.clone(), expires_at, now, epoch);
                            AuthUser { user, session_hash: hash, expires_at }
                        })
                    }
                }
            }
        };
        parts.extensions.insert(user.clone());
        Ok(MaybeUser(user))
    }
}

/// A page that needs a log in.
pub struct RequireUser(pub AuthUser);

impl FromRequestParts<AppState> for RequireUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match MaybeUser::from_request_parts(parts, state).await {
            Ok(MaybeUser(Some(user))) => Ok(RequireUser(user)),
            Ok(MaybeUser(None)) => {
                let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                Err(super::found(&format!("/log_in/?next={}", encode_next(target))))
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

/// A page for staff only: anonymous gets the log-in redirect, a logged-in non-staff person 403
/// ("You don't have permission to view this page."). Staff is read from the session's user as
/// the session cache holds it; granting or revoking staff forgets that user's cached sessions,
/// so the change holds from the next request.
pub struct StaffUser(pub AuthUser);

impl FromRequestParts<AppState> for StaffUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let RequireUser(user) = RequireUser::from_request_parts(parts, state).await?;
        if user.user.is_staff {
            Ok(StaffUser(user))
        } else {
            Err(AppError::PermissionDenied.into_response())
        }
    }
}

/// Percent-encodes a local path for `?next=`, keeping `/` readable as Django does.
pub fn encode_next(target: &str) -> String {
    let mut out = String::with_capacity(target.len());
    for b in target.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `next` if it is a local path on this site, else `/`. Refuses `//host`, `/\host`,
/// schemes, and control characters (Django's `url_has_allowed_host_and_scheme`, no hosts).
pub fn safe_next(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        next
    } else {
        "/"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_be_local() {
        assert_eq!(safe_next("/"), "/");
        assert_eq!(safe_next("/?page=2&q=a"), "/?page=2&q=a");
        for bad in [
            "",
            "http://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "javascript:alert(1)",
            "/\t/evil",
            " /x",
            "evil",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?} must be refused");
        }
    }

    #[test]
    fn next_is_encoded() {
        assert_eq!(encode_next("/"), "/");
        assert_eq!(encode_next("/?page=2&q=a b"), "/%3Fpage%3D2%26q%3Da%20b");
    }
}
