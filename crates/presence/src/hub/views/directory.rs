//! The directory: every account this node knows (id, username, search key, last seen, online),
//! loaded once at start-up ([`AccountList`]) and kept current by the cluster's events. Also the
//! list order itself: [`Rank`] is a user's place in it (online users first by search key and id,
//! then the others most recently seen first, never seen last, then id).
//!
//! Pure: no locks, no I/O. Knows nothing of windows, sockets or the wire.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::order::OrderedList;
use crate::UserId;

/// The search key of a username: what prefix searches compare and what online users are sorted
/// by. The server passes its own (NFKC + Unicode lowercase); it must be the function the server's
/// search uses, so that a view and a search page agree.
pub type SearchKey = fn(&str) -> String;

/// `last_seen` of a user never seen: sorts after every real time.
const NEVER: i64 = i64::MIN;

/// The search key used when the server passes none: Unicode lowercase.
pub fn lowercase_key(username: &str) -> String {
    username.to_lowercase()
}

/// One account as loaded: id, username, search key (if the caller has it), last seen.
type Row = (UserId, Arc<str>, Option<Arc<str>>, Option<i64>);

/// Every account, as the server loads it at start-up (one query), for the hub's directory.
pub struct AccountList {
    pub(in crate::hub) key: SearchKey,
    rows: Vec<Row>,
    /// A registered count without rows (the directory then learns accounts from events only).
    count_only: Option<u64>,
}

impl fmt::Debug for AccountList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountList").field("rows", &self.rows.len()).field("count_only", &self.count_only).finish()
    }
}

impl AccountList {
    /// An empty set of accounts whose usernames are searched by `key`.
    pub fn new(key: SearchKey) -> AccountList {
        AccountList { key, rows: Vec::new(), count_only: None }
    }

    /// Only a count: no account is known until events name it (tools and tests that have no
    /// store). Views then list online users and sign-ups.
    pub fn count_only(registered: u64) -> AccountList {
        AccountList { key: lowercase_key, rows: Vec::new(), count_only: Some(registered) }
    }

    /// Reserves room for `n` more accounts.
    pub fn reserve(&mut self, n: usize) {
        self.rows.reserve(n);
    }

    /// An account. `key` is its search key if the caller has it stored (else it is computed);
    /// `last_seen` in unix ms, `None` if never seen.
    pub fn push(&mut self, id: UserId, username: &str, key: Option<&str>, last_seen: Option<i64>) {
        let username: Arc<str> = Arc::from(username);
        // Most keys equal their username (lowercase ASCII names): share the allocation.
        let key = key.map(|k| if *k == *username { username.clone() } else { Arc::from(k) });
        self.rows.push((id, username, key, last_seen));
    }

    /// How many accounts: the registered count.
    pub fn registered(&self) -> u64 {
        self.count_only.unwrap_or(self.rows.len() as u64)
    }
}

/// A user's place in the list order. Two ranks are equal only for the same user in the same
/// state, so a window's entries that keep their rank keep their relative order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Rank {
    Online {
        key: Arc<str>,
        id: UserId,
    },
    /// `seen` is the last-seen time, [`NEVER`] if never seen.
    Offline {
        seen: i64,
        id: UserId,
    },
}

impl Rank {
    pub(super) fn id(&self) -> UserId {
        match self {
            Rank::Online { id, .. } | Rank::Offline { id, .. } => *id,
        }
    }

    pub(super) fn online(&self) -> bool {
        matches!(self, Rank::Online { .. })
    }

    /// The last-seen time of an offline user (`None`: never seen, or online).
    pub(super) fn last_seen(&self) -> Option<i64> {
        match self {
            Rank::Offline { seen, .. } if *seen != NEVER => Some(*seen),
            _ => None,
        }
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Rank::Online { key: a, id: x }, Rank::Online { key: b, id: y }) => a.cmp(b).then(x.cmp(y)),
            (Rank::Online { .. }, Rank::Offline { .. }) => Ordering::Less,
            (Rank::Offline { .. }, Rank::Online { .. }) => Ordering::Greater,
            // Most recently seen first (NEVER is the smallest time, so it comes last).
            (Rank::Offline { seen: a, id: x }, Rank::Offline { seen: b, id: y }) => b.cmp(a).then(x.cmp(y)),
        }
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug)]
struct Account {
    username: Arc<str>,
    key: Arc<str>,
    seen: i64,
    online: bool,
}

/// What happened to one account: its rank before and after (`None`: not in the list).
pub(super) struct Moved {
    pub(super) key: Arc<str>,
    pub(super) old: Option<Rank>,
    pub(super) new: Option<Rank>,
}

/// Every known account and an index of their search keys. O(accounts) memory; every operation
/// O(log accounts).
pub(super) struct Directory {
    key_fn: SearchKey,
    accounts: HashMap<UserId, Account>,
    /// (search key, id) of every account, for finding a prefix's matches.
    by_key: OrderedList<(Arc<str>, UserId)>,
}

impl Directory {
    /// The directory of `accounts`, and every account's rank, sorted (the whole list).
    pub(super) fn new(accounts: AccountList) -> (Directory, Vec<Rank>) {
        let key_fn = accounts.key;
        let mut map = HashMap::with_capacity(accounts.rows.len());
        for (id, username, key, last_seen) in accounts.rows {
            let key = key.unwrap_or_else(|| shared_key(key_fn, &username));
            map.insert(id, Account { username, key, seen: last_seen.unwrap_or(NEVER), online: false });
        }
        let mut keys: Vec<(Arc<str>, UserId)> = map.iter().map(|(&id, a)| (a.key.clone(), id)).collect();
        keys.sort_unstable();
        keys.dedup_by(|a, b| a == b);
        let mut ranks: Vec<Rank> = map.iter().map(|(&id, a)| a.rank(id)).collect();
        ranks.sort_unstable();
        (Directory { key_fn, accounts: map, by_key: OrderedList::from_sorted(keys) }, ranks)
    }

    pub(super) fn key_of(&self, text: &str) -> String {
        (self.key_fn)(text)
    }

    pub(super) fn len(&self) -> usize {
        self.accounts.len()
    }

    pub(super) fn username(&self, id: UserId) -> Option<&Arc<str>> {
        self.accounts.get(&id).map(|a| &a.username)
    }

    pub(super) fn rank(&self, id: UserId) -> Option<Rank> {
        self.accounts.get(&id).map(|a| a.rank(id))
    }

    /// The ranks of the accounts whose key starts with `prefix`, sorted.
    pub(super) fn matching(&self, prefix: &str) -> Vec<Rank> {
        let start = self.by_key.rank(&(Arc::from(prefix), UserId::MIN));
        let mut ranks: Vec<Rank> = self
            .by_key
            .iter_from(start)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(_, id)| self.rank(*id))
            .collect();
        ranks.sort_unstable();
        ranks
    }

    /// The account of `id`, added (never seen, offline) if unknown; returns whether it was new.
    fn entry(&mut self, id: UserId, username: &Arc<str>) -> (&mut Account, bool) {
        let fresh = !self.accounts.contains_key(&id);
        if fresh {
            let key = shared_key(self.key_fn, username);
            self.by_key.insert((key.clone(), id));
            self.accounts.insert(id, Account { username: username.clone(), key, seen: NEVER, online: false });
        }
        (self.accounts.get_mut(&id).expect("just ensured"), fresh)
    }

    /// A user came online.
    pub(super) fn online(&mut self, id: UserId, username: &Arc<str>) -> Option<Moved> {
        let (account, fresh) = self.entry(id, username);
        if account.online {
            return None;
        }
        let old = (!fresh).then(|| account.rank(id));
        account.online = true;
        Some(Moved { key: account.key.clone(), old, new: Some(account.rank(id)) })
    }

    /// A user went offline at `last_seen` (which never moves backwards). An unknown user stays
    /// unknown: the Offline of a deleted account's last socket may come after its deletion.
    pub(super) fn offline(&mut self, id: UserId, last_seen: i64) -> Option<Moved> {
        let account = self.accounts.get_mut(&id)?;
        let seen = account.seen.max(last_seen);
        if !account.online && account.seen == seen {
            return None;
        }
        let old = account.rank(id);
        account.online = false;
        account.seen = seen;
        Some(Moved { key: account.key.clone(), old: Some(old), new: Some(account.rank(id)) })
    }

    /// A new account (never seen). Nothing if it is already known.
    pub(super) fn signed_up(&mut self, id: UserId, username: &Arc<str>) -> Option<Moved> {
        let (account, fresh) = self.entry(id, username);
        fresh.then(|| Moved { key: account.key.clone(), old: None, new: Some(account.rank(id)) })
    }

    /// An account was deleted.
    pub(super) fn deleted(&mut self, id: UserId) -> Option<Moved> {
        let account = self.accounts.remove(&id)?;
        self.by_key.remove(&(account.key.clone(), id));
        Some(Moved { old: Some(account.rank(id)), key: account.key, new: None })
    }
}

impl Account {
    fn rank(&self, id: UserId) -> Rank {
        if self.online {
            Rank::Online { key: self.key.clone(), id }
        } else {
            Rank::Offline { seen: self.seen, id }
        }
    }
}

/// `key_fn(username)`, sharing the username's allocation when they are equal.
fn shared_key(key_fn: SearchKey, username: &Arc<str>) -> Arc<str> {
    let key = key_fn(username);
    if *key == **username {
        username.clone()
    } else {
        Arc::from(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_order(ranks: &[Rank]) -> Vec<UserId> {
        ranks.iter().map(Rank::id).collect()
    }

    #[test]
    fn the_list_order_is_online_by_key_then_most_recently_seen() {
        let mut accounts = AccountList::new(lowercase_key);
        accounts.push(1, "bob", None, Some(100));
        accounts.push(2, "Alice", None, None);
        accounts.push(3, "carol", None, Some(300));
        accounts.push(4, "dave", None, None);
        let (mut dir, ranks) = Directory::new(accounts);
        assert_eq!(id_order(&ranks), [3, 1, 2, 4], "most recently seen first, never seen last by id");
        let alice: Arc<str> = Arc::from("Alice");
        let moved = dir.online(2, &alice).expect("a change");
        assert_eq!(moved.new, Some(Rank::Online { key: Arc::from("alice"), id: 2 }));
        assert!(dir.online(2, &alice).is_none(), "twice is nothing");
        let mut ranks: Vec<Rank> = [1, 2, 3, 4].iter().filter_map(|&id| dir.rank(id)).collect();
        ranks.sort();
        assert_eq!(id_order(&ranks), [2, 3, 1, 4]);
        assert_eq!(id_order(&dir.matching("a")), [2]);
        assert_eq!(id_order(&dir.matching("")), [2, 3, 1, 4]);
        let moved = dir.offline(2, 50).expect("a change");
        assert_eq!(moved.new.as_ref().and_then(Rank::last_seen), Some(50));
        assert!(dir.offline(2, 40).is_none(), "last seen never moves backwards");
        assert!(dir.deleted(2).is_some());
        assert!(dir.offline(2, 60).is_none(), "a deleted account stays deleted");
        assert!(dir.matching("a").is_empty());
        assert_eq!(dir.len(), 3);
    }
}
