//! Command line and settings: every flag has a `ROSTER_*` environment twin.
//!
//! This module only describes and parses settings; it must not open sockets, files or
//! databases. Secrets (the password in a database URL) are redacted whenever settings
//! are printed (`Debug`; `roster config` goes through `config::redact`). The config file is
//! read by `config`, which derives its keys from the flags defined here.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Roster: who is online, live.
///
/// With no subcommand, `roster` serves (the same as `roster serve`).
#[derive(Parser, Debug)]
#[command(name = "roster", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// A TOML file of settings: `key = value` lines whose keys are the long flags of `serve`
    /// (`presence-grace = "5s"`). Flags win over environment variables, which win over the
    /// file, which wins over the defaults. `roster config` shows the result.
    #[arg(long, env = "ROSTER_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<std::path::PathBuf>,

    /// Settings for `serve`, also accepted without the subcommand.
    #[command(flatten)]
    pub serve: ServeArgs,
}

// Parsed once at start-up: the size of the serve variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the web pages and the live user list (the default).
    Serve(ServeArgs),
    /// Print the effective settings and where each comes from (flag, environment, config
    /// file or default), secrets redacted, then exit. Takes the same flags as `serve`.
    Config(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(DbArgs),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Write a consistent copy of the SQLite database into a new file while the server keeps
    /// running (SQLite's `VACUUM INTO`). To restore, stop the server and serve from the copy.
    /// For PostgreSQL, use pg_dump.
    Backup {
        /// The file to create; an existing file is never overwritten.
        file: std::path::PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Copy users and sessions from the `--database-url` database (SQLite) into PostgreSQL, in
    /// one transaction, keeping ids (sessions stay valid, the id sequence is moved past them).
    Copy(CopyArgs),
}

/// `roster copy`: where to, and whether a target that already holds data may be updated.
#[derive(Args, Clone)]
pub struct CopyArgs {
    /// The PostgreSQL database to copy into, `postgres://user:pass@host/db` (its schema is
    /// created or upgraded first). The environment variable keeps the password off the
    /// command line.
    #[arg(long, env = "ROSTER_COPY_TO", value_name = "URL")]
    pub to: String,
    /// Copy into a target that already holds users or sessions, updating rows with the same
    /// id (users and sessions only in the target are kept). Running the same copy again with
    /// `--merge` changes nothing.
    #[arg(long)]
    pub merge: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

impl fmt::Debug for CopyArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyArgs")
            .field("to", &redact_url(&self.to))
            .field("merge", &self.merge)
            .field("db", &self.db)
            .finish()
    }
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user. The password is read from a prompt, or from standard input when it is not a terminal.
    Create {
        /// The username (Django's rules: letters, digits and @ . + - _, at most 150 characters).
        username: String,
        /// Make the user staff (may use the admin pages).
        #[arg(long)]
        staff: bool,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// List users, oldest first.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set a user's password (read from a prompt, or from standard input when it is not a terminal).
    SetPassword {
        username: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Deactivate a user: they cannot log in, their sessions end and their open pages are closed.
    Deactivate {
        username: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Reactivate a deactivated user.
    Activate {
        username: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Delete a user and all their sessions.
    Delete {
        username: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Import users from a CSV export of Django's `auth_user` table (keeps their pbkdf2_sha256 hashes;
    /// each is upgraded to Argon2id at the user's next log in).
    ImportDjango {
        /// CSV file with a header row: username,password,is_staff,is_active,date_joined,last_login (other columns ignored).
        file: std::path::PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// The cluster a node belongs to, or that a user command tells of its changes.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// The cluster's Redis (`redis://[:password@]host:port[/db]` or `redis+unix:///path`; TLS
    /// `rediss://` is refused, this build has no TLS client for Redis): every node started with
    /// the same URL and the same PostgreSQL `--database-url` shares presence through it, and a
    /// `roster user` command given it tells every node of its change at once. Without it, Roster
    /// serves as one node with an in-process layer (and servers notice a user command's change
    /// within seconds).
    #[arg(long, env = "ROSTER_REDIS_URL", value_parser = parse_redis_url)]
    pub redis_url: Option<RedisUrl>,

    /// With `--redis-url`: the prefix of Roster's keys in Redis (clusters sharing one Redis need
    /// different prefixes).
    #[arg(long, env = "ROSTER_REDIS_KEY_PREFIX", default_value = "roster")]
    pub redis_key_prefix: String,
}

/// Where the data lives.
#[derive(Args, Clone)]
pub struct DbArgs {
    /// Database URL: `sqlite://roster.db` (created and migrated at first start) or `postgres://user:pass@host/db`.
    #[arg(long, env = "ROSTER_DATABASE_URL", default_value = "sqlite://roster.db", global = true)]
    pub database_url: String,
}

impl fmt::Debug for DbArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbArgs").field("database_url", &redact_url(&self.database_url)).finish()
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Address to listen on (use port 0 for any free port).
    #[arg(long, env = "ROSTER_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    /// How long a user stays Online after their last socket closes, so a reload does not flash
    /// Offline (e.g. `5s`, `500ms`, `0s`).
    #[arg(long, env = "ROSTER_PRESENCE_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub presence_grace: Duration,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// With `--redis-url`: how long the other nodes keep the users of a node that stopped
    /// answering (killed, paused, cut off) Online. The node renews it every third of that.
    #[arg(long, env = "ROSTER_NODE_LEASE", default_value = "10s", value_parser = parse_positive_duration)]
    pub node_lease: Duration,

    /// With `--redis-url`: this node's name in logs and in Redis (default: the host name and
    /// the process id).
    #[arg(long, env = "ROSTER_NODE_NAME")]
    pub node_name: Option<String>,

    /// How often presence changes are sent out: the first change after a quiet tick goes out at
    /// once; changes that arrive within a tick of the last batch wait for the next one. Under
    /// load a batch also waits (up to 10 ticks) until the sockets have taken the previous one.
    /// A live view's window (the page) gets at most one frame per 5 ticks. `0s` sends every
    /// change at once.
    #[arg(long, env = "ROSTER_TICK", default_value = "100ms", value_parser = parse_duration)]
    pub tick: Duration,

    /// Batches of changes a socket may fall behind (a slow or stalled reader) before it is
    /// resynced: a `roster.v1` socket gets a fresh snapshot, a tutorial socket is closed (1013).
    /// The batches are shared by all sockets, so this also bounds what one stalled socket pins.
    #[arg(long, env = "ROSTER_SEND_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub send_queue: u32,

    /// Kernel send buffer per connection, in bytes (SO_SNDBUF). 0 leaves it to the kernel,
    /// which grows it up to `net.ipv4.tcp_wmem`'s maximum (4 MiB here) for a peer that stops
    /// reading; a fixed size bounds the kernel memory a stalled client can hold, so it falls
    /// behind sooner and is resynced instead.
    #[arg(long, env = "ROSTER_TCP_SEND_BUFFER", default_value_t = 0)]
    pub tcp_send_buffer: u32,

    /// Most sockets (open pages) one user may hold at once; more are refused with 429.
    #[arg(long, env = "ROSTER_MAX_SOCKETS_PER_USER", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sockets_per_user: u32,

    /// How often the server pings each socket.
    #[arg(long, env = "ROSTER_PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A socket that has sent nothing (not even a pong) for ping interval + this is dropped.
    #[arg(long, env = "ROSTER_PING_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ping_timeout: Duration,

    /// Other origins (e.g. `https://roster.example.com`) whose pages may open the socket and
    /// post forms, comma separated (Django's CSRF_TRUSTED_ORIGINS). The site's own scheme and
    /// host are always allowed; a request without `Origin` (not from a browser) is allowed,
    /// except a form post over HTTPS, which then needs a matching `Referer`.
    #[arg(long, env = "ROSTER_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Users per page of the user list (`?page=N`) and of the admin pages (`/admin/`).
    #[arg(long, env = "ROSTER_PAGE_SIZE", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub page_size: u32,

    /// Failed log-ins allowed for one account from one client address within `--login-window`;
    /// further attempts from that address on that account get 429. Failures from other
    /// addresses do not count, so nobody else can lock an account's owner out.
    #[arg(long, env = "ROSTER_LOGIN_LIMIT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_limit: u32,

    /// Failed log-ins allowed from one client address across all accounts within
    /// `--login-window` (a guesser spraying many accounts); further attempts get 429.
    #[arg(long, env = "ROSTER_LOGIN_ADDRESS_LIMIT", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_address_limit: u32,

    /// Failed log-ins on one account from all addresses within `--login-window` beyond which the
    /// account is guarded: an attempt from an address that has already failed on it waits 2 s
    /// before its password is checked. Never refuses: addresses that have not failed on the
    /// account (the owner's, usually) are not slowed.
    #[arg(long, env = "ROSTER_LOGIN_ACCOUNT_LIMIT", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_account_limit: u32,

    /// The window over which failed log-ins are counted (e.g. `15m`).
    #[arg(long, env = "ROSTER_LOGIN_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub login_window: Duration,

    /// Accounts one client address may create within `--signup-window`; more get 429.
    #[arg(long, env = "ROSTER_SIGNUP_LIMIT", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub signup_limit: u32,

    /// The window over which sign-ups per address are counted (e.g. `1h`).
    #[arg(long, env = "ROSTER_SIGNUP_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub signup_window: Duration,

    /// How long a log in lasts (Django's default is two weeks).
    #[arg(long, env = "ROSTER_SESSION_TTL", default_value = "14days", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// How often expired sessions are deleted from the database (also once at start-up). An
    /// expired session never logs anyone in; this only keeps the table from growing.
    #[arg(long, env = "ROSTER_SESSION_PURGE_INTERVAL", default_value = "10m", value_parser = parse_positive_duration)]
    pub session_purge_interval: Duration,

    /// The site is served over HTTPS (through a TLS proxy): cookies are marked `Secure`,
    /// responses carry `Strict-Transport-Security`, and CSRF checks Origin/Referer as for HTTPS.
    #[arg(long, env = "ROSTER_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` (client address) and
    /// `X-Forwarded-Proto` (scheme) headers are believed: addresses or networks, comma separated
    /// (e.g. `127.0.0.1,10.0.0.0/8`). From any other peer these headers are ignored. Default:
    /// none (the client is the TCP peer).
    #[arg(long, env = "ROSTER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::web::client::parse_trusted_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Serve `/metrics` on this separate address only (e.g. `127.0.0.1:9100`); the main
    /// listener then answers 404 for it. Without it, `/metrics` on the main listener answers
    /// only loopback clients (after `--trusted-proxies` resolution).
    #[arg(long, env = "ROSTER_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// How long a client may take to send a request's headers, counted from the connection's
    /// start or from the request's first byte; slower clients are disconnected. A form's body
    /// must also arrive within this time (else 408).
    #[arg(long, env = "ROSTER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub header_read_timeout: Duration,

    /// How long a keep-alive connection may wait, idle, between requests before it is closed.
    /// WebSockets are not subject to it (they have pings).
    #[arg(long, env = "ROSTER_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// Most connections open at once (HTTP and WebSocket); more are refused at accept.
    /// Default: the process's open-file limit minus 64 (kept for the database, logs and the
    /// runtime).
    #[arg(long, env = "ROSTER_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Most connections open at once from one client address (HTTP and WebSocket); more are
    /// refused at accept. Connections from `--trusted-proxies` count only in the total.
    /// Default: a quarter of `--max-connections`.
    #[arg(long, env = "ROSTER_MAX_CONNECTIONS_PER_ADDRESS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: Option<u32>,

    /// Log format: `text` (the tutorial's console lines) or `json` (one object per line).
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Print the effective settings as `roster config` does (secrets redacted) to standard
    /// output at start-up.
    #[arg(long, env = "ROSTER_PRINT_SETTINGS")]
    pub print_settings: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parses `5s`, `500ms`, `0s`, `15m`, `14days`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 5s, 500ms or 15m: {e}"))
}

/// Like [`parse_duration`], refusing zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("`{s}` must be longer than zero"));
    }
    Ok(d)
}

pub use crate::redact::redact_url;

/// A Redis URL; `Debug` and `Display` hide its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// `redis://...` or `redis+unix://...`. `rediss://` (TLS) is refused with its own message: the
/// `redis` crate is built without a TLS feature, and it would only fail later, at the first
/// connection, with a less clear error.
pub fn parse_redis_url(s: &str) -> Result<RedisUrl, String> {
    let s = s.trim();
    if s.starts_with("rediss://") {
        Err(format!(
            "`{}`: rediss:// (TLS) is not supported by this build; reach Redis over a private network with \
             redis://, or through a local TLS tunnel (e.g. stunnel) given as redis://127.0.0.1:PORT",
            redact_url(s)
        ))
    } else if ["redis://", "redis+unix://", "unix://"].iter().any(|p| s.starts_with(p)) {
        Ok(RedisUrl(s.to_owned()))
    } else {
        Err(format!("`{}` is not a Redis URL (redis://host:port, redis+unix:///path)", redact_url(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_positive_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_positive_duration("0s").unwrap_err().contains("longer than zero"));
        assert!(parse_positive_duration("0").is_err());
    }

    #[test]
    fn no_subcommand_means_serve_with_defaults() {
        let cli = Cli::try_parse_from(["roster"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(cli.serve.presence_grace, Duration::from_secs(5));
        assert_eq!(cli.serve.page_size, 200);
        assert!(!format!("{:?}", cli.serve.db).contains("hunter2"));
    }

    #[test]
    fn redis_urls_are_checked_and_never_shown_with_their_password() {
        let cli = Cli::try_parse_from(["roster", "serve", "--redis-url", "redis://:hunter2@h:6379/0"]).expect("parses");
        let Some(Command::Serve(args)) = cli.command else { panic!("serve expected") };
        assert_eq!(args.cluster.redis_url.as_ref().map(RedisUrl::expose), Some("redis://:hunter2@h:6379/0"));
        assert!(!format!("{args:?}").contains("hunter2"));
        assert!(!format!("{}", args.cluster.redis_url.expect("set")).contains("hunter2"));
        let err = parse_redis_url("http://u:hunter2@h").unwrap_err();
        assert!(err.contains("not a Redis URL") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn tls_redis_urls_are_refused_with_a_clear_error() {
        let err = parse_redis_url("rediss://:hunter2@h:6380/0").unwrap_err();
        assert!(err.contains("rediss:// (TLS) is not supported"), "{err}");
        assert!(!err.contains("hunter2"), "no password in the error: {err}");
        let err = Cli::try_parse_from(["roster", "serve", "--redis-url", "rediss://h:6380"]).unwrap_err().to_string();
        assert!(err.contains("not supported"), "refused at start-up: {err}");
    }

    #[test]
    fn debug_redacts_the_copy_target_password() {
        let cli = Cli::try_parse_from(["roster", "copy", "--to", "postgres://u:hunter2@h/db"]).expect("parses");
        let Some(Command::Copy(args)) = cli.command else { panic!("copy expected") };
        assert!(!format!("{args:?}").contains("hunter2"));
    }

    #[test]
    fn debug_redacts_database_password() {
        let cli =
            Cli::try_parse_from(["roster", "serve", "--database-url", "postgres://u:hunter2@h/db"]).expect("parses");
        let Some(Command::Serve(args)) = cli.command else { panic!("serve expected") };
        assert!(!format!("{args:?}").contains("hunter2"));
    }
}
