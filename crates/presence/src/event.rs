//! The one vocabulary of presence, spoken between a node's hub and the cluster (the layer):
//! [`Change`] is what a node tells the cluster, [`Event`] what the cluster tells every node, in
//! order, as [`Delivery`]s numbered by the cluster's sequence.
//!
//! Plain data: no I/O, no tokio. Must not depend on the hub or on any layer implementation.
//!
//! # The division of work
//! A node counts its own sockets: it says [`Change::Up`] when a user's first socket opens on it and
//! [`Change::Down`] when the last one closes. The cluster (the layer) owns everything that spans
//! nodes: a user is Online while any node has them up, the grace period after the last `Down`
//! belongs to the user cluster-wide (a reload onto another node announces nothing), and a node
//! that dies has its users taken down when its lease lapses. Each real transition becomes exactly
//! one [`Event::Online`] or [`Event::Offline`] with the next cluster sequence number, delivered to
//! every node. Account events (sign-ups, deletions, log-outs, deactivations) travel the same way,
//! so every node's hub, list and session cache hear of them at once.

use std::fmt;
use std::sync::Arc;

use crate::{UserId, UserRef};

/// An opaque session identifier (what the server keys sessions by: the hash of the session
/// cookie, never the cookie itself). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(Arc<[u8]>);

impl SessionKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl From<&str> for SessionKey {
    fn from(s: &str) -> Self {
        Self(Arc::from(s.as_bytes()))
    }
}
impl From<String> for SessionKey {
    fn from(s: String) -> Self {
        Self(Arc::from(s.into_bytes()))
    }
}
impl From<&[u8]> for SessionKey {
    fn from(s: &[u8]) -> Self {
        Self(Arc::from(s))
    }
}
impl From<Vec<u8>> for SessionKey {
    fn from(s: Vec<u8>) -> Self {
        Self(Arc::from(s))
    }
}

/// What one node tells the cluster. Sent in order; see [`crate::layer::Layer::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The user's first socket on this node opened.
    Up(UserRef),
    /// The user's last socket on this node closed at `at` (unix ms). `logout`: it was closed by a
    /// log out (or an account change), so if no other node has the user, `Offline` goes out at
    /// once instead of after the grace.
    Down { user: UserId, at: i64, logout: bool },
    /// A session of the user was logged out: if the user has no socket on any node (they are only
    /// online through the grace), the grace ends now and `Offline` goes out.
    EndGrace(UserId),
    /// A new account.
    SignedUp(UserRef),
    /// An account was deleted: every node closes its sockets and lists it as deleted.
    Deleted(UserId),
    /// A session ended (log out, password change): every node closes its sockets.
    CloseSession(SessionKey),
    /// An account was deactivated: every node closes its sockets.
    CloseUser(UserId),
}

/// What the cluster tells every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The user came online (their first socket in the cluster, outside any grace).
    Online(UserRef),
    /// The user went offline; `last_seen` (unix ms) is when their last socket closed.
    Offline(UserRef, i64),
    SignedUp(UserRef),
    Deleted(UserId),
    SessionClosed(SessionKey),
    UserClosed(UserId),
}

/// The cluster's presence as of `seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub seq: u64,
    /// Every user online in the cluster (sockets open on some node, or within the grace).
    pub online: Vec<UserRef>,
    /// The number of registered accounts, if the layer keeps it.
    pub registered: Option<u64>,
}

/// One item of a node's stream from the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The whole state: the first delivery after joining, and again after anything that may have
    /// lost events (a sequence gap, a reconnect, a node that fell behind). The node replaces its
    /// replica with it (and tells its clients the difference); events after it continue at
    /// `seq + 1`.
    Resync(ClusterState),
    /// One event with its cluster sequence number: consecutive after the last delivery.
    Event(u64, Event),
}
