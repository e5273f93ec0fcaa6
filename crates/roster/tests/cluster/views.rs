//! Live views (`roster.v2`) in a cluster: every node serves windows from its own replica of the
//! online set, so a change on one node moves the windows watched on every node, and a change
//! outside a window reaches it as counts only.

use presence::protocol::views::PageView;
use reqwest::StatusCode;
use testkit::redis::RedisServer;

use crate::harness::*;
use crate::helpers::{api_page, sign_up, GOOD_PASSWORD};
use crate::ws_client::*;

#[tokio::test]
async fn windows_on_every_node_follow_changes_made_on_any_node() {
    let flags = ["--presence-grace", "0s", "--node-lease", "2s", "--signup-limit", "1000", "--page-size", "2"];
    let cluster = Cluster::new(RedisServer::start(), &flags).await;
    let (a, b) = (cluster.node().await, cluster.node().await);
    let alice = person(&a, "alice").await;
    let bob = person(&b, "bob").await;
    let zed = person(&b, "zed").await;

    // Alice's page on A: online first by name, then the never-seen by id.
    let mut on_a = open(&a, Some(&alice), v2("offset=0&limit=2&q=")).await.expect("alice's page on A");
    let mut pa = PageView::default();
    until(&mut pa, &mut on_a, "alice's first page", |v| shown(v) == ["alice+", "bob"]).await;
    assert_eq!((pa.counts.online_count, pa.counts.registered_count), (1, 3));

    // zed comes online on B: he sorts into A's window (the second online name).
    let zed_ws = open(&b, Some(&zed), TUTORIAL).await.expect("zed on B");
    until(&mut pa, &mut on_a, "zed in place", |v| shown(v) == ["alice+", "zed+"]).await;

    // bob opens the same window on B: B's replica shows the same page; A's window moves.
    let mut on_b = open(&b, Some(&bob), v2("offset=0&limit=2&q=")).await.expect("bob's page on B");
    let mut pb = PageView::default();
    until(&mut pb, &mut on_b, "bob's first page", |v| shown(v) == ["alice+", "bob+"]).await;
    until(&mut pa, &mut on_a, "bob in place, zed pushed out", |v| shown(v) == ["alice+", "bob+"]).await;
    assert_eq!(pa.counts.online_count, 3);

    // A sign-up on B, and zed leaving B: both outside the windows, so counts only.
    assert_eq!(sign_up(&b, &b.client(), "carol", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    close(zed_ws).await;
    for (p, ws, node) in [(&mut pa, &mut on_a, "A"), (&mut pb, &mut on_b, "B")] {
        let what = format!("the counts on {node}");
        until(p, ws, &what, |v| (v.counts.online_count, v.counts.registered_count) == (2, 4)).await;
        assert_eq!(shown(p), ["alice+", "bob+"], "the window on {node} is unchanged");
    }
    // Each node's JSON API (the list page's query) shows the same first page.
    assert_eq!(api_page(&a, &alice, 1).await, shown(&pa));
    assert_eq!(api_page(&b, &bob, 1).await, shown(&pb));
}
