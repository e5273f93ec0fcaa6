//! Roster's presence core: who is online, the transitions between Online and Offline, one node's
//! hub that fans them out to sockets, the wire protocol, and the seam to other nodes.
//!
//! This crate must not depend on HTTP, HTML or SQL (no axum, sqlx, redis): the web server drives it
//! through [`Hub`] and [`Connection`], and a Redis [`layer::Layer`] lives in its own crate.
//!
//! # Layout
//!
//! - [`state`]: the pure state machine (per-user socket counts, grace period, transitions). No I/O,
//!   no tokio, time comes in as an argument: deterministic and property-tested.
//! - [`protocol`]: every wire message, in one place: the tutorial's `{"username","is_logged_in"}`
//!   frames and the `roster.v1` snapshot/diff frames, plus close codes.
//! - [`hub`]: one node's hub (tokio): the registry of local sockets, the grace timers, per-tick
//!   batching, serialize-once fan-out over a bounded broadcast ring, and the lag policy.
//! - [`layer`]: the `Layer` trait (publish/subscribe between nodes, node heartbeats, shared
//!   presence) and [`layer::MemoryLayer`], the in-process implementation.
//!
//! # Shape of a presence change
//!
//! A socket opens ([`Hub::connect`]) or closes (dropping its [`Connection`]) on the caller's
//! thread: the hub updates the [`state::PresenceState`] under a short lock and queues the
//! resulting transitions. The hub's task flushes queued transitions as one batch per tick,
//! serializes the batch once per protocol, and publishes it to a bounded broadcast ring that every
//! [`Connection`] reads from.

pub mod hub;
pub mod layer;
pub mod protocol;
pub mod state;

use std::sync::Arc;

pub use hub::{ConnectError, Connection, Hub, HubConfig, HubStats, Outgoing, PresenceObserver, Protocol, SessionKey};
pub use protocol::{Snapshot, ROSTER_V1};

/// A user's primary key, as stored by the server.
pub type UserId = i64;

/// A user as the presence core knows it: id and display name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserRef {
    pub id: UserId,
    pub username: Arc<str>,
}

impl UserRef {
    pub fn new(id: UserId, username: impl Into<Arc<str>>) -> Self {
        Self { id, username: username.into() }
    }
}
