//! Server-side sessions: the `sessionid` cookie holds 32 random bytes (base64url); the store
//! keeps only their SHA-256, so a leaked database holds no usable session.
//!
//! Authentication lives here, in extractors, never in handler bodies: `MaybeUser` for pages
//! anyone may see, `RequireUser` for pages that need a log in (anonymous: 302 to
//! `/log_in/?next=...`). Inactive users are treated as logged out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::cookies::{clear_cookie, cookie_value, set_cookie, CookieOptions};
use super::error::AppError;
use super::AppState;
use crate::store::User;

pub const SESSION_COOKIE: &str = "sessionid";
const SESSION_ID_LEN: usize = 43; // 32 bytes, base64url without padding

/// A new random session id and the hash the store keeps of it.
pub fn new_session_id() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_session_id(&id);
    (id, hash)
}

/// The value the store keeps for a session id (hex SHA-256).
pub fn hash_session_id(id: &str) -> String {
    Sha256::digest(id.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

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

/// How long a looked-up session is trusted without asking the store again.
pub const SESSION_CACHE_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most; a full cache drops its expired entries, then everything.
const SESSION_CACHE_MAX: usize = 100_000;

/// Sessions of active users looked up in the last [`SESSION_CACHE_TTL`], so a page and the
/// socket it opens, or a burst of requests, cost one store query. Only valid sessions of
/// active users are kept, each with its `expires_at`: an entry is never used at or past the
/// session's expiry, however recently it was looked up. Log out and log in on this node remove
/// the entry at once, and the account reconciler removes the entries of deleted or deactivated
/// users and of sessions ended elsewhere before closing their sockets. A session ended on
/// another node is forgotten here as soon as the cluster says so (the hub's observer); a lookup
/// in flight meanwhile is not cached (see [`SessionCache::epoch`]). A session ended by another
/// process without a cluster (`roster user set-password` on a single node) stops working here
/// within the TTL.
#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<String, Cached>>,
    /// Bumped by every `forget`: see [`SessionCache::epoch`].
    epoch: AtomicU64,
}

struct Cached {
    /// When it was looked up.
    at: Instant,
    user: User,
    /// The session's expiry, Unix milliseconds.
    expires_at: i64,
}

impl SessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached user of session `hash`, if looked up less than the TTL before `now` and the
    /// session has not expired at `now_ms`.
    pub fn get(&self, hash: &str, now: Instant, now_ms: i64) -> Option<(User, i64)> {
        let map = self.lock();
        let c = map.get(hash)?;
        (now.saturating_duration_since(c.at) < SESSION_CACHE_TTL && now_ms < c.expires_at)
            .then(|| (c.user.clone(), c.expires_at))
    }

    /// The cache's generation: read it before looking a session up in the store, and give it to
    /// [`Self::put`]. A session ended (on any node) while the lookup was in flight bumps it, so
    /// the lookup's now stale answer is not cached.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches a looked-up session, unless something was forgotten since `epoch` was read.
    pub fn put(&self, hash: String, user: User, expires_at: i64, now: Instant, epoch: u64) {
        let mut map = self.lock();
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if map.len() >= SESSION_CACHE_MAX {
            map.retain(|_, c| now.saturating_duration_since(c.at) < SESSION_CACHE_TTL);
            if map.len() >= SESSION_CACHE_MAX {
                map.clear();
            }
        }
        map.insert(hash, Cached { at: now, user, expires_at });
    }

    pub fn forget(&self, hash: &str) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.remove(hash);
    }

    pub fn forget_user(&self, user_id: i64) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.retain(|_, c| c.user.id != user_id);
    }
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

    fn user(id: i64) -> User {
        User {
            id,
            username: format!("u{id}"),
            username_key: format!("u{id}"),
            password_hash: String::new(),
            is_active: true,
            is_staff: false,
            date_joined: 0,
            last_login: None,
            last_seen: None,
        }
    }

    #[test]
    fn session_cache_expires_and_forgets() {
        let cache = SessionCache::default();
        let t0 = Instant::now();
        let far = i64::MAX;
        cache.put("a".into(), user(1), far, t0, cache.epoch());
        cache.put("b".into(), user(1), far, t0, cache.epoch());
        cache.put("c".into(), user(2), far, t0, cache.epoch());
        assert_eq!(cache.get("a", t0, 0).map(|(u, _)| u.id), Some(1));
        assert!(cache.get("a", t0 + SESSION_CACHE_TTL, 0).is_none(), "expired after the TTL");
        cache.forget("a");
        assert!(cache.get("a", t0, 0).is_none());
        cache.forget_user(1);
        assert!(cache.get("b", t0, 0).is_none(), "every session of a forgotten user");
        assert_eq!(cache.get("c", t0, 0).map(|(u, _)| u.id), Some(2), "other users stay");
    }

    #[test]
    fn a_lookup_in_flight_when_a_session_ends_is_not_cached() {
        let cache = SessionCache::default();
        let t0 = Instant::now();
        let before = cache.epoch();
        cache.forget("a"); // the session ended on another node while the lookup ran
        cache.put("a".into(), user(1), i64::MAX, t0, before);
        assert!(cache.get("a", t0, 0).is_none(), "the stale answer is not cached");
        cache.put("a".into(), user(1), i64::MAX, t0, cache.epoch());
        assert!(cache.get("a", t0, 0).is_some());
    }

    #[test]
    fn session_cache_never_outlives_the_session() {
        let cache = SessionCache::default();
        let t0 = Instant::now();
        cache.put("a".into(), user(1), 5_000, t0, cache.epoch());
        assert_eq!(cache.get("a", t0, 4_999).map(|(u, _)| u.id), Some(1));
        assert!(cache.get("a", t0, 5_000).is_none(), "not at expires_at, however fresh the entry");
    }

    #[test]
    fn session_ids_are_random_and_hashed() {
        let (a, ha) = new_session_id();
        let (b, _) = new_session_id();
        assert_eq!(a.len(), SESSION_ID_LEN);
        assert_ne!(a, b);
        assert_eq!(ha, hash_session_id(&a));
        assert_eq!(ha.len(), 64);
    }
}
