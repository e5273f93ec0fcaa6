//! [`MemoryCluster`]: the in-process layer. The single binary runs one node on it; tests run
//! several. It is the reference for the cluster's rules: the per-user count is the number of
//! nodes that have the user up, kept by [`PresenceState`] (the same pure state machine that is
//! property-tested in `state.rs`), so grace, log-out and exactly-once transitions follow from it.
//!
//! Time is tokio's clock (paused-time tests work). A task per cluster fires grace deadlines and
//! node leases; it ends when the cluster is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Notify};

use super::{Change, ClusterState, Delivery, Event, Layer, LayerConfig, LayerError, LayerStatus};
use crate::state::{PresenceState, Transition};
use crate::{UserId, UserRef};

type NodeId = u64;

struct Node {
    /// `None` until the node joins, and again once it has left.
    tx: Option<mpsc::Sender<Delivery>>,
    /// A delivery did not fit: the next one is a resync.
    lagged: bool,
    /// Users this node has up.
    up: HashSet<UserId>,
    /// Set when the node stopped without leaving: its users go down at this instant.
    lease_ends: Option<Instant>,
    resyncs: u64,
}

struct Core {
    config: LayerConfig,
    state: PresenceState,
    /// Names of the users online in the cluster.
    names: HashMap<UserId, UserRef>,
    /// The last `Down` time of users in grace (unix ms), reported as their last seen.
    last_down: HashMap<UserId, i64>,
    nodes: HashMap<NodeId, Node>,
    next_node: NodeId,
    seq: u64,
    registered: Option<u64>,
    scratch: Vec<Transition>,
    /// Base of the clock: unix ms at `base`.
    base: Instant,
    base_unix_ms: i64,
}

struct Shared {
    core: Mutex<Core>,
    /// Wakes the deadline task (a new grace or lease deadline, or the cluster is gone).
    wake: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// An in-process cluster. Cheap to clone; every [`MemoryNode`] made from it is a node of it.
#[derive(Clone)]
pub struct MemoryCluster {
    shared: Arc<Shared>,
}

/// One node of a [`MemoryCluster`].
pub struct MemoryNode {
    shared: Arc<Shared>,
    id: NodeId,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn lock(m: &Mutex<Core>) -> MutexGuard<'_, Core> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryCluster {
    /// A new, empty cluster. Must be called inside a tokio runtime (it starts the deadline task).
    pub fn new(config: LayerConfig) -> MemoryCluster {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                state: PresenceState::new(config.grace),
                config,
                names: HashMap::new(),
                last_down: HashMap::new(),
                nodes: HashMap::new(),
                next_node: 1,
                seq: 0,
                registered: None,
                scratch: Vec::new(),
                base: now(),
                base_unix_ms: i64::try_from(unix).unwrap_or(i64::MAX),
            }),
            wake: Arc::new(Notify::new()),
        });
        tokio::spawn(deadlines(Arc::downgrade(&shared), shared.wake.clone()));
        MemoryCluster { shared }
    }

    /// A new node of this cluster (it takes part once it joins).
    pub fn node(&self) -> MemoryNode {
        let mut core = lock(&self.shared.core);
        let id = core.next_node;
        core.next_node += 1;
        core.nodes.insert(id, Node { tx: None, lagged: false, up: HashSet::new(), lease_ends: None, resyncs: 0 });
        MemoryNode { shared: self.shared.clone(), id }
    }
}

impl MemoryNode {
    /// Simulates a crash (for tests): the node stops without leaving. Its stream ends now; its
    /// users go down when its lease lapses, as a dead process's would.
    pub fn crash(&self) {
        let mut core = lock(&self.shared.core);
        let lease = core.config.lease;
        if let Some(n) = core.nodes.get_mut(&self.id) {
            n.tx = None;
            n.lease_ends = Some(now() + lease);
        }
        drop(core);
        self.shared.wake.notify_one();
    }
}

impl Core {
    fn unix_ms(&self, at: Instant) -> i64 {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match at.checked_duration_since(self.base) {
            Some(d) => self.base_unix_ms.saturating_add(ms(d)),
            None => self.base_unix_ms.saturating_sub(ms(self.base - at)),
        }
    }

    fn snapshot(&self) -> ClusterState {
        let mut online: Vec<UserRef> = self.names.values().cloned().collect();
        online.sort_by_key(|u| u.id);
        ClusterState { seq: self.seq, online, registered: self.registered }
    }

    /// Numbers `event` and hands it to every joined node (a node whose queue is full is resynced
    /// at its next delivery instead).
    fn emit(&mut self, event: Event) {
        self.seq += 1;
        let seq = self.seq;
        let mut snapshot = None;
        let lease = self.config.lease;
        let now = now();
        for node in self.nodes.values_mut() {
            let Some(tx) = &node.tx else { continue };
            let delivery = if node.lagged {
                let s = snapshot.get_or_insert_with(|| {
                    let mut online: Vec<UserRef> = self.names.values().cloned().collect();
                    online.sort_by_key(|u| u.id);
                    ClusterState { seq, online, registered: self.registered }
                });
                Delivery::Resync(s.clone())
            } else {
                Delivery::Event(seq, event.clone())
            };
            let resync = matches!(delivery, Delivery::Resync(_));
            match tx.try_send(delivery) {
                Ok(()) => {
                    if resync {
                        node.lagged = false;
                        node.resyncs += 1;
                    }
                }
                Err(mpsc::error::TrySendError::Full(_)) => node.lagged = true,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // The node's hub is gone without leaving: treat it as a crash.
                    node.tx = None;
                    node.lease_ends = Some(now + lease);
                }
            }
        }
    }

    /// Turns the state machine's transitions into events.
    fn settle(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        for t in scratch.drain(..) {
            match t {
                Transition::Online(id) => {
                    self.last_down.remove(&id);
                    if let Some(u) = self.names.get(&id).cloned() {
                        self.emit(Event::Online(u));
                    }
                }
                Transition::Offline(id, at) => {
                    let last_seen = self.last_down.remove(&id).unwrap_or_else(|| self.unix_ms(at));
                    if let Some(u) = self.names.remove(&id) {
                        self.emit(Event::Offline(u, last_seen));
                    }
                }
            }
        }
        self.scratch = scratch;
    }

    fn apply(&mut self, node: NodeId, change: Change, now: Instant) {
        match change {
            Change::Up(user) => {
                let Some(n) = self.nodes.get_mut(&node) else { return };
                if n.lease_ends.is_some() || !n.up.insert(user.id) {
                    return;
                }
                self.names.entry(user.id).or_insert(user.clone());
                self.state.open(user.id, now, &mut self.scratch);
            }
            Change::Down { user, at, logout } => {
                let Some(n) = self.nodes.get_mut(&node) else { return };
                if !n.up.remove(&user) {
                    return;
                }
                self.last_down.insert(user, at);
                if logout {
                    self.state.close_logout(user, now, &mut self.scratch);
                } else {
                    self.state.close(user, now, &mut self.scratch);
                }
            }
            Change::EndGrace(user) => self.state.end_grace(user, now, &mut self.scratch),
            Change::SignedUp(user) => {
                self.registered = self.registered.map(|r| r + 1);
                self.emit(Event::SignedUp(user));
            }
            Change::Deleted(id) => {
                self.registered = self.registered.map(|r| r.saturating_sub(1));
                self.emit(Event::Deleted(id));
            }
            Change::CloseSession(key) => self.emit(Event::SessionClosed(key)),
            Change::CloseUser(id) => self.emit(Event::UserClosed(id)),
        }
        self.settle();
    }

    /// Takes down the users of `node`: with the grace (a graceful leave) or at once (a lapsed
    /// lease).
    fn take_down(&mut self, node: NodeId, logout: bool, now: Instant) {
        let Some(n) = self.nodes.get_mut(&node) else { return };
        let users: Vec<UserId> = n.up.drain().collect();
        let at = self.unix_ms(now);
        for user in users {
            self.last_down.insert(user, at);
            if logout {
                self.state.close_logout(user, now, &mut self.scratch);
            } else {
                self.state.close(user, now, &mut self.scratch);
            }
        }
        self.settle();
    }

    /// Fires due graces and lapsed leases; returns the next deadline.
    fn advance(&mut self, now: Instant) -> Option<Instant> {
        let lapsed: Vec<NodeId> =
            self.nodes.iter().filter(|(_, n)| n.lease_ends.is_some_and(|t| t <= now)).map(|(&id, _)| id).collect();
        for id in lapsed {
            self.take_down(id, true, now);
            self.nodes.remove(&id);
        }
        self.state.advance(now, &mut self.scratch);
        self.settle();
        let lease = self.nodes.values().filter_map(|n| n.lease_ends).min();
        match (self.state.next_deadline(), lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The cluster's clock: fires grace deadlines and lapsed leases. Holds the cluster weakly, so
/// it ends once every handle is gone (the last one's drop wakes it).
async fn deadlines(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else { return };
            let next = lock(&shared.core).advance(now());
            next
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

impl Layer for MemoryNode {
    fn join(&self, registered: u64) -> Result<mpsc::Receiver<Delivery>, LayerError> {
        let mut core = lock(&self.shared.core);
        let capacity = core.config.queue.max(2);
        if core.registered.is_none() {
            core.registered = Some(registered);
        }
        let snapshot = core.snapshot();
        let node = core.nodes.get_mut(&self.id).ok_or(LayerError::AlreadyJoined)?;
        if node.tx.is_some() || node.lease_ends.is_some() {
            return Err(LayerError::AlreadyJoined);
        }
        let (tx, rx) = mpsc::channel(capacity);
        // A fresh channel has room: the first delivery is the state.
        let _ = tx.try_send(Delivery::Resync(snapshot));
        node.tx = Some(tx);
        Ok(rx)
    }

    fn send(&self, changes: Vec<Change>) {
        let mut core = lock(&self.shared.core);
        let now = now();
        let before = core.state.next_deadline();
        for change in changes {
            core.apply(self.id, change, now);
        }
        // Wake the clock only for a deadline earlier than the one it sleeps until.
        let after = core.state.next_deadline();
        let wake = after.is_some_and(|a| before.is_none_or(|b| a < b));
        drop(core);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    async fn leave(&self) {
        let mut core = lock(&self.shared.core);
        let now = now();
        let others = core.nodes.iter().any(|(&id, n)| id != self.id && n.tx.is_some());
        core.take_down(self.id, false, now);
        if !others {
            // Nobody is left to carry the grace: everyone goes offline now, and this node hears
            // it (its last-seen times get saved).
            let lapsed: Vec<NodeId> = core.nodes.keys().copied().filter(|&id| id != self.id).collect();
            for id in lapsed {
                core.take_down(id, true, now);
            }
            let in_grace: Vec<UserId> = core.names.keys().copied().collect();
            let core = &mut *core;
            for user in in_grace {
                core.state.end_grace(user, now, &mut core.scratch);
            }
            core.settle();
        }
        core.nodes.remove(&self.id);
        drop(core);
        self.shared.wake.notify_one();
    }

    fn status(&self) -> LayerStatus {
        let core = lock(&self.shared.core);
        let resyncs = core.nodes.get(&self.id).map_or(0, |n| n.resyncs);
        LayerStatus { ready: true, resyncs, ..LayerStatus::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance;
    use super::*;

    impl conformance::Cluster for MemoryCluster {
        type Node = MemoryNode;

        async fn node(&self) -> MemoryNode {
            MemoryCluster::node(self)
        }

        async fn crash(&self, node: MemoryNode) {
            node.crash();
        }

        fn config(&self) -> LayerConfig {
            lock(&self.shared.core).config.clone()
        }
    }

    #[tokio::test]
    async fn memory_cluster_conforms() {
        let config = LayerConfig { grace: Duration::from_millis(300), lease: Duration::from_millis(1500), queue: 1024 };
        conformance::run(MemoryCluster::new(config)).await;
    }

    #[tokio::test]
    async fn a_node_that_falls_behind_is_resynced() {
        let cluster = MemoryCluster::new(LayerConfig { queue: 2, ..LayerConfig::default() });
        let (a, b) = (cluster.node(), cluster.node());
        let mut rx = b.join(0).unwrap();
        let _a_rx = a.join(0).unwrap();
        for id in 0..10 {
            a.send(vec![Change::Up(UserRef::new(id, format!("u{id}")))]);
        }
        let mut last = None;
        while let Ok(d) = rx.try_recv() {
            last = Some(d);
        }
        a.send(vec![Change::Up(UserRef::new(99, "u99"))]);
        let Some(Delivery::Resync(state)) = rx.try_recv().ok() else { panic!("expected a resync after {last:?}") };
        assert_eq!(state.online.len(), 11);
        assert_eq!(b.status().resyncs, 1);
    }
}
