//! A socket lives only as long as its session: a session ended in another process (the CLI) or
//! by expiry closes its sockets (4001), and the account's owner is not left without pages.

use reqwest::StatusCode;

use crate::helpers::*;
use crate::ws_client::*;

const NEW_PASSWORD: &str = "another-Secret-42";

#[tokio::test]
async fn set_password_in_another_process_closes_the_old_sessions_sockets() {
    let server = TestServer::start_with(&["--max-sockets-per-user", "4"]).await;
    // A stolen session holding every page the account may open.
    let thief = user_browser(&server, "victor").await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(open(&server, Some(&thief), TUTORIAL).await.expect("socket with the stolen session"));
    }

    let out = server.cli(&["user", "set-password", "victor"], &format!("{NEW_PASSWORD}\n")).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for ws in &mut sockets {
        assert_eq!(close_code(ws).await, Some(4001), "the old session's socket is closed as logged out");
    }
    assert_eq!(open(&server, Some(&thief), TUTORIAL).await.err(), Some(403), "the old cookie opens nothing");

    // The owner logs in with the new password and gets their page (no "too many open pages").
    let owner = server.browser_from("127.0.0.2");
    assert_eq!(log_in(&server, &owner.client, "victor", NEW_PASSWORD).await.status(), StatusCode::FOUND);
    let mut page = open(&server, Some(&owner), TUTORIAL).await.expect("the owner's page opens");
    assert_eq!(next_json(&mut page).await, Some(tutorial_frame("victor", true)));
}

#[tokio::test]
async fn a_socket_closes_when_its_session_expires() {
    let server = TestServer::start_with(&["--session-ttl", "3s"]).await;
    let wendy = user_browser(&server, "wendy").await;
    let mut ws = open(&server, Some(&wendy), TUTORIAL).await.expect("socket");
    assert_eq!(next_json(&mut ws).await, Some(tutorial_frame("wendy", true)));
    assert_eq!(close_code(&mut ws).await, Some(4001), "closed once the session expired");
    let r = wendy.client.get(server.url("/")).send().await.expect("GET /");
    assert_eq!(r.status(), StatusCode::FOUND, "the expired session no longer opens the list");
}
