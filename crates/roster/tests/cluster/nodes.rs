//! Presence across nodes, log-outs reaching every node, and nodes that die, pause or stop.
//!
//! "Nothing was announced" is shown with a marker: after the action (and past the grace),
//! another user comes online, and the watcher's next frame must be about that user.

use std::time::Duration;

use testkit::redis::RedisServer;

use crate::harness::*;
use crate::helpers::{post_form, DEADLINE};
use crate::ws_client::*;

const GRACE: Duration = Duration::from_secs(1);

fn flags() -> Vec<&'static str> {
    vec!["--presence-grace", "1s", "--node-lease", "2s", "--signup-limit", "1000"]
}

/// `name` comes online on `node` with a socket of their own; returns it.
async fn marker(node: &crate::helpers::TestServer, name: &str) -> Ws {
    let b = person(node, name).await;
    open(node, Some(&b), TUTORIAL).await.expect("marker socket")
}

#[tokio::test]
async fn presence_crosses_nodes_exactly_once() {
    let cluster = Cluster::new(RedisServer::start(), &flags()).await;
    let (a, b) = (cluster.node().await, cluster.node().await);
    let alice = person(&a, "alice").await;
    let mut tut = open(&a, Some(&alice), TUTORIAL).await.expect("tutorial watcher on A");
    assert_eq!(next_about(&mut tut, "alice").await, tutorial_frame("alice", true));
    let (mut v1, mut view) = watcher(&a, &alice).await;

    // A user who connects on B goes Online and Offline for a watcher on A.
    let bob = person(&b, "bob").await;
    let bob_ws = open(&b, Some(&bob), TUTORIAL).await.expect("bob on B");
    assert_eq!(next_not_about(&mut tut, "alice").await, tutorial_frame("bob", true));
    close(bob_ws).await;
    assert_eq!(next_not_about(&mut tut, "alice").await, tutorial_frame("bob", false));

    // Two tabs on two nodes: Online once; Offline only when both are closed.
    let carol = person(&a, "carol").await;
    let c1 = open(&a, Some(&carol), TUTORIAL).await.expect("carol on A");
    let c2 = open(&b, Some(&carol), TUTORIAL).await.expect("carol on B");
    assert_eq!(next_not_about(&mut tut, "alice").await, tutorial_frame("carol", true));
    close(c1).await;
    tokio::time::sleep(GRACE * 2).await; // past the grace: nothing may come about carol
    let _m1 = marker(&b, "marker1").await;
    assert_eq!(next_not_about(&mut tut, "alice").await, tutorial_frame("marker1", true), "nothing about carol");
    close(c2).await;
    assert_eq!(next_not_about(&mut tut, "alice").await, tutorial_frame("carol", false));

    // A reload onto another node within the grace announces nothing.
    let dave = person(&a, "dave").await;
    let d1 = open(&a, Some(&dave), TUTORIAL).await.expect("dave on A");
    assert_eq!(next_not_about(&mut tut, "alice").await, tutorial_frame("dave", true));
    close(d1).await;
    let _d2 = open(&b, Some(&dave), TUTORIAL).await.expect("dave reloads onto B");
    tokio::time::sleep(GRACE * 2).await;
    let _m2 = marker(&b, "marker2").await;
    assert_eq!(
        next_not_about(&mut tut, "alice").await,
        tutorial_frame("marker2", true),
        "the reload announced nothing"
    );

    // Every view and every node's list agree on the truth.
    let truth = names(&["alice", "dave", "marker1", "marker2"]);
    view_until(&mut v1, &mut view, &truth).await;
    for node in [&a, &b] {
        api_until(node, &alice, &truth, DEADLINE).await;
    }
}

#[tokio::test]
async fn log_out_on_one_node_closes_the_sessions_sockets_on_another_within_a_second() {
    let cluster = Cluster::new(RedisServer::start(), &flags()).await;
    let (a, b) = (cluster.node().await, cluster.node().await);
    let alice = person(&a, "alice").await;
    let (mut v1, mut view) = watcher(&a, &alice).await;
    let eve = person(&a, "eve").await;
    let mut on_b = open(&b, Some(&eve), TUTORIAL).await.expect("eve's page on B");
    view_until(&mut v1, &mut view, &names(&["alice", "eve"])).await;

    let token = crate::helpers::csrf(&a, &eve.client, "/log_out/").await;
    let started = tokio::time::Instant::now();
    let r = post_form(&a, &eve.client, "/log_out/", &[("csrfmiddlewaretoken", &token)]).await;
    assert_eq!(r.status(), 302);
    assert_eq!(close_code(&mut on_b).await, Some(4001), "B closes the logged-out session's socket");
    assert!(started.elapsed() < Duration::from_secs(1), "within a second: {:?}", started.elapsed());
    assert_eq!(open(&b, Some(&eve), TUTORIAL).await.err(), Some(403), "the old cookie opens nothing on B");
    view_until(&mut v1, &mut view, &names(&["alice"])).await;
}

#[tokio::test]
async fn a_killed_nodes_users_go_offline_within_the_lease_and_nothing_of_it_remains() {
    let cluster = Cluster::new(RedisServer::start(), &flags()).await;
    let (a, b) = (cluster.node().await, cluster.node().await);
    let alice = person(&a, "alice").await;
    let (mut v1, mut view) = watcher(&a, &alice).await;
    let frank = person(&b, "frank").await;
    let grace_user = person(&b, "gina").await;
    let _f = open(&b, Some(&frank), TUTORIAL).await.expect("frank on B");
    let _g = open(&b, Some(&grace_user), TUTORIAL).await.expect("gina on B");
    let _g_on_a = open(&a, Some(&grace_user), TUTORIAL).await.expect("gina also on A");
    view_until(&mut v1, &mut view, &names(&["alice", "frank", "gina"])).await;
    assert_eq!(cluster.leases(), 2);

    let killed = tokio::time::Instant::now();
    b.kill().await;
    view_until(&mut v1, &mut view, &names(&["alice", "gina"])).await;
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(2) + Duration::from_millis(1500), "offline within the lease: {took:?}");
    // Nothing of the dead node is left in Redis: one lease, one node set.
    assert_eq!(cluster.leases(), 1);
    assert_eq!(cluster.redis_keys(":node:").len(), 1, "{:?}", cluster.redis_keys(""));
    api_until(&a, &alice, &names(&["alice", "gina"]), DEADLINE).await;

    // A node started again (same database, same Redis) starts clean and shows the truth.
    let b2 = cluster.node().await;
    api_until(&b2, &alice, &names(&["alice", "gina"]), DEADLINE).await;
    let _f2 = open(&b2, Some(&frank), TUTORIAL).await.expect("frank back on the new node");
    view_until(&mut v1, &mut view, &names(&["alice", "frank", "gina"])).await;
}

#[tokio::test]
async fn a_node_paused_past_its_lease_comes_back_fenced_and_everyone_converges() {
    let cluster = Cluster::new(RedisServer::start(), &flags()).await;
    let (a, b) = (cluster.node().await, cluster.node().await);
    let alice = person(&a, "alice").await;
    let (mut v1, mut view) = watcher(&a, &alice).await;
    let hank = person(&b, "hank").await;
    let (mut hv1, mut hview) = watcher(&b, &hank).await;
    view_until(&mut v1, &mut view, &names(&["alice", "hank"])).await;

    b.signal("-STOP");
    // B's lease lapses: A's watcher sees hank go offline.
    view_until(&mut v1, &mut view, &names(&["alice"])).await;
    // Meanwhile, ivy comes online on A.
    let ivy = person(&a, "ivy").await;
    let _ivy = open(&a, Some(&ivy), TUTORIAL).await.expect("ivy on A");
    view_until(&mut v1, &mut view, &names(&["alice", "ivy"])).await;
    b.signal("-CONT");

    // B finds it was swept, re-registers, re-asserts hank: every client converges.
    let truth = names(&["alice", "hank", "ivy"]);
    view_until(&mut v1, &mut view, &truth).await;
    view_until(&mut hv1, &mut hview, &truth).await;
    for node in [&a, &b] {
        api_until(node, &alice, &truth, DEADLINE).await;
    }
    assert_eq!(cluster.leases(), 2, "the swept incarnation is gone, the new one holds a lease");
}

#[tokio::test]
async fn sigterm_hands_a_nodes_users_to_the_grace_and_leaves_redis() {
    let cluster = Cluster::new(RedisServer::start(), &["--presence-grace", "3s", "--signup-limit", "1000"]).await;
    let (a, b) = (cluster.node().await, cluster.node().await);
    let alice = person(&a, "alice").await;
    let mut tut = open(&a, Some(&alice), TUTORIAL).await.expect("watcher on A");
    assert_eq!(next_about(&mut tut, "alice").await, tutorial_frame("alice", true));
    let jack = person(&b, "jack").await;
    let kate = person(&b, "kate").await;
    let mut j = open(&b, Some(&jack), TUTORIAL).await.expect("jack on B");
    let mut k = open(&b, Some(&kate), TUTORIAL).await.expect("kate on B");
    assert_eq!(next_not_about(&mut tut, "alice").await["is_logged_in"], true);
    assert_eq!(next_not_about(&mut tut, "alice").await["is_logged_in"], true);

    let status = b.stop().await;
    assert!(status.success(), "a stopped node exits 0: {status}");
    assert_eq!(close_code(&mut j).await, Some(1001));
    assert_eq!(close_code(&mut k).await, Some(1001));
    // jack's page reconnects to A within the grace; kate's does not come back.
    let _j2 = open(&a, Some(&jack), TUTORIAL).await.expect("jack reconnects to A");
    // kate goes offline after the grace (not after the lease), jack never does.
    let started = tokio::time::Instant::now();
    assert_eq!(next_not_about(&mut tut, "alice").await, tutorial_frame("kate", false));
    // The other node learns the grace deadline from its next heartbeat (every third of the lease).
    assert!(started.elapsed() < Duration::from_secs(8), "after the grace, not the 10 s lease: {:?}", started.elapsed());
    let _m = marker(&a, "marker").await;
    assert_eq!(next_not_about(&mut tut, "alice").await, tutorial_frame("marker", true), "jack was never offline");
    assert_eq!(cluster.leases(), 1, "the stopped node left Redis");
    assert_eq!(cluster.redis_keys(":node:").len(), 1);
}

#[tokio::test]
async fn user_commands_given_the_cluster_reach_every_node_at_once() {
    let cluster = Cluster::new(RedisServer::start(), &flags()).await;
    let (a, b) = (cluster.node().await, cluster.node().await);
    let alice = person(&a, "alice").await;
    let (mut v1, mut view) = watcher(&a, &alice).await;
    let bob = person(&a, "bob").await;
    let carol = person(&b, "carol").await;
    let mut bob_a = open(&a, Some(&bob), TUTORIAL).await.expect("bob on A");
    let mut bob_b = open(&b, Some(&bob), TUTORIAL).await.expect("bob on B");
    let mut carol_b = open(&b, Some(&carol), TUTORIAL).await.expect("carol on B");
    view_until(&mut v1, &mut view, &names(&["alice", "bob", "carol"])).await;
    let redis = cluster.redis.url();

    let started = tokio::time::Instant::now();
    let new_password = format!("{}-new\n", crate::helpers::GOOD_PASSWORD);
    let out = crate::helpers::run_cli(
        &cluster.db_url,
        &["user", "set-password", "bob", "--redis-url", &redis],
        &new_password,
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(close_code(&mut bob_a).await, Some(4001));
    assert_eq!(close_code(&mut bob_b).await, Some(4001));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "within a second, not the 2 s reconciler: {:?}",
        started.elapsed()
    );

    let started = tokio::time::Instant::now();
    let out =
        crate::helpers::run_cli(&cluster.db_url, &["user", "deactivate", "carol", "--redis-url", &redis], "").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(close_code(&mut carol_b).await, Some(1008));
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    view_until(&mut v1, &mut view, &names(&["alice"])).await;
    assert_eq!(open(&b, Some(&carol), TUTORIAL).await.err(), Some(403));
}

/// The admin pages on node A act on sockets open on node B at once (not at B's 2 s reconcile):
/// log out everywhere closes them with 4001, deactivate with 1008.
#[tokio::test]
async fn admin_actions_on_one_node_close_the_sockets_on_another_within_a_second() {
    use crate::helpers::{csrf, log_in, run_cli, GOOD_PASSWORD};
    let cluster = Cluster::new(RedisServer::start(), &flags()).await;
    let (a, b) = (cluster.node().await, cluster.node().await);
    let out = run_cli(&cluster.db_url, &["user", "create", "root", "--staff"], &format!("{GOOD_PASSWORD}\n")).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = a.browser();
    assert_eq!(log_in(&a, &root.client, "root", GOOD_PASSWORD).await.status(), 302);
    let (bob, carol) = (person(&b, "bob").await, person(&b, "carol").await);
    let mut bob_b = open(&b, Some(&bob), TUTORIAL).await.expect("bob on B");
    let mut carol_b = open(&b, Some(&carol), TUTORIAL).await.expect("carol on B");
    let store = a.store().await;

    for (name, action, ws, code) in [("bob", "log-out", &mut bob_b, 4001), ("carol", "deactivate", &mut carol_b, 1008)]
    {
        let id = store.user_by_key(name).await.expect("query").expect("exists").id;
        let path = format!("/admin/users/{id}/{action}/");
        let token = csrf(&a, &root.client, &path).await;
        let started = tokio::time::Instant::now();
        let r = post_form(&a, &root.client, &path, &[("csrfmiddlewaretoken", &token)]).await;
        assert_eq!(r.status(), 302, "{action} {name}");
        assert_eq!(close_code(ws).await, Some(code), "{action} {name} on B");
        assert!(started.elapsed() < Duration::from_secs(1), "{action}: {:?}", started.elapsed());
    }
    assert_eq!(open(&b, Some(&carol), TUTORIAL).await.err(), Some(403), "carol is inactive on B too");
}
