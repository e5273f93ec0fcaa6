//! What the tests share: a private `redis-server` on a free port (`testkit`), nodes, and waits
//! with deadlines.

use std::collections::BTreeSet;
use std::time::Duration;

use presence::layer::conformance::Probe;
use presence::layer::LayerConfig;
use presence::UserId;
use presence_redis::{RedisLayer, RedisLayerConfig};
use tokio::time::Instant;

pub const PREFIX: &str = "roster";

/// The grace and lease the tests run with (short: real time).
pub fn config() -> LayerConfig {
    LayerConfig { grace: Duration::from_millis(300), lease: Duration::from_millis(1500), queue: 16_384 }
}

pub use testkit::redis::RedisServer;

/// A plain connection for inspecting Redis.
pub async fn admin(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis")
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after `within`.
pub async fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node of the cluster at `url`.
pub fn node_at(url: &str, name: &str, layer: LayerConfig) -> RedisLayer {
    RedisLayer::new(RedisLayerConfig {
        url: url.to_owned(),
        key_prefix: PREFIX.to_owned(),
        node_name: name.to_owned(),
        layer,
    })
    .expect("a valid config")
}

pub fn node(server: &RedisServer, name: &str) -> RedisLayer {
    node_at(&server.url(), name, config())
}

/// Applies deliveries until the probe's replica holds exactly `want` (panics after `within`;
/// the probe itself panics on any gap, double Online or Offline of someone offline).
pub async fn converge(p: &mut Probe<RedisLayer>, want: &[UserId], within: Duration) {
    let want: BTreeSet<UserId> = want.iter().copied().collect();
    let deadline = Instant::now() + within;
    loop {
        let have: BTreeSet<UserId> = p.online.keys().copied().collect();
        if have == want {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?}: online {have:?}, want {want:?}");
        p.next(Duration::from_millis(50)).await;
    }
}

/// `key`'s members (a SET), or fields (a HASH), or members (a ZSET), as strings.
pub async fn members(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> BTreeSet<String> {
    let kind: String = redis::cmd("TYPE").arg(key).query_async(conn).await.expect("TYPE");
    let cmd = match kind.as_str() {
        "set" => redis::cmd("SMEMBERS").arg(key).clone(),
        "hash" => redis::cmd("HKEYS").arg(key).clone(),
        "zset" => redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).clone(),
        "none" => return BTreeSet::new(),
        other => panic!("{key} is a {other}"),
    };
    let items: Vec<String> = cmd.query_async(conn).await.expect("read members");
    items.into_iter().collect()
}

/// The keys of the layer, without the prefix and tag.
pub async fn keys(conn: &mut redis::aio::MultiplexedConnection) -> BTreeSet<String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{PREFIX}:*")).query_async(conn).await.expect("KEYS");
    keys.into_iter().map(|k| k.trim_start_matches(&format!("{PREFIX}:{{r0}}:")).to_owned()).collect()
}

pub fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
