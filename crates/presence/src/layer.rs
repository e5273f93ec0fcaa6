//! The seam between nodes: `trait Layer` (publish/subscribe of presence events, node heartbeats,
//! shared per-node presence) and [`MemoryLayer`], the in-process implementation used by the
//! single-binary default and by tests.
//!
//! Must not depend on the hub, HTTP or any client library: a Redis implementation lives in its own
//! crate and maps the trait onto Redis as follows (every operation O(1) in users and sockets):
//! - `publish`/`subscribe`: one pub/sub channel; the subscriber task forwards into a bounded
//!   `broadcast` ring, whose `Lagged` means "resync from the shared state";
//! - `heartbeat`: `SET node:{id} 1 PX ttl` plus `ZADD nodes <expiry> {id}`; `live_nodes` reads the
//!   zset, dropping expired members;
//! - `set_user_sockets`: `HSET presence:{node} user count` (`HDEL` at 0), the hash's TTL refreshed
//!   with each heartbeat, so a dead node's presence expires by itself;
//! - `withdraw`: `DEL presence:{node} node:{id}` + `ZREM`.
//!
//! Not wired into the [`crate::Hub`] yet: the hub is single-node for now.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::protocol::WireUser;
use crate::UserId;

/// A node's identity in the cluster (random per process start, so a restarted node starts clean).
pub type NodeId = Arc<str>;

/// What one node tells the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMessage {
    pub from: NodeId,
    pub event: LayerEvent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LayerEvent {
    /// The user's socket count on `from` went from 0 to 1 or more.
    Online {
        user: WireUser,
    },
    /// The user's socket count on `from` reached 0 (after the node's grace).
    Offline {
        user: WireUser,
        last_seen: i64,
    },
    SignedUp {
        user: WireUser,
    },
    UserDeleted {
        id: UserId,
    },
    /// Log out: close this session's sockets everywhere. Carries a digest of the session key,
    /// never the key itself.
    SessionClosed {
        session_digest: String,
    },
    /// Deactivation: close this user's sockets everywhere.
    UserClosed {
        id: UserId,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer unavailable: {0}")]
    Unavailable(String),
}

/// Pub/sub and shared presence between nodes. Methods are async and `Send`, so an implementation
/// over a network client fits.
pub trait Layer: Send + Sync + 'static {
    /// Sends a message to every subscriber, on every node (including this one).
    fn publish(&self, msg: LayerMessage) -> impl Future<Output = Result<(), LayerError>> + Send;

    /// A bounded stream of every message published from now on. Lag policy: when the receiver
    /// falls `capacity` messages behind it gets `Lagged`, and the node must resync from the
    /// shared presence (`live_nodes` + `node_presence`).
    fn subscribe(&self) -> impl Future<Output = Result<broadcast::Receiver<Arc<LayerMessage>>, LayerError>> + Send;

    /// Marks `node` alive for `ttl` from now. A node that stops calling this disappears from
    /// `live_nodes`, and its presence with it, within `ttl`.
    fn heartbeat(&self, node: &NodeId, ttl: Duration) -> impl Future<Output = Result<(), LayerError>> + Send;

    /// Nodes whose heartbeat has not lapsed.
    fn live_nodes(&self) -> impl Future<Output = Result<Vec<NodeId>, LayerError>> + Send;

    /// Records how many sockets `user` has on `node` (0 removes the entry).
    fn set_user_sockets(
        &self,
        node: &NodeId,
        user: UserId,
        sockets: u32,
    ) -> impl Future<Output = Result<(), LayerError>> + Send;

    /// The users with sockets on `node` (empty if the node is not live).
    fn node_presence(&self, node: &NodeId) -> impl Future<Output = Result<Vec<(UserId, u32)>, LayerError>> + Send;

    /// Removes `node`'s heartbeat and presence (graceful shutdown).
    fn withdraw(&self, node: &NodeId) -> impl Future<Output = Result<(), LayerError>> + Send;
}

#[derive(Default)]
struct MemState {
    /// Heartbeat expiry per node (tokio time, so paused-time tests work).
    nodes: HashMap<NodeId, tokio::time::Instant>,
    presence: HashMap<NodeId, HashMap<UserId, u32>>,
}

impl MemState {
    fn purge(&mut self, now: tokio::time::Instant) {
        let dead: Vec<NodeId> = self.nodes.iter().filter(|(_, &exp)| exp <= now).map(|(n, _)| n.clone()).collect();
        for n in dead {
            self.nodes.remove(&n);
            self.presence.remove(&n);
        }
    }
}

/// The in-process layer: every handle cloned from one `MemoryLayer` is a node of the same
/// "cluster". Cheap to clone.
#[derive(Clone)]
pub struct MemoryLayer {
    /// Bounded ring (`capacity`); lagging subscribers get `Lagged` (see [`Layer::subscribe`]).
    tx: broadcast::Sender<Arc<LayerMessage>>,
    state: Arc<Mutex<MemState>>,
}

impl MemoryLayer {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx, state: Arc::default() }
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemState) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.purge(tokio::time::Instant::now());
        f(&mut s)
    }
}

impl Default for MemoryLayer {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl Layer for MemoryLayer {
    async fn publish(&self, msg: LayerMessage) -> Result<(), LayerError> {
        let _ = self.tx.send(Arc::new(msg)); // no subscriber: nobody to tell
        Ok(())
    }

    async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<LayerMessage>>, LayerError> {
        Ok(self.tx.subscribe())
    }

    async fn heartbeat(&self, node: &NodeId, ttl: Duration) -> Result<(), LayerError> {
        let exp = tokio::time::Instant::now() + ttl;
        self.with(|s| {
            s.nodes.insert(node.clone(), exp);
        });
        Ok(())
    }

    async fn live_nodes(&self) -> Result<Vec<NodeId>, LayerError> {
        let mut nodes: Vec<NodeId> = self.with(|s| s.nodes.keys().cloned().collect());
        nodes.sort();
        Ok(nodes)
    }

    async fn set_user_sockets(&self, node: &NodeId, user: UserId, sockets: u32) -> Result<(), LayerError> {
        self.with(|s| {
            let p = s.presence.entry(node.clone()).or_default();
            if sockets == 0 {
                p.remove(&user);
            } else {
                p.insert(user, sockets);
            }
        });
        Ok(())
    }

    async fn node_presence(&self, node: &NodeId) -> Result<Vec<(UserId, u32)>, LayerError> {
        let mut v: Vec<(UserId, u32)> = self.with(|s| {
            if !s.nodes.contains_key(node) {
                return Vec::new();
            }
            s.presence.get(node).map(|p| p.iter().map(|(&u, &c)| (u, c)).collect()).unwrap_or_default()
        });
        v.sort_unstable();
        Ok(v)
    }

    async fn withdraw(&self, node: &NodeId) -> Result<(), LayerError> {
        self.with(|s| {
            s.nodes.remove(node);
            s.presence.remove(node);
        });
        Ok(())
    }
}

/// The suite every [`Layer`] must pass. `layer_a` and `layer_b` are two handles onto the same
/// backend (two nodes). Waits use deadlines, so it runs against a real server or paused time.
#[cfg(any(test, feature = "conformance"))]
pub mod conformance {
    use super::*;

    async fn eventually<F, Fut>(what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond().await {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn run<L: Layer>(layer_a: L, layer_b: L) {
        let a: NodeId = Arc::from("node-a");
        let b: NodeId = Arc::from("node-b");

        // Pub/sub reaches every node, in order.
        let mut rx_a = layer_a.subscribe().await.expect("subscribe a");
        let mut rx_b = layer_b.subscribe().await.expect("subscribe b");
        let user = WireUser { id: 7, username: "seven".into() };
        let m1 = LayerMessage { from: a.clone(), event: LayerEvent::Online { user: user.clone() } };
        let m2 = LayerMessage { from: a.clone(), event: LayerEvent::Offline { user, last_seen: 1_700_000_000_000 } };
        layer_a.publish(m1.clone()).await.expect("publish");
        layer_a.publish(m2.clone()).await.expect("publish");
        for rx in [&mut rx_a, &mut rx_b] {
            for want in [&m1, &m2] {
                let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("message in time")
                    .expect("message");
                assert_eq!(&*got, want);
            }
        }

        // Heartbeats and shared presence.
        layer_a.heartbeat(&a, Duration::from_secs(30)).await.expect("hb");
        layer_b.heartbeat(&b, Duration::from_millis(300)).await.expect("hb");
        layer_a.set_user_sockets(&a, 1, 2).await.expect("set");
        layer_b.set_user_sockets(&b, 2, 1).await.expect("set");
        layer_b.set_user_sockets(&b, 3, 1).await.expect("set");
        layer_b.set_user_sockets(&b, 3, 0).await.expect("set");
        assert_eq!(layer_b.node_presence(&a).await.expect("read"), vec![(1, 2)]);
        assert_eq!(layer_a.node_presence(&b).await.expect("read"), vec![(2, 1)]);
        let live = layer_a.live_nodes().await.expect("live");
        assert!(live.contains(&a) && live.contains(&b), "{live:?}");

        // A node that stops its heartbeat expires with its presence.
        eventually("node b expires", || async { !layer_a.live_nodes().await.expect("live").contains(&b) }).await;
        assert!(layer_a.node_presence(&b).await.expect("read").is_empty());
        assert_eq!(layer_b.node_presence(&a).await.expect("read"), vec![(1, 2)]);

        // Withdraw removes a live node at once.
        layer_a.withdraw(&a).await.expect("withdraw");
        assert!(!layer_b.live_nodes().await.expect("live").contains(&a));
        assert!(layer_b.node_presence(&a).await.expect("read").is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn memory_layer_conforms() {
        let layer = MemoryLayer::new(64);
        conformance::run(layer.clone(), layer).await;
    }

    #[tokio::test]
    async fn memory_layer_lag_is_reported() {
        let layer = MemoryLayer::new(2);
        let mut rx = layer.subscribe().await.unwrap();
        for i in 0..5 {
            layer.publish(LayerMessage { from: "n".into(), event: LayerEvent::UserDeleted { id: i } }).await.unwrap();
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(3))));
    }
}
