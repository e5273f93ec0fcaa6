//! A ring: the bounded `broadcast` channel of batches that a group of sockets reads, the last
//! batch sent (so a closing socket can count itself as done with it), and the deepest backlog
//! seen. Today every socket reads one ring (the whole online set); the hub is shaped so that
//! groups of watchers (one per live view) can each have their own.
//!
//! Lag policy: a receiver more than `capacity` batches behind gets `Lagged` (see `connection.rs`
//! for what a socket does then); the memory a stalled socket pins is bounded by the ring.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, Notify};

use super::batch::{Batch, Encoded};
use super::clock::Clock;
use super::lock;

pub(super) struct Ring {
    tx: broadcast::Sender<Arc<Batch>>,
    latest: Mutex<Option<Arc<Batch>>>,
    max_depth: AtomicUsize,
}

impl Ring {
    pub(super) fn new(capacity: usize) -> Ring {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Ring { tx, latest: Mutex::new(None), max_depth: AtomicUsize::new(0) }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.tx.subscribe()
    }

    /// Sends a batch to every receiver; returns it (the hub paces the next one on it).
    pub(super) fn send(&self, encoded: Encoded, clock: &Clock) -> Arc<Batch> {
        let batch = Arc::new(encoded.into_batch(self.tx.receiver_count(), clock.ns(clock.now())));
        *lock(&self.latest) = Some(batch.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(batch.clone());
        self.max_depth.fetch_max(self.tx.len(), Ordering::Relaxed);
        batch
    }

    /// A receiver that has seen batches up to `seen` is going away: it will never take the
    /// latest batch, so count it as taken (the hub must not wait for it).
    pub(super) fn leave(&self, seen: u64, clock: &Clock, wake: &Notify) {
        let latest = lock(&self.latest).clone();
        if let Some(batch) = latest.filter(|b| b.seq > seen) {
            mark_taken(&batch, clock, wake);
        }
    }

    pub(super) fn max_depth(&self) -> usize {
        self.max_depth.load(Ordering::Relaxed)
    }
}

/// One receiver took `batch` (or closed without it); the last one wakes the hub.
pub(super) fn mark_taken(batch: &Batch, clock: &Clock, wake: &Notify) {
    batch.last_taken_ns.store(clock.ns(clock.now()), Ordering::Release);
    if batch.taken.fetch_add(1, Ordering::AcqRel) + 1 == batch.receivers {
        wake.notify_one();
    }
}
