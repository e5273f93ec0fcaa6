//! The worker processes of one scenario: each is this binary re-executed as the hidden `worker`
//! subcommand, handed a share of the sockets as one JSON line, then driven by [`Cmd`] lines
//! (one JSON reply each). [`Pool`] starts them, spreads the sockets and sums their answers.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::child::Worker;
use crate::worker::{Change, Cmd, PageExpect, Ready, Report, SockSpec, Stats, StormRange, WorkerInit};
use crate::ws::{Mode, Target};
use crate::{page_window, Common};

pub struct Pool {
    workers: Vec<Worker>,
    pub ready: Ready,
}

impl Pool {
    /// Start the workers, hand each its share of `specs`, wait until all have connected. A spec's
    /// `node` indexes `targets`.
    pub async fn start(
        c: &Common,
        targets: &[Target],
        specs: Vec<SockSpec>,
        trigger_user: &str,
        storm: Option<StormRange>,
        expect: Option<PageExpect>,
    ) -> Result<Pool, String> {
        // Checked here; the workers parse it again (the window type has no serde on purpose).
        let window = (c.mode == Mode::Page).then(|| page_window(c).map(|_| c.window.clone())).transpose()?;
        let n = specs.len();
        let k = c.workers.unwrap_or_else(|| 2.max(n.div_ceil(15_000))).clamp(1, n.max(1));
        let mut shares: Vec<Vec<SockSpec>> = vec![Vec::new(); k];
        for (j, s) in specs.into_iter().enumerate() {
            shares[j % k].push(s);
        }
        let mut workers = Vec::new();
        for share in shares {
            let init = WorkerInit {
                targets: targets.to_vec(),
                sockets: share,
                connect_concurrency: c.connect_concurrency,
                trigger_user: trigger_user.to_string(),
                storm: storm.clone(),
                window: window.clone(),
                expect: expect.clone(),
            };
            workers.push(Worker::spawn("worker", &init).await?);
        }
        let mut ready = Ready { start_us: u64::MAX, ok_by_node: vec![0; targets.len()], ..Default::default() };
        for w in workers.iter_mut() {
            let r: Ready = w.recv().await?;
            ready.ok += r.ok;
            for (sum, ok) in ready.ok_by_node.iter_mut().zip(r.ok_by_node) {
                *sum += ok;
            }
            ready.failed += r.failed;
            ready.start_us = ready.start_us.min(r.start_us);
            ready.end_us = ready.end_us.max(r.end_us);
            for e in r.errors {
                if ready.errors.len() < 5 {
                    ready.errors.push(e);
                }
            }
        }
        Ok(Pool { workers, ready })
    }

    pub async fn stats(&mut self) -> Result<Stats, String> {
        let mut s = Stats::default();
        for w in self.workers.iter_mut() {
            w.send(&Cmd::Stats).await?;
        }
        for w in self.workers.iter_mut() {
            let r: Stats = w.recv().await?;
            s.frames += r.frames;
            s.converged += r.converged;
            s.closed += r.closed;
        }
        Ok(s)
    }

    pub async fn mark(&mut self) -> Result<(), String> {
        for w in self.workers.iter_mut() {
            w.send(&Cmd::Mark).await?;
        }
        for w in self.workers.iter_mut() {
            let _: Stats = w.recv().await?;
        }
        Ok(())
    }

    pub async fn report(&mut self, changes: &[Change]) -> Result<Report, String> {
        for w in self.workers.iter_mut() {
            w.send(&Cmd::Report { changes: changes.to_vec() }).await?;
        }
        let mut all = Report::default();
        for w in self.workers.iter_mut() {
            let r: Report = w.recv().await?;
            if all.latencies_us.len() < r.latencies_us.len() {
                all.latencies_us.resize(r.latencies_us.len(), Vec::new());
            }
            for (all, node) in all.latencies_us.iter_mut().zip(r.latencies_us) {
                all.extend(node);
            }
            all.missing += r.missing;
            all.frames_total += r.frames_total;
            all.frames_since_mark.extend(r.frames_since_mark);
            all.converged_at_us.extend(r.converged_at_us);
            all.closed += r.closed;
            all.seq_gaps += r.seq_gaps;
            all.snapshots += r.snapshots;
            all.bytes_total += r.bytes_total;
            all.bytes_since_mark.extend(r.bytes_since_mark);
            all.first_frame_bytes.extend(r.first_frame_bytes);
            all.ops_max_since_mark = all.ops_max_since_mark.max(r.ops_max_since_mark);
            if all.change_first_us.len() < r.change_first_us.len() {
                all.change_first_us.resize(r.change_first_us.len(), u64::MAX);
                all.change_last_us.resize(r.change_last_us.len(), 0);
            }
            for (all, us) in all.change_first_us.iter_mut().zip(r.change_first_us) {
                *all = (*all).min(us);
            }
            for (all, us) in all.change_last_us.iter_mut().zip(r.change_last_us) {
                *all = (*all).max(us);
            }
            for e in r.close_reasons {
                if all.close_reasons.len() < 5 {
                    all.close_reasons.push(e);
                }
            }
        }
        Ok(all)
    }

    /// Wait until no frame arrived for `quiet_ms` (connect-time broadcasts have drained).
    pub async fn quiet(&mut self, c: &Common) -> Result<f64, String> {
        let t0 = Instant::now();
        let mut last = self.stats().await?.frames;
        loop {
            tokio::time::sleep(Duration::from_millis(c.quiet_ms)).await;
            let now = self.stats().await?.frames;
            if now == last || t0.elapsed() > Duration::from_secs(c.quiet_max_secs) {
                return Ok(t0.elapsed().as_secs_f64());
            }
            last = now;
        }
    }

    pub async fn exit(self) {
        for w in self.workers {
            w.exit(&Cmd::Exit).await;
        }
    }

    pub fn connect_fields(&self) -> Vec<(&'static str, Value)> {
        let secs = self.ready.end_us.saturating_sub(self.ready.start_us) as f64 / 1e6;
        vec![
            ("connected", json!(self.ready.ok)),
            ("connect_failed", json!(self.ready.failed)),
            ("connect_errors", json!(self.ready.errors)),
            ("connect_seconds", json!((secs * 100.0).round() / 100.0)),
            ("connects_per_s", json!((self.ready.ok as f64 / secs.max(1e-6)).round())),
            ("workers", json!(self.workers.len())),
        ]
    }
}
