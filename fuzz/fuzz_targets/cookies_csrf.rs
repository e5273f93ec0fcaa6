//! Cookie headers read as bytes (crates/roster/src/web/cookies.rs), the session cookie's hash,
//! and the CSRF check (crates/roster/src/web/csrf.rs). Input lines: two `Cookie` headers, the
//! `X-CSRFToken` header (empty line: none), then the form body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster::fuzzing::{csrf, session_hash};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let cookies: Vec<&[u8]> = [parts.next(), parts.next()].into_iter().flatten().collect();
    let header = parts.next().filter(|h| !h.is_empty());
    let body = parts.next().unwrap_or_default();

    if let Some(hash) = session_hash(&cookies) {
        if let Some(hash) = hash {
            assert_eq!(hash.len(), 64);
            assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
    let Some(verdict) = csrf(&cookies, header, body) else { return };
    if let Some(secret) = &verdict.secret {
        assert_eq!(secret.len(), 32);
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(cookies.iter().any(|c| c.windows(32).any(|w| w == secret.as_bytes())));
    }
    if let Some((token, matches)) = &verdict.fresh_form_token {
        assert!(*matches, "a fresh form token must unmask to its secret");
        assert_eq!(token.len(), 64);
    }
    if verdict.passes {
        let (Some(secret), Ok(Some(token))) = (&verdict.secret, &verdict.submitted) else {
            panic!("passed without a cookie and a token: {verdict:?}");
        };
        assert!(token.len() == 64 || token == secret, "{token:?} passed for {secret:?}");
    } else if let (Some(secret), Ok(Some(token))) = (&verdict.secret, &verdict.submitted) {
        assert_ne!(token, secret, "the bare secret must pass");
    }
});
