//! Users and sessions in SQLite (one file, single node) or PostgreSQL (shared by a cluster).
//!
//! [`Store`] is an enum over the two pools; [`on_pool!`] runs the same code on whichever pool it
//! holds, so most queries are written once: sqlx-sqlite binds `$1, $2, …` by number just like
//! PostgreSQL, timestamps are `i64` Unix milliseconds (BIGINT) on both, and booleans decode the
//! same way. Only the list queries differ, because a bound list of ids is a BIGINT[] on
//! PostgreSQL and a JSON array (`json_each`) on SQLite.
//!
//! Nothing here is O(all accounts) per request: lookups go through primary keys or unique
//! indexes, the user list walks `users_last_seen_idx` (see [`Store::list_users`]) and the admin
//! pages walk the `username_key` index (see [`Store::users_by_key_page`]). [`Store::all_accounts`]
//! is the exception, meant for start-up.
//!
//! This module knows nothing of HTTP, password hashing or username rules: callers pass the
//! normalised `username_key` and an already computed password hash.
//!
//! # Layout
//! - `error.rs`: [`StoreError`], URL redaction.
//! - `model.rs`: [`User`], [`NewUser`], [`ListQuery`], [`KeyPage`], [`AccountRow`].
//! - `users.rs`: accounts, last seen, the user list, the admin pages' keyset pages.
//! - `sessions.rs`: server-side sessions keyed by the hash of the cookie value.
//! - `backup.rs`: a consistent copy of a live SQLite database in a new file.
//! - `copy.rs`: users and sessions copied into PostgreSQL (ids kept, resumable).

mod backup;
mod copy;
mod error;
mod model;
mod sessions;
mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use copy::{Copied, CopyError};
pub use error::StoreError;
pub use model::{AccountRow, KeyBound, KeyPage, ListQuery, ListedUser, NewUser, User};

/// Runs `$body` with `$pool` bound to the SQLite or the PostgreSQL pool. The body is compiled
/// once per backend, so it must type-check against both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// SQLite's page cache per connection, KiB.
const SQLITE_CACHE_KIB: u32 = 512;
/// Pooled SQLite connections (sqlx's default is 10). Each is a thread with its own page cache
/// and, in glibc, soon its own malloc arena; SQLite has one writer anyway, and 4 readers keep 2
/// cores busy (the list page served the same 7,000 requests/s with 4 as with 10). Measured at
/// 15,000 distinct users connecting: about 250 B less RSS per socket.
const SQLITE_CONNECTIONS: u32 = 4;

/// How long a connection waits for a lock (SQLite) or for a free pooled connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database: a cheap-to-clone handle on a connection pool.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl std::fmt::Debug for Store {
    // Not derived: the pools' Debug prints their connect options, password included.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Store").field(&self.backend()).finish()
    }
}

impl Store {
    /// Connects to `sqlite://relative/path.db`, `sqlite:///abs/path.db` (the file is created if
    /// missing; WAL journal, `synchronous=NORMAL`, foreign keys on, 5 s busy timeout) or
    /// `postgres://…` / `postgresql://…`. Any other scheme is [`StoreError::UnsupportedUrl`].
    /// Does not run migrations: see [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            if url.starts_with("sqlite::memory:") || url.contains("mode=memory") {
                // Every pooled connection would get its own empty database.
                return Err(StoreError::UnsupportedUrl(format!(
                    "{}: in-memory SQLite is not supported, use a file (sqlite://roster.db)",
                    crate::redact::redact_url(url)
                )));
            }
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(BUSY_TIMEOUT)
                // SQLite's own page cache (default 2 MiB) per pooled connection: with 10 of them,
                // 20 MiB grew while 15,000 distinct users' sessions were looked up, though the
                // file's pages are in the kernel's cache anyway.
                .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"));
            // No ping before every query: the connection is a file handle in this process, and
            // the ping was a second round trip to the connection's worker thread per query
            // (measured: 8% of the server's CPU while 15,000 distinct users connect). And few
            // connections (see SQLITE_CONNECTIONS).
            let pool = SqlitePoolOptions::new()
                .acquire_timeout(BUSY_TIMEOUT)
                .test_before_acquire(false)
                .max_connections(SQLITE_CONNECTIONS)
                .connect_with(options)
                .await?;
            Ok(Store::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new().acquire_timeout(BUSY_TIMEOUT).connect(url).await?;
            Ok(Store::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl(format!(
                "{}: expected sqlite://PATH, sqlite:///ABSOLUTE/PATH, postgres://… or postgresql://…",
                crate::redact::redact_url(url)
            )))
        }
    }

    /// Applies the embedded migrations of this backend; running it again is a no-op.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Store::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// LIMIT/OFFSET values are BIGINT; anything beyond `i64::MAX` means "no limit" anyway.
fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A JSON array of integers, for SQLite's `json_each`. Integers need no escaping.
fn json_ids(ids: &[i64]) -> String {
    let mut s = String::with_capacity(ids.len() * 8 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_ids_formats_an_array() {
        assert_eq!(json_ids(&[]), "[]");
        assert_eq!(json_ids(&[1, -2, i64::MAX]), format!("[1,-2,{}]", i64::MAX));
    }

    #[tokio::test]
    async fn unsupported_scheme_is_refused_without_leaking_the_password() {
        let err = Store::connect("mysql://root:hunter2@db/roster").await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("mysql://root:***@db/roster"), "{text}");
        let err = Store::connect("sqlite::memory:").await.unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
    }
}
