//! The Redis implementation of Roster's presence layer ([`presence::layer::Layer`]): every node
//! of a cluster shares presence through one Redis, with O(1) Redis work per presence change.
//! It passes the same conformance suite as the in-process `MemoryCluster`.
//!
//! Must not depend on the hub, HTTP or SQL; speaks only [`presence::event`]. Built on the
//! `redis` crate (tokio, scripts); not `fred` (see docs/decisions.md).
//!
//! # Key layout
//! Every key is `<prefix>:{r0}:<name>` (the prefix is configurable; `{r0}` is the hash tag of
//! the one shard, so every key is in one Redis Cluster slot and the scripts may touch them
//! together):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `seq` | string | the cluster sequence: `INCR`ed once per event |
//! | `nodes` | zset | incarnation → lease expiry (Redis `TIME`, ms) |
//! | `node:<incarnation>` | set | the users that incarnation has up (a node's user is up or not) |
//! | `count` | hash | user → how many incarnations have the user up |
//! | `names` | hash | user → name, for every user online (up somewhere, or in grace) |
//! | `grace` | zset | user → grace deadline (ms), for users online only through the grace |
//! | `lastdown` | hash | user → time of the last Down (unix ms), reported as last seen |
//! | `registered` | string | the number of accounts |
//! | `info` | hash | incarnation → node name (for people inspecting Redis) |
//! | `incarnations` | string | the incarnation counter |
//! | `ops:<nonce>` | string | a writer's last applied account event (expires after an hour) |
//! | `events` | channel | every event, as `"<seq> <event>"` (see `message.rs`) |
//!
//! An incarnation is `<counter>.<nonce>`: a new one per registration, with a random part so a
//! Redis restored from an older append-only file can never hand out one a node still
//! remembers.
//!
//! # Scripts (`src/lua/`, each after `prelude.lua`; one `EVALSHA` per call)
//! - `presence`: a node's Ups, Downs and ends of grace, in order, fenced by its lease. An Up
//!   adds the user to the node's set; the first node (count 0→1) either cancels the user's
//!   grace (no event: they never left) or publishes `Online`. A Down removes it; the last node
//!   (1→0) starts the grace (or publishes `Offline` at once for a log out or a zero grace).
//!   Each transition is decided, numbered (`INCR seq`) and published in the same atomic script,
//!   so exactly once. The work is a fixed handful of O(1) (or O(log n)) commands per change,
//!   whatever the number of users, sockets and nodes.
//! - `account`: sign-ups, deletions, closed sessions and users: numbered and published; the
//!   writer's op mark makes a retried batch apply once.
//! - `register`: a new incarnation with a lease; seeds the registered count of an empty Redis.
//! - `heartbeat`: renews the lease (or answers FENCED if it lapsed), and returns the cluster
//!   sequence and the next deadline (a lease or a grace) for the sweep.
//! - `retire`: withdraws an incarnation a batch at a time, its users handed to the grace: a
//!   node leaving, or a node that re-registered dropping its older incarnations.
//! - `sweep`: takes down a lapsed incarnation (a batch of users per call, each `Offline` at once
//!   if up nowhere else) and ends the graces that are due; with `force` (the last node leaving,
//!   checked in the script) ends every grace.
//! - `state`: the sequence, the registered count and every online user with their name, read
//!   atomically (O(users online): only for a resync).
//!
//! # Tasks (each tracked, stopped on drop, crash or leave)
//! - the writer (`writer.rs`): connects with jittered backoff, registers, re-asserts the node's
//!   users (its mirror) in batches, retires its older incarnations, then applies the outbox.
//!   It re-registers after a fencing and after every reconnect (Redis may have come back empty,
//!   or from an older append-only file).
//! - the upkeep (`upkeep.rs`): heartbeats every lease/3 and sweeps when something is due.
//! - the subscriber (`subscriber.rs`): a dedicated pub/sub connection with its own reconnect
//!   loop, checking the sequence of every message; resyncs after any (re)subscribe, gap or lag,
//!   and resubscribes when it stays behind the sequence a heartbeat saw.
//!
//! # While Redis is unreachable
//! `send` keeps accepting changes and never waits: presence changes are coalesced per user
//! (the mirror of this node's users stays exact, memory is one entry per user), account events
//! queue in order up to 10,000, beyond which new ones are dropped and counted (the server's
//! reconciler still closes ended sessions on every node; a registered count may then be off
//! until the next sign-up or deletion is counted against a fresh count). `status()` answers
//! `ready: false` with the reason. On reconnect the node re-registers and the subscriber
//! resyncs, so every node ends with the exact state, including the changes made meanwhile.
//!
//! # Layout
//! `announce` (account events from a process that is not a node: the CLI), `config` (settings, timings, URL redaction), `keys`, `scripts` (+ `lua/`), `message`
//! (reading the channel), `outbox`, `backoff`, `shared` (what the tasks share), `writer`,
//! `upkeep`, `subscriber`, and [`RedisLayer`] here.

mod announce;
mod backoff;
mod config;
mod keys;
mod message;
mod outbox;
mod scripts;
mod shared;
mod subscriber;
mod upkeep;
mod writer;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use presence::event::{Change, Delivery};
use presence::layer::{Layer, LayerError, LayerStatus};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use announce::{announce, AnnounceError};
pub use config::{redact_url, RedisLayerConfig};

use config::{Timings, BATCH, LEAVE_WAIT};
use keys::Keys;
use shared::{lock, Shared};

/// Why a [`RedisLayer`] could not be made. Never shows the URL's password.
#[derive(Debug, thiserror::Error)]
pub enum RedisLayerError {
    #[error("invalid redis url ({0})")]
    Url(String),
    #[error("invalid key prefix {0:?}: use 1 to 64 letters, digits or -_.:")]
    Prefix(String),
}

/// One node's membership of a cluster kept in Redis. See the crate docs.
pub struct RedisLayer {
    shared: Arc<Shared>,
    queue: usize,
    /// Stops every task (drop, crash, the end of a leave).
    root: CancellationToken,
    tracker: TaskTracker,
    phase: Mutex<Phase>,
    /// The runtime the layer was made in, if any: its tasks run there, whatever runtime it
    /// joins from (a server may join from a runtime without I/O, for its sockets).
    runtime: Option<tokio::runtime::Handle>,
}

enum Phase {
    New,
    Joined(Tasks),
    /// Left, or crashed (test hook).
    Gone,
}

struct Tasks {
    writer: JoinHandle<()>,
    upkeep: JoinHandle<()>,
    upkeep_stop: CancellationToken,
    subscriber: JoinHandle<()>,
    /// Asks the writer to apply what is queued, then stop.
    finish: CancellationToken,
    /// The last sequence the subscriber must deliver before its stream ends (leaving).
    until: watch::Sender<Option<u64>>,
}

impl RedisLayer {
    /// A node of the cluster at `config.url`. Does no I/O and spawns nothing: the node connects
    /// in the background once it joins, and keeps trying while Redis is unreachable. Its tasks
    /// run on the tokio runtime this is called in (else on the one `join` is called in).
    pub fn new(config: RedisLayerConfig) -> Result<RedisLayer, RedisLayerError> {
        if !config::valid_prefix(&config.key_prefix) {
            return Err(RedisLayerError::Prefix(config.key_prefix));
        }
        let client = redis::Client::open(config.url.as_str()).map_err(|e| RedisLayerError::Url(e.to_string()))?;
        let timings = Timings::new(&config.layer);
        let shared = Shared::new(Keys::new(&config.key_prefix), timings, client, config.node_name);
        Ok(RedisLayer {
            shared: Arc::new(shared),
            queue: config.layer.queue.max(2),
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
            phase: Mutex::new(Phase::New),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// Test hook: stops the node as `kill -9` would (no leave): its tasks end, its stream
    /// ends, and its lease is left to lapse.
    pub async fn crash(&self) {
        *lock(&self.phase) = Phase::Gone;
        self.stop().await;
    }

    /// Test hook: pauses (or resumes) heartbeats and sweeps, as a stopped process would; the
    /// lease lapses after the lease time. Returns once no heartbeat or sweep is under way.
    pub async fn pause_upkeep(&self, paused: bool) {
        self.shared.paused.send_replace(paused);
        drop(self.shared.upkeep_busy.lock().await);
    }

    /// The incarnation this node holds now, if registered (diagnostics and tests).
    pub fn incarnation(&self) -> Option<String> {
        self.shared.live().map(|l| l.inc.to_string())
    }

    async fn stop(&self) {
        self.root.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await.is_err() {
            tracing::warn!("presence layer: a task did not stop within 5 s");
        }
        self.shared.live.send_replace(None);
    }

    /// Hands this node's users to the grace and withdraws it; if no other node holds a live
    /// lease, ends every grace. Returns the sequence of the last event this caused.
    async fn withdraw(&self) -> Option<u64> {
        let live = self.shared.live()?;
        let (s, k, t) = (&self.shared.scripts, &self.shared.keys, &self.shared.timings);
        let mut conn = live.conn.clone();
        loop {
            let a = s.retire(k, &mut conn, &live.inc, None, t.grace_ms, BATCH).await.ok()?;
            if a.left <= 0 {
                break;
            }
        }
        let mut lapsed: Option<String> = None;
        loop {
            let swept = s.sweep(k, &mut conn, lapsed.as_deref(), BATCH, true).await.ok()?;
            if swept.others_live || !swept.more {
                return Some(swept.seq);
            }
            lapsed = swept.next_lapsed;
        }
    }
}

impl Drop for RedisLayer {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

impl Layer for RedisLayer {
    fn join(&self, registered: u64) -> Result<mpsc::Receiver<Delivery>, LayerError> {
        let mut phase = lock(&self.phase);
        if !matches!(*phase, Phase::New) {
            return Err(LayerError::AlreadyJoined);
        }
        let Some(rt) = self.runtime.clone().or_else(|| tokio::runtime::Handle::try_current().ok()) else {
            return Err(LayerError::Unavailable("the redis layer must be made or join within a tokio runtime".into()));
        };
        self.shared.set_registered(Some(registered));
        let (tx, rx) = mpsc::channel(self.queue);
        let finish = CancellationToken::new();
        let upkeep_stop = self.root.child_token();
        let (until, until_rx) = watch::channel(None);
        let shared = &self.shared;
        let tasks = Tasks {
            writer: self.tracker.spawn_on(writer::run(shared.clone(), self.root.child_token(), finish.clone()), &rt),
            upkeep: self.tracker.spawn_on(upkeep::run(shared.clone(), upkeep_stop.clone()), &rt),
            upkeep_stop,
            subscriber: self
                .tracker
                .spawn_on(subscriber::run(shared.clone(), tx, self.root.child_token(), until_rx), &rt),
            finish,
            until,
        };
        *phase = Phase::Joined(tasks);
        Ok(rx)
    }

    fn send(&self, changes: Vec<Change>) {
        if matches!(*lock(&self.phase), Phase::Gone) {
            return;
        }
        let mut outbox = lock(&self.shared.outbox);
        let before = outbox.dropped;
        for change in changes {
            outbox.push(change);
        }
        let dropped = outbox.dropped - before;
        drop(outbox);
        if dropped > 0 {
            tracing::warn!(dropped, "presence layer: account events dropped: the queue for redis is full");
        }
        self.shared.outbox_wake.notify_one();
    }

    async fn leave(&self) {
        let tasks = match std::mem::replace(&mut *lock(&self.phase), Phase::Gone) {
            Phase::Joined(tasks) => tasks,
            Phase::New | Phase::Gone => return,
        };
        // What is queued goes out first (at most LEAVE_WAIT; Redis may be unreachable).
        tasks.finish.cancel();
        if tokio::time::timeout(LEAVE_WAIT, tasks.writer).await.is_err() {
            tracing::warn!("presence layer: leaving without applying every queued change (redis unreachable?)");
        }
        tasks.upkeep_stop.cancel();
        let _ = tasks.upkeep.await;
        let last = tokio::time::timeout(LEAVE_WAIT, self.withdraw()).await.ok().flatten();
        // The subscriber delivers what the leave caused, then ends the stream.
        tasks.until.send_replace(Some(last.unwrap_or(0)));
        if last.is_some() && tokio::time::timeout(LEAVE_WAIT, tasks.subscriber).await.is_err() {
            tracing::warn!("presence layer: did not hear every Offline of the leave");
        }
        self.stop().await;
    }

    fn status(&self) -> LayerStatus {
        let st = &self.shared.stats;
        let reason = match &*lock(&self.phase) {
            Phase::New => Some("not joined".to_owned()),
            Phase::Gone => Some("left the cluster".to_owned()),
            Phase::Joined(_) => match *lock(&self.shared.writer_down) {
                Some(why) => Some(why.to_owned()),
                None if !self.shared.subscribed.load(Relaxed) => Some("redis subscriber reconnecting".to_owned()),
                None => None,
            },
        };
        LayerStatus {
            ready: reason.is_none(),
            reason,
            reconnects: st.reconnects.load(Relaxed),
            resyncs: st.resyncs.load(Relaxed),
            seq_gaps: st.seq_gaps.load(Relaxed),
            sweeps: st.sweeps.load(Relaxed),
            fenced: st.fenced.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use presence::layer::LayerConfig;

    use super::*;

    fn config(url: &str, prefix: &str) -> RedisLayerConfig {
        RedisLayerConfig {
            url: url.into(),
            key_prefix: prefix.into(),
            node_name: "n".into(),
            layer: LayerConfig::default(),
        }
    }

    #[test]
    fn bad_settings_are_refused_without_showing_the_password() {
        for url in ["redis://:hunter2@", "http://:hunter2@h:1", "hunter2"] {
            let Err(e) = RedisLayer::new(config(url, "roster")) else { panic!("{url} accepted") };
            assert!(matches!(e, RedisLayerError::Url(_)), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        assert!(matches!(RedisLayer::new(config("redis://h:1", "a{b}")), Err(RedisLayerError::Prefix(_))));
    }

    #[test]
    fn a_new_node_does_no_io_and_is_not_ready() {
        // No runtime, nothing listening: making the layer still works.
        let layer = RedisLayer::new(config("redis://127.0.0.1:1", "roster")).expect("valid");
        let status = layer.status();
        assert!(!status.ready);
        assert_eq!(status.reason.as_deref(), Some("not joined"));
        assert!(matches!(layer.join(0), Err(LayerError::Unavailable(_))), "join needs a runtime");
    }
}
