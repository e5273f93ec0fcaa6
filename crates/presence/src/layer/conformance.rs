//! The suite every [`Layer`] implementation must pass: the cluster's rules, checked through the
//! trait only, with several nodes of one cluster. Run by `MemoryCluster`'s tests and by the Redis
//! layer's (feature `conformance`).
//!
//! Waits use deadlines; asserting that nothing happens waits a bounded time (twice the grace).
//! Real time, so the cluster's grace and lease should be short (e.g. 300 ms and 1.5 s).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Change, Delivery, Event, Layer, LayerConfig};
use crate::{SessionKey, UserId, UserRef};

/// A cluster under test: makes nodes of one cluster, and crashes them.
pub trait Cluster: Send + Sync {
    type Node: Layer;
    /// A new node of the cluster (not joined yet).
    fn node(&self) -> impl Future<Output = Self::Node> + Send;
    /// Stops `node` as a crash (kill -9) would: it does not leave; its lease must lapse.
    fn crash(&self, node: Self::Node) -> impl Future<Output = ()> + Send;
    /// The grace and lease the cluster runs with.
    fn config(&self) -> LayerConfig;
}

/// How long past a deadline (a lease, a grace) an event may arrive.
const SLACK: Duration = Duration::from_millis(1500);
/// How long an event that should come at once may take.
const SOON: Duration = Duration::from_secs(5);

fn user(id: UserId) -> UserRef {
    UserRef::new(id, format!("user{id}"))
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A joined node and what it has heard: the replica a hub would keep, checked for gaps.
pub struct Probe<N: Layer> {
    pub node: N,
    name: &'static str,
    rx: mpsc::Receiver<Delivery>,
    seq: u64,
    pub online: BTreeMap<UserId, UserRef>,
    pub registered: Option<u64>,
    pub resyncs: usize,
}

impl<N: Layer> Probe<N> {
    pub async fn join(name: &'static str, node: N, registered: u64) -> Probe<N> {
        let rx = node.join(registered).expect("join");
        let mut p = Probe { node, name, rx, seq: 0, online: BTreeMap::new(), registered: None, resyncs: 0 };
        match tokio::time::timeout(SOON, p.rx.recv()).await {
            Ok(Some(Delivery::Resync(state))) => p.resync(state),
            other => panic!("{name}: the first delivery must be the state, got {other:?}"),
        }
        p
    }

    fn resync(&mut self, state: super::ClusterState) {
        self.seq = state.seq;
        self.online = state.online.into_iter().map(|u| (u.id, u)).collect();
        self.registered = state.registered;
        self.resyncs += 1;
    }

    fn apply(&mut self, seq: u64, event: &Event) {
        assert_eq!(seq, self.seq + 1, "{}: a gap in the sequence without a resync", self.name);
        self.seq = seq;
        match event {
            Event::Online(u) => {
                assert!(self.online.insert(u.id, u.clone()).is_none(), "{}: Online twice for {}", self.name, u.id);
            }
            Event::Offline(u, _) => {
                assert!(self.online.remove(&u.id).is_some(), "{}: Offline of {} who was not online", self.name, u.id)
            }
            Event::SignedUp(_) => self.registered = self.registered.map(|r| r + 1),
            Event::Deleted(_) => self.registered = self.registered.map(|r| r.saturating_sub(1)),
            Event::SessionClosed(_) | Event::UserClosed(_) => {}
        }
    }

    /// The next event within `within` (resyncs are applied and skipped), or `None`.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return None,
                Ok(None) => panic!("{}: the delivery stream ended", self.name),
                Ok(Some(Delivery::Resync(state))) => self.resync(state),
                Ok(Some(Delivery::Event(seq, event))) => {
                    self.apply(seq, &event);
                    return Some(event);
                }
            }
        }
    }

    /// The next event is `want` (compared without `last_seen`, which is returned).
    pub async fn expect(&mut self, want: &Event, within: Duration) -> Option<i64> {
        let got = self.next(within).await;
        match (&got, want) {
            (Some(Event::Offline(u, at)), Event::Offline(w, _)) if u == w => Some(*at),
            (Some(g), w) if g == w => None,
            _ => panic!("{}: expected {want:?} within {within:?}, got {got:?}", self.name),
        }
    }

    /// No event for `time`.
    pub async fn quiet(&mut self, time: Duration) {
        if let Some(e) = self.next(time).await {
            panic!("{}: expected nothing for {time:?}, got {e:?}", self.name);
        }
    }
}

/// Runs every scenario on `cluster` (one fresh cluster; user ids do not overlap between
/// scenarios).
pub async fn run<C: Cluster>(cluster: C) {
    let cfg = cluster.config();
    assert!(cfg.grace >= Duration::from_millis(100), "the suite needs a grace of at least 100 ms");
    let grace = cfg.grace;
    let quiet = grace * 2;

    let mut a = Probe::join("a", cluster.node().await, 10).await;
    let mut b = Probe::join("b", cluster.node().await, 10).await;
    assert_eq!(a.registered, Some(10), "a fresh cluster takes the first node's count");

    // One node comes online: every node hears it once, with the same sequence number.
    a.node.send(vec![Change::Up(user(1))]);
    a.expect(&Event::Online(user(1)), SOON).await;
    b.expect(&Event::Online(user(1)), SOON).await;
    assert_eq!(a.seq, b.seq);

    // Two tabs on two nodes: Online once, Offline only when both close, after the grace.
    b.node.send(vec![Change::Up(user(1))]);
    a.node.send(vec![Change::Down { user: 1, at: unix_ms(), logout: false }]);
    b.quiet(quiet).await;
    let closed = Instant::now();
    let at = unix_ms();
    b.node.send(vec![Change::Down { user: 1, at, logout: false }]);
    let seen = a.expect(&Event::Offline(user(1), 0), grace + SLACK).await;
    assert!(closed.elapsed() >= grace - Duration::from_millis(50), "Offline before the grace ended");
    assert_eq!(seen, Some(at), "last seen is the last close");
    b.expect(&Event::Offline(user(1), 0), SOON).await;

    // A reload onto another node within the grace announces nothing.
    a.node.send(vec![Change::Up(user(2))]);
    a.expect(&Event::Online(user(2)), SOON).await;
    b.expect(&Event::Online(user(2)), SOON).await;
    a.node.send(vec![Change::Down { user: 2, at: unix_ms(), logout: false }]);
    b.node.send(vec![Change::Up(user(2))]);
    a.quiet(quiet).await;
    // A log-out Down skips the grace.
    let t = Instant::now();
    b.node.send(vec![Change::Down { user: 2, at: unix_ms(), logout: true }]);
    a.expect(&Event::Offline(user(2), 0), SOON).await;
    b.expect(&Event::Offline(user(2), 0), SOON).await;
    assert!(t.elapsed() < grace + SLACK);

    // Log out of a session whose sockets already closed ends the grace.
    a.node.send(vec![Change::Up(user(3))]);
    b.expect(&Event::Online(user(3)), SOON).await;
    a.node.send(vec![Change::Down { user: 3, at: unix_ms(), logout: false }, Change::EndGrace(3)]);
    b.expect(&Event::Offline(user(3), 0), SOON).await;
    a.expect(&Event::Online(user(3)), SOON).await;
    a.expect(&Event::Offline(user(3), 0), SOON).await;
    // ...but not while the user has a socket somewhere.
    a.node.send(vec![Change::Up(user(4))]);
    b.node.send(vec![Change::EndGrace(4)]);
    b.expect(&Event::Online(user(4)), SOON).await;
    b.quiet(quiet).await;
    a.node.send(vec![Change::Down { user: 4, at: unix_ms(), logout: true }]);
    b.expect(&Event::Offline(user(4), 0), SOON).await;
    a.expect(&Event::Online(user(4)), SOON).await;
    a.expect(&Event::Offline(user(4), 0), SOON).await;

    // Repeated Ups and Downs of one node are idempotent.
    a.node.send(vec![Change::Up(user(5)), Change::Up(user(5))]);
    b.expect(&Event::Online(user(5)), SOON).await;
    a.node.send(vec![
        Change::Down { user: 5, at: unix_ms(), logout: true },
        Change::Down { user: 5, at: unix_ms(), logout: true },
    ]);
    b.expect(&Event::Offline(user(5), 0), SOON).await;
    b.quiet(quiet).await;
    a.expect(&Event::Online(user(5)), SOON).await;
    a.expect(&Event::Offline(user(5), 0), SOON).await;

    // Account events reach every node, in order.
    let key = SessionKey::from("0123abcd");
    a.node.send(vec![
        Change::SignedUp(user(90)),
        Change::CloseSession(key.clone()),
        Change::CloseUser(7),
        Change::Deleted(90),
    ]);
    for p in [&mut a, &mut b] {
        p.expect(&Event::SignedUp(user(90)), SOON).await;
        p.expect(&Event::SessionClosed(key.clone()), SOON).await;
        p.expect(&Event::UserClosed(7), SOON).await;
        p.expect(&Event::Deleted(90), SOON).await;
        assert_eq!(p.registered, Some(10));
    }

    // A node joining later gets the state the others have built from events.
    a.node.send(vec![Change::Up(user(6))]);
    a.expect(&Event::Online(user(6)), SOON).await;
    b.expect(&Event::Online(user(6)), SOON).await;
    let c = Probe::join("c", cluster.node().await, 999).await;
    assert_eq!(c.online, b.online, "a new node's state equals what the others know");
    assert_eq!(c.registered, Some(10), "the cluster's count, not the late node's");
    assert_eq!(c.seq, b.seq);

    // A crashed node's users go offline on the others within the lease, once.
    c.node.send(vec![Change::Up(user(7)), Change::Up(user(6))]);
    a.expect(&Event::Online(user(7)), SOON).await;
    b.expect(&Event::Online(user(7)), SOON).await;
    let crashed = Instant::now();
    cluster.crash(c.node).await;
    a.expect(&Event::Offline(user(7), 0), cfg.lease + SLACK).await;
    b.expect(&Event::Offline(user(7), 0), SOON).await;
    assert!(crashed.elapsed() <= cfg.lease + SLACK);
    b.quiet(quiet).await; // user 6 is still up on a
    assert!(b.online.contains_key(&6));

    // A graceful leave hands users to the grace: a page that reconnects to another node within
    // it is never shown Offline; the others go offline after the grace, not the lease.
    b.node.send(vec![Change::Up(user(8)), Change::Up(user(9))]);
    a.expect(&Event::Online(user(8)), SOON).await;
    a.expect(&Event::Online(user(9)), SOON).await;
    let left = Instant::now();
    b.node.leave().await;
    a.node.send(vec![Change::Up(user(9))]);
    a.expect(&Event::Offline(user(8), 0), grace + SLACK).await;
    assert!(left.elapsed() < cfg.lease, "after the grace, not the lease");
    a.quiet(quiet).await;
    assert!(a.online.contains_key(&9), "reconnected within the grace: never offline");

    // The last node to leave hears everyone go offline before its stream ends.
    a.node.leave().await;
    let mut offline = Vec::new();
    while let Some(d) = a.rx.recv().await {
        if let Delivery::Event(seq, e) = d {
            a.apply(seq, &e);
            if let Event::Offline(u, _) = e {
                offline.push(u.id);
            }
        }
    }
    offline.sort_unstable();
    assert_eq!(offline, vec![6, 9], "the last node to leave is told every Offline");
    assert!(a.online.is_empty());
}
