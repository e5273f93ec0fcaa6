//! Conformance with Django itself: every verdict in `django_verdicts.rs` was produced by
//! Django 5.2's `UserCreationForm` (see `gen_django_verdicts.py`), and Roster must agree on each
//! username (accepted and normalized the same way, or refused with the same message) and on
//! each password (the same messages, in the same order). Test-only.

#[rustfmt::skip]
#[path = "django_verdicts.rs"]
mod django_verdicts;

use django_verdicts::{PASSWORDS, USERNAMES};

use super::{NewPassword, Username};

#[test]
fn usernames_agree_with_django() {
    let mut disagreements = Vec::new();
    for &(input, django) in USERNAMES {
        let ours = match Username::parse(input) {
            Ok(u) => format!("OK:{}", u.as_str()),
            Err(e) => e.to_string(),
        };
        if ours != django {
            disagreements.push(format!("{input:?}: Django {django:?}, Roster {ours:?}"));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

#[test]
fn passwords_agree_with_django() {
    let mut disagreements = Vec::new();
    for &(password, username, django) in PASSWORDS {
        // The form compares with the username only when the username itself was valid.
        let username = Username::parse(username).map(Username::into_string).unwrap_or_default();
        let ours: Vec<String> = match NewPassword::parse(password, &username) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        };
        if ours != django {
            disagreements.push(format!("{password:?} for {username:?}: Django {django:?}, Roster {ours:?}"));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}
