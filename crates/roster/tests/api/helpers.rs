//! Test support: the real `roster` binary on a free port with a fresh SQLite database, a
//! cookie-keeping HTTP client, and form helpers. No mocks; every wait has a deadline.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::redirect::Policy;
use reqwest::{Client, Response, StatusCode};
use roster::store::Store;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const DEADLINE: Duration = Duration::from_secs(30);
pub const GOOD_PASSWORD: &str = "correct-Horse-battery-9";

/// Where a test's requests go: a server, or a proxy in front of servers.
pub trait Site {
    fn addr(&self) -> SocketAddr;

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }
}

impl Site for TestServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

pub struct TestServer {
    child: Child,
    pub addr: SocketAddr,
    pub db_url: String,
    /// Everything the server has logged so far.
    pub logs: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts the server with grace 0 and the default settings otherwise.
    pub async fn start() -> TestServer {
        TestServer::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_url = format!("sqlite://{}", dir.path().join("roster.db").display());
        TestServer::start_on(dir, db_url, "127.0.0.1:0", extra).await
    }

    pub async fn start_on(dir: tempfile::TempDir, db_url: String, bind: &str, extra: &[&str]) -> TestServer {
        TestServer::spawn(dir, db_url, bind, extra, None).await
    }

    /// Starts the server with its open-file limit lowered to `limit` (`ulimit -n` in a shell
    /// that then becomes the server).
    pub async fn start_with_fd_limit(limit: u32, extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_url = format!("sqlite://{}", dir.path().join("roster.db").display());
        TestServer::spawn(dir, db_url, "127.0.0.1:0", extra, Some(limit)).await
    }

    async fn spawn(
        dir: tempfile::TempDir,
        db_url: String,
        bind: &str,
        extra: &[&str],
        fd_limit: Option<u32>,
    ) -> TestServer {
        let grace: &[&str] = if extra.contains(&"--presence-grace") { &[] } else { &["--presence-grace", "0s"] };
        let binary = env!("CARGO_BIN_EXE_roster");
        let mut command = match fd_limit {
            None => Command::new(binary),
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {limit} && exec \"$0\" \"$@\""), binary]);
                sh
            }
        };
        let mut child = command
            .args(["serve", "--bind", bind, "--database-url", &db_url])
            .args(grace)
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("ROSTER_BIND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the roster binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let addr = rest.split(|c: char| c == '"' || c.is_whitespace()).next().unwrap_or("");
                    if let (Some(tx), Ok(addr)) = (tx.take(), addr.parse::<SocketAddr>()) {
                        let _ = tx.send(addr);
                    }
                }
                let mut l = sink.lock().expect("log buffer");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match tokio::time::timeout(DEADLINE, rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!("the server did not report its address in time; logs:\n{}", logs.lock().expect("logs")),
        };
        TestServer { child, addr, db_url, logs, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        Site::url(self, path)
    }

    /// A browser-like client: keeps cookies, does not follow redirects (tests check them).
    pub fn client(&self) -> Client {
        self.browser().client
    }

    /// A client together with its cookie jar (to hand the session cookie to a WebSocket).
    pub fn browser(&self) -> Browser {
        self.browser_from("127.0.0.1")
    }

    /// A browser whose connections come from the loopback address `source` (e.g. `127.0.0.2`):
    /// another client address as far as the server can tell.
    pub fn browser_from(&self, source: &str) -> Browser {
        let jar = Arc::new(Jar::default());
        let client = Client::builder()
            .cookie_provider(jar.clone())
            .redirect(Policy::none())
            .local_address(source.parse::<std::net::IpAddr>().expect("source address"))
            .build()
            .expect("client");
        Browser { client, jar, base: self.url("/") }
    }

    /// A second connection to the same database, to check what the server did.
    pub async fn store(&self) -> Store {
        Store::connect(&self.db_url).await.expect("open the test database")
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").clone()
    }

    /// Waits until the logs contain `needle`, or panics at the deadline.
    pub async fn wait_for_log(&self, needle: &str) {
        let start = tokio::time::Instant::now();
        while !self.logs().contains(needle) {
            assert!(start.elapsed() < DEADLINE, "log line {needle:?} never appeared; logs:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address of the separate metrics listener (`--metrics-bind`), from the start-up log.
    pub async fn metrics_addr(&self) -> SocketAddr {
        self.wait_for_log("metrics on http://").await;
        let logs = self.logs();
        let rest = logs.split("metrics on http://").nth(1).expect("logged");
        rest.split(|c: char| c == '"' || c == '/' || c.is_whitespace())
            .next()
            .unwrap_or("")
            .parse()
            .expect("metrics address")
    }

    /// The server's process id.
    #[allow(dead_code)] // the cluster tests use the process controls
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// Sends `signal` (e.g. `-KILL`, `-STOP`, `-CONT`) to the server's process.
    #[allow(dead_code)]
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill").args([signal, &self.pid().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} failed");
    }

    /// Kills the server at once (SIGKILL), as a crash would, and waits for it to be gone.
    #[allow(dead_code)]
    pub async fn kill(mut self) {
        self.signal("-KILL");
        let _ = tokio::time::timeout(DEADLINE, self.child.wait()).await.expect("the killed server is gone");
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        tokio::time::timeout(DEADLINE, self.child.wait()).await.expect("server stops in time").expect("wait")
    }

    /// Runs `roster ARGS --database-url <this server's db>` to completion with `stdin` as input.
    pub async fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        run_cli(&self.db_url, args, stdin).await
    }
}

pub async fn run_cli(db_url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(args)
        .args(["--database-url", db_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the roster binary");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("write stdin");
    drop(input);
    tokio::time::timeout(DEADLINE, child.wait_with_output()).await.expect("cli finishes in time").expect("output")
}

/// Runs `roster ARGS` to completion with exactly the `ROSTER_*` variables in `env` (the test's
/// own are removed) and no standard input.
pub async fn run_roster(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("ROSTER_")) {
        command.env_remove(name);
    }
    let run = command.args(args).envs(env.iter().copied()).stdin(Stdio::null()).output();
    tokio::time::timeout(DEADLINE, run).await.expect("roster finishes in time").expect("run roster")
}

/// The `csrfmiddlewaretoken` value in a page.
pub fn csrf_from(html: &str) -> String {
    let marker = "name=\"csrfmiddlewaretoken\" value=\"";
    let start = html.find(marker).expect("page has a CSRF token") + marker.len();
    html[start..].split('"').next().expect("token").to_owned()
}

/// GETs `path` and returns the CSRF token of its form.
pub async fn csrf(server: &impl Site, client: &Client, path: &str) -> String {
    let page = client.get(server.url(path)).send().await.expect("GET").text().await.expect("body");
    csrf_from(&page)
}

pub async fn post_form(server: &impl Site, client: &Client, path: &str, fields: &[(&str, &str)]) -> Response {
    client.post(server.url(path)).form(fields).send().await.expect("POST")
}

pub async fn sign_up(server: &impl Site, client: &Client, username: &str, password: &str) -> Response {
    let token = csrf(server, client, "/sign_up/").await;
    post_form(
        server,
        client,
        "/sign_up/",
        &[("csrfmiddlewaretoken", &token), ("username", username), ("password1", password), ("password2", password)],
    )
    .await
}

pub async fn log_in(server: &impl Site, client: &Client, username: &str, password: &str) -> Response {
    let token = csrf(server, client, "/log_in/").await;
    post_form(
        server,
        client,
        "/log_in/",
        &[("csrfmiddlewaretoken", &token), ("username", username), ("password", password)],
    )
    .await
}

/// Signs up and logs in a fresh user with a client of its own.
pub async fn user_client(server: &TestServer, username: &str) -> Client {
    let client = server.client();
    assert_eq!(sign_up(server, &client, username, GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    assert_eq!(log_in(server, &client, username, GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    client
}

pub fn location(r: &Response) -> &str {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
}

pub fn set_cookies(r: &Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
}

pub fn cookie_from<'a>(set_cookies: &'a [String], name: &str) -> Option<&'a str> {
    set_cookies.iter().find_map(|c| c.strip_prefix(&format!("{name}="))).and_then(|rest| rest.split(';').next())
}

/// A logged-in person: an HTTP client and the cookies it holds.
#[derive(Clone)]
pub struct Browser {
    pub client: Client,
    pub jar: Arc<Jar>,
    base: String,
}

impl Browser {
    /// The `Cookie` header this browser would send.
    pub fn cookie_header(&self) -> String {
        let url = self.base.parse().expect("url");
        self.jar.cookies(&url).and_then(|v| v.to_str().ok().map(str::to_owned)).unwrap_or_default()
    }
}

/// Signs up and logs in a fresh user in a browser of its own.
pub async fn user_browser(server: &TestServer, username: &str) -> Browser {
    let b = server.browser();
    assert_eq!(sign_up(server, &b.client, username, GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    assert_eq!(log_in(server, &b.client, username, GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    b
}

pub fn now_ms() -> i64 {
    roster::now_ms()
}

/// The same page from the JSON API (the list page's query), in the same notation.
pub async fn api_page(server: &TestServer, b: &Browser, page: u32) -> Vec<String> {
    let url = server.url(&format!("/api/users/?page={page}"));
    let body: Value = b.client.get(url).send().await.expect("GET").json().await.expect("json");
    body["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| format!("{}{}", u["username"].as_str().expect("name"), if u["online"] == true { "+" } else { "" }))
        .collect()
}
