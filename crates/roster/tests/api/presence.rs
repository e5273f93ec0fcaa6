//! Live presence on one node, end to end: real sockets against the real binary.
//!
//! "Nothing was announced" is shown with a marker: after the action, another user comes
//! online, and the watcher's very next frame must be about that user (frames are in order).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::SinkExt;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::ws_client::*;

/// Waits (with a deadline) until `username`'s last_seen is in the store.
pub(crate) async fn wait_for_last_seen(server: &TestServer, username: &str) {
    let store = server.store().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while store.user_by_key(username).await.expect("q").expect("user").last_seen.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "last_seen was never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn api_online(server: &TestServer, b: &Browser) -> BTreeSet<String> {
    let snapshot: Value =
        b.client.get(server.url("/api/users/")).send().await.expect("GET").json().await.expect("json");
    assert_eq!(snapshot["type"], "snapshot");
    snapshot["online"]
        .as_array()
        .expect("online")
        .iter()
        .map(|u| u["username"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn watcher_sees_true_then_false_in_both_modes() {
    let server = TestServer::start().await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let mut tutorial = open(&server, Some(&alice), TUTORIAL).await.expect("tutorial socket");
    let mut v1 = open(&server, Some(&alice), V1).await.expect("v1 socket");
    let mut view = View::default();
    // The snapshot is as of the last batch (at most a tick old): bob's sign-up may come after it.
    view.until(&mut v1, "the snapshot, then both sign-ups counted", |v| v.seq.is_some() && v.registered_count == 2)
        .await;

    let b = open(&server, Some(&bob), TUTORIAL).await.expect("bob's socket");
    assert_eq!(next_about(&mut tutorial, "bob").await, tutorial_frame("bob", true));
    view.until(&mut v1, "bob online", |v| v.online_names().contains("bob")).await;

    close(b).await;
    assert_eq!(next_about(&mut tutorial, "bob").await, tutorial_frame("bob", false));
    view.until(&mut v1, "bob offline", |v| !v.online_names().contains("bob")).await;
    let seen = view.last_seen["bob"];
    assert!((crate::helpers::now_ms() - seen).abs() < 60_000, "last_seen is the time bob left: {seen}");

    // last_seen reaches the store and the page.
    wait_for_last_seen(&server, "bob").await;
    let page = alice.client.get(server.url("/")).send().await.expect("GET").text().await.expect("body");
    assert!(page.contains(">bob: Offline</li>") && page.contains("data-seen=\"last seen "), "{page}");
    assert!(page.contains(">alice: Online</li>"), "alice's own sockets are open: {page}");
}

#[tokio::test]
async fn two_tabs_closing_one_announces_nothing_and_the_last_after_grace() {
    let grace = Duration::from_millis(800);
    let server = TestServer::start_with(&["--presence-grace", "800ms"]).await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let carol = user_browser(&server, "carol").await;
    let mut watch = open(&server, Some(&alice), TUTORIAL).await.expect("watcher");

    let tab1 = open(&server, Some(&bob), TUTORIAL).await.expect("tab 1");
    let tab2 = open(&server, Some(&bob), TUTORIAL).await.expect("tab 2");
    assert_eq!(next_not_about(&mut watch, "alice").await, tutorial_frame("bob", true));
    close(tab1).await;
    let _marker = open(&server, Some(&carol), TUTORIAL).await.expect("carol");
    assert_eq!(
        next_not_about(&mut watch, "alice").await,
        tutorial_frame("carol", true),
        "closing one of two tabs announced something"
    );

    let closed_at = tokio::time::Instant::now();
    close(tab2).await;
    assert_eq!(next_not_about(&mut watch, "alice").await, tutorial_frame("bob", false));
    assert!(closed_at.elapsed() >= grace - Duration::from_millis(50), "Offline came before the grace period ended");
}

#[tokio::test]
async fn a_reload_within_grace_announces_nothing() {
    let server = TestServer::start_with(&["--presence-grace", "3s"]).await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let carol = user_browser(&server, "carol").await;
    let mut watch = open(&server, Some(&alice), TUTORIAL).await.expect("watcher");
    let page = open(&server, Some(&bob), TUTORIAL).await.expect("bob");
    assert_eq!(next_not_about(&mut watch, "alice").await, tutorial_frame("bob", true));

    close(page).await; // the reload: close, then open again at once
    let _reloaded = open(&server, Some(&bob), TUTORIAL).await.expect("bob again");
    let _marker = open(&server, Some(&carol), TUTORIAL).await.expect("carol");
    assert_eq!(
        next_not_about(&mut watch, "alice").await,
        tutorial_frame("carol", true),
        "the reload flashed Offline/Online"
    );
    assert!(api_online(&server, &alice).await.contains("bob"));
}

#[tokio::test]
async fn a_closed_socket_shows_offline_on_the_page_once_grace_ends() {
    let server = TestServer::start_with(&["--presence-grace", "500ms"]).await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let mut watch = open(&server, Some(&alice), TUTORIAL).await.expect("watcher");
    let b = open(&server, Some(&bob), TUTORIAL).await.expect("bob");
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", true));
    let page = alice.client.get(server.url("/")).send().await.expect("GET").text().await.expect("body");
    assert!(page.contains(">bob: Online</li>"), "{page}");

    drop(b); // the browser vanishes without a close handshake or a log out
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", false));
    let page = alice.client.get(server.url("/")).send().await.expect("GET").text().await.expect("body");
    assert!(page.contains(">bob: Offline</li>"), "the tutorial would show Online forever: {page}");
}

#[tokio::test]
async fn log_out_closes_the_sessions_sockets_with_4001_and_announces_offline_at_once() {
    // A long grace: Offline must not wait for it.
    let server = TestServer::start_with(&["--presence-grace", "120s"]).await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let mut watch = open(&server, Some(&alice), TUTORIAL).await.expect("watcher");
    let mut tab1 = open(&server, Some(&bob), TUTORIAL).await.expect("tab 1");
    let mut tab2 = open(&server, Some(&bob), V1).await.expect("tab 2");
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", true));

    let token = csrf(&server, &bob.client, "/log_out/").await;
    let r = post_form(&server, &bob.client, "/log_out/", &[("csrfmiddlewaretoken", &token)]).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(close_code(&mut tab1).await, Some(4001));
    assert_eq!(close_code(&mut tab2).await, Some(4001));
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", false), "Offline at once, not after 120 s");
    // The old session cannot open a socket again.
    assert_eq!(open(&server, Some(&bob), TUTORIAL).await.err(), Some(403));
}

#[tokio::test]
async fn refused_handshakes_and_client_frames_change_nothing() {
    let server = TestServer::start_with(&["--allowed-origins", "https://roster.example"]).await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let dave = user_browser(&server, "dave").await;
    assert_eq!(open(&server, None, TUTORIAL).await.err(), Some(403), "anonymous");
    let foreign = Opts { origin: Some("http://evil.example"), ..TUTORIAL };
    assert_eq!(open(&server, Some(&alice), foreign).await.err(), Some(403), "foreign Origin");
    let allowed = Opts { origin: Some("https://roster.example"), ..TUTORIAL };
    close(open(&server, Some(&alice), allowed).await.expect("an allowed origin connects")).await;

    let mut watch = open(&server, Some(&alice), TUTORIAL).await.expect("watcher");
    let mut other = open(&server, Some(&alice), V1).await.expect("another socket");
    let mut other_view = View::default();
    other_view.until(&mut other, "snapshot", |v| v.seq.is_some()).await;
    let mut b = open(&server, Some(&bob), TUTORIAL).await.expect("bob");
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", true));

    for forged in [
        Message::text(r#"{"username": "carol", "is_logged_in": true}"#),
        Message::text(r#"{"username": "alice", "is_logged_in": false}"#),
        Message::text(r#"{"type": "snapshot", "seq": 99, "online": [], "online_count": 0, "registered_count": 0}"#),
        Message::text("not json {"),
        Message::binary(vec![0u8, 159, 146, 150]),
    ] {
        b.send(forged).await.expect("send");
    }
    let _marker = open(&server, Some(&dave), TUTORIAL).await.expect("dave");
    assert_eq!(
        next_not_about(&mut watch, "alice").await,
        tutorial_frame("dave", true),
        "a client frame changed presence"
    );
    let everyone = |v: &View| ["alice", "bob", "dave"].iter().all(|n| v.online_names().contains(*n));
    other_view.until(&mut other, "alice, bob and dave online on the other socket", everyone).await;
    assert_eq!(
        api_online(&server, &alice).await,
        BTreeSet::from(["alice".to_owned(), "bob".to_owned(), "dave".to_owned()])
    );

    // An oversized frame ends only the sender's socket.
    let _ = b.send(Message::text("x".repeat(70 * 1024))).await;
    assert_eq!(next_not_about(&mut watch, "alice").await, tutorial_frame("bob", false));
    other_view.until(&mut other, "bob gone on the other socket", |v| !v.online_names().contains("bob")).await;
    assert!(other_view.online_names().contains("alice") && other_view.online_names().contains("dave"));
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_a_snapshot_when_it_reads_again() {
    let server = TestServer::start_with(&[
        "--tick",
        "0s",
        "--send-queue",
        "32",
        "--tcp-send-buffer",
        "16384",
        // The stalled reader must outlive the burst however slow the machine is: this test is
        // about the queue, not the liveness deadline (tested on its own).
        "--ping-interval",
        "600s",
    ])
    .await;
    let alice = user_browser(&server, "alice").await;
    // Long names make frames big, so the slow socket's kernel buffers fill quickly.
    let names: Vec<String> = (0..10).map(|i| format!("{}{i}", "u".repeat(140))).collect();
    let mut people = Vec::new();
    for n in &names {
        people.push(user_browser(&server, n).await);
    }
    let stayer = user_browser(&server, "stayer").await;

    let slow_opts = Opts { recv_buffer: Some(4096), ..V1 };
    let mut slow = open(&server, Some(&alice), slow_opts).await.expect("slow socket");
    let mut view = View::default();
    view.until(&mut slow, "the first snapshot", |v| v.seq.is_some()).await;

    // 5,000 changes, one after another (so with --tick 0s each is its own batch): ten people
    // take turns opening and closing a socket, 250 times each.
    let cookies: Vec<String> = people.iter().map(Browser::cookie_header).collect();
    for i in 0..2500 {
        let ws = crate::ws_client::open_raw(server.addr, &cookies[i % cookies.len()]).await;
        close(ws).await;
    }
    let _stay = open(&server, Some(&stayer), TUTORIAL).await.expect("stayer");

    // Now read: the missed diffs are replaced by a fresh snapshot, and the view is exact.
    let expected: BTreeSet<String> = ["alice", "stayer"].iter().map(|s| (*s).to_owned()).collect();
    view.until(&mut slow, "the true final state", |v| v.online_names() == expected).await;
    let metrics = alice.client.get(server.url("/metrics")).send().await.expect("GET").text().await.expect("body");
    assert!(
        view.snapshots >= 2,
        "the slow reader was resynced with a snapshot ({} snapshots); metrics:\n{metrics}",
        view.snapshots
    );

    // The server held at most --send-queue batches for it.
    let max_queue = metric(&metrics, "roster_send_queue_max_depth");
    assert!(max_queue <= 32.0, "queue depth {max_queue} exceeded the bound of 32");
    assert!(metric(&metrics, "roster_lagging_resyncs_total") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn a_socket_that_stopped_reading_ends_at_its_log_out_not_at_the_liveness_deadline() {
    // The liveness deadline is ten minutes away: only the log out can end this socket in time.
    let server =
        TestServer::start_with(&["--tick", "0s", "--tcp-send-buffer", "4096", "--ping-interval", "600s"]).await;
    let alice = user_browser(&server, "alice").await;
    let other = user_browser(&server, &"b".repeat(140)).await;
    let stalled = open(&server, Some(&alice), Opts { recv_buffer: Some(4096), ..V1 }).await.expect("alice");
    // 1,000 changes of a long name, about 200 KB for alice, who reads none of it: both socket
    // buffers (some 16 KB) fill and the server's write to her waits.
    let cookie = other.cookie_header();
    for _ in 0..500 {
        close(crate::ws_client::open_raw(server.addr, &cookie).await).await;
    }

    let token = csrf(&server, &alice.client, "/log_out/").await;
    let r = post_form(&server, &alice.client, "/log_out/", &[("csrfmiddlewaretoken", &token)]).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    use crate::metrics::CLOSED;
    let scrape = crate::prometheus::until(&server.url("/metrics"), "the stalled socket ended by its log out", |s| {
        s.sum(CLOSED, &[("reason", "logged_out")]) == 1.0
    })
    .await;
    assert_eq!(scrape.sum(CLOSED, &[("reason", "no_pong")]), 0.0, "not by the liveness deadline");
    drop(stalled);
}

pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

#[tokio::test]
async fn a_v1_client_joining_during_a_burst_ends_with_the_true_state() {
    let server = TestServer::start().await;
    let watcher = user_browser(&server, "watcher").await;
    let mut people = Vec::new();
    for i in 0..12 {
        people.push((format!("p{i}"), user_browser(&server, &format!("p{i}")).await));
    }
    let mut tasks = Vec::new();
    for (i, (_, p)) in people.into_iter().enumerate() {
        let addr = server.addr;
        let cookie = p.cookie_header();
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                close(crate::ws_client::open_raw(addr, &cookie).await).await;
            }
            // Even-numbered people stay online at the end.
            if i % 2 == 0 {
                Some(crate::ws_client::open_raw(addr, &cookie).await)
            } else {
                None
            }
        }));
    }
    // Join while the burst is under way.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = open(&server, Some(&watcher), V1).await.expect("late watcher");
    let mut kept = Vec::new();
    for t in tasks {
        kept.push(t.await.expect("burst task"));
    }
    let expected: BTreeSet<String> =
        ["watcher", "p0", "p2", "p4", "p6", "p8", "p10"].iter().map(|s| (*s).to_owned()).collect();
    let mut view = View::default();
    view.until(&mut ws, "the true final state", |v| v.online_names() == expected).await;
    assert_eq!(api_online(&server, &watcher).await, expected);
    assert_eq!(view.registered_count, 13);
    drop(kept);
}

#[tokio::test]
async fn sign_ups_appear_in_v1_diffs_and_counts() {
    let server = TestServer::start().await;
    let alice = user_browser(&server, "alice").await;
    let mut ws = open(&server, Some(&alice), V1).await.expect("socket");
    let mut view = View::default();
    view.until(&mut ws, "snapshot", |v| v.seq.is_some()).await;
    let newcomer = server.client();
    assert_eq!(sign_up(&server, &newcomer, "newcomer", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    view.until(&mut ws, "the sign-up", |v| v.signed_up.contains("newcomer")).await;
    assert_eq!(view.registered_count, 2);
}

#[tokio::test]
async fn accounts_the_cli_adds_or_removes_are_counted_live() {
    let server = TestServer::start().await;
    let alice = user_browser(&server, "alice").await;
    let mut ws = open(&server, Some(&alice), V1).await.expect("socket");
    let mut view = View::default();
    view.until(&mut ws, "snapshot", |v| v.seq.is_some()).await;
    assert_eq!(view.registered_count, 1);
    for name in ["bob", "carol"] {
        let out = server.cli(&["user", "create", name], &format!("{GOOD_PASSWORD}\n")).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    view.until(&mut ws, "two accounts made by another process counted", |v| v.registered_count == 3).await;
    let out = server.cli(&["user", "delete", "bob"], "").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    view.until(&mut ws, "an offline account deleted by another process", |v| v.registered_count == 2).await;
}

#[tokio::test]
async fn too_many_sockets_for_one_user_are_refused() {
    let server = TestServer::start_with(&["--max-sockets-per-user", "2"]).await;
    let alice = user_browser(&server, "alice").await;
    let _a = open(&server, Some(&alice), TUTORIAL).await.expect("1");
    let _b = open(&server, Some(&alice), TUTORIAL).await.expect("2");
    assert_eq!(open(&server, Some(&alice), TUTORIAL).await.err(), Some(429));
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits_cleanly() {
    let server = TestServer::start().await;
    let alice = user_browser(&server, "alice").await;
    let mut ws = open(&server, Some(&alice), V1).await.expect("socket");
    let mut view = View::default();
    view.until(&mut ws, "snapshot", |v| v.seq.is_some()).await;
    let watcher = tokio::spawn(async move { close_code(&mut ws).await });
    let status = server.stop().await;
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(watcher.await.expect("watcher"), Some(1001), "clients are told to reconnect elsewhere");
}

#[tokio::test]
async fn a_stop_saves_the_last_seen_of_everyone_it_takes_offline() {
    // The database outlives the server: the test keeps its directory.
    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = format!("sqlite://{}", dir.path().join("kept.db").display());
    let server = TestServer::start_on(
        tempfile::tempdir().expect("tmp"),
        db_url.clone(),
        "127.0.0.1:0",
        &["--presence-grace", "120s"],
    )
    .await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let mut a = open(&server, Some(&alice), V1).await.expect("alice");
    let _b = open(&server, Some(&bob), TUTORIAL).await.expect("bob");
    let mut view = View::default();
    view.until(&mut a, "both online", |v| v.online_names().len() == 2).await;
    let before = now_ms();
    assert!(server.stop().await.success());
    // With a 120 s grace nobody went offline by the grace: the stop took them offline, and
    // saved when (the writer outlives the hub).
    let store = roster::store::Store::connect(&db_url).await.expect("the kept database");
    for name in ["alice", "bob"] {
        let seen = store.user_by_key(name).await.expect("query").expect("user").last_seen;
        assert!(seen.is_some_and(|t| t >= before), "{name}'s last_seen saved at the stop: {seen:?}");
    }
}

#[tokio::test]
async fn deactivating_or_deleting_a_user_closes_their_sockets() {
    let server = TestServer::start_with(&["--presence-grace", "120s"]).await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let carol = user_browser(&server, "carol").await;
    let mut watch = open(&server, Some(&alice), TUTORIAL).await.expect("watcher");
    let mut v1 = open(&server, Some(&alice), V1).await.expect("v1 watcher");
    let mut view = View::default();
    view.until(&mut v1, "snapshot", |v| v.seq.is_some()).await;
    let mut b = open(&server, Some(&bob), TUTORIAL).await.expect("bob");
    let mut c = open(&server, Some(&carol), V1).await.expect("carol");
    view.until(&mut v1, "bob and carol online", |v| {
        v.online_names().contains("bob") && v.online_names().contains("carol")
    })
    .await;
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", true));

    let out = server.cli(&["user", "deactivate", "bob"], "").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(close_code(&mut b).await, Some(1008));
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", false), "Offline at once, not after 120 s");
    assert_eq!(open(&server, Some(&bob), TUTORIAL).await.err(), Some(403), "a deactivated user cannot reconnect");
    assert_eq!(log_in(&server, &bob.client, "bob", GOOD_PASSWORD).await.status(), StatusCode::OK, "nor log in");

    let out = server.cli(&["user", "delete", "carol"], "").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(close_code(&mut c).await, Some(1008));
    assert_eq!(next_about(&mut watch, "carol").await, tutorial_frame("carol", false));
    view.until(&mut v1, "carol gone", |v| !v.online_names().contains("carol") && v.registered_count == 2).await;
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_dropped() {
    let server = TestServer::start_with(&["--ping-interval", "200ms", "--ping-timeout", "300ms"]).await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let mut watch = open(&server, Some(&alice), TUTORIAL).await.expect("watcher");
    // Bob's client never reads, so it never answers a ping.
    let _silent = open(&server, Some(&bob), TUTORIAL).await.expect("bob");
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", true));
    // The watcher keeps reading (and so answers pings); bob is dropped as dead.
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", false));
}

#[tokio::test]
async fn the_json_api_gives_the_snapshot_and_the_paged_list() {
    let server = TestServer::start_with(&["--page-size", "2"]).await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let _carol = user_browser(&server, "carol").await;
    let anonymous = server.client();
    let r = anonymous.get(server.url("/api/users/")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let mut watch = open(&server, Some(&alice), TUTORIAL).await.expect("alice");
    let b = open(&server, Some(&bob), TUTORIAL).await.expect("bob");
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", true));
    close(b).await;
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", false));
    // The frame goes out first; bob's last_seen reaches the store just after it.
    wait_for_last_seen(&server, "bob").await;

    let get = |path: &'static str| {
        let c = alice.client.clone();
        let url = server.url(path);
        async move { c.get(url).send().await.expect("GET").json::<Value>().await.expect("json") }
    };
    let p1 = get("/api/users/?page=1").await;
    assert_eq!(p1["online_count"], 1);
    assert_eq!(p1["registered_count"], 3);
    assert_eq!(p1["has_next"], true);
    let users = p1["users"].as_array().expect("users");
    assert_eq!(users[0]["username"], "alice", "online users first: {p1}");
    assert_eq!(users[0]["online"], true);
    assert_eq!(users[0]["last_seen"], Value::Null);
    assert_eq!(users[1]["username"], "bob", "then the most recently seen: {p1}");
    assert_eq!(users[1]["online"], false);
    assert!(users[1]["last_seen"].as_i64().is_some(), "{p1}");
    let p2 = get("/api/users/?page=2").await;
    assert_eq!(p2["users"][0]["username"], "carol");
    assert_eq!(p2["has_next"], false);
    assert_eq!(get("/api/users/?q=CA").await["users"].as_array().expect("users").len(), 1);
    let r = alice.client.get(server.url("/api/users/?page=0")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let snapshot = get("/api/users/").await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["online"], serde_json::json!([{ "id": 1, "username": "alice" }]));
}

#[tokio::test]
async fn the_websocket_layer_answers_pings_echoes_closes_and_refuses_plain_gets() {
    use futures_util::StreamExt;
    let server = TestServer::start().await;
    let alice = user_browser(&server, "alice").await;

    // Not a WebSocket handshake: a clear 400, whoever asks.
    let plain = alice.client.get(server.url("/users/")).send().await.expect("GET");
    assert_eq!(plain.status(), StatusCode::BAD_REQUEST);
    assert!(plain.text().await.expect("body").contains("upgrade"));

    // A client's ping is answered with a pong carrying the same payload.
    let mut ws = open(&server, Some(&alice), TUTORIAL).await.expect("socket");
    ws.send(Message::Ping(b"are you there".to_vec().into())).await.expect("ping");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.expect("a pong within 10 s") {
            Some(Ok(Message::Pong(p))) => {
                assert_eq!(&p[..], b"are you there");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("socket ended before the pong: {other:?}"),
        }
    }

    // A client's close is echoed with its code, then the server ends the connection.
    ws.send(Message::Close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 4321.into(),
        reason: "bye".into(),
    })))
    .await
    .expect("close");
    assert_eq!(close_code(&mut ws).await, Some(4321), "the close code is echoed");
}

#[tokio::test]
async fn a_peer_that_sends_pings_but_never_reads_the_pongs_is_dropped() {
    // Long ping interval: only the pong writes can end this socket, after their deadline
    // (interval + timeout = 1.5 s).
    let server =
        TestServer::start_with(&["--ping-interval", "1s", "--ping-timeout", "500ms", "--tcp-send-buffer", "4096"])
            .await;
    let alice = user_browser(&server, "alice").await;
    let bob = user_browser(&server, "bob").await;
    let mut watch = open(&server, Some(&alice), TUTORIAL).await.expect("watcher");
    let flooder = open(&server, Some(&bob), Opts { recv_buffer: Some(4096), ..TUTORIAL }).await.expect("bob");
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", true));
    // Bob floods pings and never reads: the server's pongs fill both socket buffers.
    let flood = tokio::spawn(async move {
        let mut flooder = flooder;
        let payload = vec![b'p'; 125];
        while flooder.send(Message::Ping(payload.clone().into())).await.is_ok() {}
        flooder
    });
    assert_eq!(next_about(&mut watch, "bob").await, tutorial_frame("bob", false), "the stuck socket was dropped");
    flood.abort();
}
