//! The WebSocket handshake checks of `GET /users/` (crates/roster/src/ws.rs): the opening
//! handshake's headers, the subprotocol and the roster.v2 window, the `Origin` rule. Input lines:
//! method, query (`-` for none), flags (`s` = HTTPS), then `name: value` headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence::protocol::views::{MAX_VIEW_LIMIT, MAX_VIEW_OFFSET, MAX_VIEW_QUERY_CHARS};
use roster::fuzzing::ws_handshake;

const ALLOWED: &str = "https://roster.example";

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let method = lines.next().unwrap_or_default();
    let query = match lines.next().map(std::str::from_utf8) {
        Some(Ok("-")) | None => None,
        Some(Ok(q)) => Some(q),
        Some(Err(_)) => return,
    };
    let https = lines.next().is_some_and(|f| f.contains(&b's'));
    let headers: Vec<(&[u8], &[u8])> = lines
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            Some((&line[..colon], line[colon + 1..].trim_ascii()))
        })
        .collect();
    let Some(verdict) = ws_handshake(method, &headers, query, https, &[ALLOWED]) else { return };
    let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| *v);

    if let Ok(accept) = &verdict.accept {
        assert_eq!(method, b"GET");
        assert_eq!(accept.len(), 28, "base64 of a SHA-1");
        assert_eq!(header("sec-websocket-version"), Some(&b"13"[..]));
    }
    match header("origin") {
        None => assert!(verdict.origin_allowed, "no Origin: not a browser, allowed"),
        Some(origin) if verdict.origin_allowed => {
            let origin = std::str::from_utf8(origin).expect("an allowed Origin is text");
            let origin = origin.trim_end_matches('/');
            let scheme = if https { "https" } else { "http" };
            let own = header("host").is_some_and(|host| {
                origin.eq_ignore_ascii_case(&format!("{scheme}://{}", String::from_utf8_lossy(host)))
            });
            assert!(own || origin.eq_ignore_ascii_case(ALLOWED), "{origin:?} allowed");
        }
        Some(_) => {}
    }
    match &verdict.protocol {
        Ok((Some("roster.v2"), Some(window))) => {
            assert!((1..=MAX_VIEW_LIMIT).contains(&window.limit));
            assert!(window.offset <= MAX_VIEW_OFFSET);
            assert!(window.q.chars().count() <= MAX_VIEW_QUERY_CHARS);
            assert_eq!(window.q.trim(), window.q);
        }
        Ok((Some("roster.v1") | None, None)) | Err(_) => {}
        Ok(other) => panic!("unexpected negotiation {other:?}"),
    }
});
