//! More users than one script call takes (500): a node's leave, the sweep of a crashed node and
//! the last node's leave each go through several bounded calls, and every user goes Offline
//! exactly once (the probes fail on a second Offline or a gap). And a lost command connection
//! re-registers without anyone flapping.

use std::time::Duration;

use presence::event::{Change, Delivery, Event};
use presence::layer::conformance::Probe;
use presence::layer::Layer;
use presence::{UserId, UserRef};

use crate::support::{config, converge, node, wait_until, RedisServer};

const SOON: Duration = Duration::from_secs(5);

fn up(ids: impl IntoIterator<Item = UserId>) -> Vec<Change> {
    ids.into_iter().map(|id| Change::Up(UserRef::new(id, format!("user{id}")))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_and_sweeps_of_many_users_go_in_batches_once_each() {
    let server = RedisServer::start();
    let lease = config().lease;
    let mut watcher = Probe::join("watcher", node(&server, "watcher"), 0).await;

    // A graceful leave: 1,200 users into the grace, then Offline after it.
    let leaving = node(&server, "leaving");
    let _rx = leaving.join(0).unwrap();
    leaving.send(up(1..=1200));
    converge(&mut watcher, &(1..=1200).collect::<Vec<_>>(), SOON).await;
    leaving.leave().await;
    converge(&mut watcher, &[], SOON).await;

    // A crash: 1,200 users swept when the lease lapses.
    let crashing = node(&server, "crashing");
    let _rx = crashing.join(0).unwrap();
    crashing.send(up(2001..=3200));
    converge(&mut watcher, &(2001..=3200).collect::<Vec<_>>(), SOON).await;
    crashing.crash().await;
    converge(&mut watcher, &[], lease + SOON).await;
    wait_until("several sweep calls", SOON, || watcher.node.status().sweeps >= 3).await;

    // The last node leaving hears all its 1,200 users go Offline before its stream ends.
    watcher.node.leave().await;
    let last = node(&server, "last");
    let mut rx = last.join(0).unwrap();
    last.send(up(5001..=6200));
    let mut online = std::collections::BTreeSet::new();
    while online.len() < 1200 {
        match tokio::time::timeout(SOON, rx.recv()).await.expect("1,200 Online") {
            Some(Delivery::Event(_, Event::Online(u))) => assert!(online.insert(u.id), "Online once: {}", u.id),
            Some(Delivery::Resync(state)) => online = state.online.iter().map(|u| u.id).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }
    last.leave().await;
    while let Some(d) = tokio::time::timeout(SOON, rx.recv()).await.expect("the stream ends") {
        if let Delivery::Event(_, Event::Offline(u, _)) = d {
            assert!(online.remove(&u.id), "Offline once: {}", u.id);
        }
    }
    assert!(online.is_empty(), "{} users never went offline", online.len());
}
