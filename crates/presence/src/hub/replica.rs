//! This node's replica of the cluster: who is online anywhere, the registered count, and the
//! last cluster sequence number applied. It applies the layer's [`Delivery`]s and says what
//! follows from each: events for the next batch (exactly one per real transition, duplicates
//! dropped), last-seen times to save, and sessions or accounts whose sockets must close.
//!
//! Pure: no locks, no I/O, no tokio. Knows nothing of sockets or the wire.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};

use crate::event::{Delivery, Event, SessionKey};
use crate::{UserId, UserRef};

/// What applying deliveries asks of the hub.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// For the next batch, in order: Online, Offline, SignedUp, Deleted.
    pub(super) batch: Vec<Event>,
    /// `(user, last_seen)` to save.
    pub(super) went_offline: Vec<(UserId, i64)>,
    /// Sessions whose sockets close (4001).
    pub(super) close_sessions: Vec<SessionKey>,
    /// Accounts whose sockets close (1008): deactivated or deleted.
    pub(super) close_users: Vec<UserId>,
    /// Cluster resyncs applied.
    pub(super) resyncs: u64,
    /// A resync changed the registered count: the next flush goes out even with no event, so
    /// that watchers and the published snapshot carry the new count.
    pub(super) counts_changed: bool,
}

/// How many deleted ids the replica remembers, so a deletion heard twice (from the cluster and
/// from this node's own reconciler) counts once.
const REMEMBERED_DELETIONS: usize = 4096;

#[derive(Debug)]
pub(super) struct Replica {
    online: HashMap<UserId, UserRef>,
    seq: u64,
    registered: u64,
    deleted: HashSet<UserId>,
    deleted_order: VecDeque<UserId>,
}

impl Replica {
    pub(super) fn new(registered: u64) -> Replica {
        Replica { online: HashMap::new(), seq: 0, registered, deleted: HashSet::new(), deleted_order: VecDeque::new() }
    }

    pub(super) fn is_online(&self, user: UserId) -> bool {
        self.online.contains_key(&user)
    }

    pub(super) fn online_count(&self) -> usize {
        self.online.len()
    }

    pub(super) fn registered(&self) -> u64 {
        self.registered
    }

    pub(super) fn set_registered(&mut self, registered: u64) {
        self.registered = registered;
    }

    /// An account was deleted (heard from the cluster, or found by this node's reconciler): the
    /// count drops and the next batch lists it, once per id.
    pub(super) fn deleted(&mut self, id: UserId, batch: &mut Vec<Event>) {
        if !self.deleted.insert(id) {
            return;
        }
        self.deleted_order.push_back(id);
        if self.deleted_order.len() > REMEMBERED_DELETIONS {
            if let Some(old) = self.deleted_order.pop_front() {
                self.deleted.remove(&old);
            }
        }
        self.registered = self.registered.saturating_sub(1);
        batch.push(Event::Deleted(id));
    }

    /// Applies one delivery. `now_ms` stamps the Offline of users a resync finds gone.
    pub(super) fn apply(&mut self, delivery: Delivery, now_ms: i64, fx: &mut Effects) {
        match delivery {
            Delivery::Event(seq, event) => {
                if seq <= self.seq {
                    return; // already applied (a layer may deliver twice around a reconnect)
                }
                if seq != self.seq + 1 {
                    tracing::warn!(from = self.seq, to = seq, "cluster sequence gap without a resync");
                }
                self.seq = seq;
                self.event(event, fx);
            }
            Delivery::Resync(state) => {
                self.seq = state.seq;
                if let Some(r) = state.registered {
                    fx.counts_changed |= self.registered != r;
                    self.registered = r;
                }
                let mut truth: HashMap<UserId, UserRef> = state.online.into_iter().map(|u| (u.id, u)).collect();
                // Gone: Offline now (their real last-seen was saved by the node that saw it).
                let gone: Vec<UserId> = self.online.keys().filter(|id| !truth.contains_key(id)).copied().collect();
                for id in gone {
                    if let Some(u) = self.online.remove(&id) {
                        fx.batch.push(Event::Offline(u, now_ms));
                    }
                }
                for (id, u) in truth.drain() {
                    if let Entry::Vacant(slot) = self.online.entry(id) {
                        slot.insert(u.clone());
                        fx.batch.push(Event::Online(u));
                    }
                }
                fx.resyncs += 1;
            }
        }
    }

    fn event(&mut self, event: Event, fx: &mut Effects) {
        match event {
            Event::Online(u) => {
                if let Entry::Vacant(slot) = self.online.entry(u.id) {
                    slot.insert(u.clone());
                    fx.batch.push(Event::Online(u));
                }
            }
            Event::Offline(u, last_seen) => {
                if self.online.remove(&u.id).is_some() {
                    fx.went_offline.push((u.id, last_seen));
                    fx.batch.push(Event::Offline(u, last_seen));
                }
            }
            Event::SignedUp(u) => {
                self.registered += 1;
                fx.batch.push(Event::SignedUp(u));
            }
            Event::Deleted(id) => {
                fx.close_users.push(id);
                self.deleted(id, &mut fx.batch);
            }
            Event::SessionClosed(key) => fx.close_sessions.push(key),
            Event::UserClosed(id) => fx.close_users.push(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ClusterState;

    #[test]
    fn duplicates_are_dropped_and_resync_diffs() {
        let mut r = Replica::new(5);
        let mut fx = Effects::default();
        let a = UserRef::new(1, "a");
        r.apply(Delivery::Event(1, Event::Online(a.clone())), 0, &mut fx);
        r.apply(Delivery::Event(1, Event::Online(a.clone())), 0, &mut fx);
        r.apply(Delivery::Event(2, Event::Online(a.clone())), 0, &mut fx);
        assert_eq!(fx.batch, vec![Event::Online(a.clone())]);
        let b = UserRef::new(2, "b");
        let mut fx = Effects::default();
        r.apply(Delivery::Resync(ClusterState { seq: 9, online: vec![b.clone()], registered: Some(7) }), 42, &mut fx);
        assert_eq!(fx.batch, vec![Event::Offline(a, 42), Event::Online(b)]);
        assert!(fx.went_offline.is_empty(), "a resync's Offline has no real last-seen to save");
        assert_eq!((r.registered(), r.online_count(), fx.resyncs), (7, 1, 1));
        assert!(fx.counts_changed);
    }

    #[test]
    fn a_resync_that_changes_only_the_count_says_so() {
        let mut r = Replica::new(5);
        let mut fx = Effects::default();
        r.apply(Delivery::Resync(ClusterState { seq: 3, online: vec![], registered: Some(5) }), 0, &mut fx);
        assert!(fx.batch.is_empty() && !fx.counts_changed, "the same count: nothing to send");
        r.apply(Delivery::Resync(ClusterState { seq: 4, online: vec![], registered: Some(6) }), 0, &mut fx);
        assert!(fx.batch.is_empty());
        assert!(fx.counts_changed, "a new count must be flushed although no one came or went");
        assert_eq!(r.registered(), 6);
    }
}
