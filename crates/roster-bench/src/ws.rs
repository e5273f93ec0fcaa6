//! WebSocket side: connecting from a chosen loopback source address. Frames are read with the
//! presence crate's client side (`presence::client` for the tutorial and `roster.v1`,
//! `presence::protocol::views` for `roster.v2`: see the worker).

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Which wire protocol the watchers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Tutorial frames, authenticated by the session cookie (Roster default, Django peer).
    Tutorial,
    /// Roster's `roster.v1` subprotocol (snapshot + batched diffs).
    V1,
    /// What Roster's built-in page speaks: `roster.v2` (live views) on the window of its
    /// handshake URL (`--window`, the first page by default).
    Page,
    /// The floor server: no authentication; changes are broadcast frames sent by a client.
    Floor,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// `ws://host:port/users/` (page mode: with the window's query string)
    pub ws_url: String,
    /// `http://host:port` sent as `Origin` (Django's AllowedHostsOriginValidator needs one).
    pub origin: String,
    pub mode: Mode,
}

impl Target {
    pub fn new(base: &str, mode: Mode, window: &str) -> Self {
        let base = base.trim_end_matches('/');
        let rest = base.strip_prefix("http://").unwrap_or(base);
        let query = if mode == Mode::Page { format!("?{window}") } else { String::new() };
        Target { ws_url: format!("ws://{rest}/users/{query}"), origin: format!("http://{rest}"), mode }
    }
    fn addr(&self) -> Result<SocketAddr, String> {
        let rest = self.ws_url.strip_prefix("ws://").ok_or("ws url")?;
        let hostport = rest.split('/').next().ok_or("ws url")?;
        let hostport = hostport.replace("localhost", "127.0.0.1");
        hostport.parse().map_err(|e| format!("bad address {hostport}: {e}"))
    }
}

pub fn client_config() -> WebSocketConfig {
    // Small client buffers: the load generator holds tens of thousands of sockets too.
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
}

/// Open `/users/` from source address `src` (bind before connect) with an optional cookie.
pub async fn connect(target: &Target, cookie: Option<&str>, src: Option<IpAddr>) -> Result<Ws, String> {
    connect_with(target, cookie, src, None).await
}

/// [`connect`] with a receive buffer of `recv_buffer` bytes (SO_RCVBUF, set before connecting so
/// the window is small from the start): a peer that stops reading fills it, and the server's
/// writes, soon.
pub async fn connect_with(
    target: &Target,
    cookie: Option<&str>,
    src: Option<IpAddr>,
    recv_buffer: Option<u32>,
) -> Result<Ws, String> {
    let addr = target.addr()?;
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if let Some(n) = recv_buffer {
        sock.set_recv_buffer_size(n).map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = sock.connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut req = target.ws_url.as_str().into_client_request().map_err(|e| e.to_string())?;
    let h = req.headers_mut();
    h.insert("Origin", HeaderValue::from_str(&target.origin).map_err(|e| e.to_string())?);
    if let Some(c) = cookie {
        h.insert("Cookie", HeaderValue::from_str(c).map_err(|e| e.to_string())?);
    }
    match target.mode {
        Mode::V1 => {
            h.insert("Sec-WebSocket-Protocol", HeaderValue::from_static("roster.v1"));
        }
        Mode::Page => {
            h.insert("Sec-WebSocket-Protocol", HeaderValue::from_static("roster.v2"));
        }
        Mode::Tutorial | Mode::Floor => {}
    }
    let (ws, _resp) = tokio_tungstenite::client_async_with_config(req, stream, Some(client_config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}
