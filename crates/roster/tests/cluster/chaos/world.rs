//! The chaos test's world: the cluster and what the test holds (sessions, open clients, the
//! nodes' and Redis's states), the random steps and the outages they start and end, and the log
//! of steps printed when a seed fails.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use testkit::redis::RedisServer;
use tokio::time::Instant;

use super::{flags, LEASE, MAX_CLIENTS, NODES, USERS};
use crate::harness::{person, Cluster};
use crate::held::Held;
use crate::helpers::{csrf, log_in, post_form, Browser, TestServer, GOOD_PASSWORD};

enum NodeState {
    Up,
    /// SIGSTOPped at `since`; continued at step `until` (and not before the lease and a second).
    Paused {
        since: Instant,
        until: usize,
    },
    /// Killed; started again at step `until`, on its old port or a new one.
    Down {
        until: usize,
        same_port: bool,
    },
}

struct Node {
    server: Option<TestServer>,
    addr: SocketAddr,
    state: NodeState,
}

/// A log-in: one user's session, in a browser of its own.
struct Session {
    id: usize,
    user: usize,
    browser: Browser,
}

/// An open `roster.v1` socket the test holds.
pub(super) struct Client {
    pub(super) id: usize,
    pub(super) user: usize,
    session: usize,
    pub(super) node: usize,
    pub(super) held: Held,
}

/// Redis: up, or killed until step `until` and then restarted empty or with its data.
enum RedisState {
    Up,
    Down { until: usize, empty: bool },
}

/// Prints the seed and the steps so far if the run fails.
pub(super) struct Log {
    pub(super) seed: u64,
    steps: Vec<String>,
}

impl Drop for Log {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut out =
                format!("chaos seed {} failed; rerun with ROSTER_CHAOS_SEED={}. Steps:\n", self.seed, self.seed);
            for s in &self.steps {
                let _ = writeln!(out, "  {s}");
            }
            eprintln!("{out}");
        }
    }
}

pub(super) struct World {
    rng: StdRng,
    pub(super) cluster: Cluster,
    nodes: Vec<Node>,
    redis: RedisState,
    /// The users' names; user `i` is `names[i]`.
    pub(super) names: Vec<String>,
    /// Who reads `/api/users/` at the end (never holds a socket, never logs out).
    pub(super) observer: Browser,
    sessions: Vec<Session>,
    pub(super) clients: Vec<Client>,
    /// Sockets of ended sessions, which the server must close with 4001.
    pub(super) logged_out: Vec<Client>,
    next_session: usize,
    next_client: usize,
    /// Time spent waiting for a paused node's lease to run out (no step was due meanwhile).
    paused_wait: Duration,
    pub(super) log: Log,
}

impl World {
    pub(super) async fn start(seed: u64) -> World {
        let cluster = Cluster::new(RedisServer::start_persistent(), &flags()).await;
        let mut nodes = Vec::new();
        for _ in 0..NODES {
            let server = cluster.node().await;
            nodes.push(Node { addr: server.addr, server: Some(server), state: NodeState::Up });
        }
        let names: Vec<String> = (0..USERS).map(|i| format!("user{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let node = nodes[i % NODES].server.as_ref().expect("up");
            let b = node.browser();
            let r = crate::helpers::sign_up(node, &b.client, name, GOOD_PASSWORD).await;
            assert_eq!(r.status(), 302, "sign up {name}");
        }
        let observer = person(nodes[0].server.as_ref().expect("up"), "observer").await;
        World {
            rng: StdRng::seed_from_u64(seed),
            cluster,
            nodes,
            redis: RedisState::Up,
            names,
            observer,
            sessions: Vec::new(),
            clients: Vec::new(),
            logged_out: Vec::new(),
            next_session: 0,
            next_client: 0,
            paused_wait: Duration::ZERO,
            log: Log { seed, steps: Vec::new() },
        }
    }

    fn note(&mut self, step: usize, what: String) {
        self.log.steps.push(format!("{step:>4}: {what}"));
    }

    pub(super) fn note_end(&mut self, what: String) {
        self.log.steps.push(format!("end: {what}"));
    }

    /// How many steps of each kind the run made, and how many clients it ended with.
    pub(super) fn summary(&self) -> String {
        let count = |word: &str| self.log.steps.iter().filter(|s| s.contains(word)).count();
        format!(
            "{} opens, {} closes, {} reloads, {} log-outs, {} sign-ups, {} kills, {} pauses, {} redis restarts; {} clients open at the end; {:.1?} waiting out pauses",
            count(": open "),
            count(": close "),
            count(": reload c"),
            count(": log out "),
            count(": sign up "),
            count("(SIGKILL)"),
            count("(SIGSTOP)"),
            count("redis restarted"),
            self.clients.len(),
            self.paused_wait
        )
    }

    fn up(&self) -> Vec<usize> {
        (0..NODES).filter(|&n| matches!(self.nodes[n].state, NodeState::Up)).collect()
    }

    pub(super) fn server(&self, node: usize) -> &TestServer {
        self.nodes[node].server.as_ref().expect("a running node")
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.rng.gen_range(0..from.len())]
    }

    /// Ends the outages due at `step` (all of them at the end).
    pub(super) async fn restore(&mut self, step: usize, all: bool) {
        for n in 0..NODES {
            match self.nodes[n].state {
                NodeState::Down { until, same_port } if all || until <= step => {
                    let bind = if same_port { self.nodes[n].addr.to_string() } else { "127.0.0.1:0".to_owned() };
                    let server = self.cluster.node_on(&bind).await;
                    self.note(step, format!("node {n} started again on {} (was {})", server.addr, self.nodes[n].addr));
                    self.nodes[n] = Node { addr: server.addr, server: Some(server), state: NodeState::Up };
                }
                NodeState::Paused { since, until } if all || until <= step => {
                    // Past the lease whatever the steps took meanwhile.
                    let waited = Instant::now();
                    tokio::time::sleep_until(since + LEASE + Duration::from_secs(1)).await;
                    self.paused_wait += waited.elapsed();
                    self.server(n).signal("-CONT");
                    self.nodes[n].state = NodeState::Up;
                    self.note(step, format!("node {n} continued (SIGCONT) after {:.1?}", since.elapsed()));
                }
                _ => {}
            }
        }
        if let RedisState::Down { until, empty } = self.redis {
            if all || until <= step {
                if empty {
                    self.cluster.redis.restart_empty();
                } else {
                    self.cluster.redis.restart();
                }
                self.redis = RedisState::Up;
                self.note(step, format!("redis restarted {}", if empty { "empty" } else { "with its data" }));
            }
        }
    }

    pub(super) async fn step(&mut self, step: usize) {
        let up = self.up();
        let not_up = NODES - up.len();
        let nobody_paused = !self.nodes.iter().any(|n| matches!(n.state, NodeState::Paused { .. }));
        let mut choices: Vec<(u32, Action)> = Vec::new();
        if !up.is_empty() && self.clients.len() < MAX_CLIENTS {
            // Towards about half the cap: enough sockets on every node to watch.
            choices.push((if self.clients.len() < MAX_CLIENTS / 2 { 40 } else { 20 }, Action::Open));
        }
        if !self.clients.is_empty() {
            choices.push((20, Action::Close));
            choices.push((18, Action::Reload));
        }
        if !self.sessions.is_empty() && !up.is_empty() {
            choices.push((6, Action::LogOut));
        }
        if !up.is_empty() {
            choices.push((3, Action::SignUp));
        }
        if up.len() > 1 && not_up < 2 {
            choices.push((2, Action::Kill));
            if nobody_paused {
                choices.push((1, Action::Pause));
            }
        }
        if matches!(self.redis, RedisState::Up) {
            choices.push((2, Action::RedisDown));
        }
        let total: u32 = choices.iter().map(|c| c.0).sum();
        let mut roll = self.rng.gen_range(0..total);
        let action = choices
            .iter()
            .find(|(weight, _)| {
                if roll < *weight {
                    true
                } else {
                    roll -= weight;
                    false
                }
            })
            .map(|c| c.1)
            .expect("a choice");
        match action {
            Action::Open => self.open(step, &up).await,
            Action::Close => {
                let i = self.rng.gen_range(0..self.clients.len());
                let c = self.clients.swap_remove(i);
                self.note(step, format!("close c{} (user{}, node {})", c.id, c.user, c.node));
                c.held.close().await;
            }
            Action::Reload => self.reload(step).await,
            Action::LogOut => self.log_out(step, &up).await,
            Action::SignUp => {
                let node = self.pick(&up);
                let name = format!("user{}", self.names.len());
                self.note(step, format!("sign up {name} on node {node}"));
                let server = self.server(node);
                let b = server.browser();
                let r = crate::helpers::sign_up(server, &b.client, &name, GOOD_PASSWORD).await;
                assert_eq!(r.status(), 302, "sign up {name}");
                self.names.push(name);
            }
            Action::Kill => {
                let n = self.pick(&up);
                let until = step + self.rng.gen_range(0..=10);
                let same_port = self.rng.gen_bool(0.5);
                self.note(step, format!("node {n} killed (SIGKILL) until step {until}"));
                self.nodes[n].server.take().expect("up").kill().await;
                self.nodes[n].state = NodeState::Down { until, same_port };
                // Its sockets are gone; so are the logged-out ones still waiting for their close.
                for list in [&mut self.clients, &mut self.logged_out] {
                    let (gone, kept): (Vec<Client>, Vec<Client>) = list.drain(..).partition(|c| c.node == n);
                    *list = kept;
                    gone.into_iter().for_each(|c| c.held.forget());
                }
            }
            Action::Pause => {
                let n = self.pick(&up);
                let until = step + self.rng.gen_range(0..=40);
                self.note(step, format!("node {n} paused (SIGSTOP) until step {until}, at least the lease + 1 s"));
                self.server(n).signal("-STOP");
                self.nodes[n].state = NodeState::Paused { since: Instant::now(), until };
            }
            Action::RedisDown => {
                let until = step + self.rng.gen_range(0..=10);
                let empty = self.rng.gen_bool(0.5);
                self.note(
                    step,
                    format!("redis killed until step {until} (then {})", if empty { "empty" } else { "with data" }),
                );
                self.cluster.redis.kill();
                self.redis = RedisState::Down { until, empty };
            }
        }
    }

    /// Opens a socket on a running node: after a new log-in (a new session) or as another tab of
    /// an existing session.
    async fn open(&mut self, step: usize, up: &[usize]) {
        let node = self.pick(up);
        let session = if self.sessions.is_empty() || self.rng.gen_bool(0.5) {
            let user = self.rng.gen_range(0..self.names.len());
            let server = self.server(node);
            let browser = server.browser();
            let r = log_in(server, &browser.client, &self.names[user], GOOD_PASSWORD).await;
            assert_eq!(r.status(), 302, "log in as user{user} on node {node}");
            let id = self.next_session;
            self.next_session += 1;
            self.sessions.push(Session { id, user, browser });
            self.sessions.len() - 1
        } else {
            self.rng.gen_range(0..self.sessions.len())
        };
        let (user, sid) = (self.sessions[session].user, self.sessions[session].id);
        let id = self.next_client;
        self.next_client += 1;
        self.note(step, format!("open c{id} (user{user}, session s{sid}) on node {node}"));
        let held = Held::open(self.server(node), &self.sessions[session].browser).await;
        self.clients.push(Client { id, user, session: sid, node, held });
    }

    /// A page reloaded onto another running node: its socket closes, and the new page's opens at
    /// once (well within the grace).
    async fn reload(&mut self, step: usize) {
        let i = self.rng.gen_range(0..self.clients.len());
        let from = self.clients[i].node;
        let targets: Vec<usize> = self.up().into_iter().filter(|&n| n != from).collect();
        if targets.is_empty() {
            self.note(step, "reload: no other running node, nothing done".to_owned());
            return;
        }
        let to = self.pick(&targets);
        let old = self.clients.swap_remove(i);
        let id = self.next_client;
        self.next_client += 1;
        self.note(step, format!("reload c{} (user{}) from node {from} to node {to} as c{id}", old.id, old.user));
        let session = self.sessions.iter().find(|s| s.id == old.session).expect("the session of an open socket");
        old.held.close().await;
        let held = Held::open(self.server(to), &session.browser).await;
        self.clients.push(Client { id, user: old.user, session: old.session, node: to, held });
    }

    /// Logs a session out through a running node: every socket of that session, on any node,
    /// must be closed with 4001.
    async fn log_out(&mut self, step: usize, up: &[usize]) {
        let via = self.pick(up);
        let i = self.rng.gen_range(0..self.sessions.len());
        let session = self.sessions.swap_remove(i);
        let (closing, kept): (Vec<Client>, Vec<Client>) = self.clients.drain(..).partition(|c| c.session == session.id);
        self.clients = kept;
        let ids: Vec<String> = closing.iter().map(|c| format!("c{}@{}", c.id, c.node)).collect();
        self.note(step, format!("log out s{} (user{}) through node {via}, closing {ids:?}", session.id, session.user));
        let server = self.server(via);
        let token = csrf(server, &session.browser.client, "/log_out/").await;
        let r = post_form(server, &session.browser.client, "/log_out/", &[("csrfmiddlewaretoken", &token)]).await;
        assert_eq!(r.status(), 302, "log out s{}", session.id);
        self.logged_out.extend(closing);
    }
}

#[derive(Clone, Copy)]
enum Action {
    Open,
    Close,
    Reload,
    LogOut,
    SignUp,
    Kill,
    Pause,
    RedisDown,
}
