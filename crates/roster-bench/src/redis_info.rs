//! What the cluster's Redis did over a phase of a run (`--redis-url`): calls per command from
//! `INFO commandstats` (commands run inside scripts included, as Redis counts them) and its CPU
//! from `INFO cpu` (`used_cpu_sys` + `used_cpu_user`, every thread of the server). One `INFO all`
//! per sample over a connection of its own; the `INFO` calls themselves are left out.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The Redis to sample, `host:port` of a `redis://host:port[/db]` URL.
pub struct RedisProbe {
    addr: String,
}

/// One reading of the counters.
pub struct Sample {
    at: Instant,
    calls: BTreeMap<String, u64>,
    cpu_secs: f64,
    used_memory: u64,
}

/// What the figures are counted per.
#[derive(Clone, Copy)]
pub enum Unit {
    Change,
    Socket,
}

impl Unit {
    fn keys(self) -> [&'static str; 5] {
        match self {
            Unit::Change => [
                "redis_commands_per_change",
                "redis_commands_per_change_raw",
                "redis_commands_per_change_by_command",
                "redis_cpu_us_per_change",
                "redis_cpu_us_per_change_raw",
            ],
            Unit::Socket => [
                "redis_commands_per_socket",
                "redis_commands_per_socket_raw",
                "redis_commands_per_socket_by_command",
                "redis_cpu_us_per_socket",
                "redis_cpu_us_per_socket_raw",
            ],
        }
    }
}

/// What happened between two samples.
pub struct Delta {
    pub secs: f64,
    pub calls: BTreeMap<String, u64>,
    pub cpu_secs: f64,
}

impl RedisProbe {
    pub fn new(url: &str) -> Result<RedisProbe, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("--redis-url {url:?}: expected redis://HOST:PORT (the bench's own Redis)"))?;
        let hostport = rest.split('/').next().unwrap_or_default();
        if hostport.contains('@') {
            return Err(
                "--redis-url: a password is not supported (the bench starts a private Redis without one)".into()
            );
        }
        if hostport.is_empty() {
            return Err(format!("--redis-url {url:?}: no host"));
        }
        let addr = if hostport.contains(':') { hostport.to_owned() } else { format!("{hostport}:6379") };
        Ok(RedisProbe { addr })
    }

    pub async fn sample(&self) -> Result<Sample, String> {
        let text = self.info().await.map_err(|e| format!("INFO from Redis at {}: {e}", self.addr))?;
        Ok(parse(&text))
    }

    async fn info(&self) -> Result<String, String> {
        let mut stream = TcpStream::connect(&self.addr).await.map_err(|e| e.to_string())?;
        stream.write_all(b"*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n").await.map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        reader.read_line(&mut head).await.map_err(|e| e.to_string())?;
        let len: usize = match head.trim_end().strip_prefix('$') {
            Some(n) => n.parse().map_err(|_| format!("unexpected reply {head:?}"))?,
            None => return Err(format!("unexpected reply {:?}", head.trim_end())),
        };
        let mut body = vec![0u8; len + 2];
        reader.read_exact(&mut body).await.map_err(|e| e.to_string())?;
        body.truncate(len);
        String::from_utf8(body).map_err(|e| e.to_string())
    }
}

fn parse(text: &str) -> Sample {
    let mut s = Sample { at: Instant::now(), calls: BTreeMap::new(), cpu_secs: 0.0, used_memory: 0 };
    for line in text.lines() {
        let Some((key, value)) = line.trim_end().split_once(':') else { continue };
        if let Some(name) = key.strip_prefix("cmdstat_") {
            let calls = value.split(',').find_map(|f| f.strip_prefix("calls=")).and_then(|n| n.parse().ok());
            if let (Some(calls), true) = (calls, name != "info") {
                s.calls.insert(name.to_owned(), calls);
            }
        }
        match key {
            "used_cpu_sys" | "used_cpu_user" => s.cpu_secs += value.parse::<f64>().unwrap_or(0.0),
            "used_memory" => s.used_memory = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    s
}

impl Sample {
    pub fn since(&self, earlier: &Sample) -> Delta {
        let calls = self
            .calls
            .iter()
            .map(|(k, &v)| (k.clone(), v.saturating_sub(earlier.calls.get(k).copied().unwrap_or(0))))
            .filter(|(_, v)| *v > 0)
            .collect();
        Delta {
            secs: self.at.duration_since(earlier.at).as_secs_f64(),
            calls,
            cpu_secs: (self.cpu_secs - earlier.cpu_secs).max(0.0),
        }
    }

    pub fn used_memory(&self) -> u64 {
        self.used_memory
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Delta {
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }

    /// Per unit of work (`units` changes or sockets), less what `idle` (a stretch with no work)
    /// would have done over this stretch's length: commands in all, by command, and CPU in µs;
    /// the `_raw` figures without the subtraction.
    pub fn fields_per(&self, units: u64, unit: Unit, idle: Option<&Delta>) -> Vec<(&'static str, Value)> {
        let n = units.max(1) as f64;
        let (idle_total, idle_cpu, idle_secs) =
            idle.map_or((0.0, 0.0, 0.0), |d| (d.total() as f64, d.cpu_secs, d.secs));
        let net = |v: f64, idle_v: f64| if idle_secs > 0.0 { v - idle_v / idle_secs * self.secs } else { v };
        let by_command: BTreeMap<&str, f64> = self
            .calls
            .iter()
            .map(|(k, &v)| {
                let idle_v = idle.and_then(|d| d.calls.get(k)).copied().unwrap_or(0) as f64;
                (k.as_str(), round2(net(v as f64, idle_v) / n))
            })
            .collect();
        let [commands, raw, by, cpu, cpu_raw] = unit.keys();
        vec![
            (commands, json!(round2(net(self.total() as f64, idle_total) / n))),
            (raw, json!(round2(self.total() as f64 / n))),
            (by, json!(by_command)),
            (cpu, json!((net(self.cpu_secs, idle_cpu) * 1e6 / n).round())),
            (cpu_raw, json!((self.cpu_secs * 1e6 / n).round())),
        ]
    }

    /// The idle stretch itself: commands and CPU per second with no work going on.
    pub fn idle_fields(&self) -> Vec<(&'static str, Value)> {
        let s = self.secs.max(1e-6);
        vec![
            ("redis_idle_seconds", json!(round2(self.secs))),
            ("redis_idle_commands_per_s", json!(round2(self.total() as f64 / s))),
            ("redis_idle_by_command", json!(self.calls)),
            ("redis_idle_cpu_ms_per_s", json!(round2(self.cpu_secs * 1e3 / s))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_calls_cpu_and_memory_and_leaves_info_out() {
        let s = parse(
            "# Memory\r\nused_memory:1048576\r\n# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.250000\r\n\
             # Commandstats\r\ncmdstat_evalsha:calls=7,usec=70,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_info:calls=3,usec=1\r\ncmdstat_publish:calls=7,usec=14\r\n",
        );
        assert_eq!(s.used_memory(), 1_048_576);
        assert!((s.cpu_secs - 1.75).abs() < 1e-9);
        assert_eq!(s.calls.get("evalsha"), Some(&7));
        assert_eq!(s.calls.get("publish"), Some(&7));
        assert!(!s.calls.contains_key("info"));
    }

    #[test]
    fn per_change_figures_subtract_the_idle_rate() {
        let calls = |e: u64, p: u64| BTreeMap::from([("evalsha".to_owned(), e), ("ping".to_owned(), p)]);
        let idle = Delta { secs: 5.0, calls: calls(0, 10), cpu_secs: 0.005 };
        let run = Delta { secs: 10.0, calls: calls(20, 20), cpu_secs: 0.030 };
        let f: BTreeMap<&str, Value> = run.fields_per(20, Unit::Change, Some(&idle)).into_iter().collect();
        assert_eq!(f["redis_commands_per_change_raw"], json!(2.0));
        assert_eq!(f["redis_commands_per_change"], json!(1.0));
        assert_eq!(f["redis_commands_per_change_by_command"]["evalsha"], json!(1.0));
        assert_eq!(f["redis_commands_per_change_by_command"]["ping"], json!(0.0));
        assert_eq!(f["redis_cpu_us_per_change"], json!(1000.0));
        assert_eq!(f["redis_cpu_us_per_change_raw"], json!(1500.0));
    }

    #[test]
    fn refuses_urls_it_cannot_use() {
        assert!(RedisProbe::new("http://127.0.0.1:1").is_err());
        assert!(RedisProbe::new("redis://:pw@127.0.0.1:1").is_err());
        assert_eq!(RedisProbe::new("redis://127.0.0.1:7000/0").map(|p| p.addr).ok(), Some("127.0.0.1:7000".into()));
    }
}
