//! The Redis work of one presence change does not grow with the users online: the commands one
//! Up and one Down cost (from `INFO commandstats`, the scripts' inner commands included) are
//! the same with 10 and with 5,000 users online.

use std::collections::BTreeMap;
use std::time::Duration;

use presence::event::{Change, Event};
use presence::layer::conformance::Probe;
use presence::layer::{Layer, LayerConfig};
use presence::{UserId, UserRef};
use presence_redis::RedisLayer;
use redis::aio::MultiplexedConnection;

use crate::support::{admin, config, converge, node_at, RedisServer};

type Counts = BTreeMap<String, u64>;

/// Calls per command since the server started (the `INFO` that reads them left out).
async fn commandstats(conn: &mut MultiplexedConnection) -> Counts {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?.parse().ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

fn diff(before: &Counts, after: &Counts) -> Counts {
    after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0))).filter(|(_, v)| *v > 0).collect()
}

fn user(id: UserId) -> UserRef {
    UserRef::new(id, format!("user{id}"))
}

/// The commands of one Up and of one log-out Down of a user nobody else has.
async fn one_change(p: &mut Probe<RedisLayer>, admin: &mut MultiplexedConnection, id: UserId) -> (Counts, Counts) {
    let before = commandstats(admin).await;
    p.node.send(vec![Change::Up(user(id))]);
    p.expect(&Event::Online(user(id)), Duration::from_secs(5)).await;
    let up = diff(&before, &commandstats(admin).await);
    let before = commandstats(admin).await;
    p.node.send(vec![Change::Down { user: id, at: 1, logout: true }]);
    p.expect(&Event::Offline(user(id), 0), Duration::from_secs(5)).await;
    let down = diff(&before, &commandstats(admin).await);
    (up, down)
}

async fn bring_online(p: &mut Probe<RedisLayer>, ids: std::ops::RangeInclusive<UserId>) {
    let want: Vec<UserId> = (1..=*ids.end()).collect();
    for chunk in ids.collect::<Vec<_>>().chunks(1000) {
        p.node.send(chunk.iter().map(|&id| Change::Up(user(id))).collect());
    }
    converge(p, &want, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_costs_the_same_commands_at_10_and_5000_users() {
    let server = RedisServer::start();
    // A lease long enough to pause the heartbeats during each measurement.
    let layer = LayerConfig { lease: Duration::from_secs(60), ..config() };
    let mut p = Probe::join("a", node_at(&server.url(), "a", layer), 0).await;
    let mut admin = admin(&server).await;

    bring_online(&mut p, 1..=10).await;
    p.node.pause_upkeep(true).await;
    let small = one_change(&mut p, &mut admin, 100_001).await;
    p.node.pause_upkeep(false).await;

    bring_online(&mut p, 11..=5000).await;
    p.node.pause_upkeep(true).await;
    let large = one_change(&mut p, &mut admin, 100_002).await;
    p.node.pause_upkeep(false).await;

    assert_eq!(small, large, "the commands of one change depend on the users online");
    let (up, down) = small;
    for counts in [&up, &down] {
        assert_eq!(counts.get("evalsha"), Some(&1), "one script call per change: {counts:?}");
        assert_eq!(counts.get("publish"), Some(&1), "one event: {counts:?}");
        assert!(counts.values().sum::<u64>() <= 16, "a handful of commands: {counts:?}");
    }
    eprintln!("one Up: {up:?}\none Down: {down:?}");
}
