//! Hub behaviour, end to end through its public API, on tokio's paused clock (no real sleeps:
//! time only moves when every task is idle, or by `advance`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use presence::layer::{LayerConfig, MemoryCluster};
use presence::protocol::{parse_server_frame, ServerFrame, TutorialFrame};
use presence::{
    ConnectError, Connection, Hub, HubConfig, Outgoing, PresenceObserver, Protocol, SessionKey, UserId, UserRef,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Recorder(Mutex<Vec<(UserId, i64)>>);
impl PresenceObserver for Recorder {
    fn went_offline(&self, users: &[(UserId, i64)]) {
        self.0.lock().unwrap().extend_from_slice(users);
    }
}

struct TestHub {
    hub: Hub,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    offline: Arc<Recorder>,
}

impl TestHub {
    /// A socket of user `id` in session `session`.
    fn open(&self, id: i64, session_name: &str, protocol: Protocol) -> Connection {
        self.hub.connect(user(id), session(session_name), protocol).unwrap()
    }
}

fn start(grace_ms: u64, tick_ms: u64, capacity: usize) -> TestHub {
    let offline = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let layer = MemoryCluster::new(LayerConfig { grace: Duration::from_millis(grace_ms), ..LayerConfig::default() });
    let (hub, task) = Hub::start(
        HubConfig { tick: Duration::from_millis(tick_ms), max_sockets_per_user: 4, queue_capacity: capacity },
        100,
        layer.node(),
        offline.clone(),
        shutdown.clone(),
    )
    .expect("the hub joins the in-process cluster");
    TestHub { hub, shutdown, task, offline }
}

fn user(id: UserId) -> UserRef {
    UserRef::new(id, format!("user{id}"))
}

fn session(name: &str) -> SessionKey {
    SessionKey::from(name)
}

/// Lets the hub task run (flushes that are due now) without moving the clock.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// The next frame, within `within` of paused time.
async fn frame(c: &mut Connection, within: Duration) -> Bytes {
    match tokio::time::timeout(within, c.next()).await {
        Ok(Outgoing::Frame(b)) => b,
        Ok(other) => panic!("expected a frame, got {other:?}"),
        Err(_) => panic!("no frame within {within:?}"),
    }
}

fn tutorial(b: &Bytes) -> (String, bool) {
    let f: TutorialFrame<'_> = serde_json::from_slice(b).unwrap();
    (f.username.into_owned(), f.is_logged_in)
}

const SOON: Duration = Duration::from_millis(500);

mod views;

/// A roster.v1 client: applies snapshot + diffs, checking seq numbers.
#[derive(Default, Debug)]
struct Client {
    seq: Option<u64>,
    online: BTreeMap<UserId, String>,
    online_count: u64,
    registered: u64,
    snapshots: usize,
    diffs: usize,
    signed_up: Vec<UserId>,
    deleted: Vec<UserId>,
}

impl Client {
    fn apply(&mut self, b: &Bytes) {
        match parse_server_frame(b).unwrap() {
            ServerFrame::Snapshot(s) => {
                if let Some(q) = self.seq {
                    assert!(s.seq >= q, "snapshot seq went back: {} < {q}", s.seq);
                }
                self.seq = Some(s.seq);
                self.online = s.online.iter().map(|u| (u.id, u.username.to_string())).collect();
                assert_eq!(s.online_count as usize, self.online.len());
                self.online_count = s.online_count;
                self.registered = s.registered_count;
                self.snapshots += 1;
            }
            ServerFrame::Diff(d) => {
                let q = self.seq.expect("a diff before any snapshot");
                assert_eq!(d.seq, q + 1, "diff seq not consecutive");
                self.seq = Some(d.seq);
                for u in &d.offline {
                    assert!(!d.online.iter().any(|o| o.id == u.id), "user twice in a diff");
                    self.online.remove(&u.id);
                }
                for u in &d.online {
                    self.online.insert(u.id, u.username.to_string());
                }
                for id in &d.deleted {
                    self.online.remove(id);
                }
                self.signed_up.extend(d.signed_up.iter().map(|u| u.id));
                self.deleted.extend(&d.deleted);
                self.online_count = d.online_count;
                self.registered = d.registered_count;
                self.diffs += 1;
            }
        }
    }

    fn drain(&mut self, c: &mut Connection) {
        while let Some(out) = c.try_next() {
            match out {
                Outgoing::Frame(b) => self.apply(&b),
                Outgoing::Close { code, .. } => panic!("unexpected close {code}"),
            }
        }
    }

    fn assert_matches(&self, hub: &Hub) {
        let truth: BTreeMap<UserId, String> =
            hub.online_users().iter().map(|u| (u.id, u.username.to_string())).collect();
        assert_eq!(self.online, truth);
        assert_eq!(self.online_count as usize, truth.len());
        assert_eq!(self.registered, hub.registered_count());
    }
}

#[tokio::test(start_paused = true)]
async fn tutorial_watcher_sees_true_then_false_after_grace() {
    let t = start(5_000, 100, 1024);
    let mut watcher = t.open(1, "s1", Protocol::Tutorial);
    assert_eq!(tutorial(&frame(&mut watcher, SOON).await), ("user1".into(), true));

    let other = t.open(2, "s2", Protocol::Tutorial);
    assert_eq!(tutorial(&frame(&mut watcher, SOON).await), ("user2".into(), true));
    assert!(t.hub.is_online(2));

    let closed_at = Instant::now();
    drop(other);
    settle().await;
    assert!(watcher.try_next().is_none(), "nothing during the grace");
    assert!(t.hub.is_online(2));

    let f = frame(&mut watcher, Duration::from_secs(6)).await;
    assert_eq!(tutorial(&f), ("user2".into(), false));
    assert!(closed_at.elapsed() >= Duration::from_secs(5));
    assert!(!t.hub.is_online(2));
    // Exactly the tutorial's two fields.
    assert_eq!(f, Bytes::from_static(br#"{"username":"user2","is_logged_in":false}"#));
    let offline = t.offline.0.lock().unwrap().clone();
    assert_eq!(offline.len(), 1);
    assert_eq!(offline[0].0, 2);
}

#[tokio::test(start_paused = true)]
async fn roster_v1_watcher_sees_snapshot_then_diffs() {
    let t = start(1_000, 100, 1024);
    let _alice = t.open(5, "a", Protocol::Tutorial);
    settle().await;
    let mut w = t.open(1, "w", Protocol::RosterV1);
    let mut client = Client::default();
    client.apply(&frame(&mut w, SOON).await); // snapshot
    assert_eq!(client.snapshots, 1);
    // Its own Online may be in the snapshot or in the next diff: read until it is there.
    while !client.online.contains_key(&1) {
        client.apply(&frame(&mut w, SOON).await);
    }
    let bob = t.open(2, "b", Protocol::Tutorial);
    client.apply(&frame(&mut w, SOON).await);
    assert!(client.online.contains_key(&2));
    drop(bob);
    let f = frame(&mut w, Duration::from_secs(2)).await;
    let ServerFrame::Diff(d) = parse_server_frame(&f).unwrap() else { panic!() };
    assert_eq!(d.offline.len(), 1);
    assert_eq!(d.offline[0].id, 2);
    assert!(d.offline[0].last_seen > 1_600_000_000_000);
    client.apply(&f);
    client.assert_matches(&t.hub);
    assert_eq!(t.hub.snapshot().online.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn two_sockets_closing_one_sends_nothing() {
    let t = start(5_000, 100, 1024);
    let mut w = t.open(1, "w", Protocol::Tutorial);
    let a = t.open(2, "s", Protocol::Tutorial);
    let _b = t.open(2, "s", Protocol::Tutorial);
    settle().await;
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    while w.try_next().is_some() {}
    drop(a);
    tokio::time::advance(Duration::from_secs(60)).await;
    settle().await;
    assert!(w.try_next().is_none());
    assert!(t.hub.is_online(2));
    assert_eq!(t.hub.stats().sockets_open, 2);
}

#[tokio::test(start_paused = true)]
async fn reload_within_grace_sends_nothing() {
    let t = start(5_000, 100, 1024);
    let mut w = t.open(1, "w", Protocol::RosterV1);
    let a = t.open(2, "s", Protocol::Tutorial);
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    let mut client = Client::default();
    client.drain(&mut w);
    assert!(client.online.contains_key(&2));
    let diffs = client.diffs;

    drop(a);
    tokio::time::advance(Duration::from_secs(2)).await;
    let _a2 = t.open(2, "s", Protocol::Tutorial);
    settle().await; // the hub task hands the reopen to the layer
    tokio::time::advance(Duration::from_secs(60)).await;
    settle().await;
    client.drain(&mut w);
    assert_eq!(client.diffs, diffs, "a reload must not reach watchers");
    assert!(t.offline.0.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn close_session_closes_with_4001_and_goes_offline_at_once() {
    let t = start(5_000, 100, 1024);
    let mut w = t.open(1, "w", Protocol::Tutorial);
    let mut s1 = t.open(2, "phone", Protocol::Tutorial);
    let mut s2 = t.open(2, "phone", Protocol::RosterV1);
    let mut other = t.open(2, "laptop", Protocol::Tutorial);
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    while w.try_next().is_some() {}

    // Log out of one of two sessions: its sockets close, the user stays online.
    t.hub.close_session(&session("phone"), 2);
    let closed = Outgoing::Close { code: 4001, reason: "logged out" };
    assert_eq!(s1.next().await, closed);
    assert_eq!(s1.try_next(), Some(closed.clone()), "close is sticky");
    assert_eq!(s2.next().await, closed);
    assert!(t.hub.is_online(2));
    drop((s1, s2));
    settle().await;
    assert!(w.try_next().is_none());
    while other.try_next().is_some() {}

    // Log out of the last one: Offline at once, no grace.
    let start = Instant::now();
    t.hub.close_session(&session("laptop"), 2);
    settle().await;
    assert!(!t.hub.is_online(2));
    assert_eq!(other.next().await, closed);
    assert_eq!(tutorial(&frame(&mut w, SOON).await), ("user2".into(), false));
    assert!(start.elapsed() < Duration::from_secs(1));
    drop(other);
    assert_eq!(t.hub.stats().sockets_open, 1);
}

#[tokio::test(start_paused = true)]
async fn log_out_during_grace_ends_it() {
    let t = start(5_000, 100, 1024);
    let mut w = t.open(1, "w", Protocol::Tutorial);
    let s = t.open(2, "s", Protocol::Tutorial);
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    while w.try_next().is_some() {}
    drop(s); // the page unloads before the log out POST arrives
    t.hub.close_session(&session("s"), 2);
    settle().await;
    assert!(!t.hub.is_online(2));
    assert_eq!(tutorial(&frame(&mut w, SOON).await), ("user2".into(), false));
}

#[tokio::test(start_paused = true)]
async fn close_user_closes_every_session_with_1008() {
    let t = start(5_000, 100, 1024);
    let mut a = t.open(2, "a", Protocol::Tutorial);
    let mut b = t.open(2, "b", Protocol::Tutorial);
    t.hub.close_user(2);
    let closed = Outgoing::Close { code: 1008, reason: "account disabled" };
    assert_eq!(a.next().await, closed);
    assert_eq!(b.next().await, closed);
    assert!(!t.hub.is_online(2));
}

/// Found by the protocol property tests (tests/protocol): an account deleted or deactivated
/// while its user was in the grace (last socket closed) stayed online through the grace, and a
/// roster.v1 diff listed the user both online and deleted.
#[tokio::test(start_paused = true)]
async fn an_account_closed_during_the_grace_goes_offline_at_once() {
    for delete in [true, false] {
        let t = start(5_000, 100, 1024);
        let mut v1 = t.open(1, "w", Protocol::RosterV1);
        let mut client = Client::default();
        settle().await;
        client.drain(&mut v1);
        drop(t.open(2, "s", Protocol::Tutorial));
        settle().await;
        if delete {
            t.hub.user_deleted(2);
        } else {
            t.hub.close_user(2);
        }
        tokio::time::advance(Duration::from_millis(200)).await;
        settle().await;
        assert!(!t.hub.is_online(2), "offline at once, not after the grace");
        let f = frame(&mut v1, SOON).await;
        let ServerFrame::Diff(d) = parse_server_frame(&f).unwrap() else { panic!("a diff") };
        assert!(d.online.is_empty(), "not online in the batch that closes the account: {d:?}");
        assert_eq!(d.offline.iter().map(|u| u.id).collect::<Vec<_>>(), [2]);
        assert_eq!(d.deleted, if delete { vec![2] } else { vec![] });
        client.apply(&f);
        client.assert_matches(&t.hub);
    }
}

#[tokio::test(start_paused = true)]
async fn per_user_socket_cap() {
    let t = start(5_000, 100, 1024);
    let conns: Vec<_> = (0..4).map(|_| t.open(2, "s", Protocol::Tutorial)).collect();
    assert_eq!(
        t.hub.connect(user(2), session("s"), Protocol::Tutorial).unwrap_err(),
        ConnectError::TooManySockets { limit: 4 }
    );
    drop(conns);
    assert!(t.hub.connect(user(2), session("s"), Protocol::Tutorial).is_ok());
}

#[tokio::test(start_paused = true)]
async fn batching_sends_a_lone_change_at_once_and_coalesces_a_burst() {
    let t = start(0, 100, 1024);
    let mut v1 = t.open(1, "w", Protocol::RosterV1);
    let mut tut = t.open(99, "t", Protocol::Tutorial);
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    let mut client = Client::default();
    client.drain(&mut v1);
    while tut.try_next().is_some() {}
    // (`advance` fires the hub's timer late, at the new time: let one quiet tick pass.)
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;

    // A lone change after a quiet tick goes out without waiting for the tick.
    let c2 = t.open(2, "2", Protocol::Tutorial);
    settle().await;
    let before = client.diffs;
    client.drain(&mut v1);
    assert_eq!(client.diffs, before + 1, "lone change not sent at once");
    assert_eq!(tutorial(&tut.try_next().map(expect_frame).unwrap()), ("user2".into(), true));

    // A burst right after: one more batch, at the next tick.
    drop(c2); // offline (grace 0)
    let c3 = t.open(3, "3", Protocol::Tutorial);
    drop(c3);
    let _c3 = t.open(3, "3", Protocol::Tutorial);
    let _c4 = t.open(4, "4", Protocol::Tutorial);
    settle().await;
    assert!(v1.try_next().is_none(), "a burst within the tick waits");
    let f = frame(&mut v1, Duration::from_millis(150)).await;
    let ServerFrame::Diff(d) = parse_server_frame(&f).unwrap() else { panic!() };
    let ids = |v: &[UserRef]| v.iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(ids(&d.online), vec![3, 4]);
    assert_eq!(d.offline.iter().map(|u| u.id).collect::<Vec<_>>(), vec![2]);
    client.apply(&f);
    client.assert_matches(&t.hub);
    // Tutorial: one frame per transition, in order.
    let mut got = vec![];
    while let Some(out) = tut.try_next() {
        got.push(tutorial(&expect_frame(out)));
    }
    let want: Vec<(String, bool)> = [(2, false), (3, true), (3, false), (3, true), (4, true)]
        .iter()
        .map(|&(u, b)| (format!("user{u}"), b))
        .collect();
    assert_eq!(got, want);
}

fn expect_frame(o: Outgoing) -> Bytes {
    match o {
        Outgoing::Frame(b) => b,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn stalled_connection_is_bounded_and_resynced() {
    const CAP: usize = 64;
    // Tick 0: every change its own batch, and no pacing (nothing reads here).
    let t = start(0, 0, CAP);
    let mut v1 = t.open(1, "w", Protocol::RosterV1);
    let mut tut = t.open(2, "t", Protocol::Tutorial);
    let mut client = Client::default();
    client.apply(&frame(&mut v1, SOON).await);
    tokio::time::advance(Duration::from_millis(20)).await;
    settle().await;
    client.drain(&mut v1);
    while tut.try_next().is_some() {}

    // 5,000 changes, each its own batch, while neither connection reads.
    let mut held = Vec::new();
    for i in 0..5_000i64 {
        let u = 10 + i % 300;
        if i % 2 == 0 {
            held.push(t.hub.connect(user(u), session(&format!("s{u}")), Protocol::Tutorial).unwrap());
        } else {
            held.swap_remove((i as usize * 7) % held.len());
        }
        settle().await;
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    settle().await;
    let stats = t.hub.stats();
    assert!(stats.batches_sent >= 4_000, "{stats:?}");
    assert!(stats.max_queue_depth <= CAP, "{stats:?}");
    assert_eq!(stats.max_queue_depth, CAP, "the stalled sockets did fill the ring");

    // roster.v1: a fresh snapshot, then nothing missing.
    let f = expect_frame(v1.try_next().unwrap());
    assert!(matches!(parse_server_frame(&f).unwrap(), ServerFrame::Snapshot(_)));
    client.apply(&f);
    client.drain(&mut v1);
    client.assert_matches(&t.hub);
    assert_eq!(t.hub.stats().lagging_resyncs, 1);

    // Tutorial: cannot take a snapshot, so it is closed (never a silent gap).
    assert_eq!(tut.try_next(), Some(Outgoing::Close { code: 1013, reason: "lagging, reconnect" }));
    assert_eq!(t.hub.stats().lagging_closes, 1);
}

/// A roster.v1 client that joins during a burst, and one that reads slowly through a tiny ring,
/// both end with exactly the true state.
#[tokio::test(start_paused = true)]
async fn joining_during_a_burst_converges() {
    let t = start(300, 50, 8);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut held: Vec<Connection> = Vec::new();
    let mut late: Option<(Connection, Client)> = None;
    let mut slow = (t.open(1, "slow", Protocol::RosterV1), Client::default());
    for step in 0..3_000u32 {
        let r = next();
        match r % 10 {
            0..=4 => {
                let u = (r >> 8) as i64 % 200 + 10;
                if let Ok(c) = t.hub.connect(user(u), session(&format!("s{u}")), Protocol::Tutorial) {
                    held.push(c);
                }
            }
            5..=7 if !held.is_empty() => {
                held.swap_remove((r >> 8) as usize % held.len());
            }
            8 => t.hub.signed_up(user(10_000 + i64::from(step))),
            _ => tokio::time::advance(Duration::from_millis(r % 120)).await,
        }
        if step == 1_000 {
            late = Some((t.open(2, "late", Protocol::RosterV1), Client::default()));
        }
        if let Some((c, client)) = late.as_mut() {
            client.drain(c);
        }
        if step % 97 == 0 {
            slow.1.drain(&mut slow.0);
        }
        settle().await;
    }
    // Let every grace and tick pass, then read everything.
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    let (mut c, mut client) = late.unwrap();
    client.drain(&mut c);
    client.assert_matches(&t.hub);
    slow.1.drain(&mut slow.0);
    slow.1.assert_matches(&t.hub);
    assert!(slow.1.snapshots > 1, "the tiny ring should have forced resyncs");
    assert!(t.hub.stats().max_queue_depth <= 8);
    assert_eq!(client.seq, slow.1.seq);
}

#[tokio::test(start_paused = true)]
async fn sign_ups_and_deletions_in_diffs_only() {
    let t = start(1_000, 100, 1024);
    let mut v1 = t.open(1, "w", Protocol::RosterV1);
    let mut tut = t.open(2, "t", Protocol::Tutorial);
    let _x = t.open(3, "x", Protocol::Tutorial);
    tokio::time::advance(Duration::from_millis(500)).await;
    settle().await;
    let mut client = Client::default();
    client.drain(&mut v1);
    while tut.try_next().is_some() {}
    assert_eq!(client.registered, 100);
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;

    t.hub.signed_up(user(50));
    settle().await;
    assert_eq!(t.hub.registered_count(), 101, "counted once the cluster has it");
    client.drain(&mut v1);
    assert_eq!(client.signed_up, vec![50]);
    assert_eq!(client.registered, 101);
    assert!(tut.try_next().is_none(), "tutorial mode sends nothing for a sign-up");

    tokio::time::advance(Duration::from_millis(500)).await;
    t.hub.user_deleted(3);
    settle().await;
    assert_eq!(t.hub.registered_count(), 100);
    tokio::time::advance(Duration::from_millis(500)).await;
    settle().await;
    client.drain(&mut v1);
    assert_eq!(client.deleted, vec![3]);
    client.assert_matches(&t.hub);
    assert_eq!(tutorial(&expect_frame(tut.try_next().unwrap())), ("user3".into(), false));
    assert_eq!(t.hub.snapshot().registered_count, 100);
}

#[tokio::test(start_paused = true)]
async fn online_users_sorted_and_counts() {
    let t = start(1_000, 100, 1024);
    let names = ["bob", "Alice", "carol", "alice2"];
    let _c: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| t.hub.connect(UserRef::new(i as i64 + 1, *n), session(n), Protocol::Tutorial).unwrap())
        .collect();
    settle().await;
    assert_eq!(t.hub.online_count(), 4, "the count is live, before the batch goes out");
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    // The sorted list is that of the last flushed batch.
    let got: Vec<String> = t.hub.online_users().iter().map(|u| u.username.to_string()).collect();
    assert_eq!(got, vec!["Alice", "alice2", "bob", "carol"]);
    let snap = t.hub.snapshot();
    let names: Vec<&str> = snap.online.iter().map(|u| &*u.username).collect();
    assert_eq!(names, vec!["Alice", "alice2", "bob", "carol"]);
    assert_eq!(snap.online_count, 4);
    let stats = t.hub.stats();
    assert_eq!((stats.sockets_open, stats.users_online), (4, 4));
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_with_1001_and_stops_the_task() {
    let t = start(1_000, 100, 1024);
    let mut c = t.open(1, "w", Protocol::RosterV1);
    let _ = c.next().await; // snapshot
    t.shutdown.cancel();
    assert_eq!(c.next().await, Outgoing::Close { code: 1001, reason: "server shutting down" });
    tokio::time::timeout(SOON, t.task).await.unwrap().unwrap();
    assert_eq!(t.hub.connect(user(2), session("x"), Protocol::Tutorial).unwrap_err(), ConnectError::ShuttingDown);
}

#[test]
fn negotiate_subprotocol() {
    assert_eq!(Protocol::negotiate(["chat", "roster.v1"]), Protocol::RosterV1);
    assert_eq!(Protocol::negotiate([]), Protocol::Tutorial);
    assert_eq!(Protocol::RosterV1.subprotocol(), Some("roster.v1"));
    assert_eq!(format!("{:?}", session("secret")), "SessionKey(<redacted>)");
}

#[tokio::test(start_paused = true)]
async fn the_next_batch_waits_while_the_previous_one_is_still_being_taken() {
    let t = start(0, 100, 1024);
    let mut a = t.open(1, "a", Protocol::RosterV1);
    let mut b = t.open(2, "b", Protocol::RosterV1);
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    let (mut ca, mut cb) = (Client::default(), Client::default());
    ca.drain(&mut a);
    cb.drain(&mut b);
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;

    // Batch N goes out at T (a lone change); the next change waits for the tick.
    t.hub.signed_up(user(50));
    settle().await;
    t.hub.signed_up(user(51));
    settle().await;
    // `a` takes batch N just before the tick ends; `b` has not taken it yet.
    tokio::time::advance(Duration::from_millis(99)).await;
    settle().await;
    ca.drain(&mut a);
    assert_eq!(ca.signed_up, vec![50]);
    tokio::time::advance(Duration::from_millis(2)).await;
    settle().await;
    assert!(a.try_next().is_none(), "the tick has passed, but the fan-out of batch N is still going");
    // `b` takes it: the fan-out is done, and the next batch goes out at once.
    cb.drain(&mut b);
    assert_eq!(cb.signed_up, vec![50]);
    settle().await;
    ca.drain(&mut a);
    assert_eq!(ca.signed_up, vec![50, 51]);

    // A socket that stops taking batches holds the next one back only until the fan-out has
    // made no progress for a few milliseconds.
    t.hub.signed_up(user(52));
    settle().await;
    ca.drain(&mut a); // `b` never reads again
    t.hub.signed_up(user(53));
    let f = frame(&mut a, Duration::from_millis(150)).await;
    ca.apply(&f);
    assert_eq!(ca.signed_up, vec![50, 51, 52, 53]);
}

/// Regression: a cluster resync that brings only a new registered count (no one came or went)
/// must still go out as a batch. It did not, and the published snapshot and every watcher kept
/// the old count; the reconciler could not correct it either (the replica already had the new
/// count, so it saw no change).
#[tokio::test(start_paused = true)]
async fn a_resync_that_changes_only_the_registered_count_reaches_watchers() {
    let cluster = MemoryCluster::new(LayerConfig::default());
    let hub_with = |registered: u64| {
        Hub::start(
            HubConfig { tick: Duration::from_millis(100), max_sockets_per_user: 4, queue_capacity: 1024 },
            registered,
            cluster.node(),
            Arc::new(Recorder::default()),
            CancellationToken::new(),
        )
        .expect("joins")
        .0
    };
    let _first = hub_with(100);
    // The second node counted 7 accounts; the cluster's first delivery to it (a resync with no
    // one online) says 100.
    let second = hub_with(7);
    settle().await;
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    assert_eq!(second.registered_count(), 100);
    assert_eq!(second.snapshot().registered_count, 100, "the published snapshot has the cluster's count");
    let mut w = second.connect(user(1), session("w"), Protocol::RosterV1).unwrap();
    let mut client = Client::default();
    client.apply(&frame(&mut w, SOON).await);
    assert_eq!(client.registered, 100, "a new watcher's snapshot has it too");
}
