//! The few Python `str` behaviours Django's account rules lean on (`\w`, `isspace`/`strip`,
//! `isdigit`, `lower`, `len`), reproduced exactly so Roster accepts and rejects what Django does.
//! Depends only on the generated tables in `unicode_tables.rs`; no I/O, no async.

use super::unicode_tables::{DIGIT, SPACE, WORD};

fn in_table(table: &[(u32, u32)], c: char) -> bool {
    let cp = u32::from(c);
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Python `re`'s `\w` for `str` patterns without flags.
pub(super) fn is_word(c: char) -> bool {
    in_table(WORD, c)
}

/// Python `str.isspace()` for one character.
pub(super) fn is_space(c: char) -> bool {
    in_table(SPACE, c)
}

/// Python `str.isdigit()`: true for a non-empty string of digit characters only.
pub(super) fn is_digit_str(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| in_table(DIGIT, c))
}

/// Python `str.strip()` with no arguments.
pub(super) fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python `len()` of a `str`: code points, not bytes.
pub(super) fn len(s: &str) -> usize {
    s.chars().count()
}

/// Python `str.lower()`: full Unicode lowercase mapping (Rust's `to_lowercase` does the same,
/// including the final-sigma rule).
pub(super) fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// Python `re.split(r"\W+", s)`: the pieces between runs of non-word characters, keeping the
/// empty pieces Python keeps at either end.
pub(super) fn split_non_word(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        match rest.char_indices().find(|&(_, c)| !is_word(c)) {
            None => {
                parts.push(rest);
                return parts;
            }
            Some((start, _)) => {
                parts.push(&rest[..start]);
                let after = &rest[start..];
                let run = after.char_indices().find(|&(_, c)| is_word(c)).map_or(after.len(), |(i, _)| i);
                rest = &after[run..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_matches_python() {
        // Values checked with Python 3.11: re.match(r"\w", c) is not None.
        for c in ['a', 'Z', '0', '_', 'é', 'ß', 'Ж', '中', '٣', '²', '½', 'ǅ'] {
            assert!(is_word(c), "{c:?} is \\w in Python");
        }
        // U+093F DEVANAGARI VOWEL SIGN I is Alphabetic to Rust but not \w to Python.
        for c in ['.', '@', '+', '-', ' ', '\u{93F}', '\u{301}', '€', '\0'] {
            assert!(!is_word(c), "{c:?} is not \\w in Python");
        }
        assert!('\u{93F}'.is_alphanumeric(), "the reason for the table");
    }

    #[test]
    fn strip_matches_python() {
        // "\x1c".isspace() is True in Python but not char::is_whitespace in Rust.
        assert_eq!(strip("\u{1c}\t a b\u{3000}\u{a0}\n"), "a b");
        assert!(!'\u{1c}'.is_whitespace());
        assert_eq!(strip("\u{200b}x"), "\u{200b}x", "ZERO WIDTH SPACE is not isspace");
    }

    #[test]
    fn isdigit_matches_python() {
        assert!(is_digit_str("0123456789"));
        assert!(is_digit_str("²③٣"), "superscripts, circled and Arabic-Indic digits");
        assert!(!is_digit_str("½"), "vulgar fractions are numeric but not digits");
        assert!(!is_digit_str(""));
        assert!(!is_digit_str("12a"));
    }

    #[test]
    fn split_matches_python() {
        // re.split(r"\W+", s) in Python 3.11.
        assert_eq!(split_non_word("a.b@c"), ["a", "b", "c"]);
        assert_eq!(split_non_word(".a..b."), ["", "a", "b", ""]);
        assert_eq!(split_non_word(""), [""]);
        assert_eq!(split_non_word("..."), ["", ""]);
        assert_eq!(split_non_word("jo_hn-doe+x"), ["jo_hn", "doe", "x"]);
    }
}
