//! The account operations, in one place: sign up (and create, and import), log in, log out, set
//! a password, deactivate and activate, delete, grant and revoke staff, end every session. The
//! pages, the admin pages and the CLI all call these; none writes its own workflow.
//!
//! Each operation holds the one order that keeps every node right: **change the rows, forget the
//! cache, close the sockets**. The row first, so a session looked up afterwards is already gone;
//! then the session cache (which also refuses to cache a lookup that was in flight, see
//! [`SessionCache::epoch`]); then the sockets, through the hub, which tells every node of the
//! cluster (their caches and sockets follow the same order).
//!
//! Who hears of a change beyond the database is the [`Reach`]: a server's hub and cache; the
//! cluster's Redis for a CLI run with `--redis-url` (one announcement); or nobody, for a CLI
//! without a cluster, when every server's account reconciler finds the change within 2 s.
//!
//! Uses the store, the hub and hashing; knows nothing of HTTP, forms or templates.

use std::sync::Arc;

use presence::event::{Change, SessionKey};
use presence::{Hub, UserId, UserRef};

use super::sessions::{new_session_id, SessionCache};
use super::{hash_password, rehash_password, verify_password, HashError, NewPassword, Username, Verification};
use crate::store::{NewUser, Store, StoreError, User};

/// Who must hear of account changes beyond the database.
#[derive(Clone)]
pub enum Reach {
    /// A server: its hub (which tells every node) and its session cache.
    Server { hub: Hub, sessions: Arc<SessionCache> },
    /// A process that is not a node (the CLI) of a cluster: announced through its Redis.
    Cluster { redis_url: String, key_prefix: String },
    /// A process that is not a node, without a cluster: servers' reconcilers find the change.
    Store,
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{}", super::DUPLICATE_USERNAME_MESSAGE)]
    UsernameTaken,
    #[error("no such account")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing failed: {0}")]
    Hash(#[from] HashError),
}

/// A user's new session: the cookie's value (never stored, never logged) and when it ends.
pub struct NewSession {
    pub id: String,
    pub expires_at: i64,
}

/// What a log-in attempt found.
pub enum LogIn {
    /// The password is right and the account active.
    Valid(User),
    /// Wrong username or password, or an inactive account (the same answer for all three).
    Invalid,
}

/// A new account's fields, from a form, the CLI or a Django import.
pub struct NewAccount<'a> {
    pub username: &'a Username,
    pub password_hash: &'a str,
    pub is_staff: bool,
    pub is_active: bool,
    pub date_joined: i64,
    pub last_login: Option<i64>,
}

/// The account operations over one store, reaching whoever must hear of them.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    reach: Reach,
}

impl Accounts {
    pub fn new(store: Store, reach: Reach) -> Accounts {
        Accounts { store, reach }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A new active account with this password (sign-up form, `roster user create`).
    pub async fn sign_up(&self, username: &Username, password: NewPassword, staff: bool) -> Result<User, AccountError> {
        let hash = hash_password(password).await?;
        let account = NewAccount {
            username,
            password_hash: &hash,
            is_staff: staff,
            is_active: true,
            date_joined: crate::now_ms(),
            last_login: None,
        };
        self.create(&account).await
    }

    /// A new account as given (a Django import keeps its hash, flags and dates).
    pub async fn create(&self, account: &NewAccount<'_>) -> Result<User, AccountError> {
        let new = NewUser {
            username: account.username.as_str(),
            username_key: &account.username.key(),
            password_hash: account.password_hash,
            is_staff: account.is_staff,
            is_active: account.is_active,
            date_joined: account.date_joined,
            last_login: account.last_login,
        };
        let user = match self.store.create_user(&new).await {
            Ok(user) => user,
            Err(StoreError::UsernameTaken) => return Err(AccountError::UsernameTaken),
            Err(e) => return Err(e.into()),
        };
        tracing::info!(user_id = user.id, "account created");
        let signed_up = UserRef::new(user.id, user.username.as_str());
        match &self.reach {
            Reach::Server { hub, .. } => hub.signed_up(signed_up),
            Reach::Cluster { .. } => self.announce(&[Change::SignedUp(signed_up)]).await,
            Reach::Store => {}
        }
        Ok(user)
    }

    /// Checks a log-in: the same work (one hash) whether or not the account exists. A right
    /// password of an imported Django hash is upgraded to Argon2id.
    pub async fn check_log_in(&self, username_key: Option<&str>, password: &str) -> Result<LogIn, AccountError> {
        let account = match username_key {
            Some(key) => self.store.user_by_key(key).await?,
            None => None,
        };
        let verdict = match &account {
            Some(u) => verify_password(password.to_owned(), u.password_hash.clone()).await,
            None => {
                super::dummy_verify().await;
                Verification::Invalid
            }
        };
        let (account, needs_rehash) = match (account, verdict) {
            (Some(u), Verification::Valid { needs_rehash }) if u.is_active => (u, needs_rehash),
            _ => return Ok(LogIn::Invalid),
        };
        if needs_rehash {
            match rehash_password(password.to_owned()).await {
                Ok(hash) => {
                    self.store.set_password_hash(account.id, &hash).await?;
                    tracing::info!(user_id = account.id, "password hash upgraded to Argon2id");
                }
                Err(e) => tracing::warn!(user_id = account.id, error = %e, "could not upgrade password hash"),
            }
        }
        Ok(LogIn::Valid(account))
    }

    /// Logs `user` in: a new session (a new id at every log in), lasting `ttl_ms`; the session
    /// the request came with (its hash and user), if any, is ended first.
    pub async fn log_in(
        &self,
        user: &User,
        previous: Option<(&str, UserId)>,
        ttl_ms: i64,
    ) -> Result<NewSession, AccountError> {
        if let Some((old, old_user)) = previous {
            self.log_out(old, old_user).await?;
        }
        let (id, hash) = new_session_id();
        let now = crate::now_ms();
        let expires_at = now.saturating_add(ttl_ms);
        self.store.create_session(&hash, user.id, now, expires_at).await?;
        self.store.record_login(user.id, now).await?;
        tracing::info!(user_id = user.id, "logged in");
        Ok(NewSession { id, expires_at })
    }

    /// Ends the session `session_hash` of `user` everywhere: its sockets close (4001) on every
    /// node and, if they were the user's last, Offline goes out at once.
    pub async fn log_out(&self, session_hash: &str, user: UserId) -> Result<(), AccountError> {
        self.store.delete_session(session_hash).await?;
        self.sessions_ended(user, &[session_hash.to_owned()]).await;
        tracing::info!(user_id = user, "logged out");
        Ok(())
    }

    /// A new password; every session of the user ends (everywhere). Returns how many.
    pub async fn set_password(&self, user: &User, password: NewPassword) -> Result<usize, AccountError> {
        let hash = hash_password(password).await?;
        if !self.store.set_password_hash(user.id, &hash).await? {
            return Err(AccountError::NotFound);
        }
        let ended = self.store.delete_user_sessions(user.id).await?;
        self.sessions_ended(user.id, &ended).await;
        tracing::info!(user_id = user.id, sessions = ended.len(), "password changed");
        Ok(ended.len())
    }

    /// Ends every session of the user (a forced log out). Returns how many.
    pub async fn end_sessions(&self, user: UserId) -> Result<usize, AccountError> {
        let ended = self.store.delete_user_sessions(user).await?;
        self.sessions_ended(user, &ended).await;
        tracing::info!(user_id = user, sessions = ended.len(), "sessions ended");
        Ok(ended.len())
    }

    /// Deactivates (`active == false`: no log in, every session ended, every socket closed with
    /// 1008 on every node) or reactivates an account. Returns the sessions ended.
    pub async fn set_active(&self, user: UserId, active: bool) -> Result<usize, AccountError> {
        if !self.store.set_active(user, active).await? {
            return Err(AccountError::NotFound);
        }
        if active {
            tracing::info!(user_id = user, "account activated");
            return Ok(0);
        }
        let ended = self.store.delete_user_sessions(user).await?;
        self.account_closed(user, Change::CloseUser(user)).await;
        tracing::info!(user_id = user, sessions = ended.len(), "account deactivated");
        Ok(ended.len())
    }

    /// Deletes an account and its sessions; every node closes its sockets (1008), lowers its
    /// count and lists it as deleted.
    pub async fn delete(&self, user: UserId) -> Result<(), AccountError> {
        if !self.store.delete_user(user).await? {
            return Err(AccountError::NotFound);
        }
        self.account_closed(user, Change::Deleted(user)).await;
        tracing::info!(user_id = user, "account deleted");
        Ok(())
    }

    /// Grants or revokes staff (the admin pages). Cached copies of the user are forgotten, so
    /// a revoked staff member loses the admin pages at once.
    pub async fn set_staff(&self, user: UserId, staff: bool) -> Result<(), AccountError> {
        if !self.store.set_staff(user, staff).await? {
            return Err(AccountError::NotFound);
        }
        if let Reach::Server { sessions, .. } = &self.reach {
            sessions.forget_user(user);
        }
        tracing::info!(user_id = user, staff, "staff flag changed");
        Ok(())
    }

    /// Sessions of `user` ended (rows already gone): caches, then sockets, everywhere.
    async fn sessions_ended(&self, user: UserId, hashes: &[String]) {
        match &self.reach {
            Reach::Server { hub, sessions } => {
                for hash in hashes {
                    sessions.forget(hash);
                }
                for hash in hashes {
                    hub.close_session(&SessionKey::from(hash.as_str()), user);
                }
            }
            Reach::Cluster { .. } => {
                let changes: Vec<Change> =
                    hashes.iter().map(|h| Change::CloseSession(SessionKey::from(h.as_str()))).collect();
                self.announce(&changes).await;
            }
            Reach::Store => {}
        }
    }

    /// An account closed (rows already changed): caches, then sockets, everywhere.
    async fn account_closed(&self, user: UserId, change: Change) {
        match &self.reach {
            Reach::Server { hub, sessions } => {
                sessions.forget_user(user);
                match change {
                    Change::Deleted(_) => hub.user_deleted(user),
                    _ => hub.close_user(user),
                }
            }
            Reach::Cluster { .. } => self.announce(&[change]).await,
            Reach::Store => {}
        }
    }

    /// A CLI in a cluster: tells every node `changes` (account events) through Redis.
    async fn announce(&self, changes: &[Change]) {
        if let Reach::Cluster { redis_url, key_prefix } = &self.reach {
            if let Err(e) = presence_redis::announce(redis_url, key_prefix, changes).await {
                // The rows changed; the servers' reconcilers still find it within seconds.
                tracing::warn!(error = %e, "could not tell the cluster; its nodes will notice within seconds");
            }
        }
    }
}
