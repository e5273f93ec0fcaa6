//! Redis outages: killed and restarted empty, killed and restarted from its append-only file,
//! and not there at all when a node starts. Nodes keep accepting changes meanwhile and say they
//! are not ready; afterwards every node's replica is the truth, including the changes made
//! while Redis was away, and nothing stale is left in Redis.

use std::time::Duration;

use presence::event::{Change, Delivery, Event};
use presence::layer::conformance::Probe;
use presence::layer::Layer;
use presence::{UserId, UserRef};

use crate::support::{admin, config, converge, keys, members, node, node_at, strings, wait_until, RedisServer};

const SOON: Duration = Duration::from_secs(5);
/// Reconnects back off up to 2 s (jittered), then re-register and resync.
const RECOVERY: Duration = Duration::from_secs(10);

fn user(id: UserId) -> UserRef {
    UserRef::new(id, format!("user{id}"))
}

fn up(ids: &[UserId]) -> Vec<Change> {
    ids.iter().map(|&id| Change::Up(user(id))).collect()
}

fn down(id: UserId, logout: bool) -> Change {
    Change::Down { user: id, at: 1, logout }
}

fn unreachable(node: &impl Layer) -> bool {
    let s = node.status();
    !s.ready && s.reason.as_deref().is_some_and(|r| r.contains("redis"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_mid_run() {
    let mut server = RedisServer::start();
    let mut a = Probe::join("a", node(&server, "a"), 10).await;
    let mut b = Probe::join("b", node(&server, "b"), 10).await;
    a.node.send(up(&[1, 2, 3]));
    b.node.send(up(&[4, 5]));
    converge(&mut a, &[1, 2, 3, 4, 5], SOON).await;
    converge(&mut b, &[1, 2, 3, 4, 5], SOON).await;
    a.node.send(vec![Change::SignedUp(user(90))]);
    a.expect(&Event::SignedUp(user(90)), SOON).await;
    b.expect(&Event::SignedUp(user(90)), SOON).await;

    server.kill();
    wait_until("a says redis is unreachable", SOON, || unreachable(&a.node)).await;
    wait_until("b says redis is unreachable", SOON, || unreachable(&b.node)).await;
    // Changes keep coming (send never waits): a user leaves, one logs out, two arrive, one
    // arrives on b and leaves again.
    a.node.send(vec![down(1, false), down(2, true)]);
    a.node.send(up(&[6]));
    b.node.send(up(&[7, 8]));
    b.node.send(vec![down(8, false), down(4, false)]);
    assert!(unreachable(&a.node) && unreachable(&b.node));

    server.restart();
    let truth = [3, 5, 6, 7];
    converge(&mut a, &truth, RECOVERY).await;
    converge(&mut b, &truth, RECOVERY).await;
    wait_until("both nodes ready", RECOVERY, || a.node.status().ready && b.node.status().ready).await;
    for p in [&a, &b] {
        let s = p.node.status();
        assert!(s.reconnects >= 2, "command and subscriber connections came back: {s:?}");
        assert!(s.resyncs >= 1, "resynced: {s:?}");
        assert_eq!(p.registered, Some(11), "the emptied Redis took the count the nodes knew");
    }

    // And the cluster works as before.
    b.node.send(up(&[9]));
    a.expect(&Event::Online(user(9)), SOON).await;
    b.expect(&Event::Online(user(9)), SOON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_old_data_sweeps_stale_incarnations() {
    let mut server = RedisServer::start_persistent();
    let mut a = Probe::join("a", node(&server, "a"), 0).await;
    let b = node(&server, "b");
    let _b_rx = b.join(0).expect("join");
    a.node.send(up(&[1, 2]));
    b.send(up(&[3, 4]));
    converge(&mut a, &[1, 2, 3, 4], SOON).await;
    wait_until("both registered", SOON, || a.node.incarnation().is_some() && b.incarnation().is_some()).await;
    let old_a = a.node.incarnation().unwrap();
    let old_b = b.incarnation().unwrap();

    // Redis goes down; b dies meanwhile (its lease stays in the append-only file); a changes.
    server.kill();
    b.crash().await;
    wait_until("a says redis is unreachable", SOON, || unreachable(&a.node)).await;
    a.node.send(vec![down(2, true)]);
    a.node.send(up(&[5]));

    server.restart();
    let mut admin = admin(&server).await;
    converge(&mut a, &[1, 5], RECOVERY).await;
    wait_until("a is ready", RECOVERY, || a.node.status().ready).await;
    let new_a = a.node.incarnation().unwrap();
    let counter = |inc: &str| inc.split('.').next().unwrap().parse::<u64>().unwrap();
    assert!(counter(&new_a) > counter(&old_b), "the old data was restored ({new_a} after {old_b})");

    // b's lapsed lease was swept and a withdrew its old incarnation: only a's new one is left.
    let deadline = tokio::time::Instant::now() + RECOVERY;
    while members(&mut admin, "roster:{r0}:nodes").await != strings(&[&new_a]) {
        assert!(tokio::time::Instant::now() < deadline, "stale incarnations left: {old_a} {old_b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(members(&mut admin, "roster:{r0}:count").await, strings(&["1", "5"]));
    assert_eq!(members(&mut admin, "roster:{r0}:names").await, strings(&["1", "5"]));
    assert_eq!(members(&mut admin, "roster:{r0}:grace").await, strings(&[]));
    let node_keys: Vec<String> = keys(&mut admin).await.into_iter().filter(|k| k.starts_with("node:")).collect();
    assert_eq!(node_keys, vec![format!("node:{new_a}")]);
    a.quiet(config().grace * 2).await;
    assert_eq!(a.online.keys().copied().collect::<Vec<_>>(), vec![1, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_before_redis_and_joins_when_it_comes_up() {
    let mut server = RedisServer::reserve();
    let node = node_at(&server.url(), "early", config());
    let mut rx = node.join(3).expect("join returns at once, Redis or not");
    node.send(up(&[1]));
    assert!(unreachable(&node), "{:?}", node.status());
    assert!(rx.try_recv().is_err(), "nothing delivered before Redis is there");

    server.restart();
    let first = tokio::time::timeout(RECOVERY, rx.recv()).await.expect("the state arrives once connected");
    let Some(Delivery::Resync(state)) = first else { panic!("the first delivery is the state, got {first:?}") };
    assert_eq!(state.registered, Some(3));
    let online: Vec<UserId> = state.online.iter().map(|u| u.id).collect();
    if online.is_empty() {
        let next = tokio::time::timeout(SOON, rx.recv()).await.expect("Online");
        assert_eq!(next, Some(Delivery::Event(state.seq + 1, Event::Online(user(1)))));
    } else {
        assert_eq!(online, vec![1]);
    }
    wait_until("ready", SOON, || node.status().ready).await;

    // Leaving while Redis is gone ends the stream in bounded time.
    server.kill();
    wait_until("unreachable", SOON, || unreachable(&node)).await;
    tokio::time::timeout(SOON, node.leave()).await.expect("leave returns without redis");
    let drained = tokio::time::timeout(SOON, async { while rx.recv().await.is_some() {} }).await;
    assert!(drained.is_ok(), "the stream ends after leave");
}
