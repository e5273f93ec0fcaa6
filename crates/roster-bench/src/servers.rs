//! The server processes a scenario measures (`--server-pid`, one per `--url`, in the same
//! order): resident memory and CPU time of each, read from `/proc`, summed over the nodes of a
//! cluster and kept per node.

use serde_json::{json, Value};

/// Resident set size of a process in KiB (`/proc/PID/status` VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of a process (/proc/PID/stat, assuming 100 ticks/s).
fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The measured processes; none when no `--server-pid` was given.
pub struct Servers {
    pids: Vec<u32>,
}

/// RSS and CPU of every server at one moment.
pub struct Sample {
    rss_kib: Vec<Option<u64>>,
    cpu_secs: Vec<Option<f64>>,
}

impl Servers {
    /// `pids` in the order of the URLs; a count that matches neither no server nor every URL is
    /// refused (figures per node would be attributed to the wrong node).
    pub fn new(pids: &[u32], urls: usize) -> Result<Servers, String> {
        if !pids.is_empty() && pids.len() != urls {
            return Err(format!(
                "{} --server-pid for {urls} --url: give one per --url, in the same order, or none",
                pids.len()
            ));
        }
        Ok(Servers { pids: pids.to_vec() })
    }

    pub fn sample(&self) -> Sample {
        Sample {
            rss_kib: self.pids.iter().map(|&p| rss_kib(p)).collect(),
            cpu_secs: self.pids.iter().map(|&p| cpu_secs(p)).collect(),
        }
    }

    /// More than one server: per-node figures are worth printing.
    pub fn cluster(&self) -> bool {
        self.pids.len() > 1
    }
}

fn sum<T: Copy + std::iter::Sum>(v: &[Option<T>]) -> Option<T> {
    if v.is_empty() {
        return None;
    }
    v.iter().copied().collect::<Option<Vec<T>>>().map(|v| v.into_iter().sum())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Sample {
    /// RSS of every server together (KiB).
    pub fn rss_total(&self) -> Option<u64> {
        sum(&self.rss_kib)
    }

    pub fn rss_per_node(&self) -> Value {
        json!(self.rss_kib)
    }

    /// CPU seconds every server spent since `earlier`, all together.
    pub fn cpu_since(&self, earlier: &Sample) -> Option<f64> {
        Some(sum(&self.cpu_secs)? - sum(&earlier.cpu_secs)?)
    }

    /// CPU seconds each server spent since `earlier`.
    pub fn cpu_since_per_node(&self, earlier: &Sample) -> Value {
        let per: Vec<Option<f64>> =
            self.cpu_secs.iter().zip(&earlier.cpu_secs).map(|(b, a)| Some(round2((*b)? - (*a)?))).collect();
        json!(per)
    }

    /// RSS bytes per socket each server gained since `earlier`, given the sockets each holds.
    pub fn rss_per_socket_per_node(&self, earlier: &Sample, sockets: &[u64]) -> Value {
        let per: Vec<Option<f64>> = self
            .rss_kib
            .iter()
            .zip(&earlier.rss_kib)
            .zip(sockets)
            .map(|((b, a), &n)| (n > 0).then_some(((*b)? as f64 - (*a)? as f64) * 1024.0 / n as f64).map(f64::round))
            .collect();
        json!(per)
    }
}
