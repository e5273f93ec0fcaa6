//! What the soak samples of each node every few seconds: RSS (`/proc/PID/status` VmRSS), open
//! descriptors (`/proc/PID/fd`), and from its `/metrics` the tasks alive, sockets open, users
//! online, the lag policy's counters and the presence layer's state. One CSV row per node and
//! sample, with the load generator's counters beside them.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use serde::Serialize;

use super::ipc::SoakStats;
use crate::servers::rss_kib;

#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSample {
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
    pub tasks_main: Option<u64>,
    pub tasks_sockets: Option<u64>,
    pub sockets_open: Option<u64>,
    pub users_online: Option<u64>,
    pub lagging_resyncs: Option<u64>,
    pub lagging_closes: Option<u64>,
    pub layer_ready: Option<u64>,
    pub layer_resyncs: Option<u64>,
}

impl NodeSample {
    pub fn tasks(&self) -> Option<u64> {
        Some(self.tasks_main? + self.tasks_sockets?)
    }
}

/// TCP sockets of the process's network namespace by inode: (state, local port, remote port).
fn tcp_sockets(pid: u32) -> HashMap<String, (String, u16, u16)> {
    let port = |a: &str| a.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()).unwrap_or(0);
    let mut out = HashMap::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 {
                out.insert(f[9].to_owned(), (f[3].to_owned(), port(f[1]), port(f[2])));
            }
        }
    }
    out
}

/// What a process's descriptors are: its sockets (listening, accepted on `listen_port`: a
/// client's, or to another port: its database, Redis), pipes, `anon_inode:[eventpoll]`, files.
pub fn fd_kinds(pid: Option<u32>, listen_port: u16) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    let Some(pid) = pid else { return kinds };
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return kinds };
    let tcp = tcp_sockets(pid);
    for e in entries.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else { continue };
        let t = target.to_string_lossy();
        let kind = match t.split_once(":[") {
            Some(("socket", inode)) => match tcp.get(inode.trim_end_matches(']')) {
                Some((state, _, _)) if state == "0A" => "socket: listening".to_owned(),
                Some((_, local, _)) if *local == listen_port => "socket: a client's".to_owned(),
                Some((_, _, remote)) => format!("socket: to port {remote}"),
                None => "socket: not TCP".to_owned(),
            },
            Some(("pipe", _)) => "pipe".to_owned(),
            _ => t.into_owned(),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// A Prometheus text page's samples by series (`name{labels}`).
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

pub async fn sample(client: &reqwest::Client, url: &str, pid: Option<u32>) -> NodeSample {
    let m = match client.get(format!("{url}/metrics")).send().await {
        Ok(r) => parse_metrics(&r.text().await.unwrap_or_default()),
        Err(_) => HashMap::new(),
    };
    let get = |k: &str| m.get(k).map(|v| *v as u64);
    NodeSample {
        rss_kib: pid.and_then(rss_kib),
        fds: pid.and_then(fd_count),
        tasks_main: get(r#"roster_tasks_alive{runtime="main"}"#),
        tasks_sockets: get(r#"roster_tasks_alive{runtime="sockets"}"#),
        sockets_open: get("roster_sockets_open"),
        users_online: get("roster_users_online"),
        lagging_resyncs: get("roster_lagging_resyncs_total"),
        lagging_closes: get("roster_lagging_closes_total"),
        layer_ready: get("roster_layer_ready"),
        layer_resyncs: get("roster_layer_resyncs_total"),
    }
}

pub struct Csv(std::fs::File);

const HEADER: &str = "t_s,phase,node,rss_kib,fds,tasks_main,tasks_sockets,sockets_open,users_online,\
lagging_resyncs,lagging_closes,layer_ready,layer_resyncs,pages_open,frames,connects,reloads,closes,logins,\
logouts,signups,server_closes";

impl Csv {
    pub fn create(path: &std::path::Path) -> Result<Csv, String> {
        let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        writeln!(f, "{HEADER}").map_err(|e| e.to_string())?;
        Ok(Csv(f))
    }

    pub fn row(&mut self, t_s: f64, phase: &str, node: usize, s: &NodeSample, g: &SoakStats) -> Result<(), String> {
        let o = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let c = &g.churn;
        writeln!(
            self.0,
            "{t_s:.1},{phase},{node},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            o(s.rss_kib),
            o(s.fds),
            o(s.tasks_main),
            o(s.tasks_sockets),
            o(s.sockets_open),
            o(s.users_online),
            o(s.lagging_resyncs),
            o(s.lagging_closes),
            o(s.layer_ready),
            o(s.layer_resyncs),
            g.open,
            g.frames,
            c.connects,
            c.reloads,
            c.closes,
            c.logins,
            c.logouts,
            c.signups,
            c.server_closes.values().sum::<u64>(),
        )
        .and_then(|_| self.0.flush())
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_metrics;

    #[test]
    fn reads_labelled_series() {
        let m = parse_metrics("# TYPE x gauge\nroster_tasks_alive{runtime=\"main\"} 12\nroster_sockets_open 3\n");
        assert_eq!(m.get("roster_tasks_alive{runtime=\"main\"}"), Some(&12.0));
        assert_eq!(m.get("roster_sockets_open"), Some(&3.0));
    }
}
