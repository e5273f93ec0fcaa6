//! WebSocket side: connecting from a chosen loopback source address, and parsing the
//! tutorial frames (`{"username","is_logged_in"}`) and `roster.v1` snapshot/diff frames
//! (`roster.v2` frames are parsed with the presence crate's own types: see the worker).

use std::borrow::Cow;
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

#[derive(Deserialize)]
pub struct User<'a> {
    #[serde(borrow)]
    pub username: Cow<'a, str>,
}

/// Any frame of either protocol (unknown fields ignored).
#[derive(Deserialize)]
pub struct Frame<'a> {
    #[serde(borrow, default)]
    pub username: Option<Cow<'a, str>>,
    #[serde(default)]
    pub is_logged_in: Option<bool>,
    #[serde(rename = "type", borrow, default)]
    pub ty: Option<Cow<'a, str>>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(borrow, default)]
    pub online: Option<Vec<User<'a>>>,
    #[serde(borrow, default)]
    pub offline: Option<Vec<User<'a>>>,
    /// roster.v1: the counts every snapshot and diff carries.
    #[serde(default)]
    pub online_count: Option<u64>,
    #[serde(default)]
    pub registered_count: Option<u64>,
}

/// One presence transition carried by a frame.
pub struct Transition<'a> {
    pub username: &'a str,
    pub online: bool,
}

pub enum Parsed<'a> {
    /// A `roster.v1` snapshot: the full online list.
    Snapshot {
        seq: u64,
        online: Vec<&'a str>,
    },
    /// Tutorial frame(s) or a v1 diff.
    Changes {
        seq: Option<u64>,
        changes: Vec<Transition<'a>>,
    },
    Other,
}

impl<'a> Frame<'a> {
    pub fn parsed(&'a self) -> Parsed<'a> {
        match self.ty.as_deref() {
            Some("snapshot") => Parsed::Snapshot {
                seq: self.seq.unwrap_or(0),
                online: self.online.iter().flatten().map(|u| u.username.as_ref()).collect(),
            },
            Some("diff") => {
                let mut changes = Vec::new();
                for u in self.online.iter().flatten() {
                    changes.push(Transition { username: &u.username, online: true });
                }
                for u in self.offline.iter().flatten() {
                    changes.push(Transition { username: &u.username, online: false });
                }
                Parsed::Changes { seq: self.seq, changes }
            }
            Some(_) => Parsed::Other,
            None => match (&self.username, self.is_logged_in) {
                (Some(u), Some(b)) => {
                    Parsed::Changes { seq: None, changes: vec![Transition { username: u, online: b }] }
                }
                _ => Parsed::Other,
            },
        }
    }
}
