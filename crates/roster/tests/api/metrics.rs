//! `/metrics` stays bounded whatever clients send, only the right clients may read it, and its
//! counters move as sockets open and close and as requests are refused.
//!
//! Requests go over raw TCP so that methods and paths no HTTP client would send reach the
//! server as they are.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::presence::metric;
use crate::prometheus::{until, Scrape};
use crate::ws_client::{close, open, v2, Opts, TUTORIAL, V1};

/// Sends `method path` as an HTTP/1.1 request on a new connection and reads until the server
/// closes it. Returns the status line ("" when the server answered nothing).
async fn raw_request(addr: SocketAddr, method: &[u8], path: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = Vec::new();
    req.extend_from_slice(method);
    req.push(b' ');
    req.extend_from_slice(path);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: roster.test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(&req).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer)).await.expect("answer in time");
    // A reset after the answer is fine; what matters is what came back.
    let _ = read;
    String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned()
}

/// The series of a Prometheus text page: every sample line without its value.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').map_or(l, |(series, _value)| series).to_owned())
        .collect()
}

async fn scrape(server: &TestServer) -> String {
    let r = server.client().get(server.url("/metrics")).send().await.expect("GET /metrics");
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.expect("body")
}

/// One request of each shape the probe used: method and path vary with `i`, the shape does not.
fn shapes(i: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let long = "X".repeat(10 + (i * 997) % 20_000);
    vec![
        // An unknown method on a known route, and on no route at all.
        (format!("M{i:04}{long}").into_bytes(), b"/healthz".to_vec()),
        (format!("Z{i}").into_bytes(), format!("/nowhere/{i}/{}", "y".repeat((i * 31) % 3000)).into_bytes()),
        // A known method on no route, on a route with a parameter, and an unsafe one on no route.
        (b"GET".to_vec(), format!("/no/such/page/{i}").into_bytes()),
        (b"GET".to_vec(), format!("/static/missing-{i}.css").into_bytes()),
        (b"POST".to_vec(), format!("/junk/{i}").into_bytes()),
        // Bytes a log line must not carry as they are.
        (b"GET".to_vec(), [&b"/odd/\xc3\xa9\xff\x01"[..], format!("{i}").as_bytes()].concat()),
    ]
}

#[tokio::test]
async fn odd_methods_and_paths_add_no_metrics_series_and_no_long_log_lines() {
    let server = TestServer::start().await;
    // One request of each shape, then two scrapes (the first scrape is itself a series).
    for (method, path) in shapes(0) {
        raw_request(server.addr, &method, &path).await;
    }
    scrape(&server).await;
    let before = scrape(&server).await;

    for i in 1..=60 {
        for (method, path) in shapes(i) {
            raw_request(server.addr, &method, &path).await;
        }
    }
    // And a few huge method names, as in the probe.
    for i in 0..5 {
        raw_request(server.addr, format!("HUGE{i}{}", "Q".repeat(60_000)).as_bytes(), b"/healthz").await;
    }
    let after = scrape(&server).await;

    let (a, b) = (series(&before), series(&after));
    let added: Vec<String> = b.difference(&a).map(|s| s.chars().take(200).collect()).collect();
    assert!(added.is_empty(), "{} new series, e.g. {:?}", added.len(), &added[..added.len().min(3)]);
    assert!(after.len() < 64 * 1024, "/metrics is {} bytes", after.len());

    let logs = server.logs();
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    let example: String = logs.lines().find(|l| l.len() == longest).unwrap_or("").chars().take(300).collect();
    assert!(longest <= 512, "a log line of {longest} bytes: {example}");
    assert!(!logs.contains('\u{1}') && !logs.contains('\u{fffd}'), "control bytes are escaped in logs");
    assert!(logs.contains("HTTP GET /static/missing-3.css 404"), "ordinary paths are logged as they are");
}

#[tokio::test]
async fn metrics_answer_only_loopback_clients_on_the_main_listener() {
    let server = TestServer::start_with(&["--trusted-proxies", "127.0.0.1"]).await;
    let client = server.client();
    let r = client.get(server.url("/metrics")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK, "a loopback client reads the metrics");
    assert!(r.text().await.expect("body").contains("roster_sockets_open"));

    // The same request forwarded for a remote client (through a trusted proxy) is not served.
    let r = client.get(server.url("/metrics")).header("x-forwarded-for", "203.0.113.7").send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!r.text().await.expect("body").contains("roster_"), "nothing of the metrics leaks");
    // A loopback client behind the proxy is.
    let r = client.get(server.url("/metrics")).header("x-forwarded-for", "::1").send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_bind_serves_metrics_only_on_their_own_listener() {
    let server = TestServer::start_with(&["--metrics-bind", "127.0.0.1:0"]).await;
    let addr = server.metrics_addr().await;
    let client = server.client();

    let r = client.get(server.url("/metrics")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "not on the main listener, not even for loopback");

    let r = client.get(format!("http://{addr}/metrics")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.expect("body").contains("roster_users_online"));
    for path in ["/", "/healthz", "/log_in/"] {
        let r = client.get(format!("http://{addr}{path}")).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "the metrics listener serves only /metrics, not {path}");
    }
}

/// The counters of sockets, refused handshakes, 429s and requests move as they happen, read
/// the way Prometheus reads them (the page parsed), on the `--metrics-bind` listener.
#[tokio::test]
async fn counters_move_as_sockets_open_and_close_and_requests_are_refused() {
    let server =
        TestServer::start_with(&["--metrics-bind", "127.0.0.1:0", "--login-limit", "1", "--max-sockets-per-user", "3"])
            .await;
    let metrics = format!("http://{}/metrics", server.metrics_addr().await);
    let alice = user_browser(&server, "alice").await;
    let before = Scrape::get(&metrics).await;
    // Every fixed label is there from the start, at 0.
    for reason in ["no_session", "origin", "window", "too_many_pages", "not_upgrade", "method"] {
        assert_eq!(before.matching(REFUSED, &[("reason", reason)]).count(), 1, "{reason} is registered");
        assert_eq!(before.sum(REFUSED, &[("reason", reason)]), 0.0);
    }
    assert_eq!(before.sum(OPENED, &[]), 0.0);
    assert_eq!(before.sum("roster_sockets_open", &[]), 0.0);

    // Three sockets, one of each protocol: opened +3, the gauge 3.
    let mut sockets = Vec::new();
    for opts in [TUTORIAL, V1, v2("offset=0&limit=10&q=")] {
        sockets.push(open(&server, Some(&alice), opts).await.expect("socket opens"));
    }
    let open3 =
        until(&metrics, "3 sockets opened", |s| s.sum(OPENED, &[]) == 3.0 && s.sum("roster_sockets_open", &[]) == 3.0)
            .await;
    for protocol in ["tutorial", "roster.v1", "roster.v2"] {
        assert_eq!(open3.sum(OPENED, &[("protocol", protocol)]), 1.0, "{protocol}");
    }
    assert_eq!(open3.count(HTTP, &[("route", "/users/"), ("status", "101")]), 3.0, "the handshakes as requests");

    // A fourth page is one too many: a refused handshake and a 429.
    assert_eq!(open(&server, Some(&alice), TUTORIAL).await.err(), Some(429));
    // Refused handshakes, one per reason: anonymous, foreign Origin, a bad roster.v2 window, not
    // an upgrade at all, and a HEAD.
    assert_eq!(open(&server, None, TUTORIAL).await.err(), Some(403));
    let foreign = Opts { origin: Some("https://evil.example"), ..TUTORIAL };
    assert_eq!(open(&server, Some(&alice), foreign).await.err(), Some(403));
    assert_eq!(open(&server, Some(&alice), v2("offset=0&limit=0&q=")).await.err(), Some(400));
    let plain = alice.client.get(server.url("/users/")).send().await.expect("GET");
    assert_eq!(plain.status(), StatusCode::BAD_REQUEST);
    let head = alice.client.head(server.url("/users/")).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::METHOD_NOT_ALLOWED);
    let refused = until(&metrics, "6 refusals", |s| s.sum(REFUSED, &[]) == 6.0).await;
    for reason in ["too_many_pages", "no_session", "origin", "window", "not_upgrade", "method"] {
        assert_eq!(refused.sum(REFUSED, &[("reason", reason)]), 1.0, "{reason}");
    }
    assert_eq!(refused.sum(THROTTLED, &[("what", "pages")]), 1.0);
    assert_eq!(refused.sum(OPENED, &[]), 3.0, "refusals open nothing");

    // Closed by the page: closed{peer} +3, the gauge back to 0.
    for ws in sockets {
        close(ws).await;
    }
    let closed = until(&metrics, "3 sockets closed", |s| {
        s.sum(CLOSED, &[("reason", "peer")]) == 3.0 && s.sum("roster_sockets_open", &[]) == 0.0
    })
    .await;
    assert_eq!(closed.sum(CLOSED, &[]), 3.0, "no other reason");

    // A log-in past --login-limit: 429, counted as such and as a request of that route.
    let mallory = server.browser();
    for expected in [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        assert_eq!(log_in(&server, &mallory.client, "alice", "wrong-password-1").await.status(), expected);
    }
    let throttled = until(&metrics, "a throttled log-in", |s| s.sum(THROTTLED, &[("what", "log_in")]) == 1.0).await;
    assert_eq!(throttled.sum(THROTTLED, &[("what", "sign_up")]), 0.0);
    let login_429 = [("method", "POST"), ("route", "/log_in/"), ("status", "429")];
    assert_eq!(throttled.count(HTTP, &login_429), 1.0);
    // The histogram is whole: its +Inf bucket holds every observation.
    let inf = [("method", "POST"), ("route", "/log_in/"), ("status", "429"), ("le", "+Inf")];
    assert_eq!(throttled.sum(&format!("{HTTP}_bucket"), &inf), 1.0);
    // Requests are counted by route pattern and status, never by raw path.
    assert!(throttled.count(HTTP, &[("method", "GET"), ("route", "/log_in/"), ("status", "200")]) >= 2.0);
    assert!(throttled.count(HTTP, &[("route", "/users/"), ("status", "403")]) >= 2.0);
    assert!(throttled
        .label_values(&format!("{HTTP}_count"), "route")
        .iter()
        .all(|r| r.starts_with('/') || r == "other"));
}

const OPENED: &str = "roster_ws_sockets_opened_total";
pub(crate) const CLOSED: &str = "roster_ws_sockets_closed_total";
const REFUSED: &str = "roster_ws_handshakes_refused_total";
const THROTTLED: &str = "roster_throttled_total";
const HTTP: &str = "roster_http_request_duration_seconds";

#[tokio::test]
async fn the_tasks_alive_gauge_counts_socket_tasks_and_falls_back_when_they_close() {
    let server = TestServer::start().await;
    let alice = user_browser(&server, "alice").await;
    let socket_tasks = |text: &str| metric(text, r#"roster_tasks_alive{runtime="sockets"}"#);
    let first = scrape(&server).await;
    assert!(metric(&first, r#"roster_tasks_alive{runtime="main"}"#) >= 1.0, "{first}");
    let before = socket_tasks(&first);

    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(open(&server, Some(&alice), TUTORIAL).await.expect("socket"));
    }
    let during = socket_tasks(&scrape(&server).await);
    assert!(during >= before + 10.0, "10 sockets open: {before} tasks before, {during} now");

    for ws in sockets {
        close(ws).await;
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = socket_tasks(&scrape(&server).await);
        if now <= before {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "socket tasks stayed at {now} (were {before} before)");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
