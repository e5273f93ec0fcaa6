//! Start-up and shutdown: `Application::build(settings)` opens the store, runs migrations,
//! starts the presence hub and binds the listener; `run_until_stopped(shutdown)` serves until
//! the token is cancelled, then waits for the tasks it started.
//!
//! Tests use exactly this path with `--bind 127.0.0.1:0`, so what they exercise is what
//! operators run. Nothing here knows about individual routes (see `web`).

use std::net::SocketAddr;
use std::sync::Arc;

use presence::layer::{LayerConfig, MemoryCluster};
use presence::{AccountList, Hub, HubConfig, PresenceObserver, SessionKey, UserId};
use presence_redis::{RedisLayer, RedisLayerConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::net;
use crate::settings::{redact_url, ServeArgs};
use crate::store::Store;
use crate::web::session::SessionCache;
use crate::web::{self, AppState};

/// A built, bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    /// The separate `/metrics` listener (`--metrics-bind`), if any.
    metrics_listener: Option<TcpListener>,
    /// How connections are served: timeouts, caps (shared by both listeners), SO_SNDBUF.
    serve_options: net::ServeOptions,
    state: AppState,
    tasks: TaskTracker,
    hub_task: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
    /// Stops the last_seen writer once the hub has said its last.
    writer_stop: CancellationToken,
    /// Where socket loops run (see [`SocketRuntime`]).
    sockets: SocketRuntime,
}

/// Socket loops run on a runtime of their own. A batch wakes every socket task at once; on the
/// runtime that serves HTTP, those wake-ups overflow into the shared queue, and a request whose
/// database answer arrives behind 10,000 of them waits a whole fan-out: measured with 10,000
/// watchers, most socket opens of a storm timed out waiting for a database connection (503).
/// On their own runtime (with the hub task, so a batch's wake-ups are local to it), sockets
/// queue behind sockets and requests behind requests; the OS shares the cores between the two.
struct SocketRuntime(Option<tokio::runtime::Runtime>);

impl SocketRuntime {
    fn new() -> std::io::Result<SocketRuntime> {
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("roster-sockets")
            .enable_time()
            .build()?;
        Ok(SocketRuntime(Some(rt)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().expect("the socket runtime lives as long as the application").handle().clone()
    }
}

impl Drop for SocketRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside the main runtime.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// How many offline batches may wait for the database before new ones are dropped (with a
/// warning). One batch is written per presence tick, so this is minutes of database outage.
const LAST_SEEN_QUEUE: usize = 1024;

impl Application {
    pub async fn build(settings: ServeArgs) -> anyhow::Result<Application> {
        crate::web::metrics::install();
        let store = Store::connect(&settings.db.database_url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", redact_url(&settings.db.database_url)))?;
        store.migrate().await?;
        let accounts = load_accounts(&store).await?;

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();

        let (last_seen_tx, last_seen_rx) = mpsc::channel(LAST_SEEN_QUEUE);
        // The writer outlives the hub: it stops once the hub task has ended (see `run_until_stopped`),
        // so the Offline of a stop is saved too.
        let writer_stop = CancellationToken::new();
        tasks.spawn(write_last_seen(store.clone(), last_seen_rx, writer_stop.clone()));
        let sessions = Arc::new(SessionCache::default());
        let observer = Arc::new(Observer { last_seen: last_seen_tx, sessions: sessions.clone() });

        let hub_config = HubConfig {
            tick: settings.tick,
            max_sockets_per_user: settings.max_sockets_per_user as usize,
            queue_capacity: settings.send_queue as usize,
        };
        let layer_config =
            LayerConfig { grace: settings.presence_grace, lease: settings.node_lease, ..LayerConfig::default() };
        // The Redis layer is made here, so its tasks run on this (I/O) runtime; the hub task runs
        // beside the sockets it wakes (see `SocketRuntime`).
        let redis = match &settings.cluster.redis_url {
            None => None,
            Some(url) => {
                tracing::info!(redis = %url, "presence shared through Redis (cluster mode)");
                Some(RedisLayer::new(RedisLayerConfig {
                    url: url.expose().to_owned(),
                    key_prefix: settings.cluster.redis_key_prefix.clone(),
                    node_name: settings.node_name.clone().unwrap_or_else(default_node_name),
                    layer: layer_config.clone(),
                })?)
            }
        };
        let sockets = SocketRuntime::new()?;
        let (hub, hub_task) = {
            let _on_socket_runtime = sockets.handle().enter();
            match redis {
                None => {
                    let layer = MemoryCluster::new(layer_config).node();
                    Hub::start_with(hub_config, accounts, layer, observer, shutdown.clone())?
                }
                Some(layer) => Hub::start_with(hub_config, accounts, layer, observer, shutdown.clone())?,
            }
        };

        tasks.spawn(reconcile_accounts(
            store.clone(),
            hub.clone(),
            sessions.clone(),
            RECONCILE_EVERY,
            shutdown.clone(),
        ));

        tasks.spawn(crate::session_purge::purge_expired_sessions(
            store.clone(),
            settings.session_purge_interval,
            shutdown.clone(),
        ));

        let listener = TcpListener::bind(settings.bind).await?;
        let metrics_listener = match settings.metrics_bind {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?,
            ),
            None => None,
        };
        let state = AppState::new(store, hub, sessions, sockets.handle(), &settings, shutdown.clone(), tasks.clone());
        let max_total = settings.max_connections.unwrap_or_else(net::default_max_connections);
        let max_per_address = settings.max_connections_per_address.unwrap_or((max_total / 4).max(1));
        let serve_options = net::ServeOptions {
            timeouts: net::Timeouts { header_read: settings.header_read_timeout, idle: settings.idle_timeout },
            caps: net::ConnectionCaps::new(max_total, max_per_address, state.trusted_proxies.clone()),
            tcp_send_buffer: settings.tcp_send_buffer as usize,
        };
        tracing::info!(
            max_connections = max_total,
            max_connections_per_address = max_per_address,
            header_read_timeout = ?settings.header_read_timeout,
            idle_timeout = ?settings.idle_timeout,
            "connection limits"
        );
        Ok(Application {
            sockets,
            listener,
            metrics_listener,
            serve_options,
            state,
            tasks,
            hub_task,
            shutdown,
            writer_stop,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The address of the separate metrics listener, if `--metrics-bind` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The token that stops the server; cancel it to shut down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets the hub withdraw this
    /// node's presence and waits for every task the application started.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let router = web::router(self.state.clone());
        let metrics_server = self.metrics_listener.map(|listener| {
            let router = web::metrics::listener_router(self.state.clone());
            tokio::spawn(net::serve(listener, router, self.serve_options.clone(), self.shutdown.clone()))
        });
        net::serve(self.listener, router, self.serve_options.clone(), self.shutdown.clone()).await;
        // Upgraded WebSocket tasks are not HTTP connections: the hub closes them.
        self.shutdown.cancel();
        if let Some(metrics_server) = metrics_server {
            let _ = metrics_server.await;
        }
        let _ = self.hub_task.await;
        self.writer_stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, self.tasks.wait()).await.is_err() {
            tracing::warn!("some sockets did not close within {SHUTDOWN_WAIT:?}; exiting anyway");
        }
        drop(self.sockets);
        Ok(())
    }
}

/// The host name and the process id: a node's name unless `--node-name` gives one.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let host = if host.is_empty() { "roster".to_owned() } else { host };
    format!("{host}:{}", std::process::id())
}

/// Every account, for the hub's directory (live views): one query, once. Searches and the order
/// of online users use the same key as the store's `username_key` ([`crate::accounts::username_key`]).
async fn load_accounts(store: &Store) -> anyhow::Result<AccountList> {
    let started = std::time::Instant::now();
    let rows = store.all_accounts().await?;
    let mut accounts = AccountList::new(crate::accounts::username_key);
    accounts.reserve(rows.len());
    for row in &rows {
        accounts.push(row.id, &row.username, Some(&row.username_key), row.last_seen);
    }
    tracing::info!(accounts = rows.len(), ms = started.elapsed().as_millis() as u64, "accounts loaded for live views");
    Ok(accounts)
}

/// How long a shutdown waits for socket tasks to send their close frames (a peer that stopped
/// reading cannot make it wait longer).
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the accounts of online users are checked against the store.
const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Accounts and sessions can be changed by another process (`roster user
/// create|deactivate|delete|set-password`, another node) and sessions expire. Every `every`:
/// - the count of accounts is read (one row the database keeps) and this node's corrected;
/// - the users online here are checked in one query (O(online), never O(accounts); only the
///   accounts to act on come back); a
///   deleted user's sockets here are closed and the deletion announced to this node's watchers,
///   an inactive user's sockets here are closed (1008);
/// - the sessions with sockets open here are checked in one query (chunked when large, see
///   [`Store::live_sessions`]); the sockets of a session that no longer exists, has expired or
///   whose user is inactive are closed as logged out (4001), and its cache entry dropped.
async fn reconcile_accounts(
    store: Store,
    hub: Hub,
    sessions: Arc<SessionCache>,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match store.count_users().await {
            Ok(n) => hub.set_registered_here(n),
            Err(e) => tracing::warn!(error = %e, "could not read the count of accounts"),
        }
        // Sessions looked up more than a second ago are of no use: let their memory go.
        sessions.purge(std::time::Instant::now());
        check_online_accounts(&store, &hub, &sessions).await;
        close_ended_sessions(&store, &hub, &sessions).await;
    }
}

/// Closes the sockets of online users whose account was deleted or deactivated.
async fn check_online_accounts(store: &Store, hub: &Hub, sessions: &SessionCache) {
    let online: Vec<UserId> = hub.online_users().iter().map(|u| u.id).collect();
    if online.is_empty() {
        return;
    }
    let found = match store.gone_or_inactive(&online).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "could not check the accounts of online users");
            return;
        }
    };
    for (id, exists) in found {
        if exists {
            tracing::info!(user_id = id, "account deactivated: closing its sockets");
        } else {
            tracing::info!(user_id = id, "account deleted: closing its sockets");
        }
        sessions.forget_user(id);
        hub.close_user_here(id, !exists);
    }
}

/// Closes the sockets of sessions that ended elsewhere or expired (4001).
async fn close_ended_sessions(store: &Store, hub: &Hub, sessions: &SessionCache) {
    let open = hub.open_sessions();
    if open.is_empty() {
        return;
    }
    // Session keys are the hex hashes the store keeps (see `ws.rs`).
    let hashes: Vec<String> =
        open.iter().filter_map(|(key, _)| std::str::from_utf8(key.as_bytes()).ok().map(str::to_owned)).collect();
    let live = match store.live_sessions(&hashes, crate::now_ms()).await {
        Ok(live) => live,
        Err(e) => {
            tracing::warn!(error = %e, "could not check the sessions of open sockets");
            return;
        }
    };
    for (key, user_id) in open {
        let hash = String::from_utf8_lossy(key.as_bytes());
        if !live.contains(hash.as_ref()) {
            sessions.forget(&hash);
            if hub.close_session_here(&key) {
                tracing::info!(user_id, "session ended or expired: closed its sockets");
            }
        }
    }
}

/// What the hub tells the server: offline transitions go to the database writer (without
/// blocking the hub), ended sessions and closed accounts leave the session cache.
struct Observer {
    last_seen: mpsc::Sender<Vec<(UserId, i64)>>,
    sessions: Arc<SessionCache>,
}

impl PresenceObserver for Observer {
    fn went_offline(&self, users: &[(UserId, i64)]) {
        if let Err(e) = self.last_seen.try_send(users.to_vec()) {
            tracing::warn!(users = users.len(), error = %e, "last_seen queue full; these last_seen times are not saved");
        }
    }

    fn sessions_ended(&self, sessions: &[SessionKey], users: &[UserId]) {
        for key in sessions {
            if let Ok(hash) = std::str::from_utf8(key.as_bytes()) {
                self.sessions.forget(hash);
            }
        }
        for &user in users {
            self.sessions.forget_user(user);
        }
    }
}

/// Writes `last_seen` batches, merging whatever has queued up into one transaction. When `stop`
/// is cancelled (after the hub task has ended) it writes what is queued, so a clean stop loses
/// nothing.
async fn write_last_seen(store: Store, mut rx: mpsc::Receiver<Vec<(UserId, i64)>>, stop: CancellationToken) {
    loop {
        let (mut batch, stopping) = tokio::select! {
            batch = rx.recv() => match batch { Some(b) => (b, false), None => return },
            () = stop.cancelled() => (Vec::new(), true),
        };
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        if !batch.is_empty() {
            if let Err(e) = store.set_last_seen(&batch).await {
                tracing::error!(error = %e, users = batch.len(), "could not save last_seen");
            }
        }
        if stopping {
            return;
        }
    }
}
