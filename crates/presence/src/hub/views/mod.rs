//! Live views (`roster.v2`): windows of the list order, one group (and one ring) per distinct
//! window, and per batch one encoded frame per group that needs one.
//!
//! Pure engine under the hub's `views` lock: no tokio beyond the rings it keeps, no I/O. The hub
//! feeds it the events of each batch ([`Views::apply`]) and sends the frames it returns; sockets
//! join and leave groups ([`Views::join`], [`Views::leave`]) and read snapshots
//! ([`Views::snapshot`]). Knows nothing of sockets, HTTP or SQL.
//!
//! # Shape
//! - The [`Directory`] holds every account (loaded once at start-up, then kept current by the
//!   batch's events: Online, Offline with last seen, SignedUp, Deleted).
//! - A [`Filter`] per distinct search key (`""` is everyone, always present; others live while a
//!   group uses them) keeps its matching users in list order in an [`OrderedList`] (O(log n)
//!   insert, remove, rank and position lookup).
//! - A group per distinct window (search key, offset, limit) keeps the window's content as of its
//!   last frame, its stream's seq, its ring and a cached snapshot.
//!
//! # Cost of a batch
//! Each changed user costs O(log n) per filter it matches (the filters of the prefixes of its
//! key: found by O(key length) hash lookups). Then every group costs O(1) to check: its window is
//! recomputed only if a changed rank is at or before its last entry (or the window is not full),
//! at O(log n + limit), and diffed against its old content in O(limit) by a merge (both are
//! sorted by the same order, so entries that kept their rank keep their relative order). A group
//! whose window did not change gets at most a counts update. So a change costs in proportion to
//! the groups it touches, never to the watchers: every socket of a group shares its one frame.
//!
//! # Pacing per group
//! A group sends at most one frame per `interval` (the hub uses 5 ticks): a change after a quiet
//! interval goes out with the batch that carries it, and whatever else changes the window within
//! the interval after that frame waits and goes out as one frame (the operations from the window
//! as last sent to the window then: at most its size). So while thousands of people come online
//! at once (a restart, a storm), every page gets a few frames a second, not one per batch.

mod directory;
mod order;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::broadcast;

pub use directory::{lowercase_key, AccountList, SearchKey};

use super::ring::{Progress, Ring, RingItem};
use crate::event::Event;
use crate::protocol::views::{diff_json, snapshot_body, EntryRef, OpRef, ViewCounts, Window};
use directory::{Directory, Moved, Rank};
use order::OrderedList;

/// A window as the hub keys its groups: the normalised search key, offset and limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct WindowKey {
    pub(super) q: Arc<str>,
    pub(super) offset: u32,
    pub(super) limit: u32,
}

/// The part of a group its sockets hold: receiving needs no lock.
pub(super) struct GroupShared {
    pub(super) key: WindowKey,
    pub(super) ring: Ring<GroupFrame>,
}

/// One frame of a group's stream, encoded once for all its sockets.
#[derive(Debug)]
pub(super) struct GroupFrame {
    pub(super) seq: u64,
    /// The JSON text (a slice of `wire`).
    pub(super) text: Bytes,
    /// The same as one WebSocket frame.
    pub(super) wire: Bytes,
    pub(super) progress: Arc<Progress>,
}

impl RingItem for GroupFrame {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn progress(&self) -> &Progress {
        &self.progress
    }
}

/// A group's frame for this batch, before the hub sends it.
pub(super) struct Outgoing {
    pub(super) group: Arc<GroupShared>,
    pub(super) seq: u64,
    pub(super) json: Vec<u8>,
}

/// The users matching one search key, in list order.
struct Filter {
    order: OrderedList<Rank>,
    /// Groups using this filter.
    groups: usize,
    /// The smallest rank that changed in this batch (old or new place of a user).
    touched: Option<Rank>,
}

impl Filter {
    fn new(order: OrderedList<Rank>) -> Filter {
        Filter { order, groups: 0, touched: None }
    }

    fn apply(&mut self, moved: &Moved) {
        for rank in [&moved.old, &moved.new].into_iter().flatten() {
            if self.touched.as_ref().is_none_or(|t| rank < t) {
                self.touched = Some(rank.clone());
            }
        }
        if let Some(old) = &moved.old {
            self.order.remove(old);
        }
        if let Some(new) = &moved.new {
            self.order.insert(new.clone());
        }
    }

    /// The window's content now: O(log n + limit).
    fn window(&self, key: &WindowKey) -> Vec<Rank> {
        self.order.iter_from(key.offset as usize).take(key.limit as usize).cloned().collect()
    }
}

struct Group {
    shared: Arc<GroupShared>,
    /// The window as of `seq`.
    content: Vec<Rank>,
    seq: u64,
    /// The counts as of `seq`.
    counts: ViewCounts,
    /// The snapshot body as of `seq`, built on first demand.
    snapshot: Option<Bytes>,
    sockets: usize,
    /// When its last frame went out.
    sent_at: Option<Instant>,
    /// A change may have reached the window since `seq`: recompute it when the group is due.
    stale: bool,
    /// Something changed since `seq` and waits for the interval to pass.
    waiting: bool,
}

/// Every window watched on this node. See the module docs.
pub(super) struct Views {
    dir: Directory,
    filters: HashMap<Arc<str>, Filter>,
    groups: HashMap<WindowKey, Group>,
    ring_capacity: usize,
    /// Least time between two frames of a group.
    interval: Duration,
    /// When the first waiting group is due.
    next_due: Option<Instant>,
    online: u64,
    registered: u64,
}

impl Views {
    /// The directory of `accounts` (O(accounts log accounts), once). Group rings hold
    /// `ring_capacity` frames; a group sends at most one frame per `interval`.
    pub(super) fn new(accounts: AccountList, ring_capacity: usize, interval: Duration) -> Views {
        let registered = accounts.registered();
        let (dir, ranks) = Directory::new(accounts);
        let mut filters = HashMap::new();
        filters.insert(Arc::from(""), Filter::new(OrderedList::from_sorted(ranks)));
        Views {
            dir,
            filters,
            groups: HashMap::new(),
            ring_capacity: ring_capacity.max(1),
            interval,
            next_due: None,
            online: 0,
            registered,
        }
    }

    /// When a group that waits for its interval is due (then [`Views::apply`] with no events
    /// sends it).
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.next_due
    }

    /// How the hub keys `window`: its search text normalised with the server's search key.
    pub(super) fn key(&self, window: &Window) -> WindowKey {
        WindowKey { q: Arc::from(self.dir.key_of(&window.q)), offset: window.offset, limit: window.limit }
    }

    /// Accounts in the directory.
    pub(super) fn accounts(&self) -> usize {
        self.dir.len()
    }

    /// Groups (distinct windows watched).
    pub(super) fn groups(&self) -> usize {
        self.groups.len()
    }

    /// A socket joins the group of `key` (made if needed: O(log n + limit), plus O(matches) for
    /// a search key no group uses yet). Returns the group, a receiver of its ring (subscribed
    /// before the seq is read, so every frame after that seq reaches it) and the seq.
    pub(super) fn join(&mut self, key: &WindowKey) -> (Arc<GroupShared>, broadcast::Receiver<Arc<GroupFrame>>, u64) {
        if !self.groups.contains_key(key) {
            let dir = &self.dir;
            let filter = self
                .filters
                .entry(key.q.clone())
                .or_insert_with(|| Filter::new(OrderedList::from_sorted(dir.matching(&key.q))));
            filter.groups += 1;
            let counts = ViewCounts {
                total: filter.order.len() as u64,
                online_count: self.online,
                registered_count: self.registered,
            };
            let shared = Arc::new(GroupShared { key: key.clone(), ring: Ring::new(self.ring_capacity) });
            let content = filter.window(key);
            self.groups.insert(
                key.clone(),
                Group {
                    shared,
                    content,
                    seq: 0,
                    counts,
                    snapshot: None,
                    sockets: 0,
                    sent_at: None,
                    stale: false,
                    waiting: false,
                },
            );
        }
        let group = self.groups.get_mut(key).expect("the group was just ensured");
        group.sockets += 1;
        let rx = group.shared.ring.subscribe();
        (group.shared.clone(), rx, group.seq)
    }

    /// A socket leaves the group of `key`; the last one drops it (and its filter, unless it is
    /// the whole list).
    pub(super) fn leave(&mut self, key: &WindowKey) {
        let Some(group) = self.groups.get_mut(key) else { return };
        group.sockets = group.sockets.saturating_sub(1);
        if group.sockets > 0 {
            return;
        }
        self.groups.remove(key);
        if let Some(filter) = self.filters.get_mut(&key.q) {
            filter.groups = filter.groups.saturating_sub(1);
            if filter.groups == 0 && !key.q.is_empty() {
                self.filters.remove(&key.q);
            }
        }
    }

    /// The snapshot body of `key`'s window and its seq: built once per group and seq.
    pub(super) fn snapshot(&mut self, key: &WindowKey) -> Option<(u64, Bytes)> {
        let group = self.groups.get_mut(key)?;
        let dir = &self.dir;
        let body = group.snapshot.get_or_insert_with(|| {
            let users = group.content.iter().map(|r| entry(dir, r));
            Bytes::from(snapshot_body(group.seq, (key.offset, key.limit, &key.q), &group.counts, users))
        });
        Some((group.seq, body.clone()))
    }

    /// Applies a batch's events (in order; there may be none) at `now`, and returns the frame of
    /// every group that needs one and is due: the operations that turn the window it last sent
    /// into the window now, and the counts. Groups not due yet wait (see [`Views::next_due`]).
    pub(super) fn apply(&mut self, events: &[Event], online: u64, registered: u64, now: Instant) -> Vec<Outgoing> {
        let Views { dir, filters, groups, interval, .. } = self;
        for event in events {
            let moved = match event {
                Event::Online(u) => dir.online(u.id, &u.username),
                Event::Offline(u, at) => dir.offline(u.id, *at),
                Event::SignedUp(u) => dir.signed_up(u.id, &u.username),
                Event::Deleted(id) => dir.deleted(*id),
                Event::SessionClosed(_) | Event::UserClosed(_) => None,
            };
            if let Some(moved) = moved {
                for_matching(filters, &moved.key, |f| f.apply(&moved));
            }
        }
        self.online = online;
        self.registered = registered;
        let mut next_due: Option<Instant> = None;
        let mut out = Vec::new();
        for group in groups.values_mut() {
            let key = &group.shared.key;
            let Some(filter) = filters.get(&key.q) else { continue };
            group.stale |= filter.touched.as_ref().is_some_and(|t| {
                group.content.len() < key.limit as usize || group.content.last().is_none_or(|last| t <= last)
            });
            let counts =
                ViewCounts { total: filter.order.len() as u64, online_count: online, registered_count: registered };
            if !group.stale && counts == group.counts {
                group.waiting = false;
                continue;
            }
            if let Some(due) = group.sent_at.map(|at| at + *interval).filter(|due| *due > now) {
                group.waiting = true;
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
                continue;
            }
            group.waiting = false;
            let mut ops = Vec::new();
            let mut new = Vec::new();
            if group.stale {
                new = filter.window(key);
                ops = diff(&group.content, &new);
            }
            if ops.is_empty() && counts == group.counts {
                group.stale = false;
                continue;
            }
            let refs: Vec<OpRef<'_>> = ops
                .iter()
                .map(|op| match *op {
                    Op::Insert(at) => OpRef::Insert(at, entry(dir, &new[at])),
                    Op::Update(at) => OpRef::Update(at, entry(dir, &new[at])),
                    Op::Remove(at) => OpRef::Remove(at),
                })
                .collect();
            group.seq += 1;
            let json = diff_json(group.seq, &refs, &counts);
            if group.stale {
                group.content = new;
                group.stale = false;
            }
            group.counts = counts;
            group.snapshot = None;
            group.sent_at = Some(now);
            out.push(Outgoing { group: group.shared.clone(), seq: group.seq, json });
        }
        for filter in filters.values_mut() {
            filter.touched = None;
        }
        self.next_due = next_due;
        out
    }
}

/// Runs `f` on every filter whose search key is a prefix of `key` (the whole list's included).
fn for_matching(filters: &mut HashMap<Arc<str>, Filter>, key: &str, mut f: impl FnMut(&mut Filter)) {
    if filters.len() == 1 {
        filters.values_mut().for_each(f);
        return;
    }
    let ends = key.char_indices().map(|(i, _)| i).skip(1).chain([key.len()]);
    for end in std::iter::once(0).chain(ends) {
        if let Some(filter) = filters.get_mut(&key[..end]) {
            f(filter);
        }
    }
}

fn entry<'a>(dir: &'a Directory, rank: &Rank) -> EntryRef<'a> {
    let id = rank.id();
    EntryRef { id, username: dir.username(id).map_or("", |u| u), online: rank.online(), last_seen: rank.last_seen() }
}

/// One operation, with the index of its entry in the new window (which is also its position).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Insert(usize),
    Remove(usize),
    Update(usize),
}

/// The operations that turn `old` into `new`, both sorted by the list order. Walks both at once:
/// the working list is always `new[..j]` followed by `old[i..]`, so every position is `j`.
/// Entries equal in both stay; the same user in another state at the same step is an update.
fn diff(old: &[Rank], new: &[Rank]) -> Vec<Op> {
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    loop {
        match (old.get(i), new.get(j)) {
            (None, None) => return ops,
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.id() == b.id() => {
                ops.push(Op::Update(j));
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                ops.push(Op::Remove(j));
                i += 1;
            }
            (Some(_), None) => {
                ops.push(Op::Remove(j));
                i += 1;
            }
            (_, Some(_)) => {
                ops.push(Op::Insert(j));
                j += 1;
            }
        }
    }
}
