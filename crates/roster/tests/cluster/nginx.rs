//! Behind nginx: the configuration block of `docs/deploy.md`, as written but for the three node
//! addresses and the `listen` port (the placeholders below), run by Debian's nginx in front of
//! three nodes, carries the tutorial flow: sign up, log in, the list page, and the WebSocket
//! upgrade with another user's Online and Offline; two requests in a row land on two nodes (no
//! sticky sessions); the nodes see the client's address, not nginx's or a forged one, and the
//! scheme nginx saw, not one the client claimed.

use std::net::SocketAddr;
use std::time::Duration;

use testkit::nginx::Nginx;
use testkit::redis::RedisServer;

use crate::harness::Cluster;
use crate::helpers::*;
use crate::ws_client::*;

/// The node addresses of docs/deploy.md's block, in order: each is replaced by a node's.
const NODE_PLACEHOLDERS: [&str; 3] = ["10.0.0.11:8000", "10.0.0.12:8000", "10.0.0.13:8000"];
/// Its listen line, replaced by the test's port on 127.0.0.1.
const LISTEN_PLACEHOLDER: &str = "listen 80;";
/// The comment that precedes the block in docs/deploy.md.
const BLOCK_MARKER: &str = "runs the next block as written";
/// The client's address (nginx listens on 127.0.0.1 and reaches the nodes from there).
const CLIENT: &str = "127.0.0.2";

impl Site for Nginx {
    fn addr(&self) -> SocketAddr {
        Nginx::addr(self)
    }
}

/// docs/deploy.md's nginx block with the nodes' addresses and `port` in place of the
/// placeholders, each of which must be there exactly once; nothing else is changed.
fn deploy_config(nodes: &[SocketAddr], port: u16) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let after = doc.split_once(BLOCK_MARKER).expect("docs/deploy.md marks the tested block").1;
    let block = after.split_once("```nginx\n").and_then(|(_, rest)| rest.split_once("```")).expect("an nginx block").0;
    let mut conf = block.to_owned();
    for (placeholder, node) in NODE_PLACEHOLDERS.iter().zip(nodes) {
        assert_eq!(conf.matches(placeholder).count(), 1, "docs/deploy.md's block names {placeholder} once");
        conf = conf.replace(placeholder, &node.to_string());
    }
    assert_eq!(conf.matches(LISTEN_PLACEHOLDER).count(), 1, "docs/deploy.md's block has one `{LISTEN_PLACEHOLDER}`");
    conf.replace(LISTEN_PLACEHOLDER, &format!("listen 127.0.0.1:{port};"))
}

/// Which node logged the request for `path`, and its access-log line.
async fn served_by(nodes: &[TestServer], path: &str) -> (usize, String) {
    let needle = format!("HTTP GET {path} ");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        for (i, node) in nodes.iter().enumerate() {
            if let Some(line) = node.logs().lines().find(|l| l.contains(&needle)) {
                return (i, line.to_owned());
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no node logged GET {path}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_deploy_guides_nginx_config_carries_the_tutorial_flow_over_three_nodes() {
    let cluster =
        Cluster::new(RedisServer::start(), &["--trusted-proxies", "127.0.0.1", "--signup-limit", "100"]).await;
    let nodes = [cluster.node().await, cluster.node().await, cluster.node().await];
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let nginx = Nginx::start(|port| deploy_config(&addrs, port));

    // Sign up, log in and the list page, through nginx.
    let alice = nodes[0].browser_from(CLIENT);
    assert_eq!(sign_up(&nginx, &alice.client, "alice", GOOD_PASSWORD).await.status(), 302, "{}", nginx.log());
    let r = log_in(&nginx, &alice.client, "alice", GOOD_PASSWORD).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/"));
    let page = alice.client.get(nginx.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("body").contains("alice"), "the list page shows alice");

    // The tutorial's WebSocket, upgraded through nginx: another user's Online and Offline.
    let from_client = Opts { source: Some(CLIENT), ..TUTORIAL };
    let mut tut = open(&nginx, Some(&alice), from_client).await.expect("the upgrade passes nginx");
    assert_eq!(next_about(&mut tut, "alice").await, tutorial_frame("alice", true));
    let bob = nodes[0].browser_from(CLIENT);
    assert_eq!(sign_up(&nginx, &bob.client, "bob", GOOD_PASSWORD).await.status(), 302);
    assert_eq!(log_in(&nginx, &bob.client, "bob", GOOD_PASSWORD).await.status(), 302);
    let bob_ws = open(&nginx, Some(&bob), from_client).await.expect("bob's socket through nginx");
    assert_eq!(next_not_about(&mut tut, "alice").await, tutorial_frame("bob", true));
    close(bob_ws).await;
    assert_eq!(next_not_about(&mut tut, "alice").await, tutorial_frame("bob", false));
    assert!(nginx.access_log().contains("\"GET /users/ HTTP/1.1\" 101"), "{}", nginx.access_log());

    // No sticky sessions: two requests in a row from one browser land on two nodes. Each node
    // logs the client's address: not nginx's, and not the one the client forged.
    let mut served = Vec::new();
    for probe in ["/probe-nginx-1", "/probe-nginx-2"] {
        let r = alice
            .client
            .get(nginx.url(probe))
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 404);
        // The scheme is what nginx saw (plain HTTP), not what the client claimed.
        assert!(r.headers().get("strict-transport-security").is_none(), "the client's X-Forwarded-Proto was believed");
        let (node, line) = served_by(&nodes, probe).await;
        assert!(line.ends_with(&format!(", {CLIENT}]")), "the client's address, through nginx: {line}");
        served.push(node);
    }
    assert_ne!(served[0], served[1], "two requests in a row went to one node: sticky");
    // (The same header from the trusted proxy itself is believed: the check above means something.)
    let direct = nodes[0].browser_from("127.0.0.1");
    let r = direct.client.get(nodes[0].url("/probe-direct")).header("x-forwarded-proto", "https").send().await;
    assert!(r.expect("GET").headers().get("strict-transport-security").is_some());
}
