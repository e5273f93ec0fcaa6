//! A WebSocket client for the tests: the session cookie from a `Browser`, optional
//! subprotocol and `Origin`, and reads with a deadline. Frames are parsed as JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use presence::protocol::views::PageView;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{Browser, Site, DEADLINE};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Clone, Copy)]
pub struct Opts<'a> {
    pub v1: bool,
    /// roster.v2 with this handshake query (`offset=0&limit=2&q=`).
    pub v2: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// SO_RCVBUF for the client socket (a small one makes a slow reader fill up fast).
    pub recv_buffer: Option<u32>,
    /// The loopback source address to connect from (default: the kernel's choice, 127.0.0.1).
    pub source: Option<&'a str>,
}

pub const TUTORIAL: Opts<'static> = Opts { v1: false, v2: None, origin: None, recv_buffer: None, source: None };
pub const V1: Opts<'static> = Opts { v1: true, v2: None, origin: None, recv_buffer: None, source: None };

/// roster.v2 on the window of `query`.
pub fn v2(query: &str) -> Opts<'_> {
    Opts { v2: Some(query), ..TUTORIAL }
}

/// Opens `/users/` as `browser` (None: anonymous). Err carries the HTTP status of a refusal.
pub async fn open(server: &impl Site, browser: Option<&Browser>, opts: Opts<'_>) -> Result<Ws, u16> {
    let query = opts.v2.map(|q| format!("?{q}")).unwrap_or_default();
    let mut req = format!("ws://{}/users/{query}", server.addr()).into_client_request().expect("request");
    let h = req.headers_mut();
    if let Some(b) = browser {
        h.insert("cookie", HeaderValue::from_str(&b.cookie_header()).expect("cookie"));
    }
    let origin = opts.origin.map_or_else(|| format!("http://{}", server.addr()), str::to_owned);
    h.insert("origin", HeaderValue::from_str(&origin).expect("origin"));
    let subprotocol = match (opts.v1, opts.v2) {
        (_, Some(_)) => Some("roster.v2"),
        (true, None) => Some("roster.v1"),
        (false, None) => None,
    };
    if let Some(p) = subprotocol {
        h.insert("sec-websocket-protocol", HeaderValue::from_static(p));
    }
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = opts.recv_buffer {
        socket.set_recv_buffer_size(size).expect("rcvbuf");
    }
    if let Some(source) = opts.source {
        let ip: std::net::IpAddr = source.parse().expect("source address");
        socket.bind(std::net::SocketAddr::new(ip, 0)).expect("bind the source address");
    }
    let stream = socket.connect(server.addr()).await.expect("tcp connect");
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
    match tokio_tungstenite::client_async_with_config(req, MaybeTlsStream::Plain(stream), Some(config)).await {
        Ok((ws, response)) => {
            if let Some(p) = subprotocol {
                assert_eq!(
                    response.headers().get("sec-websocket-protocol").map(|v| v.as_bytes()),
                    Some(p.as_bytes()),
                    "the server selects {p}"
                );
            }
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// The next JSON text frame, or None if the socket closed. Panics at the deadline.
pub async fn next_json(ws: &mut Ws) -> Option<Value> {
    next_json_within(ws, DEADLINE).await.expect("a frame within the deadline")
}

/// Like `next_json` but returns Err(()) on timeout.
pub async fn next_json_within(ws: &mut Ws, wait: Duration) -> Result<Option<Value>, ()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(()),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return Ok(None),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(Some(serde_json::from_str(&t).expect("JSON frame"))),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Waits for the socket to be closed by the server and returns the close code.
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.expect("close within the deadline") {
            None | Some(Err(_)) => return None,
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
        }
    }
}

pub async fn close(mut ws: Ws) {
    let _ = ws.close(None).await;
    // Wait for the server's close reply so the server has seen the close.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, ws.next()).await {}
}

/// The next tutorial frame about `username`, skipping frames about other users.
pub async fn next_about(ws: &mut Ws, username: &str) -> Value {
    loop {
        let frame = next_json(ws).await.expect("socket open");
        if frame["username"] == username {
            return frame;
        }
    }
}

/// The next tutorial frame, whoever it is about, skipping the watcher's own.
pub async fn next_not_about(ws: &mut Ws, me: &str) -> Value {
    loop {
        let frame = next_json(ws).await.expect("socket open");
        if frame["username"] != me {
            return frame;
        }
    }
}

pub fn tutorial_frame(username: &str, online: bool) -> Value {
    serde_json::json!({ "username": username, "is_logged_in": online })
}

/// A `roster.v1` client's view: applies snapshot and diffs, checking sequence numbers.
#[derive(Default, Debug)]
pub struct View {
    pub seq: Option<u64>,
    pub online: BTreeMap<i64, String>,
    pub last_seen: BTreeMap<String, i64>,
    pub signed_up: BTreeSet<String>,
    pub snapshots: usize,
    pub online_count: u64,
    pub registered_count: u64,
}

impl View {
    pub fn apply(&mut self, frame: &Value) {
        match frame["type"].as_str() {
            Some("snapshot") => {
                self.snapshots += 1;
                self.online = frame["online"]
                    .as_array()
                    .expect("online array")
                    .iter()
                    .map(|u| (u["id"].as_i64().expect("id"), u["username"].as_str().expect("name").to_owned()))
                    .collect();
                self.seq = frame["seq"].as_u64();
            }
            Some("diff") => {
                let seq = frame["seq"].as_u64().expect("seq");
                assert_eq!(Some(seq), self.seq.map(|s| s + 1), "diff sequence numbers are consecutive: {frame}");
                self.seq = Some(seq);
                for u in frame["offline"].as_array().expect("offline array") {
                    self.online.remove(&u["id"].as_i64().expect("id"));
                    self.last_seen.insert(
                        u["username"].as_str().expect("name").to_owned(),
                        u["last_seen"].as_i64().expect("last_seen"),
                    );
                }
                for u in frame["online"].as_array().expect("online array") {
                    self.online.insert(u["id"].as_i64().expect("id"), u["username"].as_str().expect("name").to_owned());
                }
                for id in frame["deleted"].as_array().into_iter().flatten() {
                    self.online.remove(&id.as_i64().expect("id"));
                }
                for u in frame["signed_up"].as_array().expect("signed_up array") {
                    self.signed_up.insert(u["username"].as_str().expect("name").to_owned());
                }
            }
            other => panic!("unexpected frame type {other:?}: {frame}"),
        }
        self.online_count = frame["online_count"].as_u64().expect("online_count");
        self.registered_count = frame["registered_count"].as_u64().expect("registered_count");
        assert_eq!(self.online_count as usize, self.online.len(), "online_count matches the list: {frame}");
    }

    pub fn online_names(&self) -> BTreeSet<String> {
        self.online.values().cloned().collect()
    }

    /// Reads frames until `done(self)` holds, or panics at the deadline.
    pub async fn until(&mut self, ws: &mut Ws, what: &str, done: impl Fn(&View) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match next_json_within(ws, left).await {
                Ok(Some(frame)) => self.apply(&frame),
                Ok(None) => panic!("socket closed while waiting for {what}; view: {self:?}"),
                Err(()) => panic!("timed out waiting for {what}; view: {self:?}"),
            }
        }
    }
}

/// Opens a tutorial-mode socket with a raw cookie header (for load loops).
pub async fn open_raw(addr: std::net::SocketAddr, cookie: &str) -> Ws {
    let mut req = format!("ws://{addr}/users/").into_client_request().expect("request");
    req.headers_mut().insert("cookie", HeaderValue::from_str(cookie).expect("cookie"));
    req.headers_mut().insert("origin", HeaderValue::from_str(&format!("http://{addr}")).expect("origin"));
    tokio_tungstenite::connect_async(req).await.expect("handshake").0
}

/// Reads frames into `view` until `done` holds, or panics at the deadline.
pub async fn until(view: &mut PageView, ws: &mut Ws, what: &str, done: impl Fn(&PageView) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !(view.live && done(view)) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_json_within(ws, left).await {
            Ok(Some(frame)) => {
                view.apply_text(frame.to_string().as_bytes()).unwrap_or_else(|gap| panic!("{gap}: {frame}"));
            }
            Ok(None) => panic!("socket closed while waiting for {what}; view: {view:?}"),
            Err(()) => panic!("timed out waiting for {what}; view: {view:?}"),
        }
    }
}

/// `name` or `name+` (online), in order.
pub fn shown(view: &PageView) -> Vec<String> {
    view.users.iter().map(|u| format!("{}{}", u.username, if u.online { "+" } else { "" })).collect()
}
