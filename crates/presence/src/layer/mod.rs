//! The seam between a node and the cluster: `trait Layer`, with [`MemoryCluster`] (the
//! in-process implementation: one node in the single binary, several in tests) and the
//! [`conformance`] suite every implementation must pass. The Redis implementation lives in its
//! own crate (`presence-redis`) and runs the same suite.
//!
//! Must not depend on the hub, HTTP, SQL or any client library; speaks only [`crate::event`].
//!
//! # Contract
//! - [`Layer::join`] starts the node's membership and returns its stream of [`Delivery`]s: first a
//!   `Resync` with the cluster's state, then events with consecutive sequence numbers, and a
//!   `Resync` again whenever events may have been lost. The stream is bounded; its lag policy:
//!   a node that does not keep up is resynced, never silently left with a gap.
//! - [`Layer::send`] hands over this node's [`Change`]s, in order, without waiting: an
//!   implementation queues them and applies them in order; after an outage it re-asserts this
//!   node's users. Of several state changes of one user (`Up`/`Down`) only the last need reach
//!   the cluster.
//! - The cluster decides transitions exactly once: a user is online while any node has them up,
//!   the grace after the last `Down` belongs to the user cluster-wide, a `logout` Down skips it,
//!   and a node that stops (crash, pause) has its users taken down when its lease lapses.
//! - [`Layer::leave`] hands this node's users to the grace (people whose pages reconnect to
//!   another node within it are never shown Offline) and withdraws the node. When no other node
//!   is left to carry the grace, the users go Offline at once and the leaving node is told (so
//!   their last-seen times can be saved).
//!
//! # Why generics, not `dyn`
//! `join`/`leave` return `impl Future`, so `Layer` is not object safe. The hub is not generic:
//! only its task is (`Hub::start<L: Layer>`), and the server picks the implementation once at
//! start-up. See docs/decisions.md.

mod memory;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

pub use crate::event::{Change, ClusterState, Delivery, Event};
pub use memory::{MemoryCluster, MemoryNode};

/// Why a layer could not do something.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer unavailable: {0}")]
    Unavailable(String),
    #[error("this node already joined")]
    AlreadyJoined,
}

/// The settings every layer shares.
#[derive(Clone, Debug)]
pub struct LayerConfig {
    /// How long a user stays online after their last socket in the cluster closes. May be zero.
    pub grace: Duration,
    /// How long a node that stops answering keeps its users online (crash detection).
    pub lease: Duration,
    /// Deliveries a node may have queued before it is resynced instead.
    pub queue: usize,
}

impl Default for LayerConfig {
    fn default() -> Self {
        Self { grace: Duration::from_secs(5), lease: Duration::from_secs(10), queue: 65_536 }
    }
}

/// A layer's health and counters (for `/readyz` and `/metrics`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerStatus {
    /// The layer can carry changes now. When false, `reason` says why (e.g. "redis unreachable").
    pub ready: bool,
    pub reason: Option<String>,
    /// Connections re-established after a loss.
    pub reconnects: u64,
    /// Resyncs delivered after the first (gaps, reconnects, lag).
    pub resyncs: u64,
    /// Gaps seen in the cluster sequence.
    pub seq_gaps: u64,
    /// Dead nodes (or expired graces) swept by this node.
    pub sweeps: u64,
    /// Times this node found itself fenced (its lease was swept) and re-registered.
    pub fenced: u64,
}

/// One node's membership of the cluster. See the module docs for the contract.
pub trait Layer: Send + Sync + 'static {
    /// Joins the cluster. `registered` is this node's count of accounts, used by the layer only if
    /// it has none yet. Returns the node's bounded stream of deliveries; may be called once.
    fn join(&self, registered: u64) -> Result<mpsc::Receiver<Delivery>, LayerError>;

    /// This node's changes, in order. Never waits (see the module docs).
    fn send(&self, changes: Vec<Change>);

    /// Leaves the cluster gracefully (see the module docs). The delivery stream ends after it.
    fn leave(&self) -> impl Future<Output = ()> + Send;

    /// Health and counters.
    fn status(&self) -> LayerStatus;
}
