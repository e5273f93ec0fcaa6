//! Live views (`roster.v2`) against the real binary: two windows of the list watched at once,
//! each exactly the page the JSON API (and so the HTML page) shows, live; view requests on the
//! same socket; bad windows and bad messages refused clearly.

use futures_util::SinkExt;
use presence::protocol::views::{view_request, PageView};
use presence::Window;
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::presence::{metric, wait_for_last_seen};
use crate::ws_client::*;

#[tokio::test]
async fn two_windows_follow_the_list_live() {
    let server = TestServer::start_with(&["--page-size", "2"]).await;
    let alice = user_browser(&server, "alice").await;
    let carol = user_browser(&server, "carol").await;
    for name in ["bob", "dave", "erin"] {
        assert_eq!(sign_up(&server, &server.client(), name, GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    }
    // No window in the URL: the first page, of the server's page size.
    let mut first = open(&server, Some(&alice), v2("")).await.expect("page 1");
    let mut second = open(&server, Some(&alice), v2("offset=2&limit=2&q=")).await.expect("page 2");
    let (mut p1, mut p2) = (PageView::default(), PageView::default());
    // Online first (alice, by her own sockets), then never seen, by id: alice carol bob dave erin.
    until(&mut p1, &mut first, "page 1", |v| shown(v) == ["alice+", "carol"]).await;
    until(&mut p2, &mut second, "page 2", |v| shown(v) == ["bob", "dave"]).await;
    assert_eq!((p1.limit, p1.counts.total, p1.counts.registered_count, p1.counts.online_count), (2, 5, 5, 1));
    assert!((p1.now - now_ms()).abs() < 60_000, "the snapshot carries the server's clock: {}", p1.now);

    // carol comes online: she sorts after alice, so bob moves from page 1 to page 2.
    let c = open(&server, Some(&carol), TUTORIAL).await.expect("carol");
    until(&mut p1, &mut first, "carol online on page 1", |v| shown(v) == ["alice+", "carol+"]).await;
    until(&mut p2, &mut second, "bob on page 2", |v| shown(v) == ["bob", "dave"] && v.counts.online_count == 2).await;
    assert_eq!(api_page(&server, &alice, 1).await, shown(&p1));
    assert_eq!(api_page(&server, &alice, 2).await, shown(&p2));
    let metrics = alice.client.get(server.url("/metrics")).send().await.expect("GET").text().await.expect("body");
    assert_eq!(metric(&metrics, "roster_view_groups"), 2.0, "one group per window: {metrics}");
    assert_eq!(metric(&metrics, "roster_directory_accounts"), 5.0, "{metrics}");

    // She leaves: the most recently seen of the offline ones, first after the online ones.
    close(c).await;
    until(&mut p1, &mut first, "carol offline", |v| shown(v) == ["alice+", "carol"]).await;
    assert!(p1.users[1].last_seen.is_some_and(|t| (now_ms() - t).abs() < 60_000), "{:?}", p1.users[1]);
    until(&mut p2, &mut second, "the counts on page 2", |v| v.counts.online_count == 1).await;
    wait_for_last_seen(&server, "carol").await;
    assert_eq!(api_page(&server, &alice, 1).await, shown(&p1));
    assert_eq!(api_page(&server, &alice, 2).await, shown(&p2));

    // Page 2's socket searches instead, on the same socket: its snapshot answers request 5.
    let search = Window::new(0, 2, "DA").expect("window");
    p2.requested(5);
    second.send(Message::text(view_request(5, &search))).await.expect("send");
    until(&mut p2, &mut second, "the search", |v| shown(v) == ["dave"]).await;
    assert_eq!((p2.counts.total, p2.q.as_str()), (1, "da"));

    // A sign-up that matches the search appears in it, live.
    assert_eq!(sign_up(&server, &server.client(), "Daisy", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    until(&mut p2, &mut second, "daisy", |v| shown(v) == ["dave", "Daisy"]).await;
    until(&mut p1, &mut first, "the registered count", |v| v.counts.registered_count == 6).await;
}

#[tokio::test]
async fn bad_windows_and_messages_are_refused_clearly() {
    let server = TestServer::start().await;
    let alice = user_browser(&server, "alice").await;
    for bad in ["limit=0", "offset=-3", "limit=1001", "q=%FF", "offset=x"] {
        assert_eq!(open(&server, Some(&alice), v2(bad)).await.err(), Some(400), "{bad}");
    }
    let mut ws = open(&server, Some(&alice), v2("limit=5")).await.expect("socket");
    let mut view = PageView::default();
    until(&mut view, &mut ws, "snapshot", |v| v.limit == 5).await;
    // A window out of bounds: an error frame naming the request; the window stays.
    ws.send(Message::text(r#"{"type":"view","id":6,"offset":0,"limit":5000}"#)).await.expect("send");
    let error = next_json(&mut ws).await.expect("a frame");
    assert_eq!(
        error,
        serde_json::json!({"type": "error", "view": 6, "error": "limit must be a whole number from 1 to 1000"})
    );
    // Not a view request at all: closed with 1007.
    ws.send(Message::text(r#"{"type":"view","id":7,"offset":0,"limit":5,"extra":true}"#)).await.expect("send");
    assert_eq!(close_code(&mut ws).await, Some(1007));

    let mut ws = open(&server, Some(&alice), v2("")).await.expect("socket");
    ws.send(Message::binary(vec![1u8, 2, 3])).await.expect("send");
    assert_eq!(close_code(&mut ws).await, Some(1003), "binary messages are not view requests");
    let mut ws = open(&server, Some(&alice), v2("")).await.expect("socket");
    let _ = ws.send(Message::text("x".repeat(2000))).await;
    assert_eq!(close_code(&mut ws).await, Some(1009), "view requests are small");
}
