//! A ring: the bounded `broadcast` channel of frames that a group of sockets reads, the last item
//! sent (so a closing socket can count itself as done with it), and the deepest backlog seen.
//! The whole online set (tutorial and roster.v1 sockets) is one ring of batches; each live view
//! group has a ring of its own. Every item of one flush shares one [`Progress`], so the hub paces
//! the next flush on every socket that had something to take.
//!
//! Lag policy: a receiver more than `capacity` items behind gets `Lagged` (see `connection.rs`
//! for what a socket does then); the memory a stalled socket pins is bounded by the ring.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, Notify};

use super::clock::Clock;
use super::lock;

/// What a ring carries: numbered items that count towards their flush's progress.
pub(super) trait RingItem: Send + Sync + 'static {
    fn seq(&self) -> u64;
    fn progress(&self) -> &Progress;
}

/// How far the sockets have got with one flush: how many had something to take, how many took
/// it (or closed), and when the last one did. The hub paces the next flush on it.
#[derive(Debug)]
pub(super) struct Progress {
    pub(super) receivers: usize,
    pub(super) taken: AtomicUsize,
    /// When it was last taken (nanoseconds on the hub's clock).
    pub(super) last_taken_ns: AtomicU64,
}

impl Progress {
    pub(super) fn new(receivers: usize, now_ns: u64) -> Progress {
        Progress { receivers, taken: AtomicUsize::new(0), last_taken_ns: AtomicU64::new(now_ns) }
    }
}

pub(super) struct Ring<T> {
    tx: broadcast::Sender<Arc<T>>,
    latest: Mutex<Option<Arc<T>>>,
    max_depth: AtomicUsize,
}

impl<T: RingItem> Ring<T> {
    pub(super) fn new(capacity: usize) -> Ring<T> {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Ring { tx, latest: Mutex::new(None), max_depth: AtomicUsize::new(0) }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<T>> {
        self.tx.subscribe()
    }

    /// Receivers now: what an item sent next counts in its [`Progress`].
    pub(super) fn receivers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Sends an item to every receiver.
    pub(super) fn send(&self, item: Arc<T>) {
        *lock(&self.latest) = Some(item.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(item);
        self.max_depth.fetch_max(self.tx.len(), Ordering::Relaxed);
    }

    /// A receiver that has seen items up to `seen` is going away: it will never take the latest
    /// item, so count it as taken (the hub must not wait for it).
    pub(super) fn leave(&self, seen: u64, clock: &Clock, wake: &Notify) {
        let latest = lock(&self.latest).clone();
        if let Some(item) = latest.filter(|b| b.seq() > seen) {
            mark_taken(item.progress(), clock, wake);
        }
    }

    pub(super) fn max_depth(&self) -> usize {
        self.max_depth.load(Ordering::Relaxed)
    }
}

/// One receiver took its item of a flush (or closed without it); the last one wakes the hub.
pub(super) fn mark_taken(progress: &Progress, clock: &Clock, wake: &Notify) {
    progress.last_taken_ns.store(clock.ns(clock.now()), Ordering::Release);
    if progress.taken.fetch_add(1, Ordering::AcqRel) + 1 == progress.receivers {
        wake.notify_one();
    }
}
