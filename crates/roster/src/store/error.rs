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

/// `scheme://user:secret@host/db` -> `scheme://user:***@host/db`; other strings unchanged.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let authority_end = url[rest_start..].find(['/', '?', '#']).map_or(url.len(), |i| rest_start + i);
    let authority = &url[rest_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..rest_start], &userinfo[..colon], &url[rest_start + at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:p@h:5432/d"), "postgres://u:***@h:5432/d");
        assert_eq!(redact_url("x://u:p@ss@h/d?a=b"), "x://u:***@h/d?a=b");
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact_url("sqlite://roster.db"), "sqlite://roster.db");
        assert_eq!(redact_url("mysql://h/a@b:c"), "mysql://h/a@b:c");
    }
}
