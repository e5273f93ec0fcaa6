//! Accounts, by Django's rules: usernames, new-password validation, password hashing
//! (Argon2id, verifying imported Django `pbkdf2_sha256` hashes), log-in throttling, import of a
//! Django `auth_user` CSV export, sessions (ids and the cache), and `operations`: the account
//! operations (sign up ... delete) that the pages, the admin pages and the CLI all call. Only
//! `operations` touches the store and the hub; nothing here knows HTTP or templates. Argon2 work
//! runs only on Tokio's blocking pool.

mod difflib;
#[cfg(test)]
mod django_conformance;
pub mod django_import;
pub mod hashing;
pub mod log_in_limits;
pub mod operations;
pub mod password;
mod python_str;
pub mod sessions;
pub mod throttle;
#[rustfmt::skip]
mod unicode_tables;
pub mod username;

pub use django_import::{import_csv, ImportError, Imported, ImportedUser, RowError, RowErrorKind};
pub use hashing::{dummy_verify, hash_password, rehash_password, verify, verify_password, HashError, Verification};
pub use log_in_limits::{Admission, LogInLimitSettings, LogInLimits, ACCOUNT_SLOWDOWN};
pub use operations::{AccountError, Accounts, LogIn, NewAccount, NewSession, Reach};
pub use password::{NewPassword, PasswordError, MIN_PASSWORD_CHARS, PASSWORD_MISMATCH_MESSAGE};
pub use throttle::{RetryAfter, Throttle};
pub use username::{username_key, Username, UsernameError, DUPLICATE_USERNAME_MESSAGE, MAX_USERNAME_CHARS};
