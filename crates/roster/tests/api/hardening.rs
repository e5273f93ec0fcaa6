//! The low-severity findings, each with its own test: caching of authenticated pages, HSTS,
//! cookies next to a non-ASCII byte, CSRF on HTTPS (Origin or Referer, scheme compared), and
//! `--allowed-origins` for form posts.

use reqwest::header::HeaderValue;
use reqwest::{Client, StatusCode};

use crate::helpers::*;

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn authenticated_responses_are_not_cached_and_vary_on_cookie() {
    let server = TestServer::start().await;
    let alice = user_client(&server, "alice").await;
    for path in ["/", "/api/users/", "/api/users/?page=1", "/log_out/"] {
        let r = alice.get(server.url(path)).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&r, "cache-control"), "no-store, private", "{path}");
        let vary = header(&r, "vary").to_ascii_lowercase();
        assert!(vary.split(',').any(|v| v.trim() == "cookie"), "{path}: Vary {vary:?}");
    }
    // Static assets stay cacheable.
    let page = alice.get(server.url("/")).send().await.expect("GET").text().await.expect("body");
    let css = page.split("href=\"").find_map(|s| s.split('"').next().filter(|u| u.starts_with("/static/")));
    let r = alice.get(server.url(css.expect("a stylesheet"))).send().await.expect("GET");
    assert!(header(&r, "cache-control").contains("immutable"));
}

#[tokio::test]
async fn hsts_is_sent_for_https_sites_only() {
    let plain = TestServer::start_with(&["--trusted-proxies", "127.0.0.1"]).await;
    let client = Client::new();
    let r = client.get(plain.url("/healthz")).send().await.expect("GET");
    assert_eq!(header(&r, "strict-transport-security"), "", "not over plain HTTP");
    let r = client.get(plain.url("/healthz")).header("x-forwarded-proto", "https").send().await.expect("GET");
    assert_eq!(header(&r, "strict-transport-security"), "max-age=31536000", "HTTPS through a trusted proxy");

    let secure = TestServer::start_with(&["--secure-cookies"]).await;
    let r = client.get(secure.url("/log_in/")).send().await.expect("GET");
    assert_eq!(header(&r, "strict-transport-security"), "max-age=31536000");
}

#[tokio::test]
async fn a_non_ascii_byte_in_the_cookie_header_hides_no_cookie() {
    let server = TestServer::start().await;
    let alice = user_browser(&server, "alice").await;
    let mut cookies = b"theme=caf\xe9; ".to_vec();
    cookies.extend_from_slice(alice.cookie_header().as_bytes());
    cookies.extend_from_slice(b"; tracker=\xff\xfe");
    let raw = HeaderValue::from_bytes(&cookies).expect("obs-text is a valid header value");
    let bare = Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = bare.get(server.url("/")).header("cookie", raw.clone()).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK, "sessionid is still found");

    // The CSRF cookie is found too: a form post with it passes the check.
    let page = r.text().await.expect("body");
    let token = csrf_from(&page);
    let r = bare
        .post(server.url("/log_out/"))
        .header("cookie", raw)
        .form(&[("csrfmiddlewaretoken", token.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FOUND, "log out went through");
}

/// A log-in attempt (wrong password) with its own cookie header and extra headers: 200 when
/// CSRF passed (the form's error), 403 when it did not.
async fn csrf_outcome(server: &TestServer, extra: &[(&str, &str)]) -> StatusCode {
    let bare = Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = bare.get(server.url("/log_in/")).send().await.expect("GET");
    let cookies = set_cookies(&r);
    let secret = cookie_from(&cookies, "csrftoken").expect("a CSRF cookie").to_owned();
    let token = csrf_from(&r.text().await.expect("body"));
    let mut post = bare.post(server.url("/log_in/")).header("cookie", format!("csrftoken={secret}"));
    for (k, v) in extra {
        post = post.header(*k, *v);
    }
    let fields = [("csrfmiddlewaretoken", token.as_str()), ("username", "nobody"), ("password", "wrong-Password-1")];
    post.form(&fields).send().await.expect("POST").status()
}

#[tokio::test]
async fn csrf_on_https_requires_origin_or_referer_with_the_scheme() {
    let server = TestServer::start_with(&["--secure-cookies"]).await;
    let host = server.addr.to_string();
    let (https, http) = (format!("https://{host}"), format!("http://{host}"));
    let forbidden = StatusCode::FORBIDDEN;
    assert_eq!(csrf_outcome(&server, &[]).await, forbidden, "no Origin and no Referer");
    assert_eq!(csrf_outcome(&server, &[("origin", &http)]).await, forbidden, "Origin with the wrong scheme");
    assert_eq!(csrf_outcome(&server, &[("origin", &https)]).await, StatusCode::OK);
    let referer = format!("{https}/log_in/");
    assert_eq!(csrf_outcome(&server, &[("referer", &referer)]).await, StatusCode::OK);
    let insecure = format!("{http}/log_in/");
    assert_eq!(csrf_outcome(&server, &[("referer", &insecure)]).await, forbidden, "insecure Referer");
    let foreign = "https://evil.example/log_in/";
    assert_eq!(csrf_outcome(&server, &[("referer", foreign)]).await, forbidden, "foreign Referer");

    // The same through a trusted TLS proxy that says the request was HTTPS.
    let proxied = TestServer::start_with(&["--trusted-proxies", "127.0.0.1"]).await;
    let host = proxied.addr.to_string();
    let via_tls = [("x-forwarded-proto", "https")];
    assert_eq!(csrf_outcome(&proxied, &via_tls).await, forbidden, "HTTPS via the proxy, no Origin or Referer");
    let origin = format!("https://{host}");
    assert_eq!(csrf_outcome(&proxied, &[via_tls[0], ("origin", &origin)]).await, StatusCode::OK);
    // Plain HTTP needs neither (as in Django), but a present Origin must match, scheme included.
    assert_eq!(csrf_outcome(&proxied, &[]).await, StatusCode::OK);
    assert_eq!(csrf_outcome(&proxied, &[("origin", &origin)]).await, forbidden, "https Origin on an http request");
}

#[tokio::test]
async fn allowed_origins_apply_to_form_posts_as_to_the_socket() {
    let server = TestServer::start_with(&["--allowed-origins", "https://roster.example"]).await;
    assert_eq!(csrf_outcome(&server, &[("origin", "https://roster.example")]).await, StatusCode::OK);
    assert_eq!(csrf_outcome(&server, &[("origin", "https://evil.example")]).await, StatusCode::FORBIDDEN);
    let alice = user_browser(&server, "alice").await;
    let opts = crate::ws_client::Opts { origin: Some("https://roster.example"), ..crate::ws_client::TUTORIAL };
    assert!(crate::ws_client::open(&server, Some(&alice), opts).await.is_ok(), "the socket allows it too");
}
