//! `/metrics` stays bounded whatever clients send, and only the right clients may read it.
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
use crate::ws_client::{close, open, TUTORIAL};

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
