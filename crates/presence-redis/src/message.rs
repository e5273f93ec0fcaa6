//! Reads the events the scripts publish: `"<seq> <kind> <fields>"`, the last field running to
//! the end (names and session keys may hold spaces or any byte):
//! `on <user> <name>`, `off <user> <last_seen> <name>`, `signup <user> <name>`, `del <user>`,
//! `sess <key>`, `user <user>`.
//!
//! Pure. The encoding side lives in the scripts (`lua/prelude.lua`'s `emit`).

use presence::event::Event;
use presence::{SessionKey, UserRef};

/// The sequence number and event of a message, or `None` if it is not one of ours.
pub(crate) fn parse(payload: &[u8]) -> Option<(u64, Event)> {
    let (seq, rest) = field(payload)?;
    let seq: u64 = number(seq)?;
    let (kind, rest) = field(rest)?;
    let event = match kind {
        b"on" => {
            let (id, name) = field(rest)?;
            Event::Online(user(id, name)?)
        }
        b"off" => {
            let (id, rest) = field(rest)?;
            let (seen, name) = field(rest)?;
            Event::Offline(user(id, name)?, number(seen)?)
        }
        b"signup" => {
            let (id, name) = field(rest)?;
            Event::SignedUp(user(id, name)?)
        }
        b"del" => Event::Deleted(number(rest)?),
        b"sess" => Event::SessionClosed(SessionKey::from(rest)),
        b"user" => Event::UserClosed(number(rest)?),
        _ => return None,
    };
    Some((seq, event))
}

/// Splits off the first space-separated field.
fn field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = s.iter().position(|&b| b == b' ')?;
    Some((&s[..at], &s[at + 1..]))
}

fn number<T: std::str::FromStr>(s: &[u8]) -> Option<T> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn user(id: &[u8], name: &[u8]) -> Option<UserRef> {
    Some(UserRef::new(number(id)?, String::from_utf8_lossy(name).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses() {
        assert_eq!(parse(b"7 on 12 ann lee"), Some((7, Event::Online(UserRef::new(12, "ann lee")))));
        assert_eq!(
            parse(b"8 off -3 1700000000123 bo"),
            Some((8, Event::Offline(UserRef::new(-3, "bo"), 1_700_000_000_123)))
        );
        assert_eq!(parse(b"9 signup 5 x y"), Some((9, Event::SignedUp(UserRef::new(5, "x y")))));
        assert_eq!(parse(b"10 del 5"), Some((10, Event::Deleted(5))));
        assert_eq!(parse(b"11 user 6"), Some((11, Event::UserClosed(6))));
        let key: &[u8] = b"a b\x00\xff";
        let mut msg = b"12 sess ".to_vec();
        msg.extend_from_slice(key);
        assert_eq!(parse(&msg), Some((12, Event::SessionClosed(SessionKey::from(key)))));
    }

    #[test]
    fn strangers_are_refused() {
        for bad in [&b""[..], b"x on 1 a", b"1 on x a", b"1 on 1", b"1 what 1", b"1 off 1 a b", b"1 del", b"-1 del 1"] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
