//! Roster's presence core: who is online, the transitions between Online and Offline, one node's
//! hub that fans them out to sockets, the wire protocol, and the seam to the cluster.
//!
//! This crate must not depend on HTTP, HTML or SQL (no axum, sqlx, redis): the web server drives it
//! through [`Hub`] and [`Connection`], and the Redis [`layer::Layer`] lives in its own crate.
//!
//! # Layout
//!
//! - [`event`]: the one vocabulary between a node and the cluster: [`event::Change`] (a node's
//!   sockets came up or went down, account events), [`event::Event`] (what the cluster decided,
//!   numbered) and [`event::Delivery`].
//! - [`state`]: the pure state machine (per-user counts, grace period, transitions). No I/O, no
//!   tokio, time comes in as an argument: deterministic and property-tested. The in-process layer
//!   runs the cluster's rules on it.
//! - [`protocol`]: every wire message, in one place: the tutorial's `{"username","is_logged_in"}`
//!   frames, the `roster.v1` snapshot/diff frames, close codes, and ([`protocol::views`]) the
//!   `roster.v2` live views.
//! - [`hub`]: one node's hub (tokio): the registry of local sockets, the replica of the cluster,
//!   per-tick batching, serialize-once fan-out over bounded broadcast rings, the lag policy, and
//!   live views (a directory of every account, the list order, one group per watched window).
//! - [`client`]: the client side of the tutorial and `roster.v1` protocols (frames, the `seq`
//!   rule, a client's copy of the online list), shared by the load generator, the protocol
//!   property tests and the fuzz targets.
//! - [`layer`]: the `Layer` trait (a node's membership of the cluster), [`layer::MemoryCluster`]
//!   (in-process) and the conformance suite every implementation passes.
//!
//! # Shape of a presence change
//!
//! A socket opens ([`Hub::connect`]) or closes (dropping its [`Connection`]). The hub's registry
//! counts it; a user's first (or last) socket on this node becomes a [`event::Change`] for the
//! layer. The layer decides the cluster-wide transition (other nodes, the grace) and delivers it
//! as a numbered [`event::Event`] to every node's hub, which batches events per tick, serializes
//! each batch once per protocol, and publishes it to a bounded broadcast ring that every
//! [`Connection`] reads from.

pub mod client;
pub mod event;
pub mod hub;
pub mod layer;
pub mod protocol;
pub mod state;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use event::SessionKey;
pub use hub::{
    AccountList, CloseRequest, ConnectError, Connection, Hub, HubConfig, HubStats, Outgoing, PresenceObserver,
    Protocol, Session, WatchError,
};
pub use protocol::views::{ViewRequest, Window};
pub use protocol::{Snapshot, ROSTER_V1, ROSTER_V2};

/// A user's primary key, as stored by the server.
pub type UserId = i64;

/// A user as the presence core knows it, and as the wire shows it: id and display name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserRef {
    pub id: UserId,
    pub username: Arc<str>,
}

impl UserRef {
    pub fn new(id: UserId, username: impl Into<Arc<str>>) -> Self {
        Self { id, username: username.into() }
    }
}
