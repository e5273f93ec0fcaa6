//! Behind a reverse proxy: `--trusted-proxies` decides whose `X-Forwarded-For` / `Forwarded`
//! headers name the client. From a trusted proxy they do (log lines and the log-in throttle see
//! the real client); from anyone else they are ignored (a forged header buys nothing).

use reqwest::StatusCode;

use crate::helpers::*;

/// The access-log line of the request to `path` (each test uses paths of its own).
fn log_line(server: &TestServer, path: &str) -> String {
    let needle = format!("HTTP GET {path} ");
    server.logs().lines().find(|l| l.contains(&needle)).map(str::to_owned).unwrap_or_default()
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let server = TestServer::start_with(&["--trusted-proxies", "127.0.0.1", "--login-limit", "2"]).await;
    let proxy = server.browser_from("127.0.0.1");
    let elsewhere = server.browser_from("127.0.0.2");

    // From the trusted proxy, the forwarded address is the client's.
    let r = proxy.client.get(server.url("/probe-xff")).header("x-forwarded-for", "203.0.113.7").send().await;
    assert_eq!(r.expect("GET").status(), StatusCode::NOT_FOUND);
    server.wait_for_log("HTTP GET /probe-xff 404").await;
    assert!(log_line(&server, "/probe-xff").ends_with(", 203.0.113.7]"), "{}", server.logs());
    let r = proxy.client.get(server.url("/probe-fwd")).header("forwarded", r#"for="[2001:db8::7]:4711""#).send().await;
    assert_eq!(r.expect("GET").status(), StatusCode::NOT_FOUND);
    server.wait_for_log("HTTP GET /probe-fwd 404").await;
    assert!(log_line(&server, "/probe-fwd").ends_with(", 2001:db8::7]"), "{}", server.logs());

    // From anyone else, the headers are ignored: the log shows the TCP peer.
    let r = elsewhere.client.get(server.url("/probe-direct")).header("x-forwarded-for", "198.51.100.9").send().await;
    assert_eq!(r.expect("GET").status(), StatusCode::NOT_FOUND);
    server.wait_for_log("HTTP GET /probe-direct 404").await;
    let line = log_line(&server, "/probe-direct");
    assert!(line.contains(", 127.0.0.2:") && !line.contains("198.51.100.9"), "{line}");

    // Through the proxy, one client's failures do not throttle another client.
    for name in ["pat", "quinn", "rosa"] {
        assert_eq!(sign_up(&server, &proxy.client, name, GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    }
    for _ in 0..2 {
        let r = log_in_via(&server, &proxy, "pat", "wrong-Password-1", Some("203.0.113.7")).await;
        assert_eq!(r, StatusCode::OK);
    }
    let r = log_in_via(&server, &proxy, "pat", "wrong-Password-1", Some("203.0.113.7")).await;
    assert_eq!(r, StatusCode::TOO_MANY_REQUESTS, "the guessing client is throttled");
    let other = server.browser_from("127.0.0.1");
    let r = log_in_via(&server, &other, "quinn", GOOD_PASSWORD, Some("203.0.113.8")).await;
    assert_eq!(r, StatusCode::FOUND, "another client behind the same proxy logs in");

    // A client that forges the header (not from a trusted proxy) cannot shed its own failures.
    for forged in ["192.0.2.1", "192.0.2.2"] {
        let r = log_in_via(&server, &elsewhere, "rosa", "wrong-Password-1", Some(forged)).await;
        assert_eq!(r, StatusCode::OK);
    }
    let r = log_in_via(&server, &elsewhere, "rosa", GOOD_PASSWORD, Some("192.0.2.3")).await;
    assert_eq!(r, StatusCode::TOO_MANY_REQUESTS, "the forged addresses were ignored");
}

/// A form log in as `b`, with an `X-Forwarded-For` header on both requests when given.
async fn log_in_via(server: &TestServer, b: &Browser, user: &str, password: &str, xff: Option<&str>) -> StatusCode {
    let with = |r: reqwest::RequestBuilder| match xff {
        Some(v) => r.header("x-forwarded-for", v),
        None => r,
    };
    let page = with(b.client.get(server.url("/log_in/"))).send().await.expect("GET").text().await.expect("body");
    let token = csrf_from(&page);
    let fields = [("csrfmiddlewaretoken", token.as_str()), ("username", user), ("password", password)];
    with(b.client.post(server.url("/log_in/"))).form(&fields).send().await.expect("POST").status()
}
