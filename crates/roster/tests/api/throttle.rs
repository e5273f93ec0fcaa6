//! Throttling: failed log-ins per (account, address) pair, per address across accounts, and a
//! per-account ceiling that slows instead of refusing; sign-ups per address; `Retry-After` on
//! every 429. Client addresses are loopback source addresses (127.0.0.2, 127.0.0.3, ...).

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};

use crate::helpers::*;

/// The `Retry-After` of a 429, in seconds (panics when missing or not a number).
fn retry_after(r: &Response) -> u64 {
    let v = r.headers().get("retry-after").unwrap_or_else(|| panic!("429 without Retry-After: {:?}", r.headers()));
    v.to_str().ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("Retry-After is not seconds: {v:?}"))
}

async fn sign_up_as(server: &TestServer, names: &[&str]) {
    let b = server.browser();
    for name in names {
        assert_eq!(sign_up(server, &b.client, name, GOOD_PASSWORD).await.status(), StatusCode::FOUND, "{name}");
    }
}

#[tokio::test]
async fn a_guesser_elsewhere_cannot_lock_the_owner_out() {
    let server = TestServer::start_with(&["--login-window", "10m"]).await;
    sign_up_as(&server, &["olivia", "oscar"]).await;
    let guesser = server.browser_from("127.0.0.2");
    for i in 0..5 {
        let r = log_in(&server, &guesser.client, "olivia", "wrong-Password-1").await;
        assert_eq!(r.status(), StatusCode::OK, "failure {i} is an ordinary form error");
    }
    let sixth = log_in(&server, &guesser.client, "olivia", "wrong-Password-1").await;

    // The owner, from another address, logs in at once.
    let owner = server.browser_from("127.0.0.3");
    let r = log_in(&server, &owner.client, "olivia", GOOD_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FOUND, "the owner is not locked out");

    // The sixth try from the guesser's address was refused, with when to come back.
    assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&sixth);
    assert!((1..=600).contains(&wait), "Retry-After {wait}");
    let html = sixth.text().await.expect("body");
    assert!(html.contains("Try again in 10 minutes."), "the form says when to try again: {html}");
    // And the guesser's address is not barred from other accounts by one account's failures.
    let r = log_in(&server, &guesser.client, "oscar", GOOD_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn a_guesser_spraying_accounts_is_throttled_per_address() {
    let server = TestServer::start_with(&["--login-address-limit", "4", "--login-window", "10m"]).await;
    sign_up_as(&server, &["petra", "paul"]).await;
    let guesser = server.browser_from("127.0.0.2");
    for name in ["petra", "paul", "nobody1", "nobody2"] {
        assert_eq!(log_in(&server, &guesser.client, name, "wrong-Password-1").await.status(), StatusCode::OK);
    }
    let r = log_in(&server, &guesser.client, "petra", GOOD_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the address has used up its failures");
    assert!(retry_after(&r) >= 1);
    let r = log_in(&server, &server.browser_from("127.0.0.3").client, "petra", GOOD_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FOUND, "other addresses are unaffected");
}

#[tokio::test]
async fn beyond_the_account_ceiling_failures_are_slowed_never_refused() {
    let server = TestServer::start_with(&["--login-account-limit", "3", "--login-window", "10m"]).await;
    sign_up_as(&server, &["quentin"]).await;
    // Three addresses fail once each: the account reaches its ceiling.
    for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let b = server.browser_from(source);
        assert_eq!(log_in(&server, &b.client, "quentin", "wrong-Password-1").await.status(), StatusCode::OK);
    }
    // An address that has failed on the account is slowed down, not refused.
    let again = server.browser_from("127.0.0.2");
    let token = csrf(&server, &again.client, "/log_in/").await;
    let started = Instant::now();
    let fields = [("csrfmiddlewaretoken", token.as_str()), ("username", "quentin"), ("password", "wrong-Password-2")];
    let r = post_form(&server, &again.client, "/log_in/", &fields).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_secs(2), "slowed: answered after {:?}", started.elapsed());
    // The owner gets in: from a fresh address, and from one that failed (slowly).
    let fresh = server.browser_from("127.0.0.9");
    assert_eq!(log_in(&server, &fresh.client, "quentin", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    assert_eq!(log_in(&server, &again.client, "quentin", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    assert!(server.logs().contains("failed log-ins on one account"), "the operator is told: {}", server.logs());
}

#[tokio::test]
async fn sign_ups_are_throttled_per_address() {
    let server = TestServer::start_with(&["--signup-limit", "2", "--signup-window", "1h"]).await;
    let a = server.browser_from("127.0.0.2");
    for name in ["s1", "s2"] {
        assert_eq!(sign_up(&server, &a.client, name, GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    }
    let r = sign_up(&server, &a.client, "s3", GOOD_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) > 3000, "about an hour: {}", retry_after(&r));
    let html = r.text().await.expect("body");
    assert!(html.contains("Try again in 60 minutes."), "{html}");
    assert!(server.store().await.user_by_key("s3").await.expect("q").is_none(), "nothing was created");
    let b = server.browser_from("127.0.0.3");
    assert_eq!(sign_up(&server, &b.client, "s3", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn too_many_open_pages_is_a_429_with_retry_after() {
    let server = TestServer::start_with(&["--max-sockets-per-user", "1"]).await;
    let alice = user_browser(&server, "alice").await;
    let _first = crate::ws_client::open(&server, Some(&alice), crate::ws_client::TUTORIAL).await.expect("socket");
    let r = alice
        .client
        .get(server.url("/users/"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("handshake");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
}
