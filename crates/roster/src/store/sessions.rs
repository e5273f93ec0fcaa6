//! Server-side sessions. The key is the hex SHA-256 of the cookie value, computed by the
//! caller: a leaked database does not hand out live cookies. Times are Unix milliseconds; a
//! session is valid while `now < expires_at`.

use std::collections::HashSet;

use super::users::user_columns;
use super::{on_pool, Store, StoreError, User};

/// Session hashes checked per query by [`Store::live_sessions`].
pub const LIVE_SESSIONS_CHUNK: usize = 5_000;

/// A session row joined with its user.
#[derive(sqlx::FromRow)]
struct SessionRow {
    #[sqlx(flatten)]
    user: User,
    expires_at: i64,
}

impl Store {
    /// Stores a new session for `user_id`. A hash already present is a database error (ids are
    /// random, so it does not happen).
    pub async fn create_session(
        &self,
        id_hash: &str,
        user_id: i64,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
        on_pool!(self, pool => sqlx::query(SQL)
            .bind(id_hash)
            .bind(user_id)
            .bind(created_at)
            .bind(expires_at)
            .execute(pool)
            .await?.rows_affected());
        Ok(())
    }

    /// The user of a session that exists and has not expired at `now`. Inactive users are
    /// returned too: the caller decides what `is_active == false` means.
    pub async fn session_user(&self, id_hash: &str, now: i64) -> Result<Option<User>, StoreError> {
        Ok(self.session_user_until(id_hash, now).await?.map(|(user, _)| user))
    }

    /// Like [`Store::session_user`], with the session's `expires_at` (so a cache of it can
    /// stop at that time).
    pub async fn session_user_until(&self, id_hash: &str, now: i64) -> Result<Option<(User, i64)>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            user_columns!(),
            ", sessions.expires_at FROM sessions JOIN users ON users.id = sessions.user_id \
             WHERE sessions.id_hash = $1 AND sessions.expires_at > $2"
        );
        let row = on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(SQL)
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(|r| (r.user, r.expires_at)))
    }

    /// Of `id_hashes`, the sessions that still exist, have not expired at `now` and belong to
    /// an active user: what the server checks the sessions of its open sockets against. One
    /// query per [`LIVE_SESSIONS_CHUNK`] hashes.
    pub async fn live_sessions(&self, id_hashes: &[String], now: i64) -> Result<HashSet<String>, StoreError> {
        let mut live = HashSet::new();
        for chunk in id_hashes.chunks(LIVE_SESSIONS_CHUNK) {
            let found: Vec<String> = match self {
                Store::Sqlite(pool) => {
                    let list = serde_json::to_string(chunk).unwrap_or_else(|_| "[]".to_owned());
                    sqlx::query_scalar(
                        "SELECT sessions.id_hash FROM sessions JOIN users ON users.id = sessions.user_id \
                         WHERE sessions.id_hash IN (SELECT value FROM json_each($1)) \
                         AND sessions.expires_at > $2 AND users.is_active",
                    )
                    .bind(list)
                    .bind(now)
                    .fetch_all(pool)
                    .await?
                }
                Store::Postgres(pool) => {
                    sqlx::query_scalar(
                        "SELECT sessions.id_hash FROM sessions JOIN users ON users.id = sessions.user_id \
                         WHERE sessions.id_hash = ANY($1) AND sessions.expires_at > $2 AND users.is_active",
                    )
                    .bind(chunk)
                    .bind(now)
                    .fetch_all(pool)
                    .await?
                }
            };
            live.extend(found);
        }
        Ok(live)
    }

    /// Deletes one session (log out); returns the user it belonged to, if it existed.
    pub async fn delete_session(&self, id_hash: &str) -> Result<Option<i64>, StoreError> {
        const SQL: &str = "DELETE FROM sessions WHERE id_hash = $1 RETURNING user_id";
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, i64>(SQL)
            .bind(id_hash)
            .fetch_optional(pool)
            .await)?)
    }

    /// Deletes every session of a user (force log out, password change); returns their hashes
    /// so the caller can close the sockets opened with them.
    pub async fn delete_user_sessions(&self, user_id: i64) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "DELETE FROM sessions WHERE user_id = $1 RETURNING id_hash";
        Ok(on_pool!(self, pool => sqlx::query_scalar::<_, String>(SQL)
            .bind(user_id)
            .fetch_all(pool)
            .await)?)
    }

    /// Deletes the sessions expired at `now` (`expires_at <= now`); returns how many.
    pub async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM sessions WHERE expires_at <= $1";
        Ok(on_pool!(self, pool => sqlx::query(SQL).bind(now).execute(pool).await?.rows_affected()))
    }
}
