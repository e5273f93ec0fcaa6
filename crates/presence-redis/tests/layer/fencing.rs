//! Fencing: a node whose heartbeats stop (a paused process) past its lease is swept by the
//! others (its users Offline once); when it resumes it finds itself fenced, whether by its
//! next heartbeat or by its next write, re-registers, re-asserts the users it really holds,
//! and every node converges to the truth, with nothing of its old incarnation left in Redis.

use std::collections::BTreeSet;
use std::time::Duration;

use presence::event::Change;
use presence::layer::conformance::Probe;
use presence::layer::Layer;
use presence::{UserId, UserRef};

use crate::support::{admin, config, converge, keys, members, node, strings, wait_until, RedisServer};

fn up(ids: &[UserId]) -> Vec<Change> {
    ids.iter().map(|&id| Change::Up(UserRef::new(id, format!("user{id}")))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_swept_then_fenced_and_converges() {
    let server = RedisServer::start();
    let mut admin = admin(&server).await;
    let lease = config().lease;
    let soon = Duration::from_secs(5);
    let mut a = Probe::join("a", node(&server, "a"), 0).await;
    let mut b = Probe::join("b", node(&server, "b"), 0).await;
    a.node.send(up(&[1, 2, 3]));
    b.node.send(up(&[4]));
    converge(&mut a, &[1, 2, 3, 4], soon).await;
    converge(&mut b, &[1, 2, 3, 4], soon).await;

    // Paused past its lease: b sweeps a's users (the probes fail on a second Offline).
    let first = a.node.incarnation().expect("registered");
    a.node.pause_upkeep(true).await;
    converge(&mut b, &[4], lease + soon).await;
    converge(&mut a, &[4], soon).await;
    wait_until("b counted its sweep", soon, || b.node.status().sweeps >= 1).await;
    assert!(!members(&mut admin, "roster:{r0}:nodes").await.contains(&first), "a's lapsed incarnation is gone");

    // Resumed: its heartbeat finds it fenced; it re-registers and re-asserts.
    a.node.pause_upkeep(false).await;
    converge(&mut a, &[1, 2, 3, 4], soon).await;
    converge(&mut b, &[1, 2, 3, 4], soon).await;
    assert_eq!(a.node.status().fenced, 1);
    wait_until("a holds a new incarnation", soon, || a.node.incarnation().is_some_and(|i| i != first)).await;

    // Paused again, and this time a write finds it fenced: a Down and an Up made while it was
    // swept are the truth afterwards.
    a.node.pause_upkeep(true).await;
    converge(&mut b, &[4], lease + soon).await;
    a.node.send(vec![Change::Down { user: 2, at: 1, logout: false }]);
    a.node.send(up(&[5]));
    wait_until("a re-registered after its write was fenced", soon, || a.node.status().fenced == 2).await;
    a.node.pause_upkeep(false).await;
    converge(&mut a, &[1, 3, 4, 5], soon).await;
    converge(&mut b, &[1, 3, 4, 5], soon).await;
    wait_until("a is ready", soon, || a.node.status().ready).await;

    // Redis holds the two live incarnations and their users, nothing of the swept ones.
    let (ia, ib) = (a.node.incarnation().unwrap(), b.node.incarnation().unwrap());
    assert_eq!(members(&mut admin, "roster:{r0}:nodes").await, strings(&[&ia, &ib]));
    assert_eq!(members(&mut admin, &format!("roster:{{r0}}:node:{ia}")).await, strings(&["1", "3", "5"]));
    assert_eq!(members(&mut admin, "roster:{r0}:count").await, strings(&["1", "3", "4", "5"]));
    assert_eq!(members(&mut admin, "roster:{r0}:names").await, strings(&["1", "3", "4", "5"]));
    let node_keys: BTreeSet<String> = keys(&mut admin).await.into_iter().filter(|k| k.starts_with("node:")).collect();
    assert_eq!(node_keys, strings(&[&format!("node:{ia}"), &format!("node:{ib}")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_command_connection_re_registers_without_a_flap() {
    let server = RedisServer::start();
    let mut admin = admin(&server).await;
    let soon = Duration::from_secs(5);
    let mut a = Probe::join("a", node(&server, "a"), 0).await;
    let mut b = Probe::join("b", node(&server, "b"), 0).await;
    a.node.send(up(&[1, 2]));
    b.node.send(up(&[2, 3]));
    converge(&mut a, &[1, 2, 3], soon).await;
    converge(&mut b, &[1, 2, 3], soon).await;
    wait_until("both registered", soon, || a.node.incarnation().is_some() && b.node.incarnation().is_some()).await;
    let (old_a, old_b) = (a.node.incarnation().unwrap(), b.node.incarnation().unwrap());

    // Every command connection dies (not the subscribers, not this one).
    let _: i64 = redis::cmd("CLIENT").arg(&["KILL", "TYPE", "normal"][..]).query_async(&mut admin).await.unwrap();
    wait_until("both re-registered", soon, || {
        a.node.incarnation().is_some_and(|i| i != old_a) && b.node.incarnation().is_some_and(|i| i != old_b)
    })
    .await;
    // Users they still hold were counted by the new incarnations before the old ones went:
    // nobody was shown Offline, nothing at all was announced.
    a.quiet(config().grace * 2).await;
    b.quiet(Duration::ZERO).await;
    assert_eq!(a.online.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    let (ia, ib) = (a.node.incarnation().unwrap(), b.node.incarnation().unwrap());
    assert_eq!(members(&mut admin, "roster:{r0}:nodes").await, strings(&[&ia, &ib]));
    assert_eq!(members(&mut admin, "roster:{r0}:count").await, strings(&["1", "2", "3"]));
    let count: i64 = redis::cmd("HGET").arg("roster:{r0}:count").arg("2").query_async(&mut admin).await.unwrap();
    assert_eq!(count, 2, "user 2 is up on both nodes, counted once per node");
    assert!(a.node.status().reconnects >= 1 && a.node.status().fenced == 0);
}
