//! Redis and PostgreSQL outages: nodes keep serving, say what is wrong on `/readyz`, recover by
//! themselves, and every client ends with the exact truth. No node is restarted.

use std::time::Duration;

use testkit::redis::RedisServer;

use crate::harness::*;
use crate::helpers::DEADLINE;
use crate::ws_client::*;

fn flags() -> Vec<&'static str> {
    vec!["--presence-grace", "0s", "--node-lease", "2s", "--signup-limit", "1000"]
}

#[tokio::test]
async fn redis_killed_and_restarted_empty_then_with_old_data() {
    let mut cluster = Cluster::new(RedisServer::start_persistent(), &flags()).await;
    let (a, b) = (cluster.node().await, cluster.node().await);
    let alice = person(&a, "alice").await;
    let bob = person(&b, "bob").await;
    let (mut va, mut view_a) = watcher(&a, &alice).await;
    let (mut vb, mut view_b) = watcher(&b, &bob).await;
    let truth = names(&["alice", "bob"]);
    view_until(&mut va, &mut view_a, &truth).await;
    view_until(&mut vb, &mut view_b, &truth).await;
    let carol = person(&a, "carol").await;
    let dave = person(&b, "dave").await;
    let mut carol_ws = Some(open(&a, Some(&carol), TUTORIAL).await.expect("carol on A"));
    view_until(&mut vb, &mut view_b, &names(&["alice", "bob", "carol"])).await;

    // Redis dies. Nodes keep serving pages and sockets; /readyz names Redis.
    cluster.redis.kill();
    for node in [&a, &b] {
        let (_, body) = readyz_until(node, "503 naming Redis", |s, b| s == 503 && b.contains("redis")).await;
        assert!(body.contains("presence layer"), "{body}");
        let page = alice.client.get(node.url("/")).send().await.expect("GET /");
        assert_eq!(page.status(), 200, "pages load while Redis is down");
    }
    // Changes made during the outage are the truth afterwards.
    close(carol_ws.take().expect("carol's socket")).await;
    let _dave_ws = open(&b, Some(&dave), TUTORIAL).await.expect("a socket opens while Redis is down");
    tokio::time::sleep(Duration::from_secs(3)).await; // down for a while (longer than the lease)

    // Redis comes back empty: nodes reconnect, re-register, resync. Nobody restarted.
    cluster.redis.restart_empty();
    let truth = names(&["alice", "bob", "dave"]);
    for node in [&a, &b] {
        readyz_until(node, "200 again", |s, _| s == 200).await;
        api_until(node, &alice, &truth, DEADLINE).await;
    }
    view_until(&mut va, &mut view_a, &truth).await;
    view_until(&mut vb, &mut view_b, &truth).await;
    assert_eq!(cluster.leases(), 2);

    // Redis restarted with its old data (append-only file): a node that died meanwhile left
    // stale entries; they are swept, and the state is exact.
    let c = cluster.node().await;
    let erin = person(&c, "erin").await;
    let _e = open(&c, Some(&erin), TUTORIAL).await.expect("erin on C");
    let truth = names(&["alice", "bob", "dave", "erin"]);
    view_until(&mut va, &mut view_a, &truth).await;
    cluster.redis.kill();
    c.kill().await; // dies while Redis is down: its entries stay in Redis's file
    cluster.redis.restart();
    let truth = names(&["alice", "bob", "dave"]);
    for node in [&a, &b] {
        readyz_until(node, "200 again", |s, _| s == 200).await;
        api_until(node, &alice, &truth, DEADLINE).await;
    }
    view_until(&mut va, &mut view_a, &truth).await;
    view_until(&mut vb, &mut view_b, &truth).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while cluster.leases() != 2 || cluster.redis_keys(":node:").len() != 2 {
        assert!(tokio::time::Instant::now() < deadline, "stale entries stay: {:?}", cluster.redis_keys(""));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn postgres_outage_gives_503_pages_keeps_sockets_and_recovers() {
    // Its own PostgreSQL: this test stops it.
    let pg = testkit::pg::PgCluster::start();
    let db_url = pg.fresh_database_url().await;
    let redis = RedisServer::start();
    let cluster = Cluster::with_database(redis, db_url, &flags());
    let a = cluster.node().await;
    let alice = person(&a, "alice").await;
    let bob = person(&a, "bob").await;
    let (mut va, mut view) = watcher(&a, &alice).await;
    let bob_ws = open(&a, Some(&bob), TUTORIAL).await.expect("bob");
    view_until(&mut va, &mut view, &names(&["alice", "bob"])).await;

    pg.stop();
    readyz_until(&a, "503 naming the database", |s, b| s == 503 && b.contains("database")).await;
    // A page needs the database (the session cache may still hold alice for a second): wait
    // for the plain 503.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = alice.client.get(a.url("/")).send().await.expect("GET /");
        if r.status() == 503 {
            let body = r.text().await.unwrap_or_default();
            assert!(body.contains("database cannot be reached"), "a plain message: {body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never 503: {}", r.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Open sockets stay open and live: a socket closed meanwhile still reaches the watcher.
    close(bob_ws).await;
    view_until(&mut va, &mut view, &names(&["alice"])).await;

    pg.restart();
    readyz_until(&a, "200 again", |s, _| s == 200).await;
    let r = alice.client.get(a.url("/")).send().await.expect("GET /");
    assert_eq!(r.status(), 200, "the node recovered by itself");
    let _b2 = open(&a, Some(&bob), TUTORIAL).await.expect("bob back");
    view_until(&mut va, &mut view, &names(&["alice", "bob"])).await;
}
