//! Real browsers for the end-to-end tests: a `chromedriver` of our own on a free port (killed with
//! its whole process group on drop) and headless Chromium sessions driven through WebDriver
//! (fantoccini over plain HTTP), each with a fresh profile, hence its own cookie jar.
//!
//! A missing `chromium` or `chromedriver` is a failure with a clear message, never a skip.
//! Nothing sleeps and hopes: every wait polls a condition against a deadline.

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand, WindowHandle};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// How long a condition in a page may take to come true (live updates take milliseconds).
pub const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

/// The flags the issue asks for, then a desktop-sized window without scrollbars (screenshots).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,800",
    // Faster start and first navigation: no keyring lookups, no extensions, fewer services.
    "--password-store=basic",
    "--use-mock-keychain",
    "--disable-extensions",
    "--no-default-browser-check",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication",
    // A page in a background tab (two tabs of B's) keeps its timers: reconnects are not delayed.
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
];

/// Polls `probe` every 50 ms until it returns `Ok`, or panics at `limit` with `what` and the last
/// thing `probe` saw.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) if start.elapsed() >= limit => {
                panic!("timed out after {limit:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()))
}

/// The Chromium binary: `$CHROME`, else Debian's real binary behind the `/usr/bin/chromium`
/// wrapper, else `chromium` on `PATH`.
fn chromium_binary() -> PathBuf {
    if std::env::var_os("CHROME").is_none() {
        let debian = Path::new("/usr/lib/chromium/chromium");
        if debian.is_file() {
            return debian.to_owned();
        }
    }
    find_program("CHROME", &["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
        panic!(
            "Chromium is not installed (looked at $CHROME, /usr/lib/chromium/chromium and chromium on PATH). \
             The browser tests need it: `apt-get install chromium chromium-driver`, or run `bash scripts/test`, which installs it."
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

/// A `chromedriver` in its own process group; dropping it kills the group (driver and browsers),
/// so a panicking test leaks no Chromium.
pub struct Driver {
    child: Child,
    pub url: String,
    chromium: PathBuf,
    /// The browsers' profiles, removed after the group is killed (a live Chromium would
    /// write into a removed profile and leave it behind).
    profiles: std::sync::Mutex<Vec<tempfile::TempDir>>,
}

impl Driver {
    pub async fn start() -> Driver {
        let program = find_program("CHROMEDRIVER", &["chromedriver"]).unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed (looked at $CHROMEDRIVER and PATH). The browser tests need it: \
                 `apt-get install chromium chromium-driver`, or run `bash scripts/test`, which installs it."
            )
        });
        let chromium = chromium_binary();
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&program)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {}: {e}", program.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let start = Instant::now();
            while start.elapsed() < WAIT {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!("chromedriver exited with {status} (port {port} taken?)");
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Driver { child, url: format!("http://{addr}"), chromium, profiles: Default::default() };
                }
                tokio::time::sleep(POLL).await;
            }
            if last_error.is_empty() {
                last_error = format!("chromedriver did not listen on {addr} within {WAIT:?}");
            }
            kill_group(&mut child);
        }
        panic!("could not start chromedriver: {last_error}");
    }

    /// A new headless Chromium with a fresh profile (its own cookies), at a desktop size.
    pub async fn browser(&self, name: &str) -> Browser {
        let profile = tempfile::Builder::new().prefix("roster-e2e-profile-").tempdir().expect("profile dir");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps: Capabilities = match json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": self.chromium, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        // A session has once failed to start under load: one retry.
        let client = match builder.connect(&self.url).await {
            Ok(c) => c,
            Err(first) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                builder.connect(&self.url).await.unwrap_or_else(|second| {
                    panic!("could not start a Chromium session for {name}: {first}; retry: {second}")
                })
            }
        };
        self.profiles.lock().expect("profiles").push(profile);
        Browser { client, name: name.to_owned() }
    }
}

fn kill_group(child: &mut Child) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.wait();
}

impl Drop for Driver {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        self.profiles.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// `POST /session/{id}/se/log {"type": "browser"}`: chromedriver's console log (drained on read).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// One log entry of the browser console.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: String,
    pub message: String,
}

impl LogEntry {
    /// A console error, a CSP violation, or favicon noise.
    pub fn is_problem(&self) -> bool {
        self.level == "SEVERE" || self.message.contains("Content Security Policy") || self.message.contains("favicon")
    }
}

/// One person's browser.
pub struct Browser {
    pub client: Client,
    pub name: String,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("{}: goto {url}: {e}", self.name));
    }

    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("{}: script failed: {e}\n{script}", self.name))
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.map(|u| u.path().to_owned()).unwrap_or_default()
    }

    /// Waits until the page's path is `path` (after a form submission or a redirect).
    pub async fn wait_path(&self, path: &str) {
        eventually(&format!("{} to be at {path}", self.name), WAIT, || async {
            let now = self.path().await;
            if now == path {
                Ok(())
            } else {
                Err(now)
            }
        })
        .await;
    }

    pub async fn fill(&self, id: &str, value: &str) {
        let input = self.client.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("{}: no #{id}: {e}", self.name));
        input.clear().await.expect("clear");
        if !value.is_empty() {
            input.send_keys(value).await.expect("type");
        }
    }

    /// Clicks the submit button of the page's main form.
    pub async fn submit(&self) {
        let button = self
            .client
            .find(Locator::Css("main form button[type=submit]"))
            .await
            .unwrap_or_else(|e| panic!("{}: no submit button: {e}", self.name));
        // Mark the page, so the wait below sees the answer's page and not this one (the answer
        // to an invalid form has the same path, so waiting on the path alone raced).
        self.js("window.__rosterBeforeSubmit = true; return null;", vec![]).await;
        button.click().await.expect("click submit");
        eventually(&format!("{} to load the form's answer", self.name), WAIT, || async {
            let v = self
                .client
                .execute(
                    "return window.__rosterBeforeSubmit === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .map_err(|e| e.to_string())?;
            if v == Value::Bool(true) {
                Ok(())
            } else {
                Err(format!("{v}"))
            }
        })
        .await;
    }

    /// Fills and submits the sign-up form (from a fresh `/sign_up/`).
    pub async fn sign_up(&self, base: &str, username: &str, password1: &str, password2: &str) {
        self.goto(&format!("{base}/sign_up/")).await;
        self.fill("id_username", username).await;
        self.fill("id_password1", password1).await;
        self.fill("id_password2", password2).await;
        self.submit().await;
    }

    /// Fills and submits the log-in form (from a fresh `/log_in/`).
    pub async fn log_in(&self, base: &str, username: &str, password: &str) {
        self.goto(&format!("{base}/log_in/")).await;
        self.fill("id_username", username).await;
        self.fill("id_password", password).await;
        self.submit().await;
    }

    /// Clicks "Log out" in the header.
    pub async fn log_out(&self) {
        let button = self.client.find(Locator::Css("header form.inline button")).await.expect("a Log out button");
        button.click().await.expect("click Log out");
    }

    /// The user list as the person sees it: `[(data-username, text)]`, plus the indicator.
    pub async fn list(&self) -> (Vec<(String, String)>, String) {
        let v = self
            .js(
                "const items = Array.from(document.querySelectorAll('#users > li')).map(li =>
                   [li.getAttribute('data-username'), li.childElementCount === 0 ? li.textContent : li.innerHTML]);
                 const c = document.getElementById('connection');
                 return [items, c ? c.dataset.state + ' (' + c.textContent + ')' : 'no indicator'];",
                vec![],
            )
            .await;
        let items = v[0]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| (p[0].as_str().unwrap_or("<none>").to_owned(), p[1].as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        (items, v[1].as_str().unwrap_or("").to_owned())
    }

    /// The text of `username`'s entry, if the list has one.
    pub async fn entry(&self, username: &str) -> Option<String> {
        self.list().await.0.into_iter().find(|(u, _)| u == username).map(|(_, t)| t)
    }

    /// Waits until `username`'s entry reads exactly `USERNAME: Online` (or `Offline`).
    pub async fn wait_entry(&self, username: &str, state: &str) {
        let want = format!("{username}: {state}");
        eventually(&format!("{}'s page to show {want:?}", self.name), WAIT, || async {
            let (items, conn) = self.list().await;
            if items.iter().any(|(u, t)| u == username && *t == want) {
                Ok(())
            } else {
                Err(format!("{items:?}, connection {conn}"))
            }
        })
        .await;
    }

    /// The connection indicator's `data-state`.
    pub async fn connection(&self) -> String {
        self.js("const c = document.getElementById('connection'); return c ? c.dataset.state : null;", vec![])
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub async fn wait_connection(&self, state: &str, limit: Duration) {
        eventually(&format!("{}'s indicator to be {state:?}", self.name), limit, || async {
            let now = self.connection().await;
            if now == state {
                Ok(())
            } else {
                Err(now)
            }
        })
        .await;
    }

    /// Puts a marker in the page's JavaScript realm; a reload would lose it.
    pub async fn mark_page(&self) {
        self.js("window.__rosterE2eMark = 'still the same page';", vec![]).await;
    }

    pub async fn assert_not_reloaded(&self) {
        let v = self.js("return window.__rosterE2eMark || null;", vec![]).await;
        assert_eq!(v, json!("still the same page"), "{}'s page was reloaded (or navigated)", self.name);
    }

    /// Reads (and drains) the console log.
    pub async fn console(&self) -> Vec<LogEntry> {
        let v = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .unwrap_or_else(|e| panic!("{}: read the browser log: {e}", self.name));
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| LogEntry {
                        level: e["level"].as_str().unwrap_or("").to_owned(),
                        message: e["message"].as_str().unwrap_or("").to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails on any console error, CSP violation or favicon noise since the last read.
    pub async fn assert_clean_console(&self) {
        let problems: Vec<LogEntry> = self.console().await.into_iter().filter(LogEntry::is_problem).collect();
        assert!(problems.is_empty(), "{}'s browser console has problems: {problems:#?}", self.name);
    }

    /// Resizes the window and writes a PNG of the viewport to `target/e2e/NAME.png`.
    pub async fn screenshot(&self, name: &str, width: u32, height: u32) -> PathBuf {
        self.client.set_window_size(width, height).await.expect("resize");
        // Let layout settle after the resize: wait until the viewport reports the new width.
        eventually("the resize to apply", WAIT, || async {
            let w = self.js("return document.documentElement.clientWidth;", vec![]).await.as_u64().unwrap_or(0);
            if w > 0 && w <= u64::from(width) && w + 40 >= u64::from(width) {
                Ok(())
            } else {
                Err(format!("width {w}"))
            }
        })
        .await;
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create target/e2e");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn new_tab(&self) -> WindowHandle {
        let w = self.client.new_window(true).await.expect("new tab");
        w.handle
    }

    /// Ends the session: chromedriver quits this Chromium.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// `target/e2e`: next to the test binary's profile dir (`<target>/debug/deps/e2e-…`).
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("e2e")
}
