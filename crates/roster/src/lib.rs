//! Roster: who is online, live. The server library behind the `roster` binary.
//!
//! # Layout
//! - [`settings`]: flags and `ROSTER_*` environment twins (clap), secrets redacted.
//! - [`config`]: the config file (`--config roster.toml`) under flags and environment, and the
//!   effective settings `roster config` prints.
//! - [`app`]: `Application::build(settings)` then `run_until_stopped()`; what `serve` and the
//!   tests run.
//! - [`store`]: users and sessions on SQLite or PostgreSQL, one API, one SQL text.
//! - [`accounts`]: `Username`/`NewPassword` parsing (Django's rules), Argon2id and Django hash
//!   verification, log-in throttling, Django `auth_user` import.
//! - [`net`]: the HTTP/1 accept loop: header-read and idle timeouts, connection caps per
//!   address and in total, upgrades, graceful shutdown.
//! - [`web`]: routes, extractors (session, CSRF), templates, static assets, errors.
//! - [`ws`]: the `/users/` WebSocket: handshake checks, then the socket loop.
//! - [`cli`]: the `migrate` and `user` subcommands.
//! - [`logging`]: the tutorial's console log lines, or JSON.
//! - [`session_purge`]: deletes expired sessions on a schedule.
//! - `fuzzing` (hidden): entry points for the fuzz targets in `fuzz/` (docs/fuzzing.md).
//!
//! Presence (who is online, transitions, fan-out) lives in the separate `presence` crate,
//! which knows nothing about HTTP, HTML or SQL.

pub mod accounts;
pub mod app;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod net;
pub mod redact;
pub mod session_purge;
pub mod settings;
pub mod store;
pub mod web;
pub mod ws;

/// Milliseconds since the Unix epoch: the one time format in the store.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
