//! `roster.v2`: live views. A client watches a window of the list (offset, limit, optional
//! search prefix `q`) and gets that window's snapshot, then per batch only the operations that
//! change it, plus the counts. The window comes from the handshake URL
//! (`/users/?offset=0&limit=200&q=`) and changes with a small text message on the same socket.
//!
//! Serde types and hand-written encoders only: no I/O, no tokio, no hub. The hub encodes each
//! group's frame once; tests, the load generator and Rust clients parse frames back with
//! [`parse_view_frame`] and follow a window with [`PageView`].
//!
//! # Frames (server to client)
//! - `{"type":"snapshot","view":ID,"now":MS,"seq":N,"offset":O,"limit":L,"q":"..","total":T,
//!   "online_count":C,"registered_count":R,"users":[USER,..]}`: the window's content. `view` is the
//!   id of the request it answers (0 for the handshake's window), `now` the server's clock (unix
//!   ms), `total` how many users match `q` (for paging), `q` the normalised search key.
//! - `{"type":"diff","seq":N+1,"ops":[OP,..],"total":T,"online_count":C,"registered_count":R}`:
//!   apply the operations in order; `seq` is consecutive within one window's stream (after a
//!   snapshot). A gap means something was missed: re-subscribe, never guess.
//! - `{"type":"error","view":ID,"error":"why"}`: a view request was refused; the window is unchanged.
//! - USER: `{"id":1,"username":"a","online":true}` or, offline,
//!   `{"id":1,"username":"a","online":false,"last_seen":MS}` (`null`: never seen).
//! - OP: `{"op":"insert","at":P,"user":USER}`, `{"op":"remove","at":P}`,
//!   `{"op":"update","at":P,"user":USER}` (same user, same place, new state); positions are
//!   indices in the window as it is when the operation applies.
//!
//! # Message (client to server)
//! `{"type":"view","id":ID,"offset":O,"limit":L,"q":".."}` (at most [`MAX_CLIENT_TEXT`] bytes;
//! `q` optional). Strictly parsed: unknown fields or types close the socket with 1007.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::UserId;

/// The `Sec-WebSocket-Protocol` value of live views.
pub const ROSTER_V2: &str = "roster.v2";
/// The window of a roster.v2 socket opened without one: the first page of the whole list.
pub const DEFAULT_VIEW_LIMIT: u32 = 200;
/// Most users a window may hold.
pub const MAX_VIEW_LIMIT: u32 = 1000;
/// Largest window offset.
pub const MAX_VIEW_OFFSET: u32 = 100_000_000;
/// Longest search prefix, in characters (longer than any username).
pub const MAX_VIEW_QUERY_CHARS: usize = 150;
/// Largest text message a `roster.v2` client may send (bytes); bigger closes the socket (1009).
pub const MAX_CLIENT_TEXT: usize = 1024;

/// Close code: a `roster.v2` client sent a message that is not a valid view request (or not
/// UTF-8). RFC 6455 1007 "invalid frame payload data"; fix the client.
pub const CLOSE_INVALID_MESSAGE: u16 = 1007;
/// Close code: a `roster.v2` client sent a binary message. RFC 6455 1003.
pub const CLOSE_UNSUPPORTED_DATA: u16 = 1003;

/// A window of the list: `limit` users from position `offset` of the users whose search key
/// starts with the search key of `q` (everyone when empty).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub offset: u32,
    pub limit: u32,
    /// As the client typed it (trimmed); the hub normalises it with the server's search key.
    pub q: String,
}

impl Default for Window {
    fn default() -> Self {
        Window { offset: 0, limit: DEFAULT_VIEW_LIMIT, q: String::new() }
    }
}

/// Why a window was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowError {
    Offset,
    Limit,
    QueryTooLong,
    Encoding,
}

impl WindowError {
    /// What to tell the client (a handshake's 400 body, an error frame).
    pub fn message(self) -> &'static str {
        match self {
            WindowError::Offset => "offset must be a whole number from 0 to 100000000",
            WindowError::Limit => "limit must be a whole number from 1 to 1000",
            WindowError::QueryTooLong => "q is longer than any username (150 characters)",
            WindowError::Encoding => "the query string is not valid percent-encoded UTF-8",
        }
    }
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for WindowError {}

impl Window {
    /// Checks the bounds.
    pub fn new(offset: u64, limit: u64, q: &str) -> Result<Window, WindowError> {
        let offset = u32::try_from(offset).ok().filter(|o| *o <= MAX_VIEW_OFFSET).ok_or(WindowError::Offset)?;
        let limit = u32::try_from(limit).ok().filter(|l| (1..=MAX_VIEW_LIMIT).contains(l)).ok_or(WindowError::Limit)?;
        let q = q.trim();
        if q.chars().count() > MAX_VIEW_QUERY_CHARS {
            return Err(WindowError::QueryTooLong);
        }
        Ok(Window { offset, limit, q: q.to_owned() })
    }

    /// The window of a handshake URL's query string (`offset=0&limit=200&q=al`, percent-encoded,
    /// `+` for a space). Missing values take their defaults (0, `default_limit`, no search);
    /// other parameters are ignored.
    pub fn from_query(query: &str, default_limit: u32) -> Result<Window, WindowError> {
        let (mut offset, mut limit, mut q) = (0u64, u64::from(default_limit.clamp(1, MAX_VIEW_LIMIT)), String::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |e| if value.is_empty() { Err(e) } else { value.parse::<u64>().map_err(|_| e) };
            match name {
                "offset" => offset = number(WindowError::Offset)?,
                "limit" => limit = number(WindowError::Limit)?,
                "q" => q = percent_decode(value).ok_or(WindowError::Encoding)?,
                _ => {}
            }
        }
        Window::new(offset, limit, &q)
    }
}

/// `application/x-www-form-urlencoded` decoding of one value; `None` for a bad escape or bytes
/// that are not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A client's request to watch another window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewRequest {
    /// Chosen by the client; echoed in the snapshot (or error) that answers it.
    pub id: u64,
    pub window: Window,
}

/// Why a client message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not a view request at all: the socket closes with [`CLOSE_INVALID_MESSAGE`].
    #[error("not a view request: {0}")]
    Malformed(String),
    /// A well-formed request for a window out of bounds: answered with an error frame.
    #[error("{error}")]
    Window { id: u64, error: WindowError },
}

/// Parses a client text message (see the module docs).
pub fn parse_view_request(text: &[u8]) -> Result<ViewRequest, MessageError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wire<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        id: u64,
        offset: u64,
        limit: u64,
        #[serde(default, borrow)]
        q: std::borrow::Cow<'a, str>,
    }
    if text.len() > MAX_CLIENT_TEXT {
        return Err(MessageError::Malformed(format!("longer than {MAX_CLIENT_TEXT} bytes")));
    }
    let wire: Wire<'_> = serde_json::from_slice(text).map_err(|e| MessageError::Malformed(e.to_string()))?;
    if wire.kind != "view" {
        return Err(MessageError::Malformed(format!("unknown message type {:?}", wire.kind)));
    }
    let window =
        Window::new(wire.offset, wire.limit, &wire.q).map_err(|error| MessageError::Window { id: wire.id, error })?;
    Ok(ViewRequest { id: wire.id, window })
}

/// The message a client sends to watch `window` (what the page script sends).
pub fn view_request(id: u64, window: &Window) -> String {
    serde_json::json!({"type": "view", "id": id, "offset": window.offset, "limit": window.limit, "q": window.q})
        .to_string()
}

// ---------------------------------------------------------------- encoding (server side)

/// Counts every frame carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewCounts {
    /// Users matching the window's search (the length of the list it pages through).
    pub total: u64,
    pub online_count: u64,
    pub registered_count: u64,
}

/// One user as a view shows them (encoding side: borrowed).
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntryRef<'a> {
    pub(crate) id: UserId,
    pub(crate) username: &'a str,
    pub(crate) online: bool,
    pub(crate) last_seen: Option<i64>,
}

/// An operation on a window (encoding side).
#[derive(Clone, Copy, Debug)]
pub(crate) enum OpRef<'a> {
    Insert(usize, EntryRef<'a>),
    Remove(usize),
    Update(usize, EntryRef<'a>),
}

fn write_str(buf: &mut Vec<u8>, s: &str) {
    // A str always serializes.
    if serde_json::to_writer(&mut *buf, s).is_err() {
        buf.extend_from_slice(b"\"\"");
    }
}

fn write_entry(buf: &mut Vec<u8>, e: &EntryRef<'_>) {
    buf.extend_from_slice(b"{\"id\":");
    buf.extend_from_slice(e.id.to_string().as_bytes());
    buf.extend_from_slice(b",\"username\":");
    write_str(buf, e.username);
    if e.online {
        buf.extend_from_slice(b",\"online\":true}");
    } else {
        buf.extend_from_slice(b",\"online\":false,\"last_seen\":");
        match e.last_seen {
            Some(ms) => buf.extend_from_slice(ms.to_string().as_bytes()),
            None => buf.extend_from_slice(b"null"),
        }
        buf.push(b'}');
    }
}

fn write_counts(buf: &mut Vec<u8>, c: &ViewCounts) {
    buf.extend_from_slice(
        format!(
            ",\"total\":{},\"online_count\":{},\"registered_count\":{}",
            c.total, c.online_count, c.registered_count
        )
        .as_bytes(),
    );
}

/// The shared part of a snapshot: everything after `{"type":"snapshot","view":ID,"now":MS,`.
/// Cached per window and seq; [`snapshot_frame`] puts the per-socket head on it.
pub(crate) fn snapshot_body<'a>(
    seq: u64,
    window: (u32, u32, &str),
    counts: &ViewCounts,
    users: impl Iterator<Item = EntryRef<'a>>,
) -> Vec<u8> {
    let (offset, limit, q) = window;
    let mut buf = Vec::with_capacity(64 + 64 * limit.min(256) as usize);
    buf.extend_from_slice(format!("\"seq\":{seq},\"offset\":{offset},\"limit\":{limit},\"q\":").as_bytes());
    write_str(&mut buf, q);
    write_counts(&mut buf, counts);
    buf.extend_from_slice(b",\"users\":[");
    for (i, e) in users.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_entry(&mut buf, &e);
    }
    buf.extend_from_slice(b"]}");
    buf
}

/// A snapshot's JSON for one socket: its head (`view`, `now`) and the cached body.
pub(crate) fn snapshot_json(view: u64, now_ms: i64, body: &[u8]) -> Vec<u8> {
    let head = format!("{{\"type\":\"snapshot\",\"view\":{view},\"now\":{now_ms},");
    let mut json = Vec::with_capacity(head.len() + body.len());
    json.extend_from_slice(head.as_bytes());
    json.extend_from_slice(body);
    json
}

/// A diff's JSON.
pub(crate) fn diff_json(seq: u64, ops: &[OpRef<'_>], counts: &ViewCounts) -> Vec<u8> {
    let mut buf = Vec::with_capacity(96 + 72 * ops.len());
    buf.extend_from_slice(format!("{{\"type\":\"diff\",\"seq\":{seq},\"ops\":[").as_bytes());
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        match op {
            OpRef::Insert(at, e) | OpRef::Update(at, e) => {
                let name = if matches!(op, OpRef::Insert(..)) { "insert" } else { "update" };
                buf.extend_from_slice(format!("{{\"op\":\"{name}\",\"at\":{at},\"user\":").as_bytes());
                write_entry(&mut buf, e);
                buf.push(b'}');
            }
            OpRef::Remove(at) => buf.extend_from_slice(format!("{{\"op\":\"remove\",\"at\":{at}}}").as_bytes()),
        }
    }
    buf.push(b']');
    write_counts(&mut buf, counts);
    buf.push(b'}');
    buf
}

/// An error frame's JSON.
pub fn error_json(view: u64, error: &str) -> Vec<u8> {
    serde_json::json!({"type": "error", "view": view, "error": error}).to_string().into_bytes()
}

// ---------------------------------------------------------------- parsing (client side)

/// A user in a view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewUser {
    pub id: UserId,
    pub username: String,
    pub online: bool,
    /// Unix ms of an offline user's last going offline; `None` if never seen (or online).
    #[serde(default)]
    pub last_seen: Option<i64>,
}

/// A parsed snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ViewSnapshot {
    pub view: u64,
    pub now: i64,
    pub seq: u64,
    pub offset: u32,
    pub limit: u32,
    pub q: String,
    pub total: u64,
    pub online_count: u64,
    pub registered_count: u64,
    pub users: Vec<ViewUser>,
}

/// A parsed operation.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "OpWire")]
pub enum ViewOp {
    Insert { at: usize, user: ViewUser },
    Remove { at: usize },
    Update { at: usize, user: ViewUser },
}

/// An operation as it is on the wire. (Not `#[serde(tag = "op")]`: an internally tagged enum
/// buffers every object before looking at its tag, which made parsing the load generator's
/// bottleneck.)
#[derive(Deserialize)]
struct OpWire {
    op: OpKind,
    at: usize,
    #[serde(default)]
    user: Option<ViewUser>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum OpKind {
    Insert,
    Remove,
    Update,
}

impl TryFrom<OpWire> for ViewOp {
    type Error = &'static str;

    fn try_from(w: OpWire) -> Result<ViewOp, &'static str> {
        match (w.op, w.user) {
            (OpKind::Insert, Some(user)) => Ok(ViewOp::Insert { at: w.at, user }),
            (OpKind::Update, Some(user)) => Ok(ViewOp::Update { at: w.at, user }),
            (OpKind::Remove, _) => Ok(ViewOp::Remove { at: w.at }),
            (OpKind::Insert | OpKind::Update, None) => Err("an insert or update without its user"),
        }
    }
}

/// A parsed diff.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ViewDiff {
    pub seq: u64,
    pub ops: Vec<ViewOp>,
    pub total: u64,
    pub online_count: u64,
    pub registered_count: u64,
}

/// A parsed `roster.v2` server frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewFrame {
    Snapshot(ViewSnapshot),
    Diff(ViewDiff),
    Error { view: u64, error: String },
}

/// Parses a `roster.v2` server frame: its `type` first, then the frame as that type.
pub fn parse_view_frame(text: &[u8]) -> Result<ViewFrame, serde_json::Error> {
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Error {
        view: u64,
        error: String,
    }
    // Roster writes `type` first: then one pass is enough.
    let kind = if text.starts_with(br#"{"type":"diff""#) {
        std::borrow::Cow::Borrowed("diff")
    } else if text.starts_with(br#"{"type":"snapshot""#) {
        std::borrow::Cow::Borrowed("snapshot")
    } else {
        serde_json::from_slice::<Peek<'_>>(text)?.kind
    };
    match &*kind {
        "snapshot" => serde_json::from_slice(text).map(ViewFrame::Snapshot),
        "diff" => serde_json::from_slice(text).map(ViewFrame::Diff),
        "error" => serde_json::from_slice(text).map(|e: Error| ViewFrame::Error { view: e.view, error: e.error }),
        other => Err(serde::de::Error::unknown_variant(other, &["snapshot", "diff", "error"])),
    }
}

/// Why a [`PageView`] could not apply a frame: the client must re-subscribe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewGap {
    /// A diff before any snapshot of the current request.
    NoSnapshot,
    /// A diff whose seq is not the next one.
    Seq { expected: u64, got: u64 },
    /// An operation outside the window (a broken stream).
    Position(usize),
}

impl fmt::Display for ViewGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViewGap::NoSnapshot => f.write_str("a diff before the snapshot"),
            ViewGap::Seq { expected, got } => write!(f, "expected seq {expected}, got {got}"),
            ViewGap::Position(at) => write!(f, "an operation at {at}, outside the window"),
        }
    }
}

/// A client's copy of one window, as the page script keeps it: the snapshot of the latest
/// request, then each diff applied in order. Frames answering an older request are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageView {
    /// The id of the latest request (the handshake's window is 0).
    pub requested: u64,
    /// Whether the snapshot of the latest request has arrived (frames before it are dropped).
    pub live: bool,
    pub seq: u64,
    /// The window, in order (a deque: the operations at the head of a page cost O(1)).
    pub users: VecDeque<ViewUser>,
    pub counts: ViewCounts,
    /// The window the last snapshot was for.
    pub offset: u32,
    pub limit: u32,
    pub q: String,
    /// Server time of the last snapshot.
    pub now: i64,
    pub snapshots: u64,
    pub diffs: u64,
}

impl PageView {
    /// Records that request `id` was sent: frames until its snapshot are ignored.
    pub fn requested(&mut self, id: u64) {
        self.requested = id;
        self.live = false;
    }

    /// Applies one frame. `Ok(true)` if it changed the view.
    pub fn apply(&mut self, frame: ViewFrame) -> Result<bool, ViewGap> {
        match frame {
            ViewFrame::Snapshot(s) => {
                if s.view != self.requested {
                    return Ok(false);
                }
                self.live = true;
                self.seq = s.seq;
                self.users = s.users.into();
                self.counts =
                    ViewCounts { total: s.total, online_count: s.online_count, registered_count: s.registered_count };
                (self.offset, self.limit, self.q, self.now) = (s.offset, s.limit, s.q, s.now);
                self.snapshots += 1;
                Ok(true)
            }
            ViewFrame::Diff(d) => {
                if !self.live {
                    return Ok(false);
                }
                // Checked: a snapshot may carry any seq (a broken server's u64::MAX is a gap at
                // the next diff, not an overflow).
                let expected = self.seq.wrapping_add(1);
                if self.seq == u64::MAX || d.seq != expected {
                    self.live = false;
                    return Err(ViewGap::Seq { expected, got: d.seq });
                }
                for op in d.ops {
                    match op {
                        ViewOp::Insert { at, user } if at <= self.users.len() => self.users.insert(at, user),
                        ViewOp::Remove { at } if at < self.users.len() => {
                            self.users.remove(at);
                        }
                        ViewOp::Update { at, user } if at < self.users.len() => self.users[at] = user,
                        ViewOp::Insert { at, .. } | ViewOp::Remove { at } | ViewOp::Update { at, .. } => {
                            self.live = false;
                            return Err(ViewGap::Position(at));
                        }
                    }
                }
                self.seq = d.seq;
                self.counts =
                    ViewCounts { total: d.total, online_count: d.online_count, registered_count: d.registered_count };
                self.diffs += 1;
                Ok(true)
            }
            ViewFrame::Error { .. } => Ok(false),
        }
    }

    /// Parses and applies a frame's text; a frame that does not parse is a gap.
    pub fn apply_text(&mut self, text: &[u8]) -> Result<bool, ViewGap> {
        match parse_view_frame(text) {
            Ok(frame) => self.apply(frame),
            Err(_) => {
                self.live = false;
                Err(ViewGap::NoSnapshot)
            }
        }
    }

    pub fn usernames(&self) -> Vec<&str> {
        self.users.iter().map(|u| u.username.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_from_handshake_urls() {
        assert_eq!(Window::from_query("", 200), Ok(Window { offset: 0, limit: 200, q: String::new() }));
        assert_eq!(
            Window::from_query("offset=400&limit=200&q=Al%C3%AFce+b&x=1", 200),
            Ok(Window { offset: 400, limit: 200, q: "Alïce b".into() })
        );
        assert_eq!(Window::from_query("offset=-1", 200), Err(WindowError::Offset));
        assert_eq!(Window::from_query("offset=", 200), Err(WindowError::Offset));
        assert_eq!(Window::from_query("limit=0", 200), Err(WindowError::Limit));
        assert_eq!(Window::from_query("limit=1001", 200), Err(WindowError::Limit));
        assert_eq!(Window::from_query("offset=100000001", 200), Err(WindowError::Offset));
        assert_eq!(Window::from_query("q=%ZZ", 200), Err(WindowError::Encoding));
        assert_eq!(Window::from_query("q=%FF", 200), Err(WindowError::Encoding));
        assert_eq!(Window::from_query("q=%4", 200), Err(WindowError::Encoding));
        assert_eq!(Window::from_query(&format!("q={}", "a".repeat(151)), 200), Err(WindowError::QueryTooLong));
        assert!(Window::from_query(&format!("q={}", "é".repeat(150)), 200).is_ok(), "characters, not bytes");
    }

    #[test]
    fn view_requests_are_parsed_strictly() {
        let ok = parse_view_request(br#"{"type":"view","id":3,"offset":200,"limit":200,"q":"al"}"#);
        assert_eq!(ok, Ok(ViewRequest { id: 3, window: Window { offset: 200, limit: 200, q: "al".into() } }));
        let no_q = parse_view_request(br#"{"type":"view","id":4,"offset":0,"limit":10}"#).map(|r| r.window.q);
        assert_eq!(no_q, Ok(String::new()));
        for bad in [
            &br#"{"type":"view","id":3,"offset":0,"limit":10,"extra":1}"#[..],
            br#"{"type":"look","id":3,"offset":0,"limit":10}"#,
            br#"{"type":"view","offset":0,"limit":10}"#,
            br#"{"type":"view","id":-1,"offset":0,"limit":10}"#,
            br#"{"type":"view","id":3,"offset":"0","limit":10}"#,
            b"not json",
            b"",
        ] {
            assert!(
                matches!(parse_view_request(bad), Err(MessageError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_view_request(br#"{"type":"view","id":7,"offset":0,"limit":5000}"#),
            Err(MessageError::Window { id: 7, error: WindowError::Limit })
        );
        let long = format!(r#"{{"type":"view","id":1,"offset":0,"limit":1,"q":"{}"}}"#, "a".repeat(1100));
        assert!(matches!(parse_view_request(long.as_bytes()), Err(MessageError::Malformed(_))));
        let w = Window::new(5, 6, "x").unwrap();
        assert_eq!(parse_view_request(view_request(9, &w).as_bytes()), Ok(ViewRequest { id: 9, window: w }));
    }

    #[test]
    fn frames_encode_as_documented_and_parse_back() {
        let counts = ViewCounts { total: 3, online_count: 1, registered_count: 3 };
        let users = [
            EntryRef { id: 1, username: "al\"ice", online: true, last_seen: None },
            EntryRef { id: 2, username: "bob", online: false, last_seen: Some(1795999999123) },
            EntryRef { id: 3, username: "carol", online: false, last_seen: None },
        ];
        let body = snapshot_body(7, (0, 2, "a"), &counts, users[..2].iter().copied());
        let json = snapshot_json(0, 1796000000000, &body);
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"type":"snapshot","view":0,"now":1796000000000,"seq":7,"offset":0,"limit":2,"q":"a","total":3,"online_count":1,"registered_count":3,"users":[{"id":1,"username":"al\"ice","online":true},{"id":2,"username":"bob","online":false,"last_seen":1795999999123}]}"#
        );
        let mut view = PageView::default();
        assert_eq!(view.apply_text(&json), Ok(true));
        let ops = [OpRef::Remove(1), OpRef::Insert(0, users[2]), OpRef::Update(1, users[1])];
        let diff = diff_json(8, &ops, &counts);
        assert_eq!(
            std::str::from_utf8(&diff).unwrap(),
            r#"{"type":"diff","seq":8,"ops":[{"op":"remove","at":1},{"op":"insert","at":0,"user":{"id":3,"username":"carol","online":false,"last_seen":null}},{"op":"update","at":1,"user":{"id":2,"username":"bob","online":false,"last_seen":1795999999123}}],"total":3,"online_count":1,"registered_count":3}"#
        );
        assert_eq!(view.apply_text(&diff), Ok(true));
        assert_eq!(view.usernames(), ["carol", "bob"]);
        assert_eq!(view.apply_text(&diff), Err(ViewGap::Seq { expected: 9, got: 8 }), "a repeated seq is a gap");
        let mut view = PageView::default();
        assert_eq!(view.apply_text(&diff), Ok(false), "a diff before the snapshot is ignored");
        assert_eq!(
            parse_view_frame(&error_json(4, "limit must be a whole number from 1 to 1000")).unwrap(),
            ViewFrame::Error { view: 4, error: "limit must be a whole number from 1 to 1000".into() }
        );
    }

    /// Seen while writing the `roster_v1_client` fuzz target: a snapshot with seq u64::MAX
    /// made the next diff's seq check overflow (a panic in debug builds).
    #[test]
    fn a_snapshot_at_the_last_seq_makes_the_next_diff_a_gap() {
        let mut view = PageView::default();
        let body = snapshot_body(u64::MAX, (0, 5, ""), &ViewCounts::default(), std::iter::empty());
        assert_eq!(view.apply_text(&snapshot_json(0, 0, &body)), Ok(true));
        let diff = diff_json(0, &[], &ViewCounts::default());
        assert_eq!(view.apply_text(&diff), Err(ViewGap::Seq { expected: 0, got: 0 }));
        assert!(!view.live);
    }

    #[test]
    fn a_broken_stream_is_a_gap_not_a_panic() {
        let mut view = PageView::default();
        let body = snapshot_body(1, (0, 5, ""), &ViewCounts::default(), std::iter::empty());
        view.apply_text(&snapshot_json(0, 0, &body)).unwrap();
        let diff = diff_json(2, &[OpRef::Remove(3)], &ViewCounts::default());
        assert_eq!(view.apply_text(&diff), Err(ViewGap::Position(3)));
        assert!(view.apply_text(b"{]").is_err());
    }
}
