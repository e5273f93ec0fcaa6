//! The hub task: hands this node's changes to the layer, applies the cluster's deliveries, closes
//! expired sessions, and flushes batches (and live view groups whose interval has passed) on the
//! pacing's schedule, until shutdown. At shutdown it tells every socket to close (1001), leaves
//! the cluster, and hears out what the leave caused.
//!
//! Generic over the [`Layer`] (the hub itself is not): see docs/decisions.md.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::pacing::Pacing;
use super::{lock, Inner};
use crate::event::Delivery;
use crate::layer::Layer;
use crate::protocol::{CLOSE_GOING_AWAY, CLOSE_LOGGED_OUT};

/// Deliveries applied in one go before the task looks at its other work.
const DELIVERIES_PER_ROUND: usize = 4096;
/// At shutdown, how long the task waits for the layer's last deliveries (the Offline of this
/// node's users when it was the last one, so their last-seen times get saved).
const LEAVE_DRAIN: Duration = Duration::from_secs(5);

pub(super) async fn run<L: Layer>(inner: Arc<Inner>, layer: Arc<L>, mut deliveries: mpsc::Receiver<Delivery>) {
    let tick = inner.config.tick;
    let mut last: Option<Pacing> = None;
    let mut inbox: Vec<Delivery> = Vec::new();
    let mut stream_open = true;
    loop {
        // This node's changes out first: expired sessions, then whatever the sockets did.
        let (changes, next_expiry) = {
            let now_ms = inner.now_ms();
            let mut core = lock(&inner.core);
            let mut expired = Vec::new();
            core.registry.expire(now_ms, CLOSE_LOGGED_OUT, &mut expired);
            core.outbox.append(&mut expired);
            (std::mem::take(&mut core.outbox), core.registry.next_expiry())
        };
        if !changes.is_empty() {
            layer.send(changes);
        }

        // Then what the cluster says (bounded per round, so flushes are never starved).
        while inbox.len() < DELIVERIES_PER_ROUND {
            match deliveries.try_recv() {
                Ok(d) => inbox.push(d),
                Err(_) => break,
            }
        }
        if !inbox.is_empty() {
            inner.deliver(inbox.drain(..));
        }

        let now = Instant::now();
        let mut wake_at = next_expiry.map(|ms| Instant::from_std(inner.clock.instant_of(ms)));
        // Live view groups that waited for their interval flush like pending events.
        let views_due = inner.views_due();
        let has_pending = {
            let core = lock(&inner.core);
            !core.pending.is_empty() || core.counts_changed
        } || views_due.is_some_and(|due| due <= now);
        if let Some(due) = views_due.filter(|due| *due > now) {
            wake_at = Some(wake_at.map_or(due, |w| w.min(due)));
        }
        if has_pending {
            match last.as_ref().map(|p| p.next_flush(&inner.clock, tick)) {
                Some(ready) if ready > now => wake_at = Some(wake_at.map_or(ready, |w| w.min(ready))),
                _ => {
                    if let Some(progress) = inner.flush() {
                        last = Some(Pacing { at: now, progress });
                    }
                    // (A flush leaves no group due: those it did not send wait for a later time.)
                    continue;
                }
            }
        }
        tokio::select! {
            () = inner.shutdown.cancelled() => break,
            () = inner.wake.notified() => {}
            d = deliveries.recv(), if stream_open => match d {
                Some(d) => inbox.push(d),
                None => {
                    tracing::error!("the presence layer ended its stream; this node hears no more of the cluster");
                    stream_open = false;
                }
            },
            () = sleep_until(wake_at) => {}
        }
    }

    // Every socket is told here, through its own notify: connections do not each wait on the
    // shutdown token (one more registration per socket per batch on a lock they all share).
    lock(&inner.core).registry.request_close_all(CLOSE_GOING_AWAY);
    layer.leave().await;
    let hear_out = async {
        while let Some(d) = deliveries.recv().await {
            inner.deliver([d]);
        }
    };
    if tokio::time::timeout(LEAVE_DRAIN, hear_out).await.is_err() {
        tracing::warn!("the presence layer did not end its stream within {LEAVE_DRAIN:?} of leaving");
    }
    tracing::debug!("presence hub stopped");
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
