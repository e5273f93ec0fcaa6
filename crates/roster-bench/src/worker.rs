//! The hidden `worker` subcommand: one process holding a share of the watcher sockets.
//!
//! The orchestrator writes one JSON [`WorkerInit`] line on the worker's stdin; the worker
//! opens its sockets, prints one JSON [`Ready`] line, then answers [`Cmd`] lines, one JSON
//! line each. A process can hold ~19,000 sockets (open-file limit 20,000), so N sockets are
//! spread over several workers and over loopback source addresses.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use presence::client::{Frame, Parsed, SeqError, Sequence};
use presence::protocol::views::{parse_view_frame, view_request, PageView, ViewFrame};
use presence::Window;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::ws::{self, now_us, Mode, Target};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SockSpec {
    pub cookie: Option<String>,
    pub src: Option<IpAddr>,
    /// The node it connects to: an index into [`WorkerInit::targets`].
    pub node: usize,
}

/// Users `{prefix}{start}` .. `{prefix}{start+count-1}` whose final state is Online.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormRange {
    pub prefix: String,
    pub start: u64,
    pub count: u64,
}

/// Page mode: what every watcher's window should end up showing: these online users first (the
/// window's slice of the online part of the list), then only offline users, and the online count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageExpect {
    pub usernames: Vec<String>,
    pub online: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInit {
    /// Every node's target (one unless a cluster); all speak the same mode.
    pub targets: Vec<Target>,
    pub sockets: Vec<SockSpec>,
    pub connect_concurrency: usize,
    pub trigger_user: String,
    pub storm: Option<StormRange>,
    /// Page mode: the handshake's window query (to re-subscribe after a gap, as the page does).
    pub window: Option<String>,
    /// Page mode, storm: what a converged watcher shows.
    pub expect: Option<PageExpect>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Change {
    pub t_us: u64,
    pub online: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Cmd {
    /// Light counters (frames so far, watchers converged, sockets closed).
    Stats,
    /// Remember every socket's frame count (start of a storm).
    Mark,
    /// Full results; latencies are matched against `changes`.
    Report {
        changes: Vec<Change>,
    },
    Exit,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ready {
    pub ok: u64,
    /// Sockets connected to each node, in the order of the targets.
    pub ok_by_node: Vec<u64>,
    pub failed: u64,
    pub errors: Vec<String>,
    pub start_us: u64,
    pub end_us: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub frames: u64,
    pub converged: u64,
    pub closed: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// One per (watcher, change) delivered, in µs, by the node the watcher is on.
    pub latencies_us: Vec<Vec<u64>>,
    pub missing: u64,
    pub frames_total: u64,
    /// Per watcher: frames since the last `mark`.
    pub frames_since_mark: Vec<u64>,
    /// Per watcher: when it first held the exact final storm state (and kept it), µs since epoch.
    pub converged_at_us: Vec<Option<u64>>,
    pub closed: u64,
    pub close_reasons: Vec<String>,
    pub seq_gaps: u64,
    pub snapshots: u64,
    /// Text bytes received, in all.
    pub bytes_total: u64,
    /// Per watcher: text bytes since the last `mark`.
    pub bytes_since_mark: Vec<u64>,
    /// Per watcher: the size of its first frame (roster.v1 and page: its snapshot).
    pub first_frame_bytes: Vec<u64>,
    /// Page mode: the most operations in one diff since the last `mark`.
    pub ops_max_since_mark: u64,
    /// Per change: the fastest and the slowest delivery, in µs (`u64::MAX` / 0 when none).
    pub change_first_us: Vec<u64>,
    pub change_last_us: Vec<u64>,
}

#[derive(Default)]
struct SockState {
    frames: u64,
    mark: u64,
    /// (receive time, online) of every frame about the trigger user.
    trig: Vec<(u64, bool)>,
    bits: Vec<u64>,
    count: u64,
    converged_at: Option<u64>,
    seq: Sequence,
    seq_gaps: u64,
    snapshots: u64,
    closed: Option<String>,
    bytes: u64,
    mark_bytes: u64,
    first_bytes: u64,
    /// Page mode: the window as the page would show it, whether the trigger is online in it,
    /// and the most operations in one diff since the mark.
    view: Option<PageView>,
    trig_online: bool,
    ops_max: u64,
}

struct Ctx {
    trigger: String,
    storm: Option<StormRange>,
    mode: Mode,
    window: Option<Window>,
    expect: Option<PageExpect>,
}

impl Ctx {
    fn storm_index(&self, name: &str) -> Option<usize> {
        let s = self.storm.as_ref()?;
        let n: u64 = name.strip_prefix(s.prefix.as_str())?.parse().ok()?;
        (n >= s.start && n < s.start + s.count).then(|| (n - s.start) as usize)
    }

    fn set(&self, st: &mut SockState, name: &str, online: bool) {
        let Some(i) = self.storm_index(name) else { return };
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let was = st.bits[w] & b != 0;
        if online && !was {
            st.bits[w] |= b;
            st.count += 1;
        } else if !online && was {
            st.bits[w] &= !b;
            st.count -= 1;
        }
    }

    /// A page's frame: applied to its window as the page script applies it. Returns the view
    /// request to send when the stream had a gap (the page re-subscribes; it never guesses).
    fn on_page(&self, st: &mut SockState, text: &str, recv: u64) -> Option<String> {
        let view = st.view.get_or_insert_with(PageView::default);
        let Ok(frame) = parse_view_frame(text.as_bytes()) else { return None };
        match &frame {
            ViewFrame::Snapshot(_) => st.snapshots += 1,
            ViewFrame::Diff(d) => st.ops_max = st.ops_max.max(d.ops.len() as u64),
            ViewFrame::Error { .. } => {}
        }
        let mut resubscribe = None;
        if view.apply(frame).is_err() {
            st.seq_gaps += 1;
            let id = view.requested + 1;
            view.requested(id);
            resubscribe = self.window.as_ref().map(|w| view_request(id, w));
        }
        let online = view.users.iter().any(|u| u.online && u.username == self.trigger);
        if online != st.trig_online {
            st.trig_online = online;
            st.trig.push((recv, online));
        }
        if let Some(e) = &self.expect {
            let n = e.usernames.len();
            let exact = view.live
                && view.counts.online_count == e.online
                && view.users.len() >= n
                && view.users.iter().zip(&e.usernames).all(|(u, name)| u.online && u.username == *name)
                && view.users.iter().skip(n).all(|u| !u.online);
            if exact {
                st.converged_at.get_or_insert(recv);
            } else {
                st.converged_at = None;
            }
        }
        resubscribe
    }

    fn on_text(&self, st: &mut SockState, text: &str, recv: u64) -> Option<String> {
        st.frames += 1;
        st.bytes += text.len() as u64;
        if st.frames == 1 {
            st.first_bytes = text.len() as u64;
        }
        if self.mode == Mode::Page {
            return self.on_page(st, text, recv);
        }
        self.on_v1_or_tutorial(st, text, recv);
        None
    }

    fn on_v1_or_tutorial(&self, st: &mut SockState, text: &str, recv: u64) {
        let Ok(frame) = Frame::parse(text) else { return };
        match frame.parsed() {
            Parsed::Snapshot { seq, online } => {
                st.snapshots += 1;
                st.seq.snapshot(seq);
                st.bits.iter_mut().for_each(|w| *w = 0);
                st.count = 0;
                for name in online {
                    if name == self.trigger {
                        st.trig.push((recv, true));
                    }
                    self.set(st, name, true);
                }
            }
            Parsed::Changes { seq, changes } => {
                // Missed, repeated or late diffs count; a diff before the first snapshot does not.
                if let Some(Err(SeqError::Stale { .. } | SeqError::Gap { .. })) = seq.map(|s| st.seq.diff(s)) {
                    st.seq_gaps += 1;
                }
                for c in changes {
                    if c.username == self.trigger {
                        st.trig.push((recv, c.online));
                    }
                    self.set(st, c.username, c.online);
                }
            }
            Parsed::Other => {}
        }
        if let Some(s) = &self.storm {
            if st.count == s.count {
                st.converged_at.get_or_insert(recv);
            } else {
                st.converged_at = None;
            }
        }
    }
}

fn out_line<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).expect("json");
    s.push('\n');
    s
}

pub fn run() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(run_async())
}

async fn run_async() -> Result<(), String> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let init: WorkerInit = match lines.next_line().await.map_err(|e| e.to_string())? {
        Some(l) => serde_json::from_str(&l).map_err(|e| format!("init: {e}"))?,
        None => return Ok(()),
    };
    let words = init.storm.as_ref().map(|s| s.count.div_ceil(64) as usize).unwrap_or(0);
    let states: Arc<Vec<Mutex<SockState>>> = Arc::new(
        (0..init.sockets.len()).map(|_| Mutex::new(SockState { bits: vec![0; words], ..Default::default() })).collect(),
    );
    let ctx = Arc::new(Ctx {
        trigger: init.trigger_user.clone(),
        storm: init.storm.clone(),
        mode: init.targets.first().ok_or("init: no target")?.mode,
        window: init.window.as_deref().and_then(|q| Window::from_query(q, 200).ok()),
        expect: init.expect.clone(),
    });
    let targets = Arc::new(init.targets.clone());
    let nodes: Vec<usize> = init.sockets.iter().map(|s| s.node).collect();
    if let Some(n) = nodes.iter().find(|&&n| n >= targets.len()) {
        return Err(format!("init: node {n} of {} targets", targets.len()));
    }

    // Connect everything, bounded concurrency.
    let sem = Arc::new(Semaphore::new(init.connect_concurrency.max(1)));
    let start_us = now_us();
    let mut tasks = Vec::with_capacity(init.sockets.len());
    for (i, spec) in init.sockets.iter().cloned().enumerate() {
        let sem = sem.clone();
        let targets = targets.clone();
        let states = states.clone();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.expect("semaphore");
            let ws = ws::connect(&targets[spec.node], spec.cookie.as_deref(), spec.src).await;
            drop(permit);
            let mut ws = ws?;
            tokio::spawn(async move {
                let reason = loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            let recv = now_us();
                            let resubscribe = ctx.on_text(&mut states[i].lock().expect("state"), t.as_str(), recv);
                            if let Some(request) = resubscribe {
                                if let Err(e) = ws.send(Message::text(request)).await {
                                    break format!("error: {e}");
                                }
                            }
                        }
                        Some(Ok(Message::Close(f))) => {
                            break f
                                .map(|f| format!("close {} {}", u16::from(f.code), f.reason))
                                .unwrap_or_else(|| "close".into())
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break format!("error: {e}"),
                        None => break "eof".into(),
                    }
                };
                states[i].lock().expect("state").closed = Some(reason);
            });
            Ok::<(), String>(())
        }));
    }
    let mut ready = Ready { start_us, ok_by_node: vec![0; targets.len()], ..Default::default() };
    for (t, &node) in tasks.into_iter().zip(&nodes) {
        match t.await {
            Ok(Ok(())) => {
                ready.ok += 1;
                ready.ok_by_node[node] += 1;
            }
            Ok(Err(e)) => {
                ready.failed += 1;
                if ready.errors.len() < 5 {
                    ready.errors.push(e);
                }
            }
            Err(e) => {
                ready.failed += 1;
                ready.errors.push(e.to_string());
            }
        }
    }
    ready.end_us = now_us();
    stdout.write_all(out_line(&ready).as_bytes()).await.map_err(|e| e.to_string())?;
    stdout.flush().await.map_err(|e| e.to_string())?;

    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let cmd: Cmd = serde_json::from_str(&line).map_err(|e| format!("cmd: {e}"))?;
        let reply = match cmd {
            Cmd::Exit => break,
            Cmd::Stats => {
                let mut s = Stats::default();
                for st in states.iter() {
                    let st = st.lock().expect("state");
                    s.frames += st.frames;
                    s.converged += u64::from(st.converged_at.is_some());
                    s.closed += u64::from(st.closed.is_some());
                }
                out_line(&s)
            }
            Cmd::Mark => {
                for st in states.iter() {
                    let mut st = st.lock().expect("state");
                    st.mark = st.frames;
                    st.mark_bytes = st.bytes;
                    st.ops_max = 0;
                }
                out_line(&Stats::default())
            }
            Cmd::Report { changes } => out_line(&report(&states, &nodes, targets.len(), &changes)),
        };
        stdout.write_all(reply.as_bytes()).await.map_err(|e| e.to_string())?;
        stdout.flush().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn report(states: &[Mutex<SockState>], nodes: &[usize], targets: usize, changes: &[Change]) -> Report {
    let mut r = Report {
        latencies_us: vec![Vec::new(); targets],
        change_first_us: vec![u64::MAX; changes.len()],
        change_last_us: vec![0; changes.len()],
        ..Default::default()
    };
    for (st, &node) in states.iter().zip(nodes) {
        let st = st.lock().expect("state");
        r.frames_total += st.frames;
        r.frames_since_mark.push(st.frames - st.mark);
        r.converged_at_us.push(st.converged_at);
        r.seq_gaps += st.seq_gaps;
        r.snapshots += st.snapshots;
        r.bytes_total += st.bytes;
        r.bytes_since_mark.push(st.bytes - st.mark_bytes);
        r.first_frame_bytes.push(st.first_bytes);
        r.ops_max_since_mark = r.ops_max_since_mark.max(st.ops_max);
        if let Some(reason) = &st.closed {
            r.closed += 1;
            if r.close_reasons.len() < 5 {
                r.close_reasons.push(reason.clone());
            }
        }
        // Change k is delivered by the first frame about the trigger with the same state
        // received in [t_k, t_{k+2}) (t_{k+1} has the opposite state).
        for (k, c) in changes.iter().enumerate() {
            let end = changes.get(k + 2).map(|c| c.t_us).unwrap_or(u64::MAX);
            match st.trig.iter().find(|(t, on)| *t >= c.t_us && *t < end && *on == c.online) {
                Some((t, _)) => {
                    let us = t - c.t_us;
                    r.latencies_us[node].push(us);
                    r.change_first_us[k] = r.change_first_us[k].min(us);
                    r.change_last_us[k] = r.change_last_us[k].max(us);
                }
                None => r.missing += 1,
            }
        }
    }
    r
}
