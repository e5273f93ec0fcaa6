//! Every message on the wire, in one place: the tutorial frames, the `roster.v1` snapshot and
//! diff frames, the close codes the hub uses, and (in [`views`]) the `roster.v2` live views.
//!
//! Serde types only: no I/O, no tokio, no hub. The hub serializes each batch once per protocol
//! with the functions here; tests and the load generator parse frames back with
//! [`parse_server_frame`] and [`TutorialFrame`].
//!
//! # Tutorial mode (no subprotocol)
//! One text frame per transition, exactly `{"username":"NAME","is_logged_in":true}` (`false` when
//! the user goes offline). Sign-ups and counts are not sent in this mode.
//!
//! # `roster.v1`
//! First frame: `{"type":"snapshot","seq":N,"online":[{"id":1,"username":"a"}],"online_count":1,
//! "registered_count":9}` (online users only, sorted by lowercase username). Then diffs with
//! consecutive `seq`: `{"type":"diff","seq":N+1,"online":[..],"offline":[{"id","username",
//! "last_seen":<unix ms>}],"signed_up":[..],"online_count":..,"registered_count":..}` and, only when
//! non-empty, `"deleted":[ids]`. A user appears at most once in `online` + `offline` of a diff,
//! with their final state in that batch: apply a diff by adding `online`, removing `offline` and
//! `deleted`; the counts are absolute. A client that falls behind gets a fresh snapshot (with a
//! higher `seq`) instead of the diffs it missed.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{UserId, UserRef};

pub mod views;

pub use views::ROSTER_V2;

/// The `Sec-WebSocket-Protocol` value of the full protocol.
pub const ROSTER_V1: &str = "roster.v1";

/// Close code: the session was logged out ([`crate::Hub::close_session`]). Do not reconnect.
pub const CLOSE_LOGGED_OUT: u16 = 4001;
/// Close code: the account was deactivated or deleted ([`crate::Hub::close_user`]). Policy
/// violation (RFC 6455 1008); do not reconnect.
pub const CLOSE_ACCOUNT_DISABLED: u16 = 1008;
/// Close code: a tutorial-mode client fell too far behind (it cannot take a snapshot). "Try again
/// later" (1013): reconnect and reload the list.
pub const CLOSE_LAGGING: u16 = 1013;
/// Close code: the server is shutting down (1001 "going away"): reconnect elsewhere.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// The reason text sent with each close code of the hub.
pub fn close_reason(code: u16) -> &'static str {
    match code {
        CLOSE_LOGGED_OUT => "logged out",
        CLOSE_ACCOUNT_DISABLED => "account disabled",
        CLOSE_LAGGING => "lagging, reconnect",
        CLOSE_GOING_AWAY => "server shutting down",
        _ => "",
    }
}

/// A tutorial frame: `{"username":"NAME","is_logged_in":true}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TutorialFrame<'a> {
    #[serde(borrow)]
    pub username: Cow<'a, str>,
    pub is_logged_in: bool,
}

/// A user in a diff's `offline` list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OfflineUser {
    pub id: UserId,
    pub username: Arc<str>,
    /// Unix time in milliseconds.
    pub last_seen: i64,
}

/// The `roster.v1` snapshot; also the body of `GET /api/users/`. Serializes with
/// `"type":"snapshot"` first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "snapshot")]
pub struct Snapshot {
    pub seq: u64,
    pub online: Vec<UserRef>,
    pub online_count: u64,
    pub registered_count: u64,
}

/// A `roster.v1` diff. Serializes with `"type":"diff"` first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "diff")]
pub struct Diff {
    pub seq: u64,
    pub online: Vec<UserRef>,
    pub offline: Vec<OfflineUser>,
    pub signed_up: Vec<UserRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<UserId>,
    pub online_count: u64,
    pub registered_count: u64,
}

/// A parsed `roster.v1` server frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Snapshot(Snapshot),
    Diff(Diff),
}

/// Parses a `roster.v1` server frame (for tests, the load generator and Rust clients).
pub fn parse_server_frame(text: &[u8]) -> Result<ServerFrame, serde_json::Error> {
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
    }
    let peek: Peek<'_> = serde_json::from_slice(text)?;
    if peek.kind == "diff" {
        serde_json::from_slice(text).map(ServerFrame::Diff)
    } else {
        serde_json::from_slice(text).map(ServerFrame::Snapshot)
    }
}

/// Appends one tutorial frame to `buf`.
pub(crate) fn write_tutorial(buf: &mut Vec<u8>, username: &str, online: bool) {
    let frame = TutorialFrame { username: Cow::Borrowed(username), is_logged_in: online };
    // Serializing a struct of a str and a bool into a Vec cannot fail.
    if let Err(e) = serde_json::to_writer(buf, &frame) {
        tracing::error!(error = %e, "serializing a tutorial frame");
    }
}

/// WebSocket opcodes (RFC 6455 §5.2) of the frames a server sends.
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// Appends `payload` as one complete, unmasked WebSocket frame (RFC 6455 §5.2: FIN set, no
/// extensions), as a server sends it. Server frames are the same bytes for every client, so the
/// hub encodes each batch once and every socket writes the same buffer.
pub fn write_ws_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | (opcode & 0x0F));
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

pub(crate) fn to_bytes<T: Serialize>(value: &T) -> bytes::Bytes {
    match serde_json::to_vec(value) {
        Ok(v) => v.into(),
        Err(e) => {
            // Only plain structs of strings and integers are serialized: cannot fail.
            tracing::error!(error = %e, "serializing a roster.v1 frame");
            bytes::Bytes::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_frames_have_rfc_6455_headers() {
        let mut out = Vec::new();
        write_ws_frame(&mut out, OPCODE_TEXT, b"Hello");
        assert_eq!(out, b"\x81\x05Hello", "RFC 6455 5.7: a single-frame unmasked text message");
        for (len, header) in [
            (125usize, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xFF, 0xFF]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            write_ws_frame(&mut out, OPCODE_TEXT, &vec![b'x'; len]);
            assert_eq!(&out[..header.len()], &header[..], "length {len}");
            assert_eq!(out.len(), header.len() + len);
        }
    }

    #[test]
    fn tutorial_frame_is_exactly_the_tutorials() {
        let mut buf = vec![];
        write_tutorial(&mut buf, "al\"ice", true);
        assert_eq!(std::str::from_utf8(&buf).unwrap(), r#"{"username":"al\"ice","is_logged_in":true}"#);
        let back: TutorialFrame<'_> = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back.username, "al\"ice");
    }

    #[test]
    fn snapshot_and_diff_shapes() {
        let snap = Snapshot { seq: 3, online: vec![UserRef::new(1, "a")], online_count: 1, registered_count: 2 };
        let text = serde_json::to_string(&snap).unwrap();
        assert_eq!(
            text,
            r#"{"type":"snapshot","seq":3,"online":[{"id":1,"username":"a"}],"online_count":1,"registered_count":2}"#
        );
        assert_eq!(parse_server_frame(text.as_bytes()).unwrap(), ServerFrame::Snapshot(snap));
        let diff = Diff {
            seq: 4,
            offline: vec![OfflineUser { id: 1, username: "a".into(), last_seen: 1700000000000 }],
            signed_up: vec![UserRef::new(2, "b")],
            online_count: 0,
            registered_count: 2,
            ..Diff::default()
        };
        let text = serde_json::to_string(&diff).unwrap();
        assert_eq!(
            text,
            r#"{"type":"diff","seq":4,"online":[],"offline":[{"id":1,"username":"a","last_seen":1700000000000}],"signed_up":[{"id":2,"username":"b"}],"online_count":0,"registered_count":2}"#
        );
        assert_eq!(parse_server_frame(text.as_bytes()).unwrap(), ServerFrame::Diff(diff));
    }
}
