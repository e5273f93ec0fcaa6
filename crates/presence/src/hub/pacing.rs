//! Pacing: when the next batch may go. A tick after the last one, and under load not before the
//! sockets have taken it (all of them, or all that are still making progress), but at most
//! [`FANOUT_WAIT_TICKS`] ticks after it. Under load the batches grow instead of piling up in
//! the ring: fewer, larger writes, and no socket falls behind just because the machine is busy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::batch::Batch;
use super::clock::Clock;

/// A batch whose fan-out has made no progress for this long is done: whoever has not taken it is
/// stalled (a peer that stopped reading), not busy.
const FANOUT_STALL: Duration = Duration::from_millis(5);
/// The next batch never waits for a fan-out longer than this many ticks.
const FANOUT_WAIT_TICKS: u32 = 10;

/// The last flushed batch and when it went out.
pub(super) struct Pacing {
    pub(super) at: tokio::time::Instant,
    pub(super) batch: Arc<Batch>,
}

impl Pacing {
    /// When the next batch may go (see the module docs).
    pub(super) fn next_flush(&self, clock: &Clock, tick: Duration) -> tokio::time::Instant {
        let earliest = self.at + tick;
        if self.batch.taken.load(Ordering::Acquire) >= self.batch.receivers {
            return earliest;
        }
        let last_taken = clock.at_ns(self.batch.last_taken_ns.load(Ordering::Acquire));
        let stalled = tokio::time::Instant::from_std(last_taken) + FANOUT_STALL;
        earliest.max(stalled).min(self.at + tick * FANOUT_WAIT_TICKS)
    }
}
