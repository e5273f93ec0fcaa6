//! `roster-bench soak`: many users, one page each, held for a long time under continuous churn,
//! while the server's RSS, descriptors and live tasks are sampled. See bench/README.md ("soak").
//!
//! The orchestrator (this module) splits the users over worker processes (`soak-worker`), starts
//! the churn once every page is open, toggles a trigger user's presence every few seconds (every
//! page that keeps up must see each change), samples every node into a CSV, then drains: churn
//! stops, every page is checked against the truth (who has a page open, the accounts), the
//! server's own snapshot too, and once the workers exit, the server must fall back to what it
//! held before: no descriptor, task or socket left behind.

pub mod ipc;
mod reader;
mod rng;
mod sample;
mod summary;
pub mod worker;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::child::Worker;
use presence::client::{Frame, Parsed};

use crate::ws::{self, now_us, Mode, Target};
use crate::{base, emit, http};
use ipc::{Change, SoakCmd, SoakInit, SoakReport, SoakStats, Truth, UserSpec, Verdict};
use sample::{Csv, NodeSample};
use summary::Timeline;

#[derive(Args, Clone)]
pub struct SoakArgs {
    /// Base URL of a node (repeat for a cluster: each page load and socket picks one at random).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// PID of each node, in the order of `--url` (RSS and descriptors are read from /proc).
    #[arg(long = "server-pid")]
    pids: Vec<u32>,
    /// Users, one page each: `{prefix}0` .. `{prefix}{N-1}` (sign them up or import them first).
    #[arg(long, default_value_t = 15_000)]
    users: u64,
    /// How long to churn.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Samples are taken this often.
    #[arg(long, default_value_t = 5)]
    sample_secs: u64,
    /// The CSV of samples (one row per node and sample).
    #[arg(long)]
    csv: PathBuf,
    #[arg(long, default_value = "bench")]
    prefix: String,
    #[arg(long, default_value = "bench-pass-4821")]
    password: String,
    /// Session cookies by username (JSON); users not in it log in through the form first.
    #[arg(long)]
    cookie_cache: Option<PathBuf>,
    /// Weights of the pages' protocols: page (roster.v2 on `--window`, what the built-in page
    /// speaks), roster.v1, tutorial frames.
    #[arg(long, default_value = "page=8,v1=1,tutorial=1")]
    mix: String,
    /// Page mode: the handshake URL's query.
    #[arg(long, default_value = "offset=0&limit=200&q=")]
    window: String,
    /// One user in this many reads slowly (a pause after each frame, a small receive buffer) and
    /// stops reading now and then (about every 45 s); 0: nobody.
    #[arg(long, default_value_t = 10)]
    slow_every: u64,
    /// A slow reader's receive buffer (SO_RCVBUF, bytes): small, so that a stall soon fills it and
    /// then the server's send buffer.
    #[arg(long, default_value_t = 4096)]
    slow_recv_buffer: u32,
    /// How long a slow reader's stalls last: `MIN-MAX` seconds (uniform).
    #[arg(long, default_value = "5-40")]
    stall_secs: String,
    /// Churn actions per second over all users (45% reloads, 35% closes coming back 3 to 60 s
    /// later, 20% log-outs logging in again 2 to 20 s later).
    #[arg(long, default_value_t = 5.0)]
    churn_per_s: f64,
    /// Sign-ups per minute (each signs up, logs in, opens a page, stays ~3 minutes, logs out).
    #[arg(long, default_value_t = 6.0)]
    signups_per_min: f64,
    /// The user whose presence the soak toggles (it must sort before every `{prefix}{n}`, so that it
    /// shows in the first page's window; a session for it must be in the cookie cache or log in).
    #[arg(long, default_value = "bench")]
    trigger_user: String,
    #[arg(long, default_value_t = 20)]
    trigger_interval_s: u64,
    /// The server's presence grace: waited for before the final check.
    #[arg(long, default_value_t = 5.0)]
    grace_s: f64,
    /// Worker processes (default: max(4, ceil(users / 4000))).
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long, default_value_t = 8)]
    source_addrs: u8,
    /// Concurrent handshakes per worker while the pages first open.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
}

fn parse_range(s: &str) -> Result<(f64, f64), String> {
    let bad = || format!("--stall-secs {s:?}: expected MIN-MAX seconds, e.g. 5-40");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (f64, f64) = (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
    if !(0.0..=hi).contains(&lo) {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn parse_mix(s: &str) -> Result<[u32; 3], String> {
    let mut mix = [0u32; 3];
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("--mix: {part:?} is not NAME=WEIGHT"))?;
        let v: u32 = v.parse().map_err(|_| format!("--mix: {v:?} is not a whole number"))?;
        match k {
            "page" => mix[0] = v,
            "v1" => mix[1] = v,
            "tutorial" => mix[2] = v,
            _ => return Err(format!("--mix: unknown protocol {k:?} (page, v1, tutorial)")),
        }
    }
    if mix.iter().sum::<u32>() == 0 {
        return Err("--mix: every weight is 0".into());
    }
    Ok(mix)
}

struct Nodes {
    urls: Vec<String>,
    pids: Vec<Option<u32>>,
    client: reqwest::Client,
}

impl Nodes {
    fn fd_kinds(&self) -> Vec<std::collections::BTreeMap<String, u64>> {
        let port = |url: &str| url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        self.pids.iter().zip(&self.urls).map(|(pid, url)| sample::fd_kinds(*pid, port(url))).collect()
    }

    async fn sample(&self) -> Vec<NodeSample> {
        let mut out = Vec::new();
        for (url, pid) in self.urls.iter().zip(&self.pids) {
            out.push(sample::sample(&self.client, url, *pid).await);
        }
        out
    }
}

struct Workers(Vec<Worker>);

impl Workers {
    async fn ask<T: serde::de::DeserializeOwned>(&mut self, cmd: &SoakCmd) -> Result<Vec<T>, String> {
        for w in self.0.iter_mut() {
            w.send(cmd).await?;
        }
        let mut out = Vec::new();
        for w in self.0.iter_mut() {
            out.push(w.recv().await?);
        }
        Ok(out)
    }

    async fn tell(&mut self, cmd: &SoakCmd) -> Result<(), String> {
        for w in self.0.iter_mut() {
            w.send(cmd).await?;
        }
        Ok(())
    }

    async fn stats(&mut self) -> Result<SoakStats, String> {
        Ok(sum_stats(self.ask(&SoakCmd::Stats).await?))
    }
}

fn sum_stats(all: Vec<SoakStats>) -> SoakStats {
    let mut s = SoakStats::default();
    for w in all {
        s.open += w.open;
        s.users += w.users;
        s.settled += w.settled;
        s.frames += w.frames;
        s.churn.add(&w.churn);
        for e in w.errors {
            if s.errors.len() < 10 {
                s.errors.push(e);
            }
        }
    }
    s
}

/// The trigger user's page: opened and closed every `--trigger-interval-s`.
struct Trigger {
    target: Vec<Target>,
    cookie: String,
    sink: Option<futures_util::stream::SplitSink<ws::Ws, Message>>,
    flips: usize,
}

impl Trigger {
    async fn flip(&mut self) -> Result<Change, String> {
        let t_us = now_us();
        let online = self.sink.is_none();
        if online {
            let target = &self.target[self.flips % self.target.len()];
            let ws = ws::connect(target, Some(&self.cookie), None).await?;
            let (sink, mut stream) = ws.split();
            tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
            self.sink = Some(sink);
        } else if let Some(mut s) = self.sink.take() {
            let _ = s.send(Message::Close(None)).await;
            let _ = s.close().await;
        }
        self.flips += 1;
        Ok(Change { t_us, online })
    }
}

async fn load_cookies(path: &Option<PathBuf>) -> Result<HashMap<String, String>, String> {
    match path {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        }
        _ => Ok(HashMap::new()),
    }
}

/// The server's own snapshot (`GET /api/users/`): online usernames and the two counts.
async fn server_snapshot(
    client: &reqwest::Client,
    url: &str,
    cookie: &str,
) -> Result<(BTreeSet<String>, u64, u64), String> {
    let resp = client
        .get(format!("{url}/api/users/"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .map_err(|e| format!("GET /api/users/: {e}"))?;
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let frame: Frame = serde_json::from_str(&text).map_err(|e| format!("/api/users/: {e}: {text:.200}"))?;
    let online = match frame.parsed() {
        Parsed::Snapshot { online, .. } => online.into_iter().map(str::to_owned).collect(),
        _ => return Err(format!("/api/users/ is not a snapshot: {text:.200}")),
    };
    Ok((online, frame.online_count.unwrap_or(0), frame.registered_count.unwrap_or(0)))
}

pub async fn soak(a: SoakArgs) -> Result<(), String> {
    let mix = parse_mix(&a.mix)?;
    let stall_secs = parse_range(&a.stall_secs)?;
    let urls: Vec<String> = a.urls.iter().map(|u| base(u)).collect();
    if !a.pids.is_empty() && a.pids.len() != urls.len() {
        return Err("give one --server-pid per --url (or none)".into());
    }
    let pids = if a.pids.is_empty() { vec![None; urls.len()] } else { a.pids.iter().map(|p| Some(*p)).collect() };
    let nodes = Nodes { urls: urls.clone(), pids, client: http::client(None) };
    let mut csv = Csv::create(&a.csv)?;
    let t0 = Instant::now();
    let mut timeline = Timeline::new(urls.len());
    let record = |csv: &mut Csv, tl: &mut Timeline, phase: &str, samples: &[NodeSample], g: &SoakStats| {
        let t = t0.elapsed().as_secs_f64();
        tl.push(t, phase, samples, g);
        for (i, s) in samples.iter().enumerate() {
            csv.row(t, phase, i, s, g)?;
        }
        Ok::<(), String>(())
    };

    // The trigger's session, and the accounts before anything happens.
    let cookies = load_cookies(&a.cookie_cache).await?;
    let trigger_cookie = match cookies.get(&a.trigger_user) {
        Some(c) => c.clone(),
        None => http::log_in(&nodes.client, &urls[0], &a.trigger_user, &a.password).await?,
    };
    let (_, _, registered0) = server_snapshot(&nodes.client, &urls[0], &trigger_cookie).await?;
    let idle = SoakStats::default();
    record(&mut csv, &mut timeline, "before", &nodes.sample().await, &idle)?;
    let fds_before = nodes.fd_kinds();

    // Workers: user n goes to worker n % k.
    let k = a.workers.unwrap_or_else(|| 4.max(a.users.div_ceil(4000) as usize)).max(1);
    let mean_life_s = a.users as f64 / a.churn_per_s.max(1e-6);
    let mut shares: Vec<Vec<UserSpec>> = vec![Vec::new(); k];
    for n in 0..a.users {
        let cookie = cookies.get(&format!("{}{n}", a.prefix)).cloned();
        shares[(n % k as u64) as usize].push(UserSpec { num: n, cookie });
    }
    let t_connect = Instant::now();
    let mut workers = Workers(Vec::new());
    for (i, users) in shares.into_iter().enumerate() {
        let init = SoakInit {
            worker: i,
            nodes: urls.clone(),
            prefix: a.prefix.clone(),
            password: a.password.clone(),
            users,
            mix,
            window: a.window.clone(),
            slow_every: a.slow_every,
            slow_recv_buffer: a.slow_recv_buffer,
            stall_secs,
            mean_life_s,
            signups_per_s: a.signups_per_min / 60.0 / k as f64,
            // Sign-ups take the numbers after the users', worker by worker.
            signup_first: a.users + i as u64,
            signup_step: k as u64,
            source_addrs: a.source_addrs,
            connect_concurrency: a.connect_concurrency,
            seed: a.seed,
            trigger: a.trigger_user.clone(),
        };
        workers.0.push(Worker::spawn("soak-worker", &init).await?);
    }
    let mut ready = Vec::new();
    for w in workers.0.iter_mut() {
        ready.push(w.recv::<SoakStats>().await?);
    }
    let ready = sum_stats(ready);
    let connect_secs = t_connect.elapsed().as_secs_f64();
    eprintln!("soak: {} pages open of {} in {connect_secs:.1} s", ready.open, a.users);
    record(&mut csv, &mut timeline, "connected", &nodes.sample().await, &ready)?;

    // Churn.
    let _: Vec<SoakStats> = workers.ask(&SoakCmd::Go).await?;
    let mut trigger = Trigger {
        target: urls.iter().map(|u| Target::new(u, Mode::V1, "")).collect(),
        cookie: trigger_cookie.clone(),
        sink: None,
        flips: 0,
    };
    let churn_started = t0.elapsed().as_secs_f64();
    let end = Instant::now() + Duration::from_secs_f64(a.minutes * 60.0);
    let mut sample_tick = tokio::time::interval(Duration::from_secs(a.sample_secs.max(1)));
    let mut trigger_tick = tokio::time::interval(Duration::from_secs(a.trigger_interval_s.max(1)));
    let mut trigger_errors = Vec::new();
    while Instant::now() < end {
        tokio::select! {
            _ = sample_tick.tick() => {
                let g = workers.stats().await?;
                record(&mut csv, &mut timeline, "churn", &nodes.sample().await, &g)?;
            }
            _ = trigger_tick.tick() => match trigger.flip().await {
                Ok(change) => workers.tell(&SoakCmd::Change { change }).await?,
                Err(e) => if trigger_errors.len() < 5 { trigger_errors.push(e) },
            },
            _ = tokio::time::sleep_until(end.into()) => {}
        }
    }
    let churn_secs = t0.elapsed().as_secs_f64() - churn_started;

    // Drain: everyone settles; the trigger ends offline.
    let _: Vec<SoakStats> = workers.ask(&SoakCmd::Drain).await?;
    if trigger.sink.is_some() {
        let change = trigger.flip().await?;
        workers.tell(&SoakCmd::Change { change }).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut g = workers.stats().await?;
    while g.settled < g.users && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        g = workers.stats().await?;
    }
    let unsettled = g.users - g.settled.min(g.users);
    // The grace, then until no frame arrives for 2 s.
    tokio::time::sleep(Duration::from_secs_f64(a.grace_s + 1.0)).await;
    let mut last = workers.stats().await?.frames;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = workers.stats().await?.frames;
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let g = workers.stats().await?;
    record(&mut csv, &mut timeline, "drained", &nodes.sample().await, &g)?;

    // The truth: who has a page open, and the accounts. Every page must come to show it.
    let registered = registered0 + g.churn.signups;
    let verify_deadline = Instant::now() + Duration::from_secs(120);
    let (truth, verdict) = loop {
        let online: Vec<Vec<u64>> = workers.ask(&SoakCmd::Online).await?;
        let truth = Truth { online: online.into_iter().flatten().collect(), trigger_online: false, registered };
        let verdicts: Vec<Verdict> = workers.ask(&SoakCmd::Verify { truth: truth.clone() }).await?;
        let mut v = Verdict::default();
        for w in verdicts {
            v.checked += w.checked;
            v.wrong_keepup += w.wrong_keepup;
            v.wrong_slow += w.wrong_slow;
            v.examples.extend(w.examples.into_iter().take(5usize.saturating_sub(v.examples.len())));
        }
        if v.wrong_keepup + v.wrong_slow == 0 || Instant::now() > verify_deadline {
            break (truth, v);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    // Each node's own snapshot against the truth.
    let truth_names: BTreeSet<String> = truth.online.iter().map(|n| format!("{}{n}", a.prefix)).collect();
    let mut server_views = Vec::new();
    for url in &urls {
        let v = match server_snapshot(&nodes.client, url, &trigger_cookie).await {
            Ok((online, online_count, registered_count)) => json!({
                "url": url,
                "online_count": online_count,
                "registered_count": registered_count,
                "online_not_in_truth": online.difference(&truth_names).take(5).collect::<Vec<_>>(),
                "truth_not_online": truth_names.difference(&online).take(5).collect::<Vec<_>>(),
                "matches": online == truth_names && online_count == truth_names.len() as u64 && registered_count == registered,
            }),
            Err(e) => json!({"url": url, "error": e}),
        };
        server_views.push(v);
    }
    let reports: Vec<SoakReport> = workers.ask(&SoakCmd::Report).await?;
    let mut report = SoakReport::default();
    for r in &reports {
        report.churn.add(&r.churn);
        report.keepup.add(&r.keepup);
        report.slow.add(&r.slow);
        for (m, d) in &r.by_mode {
            report.by_mode.entry(m.clone()).or_default().add(d);
        }
    }
    let g = workers.stats().await?;
    record(&mut csv, &mut timeline, "checked", &nodes.sample().await, &g)?;

    // Everyone leaves: the server must let go of every socket, descriptor and task.
    for w in workers.0 {
        w.exit(&SoakCmd::Exit).await;
    }
    let idle_deadline = Instant::now() + Duration::from_secs_f64(a.grace_s + 60.0);
    let after = loop {
        let s = nodes.sample().await;
        let quiet = s.iter().all(|n| n.sockets_open == Some(0) && n.users_online == Some(0));
        if quiet || Instant::now() > idle_deadline {
            // One more sample a few seconds on: closing sockets linger (1 s) before their tasks end.
            tokio::time::sleep(Duration::from_secs(3)).await;
            break nodes.sample().await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    record(&mut csv, &mut timeline, "after", &after, &idle)?;
    let fds_after = nodes.fd_kinds();

    let mut f = vec![
        ("urls", json!(urls)),
        ("users", json!(a.users)),
        ("minutes", json!(a.minutes)),
        ("churn_seconds", json!(churn_secs.round())),
        ("mix", json!(a.mix)),
        ("slow_every", json!(a.slow_every)),
        ("slow_recv_buffer", json!(a.slow_recv_buffer)),
        ("stall_secs", json!(a.stall_secs)),
        ("churn_per_s", json!(a.churn_per_s)),
        ("signups_per_min", json!(a.signups_per_min)),
        ("workers", json!(k)),
        ("pages_opened_at_start", json!(ready.open)),
        ("connect_seconds", json!((connect_secs * 10.0).round() / 10.0)),
        ("churn", json!(report.churn)),
        ("unsettled_after_drain", json!(unsettled)),
        ("pages_checked", json!(verdict.checked)),
        ("pages_wrong_keepup", json!(verdict.wrong_keepup)),
        ("pages_wrong_slow", json!(verdict.wrong_slow)),
        ("wrong_examples", json!(verdict.examples)),
        ("truth_online", json!(truth.online.len())),
        ("truth_registered", json!(registered)),
        ("server_snapshots", json!(server_views)),
        ("trigger_changes", json!(trigger.flips)),
        ("trigger_errors", json!(trigger_errors)),
        ("generator_errors", json!(g.errors)),
        ("fd_kinds_before", json!(fds_before)),
        ("fd_kinds_after_everyone_left", json!(fds_after)),
    ];
    f.extend(summary::deliveries("keepup", &report.keepup));
    f.extend(summary::deliveries("slow", &report.slow));
    f.push((
        "keepup_by_mode",
        json!(report
            .by_mode
            .iter()
            .map(|(m, d)| (m.clone(), json!({"expected": d.expected, "missing": d.missing, "seq_gaps": d.seq_gaps, "view_gaps": d.view_gaps, "resyncs": d.resyncs, "lifetimes": d.lifetimes})))
            .collect::<serde_json::Map<_, _>>()),
    ));
    f.extend(timeline.fields(churn_started, churn_secs));
    emit("soak", f);
    Ok(())
}
