//! A new password that passes Django 5.2's four default validators, in the order
//! `django-admin startproject` configures them (`AUTH_PASSWORD_VALIDATORS`):
//! `UserAttributeSimilarityValidator`, `MinimumLengthValidator` (8),
//! `CommonPasswordValidator` (Django's own list, shipped here as `common-passwords.txt.gz`),
//! `NumericPasswordValidator`. [`NewPassword::parse`] returns every failure, with Django's
//! messages. Pure apart from decompressing the embedded list once; no I/O, no async, and it
//! never logs or displays the secret.

use std::collections::HashSet;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::sync::OnceLock;

use super::difflib::SequenceMatcher;
use super::python_str;

/// Django's `MinimumLengthValidator` default.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Django's `UserAttributeSimilarityValidator` default `max_similarity`.
const MAX_SIMILARITY: f64 = 0.7;

/// Django's message when `password1` and `password2` differ (note the typographic apostrophe).
pub const PASSWORD_MISMATCH_MESSAGE: &str = "The two password fields didn\u{2019}t match.";

/// Django's common-password list (20,000 entries before deduplication, lowercased), from
/// `django/contrib/auth/common-passwords.txt.gz` in Django 5.2.19. See
/// `COMMON-PASSWORDS-LICENSE` beside this file.
static COMMON_PASSWORDS_GZ: &[u8] = include_bytes!("common-passwords.txt.gz");

/// One reason a password was refused. `Display` is Django's exact message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PasswordError {
    /// The field was empty (Django's form never runs the validators then).
    #[error("This field is required.")]
    Required,
    /// Contains U+0000 (Django's form `CharField` refuses it; the validators then do not run).
    #[error("Null characters are not allowed.")]
    NullCharacter,
    /// `UserAttributeSimilarityValidator`, for the `username` attribute.
    #[error("The password is too similar to the username.")]
    TooSimilar,
    /// `MinimumLengthValidator`.
    #[error("This password is too short. It must contain at least 8 characters.")]
    TooShort,
    /// `CommonPasswordValidator`.
    #[error("This password is too common.")]
    TooCommon,
    /// `NumericPasswordValidator`.
    #[error("This password is entirely numeric.")]
    EntirelyNumeric,
}

/// A password that passed the validators. Only [`NewPassword::parse`] makes one. It is
/// redacted in `Debug`, has no `Display`, and leaves this crate only as a hash.
#[derive(Clone)]
pub struct NewPassword(String);

impl NewPassword {
    /// Validate `raw` (exactly as typed: Django does not strip passwords) for the user named
    /// `username`. Pass the normalized username ([`super::Username::as_str`]) when it parsed,
    /// and `""` when it did not: Django then has no username to compare with and skips the
    /// similarity check. Returns all failures, in Django's order.
    pub fn parse(raw: &str, username: &str) -> Result<Self, Vec<PasswordError>> {
        if raw.is_empty() {
            return Err(vec![PasswordError::Required]);
        }
        if raw.contains('\0') {
            return Err(vec![PasswordError::NullCharacter]);
        }
        let mut errors = Vec::new();
        if too_similar(raw, username) {
            errors.push(PasswordError::TooSimilar);
        }
        if python_str::len(raw) < MIN_PASSWORD_CHARS {
            errors.push(PasswordError::TooShort);
        }
        if is_common(raw) {
            errors.push(PasswordError::TooCommon);
        }
        if python_str::is_digit_str(raw) {
            errors.push(PasswordError::EntirelyNumeric);
        }
        if errors.is_empty() {
            Ok(Self(raw.to_owned()))
        } else {
            Err(errors)
        }
    }

    /// The secret, for hashing. Crate-private so it cannot leak through the public API.
    pub(crate) fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

/// Django's `exceeds_maximum_length_ratio`: a value this much shorter than the password can
/// never reach `max_similarity`, so the matcher is skipped.
fn exceeds_maximum_length_ratio(pwd_len: usize, max_similarity: f64, value_len: usize) -> bool {
    let length_bound_similarity = max_similarity / 2.0 * pwd_len as f64;
    pwd_len >= 10 * value_len && (value_len as f64) < length_bound_similarity
}

/// `UserAttributeSimilarityValidator.validate` with `user_attributes = ("username",)` (the
/// other defaults, first/last name and email, are always empty in Roster). Django 5.2 compares
/// `quick_ratio()` only; that is kept here, faithfully.
fn too_similar(password: &str, username: &str) -> bool {
    if username.is_empty() {
        return false;
    }
    let password = python_str::lower(password);
    let pwd_len = python_str::len(&password);
    let value_lower = python_str::lower(username);
    let mut parts = python_str::split_non_word(&value_lower);
    parts.push(&value_lower);
    parts.into_iter().any(|part| {
        !exceeds_maximum_length_ratio(pwd_len, MAX_SIMILARITY, python_str::len(part))
            && SequenceMatcher::new(&password, part).quick_ratio() >= MAX_SIMILARITY
    })
}

fn common_passwords() -> &'static HashSet<String> {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        let reader = BufReader::new(flate2::read::GzDecoder::new(COMMON_PASSWORDS_GZ));
        // Django: `{x.strip() for x in f}`. The embedded list is fixed and checked by a unit
        // test, so a read error here can only mean a corrupted build; an empty set would fail
        // that test rather than panic a server.
        reader.lines().map_while(Result::ok).map(|line| python_str::strip(&line).to_owned()).collect()
    })
}

/// `CommonPasswordValidator.validate`: `password.lower().strip() in passwords`.
fn is_common(password: &str) -> bool {
    let lowered = python_str::lower(password);
    common_passwords().contains(python_str::strip(&lowered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use PasswordError::*;

    fn errors(raw: &str, username: &str) -> Vec<PasswordError> {
        NewPassword::parse(raw, username).err().unwrap_or_default()
    }

    #[test]
    fn common_list_loads_whole() {
        let set = common_passwords();
        // `len({x.strip() for x in gzip.open(...)})` with Django 5.2.19's file.
        assert_eq!(set.len(), 19_640);
        for p in ["password", "123456", "qwerty", "iloveyou", "letmein"] {
            assert!(set.contains(p), "{p}");
        }
    }

    #[test]
    fn messages_are_djangos() {
        assert_eq!(TooShort.to_string(), "This password is too short. It must contain at least 8 characters.");
        assert_eq!(EntirelyNumeric.to_string(), "This password is entirely numeric.");
        assert_eq!(TooCommon.to_string(), "This password is too common.");
        assert_eq!(TooSimilar.to_string(), "The password is too similar to the username.");
        assert_eq!(PASSWORD_MISMATCH_MESSAGE, "The two password fields didn’t match.");
    }

    #[test]
    fn accepts_a_good_password() {
        assert!(NewPassword::parse("correct horse battery staple", "alice").is_ok());
        assert!(NewPassword::parse("Tr0ub4dor&3x", "").is_ok());
    }

    #[test]
    fn reports_every_failure_in_djangos_order() {
        assert_eq!(errors("123", "bob"), [TooShort, TooCommon, EntirelyNumeric]);
        assert_eq!(errors("12345678", "bob"), [TooCommon, EntirelyNumeric]);
        assert_eq!(errors("83710274956", "bob"), [EntirelyNumeric]);
        assert_eq!(errors("alice", "alice"), [TooSimilar, TooShort, TooCommon]);
        assert_eq!(errors("abc", "bob"), [TooShort, TooCommon]);
        assert_eq!(errors("zq", "bob"), [TooShort]);
        assert_eq!(errors("", "bob"), [Required]);
        assert_eq!(errors("abc\0defghij", "bob"), [NullCharacter]);
    }

    #[test]
    fn common_check_lowercases_and_strips_like_django() {
        assert_eq!(errors("PassWord", "zed"), [TooCommon]);
        assert_eq!(errors("  password\t", "zed"), [TooCommon]);
        // Not stripped for the length check: Django keeps the spaces in the password.
        assert_eq!(errors(" abc ", "zed"), [TooShort, TooCommon]);
    }

    #[test]
    fn numeric_is_pythons_isdigit() {
        assert_eq!(errors("٣٣٣٣٣٣٣٣٣", "zed"), [EntirelyNumeric]);
        assert!(NewPassword::parse("½½½½½½½½½", "zed").is_ok());
    }

    #[test]
    fn similarity_matches_django() {
        // Every verdict in these tests was checked with Django 5.2.19's `validate_password` and the
        // four default validators.
        assert_eq!(errors("alice2024", "alice"), [TooSimilar]);
        assert_eq!(errors("ecilaxyz", "alice"), [TooSimilar], "quick_ratio ignores order");
        assert!(NewPassword::parse("alice-in-wonderland", "alice").is_ok());
        // Parts split on \W+: "john.smith" is compared with "john", "smith" and the whole.
        assert_eq!(errors("smith123", "john.smith"), [TooSimilar, TooCommon]);
        assert_eq!(errors("JohnSmith!", "john.smith"), [TooSimilar]);
        // A long password with a short username takes the length-ratio shortcut.
        assert!(NewPassword::parse("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "ab").is_ok());
        // No username (it failed to parse): nothing to compare with.
        assert_eq!(errors("alice2024", ""), Vec::<PasswordError>::new());
    }

    #[test]
    fn length_ratio_shortcut_is_djangos() {
        // pwd_len >= 10 * value_len and value_len < 0.35 * pwd_len
        assert!(exceeds_maximum_length_ratio(20, 0.7, 2));
        assert!(!exceeds_maximum_length_ratio(20, 0.7, 3));
        assert!(!exceeds_maximum_length_ratio(0, 0.7, 0));
    }

    #[test]
    fn debug_is_redacted() {
        let p = NewPassword::parse("correct horse battery staple", "alice");
        let shown = format!("{p:?}");
        assert!(!shown.contains("horse"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    proptest::proptest! {
        #[test]
        fn parse_is_total(raw in "\\PC{0,40}", user in "\\PC{0,20}") {
            let _ = NewPassword::parse(&raw, &user);
        }
    }
}
