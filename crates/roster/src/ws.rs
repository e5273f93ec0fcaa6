//! `GET /users/`: the WebSocket. Checks happen before the upgrade (session, active user,
//! `Origin`, per-user socket cap); then the socket loop relays what the presence hub sends.
//!
//! The loop is generic over any `Sink`/`Stream` of messages so it can be driven without a
//! network. Nothing a client sends changes presence: text and binary frames are ignored;
//! only opening and closing the socket count. Knows nothing about SQL or HTML.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use presence::{ConnectError, Connection, Outgoing, Protocol, SessionKey, UserRef};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::web::session::MaybeUser;
use crate::web::AppState;

/// Largest frame or message a client may send; anything bigger closes the socket (1009).
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// tungstenite's default read buffer is 128 KiB per socket; our clients send almost nothing.
const READ_BUFFER: usize = 256;
/// Frames are collected up to this size before a write; `flush` always writes everything.
const WRITE_BUFFER: usize = 4 * 1024;
/// A socket whose peer stops reading may buffer at most this much before writes fail.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// Liveness: a ping every `interval`; no pong (or any frame) within `timeout` drops the socket.
#[derive(Clone, Copy, Debug)]
pub struct Heartbeat {
    pub interval: Duration,
    pub timeout: Duration,
}

pub async fn users_socket(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: MaybeUser,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(me) = user.0 else {
        return refuse(StatusCode::FORBIDDEN, "Log in to open the live list.");
    };
    if !app.origin_allowed(&headers) {
        tracing::warn!(peer = %peer, "WebSocket REJECT /users/: foreign Origin");
        return refuse(StatusCode::FORBIDDEN, "This origin may not open the live list.");
    }
    let protocol = Protocol::negotiate(
        ws.requested_protocols().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')),
    );
    let user_ref = UserRef::new(me.user.id, me.user.username.as_str());
    let connection = match app.hub.connect(user_ref, SessionKey::from(me.session_hash.as_str()), protocol) {
        Ok(c) => c,
        Err(ConnectError::TooManySockets { .. }) => {
            return refuse(StatusCode::TOO_MANY_REQUESTS, "Too many open pages for this account.");
        }
        Err(e) => {
            tracing::warn!(error = %e, "WebSocket REJECT /users/");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "The live list is shutting down.");
        }
    };
    let mut ws = ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE);
    if let Some(name) = protocol.subprotocol() {
        ws.set_selected_protocol(HeaderValue::from_static(name));
    }
    let heartbeat = app.heartbeat;
    let shutdown = app.shutdown.clone();
    let user_id = me.user.id;
    let in_flight = app.tasks.token();
    ws.on_upgrade(move |socket| async move {
        let _in_flight = in_flight;
        tracing::info!(target: "roster::http", user_id, "WebSocket CONNECT /users/ [{peer}]");
        let end = run(socket, connection, heartbeat, shutdown).await;
        tracing::info!(target: "roster::http", user_id, reason = ?end, "WebSocket DISCONNECT /users/ [{peer}]");
    })
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
}

/// Why the loop ended (logged with the disconnect).
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The hub closed it (log out, deactivation, lag policy, shutdown).
    Closed(u16),
    /// The peer closed it or the connection failed.
    PeerGone,
    /// No pong within the deadline.
    Dead,
    /// The server is stopping.
    Shutdown,
}

/// Relays hub frames to the socket until one side ends. Frames already queued are written
/// together (`feed` each, one `flush`). Client frames are read only to notice pongs and close.
pub async fn run<S, E>(mut socket: S, mut conn: Connection, heartbeat: Heartbeat, shutdown: CancellationToken) -> End
where
    S: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
{
    let start = Instant::now() + heartbeat.interval;
    let mut ticker = interval_at(start, heartbeat.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    let end = loop {
        tokio::select! {
            out = conn.next() => {
                // A peer that stops reading blocks these writes; it gets until the liveness
                // deadline (its frames meanwhile wait in the hub's bounded queue), and a
                // shutdown still ends it at once.
                let deadline = heartbeat.interval + heartbeat.timeout;
                tokio::select! {
                    // The write first: at shutdown the hub's own Close(1001) is in this batch and
                    // must go out; the token only wins over a write that is stuck.
                    biased;
                    r = tokio::time::timeout(deadline, write_batch(&mut socket, &mut conn, out)) => match r {
                        Ok(Ok(None)) => {}
                        Ok(Ok(Some(code))) => break End::Closed(code),
                        Ok(Err(())) => break End::PeerGone,
                        Err(_) => break End::Dead,
                    },
                    () = shutdown.cancelled() => break End::Shutdown,
                }
            }
            msg = socket.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break End::PeerGone,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat.interval + heartbeat.timeout {
                    break End::Dead;
                }
                if socket.send(Message::Ping(axum::body::Bytes::from_static(b"roster"))).await.is_err() {
                    break End::PeerGone;
                }
            }
            () = shutdown.cancelled() => {
                let frame = CloseFrame { code: presence::protocol::CLOSE_GOING_AWAY, reason: Utf8Bytes::from_static("server restarting") };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break End::Shutdown;
            }
        }
    };
    let _ = socket.close().await;
    end
}

/// Writes `first` and everything else already queued, then flushes once. `Ok(Some(code))`
/// when the hub asked to close the socket (the close frame is sent), `Err` when the peer is gone.
async fn write_batch<S>(socket: &mut S, conn: &mut Connection, first: Outgoing) -> Result<Option<u16>, ()>
where
    S: Sink<Message> + Unpin,
{
    let mut next = Some(first);
    while let Some(item) = next.take() {
        match item {
            Outgoing::Frame(bytes) => match Utf8Bytes::try_from(bytes) {
                Ok(text) => socket.feed(Message::Text(text)).await.map_err(|_| ())?,
                Err(_) => tracing::error!("hub produced a frame that is not UTF-8"),
            },
            Outgoing::Close { code, reason } => {
                let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return Ok(Some(code));
            }
        }
        next = conn.try_next();
    }
    socket.flush().await.map_err(|_| ())?;
    Ok(None)
}
