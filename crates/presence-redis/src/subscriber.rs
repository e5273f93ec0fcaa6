//! The subscriber task: this node's one pub/sub connection, its reconnect loop, and the node's
//! delivery stream. Pub/sub is not trusted: every message carries the cluster sequence, and
//! the node resyncs (reads the cluster's state atomically, delivers `Delivery::Resync`, goes on
//! from its `seq + 1`, dropping buffered messages at or below it) after
//! - every (re)subscribe, the first included (that is how the stream starts);
//! - a gap in the sequence, or a message it cannot read;
//! - the hub falling behind (the stream's queue full: events are dropped until it has room,
//!   then one resync replaces them);
//!
//! and it reconnects when it goes quiet: a heartbeat saw the cluster at a sequence the
//! subscriber has not reached within `Timings::quiet` (a subscription that silently stopped).
//!
//! Delivers only; never writes presence.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use futures_util::StreamExt;
use presence::event::{ClusterState, Delivery, Event};
use redis::aio::PubSubStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::CONNECT_TIMEOUT;
use crate::message;
use crate::scripts::Fault;
use crate::shared::{Shared, Stats, Trouble};

/// Runs until stopped, until the node's receiver is gone, or (leaving) once it has delivered
/// the sequence `until` names.
pub(crate) async fn run(
    shared: Arc<Shared>,
    tx: mpsc::Sender<Delivery>,
    stop: CancellationToken,
    mut until: watch::Receiver<Option<u64>>,
) {
    let mut backoff = Backoff::default();
    let mut subscribed_once = false;
    let mut delivered_once = false;
    loop {
        shared.subscribed.store(false, Relaxed);
        let stream = match stop.run_until_cancelled(subscribe(&shared)).await {
            None => return,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::debug!(addr = %shared.addr, "presence layer: subscribing failed: {e}");
                if stop.run_until_cancelled(tokio::time::sleep(backoff.next())).await.is_none() {
                    return;
                }
                continue;
            }
        };
        if subscribed_once {
            Stats::bump(&shared.stats.reconnects);
        }
        subscribed_once = true;
        let mut s = Subscription {
            shared: &shared,
            tx: &tx,
            stream,
            last: 0,
            lagged: false,
            behind: None,
            heard: shared.heard.subscribe(),
        };
        let end = s.serve(&stop, &mut until, &mut delivered_once).await;
        match end {
            End::Stop => return,
            End::Lost => {
                backoff.reset();
            }
            End::Retry => {}
        }
        shared.subscribed.store(false, Relaxed);
        if stop.run_until_cancelled(tokio::time::sleep(backoff.next())).await.is_none() {
            return;
        }
    }
}

async fn subscribe(shared: &Shared) -> Result<PubSubStream, Fault> {
    let connect = async {
        let mut pubsub = shared.client.get_async_pubsub().await?;
        pubsub.subscribe(shared.keys.channel()).await?;
        Ok::<_, redis::RedisError>(pubsub.into_on_message())
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(Fault::Redis(redis::RedisError::from((redis::ErrorKind::Io, "subscribe timed out")))),
    }
}

/// What became of one message.
enum Taken {
    /// Delivered (or dropped as already known, or while lagging).
    Next,
    /// A gap in the sequence: a resync is due.
    Gap,
    /// The node's receiver is gone.
    Closed,
}

enum End {
    Stop,
    /// The connection ended or went quiet: reconnect soon.
    Lost,
    /// Reading the state failed: reconnect after a backoff.
    Retry,
}

struct Subscription<'a> {
    shared: &'a Shared,
    tx: &'a mpsc::Sender<Delivery>,
    stream: PubSubStream,
    /// The sequence of the last delivery (or of the last event dropped while lagging).
    last: u64,
    /// The hub's queue was full: events are dropped until the next resync.
    lagged: bool,
    /// A heartbeat saw this sequence; the subscriber must reach it by the instant.
    behind: Option<(u64, Instant)>,
    heard: watch::Receiver<Option<crate::shared::Heard>>,
}

impl Subscription<'_> {
    async fn serve(
        &mut self,
        stop: &CancellationToken,
        until: &mut watch::Receiver<Option<u64>>,
        delivered_once: &mut bool,
    ) -> End {
        let mut resync = true;
        loop {
            if resync {
                resync = false;
                // The state goes out only when the hub has room for it; until then this is
                // the lag path: keep reading the channel, resync once there is room.
                let tx = self.tx;
                match tx.try_reserve() {
                    Ok(permit) => match self.resync(permit, stop, delivered_once).await {
                        Some(Ok(())) => {}
                        Some(Err(())) => return End::Retry,
                        None => return End::Stop,
                    },
                    Err(mpsc::error::TrySendError::Full(())) => self.lagged = true,
                    Err(mpsc::error::TrySendError::Closed(())) => return End::Stop,
                }
            }
            if until.borrow_and_update().is_some_and(|f| self.last >= f) {
                return End::Stop;
            }
            let quiet_at = self.behind.map(|(_, at)| at);
            tokio::select! {
                () = stop.cancelled() => return End::Stop,
                msg = self.stream.next() => match msg {
                    None => {
                        tracing::warn!(addr = %self.shared.addr, "presence layer: the subscriber connection was lost");
                        return End::Lost;
                    }
                    Some(msg) => match message::parse(msg.get_payload_bytes()) {
                        None => {
                            tracing::warn!("presence layer: an unreadable message on the channel; resyncing");
                            resync = true;
                        }
                        Some((seq, event)) => match self.event(seq, event) {
                            Taken::Next => {}
                            Taken::Gap => resync = true,
                            Taken::Closed => return End::Stop,
                        },
                    },
                },
                changed = self.heard.changed() => {
                    if changed.is_ok() {
                        if let Some(h) = *self.heard.borrow_and_update() {
                            if h.seq > self.last && self.behind.is_none() {
                                self.behind = Some((h.seq, h.at + self.shared.timings.quiet));
                            }
                        }
                    }
                }
                () = sleep_until(quiet_at) => {
                    tracing::warn!("presence layer: the subscriber is quiet behind the cluster; resubscribing");
                    return End::Lost;
                }
                permit = self.tx.reserve(), if self.lagged => match permit {
                    Ok(_) => resync = true,
                    Err(_) => return End::Stop,
                },
                _ = until.changed() => {}
            }
        }
    }

    /// Takes one event.
    fn event(&mut self, seq: u64, event: Event) -> Taken {
        if seq <= self.last {
            return Taken::Next; // already in the state a resync delivered
        }
        if self.lagged {
            // Dropped, gap or not: the resync that follows replaces it.
            self.reached(seq);
            return Taken::Next;
        }
        if seq != self.last + 1 {
            Stats::bump(&self.shared.stats.seq_gaps);
            tracing::warn!(
                expected = self.last + 1,
                got = seq,
                "presence layer: a gap in the cluster sequence; resyncing"
            );
            return Taken::Gap;
        }
        self.reached(seq);
        match &event {
            Event::SignedUp(_) => self.shared.adjust_registered(1),
            Event::Deleted(_) => self.shared.adjust_registered(-1),
            _ => {}
        }
        match self.tx.try_send(Delivery::Event(seq, event)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("presence layer: this node's hub fell behind; it will be resynced");
                self.lagged = true;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Taken::Closed,
        }
        Taken::Next
    }

    fn reached(&mut self, seq: u64) {
        self.last = seq;
        if self.behind.is_some_and(|(s, _)| seq >= s) {
            self.behind = None;
        }
    }

    /// Reads the state and delivers it through `permit`. `None` when stopped, `Err` when the
    /// state could not be read.
    async fn resync(
        &mut self,
        permit: mpsc::Permit<'_, Delivery>,
        stop: &CancellationToken,
        delivered_once: &mut bool,
    ) -> Option<Result<(), ()>> {
        let mut live_rx = self.shared.live.subscribe();
        let live = loop {
            if let Some(live) = live_rx.borrow_and_update().clone() {
                break live;
            }
            stop.run_until_cancelled(live_rx.changed()).await?.ok()?;
        };
        let mut conn = live.conn.clone();
        let state = match stop.run_until_cancelled(self.shared.scripts.state(&self.shared.keys, &mut conn)).await? {
            Ok(state) => state,
            Err(e) => {
                tracing::debug!("presence layer: reading the cluster state failed: {e}");
                if matches!(e, Fault::Redis(_)) {
                    self.shared.report(live.epoch, Trouble::Broken);
                }
                return Some(Err(()));
            }
        };
        self.last = state.seq;
        self.lagged = false;
        self.behind = None;
        self.heard.mark_unchanged();
        self.shared.set_registered(state.registered);
        if *delivered_once {
            Stats::bump(&self.shared.stats.resyncs);
        }
        *delivered_once = true;
        self.shared.subscribed.store(true, Relaxed);
        permit.send(Delivery::Resync(ClusterState {
            seq: state.seq,
            online: state.online,
            registered: state.registered,
        }));
        Some(Ok(()))
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
