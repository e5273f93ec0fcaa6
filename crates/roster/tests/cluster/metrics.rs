//! The presence layer's figures in `/metrics` (issue #10, point 9), read as Prometheus reads
//! them: Redis round trips, a gap in the cluster sequence and the resync it causes, a sweep of a
//! dead node, a reconnect after Redis restarts. Each is made to happen, then seen to move.

use testkit::redis::RedisServer;

use crate::harness::*;
use crate::prometheus::{until, Scrape};
use crate::ws_client::*;

const REDIS_SECONDS: &str = "roster_layer_redis_seconds";

#[tokio::test]
async fn the_layers_figures_move_in_metrics() {
    let flags = ["--presence-grace", "0s", "--node-lease", "2s", "--signup-limit", "1000"];
    let mut cluster = Cluster::new(RedisServer::start(), &flags).await;
    let (a, b) = (cluster.node().await, cluster.node().await);
    let (metrics_a, metrics_b) = (a.url("/metrics"), b.url("/metrics"));
    let alice = person(&a, "alice").await;
    let (mut v1, mut view) = watcher(&a, &alice).await;
    view_until(&mut v1, &mut view, &names(&["alice"])).await;
    let before = Scrape::get(&metrics_a).await;
    assert_eq!(before.sum("roster_layer_ready", &[]), 1.0);
    let figure = |s: &Scrape, name: &str| s.sum(name, &[]) - before.sum(name, &[]);

    // Every change is one script call to Redis, timed.
    let bob = person(&b, "bob").await;
    let _bob = open(&b, Some(&bob), TUTORIAL).await.expect("bob on B");
    view_until(&mut v1, &mut view, &names(&["alice", "bob"])).await;
    let on_b = Scrape::get(&metrics_b).await;
    assert!(on_b.count(REDIS_SECONDS, &[]) >= 2.0, "bob's sign-up and socket went through Redis");
    let scripts = on_b.label_values(&format!("{REDIS_SECONDS}_count"), "script");
    assert!(!scripts.is_empty() && scripts.iter().all(|s| !s.is_empty()), "{scripts:?}");

    // A message lost to pub/sub (the sequence moved, nothing was published), then a real change:
    // A sees the gap, resyncs, and still shows the truth.
    cluster.redis.command(&["INCR", "roster:{r0}:seq"]);
    let carol = person(&b, "carol").await;
    let _carol = open(&b, Some(&carol), TUTORIAL).await.expect("carol on B");
    until(&metrics_a, "a gap and its resync", |s| {
        figure(s, "roster_layer_seq_gaps_total") >= 1.0 && figure(s, "roster_layer_resyncs_total") >= 1.0
    })
    .await;
    view_until(&mut v1, &mut view, &names(&["alice", "bob", "carol"])).await;

    // B dies: A sweeps it once its lease lapses.
    b.kill().await;
    until(&metrics_a, "a sweep", |s| figure(s, "roster_layer_sweeps_total") >= 1.0).await;
    view_until(&mut v1, &mut view, &names(&["alice"])).await;

    // Redis restarts: A reconnects and is ready again.
    cluster.redis.restart_empty();
    let after = until(&metrics_a, "a reconnect", |s| {
        figure(s, "roster_layer_reconnects_total") >= 1.0 && s.sum("roster_layer_ready", &[]) == 1.0
    })
    .await;
    assert_eq!(after.types.get("roster_layer_reconnects_total").map(String::as_str), Some("counter"));
    assert!(after.count(REDIS_SECONDS, &[]) > before.count(REDIS_SECONDS, &[]));
}
