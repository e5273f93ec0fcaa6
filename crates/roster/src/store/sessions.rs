//! Server-side sessions. The key is the hex SHA-256 of the cookie value, computed by the
//! caller: a leaked database does not hand out live cookies. Times are Unix milliseconds; a
//! session is valid while `now < expires_at`.

use super::users::user_columns;
use super::{on_pool, Store, StoreError, User};

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
        const SQL: &str = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = \
             (SELECT user_id FROM sessions WHERE id_hash = $1 AND expires_at > $2)"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, User>(SQL)
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await)?)
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
