//! Pub/sub is not trusted: a killed subscriber connection, a message with a sequence from
//! nowhere, a lost message followed by another, and a lost last message (noticed only through
//! the heartbeat's sequence) each end in a resync, and every replica is exact afterwards. Also:
//! a node whose hub does not keep up is resynced, never left with a gap. One node speaks RESP3.

use std::time::Duration;

use presence::event::{Change, Delivery, Event};
use presence::layer::conformance::Probe;
use presence::layer::{Layer, LayerConfig};
use presence::{UserId, UserRef};
use presence_redis::RedisLayer;
use redis::aio::MultiplexedConnection;

use crate::support::{admin, config, converge, node, node_at, wait_until, RedisServer};

const SOON: Duration = Duration::from_secs(5);

fn user(id: UserId) -> UserRef {
    UserRef::new(id, format!("user{id}"))
}

fn up(ids: &[UserId]) -> Vec<Change> {
    ids.iter().map(|&id| Change::Up(user(id))).collect()
}

/// Nodes a and b (b on RESP3), both holding `ids` online (up on a).
async fn two_nodes(server: &RedisServer, ids: &[UserId]) -> (Probe<RedisLayer>, Probe<RedisLayer>) {
    let mut a = Probe::join("a", node(server, "a"), 0).await;
    let resp3 = node_at(&format!("{}/?protocol=resp3", server.url()), "b", config());
    let mut b = Probe::join("b", resp3, 0).await;
    a.node.send(up(ids));
    converge(&mut a, ids, SOON).await;
    converge(&mut b, ids, SOON).await;
    (a, b)
}

async fn resyncs_beyond(p: &Probe<RedisLayer>, n: u64) {
    wait_until("a resync", SOON, || p.node.status().resyncs > n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscriber_connection_resubscribes_and_resyncs() {
    let server = RedisServer::start();
    let mut admin = admin(&server).await;
    let (mut a, mut b) = two_nodes(&server, &[1, 2]).await;

    let killed: i64 = redis::cmd("CLIENT").arg(&["KILL", "TYPE", "pubsub"][..]).query_async(&mut admin).await.unwrap();
    assert_eq!(killed, 2, "both subscribers");
    // Events published while nobody listens are lost to pub/sub; the resync brings them.
    a.node.send(vec![Change::Down { user: 1, at: 1, logout: true }]);
    a.node.send(up(&[3]));
    for p in [&mut a, &mut b] {
        converge(p, &[2, 3], SOON).await;
        wait_until("resubscribed", SOON, || p.node.status().reconnects >= 1).await;
        resyncs_beyond(p, 0).await;
    }
    a.node.send(up(&[4]));
    for p in [&mut a, &mut b] {
        p.expect(&Event::Online(user(4)), SOON).await;
    }
}

async fn publish(admin: &mut MultiplexedConnection, payload: &str) {
    let _: i64 = redis::cmd("PUBLISH").arg("roster:{r0}:events").arg(payload).query_async(admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_from_nowhere_and_a_lost_message_trigger_resyncs() {
    let server = RedisServer::start();
    let mut admin = admin(&server).await;
    let (mut a, mut b) = two_nodes(&server, &[1]).await;

    // A bogus event far ahead: a gap, so a resync; the bogus user never shows.
    publish(&mut admin, "999999 on 77 ghost").await;
    for p in [&mut a, &mut b] {
        resyncs_beyond(p, 0).await;
        assert!(p.node.status().seq_gaps >= 1);
    }
    // Garbage on the channel: a resync too.
    publish(&mut admin, "not an event").await;
    resyncs_beyond(&a, 1).await;

    // A lost message (the sequence moved, nothing was published), then a real event: a gap.
    let gaps = a.node.status().seq_gaps;
    let _: i64 = redis::cmd("INCR").arg("roster:{r0}:seq").query_async(&mut admin).await.unwrap();
    a.node.send(up(&[2]));
    for p in [&mut a, &mut b] {
        converge(p, &[1, 2], SOON).await;
        assert!(!p.online.contains_key(&77));
    }
    wait_until("a gap counted", SOON, || a.node.status().seq_gaps > gaps).await;
    a.node.send(up(&[3]));
    for p in [&mut a, &mut b] {
        p.expect(&Event::Online(user(3)), SOON).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_last_message_is_noticed_through_the_heartbeat() {
    let server = RedisServer::start();
    let mut admin = admin(&server).await;
    let (mut a, mut b) = two_nodes(&server, &[1]).await;
    let before = (a.node.status(), b.node.status());

    // The last event is lost and nothing follows: only the heartbeat's sequence shows it.
    let _: i64 = redis::cmd("INCR").arg("roster:{r0}:seq").query_async(&mut admin).await.unwrap();
    resyncs_beyond(&a, before.0.resyncs).await;
    resyncs_beyond(&b, before.1.resyncs).await;
    assert!(a.node.status().reconnects > before.0.reconnects, "a quiet subscriber resubscribes");
    assert!(b.node.status().reconnects > before.1.reconnects, "a quiet subscriber resubscribes");
    a.node.send(up(&[2]));
    for p in [&mut a, &mut b] {
        p.expect(&Event::Online(user(2)), SOON).await;
        assert_eq!(p.online.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_falls_behind_is_resynced() {
    let server = RedisServer::start();
    let a = node(&server, "a");
    let b = node_at(&server.url(), "b", LayerConfig { queue: 4, ..config() });
    let _a_rx = a.join(0).unwrap();
    let mut rx = b.join(0).unwrap();
    let first = tokio::time::timeout(SOON, rx.recv()).await.unwrap();
    assert!(matches!(first, Some(Delivery::Resync(_))));
    // b's hub reads nothing while 20 users come online.
    for id in 0..20 {
        a.send(up(&[id]));
    }
    wait_until("b heard them", SOON, || rx.len() == 4).await;
    let mut seen: Vec<UserId> = Vec::new();
    let mut seq = 0;
    let deadline = tokio::time::Instant::now() + SOON;
    while seen.len() < 20 {
        match tokio::time::timeout_at(deadline, rx.recv()).await.expect("a resync with everyone") {
            Some(Delivery::Event(s, Event::Online(u))) => {
                assert!(seq == 0 || s == seq + 1, "no gap without a resync");
                seq = s;
                seen.push(u.id);
            }
            Some(Delivery::Resync(state)) => {
                seq = state.seq;
                seen = state.online.iter().map(|u| u.id).collect();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    assert!(b.status().resyncs >= 1);
}
