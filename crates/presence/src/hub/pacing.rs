//! Pacing: when the next batch may go. A tick after the last one (unless it reached no socket),
//! and under load not before the sockets have taken it (all of them, or all that are still
//! making progress), but at most [`FANOUT_WAIT_TICKS`] ticks after it. Under load the batches
//! grow instead of piling up in the ring: fewer, larger writes, and no socket falls behind just
//! because the machine is busy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::clock::Clock;
use super::ring::Progress;

/// A batch whose fan-out has made no progress for this long is done: whoever has not taken it is
/// stalled (a peer that stopped reading), not busy.
const FANOUT_STALL: Duration = Duration::from_millis(5);
/// The next batch never waits for a fan-out longer than this many ticks.
const FANOUT_WAIT_TICKS: u32 = 10;

/// The last flush and when it went out.
pub(super) struct Pacing {
    pub(super) at: tokio::time::Instant,
    pub(super) progress: Arc<Progress>,
}

impl Pacing {
    /// When the next batch may go (see the module docs).
    pub(super) fn next_flush(&self, clock: &Clock, tick: Duration) -> tokio::time::Instant {
        // A flush that reached no socket (no tutorial or roster.v1 socket, no view group due)
        // holds nothing back: otherwise a view group due just after it would wait a tick more.
        if self.progress.receivers == 0 {
            return self.at;
        }
        let earliest = self.at + tick;
        if self.progress.taken.load(Ordering::Acquire) >= self.progress.receivers {
            return earliest;
        }
        let last_taken = clock.at_ns(self.progress.last_taken_ns.load(Ordering::Acquire));
        let stalled = tokio::time::Instant::from_std(last_taken) + FANOUT_STALL;
        earliest.max(stalled).min(self.at + tick * FANOUT_WAIT_TICKS)
    }
}
