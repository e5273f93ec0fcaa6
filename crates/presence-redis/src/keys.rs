//! The names of the layer's keys and channel. Every one carries the same hash tag (`{r0}`), so
//! they live in one Redis Cluster slot and the scripts may touch them together; a later
//! sharding picks the tag per group of users (docs/decisions.md).
//!
//! Must not do I/O. The layout is documented in the crate docs; the scripts' `KEYS` order is
//! [`Keys::fixed`]'s, then one per-call key.

/// The shard's hash tag. One shard today.
const TAG: &str = "{r0}";

pub(crate) struct Keys {
    base: String,
    fixed: [String; 9],
    channel: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        let base = format!("{prefix}:{TAG}:");
        let k = |name: &str| format!("{base}{name}");
        Keys {
            fixed: [
                k("seq"),
                k("nodes"),
                k("count"),
                k("names"),
                k("grace"),
                k("lastdown"),
                k("registered"),
                k("info"),
                k("incarnations"),
            ],
            channel: k("events"),
            base,
        }
    }

    /// The keys every script gets as `KEYS[1..=9]`, in the order the scripts' prelude names them.
    pub fn fixed(&self) -> &[String; 9] {
        &self.fixed
    }

    /// The channel every event is published on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The SET of users an incarnation has up.
    pub fn node(&self, incarnation: &str) -> String {
        format!("{}node:{incarnation}", self.base)
    }

    /// A writer's mark of the last account event it applied.
    pub fn ops(&self, nonce: &str) -> String {
        format!("{}ops:{nonce}", self.base)
    }

    pub fn seq(&self) -> &str {
        &self.fixed[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_tag() {
        let keys = Keys::new("roster");
        assert_eq!(keys.seq(), "roster:{r0}:seq");
        assert_eq!(keys.node("7.ab"), "roster:{r0}:node:7.ab");
        for k in keys.fixed().iter().map(String::as_str).chain([keys.channel()]) {
            assert!(k.starts_with("roster:{r0}:"), "{k}");
        }
    }
}
