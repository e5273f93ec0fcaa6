//! A username that Django would accept: [`Username::parse`] reproduces Django 5.2's
//! `UserCreationForm` username field (`UsernameField`: strip, NFKC-normalize) and the
//! `User.username` model rules (at most 150 characters, `UnicodeUsernameValidator`
//! `^[\w.@+-]+\Z`), with Django's exact messages. Pure: no I/O, no database; uniqueness is the
//! store's job, keyed on [`Username::key`].

use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::python_str;

/// Django's `User.username` `max_length`.
pub const MAX_USERNAME_CHARS: usize = 150;

/// Django's message when a username is taken (`unique_error_message` for `User.username`).
/// Roster's uniqueness is case-insensitive, as Django's `UserCreationForm.clean_username` is.
pub const DUPLICATE_USERNAME_MESSAGE: &str = "A user with that username already exists.";

/// Why a username was refused. `Display` is Django's exact message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Empty, or only whitespace (which the form field strips).
    #[error("This field is required.")]
    Required,
    /// More than [`MAX_USERNAME_CHARS`] characters (Python `len`, i.e. code points).
    #[error("Ensure this value has at most 150 characters (it has {0}).")]
    TooLong(usize),
    /// Contains U+0000 (Django's form `CharField` refuses it before the username rules run).
    #[error("Null characters are not allowed.")]
    NullCharacter,
    /// Contains something other than letters, digits and `@ . + - _`.
    #[error("Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.")]
    Invalid,
}

/// A valid, NFKC-normalized username. The private field guarantees it passed [`Username::parse`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    /// Parse form input the way Django's sign-up form does, in Django's order:
    /// strip surrounding whitespace; required; if already longer than 150 characters refuse it
    /// without normalizing (as Django does, to bound the work); NFKC-normalize; at most 150
    /// characters; no NUL; only `\w` and `@ . + - _`.
    pub fn parse(input: &str) -> Result<Self, UsernameError> {
        let stripped = python_str::strip(input);
        if stripped.is_empty() {
            return Err(UsernameError::Required);
        }
        let raw_len = python_str::len(stripped);
        if raw_len > MAX_USERNAME_CHARS {
            return Err(UsernameError::TooLong(raw_len));
        }
        let normalized: String = stripped.nfkc().collect();
        let len = python_str::len(&normalized);
        if len > MAX_USERNAME_CHARS {
            return Err(UsernameError::TooLong(len));
        }
        if normalized.contains('\0') {
            return Err(UsernameError::NullCharacter);
        }
        if !normalized.chars().all(is_username_char) {
            return Err(UsernameError::Invalid);
        }
        Ok(Self(normalized))
    }

    /// The normalized username, as shown and stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive uniqueness key: the NFKC-normalized username, Unicode-lowercased.
    /// Two usernames with the same key cannot both exist.
    pub fn key(&self) -> String {
        python_str::lower(&self.0)
    }

    /// The owned normalized username.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The uniqueness key of any text (NFKC, then Unicode lowercase), as [`Username::key`] computes
/// it for a valid name: for looking names up and for prefix search, where the input may be
/// partial or invalid.
pub fn username_key(text: &str) -> String {
    let normalized: String = text.trim().nfkc().collect();
    python_str::lower(&normalized)
}

fn is_username_char(c: char) -> bool {
    matches!(c, '.' | '@' | '+' | '-') || python_str::is_word(c)
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Username").field(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_django_usernames() {
        for ok in ["alice", "a", "Bob_42", "first.last@example.com", "a+b-c_d.e@f", "Zoë", "用户", "٣٣"] {
            assert_eq!(Username::parse(ok).map(|u| u.into_string()), Ok(ok.to_owned()));
        }
        assert_eq!(Username::parse(&"x".repeat(150)).map(|u| u.as_str().len()), Ok(150));
    }

    #[test]
    fn strips_and_normalizes_like_the_form() {
        assert_eq!(Username::parse("  alice\n").map(Username::into_string), Ok("alice".into()));
        // NFKC: fullwidth letters, ligatures and superscripts fold to plain characters.
        assert_eq!(Username::parse("ａｌｉｃｅ").map(Username::into_string), Ok("alice".into()));
        assert_eq!(Username::parse("ﬁ²").map(Username::into_string), Ok("fi2".into()));
        // Composed and decomposed é are the same user.
        let composed = Username::parse("caf\u{e9}");
        assert_eq!(composed, Username::parse("cafe\u{301}"));
    }

    #[test]
    fn required() {
        for empty in ["", "   ", "\t\n", "\u{3000}", "\u{1c}"] {
            assert_eq!(Username::parse(empty), Err(UsernameError::Required), "{empty:?}");
        }
        assert_eq!(UsernameError::Required.to_string(), "This field is required.");
    }

    #[test]
    fn too_long() {
        let err = Username::parse(&"x".repeat(151));
        assert_eq!(err, Err(UsernameError::TooLong(151)));
        assert_eq!(
            UsernameError::TooLong(151).to_string(),
            "Ensure this value has at most 150 characters (it has 151)."
        );
        // Counted in characters, not bytes: 150 × 'é' (300 bytes) is fine.
        assert!(Username::parse(&"é".repeat(150)).is_ok());
        // Too long before normalization: reported unnormalized, like Django.
        assert_eq!(Username::parse(&"ﬀ".repeat(151)), Err(UsernameError::TooLong(151)));
        // Normalization can make it too long: "ﬀ" becomes "ff".
        assert_eq!(Username::parse(&"ﬀ".repeat(76)), Err(UsernameError::TooLong(152)));
        // Too long wins over invalid characters (Django's form field fails first).
        assert_eq!(Username::parse(&" !".repeat(100)), Err(UsernameError::TooLong(199)));
    }

    #[test]
    fn invalid_characters() {
        for bad in ["a b", "alice!", "bob#", "o'neil", "<script>", "a/b", "名 字", "x\u{93F}", "e\u{301}\u{20dd}"] {
            assert_eq!(Username::parse(bad), Err(UsernameError::Invalid), "{bad:?}");
        }
        assert_eq!(Username::parse("a\0b"), Err(UsernameError::NullCharacter));
        assert_eq!(
            UsernameError::Invalid.to_string(),
            "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."
        );
    }

    #[test]
    fn key_is_case_insensitive() {
        let a = Username::parse("Alice").ok().map(|u| u.key());
        let b = Username::parse("ALICE").ok().map(|u| u.key());
        assert_eq!(a, Some("alice".to_owned()));
        assert_eq!(a, b);
        assert_eq!(Username::parse("ÀÉ").ok().map(|u| u.key()), Some("àé".to_owned()));
        // Display keeps the case the user chose.
        assert_eq!(Username::parse("Alice").map(|u| u.to_string()), Ok("Alice".into()));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in ["\u{10FFFF}", "\u{FFFD}", "\u{feff}", "\u{1F600}", "🏳️‍🌈", "\u{200b}"] {
            let _ = Username::parse(s);
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_is_total_and_idempotent(s in "\\PC{0,200}") {
            if let Ok(u) = Username::parse(&s) {
                proptest::prop_assert_eq!(Username::parse(u.as_str()), Ok(u.clone()));
                proptest::prop_assert!(python_str::len(u.as_str()) <= MAX_USERNAME_CHARS);
            }
        }
    }
}
