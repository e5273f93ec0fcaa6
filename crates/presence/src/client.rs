//! The client side of the tutorial and `roster.v1` protocols, in Rust: how a client reads the
//! server's frames and keeps its copy of who is online. The load generator (`roster-bench`)
//! reads frames with it, the protocol property tests (`tests/protocol`) check it against the
//! hub, and the fuzz target `roster_v1_client` feeds it hostile frames. (A `roster.v2` window is
//! [`crate::protocol::views::PageView`].)
//!
//! - [`Frame`]: a lenient parse of any tutorial or `roster.v1` frame that borrows its names
//!   (unknown fields ignored: cheap enough for 15,000 sockets), and [`Frame::parsed`], the
//!   transitions it carries.
//! - [`Sequence`]: the `seq` rule of `roster.v1`: a diff must be the one after the newest frame.
//! - [`ClientView`]: a `roster.v1` client's copy of the online list. A snapshot, then the diffs
//!   in order; a diff that is not the next one is a gap: the view says it is out of sync (the
//!   client reconnects for a fresh snapshot) and applies nothing until that snapshot. Duplicates
//!   and frames older than the view are ignored. It is never silently wrong: while
//!   [`ClientView::in_sync`], it equals the server's list at [`ClientView::seq`].
//! - [`TutorialView`]: a tutorial client's map of users, last frame wins (the tutorial has no
//!   `seq`; the server sends frames in order and closes a client that falls behind with 1013).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::protocol::{parse_server_frame, ServerFrame, TutorialFrame};
use crate::UserId;

/// A user in a [`Frame`]'s lists: only the name is read.
#[derive(Debug, Deserialize)]
pub struct User<'a> {
    #[serde(borrow)]
    pub username: Cow<'a, str>,
}

/// Any frame of the tutorial or `roster.v1` protocol (unknown fields ignored).
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    #[serde(borrow, default)]
    pub username: Option<Cow<'a, str>>,
    #[serde(default)]
    pub is_logged_in: Option<bool>,
    #[serde(rename = "type", borrow, default)]
    pub ty: Option<Cow<'a, str>>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(borrow, default)]
    pub online: Option<Vec<User<'a>>>,
    #[serde(borrow, default)]
    pub offline: Option<Vec<User<'a>>>,
    /// `roster.v1`: the counts every snapshot and diff carries.
    #[serde(default)]
    pub online_count: Option<u64>,
    #[serde(default)]
    pub registered_count: Option<u64>,
}

/// One presence transition carried by a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition<'a> {
    pub username: &'a str,
    pub online: bool,
}

/// What a [`Frame`] says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A `roster.v1` snapshot: the full online list.
    Snapshot {
        seq: u64,
        online: Vec<&'a str>,
    },
    /// A tutorial frame or a `roster.v1` diff (which has a `seq`).
    Changes {
        seq: Option<u64>,
        changes: Vec<Transition<'a>>,
    },
    Other,
}

impl<'a> Frame<'a> {
    /// Parses a frame's text.
    pub fn parse(text: &'a str) -> Result<Frame<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn parsed(&'a self) -> Parsed<'a> {
        match self.ty.as_deref() {
            Some("snapshot") => Parsed::Snapshot {
                seq: self.seq.unwrap_or(0),
                online: self.online.iter().flatten().map(|u| u.username.as_ref()).collect(),
            },
            Some("diff") => {
                let online = self.online.iter().flatten().map(|u| Transition { username: &u.username, online: true });
                let offline =
                    self.offline.iter().flatten().map(|u| Transition { username: &u.username, online: false });
                Parsed::Changes { seq: self.seq, changes: online.chain(offline).collect() }
            }
            Some(_) => Parsed::Other,
            None => match (&self.username, self.is_logged_in) {
                (Some(u), Some(b)) => {
                    Parsed::Changes { seq: None, changes: vec![Transition { username: u, online: b }] }
                }
                _ => Parsed::Other,
            },
        }
    }
}

/// Why a frame was not the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqError {
    /// A diff before any snapshot.
    NoSnapshot,
    /// A diff at or before the newest `seq` seen (a duplicate or a late frame): nothing new.
    Stale { newest: u64, got: u64 },
    /// A diff after the next one: some were missed.
    Gap { expected: u64, got: u64 },
}

impl std::fmt::Display for SeqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeqError::NoSnapshot => f.write_str("a diff before any snapshot"),
            SeqError::Stale { newest, got } => write!(f, "seq {got} is not after {newest}"),
            SeqError::Gap { expected, got } => write!(f, "expected seq {expected}, got {got}"),
        }
    }
}

impl std::error::Error for SeqError {}

/// The `seq` numbers of one `roster.v1` stream: the newest one seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sequence {
    newest: Option<u64>,
}

impl Sequence {
    /// The newest `seq` seen, if any.
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// A snapshot numbered `seq`: diffs continue from it.
    pub fn snapshot(&mut self, seq: u64) {
        self.newest = Some(seq);
    }

    /// A diff numbered `seq`: `Ok` if it is the one after the newest. A gap still counts as seen
    /// (the server is at least there); a stale diff does not move the newest back.
    pub fn diff(&mut self, seq: u64) -> Result<(), SeqError> {
        let newest = self.newest.ok_or(SeqError::NoSnapshot)?;
        if seq <= newest {
            return Err(SeqError::Stale { newest, got: seq });
        }
        self.newest = Some(seq);
        // `seq > newest`, so `newest + 1` cannot overflow.
        if seq == newest + 1 {
            Ok(())
        } else {
            Err(SeqError::Gap { expected: newest + 1, got: seq })
        }
    }
}

/// Why [`ClientView::apply_text`] took nothing from a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Not a `roster.v1` frame: the stream is broken (the client reconnects).
    Malformed(String),
    /// Out of order (see [`SeqError`]).
    Seq(SeqError),
}

/// A `roster.v1` client's copy of the online list (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientView {
    seq: Sequence,
    in_sync: bool,
    /// Who is online, by id.
    pub online: BTreeMap<UserId, Arc<str>>,
    pub online_count: u64,
    pub registered_count: u64,
    pub snapshots: u64,
    pub diffs: u64,
}

impl ClientView {
    /// Whether the view equals the server's list at [`Self::seq`]: a snapshot arrived and no
    /// diff since was missed. After a gap it stays out of sync until the next snapshot.
    pub fn in_sync(&self) -> bool {
        self.in_sync
    }

    /// The `seq` of the newest frame applied or seen.
    pub fn seq(&self) -> Option<u64> {
        self.seq.newest()
    }

    /// Applies one frame. `Ok(true)` if the view changed, `Ok(false)` if the frame was old news
    /// (a duplicate, a snapshot older than the view, a diff while out of sync), `Err` on a gap
    /// (the view is out of sync from then on: reconnect for a snapshot).
    pub fn apply(&mut self, frame: &ServerFrame) -> Result<bool, SeqError> {
        match frame {
            ServerFrame::Snapshot(s) => {
                if self.seq.newest().is_some_and(|newest| s.seq < newest) {
                    return Ok(false);
                }
                self.seq.snapshot(s.seq);
                self.in_sync = true;
                self.online = s.online.iter().map(|u| (u.id, u.username.clone())).collect();
                self.online_count = s.online_count;
                self.registered_count = s.registered_count;
                self.snapshots += 1;
                Ok(true)
            }
            ServerFrame::Diff(d) => {
                match self.seq.diff(d.seq) {
                    Ok(()) if self.in_sync => {}
                    Ok(()) | Err(SeqError::Stale { .. }) => return Ok(false),
                    Err(e) => {
                        self.in_sync = false;
                        return Err(e);
                    }
                }
                for u in &d.offline {
                    self.online.remove(&u.id);
                }
                for u in &d.online {
                    self.online.insert(u.id, u.username.clone());
                }
                for id in &d.deleted {
                    self.online.remove(id);
                }
                self.online_count = d.online_count;
                self.registered_count = d.registered_count;
                self.diffs += 1;
                Ok(true)
            }
        }
    }

    /// Parses and applies a frame's text. A frame that does not parse puts the view out of sync.
    pub fn apply_text(&mut self, text: &[u8]) -> Result<bool, ClientError> {
        match parse_server_frame(text) {
            Ok(frame) => self.apply(&frame).map_err(ClientError::Seq),
            Err(e) => {
                self.in_sync = false;
                Err(ClientError::Malformed(e.to_string()))
            }
        }
    }
}

/// A tutorial client's map: every user it heard about, and whether they are online (the last
/// frame about them wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TutorialView {
    pub users: BTreeMap<String, bool>,
}

impl TutorialView {
    /// Applies one tutorial frame's text; `Err` if it is not one.
    pub fn apply_text(&mut self, text: &[u8]) -> Result<(), serde_json::Error> {
        let frame: TutorialFrame<'_> = serde_json::from_slice(text)?;
        self.users.insert(frame.username.into_owned(), frame.is_logged_in);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Diff, OfflineUser, Snapshot};
    use crate::UserRef;

    fn snapshot(seq: u64, online: &[i64]) -> ServerFrame {
        let online: Vec<UserRef> = online.iter().map(|&id| UserRef::new(id, format!("u{id}"))).collect();
        let n = online.len() as u64;
        ServerFrame::Snapshot(Snapshot { seq, online, online_count: n, registered_count: 10 })
    }

    fn diff(seq: u64, on: &[i64], off: &[i64]) -> ServerFrame {
        ServerFrame::Diff(Diff {
            seq,
            online: on.iter().map(|&id| UserRef::new(id, format!("u{id}"))).collect(),
            offline: off
                .iter()
                .map(|&id| OfflineUser { id, username: format!("u{id}").into(), last_seen: 1 })
                .collect(),
            ..Diff::default()
        })
    }

    fn ids(v: &ClientView) -> Vec<i64> {
        v.online.keys().copied().collect()
    }

    #[test]
    fn sequence_tells_next_stale_and_gap_apart() {
        let mut s = Sequence::default();
        assert_eq!(s.diff(1), Err(SeqError::NoSnapshot));
        s.snapshot(5);
        assert_eq!(s.diff(6), Ok(()));
        assert_eq!(s.diff(6), Err(SeqError::Stale { newest: 6, got: 6 }));
        assert_eq!(s.diff(9), Err(SeqError::Gap { expected: 7, got: 9 }));
        assert_eq!(s.newest(), Some(9));
        s.snapshot(u64::MAX);
        assert_eq!(s.diff(u64::MAX), Err(SeqError::Stale { newest: u64::MAX, got: u64::MAX }), "no overflow");
    }

    #[test]
    fn a_gap_puts_the_view_out_of_sync_until_a_snapshot() {
        let mut v = ClientView::default();
        assert_eq!(v.apply(&diff(1, &[1], &[])), Err(SeqError::NoSnapshot));
        assert_eq!(v.apply(&snapshot(3, &[1, 2])), Ok(true));
        assert_eq!(v.apply(&diff(4, &[3], &[1])), Ok(true));
        assert_eq!(ids(&v), [2, 3]);
        assert_eq!(v.apply(&diff(4, &[3], &[1])), Ok(false), "a duplicate is old news");
        assert_eq!(v.apply(&snapshot(3, &[1, 2])), Ok(false), "an older snapshot is old news");
        assert_eq!(v.apply(&diff(6, &[4], &[])), Err(SeqError::Gap { expected: 5, got: 6 }));
        assert!(!v.in_sync());
        assert_eq!(v.apply(&diff(7, &[5], &[])), Ok(false), "nothing applies out of sync");
        assert_eq!(v.apply(&snapshot(6, &[9])), Ok(false), "a snapshot older than a diff seen");
        assert_eq!(v.apply(&snapshot(7, &[2, 3, 4, 5])), Ok(true));
        assert!(v.in_sync());
        assert_eq!(ids(&v), [2, 3, 4, 5]);
        assert!(matches!(v.apply_text(b"{]"), Err(ClientError::Malformed(_))));
        assert!(!v.in_sync());
    }

    #[test]
    fn frames_of_both_protocols_parse_leniently() {
        let f = Frame::parse(
            r#"{"type":"diff","seq":4,"online":[{"id":1,"username":"a"}],"offline":[{"username":"b","x":1}]}"#,
        )
        .expect("diff");
        let want = vec![Transition { username: "a", online: true }, Transition { username: "b", online: false }];
        assert_eq!(f.parsed(), Parsed::Changes { seq: Some(4), changes: want });
        let f = Frame::parse(r#"{"username":"a","is_logged_in":false}"#).expect("tutorial");
        assert_eq!(
            f.parsed(),
            Parsed::Changes { seq: None, changes: vec![Transition { username: "a", online: false }] }
        );
        let f = Frame::parse(r#"{"type":"snapshot","online":[{"username":"c"}]}"#).expect("snapshot");
        assert_eq!(f.parsed(), Parsed::Snapshot { seq: 0, online: vec!["c"] });
        assert_eq!(Frame::parse(r#"{"type":"pong"}"#).expect("other").parsed(), Parsed::Other);
        let mut t = TutorialView::default();
        t.apply_text(br#"{"username":"a","is_logged_in":true}"#).expect("tutorial");
        t.apply_text(br#"{"username":"a","is_logged_in":false}"#).expect("tutorial");
        assert_eq!(t.users.get("a"), Some(&false));
        assert!(t.apply_text(b"{}").is_err());
    }
}
