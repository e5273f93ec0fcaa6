//! The writer task: owns the command connection and this node's registration. It connects
//! (jittered backoff), registers a new incarnation, re-asserts the users the node holds (its
//! mirror), retires its older incarnations, publishes the [`Live`] the other tasks use, and then
//! applies the outbox in order, one script call per batch of changes (one per change when they
//! come one at a time).
//!
//! After a lost connection it reconnects and does it all again; after a fencing (its lease
//! lapsed: a paused process, a slow network) it re-registers on the same connection. Changes
//! taken but not applied go back to the outbox; presence ops are idempotent (a node's user is
//! simply in its SET or not) and account events carry op numbers, so a retry after a lost reply
//! applies nothing twice. Must not deliver anything: that is the subscriber's job.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{BATCH, CONNECT_TIMEOUT};
use crate::outbox::{Item, UserOp};
use crate::scripts::{AccountOp, Fault, Op};
use crate::shared::{lock, Live, Shared, Stats, Trouble};

/// Why serving stopped.
enum Exit {
    /// Shut down (crash, drop), or the leave's flush is done.
    Done,
    Trouble(Trouble),
}

/// Runs until `stop` is cancelled, or, once `finish` is cancelled, until the outbox is applied
/// (or Redis is out of reach).
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken, finish: CancellationToken) {
    let mut backoff = Backoff::default();
    let mut conn: Option<MultiplexedConnection> = None;
    // Incarnations of this node to withdraw once the current one has re-asserted its users.
    let mut retiring: Vec<Arc<str>> = Vec::new();
    let mut epoch = 0;
    let mut connected_once = false;
    loop {
        shared.live.send_replace(None);
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                *lock(&shared.writer_down) = Some("redis unreachable");
                let Some(c) = connect(&shared, &mut backoff, &stop, &finish).await else { return };
                if connected_once {
                    Stats::bump(&shared.stats.reconnects);
                }
                connected_once = true;
                conn.insert(c)
            }
        };
        *lock(&shared.writer_down) = Some("registering with redis");
        let inc = match stop.run_until_cancelled(recover(&shared, c, &mut retiring)).await {
            None => return,
            Some(Ok(inc)) => inc,
            Some(Err(fault)) => {
                tracing::warn!(addr = %shared.addr, "presence layer: registering failed: {fault}");
                if !matches!(fault, Fault::Fenced) {
                    conn = None;
                }
                if stop.run_until_cancelled(tokio::time::sleep(backoff.next())).await.is_none() {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        epoch += 1;
        shared.live.send_replace(Some(Live { conn: c.clone(), inc: inc.clone(), epoch }));
        *lock(&shared.writer_down) = None;
        tracing::info!(addr = %shared.addr, incarnation = %inc, "presence layer: registered with redis");
        match serve(&shared, c, &inc, epoch, &stop, &finish).await {
            Exit::Done => return,
            Exit::Trouble(Trouble::Fenced) => {
                Stats::bump(&shared.stats.fenced);
                tracing::warn!(incarnation = %inc, "presence layer: this node's lease lapsed; registering anew");
            }
            Exit::Trouble(Trouble::Broken) => {
                tracing::warn!(addr = %shared.addr, "presence layer: lost the redis connection");
                conn = None;
            }
        }
        retiring.push(inc);
    }
}

/// A new command connection, retried with backoff. `None` when stopped, or when leaving and
/// Redis is out of reach.
async fn connect(
    shared: &Shared,
    backoff: &mut Backoff,
    stop: &CancellationToken,
    finish: &CancellationToken,
) -> Option<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(shared.timings.response));
    for attempt in 0u64.. {
        let connecting = shared.client.get_multiplexed_async_connection_with_config(&config);
        match stop.run_until_cancelled(connecting).await? {
            Ok(c) => return Some(c),
            // Once per outage at warn, then quietly while it lasts.
            Err(e) if attempt == 0 => tracing::warn!(addr = %shared.addr, "presence layer: redis unreachable: {e}"),
            Err(e) => tracing::debug!(addr = %shared.addr, "presence layer: redis unreachable: {e}"),
        }
        if finish.is_cancelled() {
            return None;
        }
        stop.run_until_cancelled(tokio::time::sleep(backoff.next())).await?;
    }
    None
}

/// Registers a new incarnation, re-asserts the node's users under it, then withdraws the older
/// incarnations (their users this node still holds are counted by the new one first, so
/// nobody flaps; the Downs it has not sent yet are applied to them with their real times).
/// On failure the new incarnation joins `retiring` too.
async fn recover(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    retiring: &mut Vec<Arc<str>>,
) -> Result<Arc<str>, Fault> {
    let (s, t, k) = (&shared.scripts, &shared.timings, &shared.keys);
    let hint = shared.registered_hint().unwrap_or(0);
    let r = s.register(k, conn, &shared.nonce, t.lease_ms, &shared.node_name, hint).await?;
    let inc: Arc<str> = Arc::from(format!("{}.{}", r.counter, shared.nonce));
    let _ = r.now;
    let result = async {
        let users = lock(&shared.outbox).mirror();
        for chunk in users.chunks(BATCH) {
            let ops: Vec<Op> = chunk.iter().cloned().map(Op::Up).collect();
            s.presence(k, conn, &inc, &inc, t.grace_ms, &ops).await?;
        }
        let downs: Vec<Op> = lock(&shared.outbox)
            .pending_downs()
            .into_iter()
            .map(|(user, at, logout)| Op::Down { user, at, logout })
            .collect();
        while let Some(old) = retiring.first().cloned() {
            for chunk in downs.chunks(BATCH) {
                let a = s.presence(k, conn, &inc, &old, t.grace_ms, chunk).await?;
                if let Some(d) = a.deadline {
                    shared.sweep_at(a.now, d);
                }
            }
            loop {
                let a = s.retire(k, conn, &old, Some(&inc), t.grace_ms, BATCH).await?;
                if let Some(d) = a.deadline {
                    shared.sweep_at(a.now, d);
                }
                if a.left <= 0 {
                    break;
                }
            }
            retiring.remove(0);
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(inc),
        Err(e) => {
            retiring.push(inc);
            Err(e)
        }
    }
}

/// Applies the outbox as it fills, until stopped or in trouble.
async fn serve(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    inc: &str,
    epoch: u64,
    stop: &CancellationToken,
    finish: &CancellationToken,
) -> Exit {
    loop {
        if let Some(t) = shared.take_trouble(epoch) {
            return Exit::Trouble(t);
        }
        match stop.run_until_cancelled(drain(shared, conn, inc)).await {
            None => return Exit::Done,
            Some(Ok(())) => {}
            Some(Err(Fault::Fenced)) => return Exit::Trouble(Trouble::Fenced),
            Some(Err(e)) => {
                tracing::debug!("presence layer: a change failed: {e}");
                return Exit::Trouble(Trouble::Broken);
            }
        }
        if finish.is_cancelled() && lock(&shared.outbox).is_empty() {
            return Exit::Done;
        }
        tokio::select! {
            () = stop.cancelled() => return Exit::Done,
            () = finish.cancelled() => {}
            () = shared.attention.notified() => {}
            () = shared.outbox_wake.notified() => {}
        }
    }
}

/// Applies everything queued, a batch per script call; what fails goes back to the outbox.
async fn drain(shared: &Shared, conn: &mut MultiplexedConnection, inc: &str) -> Result<(), Fault> {
    loop {
        let items = lock(&shared.outbox).take(BATCH);
        if items.is_empty() {
            return Ok(());
        }
        let mut start = 0;
        while start < items.len() {
            let users = matches!(items[start], Item::User(..));
            let end = items[start..]
                .iter()
                .position(|i| matches!(i, Item::User(..)) != users)
                .map_or(items.len(), |n| start + n);
            let run = &items[start..end];
            let result = if users { presence(shared, conn, inc, run).await } else { accounts(shared, conn, run).await };
            if let Err(e) = result {
                lock(&shared.outbox).requeue(items[start..].to_vec());
                return Err(e);
            }
            start = end;
        }
    }
}

async fn presence(shared: &Shared, conn: &mut MultiplexedConnection, inc: &str, run: &[Item]) -> Result<(), Fault> {
    let mut ops = Vec::with_capacity(run.len());
    for item in run {
        let Item::User(user, pending) = item else { continue };
        match &pending.op {
            Some(UserOp::Up(u)) => ops.push(Op::Up(u.clone())),
            Some(UserOp::Down { at, logout }) => ops.push(Op::Down { user: *user, at: *at, logout: *logout }),
            None => {}
        }
        if pending.end_grace {
            ops.push(Op::EndGrace(*user));
        }
    }
    let a = shared.scripts.presence(&shared.keys, conn, inc, inc, shared.timings.grace_ms, &ops).await?;
    if let Some(d) = a.deadline {
        shared.sweep_at(a.now, d);
    }
    Ok(())
}

async fn accounts(shared: &Shared, conn: &mut MultiplexedConnection, run: &[Item]) -> Result<(), Fault> {
    let ops: Vec<AccountOp> = run
        .iter()
        .filter_map(|item| match item {
            Item::Account(n, change) => AccountOp::of(*n, change),
            Item::User(..) => None,
        })
        .collect();
    shared.scripts.account(&shared.keys, conn, &shared.nonce, &ops).await
}
