//! A process that is not a node (the CLI) tells the cluster about account events: every node
//! hears them in order, numbered like any node's, and the registered count follows.

use std::time::Duration;

use presence::event::{Change, Event, SessionKey};
use presence::layer::conformance::Probe;
use presence::UserRef;
use presence_redis::{announce, redact_url, AnnounceError};

use crate::support::{node, RedisServer, PREFIX};

const SOON: Duration = Duration::from_secs(5);

#[tokio::test]
async fn account_events_from_outside_reach_every_node() {
    let server = RedisServer::start();
    let mut a = Probe::join("a", node(&server, "a"), 10).await;
    let mut b = Probe::join("b", node(&server, "b"), 10).await;
    let key = SessionKey::from("feedbeef");
    let changes = vec![
        Change::Up(UserRef::new(1, "ignored")), // presence is a node's business: skipped
        Change::CloseSession(key.clone()),
        Change::SignedUp(UserRef::new(11, "newcomer")),
        Change::CloseUser(5),
    ];
    announce(&server.url(), PREFIX, &changes).await.expect("announced");
    for p in [&mut a, &mut b] {
        p.expect(&Event::SessionClosed(key.clone()), SOON).await;
        p.expect(&Event::SignedUp(UserRef::new(11, "newcomer")), SOON).await;
        p.expect(&Event::UserClosed(5), SOON).await;
        assert_eq!(p.registered, Some(11));
    }
    // Twice is twice (a fresh mark per announcement), and nothing is a no-op.
    announce(&server.url(), PREFIX, &[Change::Deleted(11)]).await.expect("announced");
    announce(&server.url(), PREFIX, &[]).await.expect("nothing to say");
    b.expect(&Event::Deleted(11), SOON).await;
    assert_eq!(b.registered, Some(10));
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_without_the_password() {
    let server = RedisServer::reserve(); // nothing listens on its port
    let url = format!("redis://:hunter2@127.0.0.1:{}/", server.port());
    let err = announce(&url, PREFIX, &[Change::CloseUser(1)]).await.expect_err("nothing listens");
    let text = err.to_string();
    assert!(matches!(err, AnnounceError::Redis(..)), "{err:?}");
    assert!(!text.contains("hunter2") && text.contains(&redact_url(&url)), "{text}");
}
