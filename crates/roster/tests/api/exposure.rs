//! What real responses expose: the cookies' attributes under `--secure-cookies`, the security
//! headers on every page, escaping of echoed input, an over-long `Sec-WebSocket-Key`, and no
//! session id or CSRF secret in the server's log (docs/security.md, sections 8, 11, 12, 14, 15).

use reqwest::{Client, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

fn bare() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect()
}

fn cookie_line<'a>(cookies: &'a [String], name: &str) -> &'a str {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("a {name} cookie in {cookies:?}"))
}

/// Signs `name` up and logs them in over "HTTPS" (a `--secure-cookies` site: Origin required),
/// with raw cookie headers; returns the log-in response's `Set-Cookie` lines.
async fn log_in_securely(server: &TestServer, name: &str) -> (Vec<String>, Vec<String>) {
    let origin = format!("https://{}", server.addr);
    let client = bare();
    let r = client.get(server.url("/sign_up/")).send().await.expect("GET");
    let first = set_cookies(&r);
    let secret = cookie_from(&first, "csrftoken").expect("a CSRF cookie").to_owned();
    let token = csrf_from(&r.text().await.expect("body"));
    let fields = [("csrfmiddlewaretoken", token.as_str()), ("username", name), ("password1", GOOD_PASSWORD)];
    let r = client
        .post(server.url("/sign_up/"))
        .header("cookie", format!("csrftoken={secret}"))
        .header("origin", &origin)
        .form(&[fields[0], fields[1], fields[2], ("password2", GOOD_PASSWORD)])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FOUND, "signed up");
    let fields = [("csrfmiddlewaretoken", token.as_str()), ("username", name), ("password", GOOD_PASSWORD)];
    let r = client
        .post(server.url("/log_in/"))
        .header("cookie", format!("csrftoken={secret}"))
        .header("origin", &origin)
        .form(&fields)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FOUND, "logged in");
    (first, set_cookies(&r))
}

#[tokio::test]
async fn cookies_on_real_responses_carry_their_attributes_and_secure_with_secure_cookies() {
    let server = TestServer::start_with(&["--secure-cookies", "--session-ttl", "1h"]).await;
    let (first, after_log_in) = log_in_securely(&server, "alice").await;

    let csrf = attributes(cookie_line(&first, "csrftoken"));
    for a in ["path=/", "samesite=lax", "secure"] {
        assert!(csrf.iter().any(|x| x == a), "csrftoken has {a}: {csrf:?}");
    }
    let session = attributes(cookie_line(&after_log_in, "sessionid"));
    for a in ["path=/", "samesite=lax", "httponly", "secure", "max-age=3600"] {
        assert!(session.iter().any(|x| x == a), "sessionid has {a}: {session:?}");
    }

    // Without the flag, no cookie says Secure (plain HTTP would drop it).
    let plain = TestServer::start().await;
    let r = bare().get(plain.url("/log_in/")).send().await.expect("GET");
    let csrf = attributes(cookie_line(&set_cookies(&r), "csrftoken"));
    assert!(!csrf.iter().any(|x| x == "secure"), "no Secure over plain HTTP: {csrf:?}");
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let server = TestServer::start().await;
    let alice = user_client(&server, "alice").await;
    for path in ["/log_in/", "/sign_up/", "/", "/api/users/", "/no-such-page/"] {
        let r = alice.get(server.url(path)).send().await.expect("GET");
        let h = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("referrer-policy"), "same-origin", "{path}");
        assert_eq!(h("cross-origin-opener-policy"), "same-origin", "{path}");
        assert!(h("content-security-policy").contains("default-src"), "{path}: CSP {:?}", h("content-security-policy"));
    }
}

#[tokio::test]
async fn input_echoed_into_a_page_is_escaped() {
    let server = TestServer::start().await;
    let alice = user_client(&server, "alice").await;
    let probe = "<script>alert(1)</script>\"'";
    let url = reqwest::Url::parse_with_params(&server.url("/"), [("q", probe)]).expect("url");
    let r = alice.get(url).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.expect("body");
    assert!(!body.contains("<script>alert(1)"), "the search text is not echoed raw");
    // Askama escapes as numeric references: < > " ' become &#60; &#62; &#34; &#39;.
    let escaped = "&#60;script&#62;alert(1)&#60;/script&#62;&#34;&#39;";
    assert!(body.contains(&format!("value=\"{escaped}\"")), "echoed escaped in the search box");
}

/// A raw WebSocket handshake with `key`; the status line's code.
async fn handshake_status(server: &TestServer, cookie: &str, key: &str) -> String {
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let req = format!(
        "GET /users/ HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nOrigin: http://{a}\r\nCookie: {cookie}\r\n\r\n",
        a = server.addr
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    head.split(' ').nth(1).unwrap_or("").to_owned()
}

#[tokio::test]
async fn an_over_long_websocket_key_is_refused() {
    let server = TestServer::start().await;
    let alice = user_browser(&server, "alice").await;
    let cookie = alice.cookie_header();
    assert_eq!(handshake_status(&server, &cookie, "dGhlIHNhbXBsZSBub25jZQ==").await, "101", "a valid key upgrades");
    assert_eq!(handshake_status(&server, &cookie, &"A".repeat(65)).await, "400", "65 bytes are refused");
}

#[tokio::test]
async fn the_log_holds_no_session_id_and_no_csrf_secret() {
    let server = TestServer::start().await;
    let alice = user_browser(&server, "alice").await;
    let cookies = alice.cookie_header();
    let value = |name: &str| {
        cookies
            .split("; ")
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {cookies}"))
            .to_owned()
    };
    let (session, secret) = (value("sessionid"), value("csrftoken"));
    // Use the session for a page, a socket and a log out, so every path that sees it runs.
    assert_eq!(alice.client.get(server.url("/")).send().await.expect("GET").status(), StatusCode::OK);
    let ws = crate::ws_client::open(&server, Some(&alice), crate::ws_client::V1).await.expect("socket");
    let token = csrf(&server, &alice.client, "/log_out/").await;
    let r = post_form(&server, &alice.client, "/log_out/", &[("csrfmiddlewaretoken", &token)]).await;
    assert_eq!(r.status(), StatusCode::FOUND, "logged out");
    drop(ws);
    server.wait_for_log("/log_out/").await;
    let logs = server.logs();
    assert!(!logs.contains(&session), "the session id is not logged");
    assert!(!logs.contains(&secret), "the CSRF secret is not logged");
    assert!(!logs.contains(&token), "the masked CSRF token is not logged");
}
