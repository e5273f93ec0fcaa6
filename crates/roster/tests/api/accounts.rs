//! Sign up, log in, the list, log out: every form flow and every bad input, against the real
//! binary. Each bad input asserts the exact status and that nothing was created or changed.

use reqwest::StatusCode;
use roster::store::ListQuery;

use crate::helpers::*;

async fn user_count(server: &TestServer) -> u64 {
    server.store().await.count_users().await.expect("count")
}

#[tokio::test]
async fn tutorial_flow_sign_up_log_in_list_log_out() {
    let server = TestServer::start().await;
    let client = server.client();

    // Anonymous: the list redirects to the log-in page with next=/.
    let r = client.get(server.url("/")).send().await.expect("GET /");
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/log_in/?next=/");

    let r = sign_up(&server, &client, "alice", GOOD_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/log_in/");
    let alice = server.store().await.user_by_key("alice").await.expect("query").expect("alice exists");
    assert!(alice.password_hash.starts_with("$argon2id$"), "stored with Argon2id");
    assert!(alice.is_active && !alice.is_staff);

    let bob = server.client();
    assert_eq!(sign_up(&server, &bob, "bob", GOOD_PASSWORD).await.status(), StatusCode::FOUND);

    let r = log_in(&server, &client, "alice", GOOD_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/");
    let cookies = set_cookies(&r);
    let session = cookies.iter().find(|c| c.starts_with("sessionid=")).expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Path=/"),
        "{session}"
    );
    assert!(cookie_from(&cookies, "csrftoken").is_some(), "CSRF token rotated at log in");

    let page = client.get(server.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("body");
    assert!(html.contains(r#"data-username="bob""#) && html.contains(">bob: Offline</li>"), "{html}");
    assert!(html.contains(">alice: Offline</li>"), "no socket is open yet, so alice is Offline: {html}");
    assert!(html.contains(r#"<strong id="registered-count">2</strong>"#), "{html}");
    assert!(html.contains(r#"<strong id="online-count">0</strong>"#), "{html}");

    // GET /log_out/ shows a confirm form and changes nothing.
    let r = client.get(server.url("/log_out/")).send().await.expect("GET /log_out/");
    assert_eq!(r.status(), StatusCode::OK);
    let token = csrf_from(&r.text().await.expect("body"));
    assert_eq!(client.get(server.url("/")).send().await.expect("GET /").status(), StatusCode::OK);

    let r = post_form(&server, &client, "/log_out/", &[("csrfmiddlewaretoken", &token)]).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/log_in/");
    let r = client.get(server.url("/")).send().await.expect("GET /");
    assert_eq!(r.status(), StatusCode::FOUND, "logged out");
}

#[tokio::test]
async fn session_id_is_new_at_every_log_in_and_old_one_is_dead() {
    let server = TestServer::start().await;
    let client = user_client(&server, "carol").await;
    let first = log_in(&server, &client, "carol", GOOD_PASSWORD).await;
    let first_id = cookie_from(&set_cookies(&first), "sessionid").expect("session").to_owned();
    let second = log_in(&server, &client, "carol", GOOD_PASSWORD).await;
    let second_id = cookie_from(&set_cookies(&second), "sessionid").expect("session").to_owned();
    assert_ne!(first_id, second_id);

    // The first session no longer works.
    let stale = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = stale.get(server.url("/")).header("cookie", format!("sessionid={first_id}")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = stale.get(server.url("/")).header("cookie", format!("sessionid={second_id}")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn safe_next_is_followed_and_off_site_next_is_refused() {
    let server = TestServer::start().await;
    let client = server.client();
    assert_eq!(sign_up(&server, &client, "dave", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    for (next, expected) in [
        ("/?page=1", "/?page=1"),
        ("http://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ] {
        let token = csrf(&server, &client, "/log_in/").await;
        let r = post_form(
            &server,
            &client,
            "/log_in/",
            &[("csrfmiddlewaretoken", &token), ("username", "dave"), ("password", GOOD_PASSWORD), ("next", next)],
        )
        .await;
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(location(&r), expected, "next={next:?}");
    }
    // The log-in page carries a safe next from its query into the form, and drops an unsafe one.
    let page =
        client.get(server.url("/log_in/?next=%2F%3Fpage%3D2")).send().await.expect("GET").text().await.expect("body");
    assert!(page.contains(r#"name="next" value="/?page=2""#), "{page}");
    let page = client
        .get(server.url("/log_in/?next=https://evil.example"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(page.contains(r#"name="next" value="/""#), "{page}");
}

#[tokio::test]
async fn csrf_missing_or_wrong_is_403_and_changes_nothing() {
    let server = TestServer::start().await;
    let client = server.client();
    let token = csrf(&server, &client, "/sign_up/").await;
    let fields = |t: &'static str| {
        vec![
            ("username", "eve"),
            ("password1", GOOD_PASSWORD),
            ("password2", GOOD_PASSWORD),
            ("csrfmiddlewaretoken", t),
        ]
    };

    // No token field.
    let r = post_form(&server, &client, "/sign_up/", &fields("")[..3]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.expect("body").contains("CSRF"), "the 403 page says why");
    // Wrong token.
    let r = post_form(&server, &client, "/sign_up/", &fields("wrongwrongwrongwrongwrongwrong12")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A valid token but no cookie (another client).
    let cookieless = server.client();
    let mut f = fields("");
    f[3].1 = Box::leak(token.clone().into_boxed_str());
    let r = post_form(&server, &cookieless, "/sign_up/", &f).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Right token, foreign Origin.
    let r = client
        .post(server.url("/sign_up/"))
        .header("origin", "http://evil.example")
        .form(&f)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Log out without a token does not log out.
    let alice = user_client(&server, "alice").await;
    let r = alice.post(server.url("/log_out/")).form(&[("x", "1")]).send().await.expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(alice.get(server.url("/")).send().await.expect("GET").status(), StatusCode::OK, "still logged in");

    assert_eq!(user_count(&server).await, 1, "only alice was created");
    // The right token works.
    let r = post_form(&server, &client, "/sign_up/", &f).await;
    assert_eq!(r.status(), StatusCode::FOUND);
}

async fn sign_up_fails(server: &TestServer, username: &str, p1: &str, p2: &str, message: &str) {
    let client = server.client();
    let before = user_count(server).await;
    let token = csrf(server, &client, "/sign_up/").await;
    let r = post_form(
        server,
        &client,
        "/sign_up/",
        &[("csrfmiddlewaretoken", &token), ("username", username), ("password1", p1), ("password2", p2)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "an invalid form is shown again with its errors");
    let html = r.text().await.expect("body");
    assert!(html.contains(message), "expected {message:?} in:\n{html}");
    assert!(html.contains("class=\"errorlist\""), "errors are marked up next to their field");
    assert_eq!(user_count(server).await, before, "nothing was created for {username:?}");
}

#[tokio::test]
async fn sign_up_rejects_every_bad_input_and_creates_nothing() {
    let server = TestServer::start().await;
    user_client(&server, "Frank").await;
    let mismatch = "The two password fields didn’t match.";
    sign_up_fails(&server, "grace", GOOD_PASSWORD, "another-Password-7", mismatch).await;
    sign_up_fails(
        &server,
        "grace",
        "Sh0rt!",
        "Sh0rt!",
        "This password is too short. It must contain at least 8 characters.",
    )
    .await;
    sign_up_fails(&server, "grace", "73914862057", "73914862057", "This password is entirely numeric.").await;
    sign_up_fails(&server, "grace", "password123", "password123", "This password is too common.").await;
    sign_up_fails(
        &server,
        "gracehopper",
        "gracehopper1",
        "gracehopper1",
        "The password is too similar to the username.",
    )
    .await;
    let illegal = "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.";
    sign_up_fails(&server, "bad name", GOOD_PASSWORD, GOOD_PASSWORD, illegal).await;
    sign_up_fails(&server, "<script>", GOOD_PASSWORD, GOOD_PASSWORD, illegal).await;
    sign_up_fails(
        &server,
        &"a".repeat(151),
        GOOD_PASSWORD,
        GOOD_PASSWORD,
        "Ensure this value has at most 150 characters (it has 151).",
    )
    .await;
    sign_up_fails(&server, "", GOOD_PASSWORD, GOOD_PASSWORD, "This field is required.").await;
    sign_up_fails(&server, "grace", "", "", "This field is required.").await;
    let taken = "A user with that username already exists.";
    sign_up_fails(&server, "Frank", GOOD_PASSWORD, GOOD_PASSWORD, taken).await;
    sign_up_fails(&server, "frank", GOOD_PASSWORD, GOOD_PASSWORD, taken).await;
    sign_up_fails(&server, "FRANK", GOOD_PASSWORD, GOOD_PASSWORD, taken).await;
}

#[tokio::test]
async fn oversized_and_invalid_utf8_bodies_are_refused() {
    let server = TestServer::start().await;
    let client = server.client();
    let token = csrf(&server, &client, "/sign_up/").await;

    let huge = format!(
        "csrfmiddlewaretoken={token}&username=heidi&password1={p}&password2={p}&pad={}",
        "x".repeat(64 * 1024),
        p = GOOD_PASSWORD
    );
    // Its own client: the server closes that connection without reading the rest of the body.
    let r = server
        .client()
        .post(server.url("/sign_up/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let mut bad =
        format!("csrfmiddlewaretoken={token}&password1={p}&password2={p}&username=", p = GOOD_PASSWORD).into_bytes();
    bad.extend_from_slice(b"h\xffidi");
    let r = client
        .post(server.url("/sign_up/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(bad)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("body").contains("not valid UTF-8"));

    let pct = format!("csrfmiddlewaretoken={token}&password1={p}&password2={p}&username=%ff%fe", p = GOOD_PASSWORD);
    let r = client
        .post(server.url("/sign_up/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(pct)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = client
        .post(server.url("/sign_up/"))
        .header("content-type", "application/json")
        .header("x-csrftoken", &token)
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(user_count(&server).await, 0);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_error_and_no_session() {
    let server = TestServer::start().await;
    let client = server.client();
    assert_eq!(sign_up(&server, &client, "ivan", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    for (user, pw) in [("ivan", "not-the-Password-1"), ("nobody", GOOD_PASSWORD), ("", ""), ("ivan", "")] {
        let r = log_in(&server, &client, user, pw).await;
        assert_eq!(r.status(), StatusCode::OK, "{user}/{pw}");
        assert!(set_cookies(&r).iter().all(|c| !c.starts_with("sessionid=")), "no session for a failed log in");
        let html = r.text().await.expect("body");
        assert!(html.contains("Please enter a correct username and password."), "{html}");
    }
    let ivan = server.store().await.user_by_key("ivan").await.expect("q").expect("ivan");
    assert_eq!(ivan.last_login, None, "a failed log in changes nothing");
    assert_eq!(client.get(server.url("/")).send().await.expect("GET").status(), StatusCode::FOUND);
}

#[tokio::test]
async fn log_in_is_throttled_per_account_and_address() {
    let server = TestServer::start_with(&["--login-limit", "3", "--login-window", "10m"]).await;
    let client = server.client();
    assert_eq!(sign_up(&server, &client, "judy", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    assert_eq!(sign_up(&server, &client, "mallory", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    for _ in 0..3 {
        assert_eq!(log_in(&server, &client, "judy", "wrong-Password-1").await.status(), StatusCode::OK);
    }
    // The fourth attempt is refused even with the right password.
    let r = log_in(&server, &client, "JUDY", GOOD_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(set_cookies(&r).iter().all(|c| !c.starts_with("sessionid=")));
    assert!(r.text().await.expect("body").contains("Too many failed log-in attempts"));
    let judy = server.store().await.user_by_key("judy").await.expect("q").expect("judy");
    assert_eq!(judy.last_login, None);
    // Another account from the same address is not refused for judy's failures.
    assert_eq!(log_in(&server, &client, "mallory", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn pages_carry_security_headers_and_assets_are_cached() {
    let server = TestServer::start().await;
    let client = server.client();
    for path in ["/log_in/", "/sign_up/", "/log_out/", "/nope"] {
        let r = client.get(server.url(path)).send().await.expect("GET");
        let h = r.headers();
        let csp = h.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(
            csp.contains("frame-ancestors 'none'")
                && csp.contains("script-src 'self'")
                && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(h.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]), "{path}");
        assert_eq!(h.get("referrer-policy").map(|v| v.as_bytes()), Some(&b"same-origin"[..]), "{path}");
        assert_eq!(h.get("x-frame-options").map(|v| v.as_bytes()), Some(&b"DENY"[..]), "{path}");
    }
    assert_eq!(client.get(server.url("/nope")).send().await.expect("GET").status(), StatusCode::NOT_FOUND);
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(client.get(server.url(probe)).send().await.expect("GET").status(), StatusCode::OK, "{probe}");
    }

    let page = client.get(server.url("/log_in/")).send().await.expect("GET").text().await.expect("body");
    let css = page
        .split("href=\"")
        .find_map(|s| s.split('"').next().filter(|u| u.starts_with("/static/style.css?v=")))
        .expect("css link");
    let r = client.get(server.url(css)).send().await.expect("GET css");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().expect("ct").starts_with("text/css"));
    assert!(r.headers()["cache-control"].to_str().expect("cc").contains("immutable"));
    let etag = r.headers()["etag"].clone();
    let r = client.get(server.url("/static/style.css")).header("if-none-match", etag).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        client.get(server.url("/static/../Cargo.toml")).send().await.expect("GET").status(),
        StatusCode::NOT_FOUND
    );
    assert!(!page.contains("<script>") && !page.contains("style=\""), "no inline script or style");
}

#[tokio::test]
async fn list_is_paged_searchable_and_most_recently_seen_first() {
    let server = TestServer::start_with(&["--page-size", "2"]).await;
    let viewer = user_client(&server, "viewer").await;
    let store = server.store().await;
    for name in ["ann", "anna", "bo", "ann_x"] {
        let c = server.client();
        assert_eq!(sign_up(&server, &c, name, GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    }
    let id = |n: &'static str| {
        let store = store.clone();
        async move { store.user_by_key(n).await.expect("q").expect("user").id }
    };
    store
        .set_last_seen(&[(id("bo").await, 3_000), (id("anna").await, 2_000), (id("ann").await, 1_000)])
        .await
        .expect("last_seen");

    let names = |html: String| -> Vec<String> {
        html.split("data-username=\"").skip(1).map(|s| s.split('"').next().unwrap_or("").to_owned()).collect()
    };
    let get = |path: &'static str| {
        let viewer = viewer.clone();
        let url = server.url(path);
        async move { viewer.get(url).send().await.expect("GET").text().await.expect("body") }
    };
    let p1 = get("/").await;
    assert_eq!(names(p1.clone()), ["bo", "anna"], "most recently seen first, two per page");
    assert!(p1.contains("href=\"/?page=2\""), "a next link: {p1}");
    assert_eq!(names(get("/?page=2").await), ["ann", "viewer"]);
    assert_eq!(names(get("/?page=3").await), ["ann_x"], "never seen comes last");
    assert!(names(get("/?page=4").await).is_empty());
    assert_eq!(names(get("/?q=ANN").await), ["anna", "ann"], "case-insensitive prefix search");
    assert_eq!(names(get("/?q=ann_").await), ["ann_x"], "_ is literal, not a wildcard");
    assert!(names(get("/?q=%25").await).is_empty(), "% is literal");
    let r = viewer.get(server.url("/?page=zero")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = viewer.get(server.url(&format!("/?q={}", "a".repeat(151)))).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Names are escaped in the markup.
    let weird = server.client();
    assert_eq!(sign_up(&server, &weird, "o+b@x.y-z", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    let all = get("/?q=o").await;
    assert!(all.contains(r#"<li data-username="o+b@x.y-z""#) || all.contains("o&#43;b@x.y-z"), "{all}");
    let rows = store.list_users(&ListQuery { prefix: None, exclude: &[], offset: 0, limit: 100 }).await.expect("list");
    assert_eq!(rows.len(), 6);
}

#[tokio::test]
async fn logs_have_the_tutorial_shape_and_no_secrets() {
    let server = TestServer::start().await;
    let client = user_client(&server, "kim").await;
    assert_eq!(client.get(server.url("/")).send().await.expect("GET").status(), StatusCode::OK);
    server.wait_for_log("HTTP GET / 200 [").await;
    let logs = server.logs();
    assert!(logs.contains("HTTP POST /log_in/ 302 ["), "{logs}");
    assert!(!logs.contains(GOOD_PASSWORD), "a password was logged");
    let session = server.store().await; // the raw session id is only in the client's jar
    drop(session);
    assert!(!logs.contains("sessionid="), "a session cookie was logged");
    assert!(!logs.contains("csrfmiddlewaretoken"), "a form token was logged");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_secrets() {
    let server = TestServer::start_with(&["--log-format", "json"]).await;
    let client = user_client(&server, "lee").await;
    assert_eq!(client.get(server.url("/")).send().await.expect("GET").status(), StatusCode::OK);
    server.wait_for_log("HTTP GET / 200 [").await;
    let logs = server.logs();
    let mut access_lines = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"].as_str().is_some_and(|m| m.starts_with("HTTP GET / 200")) {
            access_lines += 1;
            assert_eq!(v["status"], 200);
            assert_eq!(v["path"], "/");
        }
    }
    assert!(access_lines >= 1, "{logs}");
    assert!(!logs.contains(GOOD_PASSWORD) && !logs.contains("sessionid"), "{logs}");
}
