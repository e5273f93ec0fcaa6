//! The presence state machine: per-user socket counts, the grace period, and the transitions
//! `Online` / `Offline` they produce.
//!
//! Pure: no I/O, no tokio, no clock of its own. Every input carries `now`, so the same inputs give
//! the same outputs (the property tests in this file rely on it). Must not depend on the hub, the
//! protocol or the layer.
//!
//! Rules:
//! - a user is online while at least one socket is open, and for `grace` after the last one closes;
//! - a socket closed by log out ([`PresenceState::close_logout`]) skips the grace: if it was the
//!   user's last socket, `Offline` is emitted at once;
//! - exactly one transition per real change: a reload (close then open within the grace) emits
//!   nothing, closing one of two sockets emits nothing, and a user never gets two `Online` (or two
//!   `Offline`) in a row;
//! - every operation first fires the deadlines that are due at `now`, so a late caller still sees
//!   `Offline` then `Online` in the right order.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::UserId;

/// A change of a user's presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Online(UserId),
    /// The user went offline; the `Instant` is when they were last seen (their last socket's close,
    /// or the log out).
    Offline(UserId, Instant),
}

impl Transition {
    pub fn user(&self) -> UserId {
        match *self {
            Transition::Online(u) | Transition::Offline(u, _) => u,
        }
    }
}

#[derive(Debug)]
struct Entry {
    sockets: u32,
    /// When the grace ends, while `sockets == 0`. `None` with `sockets == 0` means a grace too
    /// long to represent (the user stays online until a log out).
    deadline: Option<Instant>,
    /// Last time a socket of this user closed.
    last_close: Instant,
}

/// Presence of every user known to one node. Users absent from the map are offline, so the cost is
/// O(users online), never O(accounts).
#[derive(Debug)]
pub struct PresenceState {
    grace: Duration,
    users: HashMap<UserId, Entry>,
    /// Pending grace deadlines, earliest first.
    deadlines: BTreeSet<(Instant, UserId)>,
}

impl PresenceState {
    pub fn new(grace: Duration) -> Self {
        Self { grace, users: HashMap::new(), deadlines: BTreeSet::new() }
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// A socket of `user` opened.
    pub fn open(&mut self, user: UserId, now: Instant, out: &mut Vec<Transition>) {
        self.advance(now, out);
        match self.users.get_mut(&user) {
            Some(e) => {
                if e.sockets == 0 {
                    if let Some(d) = e.deadline.take() {
                        self.deadlines.remove(&(d, user));
                    }
                }
                e.sockets = e.sockets.saturating_add(1);
            }
            None => {
                self.users.insert(user, Entry { sockets: 1, deadline: None, last_close: now });
                out.push(Transition::Online(user));
            }
        }
    }

    /// Fires due deadlines, then removes one socket of `user`: `None` if the user had no open
    /// socket, else whether it was their last.
    fn take_socket(&mut self, user: UserId, now: Instant, out: &mut Vec<Transition>) -> Option<bool> {
        self.advance(now, out);
        let e = self.users.get_mut(&user)?;
        if e.sockets == 0 {
            return None;
        }
        e.sockets -= 1;
        Some(e.sockets == 0)
    }

    /// A socket of `user` closed (tab closed, network lost, reload). If it was the last one, the
    /// grace starts. Returns false (and does nothing) if the user had no open socket.
    pub fn close(&mut self, user: UserId, now: Instant, out: &mut Vec<Transition>) -> bool {
        let Some(last) = self.take_socket(user, now, out) else {
            return false;
        };
        if last {
            let Some(e) = self.users.get_mut(&user) else {
                return true;
            };
            e.last_close = now;
            if self.grace.is_zero() {
                self.users.remove(&user);
                out.push(Transition::Offline(user, now));
            } else {
                e.deadline = now.checked_add(self.grace);
                if let Some(d) = e.deadline {
                    self.deadlines.insert((d, user));
                }
            }
        }
        true
    }

    /// A socket of `user` was closed by a log out: no grace. Returns false if the user had no
    /// open socket.
    pub fn close_logout(&mut self, user: UserId, now: Instant, out: &mut Vec<Transition>) -> bool {
        let Some(last) = self.take_socket(user, now, out) else {
            return false;
        };
        if last {
            self.users.remove(&user);
            out.push(Transition::Offline(user, now));
        }
        true
    }

    /// Ends the grace of `user` now (log out of a session whose sockets already closed). Does
    /// nothing if the user has open sockets or is offline. The `Offline` carries the last close.
    pub fn end_grace(&mut self, user: UserId, now: Instant, out: &mut Vec<Transition>) {
        self.advance(now, out);
        if let Some(e) = self.users.get(&user) {
            if e.sockets == 0 {
                if let Some(d) = e.deadline {
                    self.deadlines.remove(&(d, user));
                }
                let at = e.last_close;
                self.users.remove(&user);
                out.push(Transition::Offline(user, at));
            }
        }
    }

    /// Time passes: every grace that ends at or before `now` emits `Offline`, earliest first.
    pub fn advance(&mut self, now: Instant, out: &mut Vec<Transition>) {
        while let Some(&(d, user)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(e) = self.users.remove(&user) {
                out.push(Transition::Offline(user, e.last_close));
            }
        }
    }

    /// The earliest pending grace deadline: a driver sleeps until then and calls [`Self::advance`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    /// Online (socket open or within the grace), as of the last operation.
    pub fn is_online(&self, user: UserId) -> bool {
        self.users.contains_key(&user)
    }

    /// Open sockets of `user`.
    pub fn sockets(&self, user: UserId) -> u32 {
        self.users.get(&user).map_or(0, |e| e.sockets)
    }

    /// True if the user has no open socket but is still online thanks to the grace.
    pub fn in_grace(&self, user: UserId) -> bool {
        self.users.get(&user).is_some_and(|e| e.sockets == 0)
    }

    pub fn online_count(&self) -> usize {
        self.users.len()
    }

    pub fn online_ids(&self) -> impl Iterator<Item = UserId> + '_ {
        self.users.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Transition::*;

    const G: Duration = Duration::from_secs(5);

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn first_socket_goes_online_once() {
        let (mut s, now, mut out) = (PresenceState::new(G), t0(), vec![]);
        s.open(1, now, &mut out);
        s.open(1, now, &mut out);
        assert_eq!(out, vec![Online(1)]);
        assert_eq!(s.sockets(1), 2);
    }

    #[test]
    fn closing_one_of_two_sockets_emits_nothing() {
        let (mut s, now, mut out) = (PresenceState::new(G), t0(), vec![]);
        s.open(1, now, &mut out);
        s.open(1, now, &mut out);
        out.clear();
        assert!(s.close(1, now, &mut out));
        s.advance(now + G * 10, &mut out);
        assert!(out.is_empty());
        assert!(s.is_online(1));
    }

    #[test]
    fn reload_within_grace_emits_nothing() {
        let (mut s, now, mut out) = (PresenceState::new(G), t0(), vec![]);
        s.open(1, now, &mut out);
        out.clear();
        s.close(1, now, &mut out);
        assert_eq!(s.next_deadline(), Some(now + G));
        s.open(1, now + Duration::from_secs(4), &mut out);
        assert_eq!(s.next_deadline(), None);
        s.advance(now + G * 3, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn grace_expiry_emits_offline_at_last_close() {
        let (mut s, now, mut out) = (PresenceState::new(G), t0(), vec![]);
        s.open(1, now, &mut out);
        let closed = now + Duration::from_secs(1);
        s.close(1, closed, &mut out);
        s.advance(closed + G - Duration::from_millis(1), &mut out);
        assert_eq!(out, vec![Online(1)]);
        s.advance(closed + G, &mut out);
        assert_eq!(out, vec![Online(1), Offline(1, closed)]);
        assert!(!s.is_online(1));
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn late_open_fires_the_due_offline_first() {
        let (mut s, now, mut out) = (PresenceState::new(G), t0(), vec![]);
        s.open(1, now, &mut out);
        s.close(1, now, &mut out);
        s.open(1, now + G * 2, &mut out);
        assert_eq!(out, vec![Online(1), Offline(1, now), Online(1)]);
    }

    #[test]
    fn logout_of_last_socket_is_immediate() {
        let (mut s, now, mut out) = (PresenceState::new(G), t0(), vec![]);
        s.open(1, now, &mut out);
        s.open(1, now, &mut out);
        assert!(s.close_logout(1, now, &mut out));
        assert_eq!(out, vec![Online(1)]);
        let later = now + Duration::from_millis(10);
        assert!(s.close_logout(1, later, &mut out));
        assert_eq!(out, vec![Online(1), Offline(1, later)]);
        assert!(!s.close_logout(1, later, &mut out));
    }

    #[test]
    fn end_grace_goes_offline_now() {
        let (mut s, now, mut out) = (PresenceState::new(G), t0(), vec![]);
        s.open(1, now, &mut out);
        s.close(1, now, &mut out);
        s.end_grace(1, now + Duration::from_secs(1), &mut out);
        assert_eq!(out, vec![Online(1), Offline(1, now)]);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn zero_grace_is_immediate() {
        let (mut s, now, mut out) = (PresenceState::new(Duration::ZERO), t0(), vec![]);
        s.open(1, now, &mut out);
        s.close(1, now, &mut out);
        assert_eq!(out, vec![Online(1), Offline(1, now)]);
    }

    #[test]
    fn close_of_unknown_user_is_ignored() {
        let (mut s, now, mut out) = (PresenceState::new(G), t0(), vec![]);
        assert!(!s.close(7, now, &mut out));
        assert!(!s.close_logout(7, now, &mut out));
        s.end_grace(7, now, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn deadlines_fire_in_order() {
        let (mut s, now, mut out) = (PresenceState::new(G), t0(), vec![]);
        for u in [3, 1, 2] {
            s.open(u, now, &mut out);
        }
        out.clear();
        s.close(2, now, &mut out);
        s.close(3, now + Duration::from_secs(1), &mut out);
        s.close(1, now + Duration::from_secs(2), &mut out);
        s.advance(now + G * 2, &mut out);
        let order: Vec<_> = out.iter().map(Transition::user).collect();
        assert_eq!(order, vec![2, 3, 1]);
    }

    // ---- property test: the state machine against an independent model -----------------------

    #[derive(Clone, Debug)]
    enum Op {
        Open { user: UserId, session: u8 },
        Close { user: UserId, pick: usize },
        Reload { user: UserId, pick: usize },
        Logout { user: UserId, session: u8 },
        Wait { ms: u64 },
    }

    fn op(grace_ms: u64) -> impl Strategy<Value = Op> {
        let user = 0..4i64;
        prop_oneof![
            3 => (user.clone(), 0..3u8).prop_map(|(user, session)| Op::Open { user, session }),
            3 => (user.clone(), any::<usize>()).prop_map(|(user, pick)| Op::Close { user, pick }),
            2 => (user.clone(), any::<usize>()).prop_map(|(user, pick)| Op::Reload { user, pick }),
            1 => (user, 0..3u8).prop_map(|(user, session)| Op::Logout { user, session }),
            3 => prop_oneof![
                Just(grace_ms),
                Just(grace_ms.saturating_sub(1)),
                Just(grace_ms + 1),
                0..=grace_ms * 2 + 2,
            ]
            .prop_map(|ms| Op::Wait { ms }),
        ]
    }

    /// The truth, kept the naive way: the list of open sockets and when the grace ends.
    #[derive(Default, Clone)]
    struct ModelUser {
        sockets: Vec<u8>,
        grace_until: Option<Instant>,
        last_close: Option<Instant>,
    }

    impl ModelUser {
        fn online(&self, now: Instant) -> bool {
            !self.sockets.is_empty() || self.grace_until.is_some_and(|g| now < g)
        }
    }

    struct Model {
        grace: Duration,
        users: HashMap<UserId, ModelUser>,
    }

    impl Model {
        fn open(&mut self, u: UserId, session: u8) {
            let m = self.users.entry(u).or_default();
            m.sockets.push(session);
            m.grace_until = None;
        }
        fn close(&mut self, u: UserId, pick: usize, now: Instant) -> bool {
            let m = self.users.entry(u).or_default();
            if m.sockets.is_empty() {
                return false;
            }
            let i = pick % m.sockets.len();
            m.sockets.swap_remove(i);
            if m.sockets.is_empty() {
                m.grace_until = Some(now + self.grace);
                m.last_close = Some(now);
            }
            true
        }
    }

    /// Checks the transitions of one primitive step against the model's truth before and after.
    fn check_step(
        model: &Model,
        before: &HashMap<UserId, bool>,
        now: Instant,
        out: &[Transition],
        expected_at: &HashMap<UserId, Instant>,
        s: &PresenceState,
    ) -> Result<(), TestCaseError> {
        for u in 0..4 {
            let was = before.get(&u).copied().unwrap_or(false);
            let is = model.users.get(&u).is_some_and(|m| m.online(now));
            let mine: Vec<_> = out.iter().filter(|t| t.user() == u).collect();
            prop_assert_eq!(s.is_online(u), is, "user {} online in state", u);
            if was == is {
                prop_assert!(mine.is_empty(), "user {} no change but got {:?}", u, mine);
            } else {
                prop_assert_eq!(mine.len(), 1, "user {} changed, got {:?}", u, mine);
                match *mine[0] {
                    Transition::Online(_) => prop_assert!(is),
                    Transition::Offline(_, at) => {
                        prop_assert!(!is);
                        prop_assert_eq!(Some(&at), expected_at.get(&u));
                    }
                }
            }
        }
        Ok(())
    }

    fn truth(model: &Model, now: Instant) -> HashMap<UserId, bool> {
        (0..4).map(|u| (u, model.users.get(&u).is_some_and(|m| m.online(now)))).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn transitions_match_the_truth(
            grace_ms in prop_oneof![Just(0u64), Just(1000u64), Just(5000u64)],
            ops in prop::collection::vec(op(1000), 1..120),
        ) {
            // `op` is generated around a 1 s grace; rescale waits to the grace under test.
            let grace = Duration::from_millis(grace_ms);
            let mut s = PresenceState::new(grace);
            let mut model = Model { grace, users: HashMap::new() };
            let mut now = Instant::now();
            let mut history: Vec<Transition> = vec![];
            let mut out = vec![];

            for op in ops {
                match op {
                    Op::Open { user, session } => {
                        let before = truth(&model, now);
                        out.clear();
                        s.open(user, now, &mut out);
                        model.open(user, session);
                        check_step(&model, &before, now, &out, &HashMap::new(), &s)?;
                        history.extend(&out);
                    }
                    Op::Close { user, pick } => {
                        let before = truth(&model, now);
                        out.clear();
                        let did = s.close(user, now, &mut out);
                        prop_assert_eq!(did, model.close(user, pick, now));
                        let at = HashMap::from([(user, now)]);
                        check_step(&model, &before, now, &out, &at, &s)?;
                        history.extend(&out);
                    }
                    Op::Reload { user, pick } => {
                        out.clear();
                        let before = truth(&model, now);
                        let had = s.close(user, now, &mut out);
                        prop_assert_eq!(had, model.close(user, pick, now));
                        if had {
                            s.open(user, now, &mut out);
                            model.open(user, 0);
                        }
                        if grace_ms > 0 {
                            prop_assert!(out.is_empty(), "reload within grace emitted {:?}", out);
                            check_step(&model, &before, now, &out, &HashMap::new(), &s)?;
                        } else if had && model.users[&user].sockets.len() == 1 {
                            prop_assert_eq!(&out, &vec![Offline(user, now), Online(user)]);
                        }
                        history.extend(&out);
                    }
                    Op::Logout { user, session } => {
                        let before = truth(&model, now);
                        out.clear();
                        let m = model.users.entry(user).or_default();
                        let n = m.sockets.iter().filter(|&&x| x == session).count();
                        m.sockets.retain(|&x| x != session);
                        let mut expected_at = HashMap::new();
                        if n > 0 {
                            for _ in 0..n {
                                prop_assert!(s.close_logout(user, now, &mut out));
                            }
                            if m.sockets.is_empty() {
                                m.grace_until = None;
                                expected_at.insert(user, now);
                            }
                        } else if m.sockets.is_empty() && m.grace_until.is_some_and(|g| now < g) {
                            // Log out of a session whose sockets already closed: grace ends now.
                            s.end_grace(user, now, &mut out);
                            m.grace_until = None;
                            if let Some(lc) = m.last_close {
                                expected_at.insert(user, lc);
                            }
                        }
                        check_step(&model, &before, now, &out, &expected_at, &s)?;
                        history.extend(&out);
                    }
                    Op::Wait { ms } => {
                        let before = truth(&model, now);
                        let ms = if grace_ms == 0 { ms } else { ms * grace_ms / 1000 };
                        now += Duration::from_millis(ms);
                        out.clear();
                        s.advance(now, &mut out);
                        let expected_at = model
                            .users
                            .iter()
                            .filter_map(|(&u, m)| m.last_close.map(|lc| (u, lc)))
                            .collect();
                        check_step(&model, &before, now, &out, &expected_at, &s)?;
                        history.extend(&out);
                    }
                }
                // next_deadline is the earliest running grace.
                let expected_deadline = model
                    .users
                    .values()
                    .filter(|m| m.sockets.is_empty())
                    .filter_map(|m| m.grace_until.filter(|&g| now < g))
                    .min();
                prop_assert_eq!(s.next_deadline(), expected_deadline);
                prop_assert_eq!(s.online_count(), truth(&model, now).values().filter(|&&b| b).count());
            }

            // Globally: per user, transitions alternate, starting with Online.
            for u in 0..4 {
                let mine: Vec<_> = history.iter().filter(|t| t.user() == u).collect();
                for (i, t) in mine.iter().enumerate() {
                    prop_assert_eq!(matches!(t, Online(_)), i % 2 == 0, "user {} history {:?}", u, mine);
                }
            }
        }
    }
}
