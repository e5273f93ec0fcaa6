//! Copying users and sessions into PostgreSQL: the move from the embedded SQLite default to a
//! database a cluster can share.
//!
//! The source is read inside one read transaction (a consistent snapshot, also of a live
//! SQLite file) and written into the target inside one transaction, so a failed copy leaves the
//! target as it was and can simply be run again. Ids are kept, so sessions (keyed by user id)
//! stay valid, and the target's id sequence is moved past the highest id afterwards. Rows are
//! upserted by primary key, so running the same copy twice leaves the same target (ids the
//! source gave to users since deleted are not given again either); whether a
//! non-empty target may be written at all is the caller's choice (`merge`).
//!
//! Like the rest of the store, this knows nothing of the CLI or of HTTP.

use sqlx::PgConnection;

use super::users::USERS_AFTER_ID;
use super::{on_pool, sql_count, Store, StoreError, User};

/// Rows read from the source and written to the target per statement.
const PAGE: u64 = 1_000;

/// Keyset paging over every session: `$1` = the last hash seen ('' at first), `$2` = page size.
const SESSIONS_AFTER_HASH: &str = "SELECT id_hash, user_id, created_at, expires_at FROM sessions \
     WHERE id_hash > $1 ORDER BY id_hash LIMIT $2";

/// What a copy wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub users: u64,
    pub sessions: u64,
    /// The id the target will give its next new user.
    pub next_user_id: i64,
}

/// Why a copy did not happen; in every case the target is unchanged.
#[derive(thiserror::Error, Debug)]
pub enum CopyError {
    #[error("the target of a copy must be a PostgreSQL database")]
    TargetNotPostgres,
    #[error("the target already holds {users} user(s) and {sessions} session(s)")]
    TargetNotEmpty { users: i64, sessions: i64 },
    /// Two different accounts would end up with the same username (case-insensitively).
    #[error(
        "the username {username:?} belongs to user id {source_id} in the source but to id {target_id} in the target"
    )]
    UsernameClash { username: String, source_id: i64, target_id: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        CopyError::Store(e.into())
    }
}

impl Store {
    /// Copies every user and session of this store into `target` (PostgreSQL), after running
    /// the target's migrations. Without `merge`, a target holding any user or session is
    /// refused ([`CopyError::TargetNotEmpty`]); with it, rows are upserted by id and rows only
    /// in the target are kept. Writers to the target wait while the copy runs (table lock).
    pub async fn copy_into(&self, target: &Store, merge: bool) -> Result<Copied, CopyError> {
        let Store::Postgres(pg) = target else {
            return Err(CopyError::TargetNotPostgres);
        };
        target.migrate().await?;
        let mut tx = pg.begin().await?;
        // No other writer while the copy runs, so the emptiness check, the rows and the
        // sequence agree with each other.
        sqlx::query("LOCK TABLE users, sessions IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
        if !merge {
            let (users, sessions): (i64, i64) =
                sqlx::query_as("SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM sessions)")
                    .fetch_one(&mut *tx)
                    .await?;
            if users > 0 || sessions > 0 {
                return Err(CopyError::TargetNotEmpty { users, sessions });
            }
        }
        // SQLite's AUTOINCREMENT never gives a deleted user's id again; neither will the target.
        let highest_given: i64 = match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'users'), 0)")
                    .fetch_one(pool)
                    .await?
            }
            Store::Postgres(_) => 0,
        };
        let (mut users, mut sessions) = (0, 0);
        on_pool!(self, pool => {
            let mut source = pool.begin().await?;
            let mut after = 0;
            loop {
                let page: Vec<User> =
                    sqlx::query_as(USERS_AFTER_ID).bind(after).bind(sql_count(PAGE)).fetch_all(&mut *source).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                write_users(&mut tx, &page).await?;
                users += page.len() as u64;
            }
            let mut after = String::new();
            loop {
                let page: Vec<(String, i64, i64, i64)> = sqlx::query_as(SESSIONS_AFTER_HASH)
                    .bind(&after)
                    .bind(sql_count(PAGE))
                    .fetch_all(&mut *source)
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.0.clone();
                write_sessions(&mut tx, &page).await?;
                sessions += page.len() as u64;
            }
            source.rollback().await?; // it only read
        });
        // The next sign-up gets the id after the highest one (1 in an empty table).
        let next_user_id: i64 = sqlx::query_scalar(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), GREATEST(COALESCE(MAX(id), 0), $1) + 1, false) \
             FROM users",
        )
        .bind(highest_given)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Copied { users, sessions, next_user_id })
    }
}

/// Upserts one page of users by id, after checking that no other target account holds one of
/// their usernames (which would be a unique violation, reported without the name).
async fn write_users(tx: &mut PgConnection, users: &[User]) -> Result<(), CopyError> {
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let keys: Vec<&str> = users.iter().map(|u| u.username_key.as_str()).collect();
    let clash: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT t.username, s.id, t.id FROM users AS t \
         JOIN UNNEST($1::BIGINT[], $2::TEXT[]) AS s(id, key) ON t.username_key = s.key AND t.id <> s.id LIMIT 1",
    )
    .bind(&ids)
    .bind(&keys)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((username, source_id, target_id)) = clash {
        return Err(CopyError::UsernameClash { username, source_id, target_id });
    }
    sqlx::query(
        "INSERT INTO users (id, username, username_key, password_hash, is_active, is_staff, date_joined, \
         last_login, last_seen) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BOOLEAN[], $6::BOOLEAN[], \
         $7::BIGINT[], $8::BIGINT[], $9::BIGINT[]) \
         ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, username_key = EXCLUDED.username_key, \
         password_hash = EXCLUDED.password_hash, is_active = EXCLUDED.is_active, is_staff = EXCLUDED.is_staff, \
         date_joined = EXCLUDED.date_joined, last_login = EXCLUDED.last_login, last_seen = EXCLUDED.last_seen",
    )
    .bind(&ids)
    .bind(users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>())
    .bind(&keys)
    .bind(users.iter().map(|u| u.password_hash.as_str()).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.is_active).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.is_staff).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.date_joined).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.last_login).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.last_seen).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Upserts one page of `(id_hash, user_id, created_at, expires_at)` sessions by hash.
async fn write_sessions(tx: &mut PgConnection, sessions: &[(String, i64, i64, i64)]) -> Result<(), CopyError> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, created_at, expires_at) \
         SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[]) \
         ON CONFLICT (id_hash) DO UPDATE SET user_id = EXCLUDED.user_id, created_at = EXCLUDED.created_at, \
         expires_at = EXCLUDED.expires_at",
    )
    .bind(sessions.iter().map(|s| s.0.as_str()).collect::<Vec<_>>())
    .bind(sessions.iter().map(|s| s.1).collect::<Vec<_>>())
    .bind(sessions.iter().map(|s| s.2).collect::<Vec<_>>())
    .bind(sessions.iter().map(|s| s.3).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
