//! One node's hub: the registry of local sockets, the replica of the cluster's presence, per-tick
//! batching, serialize-once fan-out, and the lag policy.
//!
//! Depends on tokio, [`crate::event`], [`crate::protocol`] and the [`Layer`] trait; must not
//! depend on HTTP, HTML, SQL or any particular layer.
//!
//! # Layout (a file per job)
//! - `types.rs`: settings, protocols, outcomes, counters, the observer trait.
//! - `registry.rs`: this node's sockets and sessions; socket opens and closes become node-level
//!   `Up`/`Down` changes; closing sockets on request (log out, account closed, expiry).
//! - `replica.rs`: the cluster's online set as this node knows it, applying the layer's
//!   deliveries (exactly one event per real transition, duplicates dropped, resync diffs).
//! - `batch.rs`: a batch serialized once per protocol, and the published roster.v1 snapshot.
//! - `ring.rs`: the bounded broadcast ring of batches that a group of sockets reads.
//! - `pacing.rs`: when the next batch may go.
//! - `connection.rs`: one socket's view: snapshot, batches, close requests, lag policy.
//! - `views/`: live views (roster.v2): the directory of every account, the list order, one group
//!   (and ring) per distinct window, one encoded frame per group and batch.
//! - `task.rs`: the hub task that drives it all.
//!
//! # How a change flows
//! A socket opens ([`Hub::connect`]) or closes (dropping its [`Connection`]) on the caller's
//! thread, under one short `std::sync::Mutex` (never held across an `.await`): the registry
//! counts it, and a user's first socket here (or last) queues a [`Change`] for the layer. The
//! hub task hands queued changes to the layer, which decides the cluster-wide transition (grace,
//! other nodes) and delivers it, numbered, to every node's hub, this one included. Deliveries
//! update the replica and queue events; the task flushes queued events as one batch per tick: a
//! lone change after a quiet tick goes out at once; whatever arrives during a flush or within
//! `tick` after it waits for the next flush. Under load the next flush also waits until the
//! sockets have taken the previous batch (`pacing.rs`). Each batch is serialized once per protocol
//! and sent as one `Arc<Batch>` on the ring every tutorial and roster.v1 socket reads; the same
//! events update the live views, and every view group whose window or counts changed gets one
//! frame on its own ring.
//!
//! Lag policy of the ring (`queue_capacity` batches): a [`Connection`] that falls further behind
//! gets a fresh snapshot (roster.v1) or `Close { code: 1013 }` (tutorial). Never a silent gap, and
//! the memory held for a socket that stops reading is bounded by the ring.

mod batch;
mod clock;
mod connection;
mod pacing;
mod registry;
mod replica;
mod ring;
mod task;
mod types;
mod views;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use connection::{CloseRequest, Connection};
pub use types::{ConnectError, HubConfig, HubStats, Outgoing, PresenceObserver, Protocol, Session, WatchError};
pub use views::{lowercase_key, AccountList, SearchKey};

use crate::event::{Change, Delivery, Event, SessionKey};
use crate::layer::{Layer, LayerError, LayerStatus};
use crate::protocol::views::Window;
use crate::protocol::{Snapshot, CLOSE_ACCOUNT_DISABLED, CLOSE_LOGGED_OUT};
use crate::{UserId, UserRef};
use batch::{framed, Batch, Published};
use clock::Clock;
use connection::{Feed, ViewFeed};
use registry::{Registry, SocketShared};
use replica::{Effects, Replica};
use ring::{Progress, Ring};
use views::{GroupFrame, Views};

/// Frames a live view group's ring holds (at most `queue_capacity`): a view socket further
/// behind gets its window's snapshot, which is small.
pub const VIEW_RING: usize = 64;
/// A live view group sends at most one frame per this many ticks (see `views/mod.rs`, "Pacing
/// per group"); a change after a quiet interval still goes out at once.
pub const VIEW_INTERVAL_TICKS: u32 = 5;

/// Everything socket opens, closes and deliveries mutate. Guarded by a std `Mutex`: critical
/// sections are short, synchronous, and never span an `.await`.
struct Core {
    registry: Registry,
    replica: Replica,
    /// Events for the next batch, in order.
    pending: Vec<Event>,
    /// Changes for the layer, in order.
    outbox: Vec<Change>,
    /// The counts changed without an event (`set_registered_here`, or a cluster resync that
    /// brought only a new registered count): the next flush goes out even if `pending` is
    /// empty, carrying only the counts.
    counts_changed: bool,
}

struct Inner {
    config: HubConfig,
    core: Mutex<Core>,
    published: Mutex<Published>,
    /// The ring every tutorial and roster.v1 socket reads (the whole online set).
    ring: Ring<Batch>,
    /// Live views: the directory, the list order and the groups of roster.v2 sockets.
    views: Mutex<Views>,
    /// Wakes the hub task: queued changes or events, a new deadline, a batch fully taken.
    wake: Notify,
    shutdown: CancellationToken,
    observer: Arc<dyn PresenceObserver>,
    clock: Clock,
    layer_status: Box<dyn Fn() -> LayerStatus + Send + Sync>,
    next_socket: AtomicU64,
    frames_sent: AtomicU64,
    batches_sent: AtomicU64,
    lagging_resyncs: AtomicU64,
    lagging_closes: AtomicU64,
    cluster_resyncs: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent-enough state; never cascade panics (this
    // also runs in `Drop`).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn now_ms(&self) -> i64 {
        self.clock.unix_ms(self.clock.now())
    }

    /// Queues a change for the layer and wakes the task.
    fn queue(&self, core: MutexGuard<'_, Core>) {
        let queued = !core.outbox.is_empty();
        drop(core);
        if queued {
            self.wake.notify_one();
        }
    }

    fn socket_closed(&self, user: UserId, id: u64) {
        let now_ms = self.now_ms();
        let mut core = lock(&self.core);
        if let Some(down) = core.registry.remove(user, id, now_ms) {
            core.outbox.push(down);
        }
        self.queue(core);
    }

    /// Applies the cluster's deliveries: the replica, the next batch's events, sockets to close,
    /// and what the observer must hear.
    fn deliver(&self, deliveries: impl IntoIterator<Item = Delivery>) {
        let now_ms = self.now_ms();
        let mut fx = Effects::default();
        {
            let mut core = lock(&self.core);
            for d in deliveries {
                core.replica.apply(d, now_ms, &mut fx);
            }
        }
        if !fx.close_sessions.is_empty() || !fx.close_users.is_empty() {
            // Before the sockets close: a reconnect must not find the session in a cache.
            self.observer.sessions_ended(&fx.close_sessions, &fx.close_users);
        }
        let mut core = lock(&self.core);
        for key in &fx.close_sessions {
            let (_, down) = core.registry.close_session(key, CLOSE_LOGGED_OUT, now_ms);
            core.outbox.extend(down);
        }
        for &id in &fx.close_users {
            let down = core.registry.close_user(id, CLOSE_ACCOUNT_DISABLED, now_ms);
            core.outbox.extend(down);
        }
        // The task that called this flushes what it queued next.
        core.pending.append(&mut fx.batch);
        core.counts_changed |= fx.counts_changed;
        self.queue(core);
        if !fx.went_offline.is_empty() {
            self.observer.went_offline(&fx.went_offline);
        }
        self.cluster_resyncs.fetch_add(fx.resyncs, Ordering::Relaxed);
    }

    /// Flushes the pending events as one batch, and the live view groups that are due. Only the
    /// hub task calls this, so batches leave in seq order. Returns the flush's progress (the hub
    /// paces the next one on it), or `None` if there was nothing to send.
    fn flush(&self) -> Option<Arc<Progress>> {
        let (events, online_count, registered, counts_changed) = {
            let mut core = lock(&self.core);
            // No early return when nothing is pending: view groups whose interval has passed
            // still go out below.
            let counts_changed = std::mem::take(&mut core.counts_changed);
            (std::mem::take(&mut core.pending), core.replica.online_count(), core.replica.registered(), counts_changed)
        };
        // The snapshot moves to this batch before it is sent: a connection that reads the
        // snapshot at `seq` has already subscribed, so it receives every batch after it. The same
        // holds for a view group's snapshot and its frames.
        // Events, or counts that changed without one (the store's count of accounts).
        let encoded = (!events.is_empty() || counts_changed)
            .then(|| lock(&self.published).encode(&events, online_count as u64, registered));
        let now = self.clock.now();
        let views = lock(&self.views).apply(&events, online_count as u64, registered, now);
        if encoded.is_none() && views.is_empty() {
            return None;
        }
        // One progress for the whole flush: every socket with something to take counts.
        let main = if encoded.is_some() { self.ring.receivers() } else { 0 };
        let receivers = main + views.iter().map(|v| v.group.ring.receivers()).sum::<usize>();
        let progress = Arc::new(Progress::new(receivers, self.clock.ns(now)));
        if let Some(encoded) = encoded {
            self.ring.send(Arc::new(encoded.into_batch(progress.clone())));
            self.batches_sent.fetch_add(1, Ordering::Relaxed);
        }
        for v in views {
            let (wire, text) = framed(&v.json);
            v.group.ring.send(Arc::new(GroupFrame { seq: v.seq, text, wire, progress: progress.clone() }));
        }
        Some(progress)
    }

    /// When a live view group waiting for its interval is due.
    fn views_due(&self) -> Option<tokio::time::Instant> {
        lock(&self.views).next_due().map(tokio::time::Instant::from_std)
    }
}

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
    /// Joins the cluster through `layer` and starts the hub's task (which leaves the cluster and
    /// stops when `shutdown` is cancelled). `registered_count` is this node's count of accounts
    /// (the cluster's count wins if it has one). Must be called inside a tokio runtime. Live
    /// views then know only the accounts that events name: see [`Hub::start_with`].
    pub fn start<L: Layer>(
        config: HubConfig,
        registered_count: u64,
        layer: L,
        observer: Arc<dyn PresenceObserver>,
        shutdown: CancellationToken,
    ) -> Result<(Hub, JoinHandle<()>), LayerError> {
        Hub::start_with(config, AccountList::count_only(registered_count), layer, observer, shutdown)
    }

    /// [`Hub::start`] with every account (for live views; their number is the registered count).
    /// Builds the directory and the list order: O(accounts log accounts), once.
    pub fn start_with<L: Layer>(
        config: HubConfig,
        accounts: AccountList,
        layer: L,
        observer: Arc<dyn PresenceObserver>,
        shutdown: CancellationToken,
    ) -> Result<(Hub, JoinHandle<()>), LayerError> {
        let registered_count = accounts.registered();
        let key = accounts.key;
        let deliveries = layer.join(registered_count)?;
        let layer = Arc::new(layer);
        let status = layer.clone();
        let inner = Arc::new(Inner {
            core: Mutex::new(Core {
                registry: Registry::new(config.max_sockets_per_user),
                replica: Replica::new(registered_count),
                pending: Vec::new(),
                outbox: Vec::new(),
                counts_changed: false,
            }),
            published: Mutex::new(Published::new(registered_count, key)),
            ring: Ring::new(config.queue_capacity),
            views: Mutex::new(Views::new(
                accounts,
                config.queue_capacity.clamp(1, VIEW_RING),
                config.tick * VIEW_INTERVAL_TICKS,
            )),
            config: HubConfig { queue_capacity: config.queue_capacity.max(1), ..config },
            wake: Notify::new(),
            shutdown,
            observer,
            clock: Clock::new(),
            layer_status: Box::new(move || status.status()),
            next_socket: AtomicU64::new(1),
            frames_sent: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            lagging_resyncs: AtomicU64::new(0),
            lagging_closes: AtomicU64::new(0),
            cluster_resyncs: AtomicU64::new(0),
        });
        let task = tokio::spawn(task::run(inner.clone(), layer, deliveries));
        Ok((Hub { inner }, task))
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Registers a socket of `user` in `session`. Dropping the returned [`Connection`] closes it.
    /// A roster.v2 socket watches the first page of the whole list (200 users); see
    /// [`Hub::watch`] to pick the window.
    pub fn connect(
        &self,
        user: UserRef,
        session: impl Into<Session>,
        protocol: Protocol,
    ) -> Result<Connection, ConnectError> {
        match protocol {
            Protocol::RosterV2 => self.watch(user, session, &Window::default()),
            _ => self.register(user, session.into(), protocol, None),
        }
    }

    /// Registers a roster.v2 socket of `user` in `session` watching `window` (the window of its
    /// handshake; the client's request id for it is 0). Its first frame is the window's snapshot.
    pub fn watch(
        &self,
        user: UserRef,
        session: impl Into<Session>,
        window: &Window,
    ) -> Result<Connection, ConnectError> {
        self.register(user, session.into(), Protocol::RosterV2, Some(window))
    }

    fn register(
        &self,
        user: UserRef,
        session: Session,
        protocol: Protocol,
        window: Option<&Window>,
    ) -> Result<Connection, ConnectError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(ConnectError::ShuttingDown);
        }
        let expires_at = session.expires_at;
        let uid = user.id;
        let id = inner.next_socket.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(SocketShared::default());
        // Subscribe before the socket counts: every batch flushed from now on reaches it.
        let (feed, seen) = match window {
            None => (Feed::Batches(inner.ring.subscribe()), lock(&inner.published).seq),
            Some(window) => {
                let mut views = lock(&inner.views);
                let key = views.key(window);
                let (group, rx, seq) = views.join(&key);
                (Feed::View(ViewFeed::new(key, group, rx, 0)), seq)
            }
        };
        let now_ms = inner.now_ms();
        let added = {
            let mut core = lock(&inner.core);
            let added = core.registry.add(user, session, id, shared.clone(), now_ms);
            if let Ok(Some(up)) = &added {
                core.outbox.push(up.clone());
            }
            // A session ending before every other one: the task must shorten its sleep.
            let earliest = expires_at.is_some() && core.registry.next_expiry() == expires_at;
            inner.queue(core);
            if earliest {
                inner.wake.notify_one();
            }
            added
        };
        if let Err(e) = added {
            if let Feed::View(v) = &feed {
                lock(&inner.views).leave(&v.key);
            }
            return Err(e);
        }
        Ok(Connection {
            inner: inner.clone(),
            shared,
            feed,
            user: uid,
            id,
            protocol,
            resync: protocol != Protocol::Tutorial,
            skip_upto: 0,
            cursor: None,
            closed: None,
            wire: false,
            frames_in_out: 1,
            seen,
        })
    }

    /// Log out of `session` (of `user`): its sockets, on every node, get `Close(4001)`. If those
    /// were the user's last sockets in the cluster, or the user was only online through the grace,
    /// `Offline` goes out at once.
    pub fn close_session(&self, session: &SessionKey, user: UserId) {
        let now_ms = self.inner.now_ms();
        let mut core = lock(&self.inner.core);
        let (_, down) = core.registry.close_session(session, CLOSE_LOGGED_OUT, now_ms);
        core.outbox.extend(down);
        core.outbox.push(Change::CloseSession(session.clone()));
        core.outbox.push(Change::EndGrace(user));
        self.inner.queue(core);
    }

    /// The reconciler's backstop for a session ended by another process (the CLI) or found
    /// expired: closes its sockets on this node only (4001). Every node's reconciler finds the
    /// same sessions, so nothing is broadcast. Whether the session still had sockets here (a
    /// log out on this node may have closed them since the reconciler looked).
    pub fn close_session_here(&self, session: &SessionKey) -> bool {
        let now_ms = self.inner.now_ms();
        let mut core = lock(&self.inner.core);
        let (user, down) = core.registry.close_session(session, CLOSE_LOGGED_OUT, now_ms);
        core.outbox.extend(down);
        self.inner.queue(core);
        user.is_some()
    }

    /// Deactivated user: every socket of every session, on every node, gets
    /// `Close(1008, "account disabled")` and `Offline` goes out at once.
    pub fn close_user(&self, user: UserId) {
        self.account_closed(user, Change::CloseUser(user));
    }

    /// Deleted user: as [`Hub::close_user`]; the registered count drops and roster.v1 diffs list
    /// the id in `deleted`, on every node.
    pub fn user_deleted(&self, user: UserId) {
        self.account_closed(user, Change::Deleted(user));
    }

    fn account_closed(&self, user: UserId, change: Change) {
        let now_ms = self.inner.now_ms();
        let mut core = lock(&self.inner.core);
        let down = core.registry.close_user(user, CLOSE_ACCOUNT_DISABLED, now_ms);
        core.outbox.extend(down);
        core.outbox.push(change);
        // A user who had closed their last socket is still online through the grace: the account
        // is gone, so is the grace (else a deleted user shows online, and in the same batch as
        // their deletion).
        core.outbox.push(Change::EndGrace(user));
        self.inner.queue(core);
    }

    /// The account reconciler's backstop for changes made by another process (the CLI): closes
    /// the user's sockets on this node only (1008) and, if the account was `deleted`, lists it in
    /// this node's next batch and lowers this node's count (once per id, however it is heard).
    /// Every node's reconciler finds the same accounts, so nothing is broadcast.
    pub fn close_user_here(&self, user: UserId, deleted: bool) {
        let now_ms = self.inner.now_ms();
        let mut core = lock(&self.inner.core);
        let down = core.registry.close_user(user, CLOSE_ACCOUNT_DISABLED, now_ms);
        core.outbox.extend(down);
        if deleted {
            let core = &mut *core;
            core.replica.deleted(user, &mut core.pending);
            self.inner.wake.notify_one();
        }
        self.inner.queue(core);
    }

    /// The store's count of accounts, read by this node's reconciler: corrects this node's count
    /// (accounts added or removed by another process, an event missed); watchers get the new
    /// count in the next batch.
    pub fn set_registered_here(&self, registered: u64) {
        let mut core = lock(&self.inner.core);
        if core.replica.registered() != registered {
            core.replica.set_registered(registered);
            core.counts_changed = true;
            drop(core);
            self.inner.wake.notify_one();
        }
    }

    /// A new account: every node's registered count grows; roster.v1 diffs carry it in
    /// `signed_up`. Tutorial mode sends nothing.
    pub fn signed_up(&self, user: UserRef) {
        let mut core = lock(&self.inner.core);
        core.outbox.push(Change::SignedUp(user));
        self.inner.queue(core);
    }

    /// Online now: a socket open on this node, or online in the cluster as this node last heard.
    pub fn is_online(&self, id: UserId) -> bool {
        let core = lock(&self.inner.core);
        core.registry.has(id) || core.replica.is_online(id)
    }

    /// How many sockets `user` has open on this node (the admin pages show it). O(1).
    pub fn sockets_of(&self, user: UserId) -> usize {
        lock(&self.inner.core).registry.sockets_of(user)
    }

    /// Users online as of the last flushed batch (at most one tick old, the same set the
    /// roster.v1 snapshot has), sorted by lowercase username, then id. Built once per batch and
    /// shared: a call costs O(1) between batches, O(online) once after one.
    pub fn online_users(&self) -> Arc<[UserRef]> {
        lock(&self.inner.published).sorted()
    }

    /// Users online in the cluster, as this node last heard.
    pub fn online_count(&self) -> usize {
        lock(&self.inner.core).replica.online_count()
    }

    pub fn registered_count(&self) -> u64 {
        lock(&self.inner.core).replica.registered()
    }

    /// The roster.v1 snapshot as of the last flushed batch (the body of `GET /api/users/`).
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.inner.published).snapshot()
    }

    /// The sessions with at least one socket open on this node, with their user: what a server
    /// checks against its session store to close sockets whose session ended elsewhere.
    /// O(sessions open here).
    pub fn open_sessions(&self) -> Vec<(SessionKey, UserId)> {
        lock(&self.inner.core).registry.open_sessions()
    }

    /// The layer's health and counters (for `/readyz` and `/metrics`).
    pub fn layer_status(&self) -> LayerStatus {
        (self.inner.layer_status)()
    }

    pub fn stats(&self) -> HubStats {
        let i = &self.inner;
        let (sockets_open, users_online, registered_count) = {
            let core = lock(&i.core);
            (core.registry.sockets_open(), core.replica.online_count(), core.replica.registered())
        };
        let (view_groups, directory_accounts) = {
            let views = lock(&i.views);
            (views.groups(), views.accounts())
        };
        HubStats {
            sockets_open,
            users_online,
            registered_count,
            frames_sent: i.frames_sent.load(Ordering::Relaxed),
            batches_sent: i.batches_sent.load(Ordering::Relaxed),
            lagging_resyncs: i.lagging_resyncs.load(Ordering::Relaxed),
            lagging_closes: i.lagging_closes.load(Ordering::Relaxed),
            max_queue_depth: i.ring.max_depth(),
            queue_capacity: i.config.queue_capacity,
            cluster_resyncs: i.cluster_resyncs.load(Ordering::Relaxed),
            view_groups,
            directory_accounts,
        }
    }
}
