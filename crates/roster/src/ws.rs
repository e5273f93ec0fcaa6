//! `GET /users/`: the WebSocket. Checks happen before the upgrade (handshake headers, session,
//! active user, `Origin`, per-user socket cap); then the socket loop relays what the presence
//! hub sends.
//!
//! The WebSocket layer is our own, server side only (RFC 6455, no extensions). The hub hands out
//! frames already encoded once for every socket ([`Connection::websocket_frames`]; a tutorial
//! batch is one buffer holding all its frames), so a socket's write is a `write` of shared
//! bytes: no per-socket copy, and no per-socket write buffer that stays allocated after a burst.
//! Client frames are parsed in a 256-byte buffer and data payloads are skipped unread, except on
//! `roster.v2` sockets, whose small text messages (at most 1 KiB) are view requests: the window a
//! socket watches comes from the handshake URL (`/users/?offset=0&limit=200&q=`) and changes with
//! such a message. Nothing a client sends changes presence: only opening and closing the socket
//! count. Knows nothing about SQL or HTML.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{Buf, Bytes};
use hyper_util::rt::TokioIo;
use presence::protocol::views::{
    error_json, parse_view_request, MessageError, CLOSE_INVALID_MESSAGE, CLOSE_UNSUPPORTED_DATA, MAX_CLIENT_TEXT,
};
use presence::protocol::{
    write_ws_frame, CLOSE_ACCOUNT_DISABLED, CLOSE_GOING_AWAY, CLOSE_LAGGING, CLOSE_LOGGED_OUT, OPCODE_CLOSE,
    OPCODE_PING, OPCODE_PONG, OPCODE_TEXT,
};
use presence::{ConnectError, Connection, Outgoing, Protocol, Session, SessionKey, UserRef};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::accounts::RetryAfter;
use crate::web::client::ClientAddr;
use crate::web::metrics::Throttled;
use crate::web::session::MaybeUser;
use crate::web::AppState;
pub use handshake::Refusal;
pub(crate) use handshake::{accept_key, handshake_key, protocol_and_window};

mod handshake;

/// Largest message a client may send; anything bigger closes the socket (1009).
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Enough for any control frame (14-byte header + 125-byte payload); data payloads are skipped.
const READ_BUFFER: usize = 256;
/// After our close frame, how long we read (and discard) what the peer still sends, so its
/// close reply does not meet a closed socket and reset the connection.
const LINGER: Duration = Duration::from_secs(1);
/// The `Retry-After` of "too many open pages": a page closing frees a slot at any time.
const TOO_MANY_PAGES_RETRY: Duration = Duration::from_secs(10);

// Close codes of RFC 6455 §7.4.1 used by the framing layer itself.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_TOO_BIG: u16 = 1009;

/// Liveness: a ping every `interval`; no pong (or any frame) within `timeout` drops the socket.
#[derive(Clone, Copy, Debug)]
pub struct Heartbeat {
    pub interval: Duration,
    pub timeout: Duration,
}

pub async fn users_socket(
    State(app): State<AppState>,
    peer: ClientAddr,
    user: MaybeUser,
    mut req: Request,
) -> Response {
    let key = match handshake_key(req.method(), req.headers()) {
        Ok(key) => key,
        Err((refusal, message)) => return refusal.respond(message),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Refusal::NotUpgradable.respond("This connection cannot be upgraded to a WebSocket.");
    };
    let headers = req.headers();
    let Some(me) = user.0 else {
        return Refusal::NoSession.respond("Log in to open the live list.");
    };
    if !app.origin_allowed(headers, &peer) {
        tracing::warn!(peer = %peer, "WebSocket REJECT /users/: foreign Origin");
        return Refusal::Origin.respond("This origin may not open the live list.");
    }
    let (protocol, window) = match protocol_and_window(headers, req.uri().query(), app.page_size) {
        Ok(picked) => picked,
        Err(e) => return Refusal::Window.respond(e.message()),
    };
    let user_ref = UserRef::new(me.user.id, me.user.username.as_str());
    let session = Session { key: SessionKey::from(me.session_hash.as_str()), expires_at: Some(me.expires_at) };
    let opened = match &window {
        Some(window) => app.hub.watch(user_ref, session, window),
        None => app.hub.connect(user_ref, session, protocol),
    };
    let mut connection = match opened {
        Ok(c) => c,
        Err(ConnectError::TooManySockets { .. }) => {
            let refusal = Refusal::TooManyPages.respond("Too many open pages for this account.");
            return crate::web::too_many(Throttled::Pages, RetryAfter(TOO_MANY_PAGES_RETRY), refusal);
        }
        Err(ConnectError::SessionExpired) => return Refusal::SessionExpired.respond("Log in to open the live list."),
        Err(e @ ConnectError::ShuttingDown) => {
            tracing::warn!(error = %e, "WebSocket REJECT /users/");
            return Refusal::ShuttingDown.respond("The live list is shutting down.");
        }
    };
    connection.websocket_frames();

    let heartbeat = app.heartbeat;
    let shutdown = app.shutdown.clone();
    let user_id = me.user.id;
    let in_flight = app.tasks.token();
    app.sockets.spawn(async move {
        let _in_flight = in_flight;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        tracing::info!(target: "roster::http", user_id, "WebSocket CONNECT /users/ [{peer}]");
        metrics::counter!("roster_ws_sockets_opened_total", "protocol" => protocol_label(protocol)).increment(1);
        let end = run(TokioIo::new(upgraded), connection, heartbeat, shutdown).await;
        metrics::counter!("roster_ws_sockets_closed_total", "reason" => end.label()).increment(1);
        tracing::info!(target: "roster::http", user_id, reason = ?end, "WebSocket DISCONNECT /users/ [{peer}]");
    });

    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()));
    if let Some(name) = protocol.subprotocol() {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(name));
    }
    res
}

/// Every `protocol` label of `roster_ws_sockets_opened_total`.
pub const PROTOCOL_LABELS: [&str; 3] = ["tutorial", "roster.v1", "roster.v2"];

/// The `protocol` label of `roster_ws_sockets_opened_total`: one of [`PROTOCOL_LABELS`].
fn protocol_label(protocol: Protocol) -> &'static str {
    protocol.subprotocol().unwrap_or("tutorial")
}

/// Why the loop ended (logged with the disconnect).
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The hub closed it (log out, deactivation, lag policy, shutdown).
    Closed(u16),
    /// The peer closed it or the connection failed.
    PeerGone,
    /// The peer broke the protocol (or sent a message over the limit); closed with this code.
    Violation(u16),
    /// No pong within the deadline.
    Dead,
    /// The server is stopping.
    Shutdown,
}

impl End {
    /// Every `reason` label of `roster_ws_sockets_closed_total`.
    pub const LABELS: [&'static str; 8] =
        ["peer", "logged_out", "account_disabled", "lagging", "shutdown", "server_other", "violation", "no_pong"];

    /// The `reason` label of `roster_ws_sockets_closed_total`: one of [`End::LABELS`].
    pub fn label(&self) -> &'static str {
        match self {
            End::PeerGone => "peer",
            End::Closed(CLOSE_LOGGED_OUT) => "logged_out",
            End::Closed(CLOSE_ACCOUNT_DISABLED) => "account_disabled",
            End::Closed(CLOSE_LAGGING) => "lagging",
            End::Closed(CLOSE_GOING_AWAY) | End::Shutdown => "shutdown",
            End::Closed(_) => "server_other",
            End::Violation(_) => "violation",
            End::Dead => "no_pong",
        }
    }
}

/// Relays hub frames to the socket until one side ends. Frames already queued are written
/// together. Client frames are read to answer pings, notice pongs and close, and (roster.v2
/// only) to take view requests.
pub async fn run<S>(io: S, mut conn: Connection, heartbeat: Heartbeat, shutdown: CancellationToken) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (rd, mut wr) = tokio::io::split(io);
    let mut reader = FrameReader::new(rd);
    reader.messages = conn.protocol() == Protocol::RosterV2;
    let start = Instant::now() + heartbeat.interval;
    let mut ticker = interval_at(start, heartbeat.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // Liveness: how long a peer may stay silent, and how long any write may wait for it to read.
    let deadline = heartbeat.interval + heartbeat.timeout;
    // Whether we sent a close frame and should linger for the peer's reply.
    let mut closing = false;
    // The hub's close request, heard even while a write borrows the connection.
    let close = conn.close_request();
    // One registration with the shared token for the socket's life, not one per batch.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);

    let end = loop {
        tokio::select! {
            out = conn.next() => {
                // Boxed, like the writes of the rare paths below: a socket task holds its largest
                // state for its whole life, and at 15,000 sockets every byte of it counts (the
                // task went from 1,728 to 1,352 bytes). One allocation per batch is nothing next
                // to the write itself.
                let mut write = Box::pin(write_batch(&mut wr, &mut conn, out));
                // Most writes complete at once; only a write that waits gets a timer.
                let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
                let written = match first {
                    Poll::Ready(r) => r.map_err(|_| End::PeerGone),
                    // A peer that stops reading blocks the write; it gets until the liveness
                    // deadline (its frames meanwhile wait in the hub's bounded queue). A shutdown
                    // still ends it at once, and a log out after LINGER.
                    Poll::Pending => {
                        let mut write = Box::pin(bounded(deadline, write));
                        tokio::select! {
                            // The write first: at shutdown the hub's own Close(1001) is in this
                            // batch and must go out; the token only wins over a write that is stuck.
                            biased;
                            r = &mut write => r,
                            () = &mut cancelled => break End::Shutdown,
                            // Logged out (or closed by the hub) while the peer is not reading: the
                            // write gets LINGER to finish, then the socket ends without waiting for
                            // the liveness deadline. The peer could not read our close frame anyway.
                            code = close.requested() => match tokio::time::timeout(LINGER, &mut write).await {
                                Ok(r) => r,
                                Err(_) => break End::Closed(code),
                            },
                        }
                    }
                };
                match written {
                    Ok(None) => {}
                    Ok(Some(code)) => {
                        closing = true;
                        break End::Closed(code);
                    }
                    Err(end) => break end,
                }
            }
            incoming = reader.next() => match incoming {
                Ok(Incoming::Ping(payload)) => {
                    last_heard = Instant::now();
                    // Bounded like every write: a peer that sends pings but never reads must not
                    // hold this task (and its registration) forever.
                    if let Err(end) = Box::pin(bounded(deadline, write_control(&mut wr, OPCODE_PONG, &payload))).await {
                        break end;
                    }
                }
                Ok(Incoming::Close(code)) => {
                    // Echo the peer's code (RFC 6455 §5.5.1), then end.
                    let _ = Box::pin(tokio::time::timeout(LINGER, write_close(&mut wr, code.unwrap_or(CLOSE_NORMAL), ""))).await;
                    closing = true;
                    break End::PeerGone;
                }
                Ok(Incoming::Other) => last_heard = Instant::now(),
                Ok(Incoming::Text(text)) => {
                    last_heard = Instant::now();
                    let refused = match parse_view_request(&text) {
                        Ok(request) => conn.watch(request.id, &request.window).err().map(|e| (request.id, e.to_string())),
                        Err(MessageError::Window { id, error }) => Some((id, error.message().to_owned())),
                        Err(MessageError::Malformed(why)) => {
                            tracing::debug!(why, "roster.v2: invalid message");
                            let _ = Box::pin(tokio::time::timeout(LINGER, write_close(&mut wr, CLOSE_INVALID_MESSAGE, "invalid message"))).await;
                            closing = true;
                            break End::Violation(CLOSE_INVALID_MESSAGE);
                        }
                    };
                    // A refused request changes nothing; the client hears why.
                    if let Some((id, why)) = refused {
                        if let Err(end) = Box::pin(bounded(deadline, write_control(&mut wr, OPCODE_TEXT, &error_json(id, &why)))).await {
                            break end;
                        }
                    }
                }
                Err(ReadError::Violation(code)) => {
                    let reason = match code {
                        CLOSE_TOO_BIG => "message too big",
                        CLOSE_INVALID_MESSAGE => "invalid message",
                        CLOSE_UNSUPPORTED_DATA => "binary messages are not accepted",
                        _ => "protocol error",
                    };
                    let _ = Box::pin(tokio::time::timeout(LINGER, write_close(&mut wr, code, reason))).await;
                    closing = true;
                    break End::Violation(code);
                }
                Err(ReadError::Gone) => break End::PeerGone,
            },
            _ = ticker.tick() => {
                if last_heard.elapsed() > deadline {
                    break End::Dead;
                }
                if let Err(end) = Box::pin(bounded(deadline, write_control(&mut wr, OPCODE_PING, b"roster"))).await {
                    break end;
                }
            }
            () = &mut cancelled => {
                let _ = Box::pin(tokio::time::timeout(LINGER, write_close(&mut wr, CLOSE_GOING_AWAY, "server restarting"))).await;
                closing = true;
                break End::Shutdown;
            }
        }
    };
    drop(conn);
    let _ = tokio::time::timeout(LINGER, wr.shutdown()).await;
    if closing {
        // Read until the peer closes too (its close reply, then EOF), for at most LINGER.
        let _ = tokio::time::timeout(LINGER, reader.drain()).await;
    }
    end
}

/// A write bounded by the liveness deadline: its value, or why the socket ends (the peer is
/// gone, or it stopped reading).
async fn bounded<T>(deadline: Duration, write: impl Future<Output = io::Result<T>>) -> Result<T, End> {
    match tokio::time::timeout(deadline, write).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(End::PeerGone),
        Err(_) => Err(End::Dead),
    }
}

/// Writes `first` and everything else already queued, then flushes. `Ok(Some(code))` when the
/// hub asked to close the socket (the close frame is sent), `Err` when the peer is gone.
async fn write_batch<W>(wr: &mut W, conn: &mut Connection, first: Outgoing) -> io::Result<Option<u16>>
where
    W: AsyncWrite + Unpin,
{
    let mut chunks: VecDeque<Bytes> = VecDeque::new();
    let mut next = Some(first);
    let mut close = None;
    while let Some(item) = next.take() {
        match item {
            Outgoing::Frame(bytes) => chunks.push_back(bytes),
            Outgoing::Close { code, reason } => {
                close = Some((code, reason));
                break;
            }
        }
        next = conn.try_next();
    }
    write_chunks(wr, &mut chunks).await?;
    if let Some((code, reason)) = close {
        write_close(wr, code, reason).await?;
        return Ok(Some(code));
    }
    wr.flush().await?;
    Ok(None)
}

/// Writes every chunk, several per system call where the stream supports vectored writes.
async fn write_chunks<W>(wr: &mut W, chunks: &mut VecDeque<Bytes>) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    const MAX_SLICES: usize = 64;
    while !chunks.is_empty() {
        let mut n = if chunks.len() == 1 {
            wr.write(&chunks[0]).await?
        } else {
            let slices: Vec<IoSlice<'_>> = chunks.iter().take(MAX_SLICES).map(|c| IoSlice::new(c)).collect();
            wr.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(front) = chunks.front_mut() else { break };
            if n >= front.len() {
                n -= front.len();
                chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

/// Writes one frame of our own (a control frame, or a roster.v2 error frame) and flushes.
async fn write_control<W: AsyncWrite + Unpin>(wr: &mut W, opcode: u8, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(2 + payload.len());
    write_ws_frame(&mut frame, opcode, payload);
    wr.write_all(&frame).await?;
    wr.flush().await
}

async fn write_close<W: AsyncWrite + Unpin>(wr: &mut W, code: u16, reason: &str) -> io::Result<()> {
    let mut payload = code.to_be_bytes().to_vec();
    // A control frame's payload is at most 125 bytes (our reasons are short ASCII).
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    write_control(wr, OPCODE_CLOSE, &payload).await
}

/// What the peer sent that the loop acts on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// Answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// The peer closes, with its code if it sent one.
    Close(Option<u16>),
    /// A pong or (the start of) a data frame: proof of life, nothing else.
    Other,
    /// A whole text message of a roster.v2 client (valid UTF-8, at most 1 KiB).
    Text(Vec<u8>),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// EOF or an I/O error.
    Gone,
    /// Close the connection with this code (1002 protocol error, 1009 too big; for a roster.v2
    /// client also 1003 binary, 1007 not UTF-8).
    Violation(u16),
}

/// Parses client frames (RFC 6455 §5) from a fixed 256-byte buffer. Cancel-safe: all state is
/// in the struct, and the only await is a read into the buffer. Data payloads are skipped unread,
/// unless `messages` is set (roster.v2): then text messages of at most [`MAX_CLIENT_TEXT`] bytes
/// are unmasked into a buffer of their own (allocated only while one is arriving) and delivered.
pub(crate) struct FrameReader<R> {
    rd: R,
    buf: [u8; READ_BUFFER],
    start: usize,
    end: usize,
    /// Payload bytes of the current data frame still to discard.
    skip: u64,
    /// Bytes of the current (possibly fragmented) data message so far.
    message: u64,
    /// A fragmented data message is in progress (continuation frames expected).
    fragmented: bool,
    /// Deliver text messages (roster.v2) instead of skipping them.
    pub(crate) messages: bool,
    /// The current text frame being unmasked into `text`.
    collecting: Option<Collect>,
    /// The text message so far.
    text: Vec<u8>,
}

/// A text frame's payload on its way into the message buffer.
struct Collect {
    mask: [u8; 4],
    /// Payload bytes of this frame still to read.
    left: u64,
    /// Payload bytes of this frame read so far (the mask's phase).
    done: usize,
    /// The message's last frame.
    fin: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(rd: R) -> Self {
        FrameReader {
            rd,
            buf: [0; READ_BUFFER],
            start: 0,
            end: 0,
            skip: 0,
            message: 0,
            fragmented: false,
            messages: false,
            collecting: None,
            text: Vec::new(),
        }
    }

    pub(crate) async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min((self.end - self.start) as u64);
                self.start += n as usize;
                self.skip -= n;
                if self.skip > 0 {
                    self.fill().await?;
                    continue;
                }
            }
            if let Some(c) = &mut self.collecting {
                let n = c.left.min((self.end - self.start) as u64) as usize;
                let payload = &self.buf[self.start..self.start + n];
                self.text.extend(payload.iter().enumerate().map(|(i, b)| b ^ c.mask[(c.done + i) % 4]));
                self.start += n;
                c.done += n;
                c.left -= n as u64;
                if c.left > 0 {
                    self.fill().await?;
                    continue;
                }
                let fin = c.fin;
                self.collecting = None;
                if fin {
                    let text = std::mem::take(&mut self.text);
                    if std::str::from_utf8(&text).is_err() {
                        return Err(ReadError::Violation(CLOSE_INVALID_MESSAGE));
                    }
                    return Ok(Incoming::Text(text));
                }
            }
            if let Some(incoming) = self.parse()? {
                return Ok(incoming);
            }
            self.fill().await?;
        }
    }

    /// Reads and discards until EOF or an error.
    async fn drain(&mut self) {
        loop {
            self.start = 0;
            self.end = 0;
            if self.fill().await.is_err() {
                return;
            }
        }
    }

    async fn fill(&mut self) -> Result<(), ReadError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Cannot happen: a header plus a control payload is at most 139 bytes.
            return Err(ReadError::Violation(CLOSE_PROTOCOL_ERROR));
        }
        match self.rd.read(&mut self.buf[self.end..]).await {
            Ok(0) | Err(_) => Err(ReadError::Gone),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
        }
    }

    /// One frame from the buffer if a whole header (and, for control frames, payload) is there.
    fn parse(&mut self) -> Result<Option<Incoming>, ReadError> {
        let violation = Err(ReadError::Violation(CLOSE_PROTOCOL_ERROR));
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = b[0] & 0x0F;
        // No extension was negotiated, so RSV bits must be clear; client frames must be masked.
        if b[0] & 0x70 != 0 || b[1] & 0x80 == 0 {
            return violation;
        }
        let (len, mut header) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")), 10),
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        header += 4;
        if b.len() < header {
            return Ok(None);
        }
        let mask = [b[header - 4], b[header - 3], b[header - 2], b[header - 1]];
        match opcode {
            OPCODE_CLOSE | OPCODE_PING | OPCODE_PONG => {
                if !fin || len > 125 {
                    return violation;
                }
                let total = header + len as usize;
                if b.len() < total {
                    return Ok(None);
                }
                let payload: Vec<u8> = b[header..total].iter().enumerate().map(|(i, x)| x ^ mask[i % 4]).collect();
                self.start += total;
                match opcode {
                    OPCODE_PING => Ok(Some(Incoming::Ping(payload))),
                    OPCODE_PONG => Ok(Some(Incoming::Other)),
                    _ => match payload.len() {
                        0 => Ok(Some(Incoming::Close(None))),
                        1 => violation,
                        _ => {
                            let code = u16::from_be_bytes([payload[0], payload[1]]);
                            // Codes a peer may send (RFC 6455 §7.4).
                            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
                            if valid {
                                Ok(Some(Incoming::Close(Some(code))))
                            } else {
                                violation
                            }
                        }
                    },
                }
            }
            0x0..=0x2 => {
                // Continuation only inside a fragmented message; a new message not inside one.
                if (opcode == 0x0) != self.fragmented {
                    return violation;
                }
                self.message = if opcode == 0x0 { self.message.saturating_add(len) } else { len };
                let limit = if self.messages { MAX_CLIENT_TEXT } else { MAX_CLIENT_MESSAGE };
                if self.message > limit as u64 {
                    return Err(ReadError::Violation(CLOSE_TOO_BIG));
                }
                if self.messages && opcode == 0x2 {
                    return Err(ReadError::Violation(CLOSE_UNSUPPORTED_DATA));
                }
                self.fragmented = !fin;
                self.start += header;
                if self.messages {
                    if opcode != 0x0 {
                        self.text.clear();
                    }
                    self.collecting = Some(Collect { mask, left: len, done: 0, fin });
                } else {
                    self.skip = len;
                }
                Ok(Some(Incoming::Other))
            }
            _ => violation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_has_a_known_label() {
        let ends = [
            End::PeerGone,
            End::Closed(4001),
            End::Closed(1008),
            End::Closed(1013),
            End::Closed(1001),
            End::Closed(1011),
            End::Violation(1002),
            End::Dead,
            End::Shutdown,
        ];
        let labels: std::collections::BTreeSet<_> = ends.iter().map(End::label).collect();
        assert_eq!(labels, End::LABELS.into_iter().collect());
    }

    /// A masked client frame.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn read_all(bytes: Vec<u8>) -> Vec<Result<Incoming, ReadError>> {
        read_with(bytes, false).await
    }

    /// Every result of reading `bytes`, up to a close or an error; `messages` as for roster.v2.
    async fn read_with(bytes: Vec<u8>, messages: bool) -> Vec<Result<Incoming, ReadError>> {
        let mut reader = FrameReader::new(&bytes[..]);
        reader.messages = messages;
        let mut out = Vec::new();
        loop {
            let r = reader.next().await;
            let stop = r.is_err() || matches!(r, Ok(Incoming::Close(_)));
            out.push(r);
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn client_frames_are_parsed_and_data_is_skipped() {
        let mut wire = client_frame(true, 0x1, &vec![b'x'; 70_000 - 6_000]); // 64,000 bytes: allowed
        wire.extend(client_frame(true, OPCODE_PING, b"hi"));
        wire.extend(client_frame(false, 0x2, b"part one"));
        wire.extend(client_frame(true, OPCODE_PONG, b""));
        wire.extend(client_frame(true, 0x0, b"part two"));
        wire.extend(client_frame(true, OPCODE_CLOSE, &[0x03, 0xE8, b'b', b'y', b'e']));
        assert_eq!(
            read_all(wire).await,
            vec![
                Ok(Incoming::Other),
                Ok(Incoming::Ping(b"hi".to_vec())),
                Ok(Incoming::Other),
                Ok(Incoming::Other),
                Ok(Incoming::Other),
                Ok(Incoming::Close(Some(1000))),
            ]
        );
    }

    #[tokio::test]
    async fn protocol_violations_and_big_messages_are_refused() {
        let last = |v: Vec<Result<Incoming, ReadError>>| v.into_iter().last().expect("one result");
        let unmasked = vec![0x81, 0x02, b'h', b'i'];
        assert_eq!(last(read_all(unmasked).await), Err(ReadError::Violation(1002)), "unmasked");
        let mut rsv = client_frame(true, 0x1, b"x");
        rsv[0] |= 0x40;
        assert_eq!(last(read_all(rsv).await), Err(ReadError::Violation(1002)), "RSV1 without an extension");
        assert_eq!(
            last(read_all(client_frame(true, 0x3, b"")).await),
            Err(ReadError::Violation(1002)),
            "reserved opcode"
        );
        assert_eq!(
            last(read_all(client_frame(false, OPCODE_PING, b"")).await),
            Err(ReadError::Violation(1002)),
            "fragmented ping"
        );
        assert_eq!(
            last(read_all(client_frame(true, 0x0, b"x")).await),
            Err(ReadError::Violation(1002)),
            "stray continuation"
        );
        assert_eq!(
            last(read_all(client_frame(true, OPCODE_CLOSE, &[0x03])).await),
            Err(ReadError::Violation(1002)),
            "1-byte close"
        );
        assert_eq!(
            last(read_all(client_frame(true, OPCODE_CLOSE, &[0x03, 0xED])).await),
            Err(ReadError::Violation(1002)),
            "close 1005 on the wire"
        );
        assert_eq!(
            last(read_all(client_frame(true, 0x1, &vec![b'x'; MAX_CLIENT_MESSAGE + 1])).await),
            Err(ReadError::Violation(1009))
        );
        let mut two = client_frame(false, 0x1, &vec![b'x'; 40_000]);
        two.extend(client_frame(true, 0x0, &vec![b'x'; 40_000]));
        assert_eq!(last(read_all(two).await), Err(ReadError::Violation(1009)), "fragments add up");
        assert_eq!(
            last(read_all(client_frame(true, 0x1, b"cut")[..5].to_vec()).await),
            Err(ReadError::Gone),
            "EOF mid-frame"
        );
    }

    #[tokio::test]
    async fn roster_v2_text_messages_are_delivered_whole() {
        let texts = |v: Vec<Result<Incoming, ReadError>>| -> Vec<Result<String, ReadError>> {
            v.into_iter()
                .filter(|r| !matches!(r, Ok(Incoming::Other)))
                .map(|r| match r {
                    Ok(Incoming::Text(t)) => Ok(String::from_utf8(t).expect("UTF-8")),
                    Ok(other) => Ok(format!("{other:?}")),
                    Err(e) => Err(e),
                })
                .collect()
        };
        let view = r#"{"type":"view","id":3,"offset":200,"limit":200,"q":"al"}"#;
        // Longer than the 256-byte read buffer, so it arrives over several reads.
        let long = format!(r#"{{"type":"view","id":4,"offset":0,"limit":1,"q":"{}"}}"#, "é".repeat(150));
        let mut wire = client_frame(true, 0x1, view.as_bytes());
        wire.extend(client_frame(false, 0x1, &long.as_bytes()[..100]));
        wire.extend(client_frame(true, OPCODE_PING, b"hi"));
        wire.extend(client_frame(false, 0x0, &long.as_bytes()[100..101]));
        wire.extend(client_frame(true, 0x0, &long.as_bytes()[101..]));
        wire.extend(client_frame(true, 0x1, b""));
        wire.extend(client_frame(true, OPCODE_CLOSE, &[0x03, 0xE8]));
        assert_eq!(
            texts(read_with(wire, true).await),
            vec![
                Ok(view.to_owned()),
                Ok("Ping([104, 105])".to_owned()),
                Ok(long),
                Ok(String::new()),
                Ok("Close(Some(1000))".to_owned())
            ]
        );

        let last = |v: Vec<Result<Incoming, ReadError>>| v.into_iter().last().expect("one result");
        let big = client_frame(true, 0x1, &vec![b'x'; MAX_CLIENT_TEXT + 1]);
        assert_eq!(last(read_with(big.clone(), true).await), Err(ReadError::Violation(1009)), "1 KiB at most");
        assert_eq!(read_with(big, false).await, vec![Ok(Incoming::Other), Err(ReadError::Gone)], "others: skipped");
        let mut split = client_frame(false, 0x1, &vec![b'x'; 600]);
        split.extend(client_frame(true, 0x0, &vec![b'x'; 600]));
        assert_eq!(last(read_with(split, true).await), Err(ReadError::Violation(1009)), "fragments add up");
        assert_eq!(last(read_with(client_frame(true, 0x2, b"\x00"), true).await), Err(ReadError::Violation(1003)));
        assert_eq!(
            last(read_with(client_frame(true, 0x1, &[0xC3, 0x28]), true).await),
            Err(ReadError::Violation(1007))
        );
    }
}
