//! Property tests of the wire protocols against the real hub (the in-process `MemoryCluster`
//! layer, tokio's paused clock): any sequence of sockets opening and closing, sign-ups and
//! deletions drives the hub, and the frames it sends pass through a lossy link that drops,
//! duplicates and reorders them before a client applies them.
//!
//! - `roster_v1`: the client ([`presence::client::ClientView`]) is never silently wrong: while
//!   it says it is in sync, it equals the server's list at its `seq`; after a gap it reconnects
//!   for a snapshot; at the end it equals the server's list.
//! - `roster_v2`: the same for a window ([`presence::protocol::views::PageView`]), which
//!   re-subscribes after a gap.
//! - `tutorial`: frames carry no `seq`, so in the server's order (duplicates allowed) the last
//!   frame about each user must be the truth.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use presence::layer::{LayerConfig, MemoryCluster};
use presence::{
    AccountList, Connection, Hub, HubConfig, Outgoing, PresenceObserver, Protocol, SessionKey, UserId, UserRef,
};
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

mod roster_v1;
mod roster_v2;
mod tutorial;

/// Accounts in the directory at the start: `user1` .. `user{ACCOUNTS}`. The watchers are users
/// 1 to 3; the actions open and close sockets of the others.
const ACCOUNTS: i64 = 12;
const FIRST_ACTOR: i64 = 4;

struct NoObserver;
impl PresenceObserver for NoObserver {
    fn went_offline(&self, _: &[(UserId, i64)]) {}
}

/// What happens on the server side between two looks at the sockets.
#[derive(Clone, Debug)]
enum Action {
    /// A socket of this user opens (if the user has fewer than 4 and is not deleted).
    Open(i64),
    /// One of this user's sockets closes.
    Close(i64),
    /// Time passes (ticks, the grace period).
    Wait(u64),
    /// A new account.
    SignUp,
    /// The account is deleted (its sockets close).
    Delete(i64),
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    let user = FIRST_ACTOR..=ACCOUNTS;
    let action = prop_oneof![
        4 => user.clone().prop_map(Action::Open),
        3 => user.clone().prop_map(Action::Close),
        3 => (0u64..800).prop_map(Action::Wait),
        1 => Just(Action::SignUp),
        1 => user.prop_map(Action::Delete),
    ];
    proptest::collection::vec(action, 1..40)
}

/// What the link does to one frame.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Deliver,
    Drop,
    Duplicate,
    /// Held back until this many later frames have passed.
    Delay(u8),
}

fn faults() -> impl Strategy<Value = Vec<Fault>> {
    let fault = prop_oneof![
        6 => Just(Fault::Deliver),
        1 => Just(Fault::Drop),
        1 => Just(Fault::Duplicate),
        1 => (1u8..4).prop_map(Fault::Delay),
    ];
    proptest::collection::vec(fault, 1..24)
}

/// A lossy link from the hub to one client: the faults in turn, one per frame.
struct Link {
    faults: Vec<Fault>,
    next: usize,
    held: Vec<(u8, Bytes)>,
    /// Once off, every frame is delivered in order.
    lossy: bool,
}

impl Link {
    fn new(faults: Vec<Fault>) -> Link {
        Link { faults, next: 0, held: Vec::new(), lossy: true }
    }

    /// What the client receives when the hub sends `frame`.
    fn pass(&mut self, frame: Bytes) -> Vec<Bytes> {
        let fault = if self.lossy { self.faults[self.next % self.faults.len()] } else { Fault::Deliver };
        self.next += 1;
        let mut out = Vec::new();
        match fault {
            Fault::Deliver => out.push(frame),
            Fault::Drop => {}
            Fault::Duplicate => out.extend([frame.clone(), frame]),
            Fault::Delay(n) => self.held.push((n, frame)),
        }
        for (left, _) in &mut self.held {
            *left = left.saturating_sub(1);
        }
        let (due, held): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.held).into_iter().partition(|(left, _)| *left == 0);
        self.held = held;
        out.extend(due.into_iter().map(|(_, f)| f));
        out
    }

    /// A new connection: frames held for the old one are gone with it.
    fn reconnected(&mut self) {
        self.held.clear();
    }

    /// The faults stop; what was held back arrives now (late).
    fn heal(&mut self) -> Vec<Bytes> {
        self.lossy = false;
        std::mem::take(&mut self.held).into_iter().map(|(_, f)| f).collect()
    }
}

/// What a client behind a [`Link`] is checked against: the server's state at every `seq` (as a
/// client on a perfect link saw it, or the hub published it).
struct Truth<S> {
    at: BTreeMap<u64, S>,
    /// How many times the lossy client claimed to be in sync at a `seq` whose state is known.
    checked: u32,
}

impl<S: PartialEq + std::fmt::Debug> Truth<S> {
    fn new() -> Self {
        Truth { at: BTreeMap::new(), checked: 0 }
    }

    /// A client that claims to be in sync at `seq` (`None`: it knows it is not) must show the
    /// server's state at that `seq`.
    fn check(&mut self, seq: Option<u64>, shown: S) {
        if let Some(truth) = seq.and_then(|seq| self.at.get(&seq)) {
            assert_eq!(&shown, truth, "in sync at seq {seq:?} but wrong");
            self.checked += 1;
        }
    }
}

/// The hub and the sockets the actions hold.
struct Server {
    hub: Hub,
    shutdown: CancellationToken,
    sockets: BTreeMap<i64, Vec<Connection>>,
    deleted: BTreeSet<i64>,
    next_account: i64,
    next_session: u64,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    /// A hub over `user1` .. `user{ACCOUNTS}` with this grace and per-socket queue.
    fn start(grace_ms: u64, capacity: usize) -> Server {
        let layer =
            MemoryCluster::new(LayerConfig { grace: Duration::from_millis(grace_ms), ..LayerConfig::default() });
        let mut accounts = AccountList::new(presence::hub::lowercase_key);
        for id in 1..=ACCOUNTS {
            accounts.push(id, &name(id), None, None);
        }
        let shutdown = CancellationToken::new();
        let config = HubConfig { tick: Duration::from_millis(100), max_sockets_per_user: 4, queue_capacity: capacity };
        let (hub, _task) = Hub::start_with(config, accounts, layer.node(), Arc::new(NoObserver), shutdown.clone())
            .expect("the hub joins the in-process cluster");
        Server {
            hub,
            shutdown,
            sockets: BTreeMap::new(),
            deleted: BTreeSet::new(),
            next_account: ACCOUNTS + 1,
            next_session: 0,
        }
    }

    /// A socket of `id` in a session of its own.
    fn connect(&mut self, id: i64, protocol: Protocol) -> Connection {
        self.next_session += 1;
        let session = SessionKey::from(format!("s{}", self.next_session).as_str());
        self.hub.connect(user(id), session, protocol).expect("a watcher's socket opens")
    }

    async fn act(&mut self, action: &Action) {
        match *action {
            Action::Open(id) if !self.deleted.contains(&id) => {
                self.next_session += 1;
                let session = SessionKey::from(format!("s{}", self.next_session).as_str());
                if let Ok(c) = self.hub.connect(user(id), session, Protocol::Tutorial) {
                    self.sockets.entry(id).or_default().push(c);
                }
            }
            Action::Open(_) => {}
            Action::Close(id) => {
                self.sockets.get_mut(&id).and_then(Vec::pop);
            }
            Action::Wait(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
            Action::SignUp => {
                let id = self.next_account;
                self.next_account += 1;
                self.hub.signed_up(user(id));
            }
            Action::Delete(id) => {
                if self.deleted.insert(id) {
                    self.hub.user_deleted(id);
                    self.sockets.remove(&id);
                }
            }
        }
        settle().await;
    }

    /// Lets every batch due go out: a view group's interval (5 ticks) passes.
    async fn flush(&self) {
        tokio::time::advance(Duration::from_millis(600)).await;
        settle().await;
    }
}

fn name(id: i64) -> String {
    format!("user{id}")
}

fn user(id: UserId) -> UserRef {
    UserRef::new(id, name(id))
}

/// Lets the hub task run what is due now, without moving the clock.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// The frames queued for `c`; a close is a failure (watchers are never closed here).
fn frames(c: &mut Connection) -> Vec<Bytes> {
    let mut out = Vec::new();
    while let Some(o) = c.try_next() {
        match o {
            Outgoing::Frame(b) => out.push(b),
            Outgoing::Close { code, reason } => panic!("a watcher was closed: {code} {reason}"),
        }
    }
    out
}

/// Runs one case on a fresh runtime with a paused clock.
fn run<F: Future<Output = ()>>(case: impl FnOnce() -> F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("runtime");
    rt.block_on(case());
}

/// Cases per property: each runs a hub for a few simulated seconds (milliseconds of real time).
fn config() -> ProptestConfig {
    ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() }
}
