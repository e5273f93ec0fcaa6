//! A consistent copy of a live SQLite database in a new file.
//!
//! `VACUUM INTO` reads the database inside one read transaction, so the copy is the database
//! as of one moment even while the server writes (WAL mode lets the writers go on), and it is
//! compact and self-contained (no `-wal` file to carry along). PostgreSQL has its own tool for
//! this, `pg_dump`. This file knows nothing of the CLI: the caller checks paths and prints.

use std::path::Path;

use super::{Store, StoreError};

impl Store {
    /// Writes a copy of this SQLite database to `dest`, which must not exist (SQLite refuses to
    /// overwrite it: [`StoreError::Database`]). On PostgreSQL: [`StoreError::Unsupported`].
    pub async fn backup_into(&self, dest: &Path) -> Result<(), StoreError> {
        let Store::Sqlite(pool) = self else {
            return Err(StoreError::Unsupported("a backup of a PostgreSQL database (use pg_dump)"));
        };
        let dest = dest.to_str().ok_or(StoreError::Unsupported("a backup path that is not UTF-8"))?;
        sqlx::query("VACUUM INTO $1").bind(dest).execute(pool).await?;
        Ok(())
    }
}
