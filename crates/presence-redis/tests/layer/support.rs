//! What the tests share: a private `redis-server` on a free port (killed on drop), nodes, and
//! waits with deadlines.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use presence::layer::conformance::Probe;
use presence::layer::LayerConfig;
use presence::UserId;
use presence_redis::{RedisLayer, RedisLayerConfig};
use tempfile::TempDir;
use tokio::time::Instant;

pub const PREFIX: &str = "roster";

/// The grace and lease the tests run with (short: real time).
pub fn config() -> LayerConfig {
    LayerConfig { grace: Duration::from_millis(300), lease: Duration::from_millis(1500), queue: 16_384 }
}

/// A private redis-server. Its data (with `aof`) and log live in a temp dir.
pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    aof: bool,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl RedisServer {
    /// Empty at every start (`--save "" --appendonly no`).
    pub async fn start() -> RedisServer {
        Self::start_with(false).await
    }

    /// Keeps its data across restarts in an append-only file (fsync on every write).
    pub async fn start_aof() -> RedisServer {
        Self::start_with(true).await
    }

    /// Reserves a port but starts nothing yet (see [`RedisServer::restart`]).
    pub fn reserve() -> RedisServer {
        RedisServer { port: free_port(), dir: tempfile::tempdir().expect("temp dir"), aof: false, child: None }
    }

    async fn start_with(aof: bool) -> RedisServer {
        let mut server =
            RedisServer { port: free_port(), dir: tempfile::tempdir().expect("temp dir"), aof, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts redis-server (again) on the same port and directory; waits until it answers PING.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running already");
        let dir = self.dir.path();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is not on PATH: install it (scripts/test does, with apt-get install redis-server)")
            }
            Err(e) => panic!("could not start redis-server: {e}"),
        };
        self.child = Some(child);
        let port = self.port;
        wait_until("redis-server answers PING", Duration::from_secs(10), || ping(port)).await;
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("redis-server exited ({status}); log: {}", log(dir));
            }
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A plain connection for inspecting Redis.
    pub async fn admin(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}

/// Redis answers +PONG (not -LOADING, not refused).
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
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
