//! The soak's figures: each node at the moments that matter (before, every page open, after
//! warm-up, end of churn, after everyone left), the trend after warm-up, and delivery latencies.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::ipc::{Deliveries, SoakStats};
use super::sample::NodeSample;

pub struct Timeline {
    nodes: usize,
    rows: Vec<(f64, String, Vec<NodeSample>, u64)>,
}

fn point(t: f64, s: &NodeSample) -> Value {
    json!({
        "t_s": t.round(),
        "rss_kib": s.rss_kib,
        "fds": s.fds,
        "tasks": s.tasks(),
        "sockets_open": s.sockets_open,
        "users_online": s.users_online,
    })
}

/// Least-squares slope of (x, y).
fn slope(xy: &[(f64, f64)]) -> Option<f64> {
    let n = xy.len() as f64;
    if xy.len() < 3 {
        return None;
    }
    let (mx, my) = (xy.iter().map(|p| p.0).sum::<f64>() / n, xy.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn range(v: impl Iterator<Item = u64>) -> Value {
    let v: Vec<u64> = v.collect();
    json!([v.iter().min(), v.iter().max()])
}

impl Timeline {
    pub fn new(nodes: usize) -> Timeline {
        Timeline { nodes, rows: Vec::new() }
    }

    pub fn push(&mut self, t: f64, phase: &str, samples: &[NodeSample], g: &SoakStats) {
        self.rows.push((t, phase.to_owned(), samples.to_vec(), g.open));
    }

    fn first(&self, phase: &str) -> Option<&(f64, String, Vec<NodeSample>, u64)> {
        self.rows.iter().find(|r| r.1 == phase)
    }

    /// Warm-up: a sixth of the churn, at least 1 and at most 10 minutes.
    pub fn fields(&self, churn_started: f64, churn_secs: f64) -> Vec<(&'static str, Value)> {
        let warmup = (churn_secs / 6.0).clamp(60.0_f64.min(churn_secs / 2.0), 600.0);
        let warm_t = churn_started + warmup;
        let churn: Vec<_> = self.rows.iter().filter(|r| r.1 == "churn").collect();
        let warmed = churn.iter().find(|r| r.0 >= warm_t).copied();
        let end = churn.last().copied();
        let after_warm: Vec<_> = churn.iter().filter(|r| r.0 >= warm_t).collect();
        let mut per_node = Vec::new();
        for i in 0..self.nodes {
            let at = |r: Option<&(f64, String, Vec<NodeSample>, u64)>| r.map(|r| point(r.0, &r.2[i]));
            let rss: Vec<(f64, f64)> =
                after_warm.iter().filter_map(|r| Some((r.0 / 60.0, r.2[i].rss_kib? as f64))).collect();
            let (before, after) = (self.first("before").map(|r| &r.2[i]), self.first("after").map(|r| &r.2[i]));
            let delta = |f: fn(&NodeSample) -> Option<u64>| match (before.and_then(f), after.and_then(f)) {
                (Some(b), Some(a)) => json!(a as i64 - b as i64),
                _ => Value::Null,
            };
            per_node.push(json!({
                "before": at(self.first("before")),
                "connected": at(self.first("connected")),
                "warmed_up": at(warmed),
                "end_of_churn": at(end),
                "after_everyone_left": at(self.first("after")),
                "rss_slope_kib_per_min_after_warmup": slope(&rss).map(|s| (s * 10.0).round() / 10.0),
                "rss_kib_range_after_warmup": range(after_warm.iter().filter_map(|r| r.2[i].rss_kib)),
                "fds_range_after_warmup": range(after_warm.iter().filter_map(|r| r.2[i].fds)),
                "tasks_range_after_warmup": range(after_warm.iter().filter_map(|r| r.2[i].tasks())),
                "sockets_range_after_warmup": range(after_warm.iter().filter_map(|r| r.2[i].sockets_open)),
                "fds_left_after_everyone_left": delta(|s| s.fds),
                "tasks_left_after_everyone_left": delta(|s| s.tasks()),
                "rss_kib_kept_after_everyone_left": delta(|s| s.rss_kib),
                "lagging_resyncs": end.and_then(|r| r.2[i].lagging_resyncs),
                "lagging_closes": end.and_then(|r| r.2[i].lagging_closes),
                "layer_resyncs": end.and_then(|r| r.2[i].layer_resyncs),
            }));
        }
        vec![("warmup_seconds", json!(warmup.round())), ("nodes", json!(per_node))]
    }
}

fn pct(hist: &BTreeMap<u64, u64>, p: f64) -> Option<u64> {
    let total: u64 = hist.values().sum();
    if total == 0 {
        return None;
    }
    let want = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (ms, n) in hist {
        seen += n;
        if seen >= want {
            return Some(*ms);
        }
    }
    hist.keys().last().copied()
}

pub fn deliveries(name: &'static str, d: &Deliveries) -> Vec<(&'static str, Value)> {
    vec![(
        name,
        json!({
            "expected": d.expected,
            "delivered": d.delivered,
            "missing": d.missing,
            "online_p50_ms": pct(&d.online_ms, 50.0),
            "online_p99_ms": pct(&d.online_ms, 99.0),
            "online_max_ms": d.online_ms.keys().last(),
            "offline_p50_ms": pct(&d.offline_ms, 50.0),
            "offline_p99_ms": pct(&d.offline_ms, 99.0),
            "offline_max_ms": d.offline_ms.keys().last(),
            "seq_gaps": d.seq_gaps,
            "view_gaps": d.view_gaps,
            "resyncs": d.resyncs,
            "page_lifetimes": d.lifetimes,
            "frames": d.frames,
            "missing_examples": d.examples,
        }),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_histogram_and_a_slope() {
        let h: BTreeMap<u64, u64> = [(1, 50), (2, 49), (90, 1)].into_iter().collect();
        assert_eq!((pct(&h, 50.0), pct(&h, 99.0), pct(&h, 100.0)), (Some(1), Some(2), Some(90)));
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
    }
}
