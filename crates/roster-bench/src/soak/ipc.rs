//! What the soak's orchestrator and its worker processes say to each other (JSON lines).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ws::Mode;

/// One worker's share of the users and how they behave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakInit {
    pub worker: usize,
    /// Base URLs of the nodes (`http://host:port`); each connect picks one.
    pub nodes: Vec<String>,
    pub prefix: String,
    pub password: String,
    /// This worker's users: their numbers and (if known) session cookies.
    pub users: Vec<UserSpec>,
    /// Protocol weights: page (roster.v2 on `window`), v1, tutorial.
    pub mix: [u32; 3],
    pub window: String,
    /// User `n` reads slowly and stalls if `n % slow_every == slow_every - 1` (0: nobody).
    pub slow_every: u64,
    /// A slow reader's SO_RCVBUF, and how long its stalls last (uniform, seconds).
    pub slow_recv_buffer: u32,
    pub stall_secs: (f64, f64),
    /// Mean seconds a page stays open before its user's next action.
    pub mean_life_s: f64,
    /// This worker's sign-ups per second, and the numbers they take: `first + k * step`.
    pub signups_per_s: f64,
    pub signup_first: u64,
    pub signup_step: u64,
    pub source_addrs: u8,
    pub connect_concurrency: usize,
    pub seed: u64,
    pub trigger: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserSpec {
    pub num: u64,
    pub cookie: Option<String>,
}

/// A presence change of the trigger user, made by the orchestrator at `t_us`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Change {
    pub t_us: u64,
    pub online: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum SoakCmd {
    Stats,
    /// Every page is open: start churning.
    Go,
    /// The trigger changed (readers' deliveries are checked against these).
    Change {
        change: Change,
    },
    /// Stop churning: every user finishes what it is doing, then keeps its page open (reading at
    /// full speed) or stays away.
    Drain,
    /// The users whose page is open now.
    Online,
    /// Check every open page against the truth.
    Verify {
        truth: Truth,
    },
    Report,
    Exit,
}

/// The answer to `ready` (initial connects done) and `stats`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SoakStats {
    /// Pages open now.
    pub open: u64,
    /// User tasks alive, and how many of them have settled after `drain`.
    pub users: u64,
    pub settled: u64,
    pub frames: u64,
    pub churn: Churn,
    pub errors: Vec<String>,
}

/// Counts of what the users did (and what was done to them).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Churn {
    pub connects: u64,
    pub connect_failures: u64,
    pub closes: u64,
    pub reloads: u64,
    pub logins: u64,
    pub login_failures: u64,
    pub logouts: u64,
    pub logout_failures: u64,
    pub signups: u64,
    pub signup_failures: u64,
    pub page_loads: u64,
    pub page_load_failures: u64,
    /// Pages the server closed, by reason (`close 1013`, `close 4001`, `eof`, ...).
    pub server_closes: BTreeMap<String, u64>,
}

impl Churn {
    pub fn add(&mut self, o: &Churn) {
        self.connects += o.connects;
        self.connect_failures += o.connect_failures;
        self.closes += o.closes;
        self.reloads += o.reloads;
        self.logins += o.logins;
        self.login_failures += o.login_failures;
        self.logouts += o.logouts;
        self.logout_failures += o.logout_failures;
        self.signups += o.signups;
        self.signup_failures += o.signup_failures;
        self.page_loads += o.page_loads;
        self.page_load_failures += o.page_load_failures;
        for (k, v) in &o.server_closes {
            *self.server_closes.entry(k.clone()).or_default() += v;
        }
    }
}

/// What every open page should show at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Truth {
    /// Numbers of the users online (`{prefix}{n}`).
    pub online: Vec<u64>,
    pub trigger_online: bool,
    pub registered: u64,
}

/// Pages found wrong, by kind of reader.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub checked: u64,
    pub wrong_keepup: u64,
    pub wrong_slow: u64,
    pub examples: Vec<String>,
}

/// Deliveries of the trigger's changes and stream integrity, for readers that keep up
/// (`keepup`) and slow ones (`slow`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Deliveries {
    pub expected: u64,
    pub delivered: u64,
    pub missing: u64,
    /// Latency histograms in ms (key: ms), online and offline changes apart.
    pub online_ms: BTreeMap<u64, u64>,
    pub offline_ms: BTreeMap<u64, u64>,
    /// roster.v1 diffs whose seq was not one more than the previous frame's.
    pub seq_gaps: u64,
    /// roster.v2 frames the page's model refused (a gap: it re-subscribes).
    pub view_gaps: u64,
    /// Snapshots after a page's first (the server's lag path resynced it).
    pub resyncs: u64,
    /// Page lifetimes counted.
    pub lifetimes: u64,
    pub frames: u64,
    pub examples: Vec<String>,
}

impl Deliveries {
    pub fn add(&mut self, o: &Deliveries) {
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.missing += o.missing;
        for (k, v) in &o.online_ms {
            *self.online_ms.entry(*k).or_default() += v;
        }
        for (k, v) in &o.offline_ms {
            *self.offline_ms.entry(*k).or_default() += v;
        }
        self.seq_gaps += o.seq_gaps;
        self.view_gaps += o.view_gaps;
        self.resyncs += o.resyncs;
        self.lifetimes += o.lifetimes;
        self.frames += o.frames;
        for e in &o.examples {
            if self.examples.len() < 5 {
                self.examples.push(e.clone());
            }
        }
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SoakReport {
    pub churn: Churn,
    pub keepup: Deliveries,
    pub slow: Deliveries,
    /// Per protocol (page, v1, tutorial): keep-up deliveries.
    pub by_mode: BTreeMap<String, Deliveries>,
}

pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Page => "page",
        Mode::V1 => "v1",
        Mode::Tutorial => "tutorial",
        Mode::Floor => "floor",
    }
}
