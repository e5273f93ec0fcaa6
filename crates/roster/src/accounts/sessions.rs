//! Sessions as accounts know them: random ids whose SHA-256 is all the store keeps, and the
//! short-lived cache of looked-up sessions that every node keeps and forgets at once when a
//! session or an account ends (see [`SessionCache::epoch`] for the race it closes). No HTTP:
//! the cookie and the extractors are in `web::session`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::User;

/// The length of a session id: 32 bytes, base64url without padding.
pub(crate) const SESSION_ID_LEN: usize = 43;

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
///
/// Entries older than the TTL are useless, so they are dropped: whenever the map has doubled
/// since the last sweep (amortised O(1) per `put`) and on [`SessionCache::purge`] (the account
/// reconciler calls it every 2 s). Otherwise 15,000 people connecting once would each leave an
/// entry (with its user row) behind for good.
#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<Entries>,
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

#[derive(Default)]
struct Entries {
    map: HashMap<String, Cached>,
    /// Sweep when the map reaches this size.
    sweep_at: usize,
}

/// The smallest map size that triggers a sweep from `put`.
const SESSION_CACHE_SWEEP_MIN: usize = 1024;

impl Entries {
    /// Drops the entries older than the TTL; gives memory back once the map is mostly empty.
    fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, c| now.saturating_duration_since(c.at) < SESSION_CACHE_TTL);
        if self.map.len() * 4 < self.map.capacity() {
            self.map.shrink_to_fit();
        }
        self.sweep_at = (self.map.len() * 2).max(SESSION_CACHE_SWEEP_MIN);
    }
}

impl SessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the expired entries.
    pub fn purge(&self, now: Instant) {
        self.lock().sweep(now);
    }

    /// The cached user of session `hash`, if looked up less than the TTL before `now` and the
    /// session has not expired at `now_ms`.
    pub fn get(&self, hash: &str, now: Instant, now_ms: i64) -> Option<(User, i64)> {
        let entries = self.lock();
        let c = entries.map.get(hash)?;
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
        let mut entries = self.lock();
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if entries.map.len() >= entries.sweep_at.max(SESSION_CACHE_SWEEP_MIN) {
            entries.sweep(now);
            if entries.map.len() >= SESSION_CACHE_MAX {
                entries.map.clear();
            }
        }
        entries.map.insert(hash, Cached { at: now, user, expires_at });
    }

    pub fn forget(&self, hash: &str) {
        let mut entries = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.map.remove(hash);
    }

    pub fn forget_user(&self, user_id: i64) {
        let mut entries = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.map.retain(|_, c| c.user.id != user_id);
    }

    /// Entries held (expired ones included, until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn session_cache_drops_what_has_expired() {
        let cache = SessionCache::default();
        let t0 = Instant::now();
        for i in 0..5_000 {
            cache.put(format!("s{i}"), user(i), i64::MAX, t0, cache.epoch());
        }
        // A second later, the next puts sweep the old ones out as the map grows.
        let t1 = t0 + SESSION_CACHE_TTL;
        for i in 0..5_000 {
            cache.put(format!("t{i}"), user(i), i64::MAX, t1, cache.epoch());
        }
        assert!(cache.len() < 8_000, "old entries were swept: {}", cache.len());
        assert_eq!(cache.get("t1", t1, 0).map(|(u, _)| u.id), Some(1), "fresh ones stay");
        cache.purge(t1 + SESSION_CACHE_TTL);
        assert!(cache.is_empty());
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
