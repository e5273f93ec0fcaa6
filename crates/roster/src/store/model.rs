//! Plain data carried in and out of the store.

/// An account. `Debug` redacts the password hash.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    /// As typed at sign-up (shown in the list).
    pub username: String,
    /// NFKC + lowercase form of `username`: the unique, case-insensitive identity.
    pub username_key: String,
    pub password_hash: String,
    pub is_active: bool,
    pub is_staff: bool,
    /// Unix milliseconds.
    pub date_joined: i64,
    /// Unix milliseconds of the last successful log in.
    pub last_login: Option<i64>,
    /// Unix milliseconds of the last time the user went offline; `None` if never seen.
    pub last_seen: Option<i64>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("username_key", &self.username_key)
            .field("password_hash", &"<redacted>")
            .field("is_active", &self.is_active)
            .field("is_staff", &self.is_staff)
            .field("date_joined", &self.date_joined)
            .field("last_login", &self.last_login)
            .field("last_seen", &self.last_seen)
            .finish()
    }
}

/// A user to insert; `username_key` is computed by the caller (NFKC + lowercase).
#[derive(Clone)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub username_key: &'a str,
    pub password_hash: &'a str,
    pub is_staff: bool,
    pub is_active: bool,
    /// Unix milliseconds.
    pub date_joined: i64,
    pub last_login: Option<i64>,
}

impl std::fmt::Debug for NewUser<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("username_key", &self.username_key)
            .field("password_hash", &"<redacted>")
            .field("is_staff", &self.is_staff)
            .field("is_active", &self.is_active)
            .field("date_joined", &self.date_joined)
            .field("last_login", &self.last_login)
            .finish()
    }
}

/// A user as the list shows them: no password hash, nothing the page does not need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedUser {
    pub id: i64,
    pub username: String,
    pub last_seen: Option<i64>,
}

/// An account as the presence hub's directory holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRow {
    pub id: i64,
    pub username: String,
    pub username_key: String,
    /// Unix milliseconds; `None` if never seen.
    pub last_seen: Option<i64>,
}

/// One page of the offline part of the user list.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListQuery<'a> {
    /// Only usernames whose key starts with this (already lowercased/normalised) text;
    /// `%` and `_` are literal characters.
    pub prefix: Option<&'a str>,
    /// Ids to leave out (the users currently online, shown separately).
    pub exclude: &'a [i64],
    pub offset: u64,
    pub limit: u64,
}

/// Where a page of [`KeyPage`] starts, as a `username_key` bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyBound<'a> {
    /// From the first key.
    Start,
    /// The keys after this one (the next page).
    After(&'a str),
    /// The last keys before this one (the previous page).
    Before(&'a str),
}

/// One page of every account in `username_key` order (the admin pages), by keyset.
#[derive(Clone, Copy, Debug)]
pub struct KeyPage<'a> {
    /// Only keys starting with this (already normalised) text; `None` or empty: every key.
    pub prefix: Option<&'a str>,
    pub from: KeyBound<'a>,
    pub limit: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_password_hash() {
        let user = User {
            id: 1,
            username: "Ann".into(),
            username_key: "ann".into(),
            password_hash: "$argon2id$secret".into(),
            is_active: true,
            is_staff: false,
            date_joined: 0,
            last_login: None,
            last_seen: None,
        };
        let text = format!("{user:?}");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("Ann"), "{text}");
        let new = NewUser {
            username: "Ann",
            username_key: "ann",
            password_hash: "$argon2id$secret",
            is_staff: false,
            is_active: true,
            date_joined: 0,
            last_login: None,
        };
        assert!(!format!("{new:?}").contains("secret"));
    }
}
