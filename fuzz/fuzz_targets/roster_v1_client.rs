//! The client side of the wire protocols (crates/presence/src/client.rs and, for roster.v2,
//! `PageView` in crates/presence/src/protocol/views.rs), as the load generator and the tests run
//! it, on frames from a hostile or broken server. Input: newline-separated frames; the first
//! byte picks roster.v1 (`1`), roster.v2 (`2`) or the lenient reader of either (anything else).
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence::client::{ClientView, Frame, Parsed, Sequence};
use presence::protocol::views::PageView;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let frames = rest.split(|&b| b == b'\n');
    match mode {
        b'1' => {
            let mut view = ClientView::default();
            for frame in frames {
                let before = view.seq();
                let applied = view.apply_text(frame);
                assert!(view.seq() >= before, "seq went back: {before:?} -> {:?}", view.seq());
                if view.in_sync() {
                    assert!(view.seq().is_some());
                }
                if applied.is_err() {
                    assert!(!view.in_sync());
                }
            }
        }
        b'2' => {
            let mut view = PageView::default();
            for (i, frame) in frames.enumerate() {
                if frame.first() == Some(&b'?') {
                    view.requested(i as u64);
                    continue;
                }
                let (users, seq) = (view.users.len(), view.seq);
                match view.apply_text(frame) {
                    Ok(false) => assert_eq!((view.users.len(), view.seq), (users, seq), "ignored but changed"),
                    Ok(true) => assert!(view.live),
                    Err(_) => assert!(!view.live),
                }
            }
        }
        _ => {
            let mut seq = Sequence::default();
            for frame in frames {
                let Ok(text) = std::str::from_utf8(frame) else { continue };
                let Ok(frame) = Frame::parse(text) else { continue };
                match frame.parsed() {
                    Parsed::Snapshot { seq: s, .. } => seq.snapshot(s),
                    Parsed::Changes { seq: Some(s), .. } => {
                        let newest = seq.newest();
                        if seq.diff(s).is_ok() {
                            assert_eq!(newest.map(|n| n + 1), Some(s));
                        }
                    }
                    Parsed::Changes { seq: None, .. } | Parsed::Other => {}
                }
            }
        }
    }
});
