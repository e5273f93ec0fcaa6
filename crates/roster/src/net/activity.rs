//! What a connection is doing, and so which deadline applies to it:
//!
//! | phase | from | deadline |
//! |---|---|---|
//! | awaiting its first request | the accept | header-read timeout |
//! | reading a request's headers | the request's first byte | header-read timeout |
//! | busy (a request in the router, or its response being written) | the parsed headers | none |
//! | idle between keep-alive requests | the end of the last response | idle timeout |
//!
//! hyper 1 has a header-read timer of its own, but it runs from the end of one response to the
//! end of the next request's headers, so it cannot tell an idle keep-alive wait from a slow
//! client; this module tracks the phases itself. [`Tracked`] wraps the TCP stream to notice a
//! request's first byte (and holds the connection's [`Slot`]); the connection's service marks
//! requests started and finished. Phases are atomics: the stream and the service are polled
//! by the same task, and an upgraded WebSocket keeps the stream (and so the slot) without any
//! deadline from here.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::caps::Slot;

/// The two timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the accept, or a request's first byte, to its parsed headers.
    pub header_read: Duration,
    /// From the end of a response to the next request's first byte.
    pub idle: Duration,
}

const AWAITING_FIRST: u8 = 0;
const READING_HEADERS: u8 = 1;
const BUSY: u8 = 2;
const IDLE: u8 = 3;

/// The phase a connection was in when its deadline passed (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    HeaderRead,
    Idle,
}

impl Expired {
    pub fn label(self) -> &'static str {
        match self {
            Expired::HeaderRead => "header_read",
            Expired::Idle => "idle",
        }
    }
}

/// One connection's phase and when it began.
#[derive(Debug)]
pub struct Activity {
    /// The connection's start; `since_ms` counts from here.
    start: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Activity {
        Activity { start: Instant::now(), phase: AtomicU8::new(AWAITING_FIRST), since_ms: AtomicU64::new(0) }
    }

    fn set(&self, phase: u8) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.since_ms.store(ms, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Bytes arrived: on an idle connection, a new request has begun.
    fn bytes_read(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.set(READING_HEADERS);
        }
    }

    /// The router got a request (its headers are complete).
    pub fn request_started(&self) {
        self.set(BUSY);
    }

    /// The response was written (or abandoned): the connection is idle.
    pub fn request_finished(&self) {
        self.set(IDLE);
    }

    /// When this connection must be closed, and why, if it stays in its current phase.
    pub fn deadline(&self, t: &Timeouts) -> Option<(Instant, Expired)> {
        let since = self.start + Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        match self.phase.load(Ordering::Relaxed) {
            AWAITING_FIRST | READING_HEADERS => Some((since + t.header_read, Expired::HeaderRead)),
            IDLE => Some((since + t.idle, Expired::Idle)),
            _ => None,
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

/// A connection's stream: tells its [`Activity`] when bytes arrive and holds its [`Slot`] for
/// as long as the stream lives (through a WebSocket upgrade too). Writes pass straight through,
/// vectored ones included.
pub struct Tracked<S> {
    inner: S,
    activity: std::sync::Arc<Activity>,
    _slot: Slot,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: std::sync::Arc<Activity>, slot: Slot) -> Tracked<S> {
        Tracked { inner, activity, _slot: slot }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts { header_read: Duration::from_secs(10), idle: Duration::from_secs(60) };

    #[tokio::test(start_paused = true)]
    async fn each_phase_has_its_deadline() {
        let a = Activity::new();
        let (at, why) = a.deadline(&T).expect("awaiting the first request");
        assert_eq!((at - a.start, why), (T.header_read, Expired::HeaderRead));
        a.bytes_read();
        assert_eq!(a.deadline(&T).map(|(at, _)| at - a.start), Some(T.header_read), "the clock runs from accept");
        a.request_started();
        assert_eq!(a.deadline(&T), None, "no deadline while busy");
        tokio::time::advance(Duration::from_secs(100)).await;
        a.request_finished();
        let (at, why) = a.deadline(&T).expect("idle");
        assert_eq!((at - a.start, why), (Duration::from_secs(100) + T.idle, Expired::Idle));
        tokio::time::advance(Duration::from_secs(5)).await;
        a.bytes_read();
        let (at, why) = a.deadline(&T).expect("reading headers");
        assert_eq!((at - a.start, why), (Duration::from_secs(105) + T.header_read, Expired::HeaderRead));
    }
}
