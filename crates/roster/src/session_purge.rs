//! Expired sessions are deleted on a schedule (`--session-purge-interval`), and once at
//! start-up, so the `sessions` table does not grow forever.
//!
//! An expired session already logs nobody in (every lookup checks `expires_at`); this task only
//! removes the rows. It is one long-lived task that the application tracks and stops with its
//! shutdown token. Several nodes sharing a database each run it: the `DELETE` is idempotent.
//! It depends on the store only, not on HTTP or presence.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Purges at once, then every `every` (which must be more than zero), until `shutdown`.
/// Logs at info level how many sessions went, only when some did; a database error is a
/// warning and the next tick tries again.
pub async fn purge_expired_sessions(store: Store, every: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The first tick completes at once: the start-up purge.
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match store.purge_expired_sessions(crate::now_ms()).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "purged expired sessions"),
            Err(e) => tracing::warn!(error = %e, "could not purge expired sessions"),
        }
    }
}
