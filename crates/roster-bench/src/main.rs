//! `roster-bench`: load generator for Roster, the Django Channels tutorial peer and the
//! floor server (bench/floor), speaking the tutorial protocol (form log-in with CSRF, session
//! cookie, `{"username","is_logged_in"}` frames), `roster.v1`, and what Roster's built-in page
//! speaks (`--mode page`: `roster.v2` live views on the window of its handshake URL).
//!
//! Every scenario prints a human table, then one final line holding a single JSON object.
//!
//! Users are `{prefix}{i}`. Watchers use users `0..U` (socket `j` uses user `j % U`, so
//! `--sockets-per-user` sockets share a user; Roster allows 32 per user by default). The
//! fanout trigger is user `U`; storm users are `U..U+M`. Seed at least that many first.
//!
//! Sockets are spread over `--workers` processes (this binary re-executed with the hidden
//! `worker` subcommand; one process holds ~19,000 sockets at most) and over loopback source
//! addresses `127.0.0.2..` (bind before connect) to avoid ephemeral-port exhaustion.

mod child;
mod http;
mod pool;
mod redis_info;
mod servers;
mod soak;
mod worker;
mod ws;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use pool::Pool;
use presence::Window;
use redis_info::{RedisProbe, Unit};
use servers::Servers;
use worker::{Change, PageExpect, Report, SockSpec, StormRange};
use ws::{now_us, Mode, Target};

#[derive(Parser)]
#[command(version, about = "Load generator for Roster, the Django Channels peer and the floor server")]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign up users `{prefix}{start}..{prefix}{start+count-1}` through the form, concurrently.
    SeedUsers(SeedArgs),
    /// Hold N authenticated sockets: connect rate, failures, server RSS per socket.
    Hold {
        #[command(flatten)]
        c: Common,
        /// Sockets to open.
        #[arg(long)]
        sockets: usize,
        /// Seconds to hold them before measuring RSS again.
        #[arg(long, default_value_t = 5)]
        hold_secs: u64,
    },
    /// N watchers; E presence changes by one extra client opening/closing its socket
    /// (floor: broadcasting a frame); delivery latency over every watcher x change.
    Fanout {
        #[command(flatten)]
        c: Common,
        #[arg(long)]
        watchers: usize,
        #[arg(long, default_value_t = 20)]
        changes: usize,
        /// Pause between changes (ms).
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// Wait after the last change before collecting (ms).
        #[arg(long, default_value_t = 2000)]
        tail_ms: u64,
    },
    /// N watchers; M users open a socket each within T seconds; time until every watcher
    /// holds the exact final state, frames per watcher.
    Storm {
        #[command(flatten)]
        c: Common,
        #[arg(long)]
        watchers: usize,
        #[arg(long)]
        logins: usize,
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Give up waiting for convergence after this many seconds past the storm.
        #[arg(long, default_value_t = 30)]
        settle_secs: u64,
        /// Close each storm socket as soon as its handshake completes. With a server grace
        /// longer than the run, its user stays online, so the server holds only the watchers
        /// (10,000 watchers plus 10,000 held storm sockets exceed one process's 20,000 files).
        #[arg(long)]
        close_after_open: bool,
    },
    /// N watchers; M users come online at once (a storm with no pacing): frames and changes
    /// delivered per second, from the first open until the last watcher holds the final state.
    Burst {
        #[command(flatten)]
        c: Common,
        #[arg(long)]
        watchers: usize,
        /// Users that come online in the burst.
        #[arg(long)]
        changes: usize,
        #[arg(long, default_value_t = 60)]
        settle_secs: u64,
        #[arg(long)]
        close_after_open: bool,
    },
    /// Requests/s of GET / (the user list) while logged in.
    List {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Path to request (e.g. /healthz to calibrate the client).
        #[arg(long, default_value = "/")]
        path: String,
        /// Hold this many sockets open while measuring (users online on the page; each socket
        /// is its own user unless --users/--sockets-per-user say otherwise).
        #[arg(long, default_value_t = 0)]
        online: usize,
    },
    /// Users holding one page each for minutes or hours under churn (reloads, closes, log-outs
    /// and log-ins, sign-ups, slow readers), with the server's RSS, descriptors and tasks sampled.
    Soak(soak::SoakArgs),
    #[command(hide = true)]
    Worker,
    #[command(hide = true)]
    SoakWorker,
}

#[derive(Args, Clone)]
struct SeedArgs {
    /// Base URL, e.g. http://127.0.0.1:8000
    #[arg(long)]
    base_url: String,
    #[arg(long)]
    count: usize,
    #[arg(long, default_value = "bench")]
    prefix: String,
    #[arg(long, default_value = "bench-pass-4821")]
    password: String,
    #[arg(long, default_value_t = 0)]
    start: usize,
    /// Concurrent sign-ups (default: 2 x cores; Argon2/PBKDF2 is CPU-bound on the server).
    #[arg(long)]
    concurrency: Option<usize>,
    #[arg(long, default_value_t = 8)]
    source_addrs: u8,
}

#[derive(Args, Clone)]
struct Common {
    /// Base URL of the server, e.g. http://127.0.0.1:8000. Repeat it for the nodes of a cluster:
    /// watcher socket `j` goes to node `j % nodes`; log-ins, probes, a fan-out's trigger and a
    /// storm's sockets use the first.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Wire protocol: tutorial (Roster default, Django), v1 (Roster's roster.v1), page (what
    /// Roster's built-in page speaks: roster.v2 on `--window`), floor.
    #[arg(long, value_enum, default_value_t = Mode::Tutorial)]
    mode: Mode,
    /// Page mode: the handshake URL's query, as the page sends it for its window.
    #[arg(long, default_value = "offset=0&limit=200&q=")]
    window: String,
    #[arg(long, default_value = "bench")]
    prefix: String,
    #[arg(long, default_value = "bench-pass-4821")]
    password: String,
    /// Watcher sockets per user (user count = ceil(N / this)) unless --users is given.
    #[arg(long, default_value_t = 30)]
    sockets_per_user: usize,
    /// Distinct watcher users (overrides --sockets-per-user).
    #[arg(long)]
    users: Option<usize>,
    /// Worker processes (default: max(2, ceil(N / 15000))).
    #[arg(long)]
    workers: Option<usize>,
    /// Loopback source addresses 127.0.0.2 .. 127.0.0.(1+A).
    #[arg(long, default_value_t = 8)]
    source_addrs: u8,
    /// Concurrent socket handshakes per worker.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
    /// Concurrent form log-ins.
    #[arg(long, default_value_t = 8)]
    login_concurrency: usize,
    /// PID of the server process, to report its RSS (VmRSS) and CPU. Repeat it with several
    /// --url, in the same order: figures are summed and also given per node.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// The cluster's Redis (redis://HOST:PORT), to report its commands (INFO commandstats, the
    /// scripts' inner commands included) and CPU (INFO cpu): hold, per socket while connecting;
    /// fanout, per change, and again less the idle rate of a stretch just before the changes.
    #[arg(long)]
    redis_url: Option<String>,
    /// Fan-out with --redis-url: that idle stretch (ms; default: as long as the changes and the
    /// tail, so the periodic work of the nodes, heartbeats and sweeps, weighs the same in both).
    #[arg(long)]
    redis_idle_ms: Option<u64>,
    /// After the watchers connect, wait until no frame arrived for this long (ms) ...
    #[arg(long, default_value_t = 1000)]
    quiet_ms: u64,
    /// ... but at most this long (s).
    #[arg(long, default_value_t = 600)]
    quiet_max_secs: u64,
    /// Open the watchers' sockets (and a storm's) in a pseudo-random order of their users
    /// rather than in the order of their numbers. Users are named `{prefix}{i}` and the list is
    /// sorted by name, so in numeric order whole runs of arrivals (bench1000 .. bench1999,
    /// bench10000 ..) sort into the first page; people do not arrive in the order of their names.
    #[arg(long)]
    shuffle_arrivals: bool,
    /// Fan-out: the user whose socket makes the changes (default `{prefix}{U}`, the user after
    /// the watchers'). In page mode, one that sorts into the window (e.g. `bench`, before every
    /// `bench{i}`) or after it.
    #[arg(long)]
    trigger_user: Option<String>,
    /// Keep session cookies in this JSON file (username -> cookie) and reuse them: a form
    /// log-in costs one password hash on the server (~30 per second on 2 cores with Argon2id),
    /// so scenarios that share users share their log-ins. Use one file per server database.
    #[arg(long)]
    cookie_cache: Option<std::path::PathBuf>,
}

impl Common {
    /// The first --url: log-ins, probes, the fan-out trigger and storm sockets go there.
    fn url(&self) -> &str {
        &self.url[0]
    }

    /// One target per --url, in their order (the watchers' node indexes).
    fn targets(&self) -> Vec<Target> {
        self.url.iter().map(|u| Target::new(u, self.mode, &self.window)).collect()
    }

    /// The URL fields of a result: `url` (the first) and, for a cluster, every node's.
    fn url_fields(&self) -> Vec<(&'static str, Value)> {
        let mut f = vec![("url", json!(self.url())), ("nodes", json!(self.url.len()))];
        if self.url.len() > 1 {
            f.push(("urls", json!(self.url)));
        }
        f
    }
}

fn src_addr(i: usize, n: u8) -> Option<IpAddr> {
    (n > 0).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % n as usize) as u8)))
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 100.0).round() / 100.0
}

/// Print a table of the fields, then the same fields as one JSON line.
fn emit(scenario: &str, fields: Vec<(&str, Value)>) {
    println!("== {scenario}");
    let w = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut obj = serde_json::Map::new();
    obj.insert("scenario".into(), json!(scenario));
    for (k, v) in fields {
        let shown = match &v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("  {k:<w$}  {shown}");
        obj.insert(k.to_string(), v);
    }
    println!("{}", Value::Object(obj));
}

fn main() {
    let cli = Cli::parse();
    let worker = match cli.cmd {
        Command::Worker => Some(worker::run()),
        Command::SoakWorker => Some(soak::worker::run()),
        _ => None,
    };
    if let Some(result) = worker {
        if let Err(e) = result {
            eprintln!("worker: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if let Err(e) = rt.block_on(run(cli.cmd)) {
        eprintln!("roster-bench: {e}");
        std::process::exit(1);
    }
}

async fn run(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::SeedUsers(a) => seed(a).await,
        Command::Hold { c, sockets, hold_secs } => hold(c, sockets, hold_secs).await,
        Command::Fanout { c, watchers, changes, interval_ms, tail_ms } => {
            fanout(c, watchers, changes, interval_ms, tail_ms).await
        }
        Command::Storm { c, watchers, logins, seconds, settle_secs, close_after_open } => {
            storm(c, watchers, logins, seconds, settle_secs, close_after_open, "storm").await
        }
        Command::Burst { c, watchers, changes, settle_secs, close_after_open } => {
            storm(c, watchers, changes, 0.0, settle_secs, close_after_open, "burst").await
        }
        Command::List { c, requests, concurrency, path, online } => list(c, requests, concurrency, &path, online).await,
        Command::Soak(a) => soak::soak(a).await,
        Command::Worker | Command::SoakWorker => unreachable!(),
    }
}

// ---------------------------------------------------------------- seed-users

async fn seed(a: SeedArgs) -> Result<(), String> {
    let b = base(&a.base_url);
    let conc = a.concurrency.unwrap_or(2 * cores());
    let clients: Arc<Vec<reqwest::Client>> =
        Arc::new((0..a.source_addrs.max(1) as usize).map(|i| http::client(src_addr(i, a.source_addrs))).collect());
    let sem = Arc::new(Semaphore::new(conc));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in a.start..a.start + a.count {
        let (sem, clients, b, pw) = (sem.clone(), clients.clone(), b.clone(), a.password.clone());
        let name = format!("{}{}", a.prefix, i);
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.expect("sem");
            http::sign_up(&clients[i % clients.len()], &b, &name, &pw).await
        }));
    }
    let (mut created, mut rejected, mut failed, mut errors) = (0u64, 0u64, 0u64, Vec::new());
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            Ok(http::SignUp::Created) => created += 1,
            Ok(http::SignUp::Rejected) => rejected += 1,
            Err(e) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    emit(
        "seed-users",
        vec![
            ("base_url", json!(b)),
            ("requested", json!(a.count)),
            ("created", json!(created)),
            ("rejected_existing", json!(rejected)),
            ("failed", json!(failed)),
            ("errors", json!(errors)),
            ("concurrency", json!(conc)),
            ("seconds", json!((secs * 100.0).round() / 100.0)),
            ("signups_per_s", json!(((created + rejected) as f64 / secs * 10.0).round() / 10.0)),
        ],
    );
    Ok(())
}

// ---------------------------------------------------------------- sessions

/// Log in users `{prefix}{i}` for i in `ids`; returns their cookies in the same order.
/// With `--cookie-cache`, cookies found there are reused and new ones are added to it.
async fn log_in_all(c: &Common, ids: impl Iterator<Item = usize>) -> Result<Vec<String>, String> {
    log_in_names(c, ids.map(|i| format!("{}{}", c.prefix, i)).collect()).await
}

/// [`log_in_all`] by username.
async fn log_in_names(c: &Common, names: Vec<String>) -> Result<Vec<String>, String> {
    let mut cache: std::collections::HashMap<String, String> = match &c.cookie_cache {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        _ => Default::default(),
    };
    let b = base(c.url());
    let clients: Arc<Vec<reqwest::Client>> =
        Arc::new((0..c.source_addrs.max(1) as usize).map(|i| http::client(src_addr(i, c.source_addrs))).collect());
    let sem = Arc::new(Semaphore::new(c.login_concurrency.max(1)));
    let mut tasks = Vec::new();
    for (k, name) in names.iter().enumerate().filter(|(_, n)| !cache.contains_key(*n)) {
        let (sem, clients, b, pw, name) = (sem.clone(), clients.clone(), b.clone(), c.password.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.expect("sem");
            let cookie = http::log_in(&clients[k % clients.len()], &b, &name, &pw).await;
            (name, cookie)
        }));
    }
    let fresh = !tasks.is_empty();
    for t in tasks {
        let (name, cookie) = t.await.map_err(|e| e.to_string())?;
        cache.insert(name, cookie?);
    }
    if let (Some(p), true) = (&c.cookie_cache, fresh) {
        let text = serde_json::to_string(&cache).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(names.iter().map(|n| cache[n].clone()).collect())
}

fn watcher_users(c: &Common, n: usize) -> usize {
    c.users.unwrap_or_else(|| n.div_ceil(c.sockets_per_user.max(1))).max(1)
}

/// Socket specs for `n` watchers (floor: no cookies, no log-in).
async fn watcher_specs(c: &Common, n: usize) -> Result<(Vec<SockSpec>, usize, f64), String> {
    // Floor: no users at all (the storm/trigger names start at 0).
    let users = if c.mode == Mode::Floor { 0 } else { watcher_users(c, n) };
    let t0 = Instant::now();
    let cookies = if c.mode == Mode::Floor { vec![] } else { log_in_all(c, 0..users).await? };
    let login_secs = t0.elapsed().as_secs_f64();
    // Socket j goes to node j % nodes; its source address counts per node, so every node sees
    // every source address (the server caps connections per address).
    let nodes = c.url.len();
    let mut specs: Vec<SockSpec> = (0..n)
        .map(|j| SockSpec {
            cookie: cookies.get(j % users.max(1)).cloned(),
            src: src_addr(j / nodes, c.source_addrs),
            node: j % nodes,
        })
        .collect();
    if c.shuffle_arrivals {
        shuffle(&mut specs, 0x9E37_79B9_7F4A_7C15);
    }
    Ok((specs, users, login_secs))
}

/// A fixed pseudo-random order (Fisher-Yates with xorshift64): the same in every run.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// Page mode: the window of `--window` (what the page's handshake URL asks for).
fn page_window(c: &Common) -> Result<Window, String> {
    Window::from_query(&c.window, 200).map_err(|e| format!("--window {:?}: {e}", c.window))
}

fn mean(v: &[u64]) -> f64 {
    (v.iter().sum::<u64>() as f64 / v.len().max(1) as f64 * 10.0).round() / 10.0
}

// ---------------------------------------------------------------- hold

async fn hold(c: Common, n: usize, hold_secs: u64) -> Result<(), String> {
    let targets = c.targets();
    let servers = Servers::new(&c.server_pid, targets.len())?;
    let redis = c.redis_url.as_deref().map(RedisProbe::new).transpose()?;
    let (specs, users, login_secs) = watcher_specs(&c, n).await?;
    let probe_cookie = specs.first().and_then(|s| s.cookie.clone());
    let s0 = servers.sample();
    let redis0 = match &redis {
        Some(r) => Some(r.sample().await?),
        None => None,
    };
    let mut pool = Pool::start(&c, &targets, specs, "", None, None).await?;
    let s1 = servers.sample();
    let redis1 = match &redis {
        Some(r) => Some(r.sample().await?),
        None => None,
    };
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    let s2 = servers.sample();
    let st = pool.stats().await?;
    let r = pool.report(&[]).await?;
    // One more page connecting while everyone is online: what its first frame (the snapshot) costs.
    let probe = match c.mode {
        Mode::V1 | Mode::Page => Some(probe_first_frame(&targets[0], probe_cookie.as_deref()).await?),
        Mode::Tutorial | Mode::Floor => None,
    };
    // Page mode: and what the same connect costs in roster.v1 (a snapshot of everyone online).
    let probe_v1 = match c.mode {
        Mode::Page => {
            let v1 = Target::new(c.url(), Mode::V1, &c.window);
            Some(probe_first_frame(&v1, probe_cookie.as_deref()).await?)
        }
        _ => None,
    };
    let per = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if pool.ready.ok > 0 => {
            json!(((b as f64 - a as f64) * 1024.0 / pool.ready.ok as f64).round())
        }
        _ => Value::Null,
    };
    let mut f = c.url_fields();
    f.extend([
        ("mode", json!(c.mode)),
        ("sockets", json!(n)),
        ("users", json!(users)),
        ("login_seconds", json!((login_secs * 100.0).round() / 100.0)),
    ]);
    f.extend(pool.connect_fields());
    f.extend([
        ("closed_during_hold", json!(st.closed)),
        ("frames_received", json!(st.frames)),
        ("bytes_received", json!(r.bytes_total)),
        ("bytes_received_per_socket_mean", json!(mean(&r.bytes_since_mark))),
        ("first_frame_bytes_mean", json!(mean(&r.first_frame_bytes))),
        ("probe_connect_first_frame_bytes", json!(probe)),
        ("probe_v1_connect_first_frame_bytes", json!(probe_v1)),
        ("server_cpu_seconds_connect", json!(s1.cpu_since(&s0).map(|s| (s * 100.0).round() / 100.0))),
        ("server_rss_kib_before", json!(s0.rss_total())),
        ("server_rss_kib_connected", json!(s1.rss_total())),
        ("server_rss_kib_after_hold", json!(s2.rss_total())),
        ("rss_bytes_per_socket", per(s0.rss_total(), s1.rss_total())),
        ("rss_bytes_per_socket_after_hold", per(s0.rss_total(), s2.rss_total())),
    ]);
    if servers.cluster() {
        f.extend([
            ("connected_per_node", json!(pool.ready.ok_by_node)),
            ("server_cpu_seconds_connect_per_node", s1.cpu_since_per_node(&s0)),
            ("server_rss_kib_after_hold_per_node", s2.rss_per_node()),
            ("rss_bytes_per_socket_after_hold_per_node", s2.rss_per_socket_per_node(&s0, &pool.ready.ok_by_node)),
        ]);
    }
    if let (Some(a), Some(b)) = (&redis0, &redis1) {
        f.extend(b.since(a).fields_per(pool.ready.ok, Unit::Socket, None));
        f.push(("redis_used_memory_bytes_before", json!(a.used_memory())));
        f.push(("redis_used_memory_bytes_connected", json!(b.used_memory())));
    }
    emit("hold", f);
    pool.exit().await;
    Ok(())
}

/// Opens one more socket and returns the size of its first text frame.
async fn probe_first_frame(target: &Target, cookie: Option<&str>) -> Result<usize, String> {
    let mut ws = ws::connect(target, cookie, None).await?;
    let first = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Text(t)) = msg {
                return Ok(t.len());
            }
        }
        Err("the probe socket closed before its first frame".to_owned())
    })
    .await
    .map_err(|_| "no first frame within 30 s".to_owned())?;
    let _ = ws.close(None).await;
    first
}

// ---------------------------------------------------------------- fanout

/// The client causing changes: a socket of the trigger user (opened/closed), or for the
/// floor one socket that broadcasts tutorial-shaped frames.
async fn open_drained(
    target: &Target,
    cookie: Option<&str>,
) -> Result<futures_util::stream::SplitSink<ws::Ws, Message>, String> {
    let ws = ws::connect(target, cookie, None).await?;
    let (sink, mut stream) = ws.split();
    tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    Ok(sink)
}

fn latency_fields(r: &Report, expected: u64) -> Vec<(&'static str, Value)> {
    let mut l: Vec<u64> = r.latencies_us.iter().flatten().copied().collect();
    l.sort_unstable();
    vec![
        ("deliveries", json!(l.len())),
        ("expected_deliveries", json!(expected)),
        ("missing", json!(r.missing)),
        ("p50_ms", json!(ms(pct(&l, 50.0)))),
        ("p90_ms", json!(ms(pct(&l, 90.0)))),
        ("p99_ms", json!(ms(pct(&l, 99.0)))),
        ("max_ms", json!(ms(l.last().copied().unwrap_or(0)))),
        ("closed_sockets", json!(r.closed)),
        ("close_reasons", json!(r.close_reasons)),
        ("seq_gaps", json!(r.seq_gaps)),
    ]
}

/// A cluster's latencies by the node the watchers were on (the trigger's node is the first).
fn latency_per_node_fields(r: &Report) -> Vec<(&'static str, Value)> {
    let sorted: Vec<Vec<u64>> = r
        .latencies_us
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l.sort_unstable();
            l
        })
        .collect();
    let at = |p: f64| json!(sorted.iter().map(|l| ms(pct(l, p))).collect::<Vec<_>>());
    vec![
        ("deliveries_per_node", json!(sorted.iter().map(Vec::len).collect::<Vec<_>>())),
        ("p50_ms_per_node", at(50.0)),
        ("p99_ms_per_node", at(99.0)),
    ]
}

async fn fanout(c: Common, n: usize, changes: usize, interval_ms: u64, tail_ms: u64) -> Result<(), String> {
    let targets = c.targets();
    let servers = Servers::new(&c.server_pid, targets.len())?;
    let redis = c.redis_url.as_deref().map(RedisProbe::new).transpose()?;
    let (specs, users, login_secs) = watcher_specs(&c, n).await?;
    let trigger = c.trigger_user.clone().unwrap_or_else(|| format!("{}{}", c.prefix, users));
    let trig_cookie =
        if c.mode == Mode::Floor { None } else { Some(log_in_names(&c, vec![trigger.clone()]).await?.remove(0)) };
    let mut pool = Pool::start(&c, &targets, specs, &trigger, None, None).await?;
    let quiet_secs = pool.quiet(&c).await?;
    pool.mark().await?;
    // Redis: an idle stretch first (heartbeats, sweeps), so the changes' own work can be told apart.
    let redis_idle = match &redis {
        Some(r) => {
            let a = r.sample().await?;
            let idle_ms = c.redis_idle_ms.unwrap_or(changes as u64 * interval_ms + tail_ms);
            tokio::time::sleep(Duration::from_millis(idle_ms)).await;
            let b = r.sample().await?;
            let idle = b.since(&a);
            Some((idle, b))
        }
        None => None,
    };
    let s0 = servers.sample();

    let mut log: Vec<Change> = Vec::with_capacity(changes);
    let trig_target = &targets[0];
    let mut floor_sink = if c.mode == Mode::Floor { Some(open_drained(trig_target, None).await?) } else { None };
    let mut trig_sink = None;
    for k in 0..changes {
        let online = k % 2 == 0;
        let t_us = now_us();
        if let Some(sink) = floor_sink.as_mut() {
            let frame = json!({"username": trigger, "is_logged_in": online, "seq": k, "sent_us": t_us});
            sink.send(Message::text(frame.to_string())).await.map_err(|e| e.to_string())?;
        } else if online {
            trig_sink = Some(open_drained(trig_target, trig_cookie.as_deref()).await?);
        } else if let Some(mut s) = trig_sink.take() {
            let _ = s.send(Message::Close(None)).await;
            let _ = s.close().await;
        }
        log.push(Change { t_us, online });
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
    }
    if let Some(mut s) = trig_sink.take() {
        let _ = s.close().await;
    }
    tokio::time::sleep(Duration::from_millis(tail_ms)).await;
    let redis_run = match (&redis, redis_idle) {
        (Some(r), Some((idle, start))) => Some((r.sample().await?.since(&start), idle)),
        _ => None,
    };
    let s1 = servers.sample();
    let r = pool.report(&log).await?;
    let mut f = c.url_fields();
    f.extend([
        ("mode", json!(c.mode)),
        ("watchers", json!(n)),
        ("users", json!(users)),
        ("changes", json!(changes)),
        ("interval_ms", json!(interval_ms)),
        ("login_seconds", json!((login_secs * 100.0).round() / 100.0)),
    ]);
    f.extend(pool.connect_fields());
    f.push(("settle_seconds", json!((quiet_secs * 100.0).round() / 100.0)));
    f.extend(latency_fields(&r, (pool.ready.ok as usize * changes) as u64));
    // What each change cost a watcher: frames and bytes (page mode: and the most operations in
    // one frame; a change outside the window should be a counts update, 0 operations).
    let per_change = |v: &[u64]| (mean(v) / changes.max(1) as f64 * 100.0).round() / 100.0;
    f.extend([
        ("trigger_user", json!(trigger)),
        ("frames_per_watcher_per_change", json!(per_change(&r.frames_since_mark))),
        ("bytes_per_watcher_per_change", json!(per_change(&r.bytes_since_mark))),
        ("ops_max_per_frame", json!((c.mode == Mode::Page).then_some(r.ops_max_since_mark))),
        ("server_rss_kib_before", json!(s0.rss_total())),
        ("server_rss_kib_after", json!(s1.rss_total())),
        ("server_cpu_seconds_changes", json!(s1.cpu_since(&s0).map(|s| (s * 100.0).round() / 100.0))),
    ]);
    // Per change (Online, then Offline, ...): when the first and the last watcher had it.
    let per_change: Vec<Value> = log
        .iter()
        .zip(r.change_first_us.iter().zip(&r.change_last_us))
        .map(|(c, (&first, &last))| {
            let delivered = first != u64::MAX;
            json!([if c.online { "on" } else { "off" }, delivered.then(|| ms(first)), delivered.then(|| ms(last))])
        })
        .collect();
    f.push(("per_change_first_last_ms", json!(per_change)));
    if targets.len() > 1 {
        f.push(("connected_per_node", json!(pool.ready.ok_by_node)));
        f.extend(latency_per_node_fields(&r));
    }
    if servers.cluster() {
        f.push(("server_cpu_seconds_changes_per_node", s1.cpu_since_per_node(&s0)));
    }
    if let Some((run, idle)) = redis_run {
        f.extend(idle.idle_fields());
        f.push(("redis_seconds", json!((run.secs * 100.0).round() / 100.0)));
        f.extend(run.fields_per(changes as u64, Unit::Change, Some(&idle)));
    }
    emit("fanout", f);
    pool.exit().await;
    Ok(())
}

// ---------------------------------------------------------------- storm

/// `storm` and `burst`: M storm users come online within `seconds` (0: all at once) while N
/// watchers look on.
async fn storm(
    c: Common,
    n: usize,
    m: usize,
    seconds: f64,
    settle_secs: u64,
    close_after_open: bool,
    scenario: &str,
) -> Result<(), String> {
    let targets = c.targets();
    let servers = Servers::new(&c.server_pid, targets.len())?;
    let target = targets[0].clone();
    let (specs, users, login_secs) = watcher_specs(&c, n).await?;
    let range = StormRange { prefix: c.prefix.clone(), start: users as u64, count: m as u64 };
    let t_login = Instant::now();
    let storm_cookies: Vec<Option<String>> = if c.mode == Mode::Floor {
        vec![None; m]
    } else {
        log_in_all(&c, users..users + m).await?.into_iter().map(Some).collect()
    };
    let storm_login_secs = t_login.elapsed().as_secs_f64();
    // Page mode: at the end the watchers' users and the storm's are online; the window shows
    // its slice of them in the list order (online users by lowercase name).
    let expect = match c.mode {
        Mode::Page => {
            let w = page_window(&c)?;
            let q = w.q.to_lowercase();
            let mut online: Vec<String> = (0..users + m)
                .map(|i| format!("{}{i}", c.prefix))
                .filter(|n| n.to_lowercase().starts_with(&q))
                .collect();
            online.sort_by_key(|n| n.to_lowercase());
            let usernames = online.into_iter().skip(w.offset as usize).take(w.limit as usize).collect();
            Some(PageExpect { usernames, online: (users + m) as u64 })
        }
        _ => None,
    };
    let rss_before = servers.sample().rss_total();
    let mut pool = Pool::start(&c, &targets, specs, "", Some(range), expect).await?;
    let rss_connected = servers.sample().rss_total();
    let quiet_secs = pool.quiet(&c).await?;
    pool.mark().await?;

    let t0 = Instant::now();
    let storm_start_us = now_us();
    let step = Duration::from_secs_f64(seconds.max(0.0) / m.max(1) as f64);
    let mut opened = 0u64;
    let mut open_errors = Vec::new();
    let mut held = Vec::new();
    if c.mode == Mode::Floor {
        let mut sink = open_drained(&target, None).await?;
        for i in 0..m {
            tokio::time::sleep_until((t0 + step * i as u32).into()).await;
            let frame = json!({"username": format!("{}{}", c.prefix, users + i), "is_logged_in": true});
            sink.send(Message::text(frame.to_string())).await.map_err(|e| e.to_string())?;
            opened += 1;
        }
        held.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(sink);
            Ok::<_, String>(())
        }));
    } else {
        let target = Arc::new(target.clone());
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut storm_cookies = storm_cookies;
        if c.shuffle_arrivals {
            shuffle(&mut storm_cookies, 0xD1B5_4A32_D192_ED03);
        }
        for (i, cookie) in storm_cookies.into_iter().enumerate() {
            tokio::time::sleep_until((t0 + step * i as u32).into()).await;
            let (target, done_tx) = (target.clone(), done_tx.clone());
            let src = src_addr(i + 3, c.source_addrs);
            tokio::spawn(async move {
                match ws::connect(&target, cookie.as_deref(), src).await {
                    Ok(ws) => {
                        let (mut sink, mut stream) = ws.split();
                        let _ = done_tx.send(Ok(()));
                        if close_after_open {
                            let _ = sink.send(Message::Close(None)).await;
                        }
                        while let Some(Ok(_)) = stream.next().await {}
                        drop(sink);
                    }
                    Err(e) => {
                        let _ = done_tx.send(Err(e));
                    }
                }
            });
        }
        drop(done_tx);
        for _ in 0..m {
            match done_rx.recv().await {
                Some(Ok(())) => opened += 1,
                Some(Err(e)) => {
                    if open_errors.len() < 5 {
                        open_errors.push(e)
                    }
                }
                None => break,
            }
        }
    }
    let storm_end_us = now_us();
    let deadline = Instant::now() + Duration::from_secs(settle_secs);
    loop {
        let s = pool.stats().await?;
        if s.converged >= pool.ready.ok || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_after = servers.sample().rss_total();
    let r = pool.report(&[]).await?;
    let mut conv: Vec<u64> = r.converged_at_us.iter().flatten().map(|t| t.saturating_sub(storm_end_us)).collect();
    conv.sort_unstable();
    let not_converged = r.converged_at_us.iter().filter(|t| t.is_none()).count();
    let mut frames = r.frames_since_mark.clone();
    frames.sort_unstable();
    let frames_sum = frames.iter().sum::<u64>();
    let mean_frames = frames_sum as f64 / frames.len().max(1) as f64;
    // Delivery rate: from the first storm open until the last watcher held the final state.
    let last_conv_us = r.converged_at_us.iter().flatten().max().copied().unwrap_or(storm_end_us);
    let window_s = last_conv_us.saturating_sub(storm_start_us).max(1) as f64 / 1e6;
    let mut f = c.url_fields();
    f.extend([
        ("mode", json!(c.mode)),
        ("watchers", json!(n)),
        ("users", json!(users)),
        ("logins", json!(m)),
        ("storm_seconds_requested", json!(seconds)),
        ("login_seconds", json!(((login_secs + storm_login_secs) * 100.0).round() / 100.0)),
    ]);
    f.extend(pool.connect_fields());
    f.extend([
        ("settle_seconds", json!((quiet_secs * 100.0).round() / 100.0)),
        ("storm_opened", json!(opened)),
        ("storm_open_errors", json!(open_errors)),
        ("storm_seconds_actual", json!(ms(storm_end_us - storm_start_us) / 1000.0)),
        ("converged", json!(conv.len())),
        ("not_converged", json!(not_converged)),
        ("converge_after_storm_p50_ms", json!(ms(pct(&conv, 50.0)))),
        ("converge_after_storm_p99_ms", json!(ms(pct(&conv, 99.0)))),
        ("converge_after_storm_max_ms", json!(ms(conv.last().copied().unwrap_or(0)))),
        ("frames_per_watcher_mean", json!((mean_frames * 10.0).round() / 10.0)),
        ("frames_per_watcher_max", json!(frames.last().copied().unwrap_or(0))),
        ("frames_delivered", json!(frames_sum)),
        ("delivery_seconds", json!((window_s * 1000.0).round() / 1000.0)),
        ("frames_per_s", json!((frames_sum as f64 / window_s).round())),
        ("changes_delivered_per_s", json!((conv.len() as f64 * m as f64 / window_s).round())),
        ("close_after_open", json!(close_after_open)),
        ("server_rss_kib_before", json!(rss_before)),
        ("server_rss_kib_connected", json!(rss_connected)),
        ("server_rss_kib_after", json!(rss_after)),
        (
            "rss_bytes_per_watcher_after",
            match (rss_before, rss_after) {
                (Some(a), Some(b)) if pool.ready.ok > 0 => {
                    json!(((b as f64 - a as f64) * 1024.0 / pool.ready.ok as f64).round())
                }
                _ => Value::Null,
            },
        ),
        ("closed_sockets", json!(r.closed)),
        ("close_reasons", json!(r.close_reasons)),
        ("seq_gaps", json!(r.seq_gaps)),
        ("snapshots", json!(r.snapshots)),
    ]);
    emit(scenario, f);
    pool.exit().await;
    for h in held {
        h.abort();
    }
    Ok(())
}

// ---------------------------------------------------------------- list

async fn list(c: Common, requests: usize, concurrency: usize, path: &str, online: usize) -> Result<(), String> {
    let b = base(c.url());
    let servers = Servers::new(&c.server_pid, c.url.len())?;
    let cookie = log_in_all(&c, 0..1).await?.remove(0);
    let pool = if online > 0 {
        let (specs, _, _) = watcher_specs(&c, online).await?;
        let mut pool = Pool::start(&c, &c.targets(), specs, "", None, None).await?;
        pool.quiet(&c).await?;
        Some(pool)
    } else {
        None
    };
    let online_held = pool.as_ref().map_or(0, |p| p.ready.ok);
    let client = http::client(None);
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let s0 = servers.sample();
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(requests);
    for _ in 0..requests {
        let (sem, client, url, cookie) = (sem.clone(), client.clone(), format!("{b}{path}"), cookie.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.expect("sem");
            let t = Instant::now();
            let resp = client.get(&url).header(reqwest::header::COOKIE, cookie).send().await;
            let out = match resp {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.bytes().await.map(|b| b.len()).unwrap_or(0);
                    Ok((status, body))
                }
                Err(e) => Err(e.to_string()),
            };
            (t.elapsed().as_micros() as u64, out)
        }));
    }
    let (mut ok, mut bad, mut errors, mut lat, mut bytes) = (0u64, 0u64, Vec::new(), Vec::new(), 0usize);
    for t in tasks {
        let (us, out) = t.await.map_err(|e| e.to_string())?;
        lat.push(us);
        match out {
            Ok((200, n)) => {
                ok += 1;
                bytes = n;
            }
            Ok((s, _)) => {
                bad += 1;
                if errors.len() < 5 {
                    errors.push(format!("status {s}"));
                }
            }
            Err(e) => {
                bad += 1;
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = servers.sample().cpu_since(&s0);
    lat.sort_unstable();
    emit(
        "list",
        vec![
            ("url", json!(c.url())),
            ("path", json!(path)),
            ("online_sockets", json!(online_held)),
            ("requests", json!(requests)),
            ("concurrency", json!(concurrency)),
            ("ok", json!(ok)),
            ("failed", json!(bad)),
            ("errors", json!(errors)),
            ("body_bytes", json!(bytes)),
            ("seconds", json!((secs * 100.0).round() / 100.0)),
            ("requests_per_s", json!((ok as f64 / secs).round())),
            ("p50_ms", json!(ms(pct(&lat, 50.0)))),
            ("p99_ms", json!(ms(pct(&lat, 99.0)))),
            ("server_cpu_seconds", json!(cpu.map(|s| (s * 100.0).round() / 100.0))),
            ("server_cpu_ms_per_request", json!(cpu.map(|s| (s * 1e5 / ok.max(1) as f64).round() / 100.0))),
        ],
    );
    if let Some(pool) = pool {
        pool.exit().await;
    }
    Ok(())
}
