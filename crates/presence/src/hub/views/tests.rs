//! The views engine against a brute-force model of the list: a window's snapshot plus the
//! operations of every batch after it always equal the list order computed from scratch, after
//! any interleaving of windows opening, closing and moving, people logging in and out (sorting
//! before, inside and after windows), signing up and being deleted, and of time passing (groups
//! send at most one frame per interval; once none waits, every window is exact).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::protocol::views::{snapshot_json, PageView, ViewUser};
use crate::{UserId, UserRef};

/// A person in the model.
#[derive(Clone, Debug)]
struct Person {
    username: String,
    online: bool,
    last_seen: Option<i64>,
}

fn key(name: &str) -> String {
    name.to_lowercase()
}

/// The list as the server defines it, from scratch: online users by (key, id), then the others
/// most recently seen first, never seen last, then id; filtered by a key prefix.
fn model_list(people: &BTreeMap<UserId, Person>, q: &str) -> Vec<ViewUser> {
    let q = key(q.trim());
    let mut users: Vec<(UserId, &Person)> =
        people.iter().filter(|(_, p)| key(&p.username).starts_with(&q)).map(|(&id, p)| (id, p)).collect();
    users.sort_by(|(a, p), (b, r)| match (p.online, r.online) {
        (true, true) => key(&p.username).cmp(&key(&r.username)).then(a.cmp(b)),
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => match (p.last_seen, r.last_seen) {
            (Some(x), Some(y)) => y.cmp(&x).then(a.cmp(b)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.cmp(b),
        },
    });
    users
        .into_iter()
        .map(|(id, p)| ViewUser {
            id,
            username: p.username.clone(),
            online: p.online,
            last_seen: if p.online { None } else { p.last_seen },
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Step {
    /// A socket opens a window (offset, limit, q).
    Open(u32, u32, &'static str),
    /// Socket `n` (modulo the open ones) closes.
    Close(usize),
    /// Socket `n` moves to another window.
    Move(usize, u32, u32, &'static str),
    /// Person `n` (modulo the offline ones) logs in.
    LogIn(usize),
    /// Person `n` (modulo the online ones) leaves, `dt` ms after the last one (0: a tie).
    LogOut(usize, i64),
    SignUp(&'static str),
    Delete(usize),
    /// The pending events go out as one batch.
    Flush,
    /// Time passes (ms), then a flush (groups whose interval passed send).
    Wait(u64),
}

const NAMES: &[&str] = &[
    "al", "Alice", "alfred", "Bob", "bea", "béa", "b", "carol", "Chris", "Dave", "dora", "Émile", "eve", "zed", "Zoë",
    "al2", "ALBERT", "bobby",
];
const QUERIES: &[&str] = &["", "", "", "a", "al", "B", "b", "é", "zo", "x", " al "];

fn step() -> impl Strategy<Value = Step> {
    let window = (0u32..8, 1u32..6, proptest::sample::select(QUERIES));
    prop_oneof![
        2 => window.clone().prop_map(|(o, l, q)| Step::Open(o, l, q)),
        1 => any::<usize>().prop_map(Step::Close),
        1 => (any::<usize>(), window).prop_map(|(n, (o, l, q))| Step::Move(n, o, l, q)),
        4 => any::<usize>().prop_map(Step::LogIn),
        3 => (any::<usize>(), prop_oneof![Just(0i64), 1i64..1000]).prop_map(|(n, dt)| Step::LogOut(n, dt)),
        1 => proptest::sample::select(NAMES).prop_map(Step::SignUp),
        1 => any::<usize>().prop_map(Step::Delete),
        3 => Just(Step::Flush),
        1 => (0u64..400).prop_map(Step::Wait),
    ]
}

struct Socket {
    key: WindowKey,
    window: (u32, u32, &'static str),
    view: PageView,
}

struct World {
    views: Views,
    people: BTreeMap<UserId, Person>,
    pending: Vec<Event>,
    sockets: Vec<Socket>,
    next_id: UserId,
    clock: i64,
    next_view: u64,
    /// The hub's clock, for the groups' intervals.
    now: Instant,
}

impl World {
    fn new(initial: &[(&'static str, Option<i64>)]) -> World {
        World::with_interval(initial, Duration::ZERO)
    }

    fn with_interval(initial: &[(&'static str, Option<i64>)], interval: Duration) -> World {
        let mut accounts = AccountList::new(key);
        let mut people = BTreeMap::new();
        let mut taken = std::collections::HashSet::new();
        let mut next_id = 1;
        for (name, seen) in initial {
            if taken.insert(key(name)) {
                accounts.push(next_id, name, None, *seen);
                people.insert(next_id, Person { username: (*name).to_owned(), online: false, last_seen: *seen });
                next_id += 1;
            }
        }
        World {
            views: Views::new(accounts, 8, interval),
            people,
            pending: Vec::new(),
            sockets: Vec::new(),
            next_id,
            clock: 10_000,
            next_view: 1,
            now: Instant::now(),
        }
    }

    fn user(&self, id: UserId) -> UserRef {
        UserRef::new(id, self.people[&id].username.as_str())
    }

    fn counts(&self) -> (u64, u64) {
        (self.people.values().filter(|p| p.online).count() as u64, self.people.len() as u64)
    }

    /// A socket joins `window` and reads its snapshot.
    fn join(&mut self, window: (u32, u32, &'static str)) -> Socket {
        let w = Window::new(window.0.into(), window.1.into(), window.2).expect("a valid window");
        let key = self.views.key(&w);
        let (_group, _rx, _seq) = self.views.join(&key);
        let (_, body) = self.views.snapshot(&key).expect("the group exists");
        let id = self.next_view;
        self.next_view += 1;
        let mut view = PageView::default();
        view.requested(id);
        assert_eq!(view.apply_text(&snapshot_json(id, 0, &body)), Ok(true));
        Socket { key, window, view }
    }

    fn run(&mut self, step: Step) {
        match step {
            Step::Open(o, l, q) => {
                let s = self.join((o, l, q));
                self.sockets.push(s);
            }
            Step::Close(n) if !self.sockets.is_empty() => {
                let s = self.sockets.remove(n % self.sockets.len());
                self.views.leave(&s.key);
            }
            Step::Move(n, o, l, q) if !self.sockets.is_empty() => {
                let i = n % self.sockets.len();
                let old = self.sockets[i].key.clone();
                self.views.leave(&old);
                self.sockets[i] = self.join((o, l, q));
            }
            Step::LogIn(n) => {
                let offline: Vec<UserId> = self.people.iter().filter(|(_, p)| !p.online).map(|(&id, _)| id).collect();
                if let Some(&id) = offline.get(n % offline.len().max(1)) {
                    self.people.get_mut(&id).expect("exists").online = true;
                    self.pending.push(Event::Online(self.user(id)));
                }
            }
            Step::LogOut(n, dt) => {
                let online: Vec<UserId> = self.people.iter().filter(|(_, p)| p.online).map(|(&id, _)| id).collect();
                if let Some(&id) = online.get(n % online.len().max(1)) {
                    self.clock += dt;
                    let p = self.people.get_mut(&id).expect("exists");
                    p.online = false;
                    p.last_seen = Some(p.last_seen.map_or(self.clock, |s| s.max(self.clock)));
                    self.pending.push(Event::Offline(self.user(id), self.clock));
                }
            }
            Step::SignUp(name) => {
                if !self.people.values().any(|p| key(&p.username) == key(name)) {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.people.insert(id, Person { username: name.to_owned(), online: false, last_seen: None });
                    self.pending.push(Event::SignedUp(self.user(id)));
                }
            }
            Step::Delete(n) => {
                let ids: Vec<UserId> = self.people.keys().copied().collect();
                if let Some(&id) = ids.get(n % ids.len().max(1)) {
                    let user = self.user(id);
                    let person = self.people.remove(&id).expect("exists");
                    self.pending.push(Event::Deleted(id));
                    // An online user's sockets close after the deletion: their Offline may come
                    // after it, and must not bring the account back.
                    if person.online && n % 2 == 0 {
                        self.clock += 1;
                        self.pending.push(Event::Offline(user, self.clock));
                    }
                }
            }
            Step::Flush => {
                self.flush();
            }
            Step::Wait(ms) => {
                self.now += Duration::from_millis(ms);
                self.flush();
            }
            Step::Close(_) | Step::Move(..) => {}
        }
    }

    /// The pending events as one batch: the frames it makes.
    fn apply_pending(&mut self) -> Vec<Outgoing> {
        let (online, registered) = self.counts();
        let events = std::mem::take(&mut self.pending);
        self.views.apply(&events, online, registered, self.now)
    }

    /// A flush: the frames go to their sockets; returns how many groups sent one.
    fn flush(&mut self) -> usize {
        let frames = self.apply_pending();
        let mut seen: HashMap<WindowKey, u64> = HashMap::new();
        for frame in &frames {
            assert!(seen.insert(frame.group.key.clone(), frame.seq).is_none(), "one frame per group per batch");
            for s in self.sockets.iter_mut().filter(|s| s.key == frame.group.key) {
                assert_eq!(s.view.apply_text(&frame.json), Ok(true), "{}", String::from_utf8_lossy(&frame.json));
            }
        }
        // Windows that wait for their interval may lag; once none waits, all are exact.
        if self.views.next_due().is_none() {
            self.check();
        }
        frames.len()
    }

    /// Lets every waiting group send.
    fn settle(&mut self) {
        self.flush();
        while let Some(due) = self.views.next_due() {
            self.now = self.now.max(due);
            self.flush();
        }
        self.check();
    }

    /// Every socket's window is the model's, with the model's counts.
    fn check(&self) {
        let (online, registered) = self.counts();
        for s in &self.sockets {
            let (o, l, q) = s.window;
            let list = model_list(&self.people, q);
            let want: Vec<ViewUser> = list.iter().skip(o as usize).take(l as usize).cloned().collect();
            assert_eq!(s.view.users, want, "window {:?}", s.window);
            assert_eq!(s.view.counts.total, list.len() as u64, "total of {:?}", s.window);
            assert_eq!((s.view.counts.online_count, s.view.counts.registered_count), (online, registered));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_plus_operations_equal_the_list_order(
        initial in proptest::collection::vec((proptest::sample::select(NAMES), proptest::option::of(0i64..5)), 0..14),
        steps in proptest::collection::vec(step(), 0..120),
        interval in prop_oneof![Just(0u64), 1u64..300],
    ) {
        let mut world = World::with_interval(&initial, Duration::from_millis(interval));
        for step in steps {
            world.run(step);
        }
        world.settle();
        // Groups and filters are dropped with their last socket.
        for s in std::mem::take(&mut world.sockets) {
            world.views.leave(&s.key);
        }
        prop_assert_eq!(world.views.groups(), 0);
        prop_assert_eq!(world.views.filters.len(), 1, "only the whole list's filter stays");
    }
}

#[test]
fn a_change_after_a_window_is_only_a_counts_update() {
    let names: Vec<String> = (0..50).map(|i| format!("user{i:02}")).collect();
    let initial: Vec<(&'static str, Option<i64>)> =
        names.iter().map(|n| (&*Box::leak(n.clone().into_boxed_str()), None)).collect();
    let mut world = World::new(&initial);
    for _ in 0..30 {
        world.run(Step::LogIn(0));
    }
    world.flush();
    let head = world.join((0, 10, ""));
    world.sockets.push(head);
    // user40 logs in: online users sort by name, so it lands at position 30, after the window.
    world.people.get_mut(&41).expect("user40").online = true;
    world.pending.push(Event::Online(world.user(41)));
    let frames = world.apply_pending();
    assert_eq!(frames.len(), 1);
    assert_eq!(
        std::str::from_utf8(&frames[0].json).unwrap(),
        r#"{"type":"diff","seq":1,"ops":[],"total":50,"online_count":31,"registered_count":50}"#
    );
    // user00 (position 0) leaves: one remove, one insert at the end, nothing else.
    world.run(Step::LogOut(0, 5));
    let frames = world.apply_pending();
    let json = std::str::from_utf8(&frames[0].json).unwrap();
    assert!(
        json.starts_with(r#"{"type":"diff","seq":2,"ops":[{"op":"remove","at":0},{"op":"insert","at":9,"#),
        "{json}"
    );
    assert_eq!(json.matches("\"op\"").count(), 2, "{json}");
}

#[test]
fn the_same_user_in_place_is_an_update() {
    // Two people, one online: a window of both. The online one leaves and stays first (the most
    // recently seen of the offline ones): an update in place.
    let mut world = World::new(&[("ann", Some(1)), ("bob", Some(2))]);
    world.run(Step::LogIn(0));
    world.flush();
    let s = world.join((0, 2, ""));
    world.sockets.push(s);
    world.run(Step::LogOut(0, 5));
    let frames = world.apply_pending();
    let json = std::str::from_utf8(&frames[0].json).unwrap();
    assert!(
        json.contains(r#"[{"op":"update","at":0,"user":{"id":1,"username":"ann","online":false,"last_seen":"#),
        "{json}"
    );
}

#[test]
fn a_group_sends_at_most_one_frame_per_interval() {
    let interval = Duration::from_millis(500);
    let mut world = World::with_interval(&[("a", None), ("b", None), ("c", None), ("d", None)], interval);
    let s = world.join((0, 3, ""));
    world.sockets.push(s);
    world.run(Step::LogIn(0));
    assert_eq!(world.flush(), 1, "a lone change goes out at once");
    world.run(Step::LogIn(0));
    assert_eq!(world.flush(), 0, "within the interval it waits");
    let due = world.views.next_due().expect("the group waits");
    world.now += Duration::from_millis(200);
    world.run(Step::LogIn(0));
    assert_eq!(world.flush(), 0);
    assert_eq!(world.views.next_due(), Some(due), "due an interval after its last frame");
    world.now = due;
    assert_eq!(world.flush(), 1, "then one frame carries both changes");
    world.check();
    assert_eq!(world.sockets[0].view.usernames(), ["a", "b", "c"]);
    assert!(world.sockets[0].view.users.iter().all(|u| u.online));
    assert_eq!(world.views.next_due(), None);
}
