//! One socket's view of the hub: [`Connection`] hands the socket loop what to send (the roster.v1
//! snapshot first, then each batch of its ring as it comes), closes it when the hub asks (log out,
//! account closed, session expired, shutdown), and applies the lag policy: a roster.v1 socket
//! that falls off its ring gets a fresh snapshot, a tutorial socket is closed with 1013. Never a
//! silent gap.
//!
//! Dropping a `Connection` is the socket closing for presence.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::batch::Batch;
use super::registry::SocketShared;
use super::ring::mark_taken;
use super::types::{close, Outgoing, Protocol};
use super::{lock, Inner};
use crate::protocol::{CLOSE_GOING_AWAY, CLOSE_LAGGING};
use crate::UserId;

/// One socket's view of the hub. Dropping it closes the socket for presence (the user's count
/// drops; the grace starts if it was the last).
pub struct Connection {
    pub(super) inner: Arc<Inner>,
    pub(super) shared: Arc<SocketShared>,
    pub(super) rx: broadcast::Receiver<Arc<Batch>>,
    pub(super) user: UserId,
    pub(super) id: u64,
    pub(super) protocol: Protocol,
    /// roster.v1: the next frame is a snapshot.
    pub(super) resync: bool,
    /// roster.v1: batches up to this seq are already in the snapshot sent.
    pub(super) skip_upto: u64,
    /// Tutorial: the batch being sent and the index of its next frame.
    pub(super) cursor: Option<(Arc<Batch>, usize)>,
    pub(super) closed: Option<u16>,
    /// Frames are whole WebSocket frames (see [`Connection::websocket_frames`]).
    pub(super) wire: bool,
    /// How many frames the next counted [`Outgoing::Frame`] holds.
    pub(super) frames_in_out: u64,
    /// The seq of the last batch taken (or already in its snapshot, or sent before it connected).
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

impl Connection {
    pub fn user(&self) -> UserId {
        self.user
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// From now on, every [`Outgoing::Frame`] is complete WebSocket frames (RFC 6455, unmasked, as
    /// [`crate::protocol::write_ws_frame`] makes them), and a tutorial batch comes as one buffer holding
    /// all its frames. The buffers are the hub's own, shared by every socket, so a socket loop
    /// writes them as they are: no per-socket copy, no per-socket write buffer. Call it before
    /// the first [`Self::next`].
    pub fn websocket_frames(&mut self) {
        self.wire = true;
    }

    /// The next thing to send: waits for it. Cancel-safe (use it in `select!` with the socket's
    /// reads). For roster.v1 the first frame is the snapshot. After a `Close`, keeps returning it.
    pub async fn next(&mut self) -> Outgoing {
        loop {
            if let Some(out) = self.try_next() {
                return out;
            }
            tokio::select! {
                biased;
                // Log out, deactivation and shutdown (the hub task tells every socket).
                _ = self.shared.notify.notified() => {}
                r = self.rx.recv() => {
                    let out = match r {
                        Ok(batch) => self.take_batch(batch),
                        Err(e) => self.on_error(e),
                    };
                    if let Some(out) = out {
                        return self.count(out);
                    }
                }
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
            let (seq, text, wire) = lock(&self.inner.published).snapshot_frame();
            self.skip_upto = seq;
            return Some(Outgoing::Frame(if self.wire { wire } else { text }));
        }
        if let Some(out) = self.next_in_cursor() {
            return Some(out);
        }
        loop {
            let out = match self.rx.try_recv() {
                Ok(batch) => self.take_batch(batch),
                Err(broadcast::error::TryRecvError::Empty) => return None,
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.on_error(broadcast::error::RecvError::Lagged(n)),
                Err(broadcast::error::TryRecvError::Closed) => self.on_error(broadcast::error::RecvError::Closed),
            };
            if out.is_some() {
                return out;
            }
        }
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
        mark_taken(&batch, &self.inner.clock, &self.inner.wake);
        match self.protocol {
            Protocol::RosterV1 => {
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

    fn on_error(&mut self, e: broadcast::error::RecvError) -> Option<Outgoing> {
        match e {
            broadcast::error::RecvError::Lagged(missed) => match self.protocol {
                Protocol::RosterV1 => {
                    tracing::debug!(user = self.user, missed, "roster.v1 socket lagged: resync");
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

impl Drop for Connection {
    fn drop(&mut self) {
        // It will never take the latest batch: stop the hub from waiting for it.
        self.inner.ring.leave(self.seen, &self.inner.clock, &self.inner.wake);
        self.inner.socket_closed(self.user, self.id);
    }
}
