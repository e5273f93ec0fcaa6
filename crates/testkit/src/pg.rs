//! A private PostgreSQL cluster for integration tests: `initdb` + `pg_ctl` in a temp dir on a free
//! port, one cluster per test binary, a fresh database per test.
//!
//! Call [`fresh_database_url`] from each test (one cluster per test binary), or start a
//! cluster of the test's own with [`PgCluster::start`] (to stop and restart it). It never touches a PostgreSQL already running on the
//! machine, and it never skips: a missing PostgreSQL installation fails the test with a message
//! saying what was looked for.
//!
//! # Stopping the cluster when the test process ends
//! The shared cluster lives in a `static`, and statics are never dropped, so a `Drop` guard alone
//! would leak a running postmaster after every `cargo test`. Instead, before the cluster is
//! started, a tiny watchdog `sh` is spawned with its stdin connected to a pipe whose only write
//! end lives in this process (Rust opens pipes `O_CLOEXEC`, so neither `pg_ctl` nor the postmaster
//! inherit it). The watchdog blocks in `cat >/dev/null`; when this process ends for any reason
//! (normal exit, panic, `abort`, SIGKILL) the kernel closes the write end, `cat` sees EOF and the
//! watchdog runs `pg_ctl stop -m immediate` and removes the temp dir. No polling, no signal
//! handlers. The watchdog and `pg_ctl` run in their own process groups so a Ctrl-C on the
//! terminal's foreground group does not kill the watchdog before it has cleaned up. A cluster
//! that is dropped (one not kept in a static) closes the pipe itself and waits for the watchdog.
//!
//! Environment: `ROSTER_PG_BINDIR` overrides where `initdb`/`pg_ctl` are looked for (otherwise
//! `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`). When the tests run as root,
//! PostgreSQL runs as the `postgres` user through `runuser` (initdb refuses root).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use sqlx::{Connection, Executor, PgConnection};

/// A running private cluster. See the module docs for how it is stopped.
pub struct PgCluster {
    port: u16,
    root: PathBuf,
    pg_ctl: PathBuf,
    as_postgres: bool,
    /// The watchdog and the write end of its stdin pipe; taking and dropping the stdin stops
    /// the cluster.
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
    next_db: AtomicU32,
}

/// The cluster shared by every test of this test binary, started on first use.
pub fn cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(PgCluster::start)
}

/// Creates a new, empty database on the shared cluster and returns its URL.
pub async fn fresh_database_url() -> String {
    cluster().fresh_database_url().await
}

impl PgCluster {
    /// Runs `initdb` into a new temp dir and starts a postmaster on a free port on 127.0.0.1.
    /// Panics with a readable message when PostgreSQL is missing or does not start.
    pub fn start() -> PgCluster {
        let bindir = find_bindir();
        let initdb = bindir.join("initdb");
        let pg_ctl = bindir.join("pg_ctl");
        let as_postgres = crate::running_as_root();

        let root = tempfile::Builder::new()
            .prefix("roster-pg-")
            .tempdir()
            .expect("creating a temp dir for the test PostgreSQL cluster")
            .keep();
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .expect("chown of the test cluster dir to the postgres user");
        }
        let data = root.join("data");

        // Watchdog first, so even a failed initdb/start leaves nothing behind (a panic below drops
        // `cluster`, which closes the pipe).
        let mut stop = pg_command(as_postgres, &pg_ctl);
        stop.arg("-D").arg(&data).args(["stop", "-m", "immediate"]);
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#"cat >/dev/null; "$@" >/dev/null 2>&1; rm -rf "$ROSTER_PG_ROOT""#)
            .arg("roster-pg-watchdog")
            .arg(stop.get_program())
            .args(stop.get_args())
            .env("ROSTER_PG_ROOT", &root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawning the test cluster watchdog (sh)");
        let stdin = watchdog.stdin.take().expect("watchdog stdin is piped");
        let mut cluster = PgCluster {
            port: 0,
            root: root.clone(),
            pg_ctl: pg_ctl.clone(),
            as_postgres,
            watchdog: Mutex::new(Some((watchdog, stdin))),
            next_db: AtomicU32::new(0),
        };

        let out = pg_command(as_postgres, &initdb)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", initdb.display()));
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        // A port found free may be taken before the postmaster binds it: retry a few times.
        let mut last_error = String::new();
        for _ in 0..5 {
            cluster.port = crate::free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start the test PostgreSQL cluster: {last_error}");
    }

    /// Starts the postmaster on `self.port` (the same data, so a stopped cluster comes back).
    fn pg_ctl_start(&self) -> Result<(), String> {
        let data = self.root.join("data");
        let log = self.root.join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.root.display()
        );
        let out = pg_command(self.as_postgres, &self.pg_ctl)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .process_group(0)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.pg_ctl.display()));
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "pg_ctl start failed ({}):\n{}\n{}\nlog:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            read_to_string_lossy(&log)
        ))
    }

    /// Stops the postmaster as an outage would: every connection is cut (`pg_ctl stop -m fast`;
    /// not `immediate`, which with this cluster's `fsync=off` would lose committed rows).
    /// [`Self::restart`] brings it back on the same port with the same data.
    pub fn stop(&self) {
        let out = pg_command(self.as_postgres, &self.pg_ctl)
            .arg("-D")
            .arg(self.root.join("data"))
            .args(["-w", "stop", "-m", "fast"])
            .stdin(Stdio::null())
            .process_group(0)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.pg_ctl.display()));
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts a stopped cluster again on the same port.
    pub fn restart(&self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("could not restart the test PostgreSQL cluster: {e}");
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of the `postgres` maintenance database (superuser `postgres`, no password).
    pub fn admin_url(&self) -> String {
        self.database_url("postgres")
    }

    pub fn database_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new database with a generated name and returns its URL.
    pub async fn fresh_database_url(&self) -> String {
        let name = format!("roster_test_{}_{}", std::process::id(), self.next_db.fetch_add(1, Ordering::Relaxed));
        let mut conn =
            PgConnection::connect(&self.admin_url()).await.expect("connecting to the test PostgreSQL cluster");
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("CREATE DATABASE on the test cluster");
        conn.close().await.ok();
        self.database_url(&name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let taken = self.watchdog.get_mut().map(Option::take).unwrap_or(None);
        if let Some((mut child, stdin)) = taken {
            drop(stdin); // EOF: the watchdog stops the postmaster and removes the dir
            let _ = child.wait();
        }
    }
}

fn pg_command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn find_bindir() -> PathBuf {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut tried = Vec::new();
    if let Some(dir) = std::env::var_os("ROSTER_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(has_tools(&dir), "ROSTER_PG_BINDIR={} has no initdb/pg_ctl", dir.display());
        return dir;
    }
    match Command::new("pg_config").arg("--bindir").output() {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_tools(&dir) {
                return dir;
            }
            tried.push(format!("pg_config --bindir ({})", dir.display()));
        }
        _ => tried.push("pg_config --bindir (not runnable)".to_owned()),
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return dir;
    }
    tried.push("/usr/lib/postgresql/*/bin".to_owned());
    panic!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; tried {}. Install the PostgreSQL \
         server (e.g. `apt-get install postgresql`) or set ROSTER_PG_BINDIR.",
        tried.join(", ")
    );
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "postgres"]).output().expect("running `id`");
        assert!(
            out.status.success(),
            "tests run as root, so PostgreSQL must run as the `postgres` user, which does not exist"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("numeric id")
    };
    (id("-u"), id("-g"))
}

fn read_to_string_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
