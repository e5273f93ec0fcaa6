//! This node's changes on their way to Redis: [`Outbox`], filled by `Layer::send` (which never
//! waits) and drained by the writer task.
//!
//! Pure and bounded. Presence changes are coalesced per user (only a user's last Up/Down need
//! reach the cluster), so they take at most one entry per user; the mirror of the users this
//! node has up is exact at all times (it is what the node re-asserts after a fencing or an
//! outage). Account events keep their order in a queue of at most [`ACCOUNT_QUEUE`]; beyond
//! that new ones are dropped and counted. Must not depend on Redis or tokio.

use std::collections::{HashMap, VecDeque};

use presence::event::Change;
use presence::{UserId, UserRef};

use crate::config::ACCOUNT_QUEUE;

/// A user's state change on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UserOp {
    Up(UserRef),
    Down { at: i64, logout: bool },
}

/// What is pending for one user: the last state change, then possibly the end of the grace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    pub op: Option<UserOp>,
    pub end_grace: bool,
}

impl Pending {
    /// `newer` came after `self`.
    fn merge(self, newer: Pending) -> Pending {
        if newer.op.is_some() {
            newer
        } else {
            Pending { op: self.op, end_grace: self.end_grace || newer.end_grace }
        }
    }
}

/// An item taken for sending, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    User(UserId, Pending),
    /// An account event with its op number (the writer's marks make a retry idempotent).
    Account(u64, Change),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    User(UserId),
    Account,
}

#[derive(Default)]
pub(crate) struct Outbox {
    /// The users this node has up (by the changes it was given), with their names.
    mirror: HashMap<UserId, UserRef>,
    pending: HashMap<UserId, Pending>,
    order: VecDeque<Slot>,
    accounts: VecDeque<(u64, Change)>,
    next_op: u64,
    /// Account events dropped because the queue was full.
    pub dropped: u64,
}

impl Outbox {
    pub fn push(&mut self, change: Change) {
        let (user, newer) = match change {
            Change::Up(u) => {
                self.mirror.insert(u.id, u.clone());
                (u.id, Pending { op: Some(UserOp::Up(u)), end_grace: false })
            }
            Change::Down { user, at, logout } => {
                self.mirror.remove(&user);
                (user, Pending { op: Some(UserOp::Down { at, logout }), end_grace: false })
            }
            Change::EndGrace(user) => (user, Pending { op: None, end_grace: true }),
            account => {
                if self.accounts.len() >= ACCOUNT_QUEUE {
                    self.dropped += 1;
                    return;
                }
                self.next_op += 1;
                self.accounts.push_back((self.next_op, account));
                self.order.push_back(Slot::Account);
                return;
            }
        };
        match self.pending.remove(&user) {
            Some(older) => {
                self.pending.insert(user, older.merge(newer));
            }
            None => {
                self.pending.insert(user, newer);
                self.order.push_back(Slot::User(user));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Up to `max` items, oldest first.
    pub fn take(&mut self, max: usize) -> Vec<Item> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.order.pop_front() {
                None => break,
                Some(Slot::User(u)) => {
                    if let Some(p) = self.pending.remove(&u) {
                        out.push(Item::User(u, p));
                    }
                }
                Some(Slot::Account) => {
                    if let Some((n, c)) = self.accounts.pop_front() {
                        out.push(Item::Account(n, c));
                    }
                }
            }
        }
        out
    }

    /// Puts back items taken but not applied, ahead of everything (their order kept). A user
    /// who changed again since keeps the newer change.
    pub fn requeue(&mut self, items: Vec<Item>) {
        for item in items.into_iter().rev() {
            match item {
                Item::User(u, older) => match self.pending.remove(&u) {
                    Some(newer) => {
                        self.pending.insert(u, older.merge(newer));
                    }
                    None => {
                        self.pending.insert(u, older);
                        self.order.push_front(Slot::User(u));
                    }
                },
                Item::Account(n, c) => {
                    self.accounts.push_front((n, c));
                    self.order.push_front(Slot::Account);
                }
            }
        }
    }

    /// The users this node has up.
    pub fn mirror(&self) -> Vec<UserRef> {
        self.mirror.values().cloned().collect()
    }

    /// The pending Downs (user, at, logout), for a node retiring an older incarnation.
    pub fn pending_downs(&self) -> Vec<(UserId, i64, bool)> {
        self.pending
            .iter()
            .filter_map(|(&u, p)| match p.op {
                Some(UserOp::Down { at, logout }) => Some((u, at, logout)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: UserId) -> Change {
        Change::Up(UserRef::new(id, format!("u{id}")))
    }
    fn down(id: UserId, at: i64) -> Change {
        Change::Down { user: id, at, logout: false }
    }
    fn user(id: UserId, op: Option<UserOp>, end_grace: bool) -> Item {
        Item::User(id, Pending { op, end_grace })
    }

    #[test]
    fn a_users_changes_coalesce_in_place() {
        let mut o = Outbox::default();
        o.push(up(1));
        o.push(Change::CloseUser(9));
        o.push(up(2));
        o.push(down(1, 5));
        o.push(Change::EndGrace(1));
        assert_eq!(o.mirror(), vec![UserRef::new(2, "u2")]);
        assert_eq!(o.pending_downs(), vec![(1, 5, false)]);
        let items = o.take(10);
        assert_eq!(
            items,
            vec![
                user(1, Some(UserOp::Down { at: 5, logout: false }), true),
                Item::Account(1, Change::CloseUser(9)),
                user(2, Some(UserOp::Up(UserRef::new(2, "u2"))), false),
            ]
        );
        assert!(o.is_empty());
    }

    #[test]
    fn an_up_clears_an_earlier_end_of_grace() {
        let mut o = Outbox::default();
        o.push(down(1, 5));
        o.push(Change::EndGrace(1));
        o.push(up(1));
        assert_eq!(o.take(10), vec![user(1, Some(UserOp::Up(UserRef::new(1, "u1"))), false)]);
    }

    #[test]
    fn requeued_items_go_first_and_newer_changes_win() {
        let mut o = Outbox::default();
        o.push(up(1));
        o.push(Change::Deleted(4));
        o.push(up(2));
        let taken = o.take(2);
        o.push(up(3));
        o.push(down(1, 7));
        o.requeue(taken);
        let items = o.take(10);
        assert_eq!(
            items,
            vec![
                Item::Account(1, Change::Deleted(4)),
                user(2, Some(UserOp::Up(UserRef::new(2, "u2"))), false),
                user(3, Some(UserOp::Up(UserRef::new(3, "u3"))), false),
                user(1, Some(UserOp::Down { at: 7, logout: false }), false),
            ]
        );
    }

    #[test]
    fn the_account_queue_is_bounded() {
        let mut o = Outbox::default();
        for i in 0..(ACCOUNT_QUEUE as i64 + 5) {
            o.push(Change::CloseUser(i));
        }
        for i in 0..1000 {
            o.push(up(i));
        }
        assert_eq!(o.dropped, 5);
        assert_eq!(o.take(usize::MAX).len(), ACCOUNT_QUEUE + 1000);
    }
}
