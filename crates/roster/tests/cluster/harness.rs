//! The cluster under test: nodes (the real `roster` binary) on one PostgreSQL database and one
//! Redis, started, killed, paused, stopped and restarted by the test; and the checks every test
//! ends with: each node's `/api/users/` and each `roster.v1` client's view equal the truth.

use std::collections::BTreeSet;
use std::time::Duration;

use testkit::redis::RedisServer;

use crate::helpers::{Browser, TestServer, DEADLINE, GOOD_PASSWORD};
use crate::pg;
use crate::ws_client::{open, View, Ws, V1};

/// One private Redis and one fresh PostgreSQL database; nodes come and go.
pub struct Cluster {
    pub redis: RedisServer,
    pub db_url: String,
    /// Flags every node starts with (grace, lease, ...), beside the database and Redis.
    flags: Vec<String>,
}

impl Cluster {
    /// A cluster on a fresh database of the shared test PostgreSQL.
    pub async fn new(redis: RedisServer, flags: &[&str]) -> Cluster {
        Cluster::with_database(redis, pg::fresh_database_url().await, flags)
    }

    pub fn with_database(redis: RedisServer, db_url: String, flags: &[&str]) -> Cluster {
        Cluster { redis, db_url, flags: flags.iter().map(|f| (*f).to_owned()).collect() }
    }

    /// A node on a free port.
    pub async fn node(&self) -> TestServer {
        self.node_on("127.0.0.1:0").await
    }

    /// A node on `bind` (a restarted node on its old port).
    pub async fn node_on(&self, bind: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let redis_url = self.redis.url();
        let mut extra: Vec<&str> = vec!["--redis-url", &redis_url];
        extra.extend(self.flags.iter().map(String::as_str));
        TestServer::start_on(dir, self.db_url.clone(), bind, &extra).await
    }

    /// The keys of Roster in Redis whose name holds `part` (e.g. `node:`).
    pub fn redis_keys(&self, part: &str) -> BTreeSet<String> {
        let keys = self.redis.command(&["KEYS", "roster:*"]);
        keys.lines().filter(|k| k.contains(part)).map(str::to_owned).collect()
    }

    /// Incarnations holding a lease.
    pub fn leases(&self) -> usize {
        self.redis.command(&["ZCARD", "roster:{r0}:nodes"]).parse().expect("ZCARD")
    }
}

/// Signs `username` up through `node` and logs them in, in a browser of their own.
pub async fn person(node: &TestServer, username: &str) -> Browser {
    let b = node.browser();
    assert_eq!(crate::helpers::sign_up(node, &b.client, username, GOOD_PASSWORD).await.status(), 302);
    assert_eq!(crate::helpers::log_in(node, &b.client, username, GOOD_PASSWORD).await.status(), 302);
    b
}

/// A `roster.v1` watcher on `node` and its view (the snapshot applied).
pub async fn watcher(node: &TestServer, b: &Browser) -> (Ws, View) {
    let mut ws = open(node, Some(b), V1).await.expect("watcher socket");
    let mut view = View::default();
    view.until(&mut ws, "the snapshot", |v| v.seq.is_some()).await;
    (ws, view)
}

/// Who `node`'s `GET /api/users/` says is online.
pub async fn api_online(node: &TestServer, b: &Browser) -> BTreeSet<String> {
    api_state(node, b).await.0
}

/// What `node`'s `GET /api/users/` says: who is online, and the registered count.
pub async fn api_state(node: &TestServer, b: &Browser) -> (BTreeSet<String>, u64) {
    let snapshot: serde_json::Value =
        b.client.get(node.url("/api/users/")).send().await.expect("GET").json().await.expect("json");
    let online = snapshot["online"]
        .as_array()
        .expect("online")
        .iter()
        .map(|u| u["username"].as_str().expect("name").to_owned())
        .collect();
    (online, snapshot["registered_count"].as_u64().expect("registered_count"))
}

pub fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Waits until `node`'s API says exactly `want` are online.
pub async fn api_until(node: &TestServer, b: &Browser, want: &BTreeSet<String>, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let have = api_online(node, b).await;
        if &have == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "node {}: online {have:?}, want {want:?}", node.addr);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `ws` until its view holds exactly `want` online.
pub async fn view_until(ws: &mut Ws, view: &mut View, want: &BTreeSet<String>) {
    view.until(ws, &format!("exactly {want:?} online"), |v| &v.online_names() == want).await;
}

/// `GET /readyz` status and body.
pub async fn readyz(node: &TestServer) -> (u16, String) {
    let r = reqwest::get(node.url("/readyz")).await.expect("GET /readyz");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Waits until `cond` holds on `/readyz` of `node`.
pub async fn readyz_until(node: &TestServer, what: &str, cond: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = readyz(node).await;
        if cond(status, &body) {
            return (status, body);
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz never {what}: last {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
