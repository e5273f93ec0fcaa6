//! The registry of this node's sockets: who holds which socket, in which session, until when.
//! It turns socket opens and closes into node-level [`Change`]s (a user's first socket here is
//! `Up`, their last one `Down`) and closes sockets on request (log out, account closed, session
//! expired, shutdown) by setting the socket's close code and waking its connection.
//!
//! Synchronous and lock-free itself: the hub keeps it under its core mutex. Knows nothing of the
//! cluster, batches or the wire.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::types::{ConnectError, Session};
use crate::event::{Change, SessionKey};
use crate::{UserId, UserRef};

/// Per-socket state shared between the registry and the socket's `Connection`.
#[derive(Debug, Default)]
pub(super) struct SocketShared {
    /// Close code requested by the hub; 0 = none.
    pub(super) close: AtomicU16,
    /// Wakes the connection when `close` is set.
    pub(super) notify: Notify,
}

impl SocketShared {
    pub(super) fn request_close(&self, code: u16) {
        let _ = self.close.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.notify.notify_one();
    }
}

#[derive(Debug)]
struct LocalSocket {
    id: u64,
    session: SessionKey,
    shared: Arc<SocketShared>,
}

#[derive(Debug)]
struct SessionEntry {
    user: UserId,
    sockets: u32,
    expires_at: Option<i64>,
}

/// This node's sockets. O(sockets) memory; every operation O(1) or O(one user's sockets).
#[derive(Debug)]
pub(super) struct Registry {
    /// Each user's sockets here (at most `max_per_user`).
    users: HashMap<UserId, Vec<LocalSocket>>,
    sessions: HashMap<SessionKey, SessionEntry>,
    /// Sessions with sockets open and an expiry, earliest first.
    expiries: BTreeSet<(i64, SessionKey)>,
    sockets_open: usize,
    max_per_user: usize,
}

impl Registry {
    pub(super) fn new(max_per_user: usize) -> Registry {
        Registry {
            users: HashMap::new(),
            sessions: HashMap::new(),
            expiries: BTreeSet::new(),
            sockets_open: 0,
            max_per_user: max_per_user.max(1),
        }
    }

    /// Registers a socket. `Some(Up)` when it is the user's first socket here.
    pub(super) fn add(
        &mut self,
        user: UserRef,
        session: Session,
        id: u64,
        shared: Arc<SocketShared>,
        now_ms: i64,
    ) -> Result<Option<Change>, ConnectError> {
        if session.expires_at.is_some_and(|e| e <= now_ms) {
            return Err(ConnectError::SessionExpired);
        }
        let uid = user.id;
        let first = !self.users.contains_key(&uid);
        // Most users have one socket here: room for one (a Vec starts at four).
        let sockets = self.users.entry(uid).or_insert_with(|| Vec::with_capacity(1));
        if sockets.len() >= self.max_per_user {
            return Err(ConnectError::TooManySockets { limit: self.max_per_user });
        }
        sockets.push(LocalSocket { id, session: session.key.clone(), shared });
        self.sockets_open += 1;
        let entry = self.sessions.entry(session.key.clone()).or_insert_with(|| SessionEntry {
            user: uid,
            sockets: 0,
            expires_at: session.expires_at,
        });
        if entry.sockets == 0 {
            if let Some(e) = entry.expires_at {
                self.expiries.insert((e, session.key));
            }
        }
        entry.sockets += 1;
        Ok(first.then_some(Change::Up(user)))
    }

    /// A socket closed by its peer (or its loop ended). `Some(Down)` when it was the user's last
    /// here. Does nothing for a socket the hub already closed.
    pub(super) fn remove(&mut self, user: UserId, id: u64, at: i64) -> Option<Change> {
        let sockets = self.users.get_mut(&user)?;
        let pos = sockets.iter().position(|s| s.id == id)?;
        let socket = sockets.swap_remove(pos);
        self.after_removal(user, &[socket.session], at, false)
    }

    /// Bookkeeping after sockets of `user` were removed: sessions, counts, and the `Down` if the
    /// user has none left here.
    fn after_removal(&mut self, user: UserId, sessions: &[SessionKey], at: i64, logout: bool) -> Option<Change> {
        self.sockets_open -= sessions.len();
        for key in sessions {
            if let Some(entry) = self.sessions.get_mut(key) {
                entry.sockets -= 1;
                if entry.sockets == 0 {
                    if let Some(e) = entry.expires_at {
                        self.expiries.remove(&(e, key.clone()));
                    }
                    self.sessions.remove(key);
                }
            }
        }
        let empty = self.users.get(&user).is_some_and(Vec::is_empty);
        if empty {
            self.users.remove(&user);
            return Some(Change::Down { user, at, logout });
        }
        None
    }

    /// Closes the sockets of `user` that `pick` selects with `code`, without grace.
    fn close_where(&mut self, user: UserId, code: u16, at: i64, pick: impl Fn(&SessionKey) -> bool) -> Option<Change> {
        let sockets = self.users.get_mut(&user)?;
        let mut closed = Vec::new();
        sockets.retain(|s| {
            if pick(&s.session) {
                s.shared.request_close(code);
                closed.push(s.session.clone());
                false
            } else {
                true
            }
        });
        if closed.is_empty() {
            return None;
        }
        self.after_removal(user, &closed, at, true)
    }

    /// Closes every socket of `session` with `code`. Returns the session's user (if it had
    /// sockets here) and the user's `Down` if those were their last.
    pub(super) fn close_session(&mut self, key: &SessionKey, code: u16, at: i64) -> (Option<UserId>, Option<Change>) {
        let Some(user) = self.sessions.get(key).map(|e| e.user) else { return (None, None) };
        (Some(user), self.close_where(user, code, at, |s| s == key))
    }

    /// Closes every socket of `user` with `code`.
    pub(super) fn close_user(&mut self, user: UserId, code: u16, at: i64) -> Option<Change> {
        self.close_where(user, code, at, |_| true)
    }

    /// Closes the sessions that have expired at `now_ms` (with `code`), pushing the `Down`s.
    pub(super) fn expire(&mut self, now_ms: i64, code: u16, out: &mut Vec<Change>) {
        while let Some((at, key)) = self.expiries.first().cloned() {
            if at > now_ms {
                break;
            }
            self.expiries.pop_first();
            let (_, down) = self.close_session(&key, code, now_ms);
            out.extend(down);
        }
    }

    /// When the next session expires (unix ms).
    pub(super) fn next_expiry(&self) -> Option<i64> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Tells every socket to close with `code` (shutdown); the sockets stay registered until
    /// their loops end.
    pub(super) fn request_close_all(&self, code: u16) {
        for socket in self.users.values().flatten() {
            socket.shared.request_close(code);
        }
    }

    pub(super) fn has(&self, user: UserId) -> bool {
        self.users.contains_key(&user)
    }

    /// How many sockets `user` has open here. O(1).
    pub(super) fn sockets_of(&self, user: UserId) -> usize {
        self.users.get(&user).map_or(0, Vec::len)
    }

    pub(super) fn sockets_open(&self) -> usize {
        self.sockets_open
    }

    /// The sessions with sockets open here, with their user.
    pub(super) fn open_sessions(&self) -> Vec<(SessionKey, UserId)> {
        self.sessions.iter().map(|(k, e)| (k.clone(), e.user)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<SocketShared> {
        Arc::new(SocketShared::default())
    }

    fn session(key: &str, expires_at: Option<i64>) -> Session {
        Session { key: SessionKey::from(key), expires_at }
    }

    #[test]
    fn first_and_last_socket_make_up_and_down() {
        let mut r = Registry::new(4);
        let u = UserRef::new(1, "a");
        assert_eq!(r.add(u.clone(), session("s", None), 1, shared(), 0), Ok(Some(Change::Up(u.clone()))));
        assert_eq!(r.add(u.clone(), session("t", None), 2, shared(), 0), Ok(None));
        assert_eq!(r.remove(1, 1, 5), None);
        assert_eq!(r.remove(1, 1, 5), None, "twice is nothing");
        assert_eq!(r.remove(1, 2, 7), Some(Change::Down { user: 1, at: 7, logout: false }));
        assert_eq!(r.sockets_open(), 0);
        assert!(r.open_sessions().is_empty());
    }

    #[test]
    fn close_session_and_expiry() {
        let mut r = Registry::new(4);
        let u = UserRef::new(1, "a");
        let (a, b) = (shared(), shared());
        r.add(u.clone(), session("s", Some(100)), 1, a.clone(), 0).unwrap();
        r.add(u.clone(), session("t", Some(200)), 2, b.clone(), 0).unwrap();
        assert_eq!(r.next_expiry(), Some(100));
        let mut out = vec![];
        r.expire(150, 4001, &mut out);
        assert!(out.is_empty(), "the user still has a socket");
        assert_eq!(a.close.load(Ordering::Acquire), 4001);
        assert_eq!(r.next_expiry(), Some(200));
        assert_eq!(
            r.close_session(&SessionKey::from("t"), 4001, 160),
            (Some(1), Some(Change::Down { user: 1, at: 160, logout: true }))
        );
        assert_eq!(r.next_expiry(), None);
        assert_eq!(r.add(u, session("x", Some(10)), 3, shared(), 10), Err(ConnectError::SessionExpired));
        assert_eq!(r.sockets_open(), 0);
    }

    #[test]
    fn sockets_of_counts_one_users_sockets_here() {
        let mut r = Registry::new(4);
        let (a, b) = (UserRef::new(1, "a"), UserRef::new(2, "b"));
        assert_eq!(r.sockets_of(1), 0);
        r.add(a.clone(), session("s", None), 1, shared(), 0).unwrap();
        r.add(a.clone(), session("t", None), 2, shared(), 0).unwrap();
        r.add(b, session("u", None), 3, shared(), 0).unwrap();
        assert_eq!((r.sockets_of(1), r.sockets_of(2), r.sockets_of(3)), (2, 1, 0));
        r.remove(1, 1, 5);
        assert_eq!(r.sockets_of(1), 1);
        r.close_session(&SessionKey::from("t"), 4001, 6);
        assert_eq!(r.sockets_of(1), 0, "closed by the hub: gone at once");
        assert_eq!(r.sockets_of(2), 1);
    }

    #[test]
    fn cap_per_user() {
        let mut r = Registry::new(1);
        let u = UserRef::new(1, "a");
        r.add(u.clone(), session("s", None), 1, shared(), 0).unwrap();
        assert_eq!(r.add(u, session("s", None), 2, shared(), 0), Err(ConnectError::TooManySockets { limit: 1 }));
        assert_eq!(r.sockets_open(), 1);
    }
}
