//! The page on live views, in a real browser, with 300 people online: someone who sorts onto
//! page 1 appears in place; someone who sorts onto page 2 changes only the counts on page 1;
//! moving to page 2, back, and searching happen without a reload; "last seen" reads as people
//! expect.
//!
//! The 300 people (and their sessions) are written to the store before the server starts, and
//! their sockets are opened by the test (tutorial mode): no form log-ins, no Argon2 for them.

use roster::store::{NewUser, Store};
use roster::web::session::hash_session_id;
use serde_json::{json, Value};

use crate::browser::{eventually, Driver, WAIT};
use crate::helpers::TestServer;
use crate::ws_client::{open_raw, Ws};
use crate::{base, create_account, log_in};

/// A person made in the store: their cookie (a session id of the right shape).
async fn person(store: &Store, n: usize, username: &str, last_seen: Option<i64>) -> String {
    let now = roster::now_ms();
    let user = store
        .create_user(&NewUser {
            username,
            username_key: &roster::accounts::username_key(username),
            password_hash: "not-a-password-hash",
            is_staff: false,
            is_active: true,
            date_joined: now,
            last_login: None,
        })
        .await
        .expect("create user");
    if let Some(at) = last_seen {
        store.set_last_seen(&[(user.id, at)]).await.expect("last seen");
    }
    let session_id = format!("{n:0>43}");
    store.create_session(&hash_session_id(&session_id), user.id, now, now + 3_600_000).await.expect("session");
    format!("sessionid={session_id}")
}

/// The page's list: usernames in order.
async fn names(b: &crate::browser::Browser) -> Vec<String> {
    b.list().await.0.into_iter().map(|(u, _)| u).collect()
}

async fn js_text(b: &crate::browser::Browser, id: &str) -> Value {
    b.js("return document.getElementById(arguments[0]).textContent;", vec![json!(id)]).await
}

async fn wait_text(b: &crate::browser::Browser, id: &str, want: &str) {
    eventually(&format!("#{id} to read {want}"), WAIT, || async {
        let got = js_text(b, id).await;
        if got == json!(want) {
            Ok(())
        } else {
            Err(got.to_string())
        }
    })
    .await;
}

/// Watches the list's children from now on (what the page script adds and removes).
async fn watch_mutations(b: &crate::browser::Browser) {
    b.js(
        "window.__listChanges = {added: [], removed: []};
         new MutationObserver((ms) => { for (const m of ms) {
           for (const n of m.addedNodes) window.__listChanges.added.push(n.dataset ? n.dataset.username : '#text');
           for (const n of m.removedNodes) window.__listChanges.removed.push(n.dataset ? n.dataset.username : '#text');
         } }).observe(document.getElementById('users'), {childList: true});",
        vec![],
    )
    .await;
}

async fn mutations(b: &crate::browser::Browser) -> (Vec<String>, Vec<String>) {
    let v = b.js("return [window.__listChanges.added, window.__listChanges.removed];", vec![]).await;
    serde_json::from_value(v).expect("two lists")
}

#[tokio::test]
async fn a_page_of_300_online_people_stays_sorted_and_paged_live() {
    let dir = tempfile::tempdir().expect("dir");
    let db_url = format!("sqlite://{}", dir.path().join("roster.db").display());
    let store = Store::connect(&db_url).await.expect("store");
    store.migrate().await.expect("migrate");
    let mut cookies = Vec::new();
    for i in 0..300 {
        cookies.push(person(&store, i, &format!("p{i:03}"), None).await);
    }
    // p0055 sorts between p005 and p006 (page 1); p2505 between p250 and p251 (page 2).
    let early = person(&store, 1000, "p0055", None).await;
    let late = person(&store, 1001, "p2505", None).await;
    let three_minutes_ago = roster::now_ms() - 3 * 60_000 - 5_000;
    person(&store, 1002, "zz-old", Some(three_minutes_ago)).await;
    store.close().await;

    let server = TestServer::start_on(dir, db_url, "127.0.0.1:0", &[]).await;
    let base = base(&server);
    let mut held: Vec<Ws> = Vec::new();
    for cookie in &cookies {
        held.push(open_raw(server.addr, cookie).await);
    }
    create_account(&server, "alice").await;
    let driver = Driver::start().await;
    let a = driver.browser("A").await;
    log_in(&a, &base, "alice").await;
    a.mark_page().await;
    wait_text(&a, "online-count", "301").await;
    // Page 1: alice, then p000 .. p198 (online users by name; 200 a page).
    let mut expected: Vec<String> =
        std::iter::once("alice".to_owned()).chain((0..199).map(|i| format!("p{i:03}"))).collect();
    eventually("page 1 of the online people", WAIT, || async {
        let got = names(&a).await;
        if got == expected {
            Ok(())
        } else {
            Err(format!("{} entries, from {:?}", got.len(), got.first()))
        }
    })
    .await;
    assert_eq!(a.entry("p100").await.as_deref(), Some("p100: Online"));
    a.screenshot("views-page-1", 1280, 800).await;

    // Someone who sorts onto page 2 comes online: page 1 changes only its counts.
    watch_mutations(&a).await;
    let late_socket = open_raw(server.addr, &late).await;
    wait_text(&a, "online-count", "302").await;
    assert_eq!(mutations(&a).await, (vec![], vec![]), "page 1's list was not touched");
    assert_eq!(names(&a).await, expected);

    // Someone who sorts onto page 1 comes online: they appear in place, and the last entry of
    // page 1 moves to page 2. Nothing else in the list is touched.
    let early_socket = open_raw(server.addr, &early).await;
    a.wait_entry("p0055", "Online").await;
    wait_text(&a, "online-count", "303").await;
    expected.insert(7, "p0055".to_owned()); // alice, p000 .. p005, then p0055
    let pushed_out = expected.pop().expect("200 entries");
    assert_eq!(names(&a).await, expected, "p0055 is in place");
    assert_eq!(mutations(&a).await, (vec!["p0055".to_owned()], vec![pushed_out]));
    a.assert_not_reloaded().await;

    // They leave: first of the offline people, so off page 1 (303 → 302 online people).
    drop(early_socket);
    a.wait_entry("p198", "Online").await;
    eventually("p0055 to leave page 1", WAIT, || async {
        if a.entry("p0055").await.is_none() {
            Ok(())
        } else {
            Err("still there".to_owned())
        }
    })
    .await;

    // The next page, without a reload: the URL follows, and the list is page 2.
    a.client
        .find(fantoccini::Locator::Css("#pager a[rel=next]"))
        .await
        .expect("a next link")
        .click()
        .await
        .expect("click");
    a.wait_path("/").await;
    eventually("page 2", WAIT, || async {
        let got = names(&a).await;
        if got.first().map(String::as_str) == Some("p199") && got.contains(&"p2505".to_owned()) {
            Ok(())
        } else {
            Err(format!("{:?}", got.first()))
        }
    })
    .await;
    let url = a.client.current_url().await.expect("url");
    assert_eq!(url.query(), Some("page=2"));
    wait_text(&a, "online-count", "302").await;
    a.assert_not_reloaded().await;

    // Back: page 1 again, from the socket.
    a.client.back().await.expect("back");
    eventually("page 1 again", WAIT, || async {
        let got = names(&a).await;
        if got.first().map(String::as_str) == Some("alice") && got.len() == 200 {
            Ok(())
        } else {
            Err(format!("{:?}", got.first()))
        }
    })
    .await;

    // A search, without a reload: "last seen" reads as people expect, the exact time on hover.
    a.js("document.querySelector('form.search input[name=q]').value = 'ZZ';", vec![]).await;
    a.client
        .find(fantoccini::Locator::Css("form.search button"))
        .await
        .expect("search button")
        .click()
        .await
        .expect("click");
    eventually("the search", WAIT, || async {
        let got = a.list().await.0;
        if got == [("zz-old".to_owned(), "zz-old: Offline".to_owned())] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    let minutes = || (roster::now_ms() - three_minutes_ago + 30_000) / 60_000;
    let before = minutes();
    let seen = a
        .js(
            "const li = document.querySelector('#users > li');
             return [li.dataset.seen, li.title, location.search, document.getElementById('pager').textContent];",
            vec![],
        )
        .await;
    let shown: Vec<Value> = (before..=minutes()).map(|m| json!(format!("last seen {m} minutes ago"))).collect();
    assert!(before >= 3 && shown.contains(&seen[0]), "{seen}, expected one of {shown:?}");
    assert!(seen[1].as_str().is_some_and(|t| t.starts_with("Last seen ")), "{seen}");
    assert_eq!(seen[2], json!("?page=1&q=ZZ"));
    assert_eq!(seen[3], json!("Page 1"), "one page of results: no links");
    a.assert_not_reloaded().await;
    a.screenshot("views-search", 1280, 800).await;
    a.assert_clean_console().await;

    drop((late_socket, held));
    a.close().await;
}
