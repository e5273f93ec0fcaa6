//! A private `redis-server` for a test: its own temp dir and a free port on 127.0.0.1, killed
//! when dropped. A test may kill it (as a crash would), start it again on the same port empty or
//! with its data (append-only file), and send it commands.
//!
//! Never the machine's own Redis (6379). A missing `redis-server` fails the test with a message.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) private Redis server.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    /// Keep data across restarts (append-only file in `dir`).
    persistent: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts an empty server that keeps nothing on disk.
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// Starts an empty server with an append-only file, so [`Self::restart`] keeps its data.
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_with(true)
    }

    /// A server with a port of its own, not started yet: [`Self::restart`] starts it (for a
    /// client that must come up before Redis does).
    pub fn reserve() -> RedisServer {
        let dir = tempfile::Builder::new().prefix("roster-redis-").tempdir().expect("temp dir for redis-server");
        RedisServer { port: crate::free_port(), dir, persistent: false, child: None }
    }

    fn start_with(persistent: bool) -> RedisServer {
        let dir = tempfile::Builder::new().prefix("roster-redis-").tempdir().expect("temp dir for redis-server");
        let mut server = RedisServer { port: 0, dir, persistent, child: None };
        // A port found free may be taken before the server binds it: retry a few times.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = crate::free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => {
                    last = e;
                    server.kill();
                }
            }
        }
        panic!("could not start redis-server: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let binary = crate::which("redis-server").unwrap_or_else(|| {
            panic!(
                "redis-server not found on PATH: install it (Debian: apt-get install redis-server); scripts/test does"
            )
        });
        let port = self.port.to_string();
        let mut cmd = Command::new(binary);
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"]);
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(reply) = self.try_command(&["PING"]) {
                if reply == "PONG" {
                    return Ok(());
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("redis-server exited at start ({status}); log:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("redis-server did not answer PING on port {}; log:\n{}", self.port, self.log()))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL), as a crash would. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed server again on the same port: empty, or with its data if it was started
    /// with [`Self::start_persistent`]. Panics if the port was taken meanwhile.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("could not restart redis-server on port {}: {e}", self.port);
        }
    }

    /// Starts a killed server again on the same port with no data, even if it keeps an
    /// append-only file (which is deleted first): Redis lost everything.
    pub fn restart_empty(&mut self) {
        self.kill();
        for name in ["appendonlydir", "appendonly.aof", "dump.rdb"] {
            let path = self.dir.path().join(name);
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
        if let Err(e) = self.spawn() {
            panic!("could not restart redis-server on port {}: {e}", self.port);
        }
    }

    /// Runs one command; the reply flattened to text (simple strings, integers and bulk strings
    /// as themselves, arrays one element per line). Panics on an error reply.
    pub fn command(&self, args: &[&str]) -> String {
        match self.try_command(args) {
            Ok(reply) => reply,
            Err(e) => panic!("redis command {args:?} failed: {e}"),
        }
    }

    /// The number of calls of `command` (lowercase, e.g. `evalsha`) in `INFO commandstats`.
    pub fn command_calls(&self, command: &str) -> u64 {
        let info = self.command(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Every call counted in `INFO commandstats`, summed.
    pub fn total_calls(&self) -> u64 {
        let info = self.command(&["INFO", "commandstats"]);
        info.lines()
            .filter_map(|l| l.split_once(":calls="))
            .filter_map(|(_, rest)| rest.split(',').next()?.parse::<u64>().ok())
            .sum()
    }

    fn try_command(&self, args: &[&str]) -> Result<String, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream);
        read_reply(&mut reader)
    }
}

fn read_reply(r: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Err(rest.to_owned()),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| format!("bad bulk length {rest:?}"))?;
            if n < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0) + 2];
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(buf.len() - 2);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| format!("bad array length {rest:?}"))?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            Ok(items.join("\n"))
        }
        _ => Err(format!("unexpected reply {line:?}")),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_empty_or_with_its_data() {
        let mut plain = RedisServer::start();
        assert_eq!(plain.command(&["SET", "k", "v"]), "OK");
        plain.restart();
        assert_eq!(plain.command(&["EXISTS", "k"]), "0", "a plain server restarts empty");

        let mut kept = RedisServer::start_persistent();
        kept.command(&["SET", "k", "v"]);
        kept.command(&["RPUSH", "l", "a", "b"]);
        kept.kill();
        assert!(kept.try_command(&["PING"]).is_err(), "killed");
        kept.restart();
        assert_eq!(kept.command(&["GET", "k"]), "v", "the append-only file brings the data back");
        assert_eq!(kept.command(&["LRANGE", "l", "0", "-1"]), "a\nb");
        kept.restart_empty();
        assert_eq!(kept.command(&["EXISTS", "k"]), "0", "restart_empty loses everything");
        kept.command(&["SET", "k", "w"]);
        kept.restart();
        assert_eq!(kept.command(&["GET", "k"]), "w", "and keeps what comes after");
        assert!(kept.command_calls("get") >= 1);
        assert!(kept.total_calls() >= 2);
    }
}
