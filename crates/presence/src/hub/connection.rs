//! One socket's view of the hub: [`Connection`] hands the socket loop what to send (the roster.v1
//! or roster.v2 snapshot first, then each frame of its ring as it comes), closes it when the hub
//! asks (log out, account closed, session expired, shutdown), and applies the lag policy: a
//! roster.v1 or roster.v2 socket that falls off its ring gets a fresh snapshot, a tutorial socket
//! is closed with 1013. Never a silent gap.
//!
//! Tutorial and roster.v1 sockets read the hub's ring of batches; a roster.v2 socket reads the
//! ring of its window's group, and moves to another group when the client asks
//! ([`Connection::watch`]).
//!
//! Dropping a `Connection` is the socket closing for presence.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::batch::{framed, Batch};
use super::registry::SocketShared;
use super::ring::mark_taken;
use super::types::{close, Outgoing, Protocol, WatchError};
use super::views::{GroupFrame, GroupShared, WindowKey};
use super::{lock, Inner};
use crate::protocol::views::{snapshot_json, Window};
use crate::protocol::{CLOSE_GOING_AWAY, CLOSE_LAGGING};
use crate::UserId;

/// View changes a socket may make in a burst, and how many it earns back per second (each
/// change may build a search's index: O(matches)). Pages change views when a person clicks.
const VIEW_CHANGES_BURST: f32 = 20.0;
const VIEW_CHANGES_PER_SECOND: f32 = 5.0;

/// Where a connection's frames come from.
pub(super) enum Feed {
    /// The hub's ring of batches (tutorial and roster.v1).
    Batches(broadcast::Receiver<Arc<Batch>>),
    /// A live view group's ring (roster.v2).
    View(ViewFeed),
}

pub(super) struct ViewFeed {
    pub(super) key: WindowKey,
    pub(super) group: Arc<GroupShared>,
    pub(super) rx: broadcast::Receiver<Arc<GroupFrame>>,
    /// The client's id of the request this window answers (0: the handshake's).
    pub(super) id: u64,
    /// Token bucket of view changes.
    tokens: f32,
    tokens_at: Instant,
}

impl ViewFeed {
    pub(super) fn new(
        key: WindowKey,
        group: Arc<GroupShared>,
        rx: broadcast::Receiver<Arc<GroupFrame>>,
        id: u64,
    ) -> ViewFeed {
        ViewFeed { key, group, rx, id, tokens: VIEW_CHANGES_BURST, tokens_at: Instant::now() }
    }
}

/// What a wait on the feed brought.
enum Received {
    Batch(Result<Arc<Batch>, broadcast::error::RecvError>),
    View(Result<Arc<GroupFrame>, broadcast::error::RecvError>),
}

/// One socket's view of the hub. Dropping it closes the socket for presence (the user's count
/// drops; the grace starts if it was the last).
pub struct Connection {
    pub(super) inner: Arc<Inner>,
    pub(super) shared: Arc<SocketShared>,
    pub(super) feed: Feed,
    pub(super) user: UserId,
    pub(super) id: u64,
    pub(super) protocol: Protocol,
    /// roster.v1 and roster.v2: the next frame is a snapshot.
    pub(super) resync: bool,
    /// roster.v1 and roster.v2: items up to this seq are already in the snapshot sent.
    pub(super) skip_upto: u64,
    /// Tutorial: the batch being sent and the index of its next frame.
    pub(super) cursor: Option<(Arc<Batch>, usize)>,
    pub(super) closed: Option<u16>,
    /// Frames are whole WebSocket frames (see [`Connection::websocket_frames`]).
    pub(super) wire: bool,
    /// How many frames the next counted [`Outgoing::Frame`] holds.
    pub(super) frames_in_out: u64,
    /// The seq of the last item taken from the feed's ring (or already in its snapshot, or sent
    /// before it subscribed).
    pub(super) seen: u64,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("user", &self.user)
            .field("id", &self.id)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// The hub's close request for one socket, apart from its [`Connection`]: a socket loop whose
/// write waits on a peer that stopped reading holds the connection borrowed, and still must hear
/// a log out (see [`Connection::close_request`]).
#[derive(Clone, Debug)]
pub struct CloseRequest(Arc<SocketShared>);

impl CloseRequest {
    /// Waits until the hub asks the socket to close (log out, account closed, session expired,
    /// shutdown); the close code. Cancel-safe. [`Connection::next`] still returns the close.
    pub async fn requested(&self) -> u16 {
        loop {
            // Registered before the check: a request between the two still wakes it.
            let notified = self.0.notify.notified();
            let code = self.0.close.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            notified.await;
        }
    }
}

impl Connection {
    pub fn user(&self) -> UserId {
        self.user
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// A handle that tells when the hub asks this socket to close, usable while the connection
    /// is borrowed.
    pub fn close_request(&self) -> CloseRequest {
        CloseRequest(self.shared.clone())
    }

    /// From now on, every [`Outgoing::Frame`] is complete WebSocket frames (RFC 6455, unmasked, as
    /// [`crate::protocol::write_ws_frame`] makes them), and a tutorial batch comes as one buffer holding
    /// all its frames. The buffers are the hub's own, shared by every socket, so a socket loop
    /// writes them as they are: no per-socket copy, no per-socket write buffer. Call it before
    /// the first [`Self::next`].
    pub fn websocket_frames(&mut self) {
        self.wire = true;
    }

    /// roster.v2: watch `window` from now on, answering the client's request `id`. The next frame
    /// is the new window's snapshot (carrying `id`); frames of the old window that were not sent
    /// yet are dropped. Refused (nothing changes) for other protocols and when the socket changes
    /// windows faster than a person would.
    pub fn watch(&mut self, id: u64, window: &Window) -> Result<(), WatchError> {
        let Feed::View(old) = &mut self.feed else { return Err(WatchError::NotAView) };
        let now = Instant::now();
        let earned = now.saturating_duration_since(old.tokens_at).as_secs_f32() * VIEW_CHANGES_PER_SECOND;
        let tokens = (old.tokens + earned).min(VIEW_CHANGES_BURST);
        if tokens < 1.0 {
            return Err(WatchError::TooFast);
        }
        // Done with the old group's latest frame, whether or not it was taken.
        old.group.ring.leave(self.seen, &self.inner.clock, &self.inner.wake);
        let (key, group, rx, seq) = {
            let mut views = lock(&self.inner.views);
            let key = views.key(window);
            // Join first: a socket that asks for its own window again keeps the group alive.
            let (group, rx, seq) = views.join(&key);
            views.leave(&old.key);
            (key, group, rx, seq)
        };
        self.feed = Feed::View(ViewFeed { key, group, rx, id, tokens: tokens - 1.0, tokens_at: now });
        self.seen = seq;
        self.skip_upto = 0;
        self.resync = true;
        Ok(())
    }

    /// The next thing to send: waits for it. Cancel-safe (use it in `select!` with the socket's
    /// reads). For roster.v1 and roster.v2 the first frame is the snapshot. After a `Close`, keeps
    /// returning it.
    pub async fn next(&mut self) -> Outgoing {
        loop {
            if let Some(out) = self.try_next() {
                return out;
            }
            let shared = &self.shared;
            let received = match &mut self.feed {
                Feed::Batches(rx) => tokio::select! {
                    biased;
                    // Log out, deactivation and shutdown (the hub task tells every socket).
                    _ = shared.notify.notified() => None,
                    r = rx.recv() => Some(Received::Batch(r)),
                },
                Feed::View(v) => tokio::select! {
                    biased;
                    _ = shared.notify.notified() => None,
                    r = v.rx.recv() => Some(Received::View(r)),
                },
            };
            let out = match received {
                None => None,
                Some(Received::Batch(Ok(batch))) => self.take_batch(batch),
                Some(Received::View(Ok(frame))) => self.take_view_frame(frame),
                Some(Received::Batch(Err(e)) | Received::View(Err(e))) => self.on_error(e),
            };
            if let Some(out) = out {
                return self.count(out);
            }
        }
    }

    /// What is already queued, without waiting: feed frames until `None`, then flush the socket.
    pub fn try_next(&mut self) -> Option<Outgoing> {
        let out = self.poll_ready()?;
        Some(self.count(out))
    }

    /// [`Self::try_next`] without counting frames.
    fn poll_ready(&mut self) -> Option<Outgoing> {
        if let Some(code) = self.closed {
            return Some(close(code));
        }
        let code = self.shared.close.load(Ordering::Acquire);
        if code != 0 {
            return Some(self.close_with(code));
        }
        if self.inner.shutdown.is_cancelled() {
            return Some(self.close_with(CLOSE_GOING_AWAY));
        }
        if self.resync {
            self.resync = false;
            return Some(self.snapshot());
        }
        if let Some(out) = self.next_in_cursor() {
            return Some(out);
        }
        loop {
            let received = match &mut self.feed {
                Feed::Batches(rx) => Received::Batch(try_recv(rx)?),
                Feed::View(v) => Received::View(try_recv(&mut v.rx)?),
            };
            let out = match received {
                Received::Batch(Ok(batch)) => self.take_batch(batch),
                Received::View(Ok(frame)) => self.take_view_frame(frame),
                Received::Batch(Err(e)) | Received::View(Err(e)) => self.on_error(e),
            };
            if out.is_some() {
                return out;
            }
        }
    }

    /// The snapshot this connection is due: roster.v1's whole online set, or its window's.
    fn snapshot(&mut self) -> Outgoing {
        let (seq, text, wire) = match &self.feed {
            Feed::Batches(_) => lock(&self.inner.published).snapshot_frame(),
            Feed::View(v) => {
                let (seq, body) = lock(&self.inner.views).snapshot(&v.key).unwrap_or_default();
                let (wire, text) = framed(&snapshot_json(v.id, self.inner.now_ms(), &body));
                (seq, text, wire)
            }
        };
        self.skip_upto = seq;
        Outgoing::Frame(if self.wire { wire } else { text })
    }

    fn count(&mut self, out: Outgoing) -> Outgoing {
        if matches!(out, Outgoing::Frame(_)) {
            let n = std::mem::replace(&mut self.frames_in_out, 1);
            self.inner.frames_sent.fetch_add(n, Ordering::Relaxed);
        }
        out
    }

    fn close_with(&mut self, code: u16) -> Outgoing {
        self.closed = Some(code);
        self.cursor = None;
        close(code)
    }

    fn next_in_cursor(&mut self) -> Option<Outgoing> {
        let (batch, i) = self.cursor.as_mut()?;
        let frame = batch.tutorial.get(*i).cloned();
        *i += 1;
        if *i >= batch.tutorial.len() {
            self.cursor = None;
        }
        frame.map(Outgoing::Frame)
    }

    fn take_batch(&mut self, batch: Arc<Batch>) -> Option<Outgoing> {
        self.seen = batch.seq;
        mark_taken(&batch.progress, &self.inner.clock, &self.inner.wake);
        match self.protocol {
            Protocol::RosterV1 | Protocol::RosterV2 => {
                if self.resync {
                    // A snapshot is due (lag); it covers this batch or precedes it.
                    return self.poll_ready();
                }
                let frame = if self.wire { &batch.v1_wire } else { &batch.v1 };
                (batch.seq > self.skip_upto).then(|| Outgoing::Frame(frame.clone()))
            }
            Protocol::Tutorial => {
                if batch.tutorial.is_empty() {
                    return None;
                }
                if self.wire {
                    self.frames_in_out = batch.tutorial.len() as u64;
                    return Some(Outgoing::Frame(batch.tutorial_wire.clone()));
                }
                self.cursor = Some((batch, 0));
                self.next_in_cursor()
            }
        }
    }

    fn take_view_frame(&mut self, frame: Arc<GroupFrame>) -> Option<Outgoing> {
        self.seen = frame.seq;
        mark_taken(&frame.progress, &self.inner.clock, &self.inner.wake);
        if self.resync {
            return self.poll_ready();
        }
        (frame.seq > self.skip_upto).then(|| Outgoing::Frame(if self.wire { &frame.wire } else { &frame.text }.clone()))
    }

    fn on_error(&mut self, e: broadcast::error::RecvError) -> Option<Outgoing> {
        match e {
            broadcast::error::RecvError::Lagged(missed) => match self.protocol {
                Protocol::RosterV1 | Protocol::RosterV2 => {
                    tracing::debug!(user = self.user, missed, protocol = ?self.protocol, "socket lagged: resync");
                    self.inner.lagging_resyncs.fetch_add(1, Ordering::Relaxed);
                    self.resync = true;
                    self.poll_ready()
                }
                Protocol::Tutorial => {
                    tracing::debug!(user = self.user, missed, "tutorial socket lagged: close");
                    self.inner.lagging_closes.fetch_add(1, Ordering::Relaxed);
                    Some(self.close_with(CLOSE_LAGGING))
                }
            },
            broadcast::error::RecvError::Closed => Some(self.close_with(CLOSE_GOING_AWAY)),
        }
    }
}

/// What a receiver holds now: `None` if nothing, else an item or why not (as `recv` says it).
fn try_recv<T: Clone>(rx: &mut broadcast::Receiver<T>) -> Option<Result<T, broadcast::error::RecvError>> {
    use broadcast::error::{RecvError, TryRecvError};
    match rx.try_recv() {
        Ok(item) => Some(Ok(item)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
        Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // It will never take the latest item of its ring: stop the hub from waiting for it.
        match &self.feed {
            Feed::Batches(_) => self.inner.ring.leave(self.seen, &self.inner.clock, &self.inner.wake),
            Feed::View(v) => {
                v.group.ring.leave(self.seen, &self.inner.clock, &self.inner.wake);
                lock(&self.inner.views).leave(&v.key);
            }
        }
        self.inner.socket_closed(self.user, self.id);
    }
}
