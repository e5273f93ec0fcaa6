//! What the layer's three tasks (writer, upkeep, subscriber) and its handle share: settings,
//! the outbox, the current connection and incarnation ([`Live`]), trouble reports, the sweep
//! schedule, counters and readiness.
//!
//! std mutexes here guard plain data for a moment and are never held across an `.await`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::Timings;
use crate::keys::Keys;
use crate::outbox::Outbox;
use crate::scripts::Scripts;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A working connection and the incarnation this node holds on it. `epoch` changes with every
/// new `Live`, so a late report about an older one is ignored.
#[derive(Clone)]
pub(crate) struct Live {
    pub conn: MultiplexedConnection,
    pub inc: Arc<str>,
    pub epoch: u64,
}

/// What a task found wrong with the current [`Live`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// The connection failed: reconnect (and re-register).
    Broken,
    /// The incarnation's lease lapsed: re-register on the same connection.
    Fenced,
}

/// The cluster sequence a heartbeat saw, and when: the subscriber must reach it soon.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Heard {
    pub seq: u64,
    pub at: Instant,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub reconnects: AtomicU64,
    pub resyncs: AtomicU64,
    pub seq_gaps: AtomicU64,
    pub sweeps: AtomicU64,
    pub fenced: AtomicU64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

pub(crate) struct Shared {
    pub keys: Keys,
    pub scripts: Scripts,
    pub timings: Timings,
    pub client: redis::Client,
    /// host:port, for log lines (never the URL: it may hold a password).
    pub addr: String,
    pub node_name: String,
    /// Random per layer: part of each incarnation's name and of the account op mark's key.
    pub nonce: String,
    pub outbox: Mutex<Outbox>,
    pub outbox_wake: Notify,
    pub live: watch::Sender<Option<Live>>,
    trouble: Mutex<Option<(u64, Trouble)>>,
    /// Wakes the writer: a trouble report.
    pub attention: Notify,
    sweep_at: Mutex<Option<Instant>>,
    pub sweep_wake: Notify,
    pub heard: watch::Sender<Option<Heard>>,
    /// Test hook: heartbeats and sweeps stop while true (as if the process were paused).
    pub paused: watch::Sender<bool>,
    /// Held by the upkeep while it talks to Redis, so pausing can wait for it to finish.
    pub upkeep_busy: tokio::sync::Mutex<()>,
    pub stats: Stats,
    /// Why the writer has no `Live` (`None` while it has one).
    pub writer_down: Mutex<Option<&'static str>>,
    /// The subscriber is subscribed and resynced.
    pub subscribed: AtomicBool,
    /// The cluster's registered count as last heard (-1: unknown): what a node registering
    /// with an emptied Redis seeds it with.
    pub registered: AtomicI64,
}

impl Shared {
    pub fn new(keys: Keys, timings: Timings, client: redis::Client, node_name: String) -> Shared {
        let addr = client.get_connection_info().addr().to_string();
        Shared {
            keys,
            scripts: Scripts::default(),
            timings,
            client,
            addr,
            node_name,
            nonce: format!("{:08x}", fastrand::u32(..)),
            outbox: Mutex::new(Outbox::default()),
            outbox_wake: Notify::new(),
            live: watch::Sender::new(None),
            trouble: Mutex::new(None),
            attention: Notify::new(),
            sweep_at: Mutex::new(None),
            sweep_wake: Notify::new(),
            heard: watch::Sender::new(None),
            paused: watch::Sender::new(false),
            upkeep_busy: tokio::sync::Mutex::new(()),
            stats: Stats::default(),
            writer_down: Mutex::new(Some("connecting to redis")),
            subscribed: AtomicBool::new(false),
            registered: AtomicI64::new(-1),
        }
    }

    pub fn live(&self) -> Option<Live> {
        self.live.borrow().clone()
    }

    /// A task saw `trouble` with the `Live` of `epoch`.
    pub fn report(&self, epoch: u64, trouble: Trouble) {
        if self.live.borrow().as_ref().is_some_and(|l| l.epoch == epoch) {
            let mut t = lock(&self.trouble);
            // A broken connection outranks a fencing (it needs the reconnect).
            if !matches!(*t, Some((e, Trouble::Broken)) if e == epoch) {
                *t = Some((epoch, trouble));
            }
            drop(t);
            self.attention.notify_one();
        }
    }

    /// The trouble reported about the `Live` of `epoch`, if any.
    pub fn take_trouble(&self, epoch: u64) -> Option<Trouble> {
        match lock(&self.trouble).take() {
            Some((e, t)) if e == epoch => Some(t),
            _ => None,
        }
    }

    /// Something is due at `deadline` on Redis's clock, which read `now` a moment ago: sweep
    /// then (if earlier than the sweep already planned).
    pub fn sweep_at(&self, now: i64, deadline: i64) {
        let wait = Duration::from_millis(u64::try_from(deadline.saturating_sub(now)).unwrap_or(0) + 1);
        let at = Instant::now() + wait;
        let mut s = lock(&self.sweep_at);
        if s.is_none_or(|s| at < s) {
            *s = Some(at);
            drop(s);
            self.sweep_wake.notify_one();
        }
    }

    pub fn next_sweep(&self) -> Option<Instant> {
        *lock(&self.sweep_at)
    }

    /// Takes the planned sweep if it is due.
    pub fn take_due_sweep(&self, now: Instant) -> bool {
        let mut s = lock(&self.sweep_at);
        if s.is_some_and(|at| at <= now) {
            *s = None;
            true
        } else {
            false
        }
    }

    pub fn registered_hint(&self) -> Option<u64> {
        u64::try_from(self.registered.load(Relaxed)).ok()
    }

    pub fn set_registered(&self, registered: Option<u64>) {
        let v = registered.and_then(|r| i64::try_from(r).ok()).unwrap_or(-1);
        self.registered.store(v, Relaxed);
    }

    pub fn adjust_registered(&self, delta: i64) {
        let _ = self.registered.fetch_update(Relaxed, Relaxed, |r| (r >= 0).then(|| (r + delta).max(0)));
    }
}
