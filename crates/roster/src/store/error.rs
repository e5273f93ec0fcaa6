//! The store's error type. Its `Display` never shows secrets: URLs are redacted, and the
//! underlying sqlx error is a `source`, not part of the message.

/// Why a store operation failed.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// Another account already has this `username_key` (case-insensitive username).
    #[error("a user with that username already exists")]
    UsernameTaken,
    /// The database URL names a backend this build cannot use; the URL is shown with its
    /// password redacted.
    #[error("unsupported database URL {0}")]
    UnsupportedUrl(String),
    /// Something this backend does not do, said in a few words.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A result the database built (a JSON page of the list) did not have the expected shape.
    #[error("unexpected data from the database")]
    Decode(#[source] serde_json::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}
