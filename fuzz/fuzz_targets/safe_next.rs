//! The `next` redirect check (crates/roster/src/web/session.rs): whatever `safe_next` lets
//! through must stay on this site when a browser resolves it, and `encode_next` must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster::web::session::{encode_next, safe_next};

fuzz_target!(|data: &[u8]| {
    let Ok(next) = std::str::from_utf8(data) else { return };
    let safe = safe_next(next);
    assert!(safe == next || safe == "/");
    let base = url::Url::parse("https://roster.example/log_in/").expect("base URL");
    let target = base.join(safe).expect("a checked next is a valid relative URL");
    assert_eq!(target.origin(), base.origin(), "{next:?} leaves the site");
    assert!(target.username().is_empty() && target.password().is_none());

    let encoded = encode_next(next);
    assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.~%".contains(&b)));
    // The log-in redirect puts `encode_next(path)` in `?next=`; the log-in page gets it decoded.
    let decoded: Vec<u8> = percent_decode(encoded.as_bytes());
    assert_eq!(decoded, next.as_bytes());
});

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(&s[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}
