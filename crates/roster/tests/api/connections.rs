//! Connection timeouts and caps, over raw TCP from chosen loopback source addresses: a client
//! that sends its headers slowly or idles on a keep-alive connection is cut off, one address
//! cannot hold more than its share of connections, and the server keeps answering with a low
//! descriptor limit.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::helpers::*;
use crate::ws_client::{self, Opts, TUTORIAL};

/// A TCP connection to `addr` from the loopback address `source`.
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source.parse::<IpAddr>().expect("ip"), 0)).expect("bind");
    socket.connect(addr).await.expect("connect")
}

/// Sends `GET path` (keep-alive) and reads one response; `None` when the server closed the
/// connection instead of answering.
async fn get(stream: &mut TcpStream, path: &str) -> Option<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: roster.test\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return head.split(' ').nth(1).and_then(|s| s.parse().ok());
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await.expect("an answer or a close in time") {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits until the server closes `stream` (EOF or reset) while nothing is sent; panics at the
/// deadline.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(DEADLINE, stream.read(&mut chunk)).await.expect("closed within the deadline") {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_client_sending_its_headers_slowly_is_cut_off() {
    let server = TestServer::start_with(&["--header-read-timeout", "1s", "--idle-timeout", "30s"]).await;
    let mut stream = connect_from("127.0.0.2", server.addr).await;
    let started = Instant::now();
    stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("write");
    // One header line every 200 ms, for as long as the server keeps listening.
    let mut chunk = [0u8; 256];
    let cut = loop {
        assert!(started.elapsed() < DEADLINE, "still reading headers after {DEADLINE:?}");
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => panic!("the server answered an unfinished request"),
            Err(_) => {
                if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    break started.elapsed();
                }
            }
        }
    };
    assert!(cut >= Duration::from_millis(900), "cut after {cut:?}, before the 1 s timeout");
    // Other clients are served as usual.
    let mut other = connect_from("127.0.0.3", server.addr).await;
    assert_eq!(get(&mut other, "/healthz").await, Some(200));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(&["--header-read-timeout", "1s", "--idle-timeout", "3s"]).await;
    let mut stream = connect_from("127.0.0.2", server.addr).await;
    assert_eq!(get(&mut stream, "/healthz").await, Some(200));
    let answered = Instant::now();
    assert_eq!(get(&mut stream, "/healthz").await, Some(200), "keep-alive: a second request on it");
    closed_by_server(&mut stream).await;
    let idle = answered.elapsed();
    // The idle timeout (3 s) applies between requests, not the header-read timeout (1 s).
    assert!(idle >= Duration::from_millis(2500), "closed after {idle:?} idle");
}

#[tokio::test]
async fn connections_are_capped_per_address_and_in_total() {
    let server = TestServer::start_with(&["--max-connections-per-address", "3", "--max-connections", "6"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.2", server.addr).await;
        assert_eq!(get(&mut s, "/healthz").await, Some(200));
        held.push(s);
    }
    let mut fourth = connect_from("127.0.0.2", server.addr).await;
    assert_eq!(get(&mut fourth, "/healthz").await, None, "the fourth connection from one address is refused");
    let mut other = connect_from("127.0.0.3", server.addr).await;
    assert_eq!(get(&mut other, "/healthz").await, Some(200), "another address gets through");

    // A slot frees when a connection closes.
    drop(held.pop());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut s = connect_from("127.0.0.2", server.addr).await;
        if get(&mut s, "/healthz").await == Some(200) {
            held.push(s);
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // In total: 3 from .2 and 1 from .3 are open; two more fit, the seventh does not.
    for source in ["127.0.0.4", "127.0.0.5"] {
        let mut s = connect_from(source, server.addr).await;
        assert_eq!(get(&mut s, "/healthz").await, Some(200), "{source}");
        held.push(s);
    }
    let mut seventh = connect_from("127.0.0.6", server.addr).await;
    assert_eq!(get(&mut seventh, "/healthz").await, None, "the total cap is reached");
    drop(other);
}

#[tokio::test]
async fn healthz_answers_with_300_idle_connections_and_256_descriptors() {
    let server = TestServer::start_with_fd_limit(256, &[]).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect_from("127.0.0.2", server.addr).await);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let r = client.get(server.url("/healthz")).send().await.expect("/healthz answers");
    assert_eq!(r.status(), StatusCode::OK);
    drop(idle);
}

#[tokio::test]
async fn websockets_count_against_the_cap_and_outlive_the_idle_timeout() {
    let server = TestServer::start_with(&[
        "--max-connections-per-address",
        "2",
        "--idle-timeout",
        "1s",
        "--header-read-timeout",
        "1s",
    ])
    .await;
    let alice = user_browser(&server, "alice").await;
    let from_2 = Opts { source: Some("127.0.0.2"), ..TUTORIAL };
    let mut a = ws_client::open(&server, Some(&alice), from_2).await.expect("first socket");
    assert_eq!(ws_client::next_json(&mut a).await, Some(ws_client::tutorial_frame("alice", true)));
    // (Alice is online already: her second tutorial socket is told nothing about her.)
    let mut b = ws_client::open(&server, Some(&alice), from_2).await.expect("second socket");

    // Both sockets hold the address's two slots: an HTTP connection from it is refused.
    let mut http = connect_from("127.0.0.2", server.addr).await;
    assert_eq!(get(&mut http, "/healthz").await, None);

    // Well past the HTTP idle timeout, the sockets are still open and delivering.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bob = user_browser(&server, "bob").await;
    let _bob = ws_client::open(&server, Some(&bob), TUTORIAL).await.expect("bob's socket");
    assert_eq!(ws_client::next_json(&mut a).await, Some(ws_client::tutorial_frame("bob", true)));
    assert_eq!(ws_client::next_json(&mut b).await, Some(ws_client::tutorial_frame("bob", true)));

    // Closing one frees its slot.
    ws_client::close(a).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut s = connect_from("127.0.0.2", server.addr).await;
        if get(&mut s, "/healthz").await == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the socket's slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_form_body_sent_slowly_gets_408() {
    let server = TestServer::start_with(&["--header-read-timeout", "1s"]).await;
    let mut stream = connect_from("127.0.0.2", server.addr).await;
    let head = "POST /log_in/ HTTP/1.1\r\nHost: roster.test\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                Cookie: csrftoken=abcdefghijklmnopqrstuvwxyz012345\r\nContent-Length: 1000\r\n\r\nusername=a";
    stream.write_all(head.as_bytes()).await.expect("write");
    // The rest of the body never comes.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer)).await.expect("answered in time");
    let _ = read;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}
