//! Accounts: create, look up, update, delete, last seen, and the paged user list.

use std::collections::BTreeMap;

use super::{
    json_ids, on_pool, sql_count, AccountRow, KeyBound, KeyPage, ListQuery, ListedUser, NewUser, Store, StoreError,
    User,
};

/// The column list of [`User`], as a literal so it can be `concat!`ed into static SQL.
macro_rules! user_columns {
    () => {
        "id, username, username_key, password_hash, is_active, is_staff, date_joined, last_login, last_seen"
    };
}
pub(super) use user_columns;

/// Keyset paging over every user, by id: `$1` = the last id seen (0 at first), `$2` = page size.
pub(super) const USERS_AFTER_ID: &str =
    concat!("SELECT ", user_columns!(), " FROM users WHERE id > $1 ORDER BY id LIMIT $2");

/// How `list_users` narrows the list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListFilter {
    /// Everyone: walk `users_last_seen_idx`.
    All,
    /// Few prefix matches: range scan on the `username_key` index, then sort them
    /// ($4 = prefix, $5 = end of its key range, $6 = LIKE pattern).
    KeyRange,
    /// Many prefix matches: walk the list order and filter; a page fills quickly ($4 = pattern).
    Like,
}

/// The list query for `store`'s backend. Only the exclusion of the online ids differs between
/// backends: a hashed `NOT IN` over a bound BIGINT[] (PostgreSQL) or JSON array (SQLite).
fn list_sql(store: &Store, filter: ListFilter) -> String {
    let (exclude, indexed) = match store {
        Store::Sqlite(_) => ("id NOT IN (SELECT value FROM json_each($1))", " INDEXED BY users_last_seen_idx"),
        Store::Postgres(_) => ("id NOT IN (SELECT UNNEST($1::BIGINT[]))", ""),
    };
    let (from_hint, narrow) = match filter {
        ListFilter::All => ("", ""),
        ListFilter::KeyRange => {
            ("", " AND username_key >= $4 AND username_key < $5 AND username_key LIKE $6 ESCAPE '\\'")
        }
        ListFilter::Like => (indexed, " AND username_key LIKE $4 ESCAPE '\\'"),
    };
    let page = format!(
        "SELECT id, username, last_seen FROM users{from_hint} WHERE {exclude}{narrow} \
         ORDER BY last_seen DESC NULLS LAST, id LIMIT $2 OFFSET $3"
    );
    // The page comes back as ONE row holding a JSON array: sqlx-sqlite hands every row from its
    // worker thread to the async task through a channel, and that hand-off, not SQLite, was
    // most of the list page's CPU (BENCHMARKS.md). The caller restores the order.
    match store {
        Store::Sqlite(_) => format!("SELECT json_group_array(json_array(id, username, last_seen)) FROM ({page})"),
        Store::Postgres(_) => format!(
            "SELECT COALESCE(json_agg(json_build_array(id, username, last_seen)), '[]'::json)::text FROM ({page}) AS page"
        ),
    }
}

/// A prefix search matching fewer users than this reads the matches through the `username_key`
/// index and sorts them (cost ~ matches); one matching more walks `users_last_seen_idx` and
/// filters (cost ~ page end × all / matches). Either way a page never reads more than a few
/// thousand rows. Measured on 100k users in SQLite: sorting all matches costs ~1.3 µs/row,
/// walking ~2.4 µs/row, so the break-even for a 200-row page is near 5,000.
const NARROW_PREFIX_MATCHES: i64 = 5_000;

/// The largest `char`: every key starting with `p` sorts (bytewise / code point order) in
/// `[p, p + '\u{10FFFF}')`, as valid keys never contain this non-character.
const PREFIX_RANGE_END: char = '\u{10FFFF}';

impl Store {
    /// Inserts a user. A `username_key` already present is [`StoreError::UsernameTaken`], and
    /// nothing is written.
    pub async fn create_user(&self, new: &NewUser<'_>) -> Result<User, StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO users (username, username_key, password_hash, is_active, is_staff, \
             date_joined, last_login) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            user_columns!()
        );
        on_pool!(self, pool => sqlx::query_as::<_, User>(SQL)
            .bind(new.username)
            .bind(new.username_key)
            .bind(new.password_hash)
            .bind(new.is_active)
            .bind(new.is_staff)
            .bind(new.date_joined)
            .bind(new.last_login)
            .fetch_one(pool)
            .await)
        .map_err(username_taken_or_database)
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        const SQL: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, User>(SQL).bind(id).fetch_optional(pool).await)?)
    }

    /// Looks a user up by the normalised username (NFKC + lowercase, computed by the caller).
    pub async fn user_by_key(&self, username_key: &str) -> Result<Option<User>, StoreError> {
        const SQL: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE username_key = $1");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, User>(SQL)
            .bind(username_key)
            .fetch_optional(pool)
            .await)?)
    }

    /// Returns whether the user exists.
    pub async fn set_password_hash(&self, id: i64, hash: &str) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE users SET password_hash = $2 WHERE id = $1";
        let done = on_pool!(self, pool => sqlx::query(SQL).bind(id).bind(hash).execute(pool).await?.rows_affected());
        Ok(done > 0)
    }

    /// Returns whether the user exists.
    pub async fn set_active(&self, id: i64, active: bool) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE users SET is_active = $2 WHERE id = $1";
        let done = on_pool!(self, pool => sqlx::query(SQL).bind(id).bind(active).execute(pool).await?.rows_affected());
        Ok(done > 0)
    }

    /// Returns whether the user exists.
    pub async fn set_staff(&self, id: i64, staff: bool) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE users SET is_staff = $2 WHERE id = $1";
        let done = on_pool!(self, pool => sqlx::query(SQL).bind(id).bind(staff).execute(pool).await?.rows_affected());
        Ok(done > 0)
    }

    /// Deletes the user and (by `ON DELETE CASCADE`) their sessions. Returns whether the user
    /// existed. Callers that must close live sockets should first collect the session hashes
    /// with [`Store::delete_user_sessions`].
    pub async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM users WHERE id = $1";
        let done = on_pool!(self, pool => sqlx::query(SQL).bind(id).execute(pool).await?.rows_affected());
        Ok(done > 0)
    }

    /// Sets `last_login` (Unix ms). A missing user is not an error.
    pub async fn record_login(&self, id: i64, at: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE users SET last_login = $2 WHERE id = $1";
        on_pool!(self, pool => sqlx::query(SQL).bind(id).bind(at).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Records `(user id, went offline at)` pairs in one statement (so one transaction).
    /// `last_seen` never moves backwards: an older time than the stored one is ignored, so
    /// batches flushed late or out of order by several nodes cannot undo a newer one. Unknown
    /// ids are ignored; an id repeated in the batch keeps its latest time.
    pub async fn set_last_seen(&self, batch: &[(i64, i64)]) -> Result<(), StoreError> {
        let mut latest: BTreeMap<i64, i64> = BTreeMap::new();
        for &(id, at) in batch {
            let entry = latest.entry(id).or_insert(at);
            *entry = (*entry).max(at);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let (ids, times): (Vec<i64>, Vec<i64>) = latest.into_iter().unzip();
        match self {
            Store::Sqlite(pool) => {
                sqlx::query(
                    "UPDATE users SET last_seen = MAX(COALESCE(last_seen, v.at), v.at) \
                     FROM (SELECT i.value AS id, a.value AS at \
                           FROM json_each($1) AS i JOIN json_each($2) AS a ON a.key = i.key) AS v \
                     WHERE users.id = v.id",
                )
                .bind(json_ids(&ids))
                .bind(json_ids(&times))
                .execute(pool)
                .await?;
            }
            Store::Postgres(pool) => {
                sqlx::query(
                    "UPDATE users AS u SET last_seen = GREATEST(u.last_seen, v.at) \
                     FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS v(id, at) WHERE u.id = v.id",
                )
                .bind(&ids)
                .bind(&times)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Number of accounts, O(1): a row the database keeps by trigger (migration 0002), exact
    /// whichever process added or removed accounts.
    pub async fn count_users(&self) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT n FROM user_count WHERE id = 1";
        let n: i64 = on_pool!(self, pool => sqlx::query_scalar(SQL).fetch_one(pool).await)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The offline part of the user list: users ordered by `last_seen` DESC (never seen last),
    /// then `id`, leaving out `q.exclude` (the users online now, listed separately), optionally
    /// only those whose `username_key` starts with `q.prefix` (`%` and `_` literal), then
    /// `OFFSET`/`LIMIT`.
    ///
    /// Cost: without a prefix the query walks `users_last_seen_idx` and stops after
    /// `offset + limit` kept rows, skipping excluded ids through a hashed set of the bound ids
    /// (a BIGINT[] on PostgreSQL, a JSON array on SQLite): O(offset + limit + excluded).
    /// With a prefix, an index-only probe counts up to [`NARROW_PREFIX_MATCHES`] matches first:
    /// few matches are read by `username_key` range and sorted, many are found by walking
    /// `users_last_seen_idx` (see the constant). Deep pages cost in proportion to their offset.
    pub async fn list_users(&self, q: &ListQuery<'_>) -> Result<Vec<ListedUser>, StoreError> {
        let limit = sql_count(q.limit);
        let offset = sql_count(q.offset);
        let (filter, extra): (ListFilter, Vec<String>) = match q.prefix.filter(|p| !p.is_empty()) {
            None => (ListFilter::All, Vec::new()),
            Some(prefix) => {
                let pattern = like_prefix_pattern(prefix);
                let range_end = format!("{prefix}{PREFIX_RANGE_END}");
                let matches: i64 = on_pool!(self, pool => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM users \
                     WHERE username_key >= $1 AND username_key < $2 LIMIT $3) AS m",
                )
                .bind(prefix)
                .bind(&range_end)
                .bind(NARROW_PREFIX_MATCHES)
                .fetch_one(pool)
                .await)?;
                if matches < NARROW_PREFIX_MATCHES {
                    (ListFilter::KeyRange, vec![prefix.to_owned(), range_end, pattern])
                } else {
                    (ListFilter::Like, vec![pattern])
                }
            }
        };
        let sql = list_sql(self, filter);
        // $1 = the excluded ids, $2 = limit, $3 = offset, then the filter's own parameters.
        let json: String = match self {
            Store::Sqlite(pool) => {
                let mut query = sqlx::query_scalar(&sql).bind(json_ids(q.exclude)).bind(limit).bind(offset);
                for value in &extra {
                    query = query.bind(value.as_str());
                }
                query.fetch_one(pool).await?
            }
            Store::Postgres(pool) => {
                let mut query = sqlx::query_scalar(&sql).bind(q.exclude).bind(limit).bind(offset);
                for value in &extra {
                    query = query.bind(value.as_str());
                }
                query.fetch_one(pool).await?
            }
        };
        let mut rows: Vec<(i64, String, Option<i64>)> = serde_json::from_str(&json).map_err(StoreError::Decode)?;
        // The list order: most recently seen first, never seen last, then id.
        rows.sort_by(|a, b| match (a.2, b.2) {
            (Some(x), Some(y)) => y.cmp(&x).then(a.0.cmp(&b.0)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.0.cmp(&b.0),
        });
        Ok(rows.into_iter().map(|(id, username, last_seen)| ListedUser { id, username, last_seen }).collect())
    }

    /// Every account's id, username, search key and last seen: what the presence hub's directory
    /// is built from at start-up. O(all accounts), once; never per request. Like the list page,
    /// the rows come back as one JSON array in one row (sqlx-sqlite hands each row from its
    /// worker thread to the task: 100,000 hand-offs cost more than the query).
    pub async fn all_accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        let sql = match self {
            Store::Sqlite(_) => {
                "SELECT COALESCE(json_group_array(json_array(id, username, username_key, last_seen)), '[]') FROM users"
            }
            Store::Postgres(_) => {
                "SELECT COALESCE(json_agg(json_build_array(id, username, username_key, last_seen)), '[]'::json)::text \
                 FROM users"
            }
        };
        let json: String = on_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await)?;
        let rows: Vec<(i64, String, String, Option<i64>)> = serde_json::from_str(&json).map_err(StoreError::Decode)?;
        Ok(rows
            .into_iter()
            .map(|(id, username, username_key, last_seen)| AccountRow { id, username, username_key, last_seen })
            .collect())
    }

    /// The users with these ids (unknown ids are skipped), ordered by id. For the online part
    /// of the list, whose ids come from the presence core.
    pub async fn users_by_id(&self, ids: &[i64]) -> Result<Vec<User>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(match self {
            Store::Sqlite(pool) => {
                sqlx::query_as::<_, User>(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users \
                     WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id"
                ))
                .bind(json_ids(ids))
                .fetch_all(pool)
                .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_as::<_, User>(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE id = ANY($1) ORDER BY id"
                ))
                .bind(ids)
                .fetch_all(pool)
                .await?
            }
        })
    }

    /// Of these ids, the accounts that are gone or inactive: `(id, exists)`, for the account
    /// reconciler. Only those rows come back (as one JSON array): checking 15,000 online users,
    /// all active, returns nothing, instead of 15,000 whole rows handed over one by one.
    pub async fn gone_or_inactive(&self, ids: &[i64]) -> Result<Vec<(i64, bool)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let json: String = match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT COALESCE(json_group_array(json_array(v.value, u.id IS NOT NULL)), '[]') \
                     FROM json_each($1) AS v LEFT JOIN users AS u ON u.id = v.value \
                     WHERE u.id IS NULL OR NOT u.is_active",
                )
                .bind(json_ids(ids))
                .fetch_one(pool)
                .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT COALESCE(json_agg(json_build_array(v.id, u.id IS NOT NULL)), '[]'::json)::text \
                     FROM UNNEST($1::BIGINT[]) AS v(id) LEFT JOIN users AS u ON u.id = v.id \
                     WHERE u.id IS NULL OR NOT u.is_active",
                )
                .bind(ids)
                .fetch_one(pool)
                .await?
            }
        };
        // SQLite's booleans are 0/1 in JSON; PostgreSQL's are true/false.
        let rows: Vec<(i64, serde_json::Value)> = serde_json::from_str(&json).map_err(StoreError::Decode)?;
        Ok(rows.into_iter().map(|(id, exists)| (id, exists == serde_json::json!(true) || exists == 1)).collect())
    }

    /// Every user with `id > after_id`, by id, at most `limit` (keyset paging for the CLI:
    /// pass the last id seen, starting from 0).
    pub async fn list_all(&self, after_id: i64, limit: u64) -> Result<Vec<User>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, User>(USERS_AFTER_ID)
            .bind(after_id)
            .bind(sql_count(limit))
            .fetch_all(pool)
            .await)?)
    }
}

/// The SQL of [`Store::users_by_key_page`]: `$2` rows ascending from a lower bound (`$1`,
/// exclusive) or descending from an upper one, with or without a prefix range (`$3` inclusive,
/// `$4` exclusive). Every variant is a range scan of the `username_key` unique index that stops
/// after `$2` rows.
fn key_page_sql(descending: bool, prefix: bool) -> String {
    let (bound, order) = if descending { ("<", "DESC") } else { (">", "ASC") };
    let range = if prefix { " AND username_key >= $3 AND username_key < $4" } else { "" };
    format!(
        "SELECT {} FROM users WHERE username_key {bound} $1{range} ORDER BY username_key {order} LIMIT $2",
        user_columns!()
    )
}

impl Store {
    /// One page of every account in `username_key` order (the admin pages), by keyset: the
    /// accounts after (or before) a key, optionally only those whose key starts with
    /// `q.prefix`, at most `q.limit`, always returned in ascending key order.
    ///
    /// Cost: a range scan of the `username_key` unique index that reads `limit` rows, whatever
    /// the number of accounts or the depth of the page (no `OFFSET`).
    pub async fn users_by_key_page(&self, q: &KeyPage<'_>) -> Result<Vec<User>, StoreError> {
        let prefix = q.prefix.filter(|p| !p.is_empty());
        let (descending, bound) = match q.from {
            KeyBound::Start => (false, ""),
            KeyBound::After(key) => (false, key),
            KeyBound::Before(key) => (true, key),
        };
        let sql = key_page_sql(descending, prefix.is_some());
        let mut users = on_pool!(self, pool => {
            let query = sqlx::query_as::<_, User>(&sql).bind(bound).bind(sql_count(q.limit));
            match prefix {
                Some(p) => query.bind(p).bind(format!("{p}{PREFIX_RANGE_END}")),
                None => query,
            }
            .fetch_all(pool)
            .await
        })?;
        if descending {
            users.reverse();
        }
        Ok(users)
    }
}

/// `prefix` with LIKE's `\`, `%` and `_` escaped (escape character `\`), then `%`.
fn like_prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A unique violation on `username_key` becomes [`StoreError::UsernameTaken`].
fn username_taken_or_database(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        let on_username_key = db.constraint() == Some("users_username_key_key") // PostgreSQL
            || db.message().contains("users.username_key"); // SQLite: "UNIQUE constraint failed: users.username_key"
        if db.is_unique_violation() && on_username_key {
            return StoreError::UsernameTaken;
        }
    }
    StoreError::Database(e)
}

#[cfg(test)]
mod tests {
    use super::{key_page_sql, like_prefix_pattern};
    use crate::store::Store;

    /// Every variant of the admin pages' query is a search of the `username_key` index in its
    /// own order: no table scan, no sort (so its cost is the page, not the accounts).
    #[tokio::test]
    async fn key_pages_are_index_range_scans_on_sqlite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("plan.db").display())).await.expect("open");
        store.migrate().await.expect("migrate");
        let Store::Sqlite(pool) = &store else { unreachable!("a SQLite URL") };
        for descending in [false, true] {
            for prefix in [false, true] {
                let sql = format!("EXPLAIN QUERY PLAN {}", key_page_sql(descending, prefix));
                let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&sql).bind("k").bind(10_i64);
                if prefix {
                    query = query.bind("a").bind("b");
                }
                let plan: Vec<String> =
                    query.fetch_all(pool).await.expect("explain").into_iter().map(|r| r.3).collect();
                let plan = plan.join("; ");
                assert!(
                    plan.contains("SEARCH users USING INDEX sqlite_autoindex_users_1 (username_key"),
                    "descending {descending}, prefix {prefix}: {plan}"
                );
                assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
            }
        }
        store.close().await;
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_prefix_pattern("ann"), "ann%");
        assert_eq!(like_prefix_pattern("a%b_c\\"), "a\\%b\\_c\\\\%");
    }
}
