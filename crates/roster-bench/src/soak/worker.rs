//! The hidden `soak-worker` subcommand: one process running a share of the soak's users, each
//! a task that keeps one page open and churns: reloads, closes and comes back, logs out and in;
//! sign-ups arrive, look around and leave. One user in `slow_every` reads slowly and stalls.
//!
//! Phases (set by the orchestrator): `connect` (open every page, hold), `churn`, `drain` (finish
//! what you are doing, then hold your page open reading at full speed, or stay away).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use presence::Window;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

use super::ipc::{mode_name, Change, Churn, SoakCmd, SoakInit, SoakReport, SoakStats, Truth, Verdict};
use super::reader::{Names, Page, TruthView};
use super::rng::Rng;
use crate::ws::{self, now_us, Mode, Target, Ws};
use crate::{http, src_addr};

/// A slow reader between stalls: a pause after every frame.
const SLOW_FRAME_PAUSE: Duration = Duration::from_millis(150);
/// Stalls: every ~`SLOW_STALL_EVERY_S` seconds (exponential), for `stall_secs` (uniform).
const SLOW_STALL_EVERY_S: f64 = 45.0;
/// A page whose handshake takes longer counts as a failed connect (and is tried again).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A sign-up stays this long on average, then logs out and leaves.
const SIGNUP_STAY_S: f64 = 180.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    Churn,
    Drain,
}

enum Ended {
    Deadline,
    Phase,
    Closed(String),
}

enum Action {
    Reload,
    Close,
    LogOut,
}

struct Slot {
    num: u64,
    page: Mutex<Option<Page>>,
}

struct Worker {
    init: SoakInit,
    names: Names,
    window: Option<Window>,
    /// Per node: the targets of page, v1 and tutorial sockets.
    targets: Vec<[Target; 3]>,
    clients: Vec<reqwest::Client>,
    phase: watch::Sender<Phase>,
    changes: Mutex<Vec<Change>>,
    slots: Mutex<Vec<Arc<Slot>>>,
    churn: Mutex<Churn>,
    report: Mutex<SoakReport>,
    errors: Mutex<Vec<String>>,
    frames: AtomicU64,
    users: AtomicU64,
    settled: AtomicU64,
    connecting: Semaphore,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn run() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(run_async())
}

async fn run_async() -> Result<(), String> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let init: SoakInit = match lines.next_line().await.map_err(|e| e.to_string())? {
        Some(l) => serde_json::from_str(&l).map_err(|e| format!("init: {e}"))?,
        None => return Ok(()),
    };
    let window = Window::from_query(&init.window, 200).map_err(|e| format!("window: {e}"))?;
    let targets = init
        .nodes
        .iter()
        .map(|b| [Mode::Page, Mode::V1, Mode::Tutorial].map(|m| Target::new(b, m, &init.window)))
        .collect();
    let n_src = init.source_addrs.max(1) as usize;
    let clients = (0..n_src).map(|i| http::client(src_addr(i, init.source_addrs))).collect();
    let (phase, _) = watch::channel(Phase::Connect);
    let w = Arc::new(Worker {
        names: Names { prefix: init.prefix.clone(), trigger: init.trigger.clone() },
        window: Some(window),
        targets,
        clients,
        phase,
        changes: Mutex::new(Vec::new()),
        slots: Mutex::new(Vec::new()),
        churn: Mutex::new(Churn::default()),
        report: Mutex::new(SoakReport::default()),
        errors: Mutex::new(Vec::new()),
        frames: AtomicU64::new(0),
        users: AtomicU64::new(0),
        settled: AtomicU64::new(0),
        connecting: Semaphore::new(init.connect_concurrency.max(1)),
        init,
    });

    // Every user opens its page; the worker is ready when all have tried once.
    let (first_tx, mut first_rx) = mpsc::unbounded_channel();
    let users = w.init.users.clone();
    for u in &users {
        let (w, tx) = (w.clone(), first_tx.clone());
        let slot = w.add_slot(u.num);
        let cookie = u.cookie.clone();
        tokio::spawn(async move { w.user(slot, cookie, None, Some(tx)).await });
    }
    drop(first_tx);
    while first_rx.recv().await.is_some() {}
    w.signups();
    write_line(&mut stdout, &w.stats()).await?;

    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let cmd: SoakCmd = serde_json::from_str(&line).map_err(|e| format!("cmd: {e}"))?;
        match cmd {
            SoakCmd::Exit => break,
            SoakCmd::Stats => write_line(&mut stdout, &w.stats()).await?,
            SoakCmd::Change { change } => {
                lock(&w.changes).push(change);
                continue;
            }
            SoakCmd::Go => {
                w.phase.send_replace(Phase::Churn);
                write_line(&mut stdout, &w.stats()).await?;
            }
            SoakCmd::Drain => {
                w.phase.send_replace(Phase::Drain);
                write_line(&mut stdout, &w.stats()).await?;
            }
            SoakCmd::Online => write_line(&mut stdout, &w.online()).await?,
            SoakCmd::Verify { truth } => write_line(&mut stdout, &w.verify(&truth)).await?,
            SoakCmd::Report => write_line(&mut stdout, &w.final_report()).await?,
        }
    }
    Ok(())
}

async fn write_line<T: serde::Serialize>(out: &mut tokio::io::Stdout, v: &T) -> Result<(), String> {
    let mut s = serde_json::to_string(v).map_err(|e| e.to_string())?;
    s.push('\n');
    out.write_all(s.as_bytes()).await.map_err(|e| e.to_string())?;
    out.flush().await.map_err(|e| e.to_string())
}

impl Worker {
    fn add_slot(&self, num: u64) -> Arc<Slot> {
        let slot = Arc::new(Slot { num, page: Mutex::new(None) });
        lock(&self.slots).push(slot.clone());
        slot
    }

    fn mode_of(&self, num: u64) -> Mode {
        let [page, v1, tutorial] = self.init.mix;
        let total = (page + v1 + tutorial).max(1) as u64;
        // Spread the modes over numbers (a fixed hash, so slow readers get every mode too).
        let h = num.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        match h % total {
            x if x < page as u64 => Mode::Page,
            x if x < (page + v1) as u64 => Mode::V1,
            _ => Mode::Tutorial,
        }
    }

    fn is_slow(&self, num: u64) -> bool {
        let k = self.init.slow_every;
        k > 0 && num % k == k - 1
    }

    fn client(&self, num: u64) -> &reqwest::Client {
        &self.clients[num as usize % self.clients.len()]
    }

    fn error(&self, e: String) {
        let mut errors = lock(&self.errors);
        if errors.len() < 20 {
            errors.push(e);
        }
    }

    fn count(&self, f: impl FnOnce(&mut Churn)) {
        f(&mut lock(&self.churn));
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    fn stats(&self) -> SoakStats {
        let open = lock(&self.slots).iter().filter(|s| lock(&s.page).is_some()).count() as u64;
        SoakStats {
            open,
            users: self.users.load(Ordering::Relaxed),
            settled: self.settled.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            churn: lock(&self.churn).clone(),
            errors: lock(&self.errors).clone(),
        }
    }

    fn online(&self) -> Vec<u64> {
        lock(&self.slots).iter().filter(|s| lock(&s.page).is_some()).map(|s| s.num).collect()
    }

    fn verify(&self, truth: &Truth) -> Verdict {
        let t = TruthView::new(truth, &self.names, self.window.clone());
        let mut v = Verdict::default();
        for s in lock(&self.slots).iter() {
            let page = lock(&s.page);
            let Some(p) = page.as_ref() else { continue };
            v.checked += 1;
            if let Err(e) = p.check(&t) {
                if p.slow {
                    v.wrong_slow += 1;
                } else {
                    v.wrong_keepup += 1;
                }
                if v.examples.len() < 5 {
                    v.examples.push(format!("{}{} ({}): {e}", self.init.prefix, s.num, mode_name(p.mode)));
                }
            }
        }
        v
    }

    /// The report so far, with every open page counted as if it closed now.
    fn final_report(&self) -> SoakReport {
        let mut r = lock(&self.report).clone();
        let changes = lock(&self.changes).clone();
        let now = now_us();
        for s in lock(&self.slots).iter() {
            if let Some(p) = lock(&s.page).as_ref() {
                add_lifetime(&mut r, p, &changes, now);
            }
        }
        r.churn = lock(&self.churn).clone();
        r
    }

    /// A page closed: its deliveries go into the report.
    fn finish(&self, slot: &Slot) {
        let Some(page) = lock(&slot.page).take() else { return };
        let changes = lock(&self.changes).clone();
        add_lifetime(&mut lock(&self.report), &page, &changes, now_us());
    }

    /// Sign-ups: new accounts arriving at this worker's rate, each a user of its own for a while.
    fn signups(self: &Arc<Self>) {
        if self.init.signups_per_s <= 0.0 {
            return;
        }
        let w = self.clone();
        tokio::spawn(async move {
            let mut rng = Rng::new(w.init.seed ^ 0x5157_0000 ^ w.init.worker as u64);
            let mut phase = w.phase.subscribe();
            let mut k = 0u64;
            loop {
                if w.phase() == Phase::Drain {
                    return;
                }
                let pause = Duration::from_secs_f64(rng.exp(1.0 / w.init.signups_per_s));
                tokio::select! {
                    _ = sleep(pause) => {}
                    _ = phase.changed() => continue,
                }
                if w.phase() != Phase::Churn {
                    continue;
                }
                let num = w.init.signup_first + k * w.init.signup_step;
                k += 1;
                let w2 = w.clone();
                tokio::spawn(async move {
                    let name = w2.names.name(num);
                    let base = w2.init.nodes[num as usize % w2.init.nodes.len()].clone();
                    match http::sign_up(w2.client(num), &base, &name, &w2.init.password).await {
                        Ok(http::SignUp::Created) => w2.count(|c| c.signups += 1),
                        Ok(http::SignUp::Rejected) => {
                            w2.count(|c| c.signup_failures += 1);
                            w2.error(format!("sign up {name}: the form came back"));
                            return;
                        }
                        Err(e) => {
                            w2.count(|c| c.signup_failures += 1);
                            w2.error(format!("sign up {name}: {e}"));
                            return;
                        }
                    }
                    let stay = Instant::now() + Duration::from_secs_f64(Rng::new(num).exp(SIGNUP_STAY_S));
                    let slot = w2.add_slot(num);
                    w2.user(slot, None, Some(stay), None).await;
                });
            }
        });
    }

    async fn log_in(&self, num: u64, base: &str) -> Option<String> {
        match http::log_in(self.client(num), base, &self.names.name(num), &self.init.password).await {
            Ok(c) => {
                self.count(|c| c.logins += 1);
                Some(c)
            }
            Err(e) => {
                self.count(|c| c.login_failures += 1);
                self.error(format!("log in {}: {e}", self.names.name(num)));
                None
            }
        }
    }

    async fn load_page(&self, num: u64, base: &str, cookie: &str) {
        match http::get_page(self.client(num), &format!("{base}/"), cookie).await {
            Ok(_) => self.count(|c| c.page_loads += 1),
            Err(e) => {
                self.count(|c| c.page_load_failures += 1);
                self.error(format!("page load {}: {e}", self.names.name(num)));
            }
        }
    }

    /// One user: open a page; until drained, live on it for a while, then reload, close and come
    /// back, or log out and in again. A sign-up (`stay`) logs out and leaves when its stay is over.
    /// `first` hears when the first open was tried.
    async fn user(
        self: Arc<Self>,
        slot: Arc<Slot>,
        mut cookie: Option<String>,
        stay: Option<Instant>,
        mut first: Option<mpsc::UnboundedSender<()>>,
    ) {
        self.users.fetch_add(1, Ordering::Relaxed);
        let num = slot.num;
        let (mode, slow) = (self.mode_of(num), self.is_slow(num));
        let mut rng = Rng::new(self.init.seed ^ num.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut phase = self.phase.subscribe();
        let mut reload = stay.is_some();
        let mut held: Option<Ws> = None;
        // Failed opens in a row: the page script's reconnect backoff (see `backoff`).
        let mut attempt = 0u32;
        loop {
            if self.phase() == Phase::Drain {
                break;
            }
            let node = rng.below(self.init.nodes.len() as u64) as usize;
            let base = self.init.nodes[node].clone();
            if cookie.is_none() {
                cookie = self.log_in(num, &base).await;
                if cookie.is_none() {
                    first.take();
                    if self.away(&mut phase, backoff(&mut rng, &mut attempt)).await {
                        break;
                    }
                    continue;
                }
                reload = true;
            }
            let c = cookie.clone().unwrap_or_default();
            if reload {
                self.load_page(num, &base, &c).await;
            }
            let target = &self.targets[node][match mode {
                Mode::Page => 0,
                Mode::V1 => 1,
                _ => 2,
            }];
            let opened = {
                let _permit = if first.is_some() { self.connecting.acquire().await.ok() } else { None };
                let src = src_addr(num as usize, self.init.source_addrs);
                let connect = ws::connect_with(target, Some(&c), src, slow.then_some(self.init.slow_recv_buffer));
                tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .unwrap_or_else(|_| Err(format!("no handshake within {CONNECT_TIMEOUT:?}")))
            };
            first.take();
            let mut ws = match opened {
                Ok(ws) => ws,
                Err(e) => {
                    self.count(|c| c.connect_failures += 1);
                    if e.contains("403") {
                        cookie = None;
                    }
                    self.error(format!("connect {}: {e}", self.names.name(num)));
                    if self.away(&mut phase, backoff(&mut rng, &mut attempt)).await {
                        break;
                    }
                    continue;
                }
            };
            self.count(|c| c.connects += 1);
            attempt = 0;
            *lock(&slot.page) = Some(Page::new(mode, slow, now_us()));
            // Live on the page until its user's next action (the first only once churn starts).
            let ended = loop {
                let until = match self.phase() {
                    Phase::Connect => None,
                    _ => Some(Instant::now() + Duration::from_secs_f64(rng.exp(self.init.mean_life_s))),
                };
                match self.read(&mut ws, &slot, until, &mut phase, &mut rng, true).await {
                    Ended::Phase if self.phase() == Phase::Churn => continue,
                    other => break other,
                }
            };
            match ended {
                Ended::Phase => {
                    held = Some(ws);
                    break;
                }
                Ended::Closed(reason) => {
                    self.finish(&slot);
                    self.count(|c| *c.server_closes.entry(reason.clone()).or_default() += 1);
                    if reason.starts_with("close 4001") || reason.starts_with("close 1008") {
                        cookie = None;
                    }
                    reload = true;
                    if self.away(&mut phase, backoff(&mut rng, &mut attempt)).await {
                        break;
                    }
                }
                Ended::Deadline => {
                    let leaving = stay.is_some_and(|s| Instant::now() >= s);
                    let action = if leaving {
                        Action::LogOut
                    } else {
                        match rng.below(100) {
                            0..45 => Action::Reload,
                            45..80 => Action::Close,
                            _ => Action::LogOut,
                        }
                    };
                    match action {
                        Action::Reload => {
                            close(&mut ws).await;
                            self.finish(&slot);
                            self.count(|c| c.reloads += 1);
                            reload = true;
                        }
                        Action::Close => {
                            close(&mut ws).await;
                            self.finish(&slot);
                            self.count(|c| c.closes += 1);
                            reload = true;
                            if self.away(&mut phase, rng.uniform(3.0, 60.0)).await {
                                break;
                            }
                        }
                        Action::LogOut => {
                            self.log_out(&mut ws, &slot, &base, &c, &mut phase, &mut rng).await;
                            cookie = None;
                            if leaving || self.away(&mut phase, rng.uniform(2.0, 20.0)).await {
                                break;
                            }
                        }
                    }
                }
            }
        }
        // Drained (or left): hold the page open, reading at full speed, until the worker exits.
        self.settled.fetch_add(1, Ordering::Relaxed);
        if let Some(mut ws) = held {
            if let Ended::Closed(reason) = self.read(&mut ws, &slot, None, &mut phase, &mut rng, false).await {
                self.finish(&slot);
                self.count(|c| *c.server_closes.entry(format!("drained: {reason}")).or_default() += 1);
            }
        }
    }

    /// Log out through the form: the server must close this page (4001) by itself.
    async fn log_out(
        &self,
        ws: &mut Ws,
        slot: &Slot,
        base: &str,
        cookie: &str,
        phase: &mut watch::Receiver<Phase>,
        rng: &mut Rng,
    ) {
        let num = slot.num;
        if let Err(e) = http::log_out(self.client(num), base, cookie).await {
            self.count(|c| c.logout_failures += 1);
            self.error(format!("log out {}: {e}", self.names.name(num)));
            close(ws).await;
            self.finish(slot);
            return;
        }
        self.count(|c| c.logouts += 1);
        // Read at full speed (even a slow reader: the close must not wait behind a stall).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.read(ws, slot, Some(deadline), phase, rng, false).await {
                Ended::Phase => continue,
                Ended::Closed(reason) => {
                    self.count(|c| *c.server_closes.entry(format!("log out: {reason}")).or_default() += 1);
                    break;
                }
                Ended::Deadline => {
                    self.error(format!("{}: the page stayed open 10 s after log out", self.names.name(num)));
                    self.count(|c| *c.server_closes.entry("log out: still open after 10 s".into()).or_default() += 1);
                    close(ws).await;
                    break;
                }
            }
        }
        self.finish(slot);
    }

    /// Sleeps `secs` (a user away); true if the worker drained meanwhile (then stay away).
    async fn away(&self, phase: &mut watch::Receiver<Phase>, secs: f64) -> bool {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while self.phase() != Phase::Drain {
            tokio::select! {
                _ = sleep_until(end) => return false,
                r = phase.changed() => if r.is_err() { return true },
            }
        }
        true
    }

    /// Reads the page until `until`, a phase change, or its close. A slow reader (while churning)
    /// pauses after every frame and now and then stops reading for a while.
    async fn read(
        &self,
        ws: &mut Ws,
        slot: &Slot,
        until: Option<Instant>,
        phase: &mut watch::Receiver<Phase>,
        rng: &mut Rng,
        slow_ok: bool,
    ) -> Ended {
        let far = Instant::now() + Duration::from_secs(365 * 86400);
        let until_at = until.unwrap_or(far);
        let watch_phase = self.phase() != Phase::Drain;
        let mut stall_at = Instant::now() + Duration::from_secs_f64(rng.exp(SLOW_STALL_EVERY_S));
        loop {
            let slow = slow_ok && slot_slow(slot) && self.phase() == Phase::Churn;
            if slow && Instant::now() >= stall_at {
                let (lo, hi) = self.init.stall_secs;
                let stall_end = Instant::now() + Duration::from_secs_f64(rng.uniform(lo, hi));
                tokio::select! {
                    _ = sleep_until(stall_end.min(until_at)) => {}
                    _ = phase.changed(), if watch_phase => return Ended::Phase,
                }
                if Instant::now() >= until_at {
                    return Ended::Deadline;
                }
                stall_at = Instant::now() + Duration::from_secs_f64(rng.exp(SLOW_STALL_EVERY_S));
            }
            let msg = tokio::select! {
                m = ws.next() => m,
                _ = sleep_until(until_at) => return Ended::Deadline,
                _ = phase.changed(), if watch_phase => return Ended::Phase,
            };
            match msg {
                Some(Ok(Message::Text(t))) => {
                    self.frames.fetch_add(1, Ordering::Relaxed);
                    let resubscribe = {
                        let mut page = lock(&slot.page);
                        page.as_mut().and_then(|p| p.on_text(&self.names, self.window.as_ref(), t.as_str(), now_us()))
                    };
                    if let Some(req) = resubscribe {
                        if let Err(e) = ws.send(Message::text(req)).await {
                            return Ended::Closed(format!("error: {e}"));
                        }
                    }
                    if slow {
                        tokio::select! {
                            _ = sleep(SLOW_FRAME_PAUSE) => {}
                            _ = phase.changed(), if watch_phase => return Ended::Phase,
                        }
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    return Ended::Closed(f.map_or_else(|| "close".into(), |f| format!("close {}", u16::from(f.code))))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ended::Closed(format!("error: {}", short_error(&e.to_string()))),
                None => return Ended::Closed("eof".into()),
            }
        }
    }
}

/// The built-in page's reconnect delay (assets/roster.js): full jitter over 0.5 s doubling per
/// failed attempt in a row, capped at 30 s. A harsher client (a fixed 1 to 5 s) turned a mass
/// disconnect into a storm of handshakes that kept the database pool saturated.
fn backoff(rng: &mut Rng, attempt: &mut u32) -> f64 {
    let cap = (0.5 * 2f64.powi((*attempt).min(16) as i32)).min(30.0);
    *attempt += 1;
    rng.uniform(0.0, cap)
}

fn slot_slow(slot: &Slot) -> bool {
    lock(&slot.page).as_ref().is_some_and(|p| p.slow)
}

/// A socket error as a close reason: its text up to any address (which would make every reason
/// unique), at most 80 characters.
fn short_error(e: &str) -> String {
    e.split(" 127.").next().unwrap_or(e).trim().chars().take(80).collect()
}

fn add_lifetime(r: &mut SoakReport, p: &Page, changes: &[Change], closed_us: u64) {
    if p.slow {
        p.evaluate(changes, closed_us, &mut r.slow);
    } else {
        p.evaluate(changes, closed_us, &mut r.keepup);
        p.evaluate(changes, closed_us, r.by_mode.entry(mode_name(p.mode).to_owned()).or_default());
    }
}

/// Closes our side as a browser leaving the page does: a close frame, then a short wait for the
/// server's reply.
async fn close(ws: &mut Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
