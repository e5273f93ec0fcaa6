//! The hub's public vocabulary: settings, protocols, what a socket loop is told, counters, and
//! the observer the server plugs in. Plain types; no locking, no tasks.

use crate::event::SessionKey;
use crate::protocol::{close_reason, ROSTER_V1, ROSTER_V2};
use crate::UserId;

/// Settings of a [`crate::Hub`]. (The grace period belongs to the cluster: see
/// [`crate::layer::LayerConfig`].)
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Batching period: changes within one tick after a flush go out together in the next batch
    /// (under load, batches are also paced by their fan-out; see the hub's module docs).
    pub tick: std::time::Duration,
    /// Sockets one user may hold open on this node; more are refused with
    /// [`ConnectError::TooManySockets`].
    pub max_sockets_per_user: usize,
    /// Batches a socket may fall behind before it is resynced (roster.v1) or closed (tutorial).
    /// Each batch is one roster.v1 frame (or the tutorial frames of one tick). The ring holding
    /// them is shared by all sockets, so this is also the bound on what a stalled socket pins.
    /// A live view group's ring holds at most [`crate::hub::VIEW_RING`] of them (a view's
    /// snapshot is small, so a lagging view socket is resynced sooner).
    pub queue_capacity: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self { tick: std::time::Duration::from_millis(100), max_sockets_per_user: 32, queue_capacity: 1024 }
    }
}

/// Told what the server must keep in step with presence. Called from the hub's task: must not
/// block (hand slow work, such as a database write, to another task).
pub trait PresenceObserver: Send + Sync + 'static {
    /// Users went offline (`last_seen` in unix ms), once per batch of them, on every node.
    fn went_offline(&self, users: &[(UserId, i64)]);

    /// Sessions ended and accounts closed somewhere in the cluster (log out, password change,
    /// deactivation, deletion): forget any cached copy of them. Called before their sockets on
    /// this node are told to close.
    fn sessions_ended(&self, _sessions: &[SessionKey], _users: &[UserId]) {}
}

/// An observer that ignores everything (tests, tools).
impl PresenceObserver for () {
    fn went_offline(&self, _users: &[(UserId, i64)]) {}
}

/// Which frames a socket receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The tutorial's `{"username","is_logged_in"}` frames (no subprotocol asked).
    Tutorial,
    /// Snapshot then diffs of the whole online set (subprotocol [`ROSTER_V1`]).
    RosterV1,
    /// Live views: a window of the list, its snapshot then operations (subprotocol
    /// [`ROSTER_V2`]; see [`crate::protocol::views`]).
    RosterV2,
}

impl Protocol {
    /// Picks the protocol from the subprotocols a client offered (`Sec-WebSocket-Protocol`): the
    /// newest one offered.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Protocol {
        let mut picked = Protocol::Tutorial;
        for p in offered {
            match p.trim() {
                ROSTER_V2 => return Protocol::RosterV2,
                ROSTER_V1 => picked = Protocol::RosterV1,
                _ => {}
            }
        }
        picked
    }

    /// The subprotocol to answer with, if any.
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            Protocol::Tutorial => None,
            Protocol::RosterV1 => Some(ROSTER_V1),
            Protocol::RosterV2 => Some(ROSTER_V2),
        }
    }
}

/// The session a socket was opened with: its key and when it ends (unix ms), if it does. The
/// hub closes the session's sockets (4001) when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub key: SessionKey,
    pub expires_at: Option<i64>,
}

impl From<SessionKey> for Session {
    fn from(key: SessionKey) -> Self {
        Session { key, expires_at: None }
    }
}

/// Why [`crate::Hub::connect`] refused a socket.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    #[error("too many sockets open for this user (limit {limit})")]
    TooManySockets { limit: usize },
    #[error("the session has expired")]
    SessionExpired,
    #[error("the presence hub is shutting down")]
    ShuttingDown,
}

/// Why [`crate::Connection::watch`] refused to change windows (nothing changed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    #[error("only roster.v2 sockets watch windows")]
    NotAView,
    #[error("too many view changes; wait a moment")]
    TooFast,
}

/// What a socket loop must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Send this: the UTF-8 JSON text of one frame or, after
    /// [`crate::Connection::websocket_frames`], complete WebSocket frames to write as they are.
    Frame(bytes::Bytes),
    /// Close the socket with this code and reason, then drop the [`crate::Connection`].
    Close { code: u16, reason: &'static str },
}

pub(crate) fn close(code: u16) -> Outgoing {
    Outgoing::Close { code, reason: close_reason(code) }
}

/// Counters for tests and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    pub sockets_open: usize,
    pub users_online: usize,
    pub registered_count: u64,
    /// Frames handed to socket loops by [`crate::Connection::next`] / `try_next`.
    pub frames_sent: u64,
    /// Batches flushed (each one roster.v1 diff).
    pub batches_sent: u64,
    /// roster.v1 connections that fell behind and were resynced with a snapshot.
    pub lagging_resyncs: u64,
    /// Tutorial connections that fell behind and were closed with 1013.
    pub lagging_closes: u64,
    /// Largest backlog any socket had (batches held in the ring); always <= `queue_capacity`.
    pub max_queue_depth: usize,
    pub queue_capacity: usize,
    /// Resyncs from the cluster (a gap or a reconnect of the layer) applied by this node.
    pub cluster_resyncs: u64,
    /// Live views: distinct windows watched (one group, one ring each).
    pub view_groups: usize,
    /// Accounts in the directory the views are computed from.
    pub directory_accounts: usize,
}
