//! The upkeep task: renews this node's lease every third of the lease (a lapsed one is reported
//! as a fencing), tells the subscriber which sequence the cluster has reached, and runs the
//! sweep when something is due: a lapsed lease of any node, or a grace deadline (learned from
//! this node's own changes, from heartbeats and from earlier sweeps). Every node sweeps; the
//! script is atomic, so each Offline is published once whoever runs it.
//!
//! Uses the writer's [`Live`]; never registers or reconnects itself.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::BATCH;
use crate::scripts::Fault;
use crate::shared::{Heard, Live, Shared, Stats, Trouble};

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut live_rx = shared.live.subscribe();
    let mut paused_rx = shared.paused.subscribe();
    let mut next_beat = Instant::now() + shared.timings.heartbeat;
    loop {
        let live = live_rx.borrow_and_update().clone();
        let paused = *paused_rx.borrow_and_update();
        let Some(live) = live.filter(|_| !paused) else {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = live_rx.changed() => {}
                _ = paused_rx.changed() => {}
            }
            continue;
        };
        let wake = shared.next_sweep().map_or(next_beat, |s| s.min(next_beat));
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
            () = shared.sweep_wake.notified() => continue,
            _ = live_rx.changed() => continue,
            _ = paused_rx.changed() => continue,
        }
        let _busy = shared.upkeep_busy.lock().await;
        if *paused_rx.borrow() {
            continue;
        }
        let now = Instant::now();
        if now >= next_beat {
            next_beat = now + shared.timings.heartbeat;
            if stop.run_until_cancelled(beat(&shared, &live)).await.is_none() {
                return;
            }
        }
        if shared.take_due_sweep(Instant::now()) && stop.run_until_cancelled(sweep(&shared, &live)).await.is_none() {
            return;
        }
    }
}

async fn beat(shared: &Shared, live: &Live) {
    let mut conn = live.conn.clone();
    match shared.scripts.heartbeat(&shared.keys, &mut conn, &live.inc, shared.timings.lease_ms).await {
        Ok(hb) => {
            if hb.fenced {
                shared.report(live.epoch, Trouble::Fenced);
            }
            shared.heard.send_replace(Some(Heard { seq: hb.seq, at: Instant::now() }));
            if let Some(d) = hb.deadline {
                shared.sweep_at(hb.now, d);
            }
        }
        Err(e) => {
            tracing::debug!("presence layer: heartbeat failed: {e}");
            shared.report(live.epoch, Trouble::Broken);
        }
    }
}

/// Sweeps until nothing more is due now, then plans the next sweep.
pub(crate) async fn sweep(shared: &Shared, live: &Live) {
    let mut conn = live.conn.clone();
    let mut lapsed: Option<String> = None;
    loop {
        match shared.scripts.sweep(&shared.keys, &mut conn, lapsed.as_deref(), BATCH, false).await {
            Ok(s) => {
                if s.removed > 0 || s.offline > 0 {
                    Stats::bump(&shared.stats.sweeps);
                    tracing::debug!(nodes = s.removed, offline = s.offline, "presence layer: swept");
                }
                if !s.more {
                    if let Some(d) = s.deadline {
                        shared.sweep_at(s.now, d);
                    }
                    return;
                }
                lapsed = s.next_lapsed;
            }
            Err(Fault::Fenced) => return,
            Err(e) => {
                tracing::debug!("presence layer: sweep failed: {e}");
                shared.report(live.epoch, Trouble::Broken);
                return;
            }
        }
    }
}
