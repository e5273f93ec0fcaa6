//! The client frame reader of the `/users/` WebSocket (crates/roster/src/ws.rs), on any bytes a
//! client can send: first byte = read size and roster.v2 flag, the rest = the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence::protocol::views::{parse_view_request, MAX_CLIENT_TEXT};
use roster::fuzzing::{read_client_frames, ClientEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, wire)) = data.split_first() else { return };
    let roster_v2 = flags & 1 != 0;
    let chunk = usize::from(flags >> 1) + 1;
    let events = read_client_frames(wire, chunk, roster_v2);
    // The reader's buffering must not show: the same events whatever the size of each read.
    assert_eq!(events, read_client_frames(wire, wire.len(), roster_v2), "read size {chunk} changed the events");

    let (last, rest) = events.split_last().expect("the reader always ends with an event");
    match last {
        ClientEvent::Close(Some(code)) => assert!(matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)),
        ClientEvent::Violation(code) => assert!(matches!(code, 1002 | 1003 | 1007 | 1009), "close code {code}"),
        ClientEvent::Close(None) | ClientEvent::Gone => {}
        other => panic!("the reader stopped on {other:?}"),
    }
    for event in rest {
        match event {
            ClientEvent::Ping(payload) => assert!(payload.len() <= 125),
            ClientEvent::Text(text) => {
                assert!(roster_v2, "text delivered on a socket that skips it");
                assert!(text.len() <= MAX_CLIENT_TEXT);
                assert!(std::str::from_utf8(text).is_ok());
                let _ = parse_view_request(text);
            }
            ClientEvent::Other => {}
            end => panic!("{end:?} before the last event"),
        }
    }
    // Each event but a text message consumes a frame header of at least 6 bytes.
    assert!(rest.len() <= wire.len() / 3);
});
