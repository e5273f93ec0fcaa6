//! One node's hub: the registry of local sockets, the driver of the [`PresenceState`] and its grace
//! timers, per-tick batching, serialize-once fan-out, and the lag policy.
//!
//! Depends on tokio and on [`crate::state`] and [`crate::protocol`]; must not depend on HTTP, HTML,
//! SQL or any particular [`crate::layer::Layer`].
//!
//! # How it works
//! - Socket opens ([`Hub::connect`]), closes (dropping a [`Connection`]), log outs and account
//!   changes run on the caller's thread under one short `std::sync::Mutex` (never held across an
//!   `.await`). They update the state machine and queue the resulting events.
//! - The hub task ([`Hub::start`]) fires grace deadlines and flushes the queue: a lone change after
//!   a quiet tick goes out at once; whatever arrives during a flush or within `tick` after it waits
//!   for the next flush. Under load the next flush also waits (up to 10 ticks) until the sockets
//!   have taken the previous batch, or until its fan-out makes no progress for 5 ms (the rest
//!   are stalled readers): batches grow instead of piling up in the ring. Each batch is
//!   serialized once per protocol (JSON inside ready-made WebSocket frames) and sent as one
//!   `Arc<Batch>` on a `tokio::sync::broadcast` ring shared by every socket.
//! - Lag policy of the ring (`queue_capacity` batches): a [`Connection`] that falls further behind
//!   gets `Lagged`. In `roster.v1` it then yields a fresh snapshot and continues with the diffs
//!   after it; in tutorial mode (which cannot express a snapshot) it yields
//!   `Close { code: 1013, reason: "lagging, reconnect" }`. Never a silent gap, and the memory held
//!   for a socket that stops reading is bounded by the ring, shared by all sockets.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::protocol::{
    self, close_reason, Diff, OfflineUser, Snapshot, WireUser, CLOSE_ACCOUNT_DISABLED, CLOSE_GOING_AWAY, CLOSE_LAGGING,
    CLOSE_LOGGED_OUT, ROSTER_V1,
};
use crate::state::{PresenceState, Transition};
use crate::{UserId, UserRef};

/// Settings of a [`Hub`].
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// How long a user stays online after their last socket closes (reloads, blips). May be zero.
    pub grace: Duration,
    /// Batching period: changes within one tick after a flush go out together in the next batch
    /// (under load, batches are also paced by their fan-out; see the module docs).
    pub tick: Duration,
    /// Sockets one user may hold open on this node; more are refused with
    /// [`ConnectError::TooManySockets`].
    pub max_sockets_per_user: usize,
    /// Batches a socket may fall behind before it is resynced (roster.v1) or closed (tutorial).
    /// Each batch is one roster.v1 frame (or the tutorial frames of one tick). The ring holding
    /// them is shared by all sockets, so this is also the bound on what a stalled socket pins.
    pub queue_capacity: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
            tick: Duration::from_millis(100),
            max_sockets_per_user: 32,
            queue_capacity: 1024,
        }
    }
}

/// Told when users go offline, so the server can store `last_seen`.
pub trait PresenceObserver: Send + Sync + 'static {
    /// Called from the hub's task, once per batch with offline users: must not block (hand the
    /// write to another task). `last_seen` is unix milliseconds.
    fn went_offline(&self, users: &[(UserId, i64)]);
}

/// An observer that ignores everything (tests, tools).
impl PresenceObserver for () {
    fn went_offline(&self, _users: &[(UserId, i64)]) {}
}

/// Which frames a socket receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The tutorial's `{"username","is_logged_in"}` frames (no subprotocol asked).
    Tutorial,
    /// Snapshot then diffs (subprotocol [`ROSTER_V1`]).
    RosterV1,
}

impl Protocol {
    /// Picks the protocol from the subprotocols a client offered (`Sec-WebSocket-Protocol`).
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Protocol {
        if offered.into_iter().any(|p| p.trim() == ROSTER_V1) {
            Protocol::RosterV1
        } else {
            Protocol::Tutorial
        }
    }

    /// The subprotocol to answer with, if any.
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            Protocol::Tutorial => None,
            Protocol::RosterV1 => Some(ROSTER_V1),
        }
    }
}

/// An opaque session identifier (the session cookie's key). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(Arc<[u8]>);

impl SessionKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl From<&str> for SessionKey {
    fn from(s: &str) -> Self {
        Self(Arc::from(s.as_bytes()))
    }
}
impl From<String> for SessionKey {
    fn from(s: String) -> Self {
        Self(Arc::from(s.into_bytes()))
    }
}
impl From<&[u8]> for SessionKey {
    fn from(s: &[u8]) -> Self {
        Self(Arc::from(s))
    }
}
impl From<Vec<u8>> for SessionKey {
    fn from(s: Vec<u8>) -> Self {
        Self(Arc::from(s))
    }
}

/// Why [`Hub::connect`] refused a socket.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    #[error("too many sockets open for this user (limit {limit})")]
    TooManySockets { limit: usize },
    #[error("the presence hub is shutting down")]
    ShuttingDown,
}

/// What a socket loop must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Send this: the UTF-8 JSON text of one frame or, after [`Connection::websocket_frames`],
    /// complete WebSocket frames to write as they are.
    Frame(Bytes),
    /// Close the socket with this code and reason, then drop the [`Connection`].
    Close { code: u16, reason: &'static str },
}

/// Counters for tests and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    pub sockets_open: usize,
    pub users_online: usize,
    pub registered_count: u64,
    /// Frames handed to socket loops by [`Connection::next`] / [`Connection::try_next`].
    pub frames_sent: u64,
    /// Batches flushed (each one roster.v1 diff).
    pub batches_sent: u64,
    /// roster.v1 connections that fell behind and were resynced with a snapshot.
    pub lagging_resyncs: u64,
    /// Tutorial connections that fell behind and were closed with 1013.
    pub lagging_closes: u64,
    /// Largest backlog any socket had (batches held in the ring); always <= `queue_capacity`.
    pub max_queue_depth: usize,
    pub queue_capacity: usize,
}

// ---- internals ---------------------------------------------------------------------------------

/// One flushed batch, serialized once for each protocol and shared by every socket.
#[derive(Debug)]
struct Batch {
    seq: u64,
    /// The JSON texts of this batch's tutorial frames, in order (slices of `tutorial_wire`).
    tutorial: Box<[Bytes]>,
    /// The same frames as WebSocket frames, back to back: what every tutorial socket writes.
    tutorial_wire: Bytes,
    /// The roster.v1 diff's JSON text (a slice of `v1_wire`).
    v1: Bytes,
    /// The roster.v1 diff as one WebSocket frame.
    v1_wire: Bytes,
    /// Receivers when it was sent, and how many of them have taken it (or closed): the hub
    /// paces the next batch on this (see [`run`]).
    receivers: usize,
    taken: AtomicUsize,
    /// When it was last taken (nanoseconds on the hub's clock).
    last_taken_ns: AtomicU64,
}

impl Batch {
    /// One receiver took this batch (or closed without it); the last one wakes the hub.
    fn mark_taken(&self, inner: &Inner) {
        self.last_taken_ns.store(inner.clock.ns(inner.clock.now()), Ordering::Release);
        if self.taken.fetch_add(1, Ordering::AcqRel) + 1 == self.receivers {
            inner.wake.notify_one();
        }
    }
}

/// `json` as one WebSocket text frame, and the JSON inside it (a slice of the same buffer).
fn framed(json: &[u8]) -> (Bytes, Bytes) {
    let mut out = Vec::with_capacity(json.len() + 10);
    protocol::write_ws_frame(&mut out, protocol::OPCODE_TEXT, json);
    let wire = Bytes::from(out);
    let text = wire.slice(wire.len() - json.len()..);
    (wire, text)
}

#[derive(Debug)]
enum Event {
    Online(UserRef),
    Offline(UserRef, i64),
    SignedUp(UserRef),
    Deleted(UserId),
}

/// Per-socket state shared between the registry and its [`Connection`].
#[derive(Debug, Default)]
struct SocketShared {
    /// Close code requested by the hub; 0 = none.
    close: AtomicU16,
    /// Wakes the connection when `close` is set.
    notify: Notify,
}

impl SocketShared {
    fn request_close(&self, code: u16) {
        let _ = self.close.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.notify.notify_one();
    }
}

#[derive(Debug)]
struct LocalSocket {
    id: u64,
    session: SessionKey,
    shared: Arc<SocketShared>,
}

/// A user present in the state machine (sockets open or in grace).
#[derive(Debug)]
struct LocalUser {
    user: UserRef,
    sockets: Vec<LocalSocket>,
    /// Sessions that had sockets while the user was online (for log out during the grace).
    sessions: Vec<SessionKey>,
}

/// Everything mutated by socket opens and closes. Guarded by a std `Mutex`: critical sections are
/// short, synchronous, and never span an `.await`.
struct Core {
    state: PresenceState,
    users: HashMap<UserId, LocalUser>,
    sessions: HashMap<SessionKey, UserId>,
    /// Events not yet flushed, in order.
    pending: Vec<Event>,
    registered: u64,
    sockets_open: usize,
    scratch: Vec<Transition>,
}

/// What the last flushed batch says: the roster.v1 snapshot at `seq`. Diffs with a higher seq
/// apply on top of it.
struct Published {
    seq: u64,
    /// Online users sorted by (lowercase username, id).
    online: BTreeMap<(Box<str>, UserId), UserRef>,
    registered: u64,
    /// The snapshot of this seq as (JSON text, WebSocket frame), built on first demand.
    frame: Option<(Bytes, Bytes)>,
    /// `online` as a shared slice, built on first demand (list pages read it per request).
    sorted: Option<Arc<[UserRef]>>,
}

fn sort_key(u: &UserRef) -> (Box<str>, UserId) {
    (u.username.to_lowercase().into_boxed_str(), u.id)
}

/// Maps the monotonic clock (tokio's, so paused-time tests work) to unix milliseconds.
struct Clock {
    base: Instant,
    base_unix_ms: i64,
}

impl Clock {
    fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self { base: tokio::time::Instant::now().into_std(), base_unix_ms: unix }
    }
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
    /// `at` as nanoseconds since the clock was made.
    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
    fn at_ns(&self, ns: u64) -> Instant {
        self.base + Duration::from_nanos(ns)
    }
    fn unix_ms(&self, at: Instant) -> i64 {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match at.checked_duration_since(self.base) {
            Some(d) => self.base_unix_ms.saturating_add(ms(d)),
            None => self.base_unix_ms.saturating_sub(ms(self.base - at)),
        }
    }
}

struct Inner {
    config: HubConfig,
    core: Mutex<Core>,
    published: Mutex<Published>,
    /// Fan-out ring. Bounded (`queue_capacity`); lag policy: see the module docs.
    tx: broadcast::Sender<Arc<Batch>>,
    /// The last batch sent (closing connections mark it taken).
    latest: Mutex<Option<Arc<Batch>>>,
    /// Wakes the hub task: new pending events or a new grace deadline.
    wake: Notify,
    shutdown: CancellationToken,
    observer: Arc<dyn PresenceObserver>,
    clock: Clock,
    next_socket: AtomicU64,
    frames_sent: AtomicU64,
    batches_sent: AtomicU64,
    lagging_resyncs: AtomicU64,
    lagging_closes: AtomicU64,
    max_queue_depth: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent-enough counters; never cascade panics
    // (this also runs in `Drop`).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    /// Turns the state machine's transitions into queued events and registry clean-up.
    /// Returns true if anything was queued.
    fn settle(&mut self, clock: &Clock) -> bool {
        if self.scratch.is_empty() {
            return false;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        for t in scratch.drain(..) {
            match t {
                Transition::Online(id) => {
                    if let Some(u) = self.users.get(&id) {
                        self.pending.push(Event::Online(u.user.clone()));
                    }
                }
                Transition::Offline(id, at) => {
                    if let Some(u) = self.users.remove(&id) {
                        for s in &u.sessions {
                            if self.sessions.get(s) == Some(&id) {
                                self.sessions.remove(s);
                            }
                        }
                        // Sockets still listed here were never counted as closed: impossible, as
                        // Offline needs zero sockets; keep the count honest anyway.
                        self.sockets_open -= u.sockets.len();
                        self.pending.push(Event::Offline(u.user, clock.unix_ms(at)));
                    }
                }
            }
        }
        self.scratch = scratch;
        true
    }

    /// Fires due grace deadlines.
    fn advance(&mut self, now: Instant, clock: &Clock) -> bool {
        self.state.advance(now, &mut self.scratch);
        self.settle(clock)
    }

    /// Closes every socket of `user` (or only those of `session`) without grace.
    fn close_sockets(&mut self, user: UserId, session: Option<&SessionKey>, code: u16, now: Instant) {
        let Some(u) = self.users.get_mut(&user) else {
            return;
        };
        let mut closed = 0;
        u.sockets.retain(|s| {
            if session.is_none_or(|k| *k == s.session) {
                s.shared.request_close(code);
                closed += 1;
                false
            } else {
                true
            }
        });
        match session {
            Some(k) => u.sessions.retain(|s| s != k),
            None => u.sessions.clear(),
        }
        self.sockets_open -= closed;
        for _ in 0..closed {
            self.state.close_logout(user, now, &mut self.scratch);
        }
        if closed == 0 && self.state.in_grace(user) {
            self.state.end_grace(user, now, &mut self.scratch);
        }
    }
}

impl Inner {
    /// Locks the core and brings it to `now` (fires due deadlines).
    fn core_now(&self) -> (MutexGuard<'_, Core>, Instant) {
        let now = self.clock.now();
        let mut core = lock(&self.core);
        if core.advance(now, &self.clock) {
            self.wake.notify_one();
        }
        (core, now)
    }

    fn socket_closed(&self, user: UserId, id: u64) {
        let (mut core, now) = self.core_now();
        let Some(u) = core.users.get_mut(&user) else {
            return;
        };
        let Some(pos) = u.sockets.iter().position(|s| s.id == id) else {
            return; // already closed by a log out or close_user
        };
        u.sockets.swap_remove(pos);
        core.sockets_open -= 1;
        let Core { state, scratch, .. } = &mut *core;
        state.close(user, now, scratch);
        core.settle(&self.clock);
        // Either an Offline was queued (grace 0) or a new deadline exists: the task must look.
        drop(core);
        self.wake.notify_one();
    }

    /// The roster.v1 snapshot of the last flushed batch: its seq, JSON text and WebSocket frame.
    fn snapshot_frame(&self) -> (u64, Bytes, Bytes) {
        let mut p = lock(&self.published);
        if let Some((text, wire)) = &p.frame {
            return (p.seq, text.clone(), wire.clone());
        }
        let (wire, text) = framed(&protocol::to_bytes(&snapshot_of(&p)));
        p.frame = Some((text.clone(), wire.clone()));
        (p.seq, text, wire)
    }

    /// Flushes the pending events as one batch. Only the hub task calls this, so batches leave in
    /// seq order.
    fn flush(&self) -> Option<Arc<Batch>> {
        let (events, online_count, registered) = {
            let (mut core, _) = self.core_now();
            if core.pending.is_empty() {
                return None;
            }
            let events = std::mem::take(&mut core.pending);
            (events, core.state.online_count() as u64, core.registered)
        };

        // Serialize once per protocol, outside every lock: JSON texts inside WebSocket frames.
        let mut buf = Vec::new();
        let mut json = Vec::new();
        let mut spans = Vec::new();
        let mut order: Vec<(UserRef, Option<i64>)> = Vec::new();
        let mut index: HashMap<UserId, usize> = HashMap::new();
        let mut signed_up = Vec::new();
        let mut deleted = Vec::new();
        let mut went_offline = Vec::new();
        for e in &events {
            let (user, last_seen) = match e {
                Event::Online(u) => (u, None),
                Event::Offline(u, at) => {
                    went_offline.push((u.id, *at));
                    (u, Some(*at))
                }
                Event::SignedUp(u) => {
                    signed_up.push(wire(u));
                    continue;
                }
                Event::Deleted(id) => {
                    deleted.push(*id);
                    continue;
                }
            };
            json.clear();
            protocol::write_tutorial(&mut json, &user.username, last_seen.is_none());
            protocol::write_ws_frame(&mut buf, protocol::OPCODE_TEXT, &json);
            spans.push((buf.len() - json.len(), buf.len()));
            match index.get(&user.id) {
                Some(&i) => order[i] = (user.clone(), last_seen),
                None => {
                    index.insert(user.id, order.len());
                    order.push((user.clone(), last_seen));
                }
            }
        }
        let tutorial_wire = Bytes::from(buf);
        let tutorial: Box<[Bytes]> = spans.iter().map(|&(start, end)| tutorial_wire.slice(start..end)).collect();

        let mut p = lock(&self.published);
        let seq = p.seq + 1;
        let mut diff = Diff { seq, signed_up, deleted, online_count, registered_count: registered, ..Diff::default() };
        for (u, last_seen) in order {
            match last_seen {
                None => {
                    diff.online.push(wire(&u));
                    p.online.insert(sort_key(&u), u);
                }
                Some(last_seen) => {
                    diff.offline.push(OfflineUser { id: u.id, username: u.username.clone(), last_seen });
                    p.online.remove(&sort_key(&u));
                }
            }
        }
        p.seq = seq;
        p.registered = registered;
        p.frame = None;
        p.sorted = None;
        let (v1_wire, v1) = framed(&protocol::to_bytes(&diff));
        let batch = Arc::new(Batch {
            seq,
            tutorial,
            tutorial_wire,
            v1,
            v1_wire,
            receivers: self.tx.receiver_count(),
            taken: AtomicUsize::new(0),
            last_taken_ns: AtomicU64::new(self.clock.ns(self.clock.now())),
        });
        // Publish the snapshot state before sending: a connection that reads the snapshot at
        // `seq` has already subscribed, so it receives every batch after it.
        drop(p);
        *lock(&self.latest) = Some(batch.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(batch.clone());
        self.batches_sent.fetch_add(1, Ordering::Relaxed);
        self.max_queue_depth.fetch_max(self.tx.len(), Ordering::Relaxed);
        if !went_offline.is_empty() {
            self.observer.went_offline(&went_offline);
        }
        Some(batch)
    }
}

fn wire(u: &UserRef) -> WireUser {
    WireUser { id: u.id, username: u.username.clone() }
}

fn snapshot_of(p: &Published) -> Snapshot {
    Snapshot {
        seq: p.seq,
        online: p.online.values().map(wire).collect(),
        online_count: p.online.len() as u64,
        registered_count: p.registered,
    }
}

/// A batch whose fan-out has made no progress for this long is done: whoever has not taken it is
/// stalled (a peer that stopped reading), not busy.
const FANOUT_STALL: Duration = Duration::from_millis(5);
/// The next batch never waits for a fan-out longer than this many ticks.
const FANOUT_WAIT_TICKS: u32 = 10;

/// The last flushed batch and when it went out.
struct Pacing {
    at: tokio::time::Instant,
    batch: Arc<Batch>,
}

impl Pacing {
    /// When the next batch may go: a tick after this one, and not before the sockets have taken
    /// this one (all of them, or all that are still making progress), but at most
    /// `FANOUT_WAIT_TICKS` ticks after it. Under load the batches grow instead of piling up in
    /// the ring: fewer, larger writes, and no socket falls behind just because the machine is busy.
    fn next_flush(&self, clock: &Clock, tick: Duration) -> tokio::time::Instant {
        let earliest = self.at + tick;
        if self.batch.taken.load(Ordering::Acquire) >= self.batch.receivers {
            return earliest;
        }
        let last_taken = clock.at_ns(self.batch.last_taken_ns.load(Ordering::Acquire));
        let stalled = tokio::time::Instant::from_std(last_taken) + FANOUT_STALL;
        earliest.max(stalled).min(self.at + tick * FANOUT_WAIT_TICKS)
    }
}

/// The hub task: fires grace deadlines and flushes batches, until `shutdown`.
async fn run(inner: Arc<Inner>) {
    let tick = inner.config.tick;
    let mut last: Option<Pacing> = None;
    loop {
        let now = tokio::time::Instant::now();
        let (deadline, has_pending) = {
            let (core, _) = inner.core_now();
            (core.state.next_deadline(), !core.pending.is_empty())
        };
        let mut wake_at = deadline.map(tokio::time::Instant::from_std);
        if has_pending {
            match last.as_ref().map(|p| p.next_flush(&inner.clock, tick)) {
                Some(ready) if ready > now => {
                    wake_at = Some(wake_at.map_or(ready, |w| w.min(ready)));
                }
                _ => {
                    if let Some(batch) = inner.flush() {
                        last = Some(Pacing { at: now, batch });
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = inner.shutdown.cancelled() => break,
            _ = inner.wake.notified() => {}
            _ = sleep_until(wake_at) => {}
        }
    }
    // Every socket is told here, through its own notify: connections do not each wait on the
    // shutdown token (one more registration per socket per batch on a lock they all share).
    let core = lock(&inner.core);
    for socket in core.users.values().flat_map(|u| &u.sockets) {
        socket.shared.request_close(CLOSE_GOING_AWAY);
    }
    drop(core);
    tracing::debug!("presence hub stopped");
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// ---- public API --------------------------------------------------------------------------------

/// One node's presence hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub").field("stats", &self.stats()).finish()
    }
}

impl Hub {
    /// Starts the hub and its task (which stops when `shutdown` is cancelled). Must be called
    /// inside a tokio runtime.
    pub fn start(
        config: HubConfig,
        registered_count: u64,
        observer: Arc<dyn PresenceObserver>,
        shutdown: CancellationToken,
    ) -> (Hub, JoinHandle<()>) {
        let capacity = config.queue_capacity.max(1);
        let (tx, _) = broadcast::channel(capacity);
        let inner = Arc::new(Inner {
            core: Mutex::new(Core {
                state: PresenceState::new(config.grace),
                users: HashMap::new(),
                sessions: HashMap::new(),
                pending: Vec::new(),
                registered: registered_count,
                sockets_open: 0,
                scratch: Vec::new(),
            }),
            published: Mutex::new(Published {
                seq: 0,
                online: BTreeMap::new(),
                registered: registered_count,
                frame: None,
                sorted: None,
            }),
            config: HubConfig { queue_capacity: capacity, ..config },
            tx,
            latest: Mutex::new(None),
            wake: Notify::new(),
            shutdown,
            observer,
            clock: Clock::new(),
            next_socket: AtomicU64::new(1),
            frames_sent: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            lagging_resyncs: AtomicU64::new(0),
            lagging_closes: AtomicU64::new(0),
            max_queue_depth: AtomicUsize::new(0),
        });
        let task = tokio::spawn(run(inner.clone()));
        (Hub { inner }, task)
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Registers a socket of `user` in `session`. Dropping the returned [`Connection`] closes it.
    pub fn connect(&self, user: UserRef, session: SessionKey, protocol: Protocol) -> Result<Connection, ConnectError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(ConnectError::ShuttingDown);
        }
        let limit = inner.config.max_sockets_per_user;
        let uid = user.id;
        let id = inner.next_socket.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(SocketShared::default());
        // Subscribe before the socket counts: every batch flushed from now on reaches it.
        let rx = inner.tx.subscribe();
        {
            let (mut core, now) = inner.core_now();
            let core = &mut *core;
            let local =
                core.users.entry(uid).or_insert_with(|| LocalUser { user, sockets: Vec::new(), sessions: Vec::new() });
            if local.sockets.len() >= limit {
                if local.sockets.is_empty() && !core.state.is_online(uid) {
                    core.users.remove(&uid);
                }
                return Err(ConnectError::TooManySockets { limit });
            }
            local.sockets.push(LocalSocket { id, session: session.clone(), shared: shared.clone() });
            if !local.sessions.contains(&session) {
                if local.sessions.len() >= 2 * limit.max(1) {
                    // Forget sessions without sockets (only used to end a grace at log out).
                    let live = &local.sockets;
                    local.sessions.retain(|s| live.iter().any(|l| l.session == *s));
                }
                local.sessions.push(session.clone());
            }
            core.sessions.insert(session, uid);
            core.sockets_open += 1;
            core.state.open(uid, now, &mut core.scratch);
            if core.settle(&inner.clock) {
                inner.wake.notify_one();
            }
        }
        Ok(Connection {
            inner: inner.clone(),
            shared,
            rx,
            user: uid,
            id,
            protocol,
            resync: protocol == Protocol::RosterV1,
            skip_upto: 0,
            cursor: None,
            closed: None,
            wire: false,
            frames_in_out: 1,
            seen: lock(&inner.published).seq,
        })
    }

    /// Log out: every socket of `session` gets `Close(4001)`. If that was the user's last socket
    /// (or the user was only online through the grace), `Offline` goes out at once.
    pub fn close_session(&self, session: &SessionKey) {
        let (mut core, now) = self.inner.core_now();
        if let Some(uid) = core.sessions.remove(session) {
            core.close_sockets(uid, Some(session), CLOSE_LOGGED_OUT, now);
            core.settle(&self.inner.clock);
            drop(core);
            self.inner.wake.notify_one();
        }
    }

    /// Deactivated user: every socket of every session gets `Close(1008, "account disabled")`
    /// ([`CLOSE_ACCOUNT_DISABLED`]) and `Offline` goes out at once.
    pub fn close_user(&self, user: UserId) {
        let (mut core, now) = self.inner.core_now();
        if let Some(u) = core.users.get(&user) {
            let sessions = u.sessions.clone();
            for s in sessions {
                if core.sessions.get(&s) == Some(&user) {
                    core.sessions.remove(&s);
                }
            }
            core.close_sockets(user, None, CLOSE_ACCOUNT_DISABLED, now);
            core.settle(&self.inner.clock);
            drop(core);
            self.inner.wake.notify_one();
        }
    }

    /// Deleted user: as [`Hub::close_user`], decrements the registered count, and roster.v1 diffs
    /// list the id in `deleted`.
    pub fn user_deleted(&self, user: UserId) {
        self.close_user(user);
        let mut core = lock(&self.inner.core);
        core.registered = core.registered.saturating_sub(1);
        core.pending.push(Event::Deleted(user));
        drop(core);
        self.inner.wake.notify_one();
    }

    /// A new account: bumps the registered count; roster.v1 diffs carry it in `signed_up`.
    /// Tutorial mode sends nothing.
    pub fn signed_up(&self, user: UserRef) {
        let mut core = lock(&self.inner.core);
        core.registered += 1;
        core.pending.push(Event::SignedUp(user));
        drop(core);
        self.inner.wake.notify_one();
    }

    /// Online now (a socket open on this node, or within the grace).
    pub fn is_online(&self, id: UserId) -> bool {
        self.inner.core_now().0.state.is_online(id)
    }

    /// Users online as of the last flushed batch (at most one tick old, the same set the
    /// roster.v1 snapshot has), sorted by lowercase username, then id. Built once per batch and
    /// shared: a call costs O(1) between batches, O(online) once after one.
    pub fn online_users(&self) -> Arc<[UserRef]> {
        let mut p = lock(&self.inner.published);
        if let Some(sorted) = &p.sorted {
            return sorted.clone();
        }
        let sorted: Arc<[UserRef]> = p.online.values().cloned().collect();
        p.sorted = Some(sorted.clone());
        sorted
    }

    /// The sessions that have at least one socket open on this node, with their user: what a
    /// server checks against its session store to close sockets whose session ended elsewhere.
    /// O(sockets open).
    pub fn open_sessions(&self) -> Vec<(SessionKey, UserId)> {
        let core = lock(&self.inner.core);
        let mut out: Vec<(SessionKey, UserId)> = Vec::new();
        for (id, u) in &core.users {
            let first = out.len();
            for s in &u.sockets {
                // A user holds few sessions (at most one per socket): a scan of theirs is enough.
                if !out[first..].iter().any(|(k, _)| *k == s.session) {
                    out.push((s.session.clone(), *id));
                }
            }
        }
        out
    }

    pub fn online_count(&self) -> usize {
        self.inner.core_now().0.state.online_count()
    }

    pub fn registered_count(&self) -> u64 {
        lock(&self.inner.core).registered
    }

    /// The roster.v1 snapshot as of the last flushed batch (the body of `GET /api/users/`).
    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&lock(&self.inner.published))
    }

    pub fn stats(&self) -> HubStats {
        let i = &self.inner;
        let (sockets_open, users_online, registered_count) = {
            let core = lock(&i.core);
            (core.sockets_open, core.state.online_count(), core.registered)
        };
        HubStats {
            sockets_open,
            users_online,
            registered_count,
            frames_sent: i.frames_sent.load(Ordering::Relaxed),
            batches_sent: i.batches_sent.load(Ordering::Relaxed),
            lagging_resyncs: i.lagging_resyncs.load(Ordering::Relaxed),
            lagging_closes: i.lagging_closes.load(Ordering::Relaxed),
            max_queue_depth: i.max_queue_depth.load(Ordering::Relaxed),
            queue_capacity: i.config.queue_capacity,
        }
    }
}

/// One socket's view of the hub. Dropping it closes the socket for presence (the user's count
/// drops; the grace starts if it was the last).
pub struct Connection {
    inner: Arc<Inner>,
    shared: Arc<SocketShared>,
    rx: broadcast::Receiver<Arc<Batch>>,
    user: UserId,
    id: u64,
    protocol: Protocol,
    /// roster.v1: the next frame is a snapshot.
    resync: bool,
    /// roster.v1: batches up to this seq are already in the snapshot sent.
    skip_upto: u64,
    /// Tutorial: the batch being sent and the index of its next frame.
    cursor: Option<(Arc<Batch>, usize)>,
    closed: Option<u16>,
    /// Frames are whole WebSocket frames (see [`Connection::websocket_frames`]).
    wire: bool,
    /// How many frames the next counted [`Outgoing::Frame`] holds.
    frames_in_out: u64,
    /// The seq of the last batch taken (or already in its snapshot, or sent before it connected).
    seen: u64,
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
    /// [`protocol::write_ws_frame`] makes them), and a tutorial batch comes as one buffer holding
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
            let (seq, text, wire) = self.inner.snapshot_frame();
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
        batch.mark_taken(&self.inner);
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

fn close(code: u16) -> Outgoing {
    Outgoing::Close { code, reason: close_reason(code) }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // It will never take the latest batch: stop the hub from waiting for it.
        let latest = lock(&self.inner.latest).clone();
        if let Some(batch) = latest.filter(|b| b.seq > self.seen) {
            batch.mark_taken(&self.inner);
        }
        self.inner.socket_closed(self.user, self.id);
    }
}
