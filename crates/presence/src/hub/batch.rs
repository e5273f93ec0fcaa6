//! Batches and the published snapshot: the events of one flush serialized once per protocol
//! (JSON inside ready-made WebSocket frames), and the roster.v1 snapshot as of the last batch,
//! which the diffs after it apply to.
//!
//! No locks and no tokio: the hub calls these under its own locks. Knows nothing of sockets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::ring::{Progress, RingItem};
use super::views::SearchKey;
use crate::event::Event;
use crate::protocol::{self, Diff, OfflineUser, Snapshot};
use crate::{UserId, UserRef};

/// One flushed batch, serialized once for each protocol and shared by every socket of a ring.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) seq: u64,
    /// The JSON texts of this batch's tutorial frames, in order (slices of `tutorial_wire`).
    pub(super) tutorial: Box<[Bytes]>,
    /// The same frames as WebSocket frames, back to back: what every tutorial socket writes.
    pub(super) tutorial_wire: Bytes,
    /// The roster.v1 diff's JSON text (a slice of `v1_wire`).
    pub(super) v1: Bytes,
    /// The roster.v1 diff as one WebSocket frame.
    pub(super) v1_wire: Bytes,
    /// How far the sockets have got with this flush: the hub paces the next one on it.
    pub(super) progress: Arc<Progress>,
}

impl RingItem for Batch {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn progress(&self) -> &Progress {
        &self.progress
    }
}

/// `json` as one WebSocket text frame, and the JSON inside it (a slice of the same buffer).
pub(super) fn framed(json: &[u8]) -> (Bytes, Bytes) {
    let mut out = Vec::with_capacity(json.len() + 10);
    protocol::write_ws_frame(&mut out, protocol::OPCODE_TEXT, json);
    let wire = Bytes::from(out);
    let text = wire.slice(wire.len() - json.len()..);
    (wire, text)
}

/// What the last flushed batch says: the roster.v1 snapshot at `seq`. Diffs with a higher seq
/// apply on top of it.
pub(super) struct Published {
    pub(super) seq: u64,
    /// Online users sorted by (search key, id): the order of the list's online part.
    online: BTreeMap<(Box<str>, UserId), UserRef>,
    key: SearchKey,
    pub(super) registered: u64,
    /// The snapshot of this seq as (JSON text, WebSocket frame), built on first demand.
    frame: Option<(Bytes, Bytes)>,
    /// `online` as a shared slice, built on first demand (list pages read it per request).
    sorted: Option<Arc<[UserRef]>>,
}

impl Published {
    pub(super) fn new(registered: u64, key: SearchKey) -> Published {
        Published { seq: 0, online: BTreeMap::new(), key, registered, frame: None, sorted: None }
    }

    fn sort_key(&self, u: &UserRef) -> (Box<str>, UserId) {
        ((self.key)(&u.username).into_boxed_str(), u.id)
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            seq: self.seq,
            online: self.online.values().cloned().collect(),
            online_count: self.online.len() as u64,
            registered_count: self.registered,
        }
    }

    /// The snapshot of this seq: (seq, JSON text, WebSocket frame), cached until the next batch.
    pub(super) fn snapshot_frame(&mut self) -> (u64, Bytes, Bytes) {
        if let Some((text, wire)) = &self.frame {
            return (self.seq, text.clone(), wire.clone());
        }
        let (wire, text) = framed(&protocol::to_bytes(&self.snapshot()));
        self.frame = Some((text.clone(), wire.clone()));
        (self.seq, text, wire)
    }

    /// The online users, sorted; O(1) between batches, O(online) once after one.
    pub(super) fn sorted(&mut self) -> Arc<[UserRef]> {
        if let Some(sorted) = &self.sorted {
            return sorted.clone();
        }
        let sorted: Arc<[UserRef]> = self.online.values().cloned().collect();
        self.sorted = Some(sorted.clone());
        sorted
    }

    /// Encodes `events` as the next batch and moves the snapshot to it. `online_count` and
    /// `registered` are the counts the diff carries. Returns the batch's frames and the users
    /// that went offline in it.
    pub(super) fn encode(&mut self, events: &[Event], online_count: u64, registered: u64) -> Encoded {
        let mut buf = Vec::new();
        let mut json = Vec::new();
        let mut spans = Vec::new();
        // Per user, their final state in this batch, in first-appearance order.
        let mut order: Vec<(UserRef, Option<i64>)> = Vec::new();
        let mut index: HashMap<UserId, usize> = HashMap::new();
        let mut signed_up = Vec::new();
        let mut deleted = Vec::new();
        for e in events {
            let (user, last_seen) = match e {
                Event::Online(u) => (u, None),
                Event::Offline(u, at) => (u, Some(*at)),
                Event::SignedUp(u) => {
                    signed_up.push(u.clone());
                    continue;
                }
                Event::Deleted(id) => {
                    deleted.push(*id);
                    continue;
                }
                Event::SessionClosed(_) | Event::UserClosed(_) => continue,
            };
            json.clear();
            protocol::write_tutorial(&mut json, &user.username, last_seen.is_none());
            protocol::write_ws_frame(&mut buf, protocol::OPCODE_TEXT, &json);
            spans.push((buf.len() - json.len(), buf.len()));
            match index.get(&user.id) {
                Some(&i) => order[i] = (user.clone(), last_seen),
                None => {
                    index.insert(user.id, order.len());
                    order.push((user.clone(), last_seen));
                }
            }
        }
        let tutorial_wire = Bytes::from(buf);
        let tutorial: Box<[Bytes]> = spans.iter().map(|&(start, end)| tutorial_wire.slice(start..end)).collect();

        let seq = self.seq + 1;
        let mut diff = Diff { seq, signed_up, deleted, online_count, registered_count: registered, ..Diff::default() };
        for (u, last_seen) in order {
            match last_seen {
                None => {
                    self.online.insert(self.sort_key(&u), u.clone());
                    diff.online.push(u);
                }
                Some(last_seen) => {
                    self.online.remove(&self.sort_key(&u));
                    diff.offline.push(OfflineUser { id: u.id, username: u.username.clone(), last_seen });
                }
            }
        }
        self.seq = seq;
        self.registered = registered;
        self.frame = None;
        self.sorted = None;
        let (v1_wire, v1) = framed(&protocol::to_bytes(&diff));
        Encoded { seq, tutorial, tutorial_wire, v1, v1_wire }
    }
}

/// A batch's frames, before it is given to a ring.
pub(super) struct Encoded {
    pub(super) seq: u64,
    pub(super) tutorial: Box<[Bytes]>,
    pub(super) tutorial_wire: Bytes,
    pub(super) v1: Bytes,
    pub(super) v1_wire: Bytes,
}

impl Encoded {
    pub(super) fn into_batch(self, progress: Arc<Progress>) -> Batch {
        Batch {
            seq: self.seq,
            tutorial: self.tutorial,
            tutorial_wire: self.tutorial_wire,
            v1: self.v1,
            v1_wire: self.v1_wire,
            progress,
        }
    }
}
