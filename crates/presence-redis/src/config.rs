//! [`RedisLayerConfig`], what the server hands the Redis layer, and the timings derived from it.
//!
//! Plain data: no I/O. The URL may carry a password: `Debug` and every log line show it
//! redacted ([`redact_url`]).

use std::fmt;
use std::time::Duration;

use presence::layer::LayerConfig;

/// How to reach Redis and how this node takes part.
#[derive(Clone)]
pub struct RedisLayerConfig {
    /// `redis://[user:password@]host:port[/db][?protocol=resp3]`. Never logged as given.
    pub url: String,
    /// The first part of every key (`<prefix>:{r0}:...`), so several clusters can share one
    /// Redis. Letters, digits and `-_.:` only.
    pub key_prefix: String,
    /// This node's name, kept beside its incarnation for whoever inspects Redis.
    pub node_name: String,
    pub layer: LayerConfig,
}

impl fmt::Debug for RedisLayerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLayerConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("node_name", &self.node_name)
            .field("layer", &self.layer)
            .finish()
    }
}

/// The URL with any user and password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redis url>".to_owned();
    };
    // The last '@' anywhere: a password may hold '/', '?' or '#' (over-redacting is harmless).
    match rest.rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// A key prefix is short and plain: no hash-tag braces, no spaces.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 64
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Users (or changes) per script call: bounds the time Redis spends in one script.
pub(crate) const BATCH: usize = 500;
/// Account events queued while Redis is unreachable; beyond it new ones are dropped (counted,
/// logged): see the crate docs' lag policy.
pub(crate) const ACCOUNT_QUEUE: usize = 10_000;
/// Time to open a connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff: from this, doubling, jittered.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A leaving node waits at most this long to flush its changes, and again to hear the Offlines
/// its leave caused.
pub(crate) const LEAVE_WAIT: Duration = Duration::from_secs(2);

/// The timings the layer runs on, derived from the lease.
#[derive(Clone, Debug)]
pub(crate) struct Timings {
    pub grace_ms: u64,
    pub lease_ms: u64,
    /// Lease renewals: a third of the lease, so two may be lost before it lapses.
    pub heartbeat: Duration,
    /// How long the subscriber may lag behind the sequence a heartbeat saw before it is taken
    /// for deaf and reconnected.
    pub quiet: Duration,
    /// A command without a reply for this long counts as a lost connection.
    pub response: Duration,
}

impl Timings {
    pub fn new(layer: &LayerConfig) -> Timings {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let lease = layer.lease.max(Duration::from_millis(300));
        Timings {
            grace_ms: ms(layer.grace),
            lease_ms: ms(lease),
            heartbeat: lease / 3,
            quiet: (lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(1)),
            response: (lease / 2).clamp(Duration::from_millis(500), Duration::from_secs(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://:s3cret@127.0.0.1:6379/0"), "redis://***@127.0.0.1:6379/0");
        assert_eq!(redact_url("redis://user:p@ss@host:1?protocol=resp3"), "redis://***@host:1?protocol=resp3");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact_url("redis://:pa/ss?@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("garbage s3cret"), "<redis url>");
        let config = RedisLayerConfig {
            url: "redis://u:hunter2@h:1".into(),
            key_prefix: "roster".into(),
            node_name: "a".into(),
            layer: LayerConfig::default(),
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn prefixes_are_plain() {
        assert!(valid_prefix("roster"));
        assert!(valid_prefix("roster-test:v1"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("a{b}"));
        assert!(!valid_prefix("a b"));
    }
}
