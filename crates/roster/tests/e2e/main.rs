//! Real-browser end-to-end tests: the real `roster` binary on a free port, and two or more
//! headless Chromium sessions (separate profiles, so separate cookie jars) driven through
//! WebDriver. People see each other come and go without reloading.
//!
//! Needs `chromium` and `chromedriver` (`bash scripts/test` installs them); missing is a failure.
//! Screenshots of each page state are written to `target/e2e/*.png`.

mod browser;
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod reconnect;
mod views;
#[allow(dead_code)]
#[path = "../api/ws_client.rs"]
mod ws_client;

use std::time::{Duration, Instant};

use browser::{eventually, Browser, Driver, WAIT};
use fantoccini::Locator;
use helpers::{TestServer, GOOD_PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The server's address as the browser uses it.
fn base(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

/// Signs up through the form, then logs in through the form; ends on the live list.
async fn join(b: &Browser, base: &str, username: &str) {
    b.sign_up(base, username, GOOD_PASSWORD, GOOD_PASSWORD).await;
    b.wait_path("/log_in/").await;
    b.log_in(base, username, GOOD_PASSWORD).await;
    b.wait_path("/").await;
    b.wait_connection("live", WAIT).await;
}

/// Creates an account over HTTP (for people who are not the point of a test).
async fn create_account(server: &TestServer, username: &str) {
    let client = server.client();
    let r = helpers::sign_up(server, &client, username, GOOD_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FOUND, "sign up {username}");
}

/// Logs in through the form (account made elsewhere); ends on the live list.
async fn log_in(b: &Browser, base: &str, username: &str) {
    b.log_in(base, username, GOOD_PASSWORD).await;
    b.wait_path("/").await;
    b.wait_connection("live", WAIT).await;
}

fn disconnects(server: &TestServer) -> usize {
    server.logs().matches("WebSocket DISCONNECT /users/").count()
}

/// The tutorial's story: A sees B come online and go offline, live.
#[tokio::test]
async fn tutorial_a_sees_b_log_in_and_out_without_reloading() {
    let server = TestServer::start().await;
    let base = base(&server);
    let driver = Driver::start().await;
    let (a, b) = tokio::join!(driver.browser("A"), driver.browser("B"));

    b.sign_up(&base, "bob", GOOD_PASSWORD, GOOD_PASSWORD).await;
    b.wait_path("/log_in/").await;
    join(&a, &base, "alice").await;
    a.mark_page().await;
    a.wait_entry("alice", "Online").await;
    a.wait_entry("bob", "Offline").await;

    log_in(&b, &base, "bob").await;
    b.wait_entry("alice", "Online").await;
    a.wait_entry("bob", "Online").await;
    // Online people come first.
    let order: Vec<String> = a.list().await.0.into_iter().map(|(u, _)| u).collect();
    assert_eq!(order, ["alice", "bob"], "A's list order");

    b.log_out().await;
    b.wait_path("/log_in/").await;
    a.wait_entry("bob", "Offline").await;
    a.wait_entry("alice", "Online").await;
    a.assert_not_reloaded().await;
    assert_eq!(a.connection().await, "live");

    finish([a, b]).await;
}

/// B signs up while A watches: B appears in A's list, and the registered count goes up.
#[tokio::test]
async fn a_sees_b_sign_up_live() {
    let server = TestServer::start().await;
    let base = base(&server);
    let driver = Driver::start().await;
    let (a, b) = tokio::join!(driver.browser("A"), driver.browser("B"));

    join(&a, &base, "alice").await;
    a.mark_page().await;
    assert_eq!(a.entry("bob").await, None);
    let count = || async { a.js("return document.getElementById('registered-count').textContent;", vec![]).await };
    assert_eq!(count().await, json!("1"));

    b.sign_up(&base, "bob", GOOD_PASSWORD, GOOD_PASSWORD).await;
    b.wait_path("/log_in/").await;
    a.wait_entry("bob", "Offline").await;
    eventually("A's registered count to be 2", WAIT, || async {
        let c = count().await;
        if c == json!("2") {
            Ok(())
        } else {
            Err(c.to_string())
        }
    })
    .await;

    // And B's first log in shows B Online.
    log_in(&b, &base, "bob").await;
    a.wait_entry("bob", "Online").await;
    a.assert_not_reloaded().await;

    finish([a, b]).await;
}

/// The server stops (SIGTERM, sockets closed with 1001): A's indicator shows it. While it is down
/// B leaves. A server comes back on the same address and database: A's page reconnects by itself
/// and shows the true state (B Offline), without a reload.
#[tokio::test]
async fn a_recovers_the_true_state_after_a_server_restart() {
    let db_dir = tempfile::tempdir().expect("db dir");
    let db_url = format!("sqlite://{}", db_dir.path().join("roster.db").display());
    let server = TestServer::start_on(tempfile::tempdir().expect("dir"), db_url.clone(), "127.0.0.1:0", &[]).await;
    let addr = server.addr;
    let base = base(&server);
    create_account(&server, "alice").await;
    create_account(&server, "bob").await;

    let driver = Driver::start().await;
    let (a, b) = tokio::join!(driver.browser("A"), driver.browser("B"));
    log_in(&a, &base, "alice").await;
    log_in(&b, &base, "bob").await;
    a.mark_page().await;
    a.wait_entry("bob", "Online").await;
    a.assert_clean_console().await;
    b.assert_clean_console().await;

    let status = server.stop().await;
    assert!(status.success(), "the server stops cleanly on SIGTERM: {status}");
    eventually("A's indicator to show the drop", WAIT, || async {
        let state = a.connection().await;
        if state != "live" {
            Ok(())
        } else {
            Err(state)
        }
    })
    .await;
    let text = a.js("return document.getElementById('connection').textContent;", vec![]).await;
    assert_ne!(text, json!("Live"));

    // B leaves while the server is down: nobody can tell A.
    b.close().await;
    assert_eq!(a.entry("bob").await.as_deref(), Some("bob: Online"), "A has not been told yet");

    let restarted = Instant::now();
    let server = TestServer::start_on(tempfile::tempdir().expect("dir"), db_url, &addr.to_string(), &[]).await;
    // Backoff: full jitter from 0.5 s doubling to a 30 s cap; the outage here lasts a few
    // seconds, so the next try comes within the next few seconds.
    a.wait_connection("live", Duration::from_secs(40)).await;
    eprintln!("A was live again {:?} after the restart", restarted.elapsed());
    a.wait_entry("bob", "Offline").await;
    a.wait_entry("alice", "Online").await;
    a.assert_not_reloaded().await;

    // The failed reconnects during the outage are expected console errors; nothing else is.
    let unexpected: Vec<_> = a
        .console()
        .await
        .into_iter()
        .filter(|e| e.is_problem())
        .filter(|e| !(e.message.contains("WebSocket connection to") && e.message.contains("/users/")))
        .collect();
    assert!(unexpected.is_empty(), "A's console during the outage: {unexpected:#?}");
    a.close().await;
    drop(server);
}

/// B has the list open in two tabs and closes one: B is still Online for A. Closing the last
/// page of B's makes B Offline (so the first check could have failed).
#[tokio::test]
async fn closing_one_of_two_tabs_keeps_b_online() {
    let server = TestServer::start().await;
    let base = base(&server);
    create_account(&server, "alice").await;
    create_account(&server, "bob").await;
    let driver = Driver::start().await;
    let (a, b) = tokio::join!(driver.browser("A"), driver.browser("B"));
    log_in(&a, &base, "alice").await;
    a.mark_page().await;
    log_in(&b, &base, "bob").await;
    let first = b.client.window().await.expect("window");
    let second = b.new_tab().await;
    b.client.switch_to_window(second).await.expect("switch tab");
    b.goto(&format!("{base}/")).await;
    b.wait_connection("live", WAIT).await;
    a.wait_entry("bob", "Online").await;

    let before = disconnects(&server);
    b.client.close_window().await.expect("close the second tab");
    b.client.switch_to_window(first).await.expect("back to the first tab");
    eventually("the server to see the tab close", WAIT, || async {
        let n = disconnects(&server);
        if n > before {
            Ok(())
        } else {
            Err(format!("{n} disconnects"))
        }
    })
    .await;
    // Anything after the close reaches A after B's (absent) Offline would: carol signs up.
    create_account(&server, "carol").await;
    a.wait_entry("carol", "Offline").await;
    assert_eq!(a.entry("bob").await.as_deref(), Some("bob: Online"), "one tab of B's is still open");
    assert_eq!(b.connection().await, "live", "B's remaining tab is still live");

    // B leaves the list in the last tab: now B is Offline.
    b.goto(&format!("{base}/log_out/")).await;
    a.wait_entry("bob", "Offline").await;
    a.assert_not_reloaded().await;

    finish([a, b]).await;
}

/// The errors of the sign-up and log-in forms, shown next to the field they are about.
async fn field_errors(b: &Browser, field: &str) -> Vec<String> {
    let v = b
        .js(
            "const input = document.getElementById(arguments[0]);
             const box = input.closest('.field');
             const list = box.querySelector('.errorlist');
             if (!list) return [];
             const r = list.getBoundingClientRect(), i = input.getBoundingClientRect();
             if (r.height === 0 || r.top < i.bottom || r.top - i.bottom > 40) return ['<errors not visible right under the field>'];
             if (input.getAttribute('aria-describedby') !== list.id || input.getAttribute('aria-invalid') !== 'true') return ['<not linked to the field>'];
             return Array.from(list.querySelectorAll('li')).map(li => li.textContent);",
            vec![json!(field)],
        )
        .await;
    serde_json::from_value(v).expect("a list of errors")
}

/// Sign-up and log-in errors, each where the person looks for it; then the console self-test.
#[tokio::test]
async fn form_errors_are_shown_next_to_the_right_field() {
    let server = TestServer::start().await;
    let base = base(&server);
    create_account(&server, "taken").await;
    let driver = Driver::start().await;
    let b = driver.browser("B").await;

    // Passwords that differ: the error is on the confirmation.
    b.sign_up(&base, "bob", GOOD_PASSWORD, "another-Password-7").await;
    b.wait_path("/sign_up/").await;
    assert_eq!(field_errors(&b, "id_username").await, Vec::<String>::new());
    assert_eq!(field_errors(&b, "id_password1").await, Vec::<String>::new());
    assert_eq!(field_errors(&b, "id_password2").await, ["The two password fields didn\u{2019}t match."]);
    let kept = b.js("return document.getElementById('id_username').value;", vec![]).await;
    assert_eq!(kept, json!("bob"), "the username is kept");

    // A taken name and a weak password: each next to its own field.
    b.sign_up(&base, "Taken", "123", "123").await;
    b.wait_path("/sign_up/").await;
    assert_eq!(field_errors(&b, "id_username").await, ["A user with that username already exists."]);
    let weak = field_errors(&b, "id_password1").await;
    assert!(weak.iter().any(|e| e.contains("too short")), "password errors: {weak:?}");
    assert!(weak.iter().any(|e| e.contains("entirely numeric")), "password errors: {weak:?}");
    assert_eq!(field_errors(&b, "id_password2").await, Vec::<String>::new());

    // An invalid username.
    b.sign_up(&base, "no spaces!", GOOD_PASSWORD, GOOD_PASSWORD).await;
    b.wait_path("/sign_up/").await;
    let bad = field_errors(&b, "id_username").await;
    assert_eq!(bad.len(), 1, "username errors: {bad:?}");
    assert!(bad[0].starts_with("Enter a valid username."), "username errors: {bad:?}");

    // Log in with a wrong password: the form's own error, above the fields; the name is kept.
    b.log_in(&base, "taken", "wrong-password-1").await;
    b.wait_path("/log_in/").await;
    let shown = b
        .js(
            "const e = document.querySelector('main form .errorlist.nonfield');
             if (!e) return null;
             const user = document.getElementById('id_username');
             const above = e.getBoundingClientRect().bottom <= user.getBoundingClientRect().top;
             return [e.textContent, above, e.getAttribute('role'), user.value, document.getElementById('id_password').value];",
            vec![],
        )
        .await;
    assert_eq!(
        shown,
        json!([
            "Please enter a correct username and password. Note that both fields may be case-sensitive.",
            true,
            "alert",
            "taken",
            ""
        ])
    );

    b.assert_clean_console().await;
    console_check_self_test(&b, &base).await;
    b.close().await;
}

/// The console check is not vacuous: a CSP violation and a console error are seen; error pages
/// make no favicon noise. Run it last in a browser: it leaves problems in its console.
async fn console_check_self_test(b: &Browser, base: &str) {
    b.goto(&format!("{base}/log_in/")).await;
    b.assert_clean_console().await;
    b.js(
        "const s = document.createElement('script'); s.textContent = 'window.__inline = 1;'; document.head.appendChild(s);",
        vec![],
    )
    .await;
    let seen = eventually("the CSP violation in the console", WAIT, || async {
        let entries = b.console().await;
        if entries.iter().any(|e| e.is_problem() && e.message.contains("Content Security Policy")) {
            Ok(entries)
        } else {
            Err(format!("{entries:?}"))
        }
    })
    .await;
    assert!(!seen.is_empty());
    let ran = b.js("return window.__inline === 1;", vec![]).await;
    assert_eq!(ran, json!(false), "the CSP blocked the inline script");

    // Console errors are seen too.
    b.js("console.error('e2e probe');", vec![]).await;
    let entries = b.console().await;
    assert!(entries.iter().any(|e| e.level == "SEVERE" && e.message.contains("e2e probe")), "{entries:?}");

    // An error page: its own 404 is logged, but no favicon request fails.
    b.goto(&format!("{base}/no-such-page/")).await;
    let h1 = b.js("return document.querySelector('h1').textContent;", vec![]).await;
    assert_eq!(h1, json!("Not found"));
    let entries = b.console().await;
    assert!(entries.iter().any(|e| e.message.contains("404")), "the page's own 404 is logged: {entries:?}");
    assert!(!entries.iter().any(|e| e.message.contains("favicon")), "favicon noise: {entries:?}");
}

/// PNGs of each page state at a phone and a desktop size, under `target/e2e/`.
#[tokio::test]
async fn screenshots_of_each_page() {
    let server = TestServer::start().await;
    let base = base(&server);
    for name in ["carol", "dave", "a-rather-long-username-for-a-small-screen@example.org"] {
        create_account(&server, name).await;
    }
    let driver = Driver::start().await;
    let (a, b) = tokio::join!(driver.browser("A"), driver.browser("B"));
    create_account(&server, "bob").await;
    join(&a, &base, "alice").await;
    // B's browser is carol, then dave, then bob: each log in ends the previous session, so carol
    // and dave are Offline with a "last seen".
    for name in ["carol", "dave", "bob"] {
        log_in(&b, &base, name).await;
        a.wait_entry(name, "Online").await;
    }
    a.wait_entry("dave", "Offline").await;
    a.wait_entry("bob", "Online").await;

    let sizes = [("phone", 390, 844), ("desktop", 1280, 800)];
    for (size, w, h) in sizes {
        a.screenshot(&format!("list-{size}"), w, h).await;
    }
    b.log_out().await;
    b.wait_path("/log_in/").await;
    for (size, w, h) in sizes {
        b.screenshot(&format!("log-in-{size}"), w, h).await;
    }
    b.sign_up(&base, "no spaces!", "123", "1234").await;
    b.wait_path("/sign_up/").await;
    for (size, w, h) in sizes {
        b.screenshot(&format!("sign-up-errors-{size}"), w, h).await;
    }
    b.log_in(&base, "bob", "wrong-password-1").await;
    b.wait_path("/log_in/").await;
    for (size, w, h) in sizes {
        b.screenshot(&format!("log-in-error-{size}"), w, h).await;
    }
    finish([a, b]).await;
}

/// The cells of `username`'s row in the admin table: presence, sockets here, active, staff.
async fn admin_row(b: &Browser, username: &str) -> Value {
    b.js(
        "const tr = document.querySelector(`tr[data-username=\"${arguments[0]}\"]`);
         if (!tr) return null;
         return ['presence', 'sockets', 'active', 'staff'].map(c => tr.querySelector('td.' + c).textContent.trim());",
        vec![json!(username)],
    )
    .await
}

/// Clicks the first element matching `css`.
async fn click(b: &Browser, css: &str) {
    let element = b.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{}: no {css}: {e}", b.name));
    element.click().await.unwrap_or_else(|e| panic!("{}: click {css}: {e}", b.name));
}

/// A staff member (made with `roster user create --staff`) deactivates bob through the admin
/// pages, at a phone's width: the Admin link, bob's row, its Deactivate action, the
/// confirmation page, the list again. bob's open page is closed at once. At 390 px the table
/// is one card per account, nothing wider than the screen. Screenshots in `target/e2e/admin-*`.
#[tokio::test]
async fn a_staff_member_deactivates_someone_through_the_admin_pages() {
    let server = TestServer::start().await;
    let base = base(&server);
    let out = server.cli(&["user", "create", "root", "--staff"], &format!("{GOOD_PASSWORD}\n")).await;
    assert!(out.status.success(), "roster user create --staff: {}", String::from_utf8_lossy(&out.stderr));
    for name in ["bob", "a-rather-long-username-for-a-small-screen@example.org"] {
        create_account(&server, name).await;
    }
    let driver = Driver::start().await;
    let (a, b) = tokio::join!(driver.browser("A"), driver.browser("B"));
    log_in(&b, &base, "bob").await;
    log_in(&a, &base, "root").await;
    a.wait_entry("bob", "Online").await;

    click(&a, "header a[href='/admin/']").await;
    a.wait_path("/admin/").await;
    assert_eq!(admin_row(&a, "bob").await, json!(["Online", "1", "yes", "no"]));
    a.screenshot("admin-desktop", 1280, 800).await;

    // At a phone's width: every row a card, its cells under each other, labelled; nothing
    // sticks out sideways.
    a.screenshot("admin-phone", 390, 844).await;
    let layout = a
        .js(
            "const doc = document.documentElement;
             const tr = document.querySelector('tr[data-username=\"bob\"]');
             const name = tr.querySelector('th').getBoundingClientRect();
             const cell = tr.querySelector('td.presence');
             const r = cell.getBoundingClientRect();
             const label = getComputedStyle(cell, '::before').content;
             const head = document.querySelector('.accounts thead').getBoundingClientRect();
             const wide = Array.from(document.querySelectorAll('main *')).filter(e => e.getBoundingClientRect().right > doc.clientWidth + 1).map(e => e.tagName + '.' + e.className);
             return [doc.scrollWidth <= doc.clientWidth, r.top >= name.bottom - 1, r.left - name.left < 2, label, head.height <= 1, wide];",
            vec![],
        )
        .await;
    assert_eq!(layout, json!([true, true, true, "\"Presence\"", true, []]), "the table at 390 px");

    click(&a, "tr[data-username='bob'] a.action[href$='/deactivate/']").await;
    let bob_id = server.store().await.user_by_key("bob").await.expect("query").expect("bob").id;
    a.wait_path(&format!("/admin/users/{bob_id}/deactivate/")).await;
    let question = a.js("return document.querySelector('.question').textContent;", vec![]).await;
    assert_eq!(question, json!("Are you sure you want to deactivate bob?"));
    a.screenshot("admin-confirm-phone", 390, 844).await;
    a.submit().await;
    a.wait_path("/admin/").await;
    let notice = a.js("return document.querySelector('.notice').textContent;", vec![]).await;
    assert_eq!(notice, json!("bob was deactivated."));
    // The account and this node's sockets change before the redirect; the cluster's presence
    // follows within a tick, so a reload may be needed to see bob Offline.
    let row = admin_row(&a, "bob").await;
    assert_eq!((&row[1], &row[2]), (&json!("0"), &json!("no")), "{row}");
    eventually("bob Offline in the admin list", WAIT, || async {
        let row = admin_row(&a, "bob").await;
        if row == json!(["Offline", "0", "no", "no"]) {
            return Ok(());
        }
        a.client.refresh().await.map_err(|e| e.to_string())?;
        Err(row.to_string())
    })
    .await;
    a.screenshot("admin-done-phone", 390, 844).await;

    // bob's page was closed by the server (1008) and does not reconnect.
    b.wait_connection("offline", WAIT).await;
    finish([a, b]).await;
}

/// The end of every two-browser scenario: neither console logged an error or a CSP violation;
/// then both browsers close.
async fn finish(browsers: [browser::Browser; 2]) {
    for b in &browsers {
        b.assert_clean_console().await;
    }
    for b in browsers {
        b.close().await;
    }
}
