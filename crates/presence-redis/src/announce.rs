//! Account events told to a cluster by a process that is not a node (the CLI): one connection,
//! one `account` script call (numbered, published, counted like a node's), no membership.

use std::time::Duration;

use presence::event::Change;

use crate::config::{redact_url, valid_prefix};
use crate::keys::Keys;
use crate::scripts::{AccountOp, Scripts};

/// How long an announcement may take (connecting included).
const ANNOUNCE_WAIT: Duration = Duration::from_secs(5);

/// Why an announcement failed. Never shows the URL's password.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("invalid redis url ({0})")]
    Url(String),
    #[error("invalid key prefix {0:?}")]
    Prefix(String),
    #[error("redis at {0} did not take the announcement: {1}")]
    Redis(String, String),
}

/// Tells every node of the cluster at `url` (keys under `key_prefix`) about `changes`: account
/// events only (sign-ups, deletions, closed sessions and users); presence changes are ignored.
/// Returns once Redis has published them.
pub async fn announce(url: &str, key_prefix: &str, changes: &[Change]) -> Result<(), AnnounceError> {
    if !valid_prefix(key_prefix) {
        return Err(AnnounceError::Prefix(key_prefix.to_owned()));
    }
    let ops: Vec<AccountOp> = changes.iter().enumerate().filter_map(|(i, c)| AccountOp::of(i as u64 + 1, c)).collect();
    if ops.is_empty() {
        return Ok(());
    }
    let failed = |e: String| AnnounceError::Redis(redact_url(url), e);
    let client = redis::Client::open(url).map_err(|e| AnnounceError::Url(redact_url(&e.to_string())))?;
    let keys = Keys::new(key_prefix);
    let scripts = Scripts::default();
    // A fresh nonce: these op numbers start at 1 and must not meet another writer's mark.
    let nonce = format!("announce-{:016x}", fastrand::u64(..));
    let run = async {
        let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| failed(e.to_string()))?;
        scripts.account(&keys, &mut conn, &nonce, &ops).await.map_err(|e| failed(format!("{e:?}")))
    };
    tokio::time::timeout(ANNOUNCE_WAIT, run).await.map_err(|_| failed(format!("no answer within {ANNOUNCE_WAIT:?}")))?
}
