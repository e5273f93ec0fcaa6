//! `POST /sign_up/`'s body: form decoding (crates/roster/src/web/form.rs), then the `Username`
//! and `NewPassword` parsers (crates/roster/src/accounts/) on its fields, as the handler calls them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster::accounts::{Username, MAX_USERNAME_CHARS};
use roster::web::form::Form;

/// The CSRF middleware refuses larger bodies before any parsing.
const MAX_FORM_BYTES: usize = 16 * 1024;

fuzz_target!(|body: &[u8]| {
    if body.len() > MAX_FORM_BYTES {
        return;
    }
    let Ok(verdict) = roster::fuzzing::sign_up_form(body) else {
        assert!(Form::parse(body).is_err());
        return;
    };
    let form = Form::parse(body).expect("parsed once, parses again");
    if let Ok(name) = &verdict.username {
        assert!(!name.is_empty() && name.chars().count() <= MAX_USERNAME_CHARS);
        assert!(!name.contains('\0') && name.trim() == name);
        // A stored username parses to itself (sign up, then log in with the name shown).
        assert_eq!(Username::parse(name).map(Username::into_string).as_ref(), Ok(name));
    }
    if verdict.password.is_ok() {
        assert_eq!(form.get("password1"), form.get("password2"));
        assert!(!form.get("password1").is_empty());
    }
    // Fields encoded the way a browser does decode back to themselves.
    for field in ["username", "password1", "password2"] {
        let value = form.get(field);
        let again = Form::parse(format!("{field}={}", encode(value)).as_bytes()).expect("re-encoded form");
        assert_eq!(again.get(field), value);
    }
});

/// `application/x-www-form-urlencoded`, as a browser writes it.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b' ' => "+".to_owned(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
