//! The admin pages (`/admin/`) against the real binary: who may see them, each action through
//! its confirmation page with its effect on the target's open sockets, the self-protection
//! rules, CSRF, the audit lines, and the keyset paging and search of the account list.

use reqwest::{Response, StatusCode};
use roster::store::NewUser;

use crate::helpers::*;
use crate::ws_client::{close_code, open, Ws, TUTORIAL, V1};

const NO_PERMISSION: &str = "You don't have permission to view this page.";

/// The first admin, made as an operator would (`roster user create NAME --staff`), logged in.
async fn staff_browser(server: &TestServer, name: &str) -> Browser {
    let out = server.cli(&["user", "create", name, "--staff"], &format!("{GOOD_PASSWORD}\n")).await;
    assert!(out.status.success(), "roster user create --staff: {}", String::from_utf8_lossy(&out.stderr));
    let b = server.browser();
    assert_eq!(log_in(server, &b.client, name, GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    b
}

/// A server with a staff member `root` and a user `bob`, both logged in.
struct Scene {
    server: TestServer,
    root: Browser,
    bob: Browser,
    bob_id: i64,
}

async fn scene() -> Scene {
    scene_with(&[]).await
}

async fn scene_with(flags: &[&str]) -> Scene {
    let server = TestServer::start_with(flags).await;
    let root = staff_browser(&server, "root").await;
    let bob = user_browser(&server, "bob").await;
    let bob_id = user_id(&server, "bob").await;
    Scene { server, root, bob, bob_id }
}

async fn user_id(server: &TestServer, name: &str) -> i64 {
    server.store().await.user_by_key(name).await.expect("query").unwrap_or_else(|| panic!("{name} exists")).id
}

/// A page's text with the entities askama writes turned back into characters.
fn unescape(html: &str) -> String {
    html.replace("&#x27;", "'").replace("&#39;", "'").replace("&quot;", "\"").replace("&amp;", "&")
}

async fn body(r: Response) -> String {
    unescape(&r.text().await.expect("body"))
}

fn assert_private(r: &Response) {
    let h = r.headers();
    assert_eq!(h.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store, private"), "{:?}", r.url());
    assert!(h.get_all("vary").iter().any(|v| v.to_str().is_ok_and(|v| v.contains("Cookie"))), "{:?}", r.url());
}

/// `/admin/users/ID/ACTION/` of `name`.
async fn action_path(server: &TestServer, name: &str, action: &str) -> String {
    format!("/admin/users/{}/{action}/", user_id(server, name).await)
}

/// Opens the confirmation page of `action` on `target` as `staff`, checks its question, and
/// posts its form with `fields` (plus the page's CSRF token). Returns the POST's answer.
async fn act_with(
    server: &TestServer,
    staff: &Browser,
    target: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> Response {
    let path = action_path(server, target, action).await;
    let page = staff.client.get(server.url(&path)).send().await.expect("GET the confirmation page");
    assert_eq!(page.status(), StatusCode::OK, "{path}");
    assert_private(&page);
    let html = body(page).await;
    assert!(html.contains("Are you sure you want to "), "{html}");
    assert!(html.contains(&format!("<strong>{target}</strong>?")), "the question names {target}: {html}");
    let token = csrf_from(&html);
    let mut form = vec![("csrfmiddlewaretoken", token.as_str())];
    form.extend_from_slice(fields);
    post_form(server, &staff.client, &path, &form).await
}

/// As `act_with`, expecting the action done: a 302 back to the list.
async fn act(server: &TestServer, staff: &Browser, target: &str, action: &str) -> Response {
    let r = act_with(server, staff, target, action, &[]).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{action} {target}");
    assert_private(&r);
    r
}

/// The audit line of `staff` doing `action` to `target`, as the text log shows it.
async fn audit_line(server: &TestServer, action: &str, staff: &str, target: &str, target_id: i64) -> String {
    let staff_id = user_id(server, staff).await;
    format!("admin action action={action} staff={staff} staff_id={staff_id} user={target} user_id={target_id}")
}

/// Opens a tutorial socket as `b`.
async fn socket(server: &TestServer, b: &Browser) -> Ws {
    open(server, Some(b), TUTORIAL).await.expect("socket opens")
}

/// The usernames of the list's rows, in order.
fn rows(html: &str) -> Vec<String> {
    html.split("<tr data-username=\"").skip(1).map(|rest| rest.split('"').next().unwrap_or("").to_owned()).collect()
}

/// The HTML of `name`'s row.
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html.find(&format!("<tr data-username=\"{name}\"")).unwrap_or_else(|| panic!("{name}'s row: {html}"));
    let end = html[start..].find("</tr>").expect("row end");
    &html[start..start + end]
}

/// The `href` of the pager's `rel` link, if shown.
fn pager_link(html: &str, rel: &str) -> Option<String> {
    let at = html.find(&format!("rel=\"{rel}\""))?;
    let before = &html[..at];
    let href = before.rfind("href=\"")? + "href=\"".len();
    Some(before[href..].split('"').next().unwrap_or("").to_owned())
}

async fn get_html(server: &TestServer, b: &Browser, path: &str) -> String {
    let r = b.client.get(server.url(path)).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    assert_private(&r);
    body(r).await
}

#[tokio::test]
async fn anonymous_is_sent_to_log_in_and_non_staff_get_403() {
    let Scene { server, root, bob, .. } = scene().await;
    let anonymous = server.client();

    let r = anonymous.get(server.url("/admin/")).send().await.expect("GET");
    assert_eq!((r.status(), location(&r)), (StatusCode::FOUND, "/log_in/?next=/admin/"));
    assert_private(&r);
    let delete_root = action_path(&server, "root", "delete").await;
    let r = anonymous.get(server.url(&delete_root)).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(location(&r).starts_with("/log_in/?next=/admin/users/"), "{}", location(&r));

    // bob is logged in but not staff: a plain 403 that says so (and nothing about CSRF).
    for path in ["/admin/", "/admin/?q=r", delete_root.as_str()] {
        let r = bob.client.get(server.url(path)).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert_private(&r);
        let html = body(r).await;
        assert!(html.contains(NO_PERMISSION), "{path}: {html}");
        assert!(!html.contains("CSRF"), "{path}: {html}");
    }
    // A valid token does not help a non-staff POST, and nothing changes.
    let token = csrf(&server, &bob.client, "/log_out/").await;
    let r = post_form(&server, &bob.client, &delete_root, &[("csrfmiddlewaretoken", &token)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(body(r).await.contains(NO_PERMISSION));
    let stored = server.store().await.user_by_key("root").await.expect("query").expect("root is still there");
    assert!(stored.is_active && stored.is_staff);
    assert!(!server.logs().contains("admin action"), "no audit line for a refused request");

    // The header links to the admin pages for staff only.
    assert!(get_html(&server, &root, "/").await.contains(r#"<a href="/admin/">Admin</a>"#));
    assert!(!get_html(&server, &bob, "/").await.contains(r#"href="/admin/""#));
    // An unknown action, a bad id, an account that does not exist: 404.
    for path in ["/admin/users/1/nuke/", "/admin/users/x/delete/", "/admin/users/999999/delete/"] {
        let r = root.client.get(server.url(path)).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn deactivate_closes_the_users_sockets_with_1008_and_activate_lets_them_back() {
    let Scene { server, root, bob, bob_id } = scene().await;
    let (mut tutorial, mut v1) = (socket(&server, &bob).await, open(&server, Some(&bob), V1).await.expect("v1"));

    let r = act(&server, &root, "bob", "deactivate").await;
    assert_eq!(location(&r), "/admin/?q=bob");
    assert_eq!(close_code(&mut tutorial).await, Some(1008), "closed at once: account disabled");
    assert_eq!(close_code(&mut v1).await, Some(1008));
    server.wait_for_log(&audit_line(&server, "deactivate", "root", "bob", bob_id).await).await;

    // bob's session is over and his password no longer logs in.
    assert_eq!(bob.client.get(server.url("/")).send().await.expect("GET").status(), StatusCode::FOUND);
    assert_eq!(log_in(&server, &server.client(), "bob", GOOD_PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(open(&server, Some(&bob), TUTORIAL).await.err(), Some(403));
    // The list says what happened, once, and shows bob inactive with an "Activate" action.
    let html = get_html(&server, &root, location(&r)).await;
    assert!(html.contains("bob was deactivated."), "{html}");
    let bob_row = row(&html, "bob");
    assert!(bob_row.contains(r#"class="active">no<"#), "{bob_row}");
    assert!(bob_row.contains("/activate/") && !bob_row.contains("/deactivate/"), "{bob_row}");
    assert!(!get_html(&server, &root, "/admin/").await.contains("was deactivated"), "a notice is shown once");

    act(&server, &root, "bob", "activate").await;
    server.wait_for_log(&audit_line(&server, "activate", "root", "bob", bob_id).await).await;
    assert_eq!(log_in(&server, &bob.client, "bob", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    socket(&server, &bob).await;
}

#[tokio::test]
async fn force_log_out_ends_every_session_with_4001() {
    let Scene { server, root, bob: laptop, bob_id } = scene().await;
    let phone = server.browser();
    assert_eq!(log_in(&server, &phone.client, "bob", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    let (mut a, mut b) = (socket(&server, &laptop).await, socket(&server, &phone).await);

    act(&server, &root, "bob", "log-out").await;
    assert_eq!(close_code(&mut a).await, Some(4001), "logged out");
    assert_eq!(close_code(&mut b).await, Some(4001), "every session");
    server.wait_for_log(&audit_line(&server, "log-out", "root", "bob", bob_id).await).await;
    for browser in [&laptop, &phone] {
        let r = browser.client.get(server.url("/")).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::FOUND, "the session is gone");
    }
    // The account itself is untouched: bob logs in again.
    assert_eq!(log_in(&server, &laptop.client, "bob", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn set_password_shows_the_validators_errors_then_closes_sockets_with_4001() {
    const NEW_PASSWORD: &str = "another-Staple-battery-4";
    let Scene { server, root, bob, bob_id } = scene().await;
    let mut ws = socket(&server, &bob).await;
    let hash_before = server.store().await.user_by_id(bob_id).await.expect("query").expect("bob").password_hash;

    // Invalid forms: 200 with each field's errors, nothing changed.
    for (p1, p2, errors) in [
        ("", "", &["This field is required."][..]),
        (NEW_PASSWORD, "something-else-9", &["The two password fields didn\u{2019}t match."][..]),
        ("123", "123", &["This password is too short.", "This password is entirely numeric."][..]),
        ("password", "password", &["This password is too common."][..]),
    ] {
        let r = act_with(&server, &root, "bob", "set-password", &[("password1", p1), ("password2", p2)]).await;
        assert_eq!(r.status(), StatusCode::OK, "{p1:?}/{p2:?}");
        let html = body(r).await;
        for e in errors {
            assert!(html.contains(e), "{p1:?}/{p2:?}: {e:?} in {html}");
        }
        assert!(html.contains(r#"name="password1""#) && html.contains(r#"name="password2""#), "the form again");
    }
    let stored = server.store().await.user_by_id(bob_id).await.expect("query").expect("bob");
    assert_eq!(stored.password_hash, hash_before, "nothing changed");
    assert_eq!(bob.client.get(server.url("/")).send().await.expect("GET").status(), StatusCode::OK, "still in");

    let r =
        act_with(&server, &root, "bob", "set-password", &[("password1", NEW_PASSWORD), ("password2", NEW_PASSWORD)])
            .await;
    assert_eq!((r.status(), location(&r)), (StatusCode::FOUND, "/admin/?q=bob"));
    assert_eq!(close_code(&mut ws).await, Some(4001), "the socket was open through the invalid forms");
    server.wait_for_log(&audit_line(&server, "set-password", "root", "bob", bob_id).await).await;
    assert_eq!(log_in(&server, &server.client(), "bob", GOOD_PASSWORD).await.status(), StatusCode::OK, "old: no");
    assert_eq!(log_in(&server, &server.client(), "bob", NEW_PASSWORD).await.status(), StatusCode::FOUND, "new: yes");
    let logs = server.logs();
    assert!(!logs.contains(NEW_PASSWORD) && !logs.contains(GOOD_PASSWORD), "no password in the logs");
}

#[tokio::test]
async fn delete_closes_sockets_with_1008_and_the_account_is_gone() {
    let Scene { server, root, bob, bob_id } = scene().await;
    let mut ws = socket(&server, &bob).await;
    let path = action_path(&server, "bob", "delete").await;

    let r = act(&server, &root, "bob", "delete").await;
    assert_eq!(location(&r), "/admin/");
    assert_eq!(close_code(&mut ws).await, Some(1008));
    server.wait_for_log(&audit_line(&server, "delete", "root", "bob", bob_id).await).await;
    assert!(server.store().await.user_by_key("bob").await.expect("query").is_none(), "the account is gone");
    assert_eq!(log_in(&server, &server.client(), "bob", GOOD_PASSWORD).await.status(), StatusCode::OK);
    let html = get_html(&server, &root, "/admin/").await;
    assert!(html.contains("bob was deleted."), "{html}");
    assert_eq!(rows(&html), ["root"]);
    let r = root.client.get(server.url(&path)).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "no account to act on any more");
}

#[tokio::test]
async fn grant_and_revoke_staff_take_effect_at_once() {
    let Scene { server, root, bob, bob_id } = scene().await;
    let admin = |b: &Browser| b.client.get(server.url("/admin/")).send();
    assert_eq!(admin(&bob).await.expect("GET").status(), StatusCode::FORBIDDEN);

    act(&server, &root, "bob", "grant-staff").await;
    server.wait_for_log(&audit_line(&server, "grant-staff", "root", "bob", bob_id).await).await;
    assert_eq!(admin(&bob).await.expect("GET").status(), StatusCode::OK, "no new log in needed");
    assert!(get_html(&server, &bob, "/").await.contains(r#"<a href="/admin/">Admin</a>"#));
    // A staff member may act on another one: bob revokes nothing of his own, but may of root's.
    assert!(!row(&get_html(&server, &bob, "/admin/").await, "bob").contains("/revoke-staff/"));

    act(&server, &root, "bob", "revoke-staff").await;
    server.wait_for_log(&audit_line(&server, "revoke-staff", "root", "bob", bob_id).await).await;
    let r = admin(&bob).await.expect("GET");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "at once");
    assert!(body(r).await.contains(NO_PERMISSION));
    assert!(!server.store().await.user_by_id(bob_id).await.expect("query").expect("bob").is_staff);
}

#[tokio::test]
async fn a_staff_member_cannot_demote_deactivate_or_delete_themselves() {
    let server = TestServer::start().await;
    let root = staff_browser(&server, "root").await;
    let root_id = user_id(&server, "root").await;
    let mut ws = socket(&server, &root).await;

    // The list offers root none of the three on root's own row.
    let html = get_html(&server, &root, "/admin/").await;
    let own = row(&html, "root");
    assert!(own.contains(">you<"), "{own}");
    for action in ["/deactivate/", "/delete/", "/revoke-staff/"] {
        assert!(!own.contains(action), "{action} offered on one's own row: {own}");
    }
    let token = csrf_from(&html);
    for (action, message) in [
        ("revoke-staff", "You cannot remove your own staff status."),
        ("deactivate", "You cannot deactivate your own account."),
        ("delete", "You cannot delete your own account."),
    ] {
        let path = action_path(&server, "root", action).await;
        let r = root.client.get(server.url(&path)).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{action}");
        let page = body(r).await;
        assert!(page.contains(message), "{action}: {page}");
        assert!(!page.contains(&format!(r#"action="{path}""#)), "no form to submit: {page}");
        let r = post_form(&server, &root.client, &path, &[("csrfmiddlewaretoken", &token)]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{action}");
        assert!(body(r).await.contains(message), "{action}");
        assert!(!server.logs().contains(&format!("action={action} ")), "no audit line for a refused {action}");
    }
    server
        .wait_for_log(&format!(
            "admin action refused staff_id={root_id} reason=\"You cannot delete your own account.\""
        ))
        .await;
    let stored = server.store().await.user_by_id(root_id).await.expect("query").expect("root still exists");
    assert!(stored.is_active && stored.is_staff, "nothing changed");
    assert!(get_html(&server, &root, "/admin/").await.contains("<h1>Accounts</h1>"), "still staff, still in");

    // Another staff member may: the rule is about oneself.
    let ops = staff_browser(&server, "ops").await;
    act(&server, &ops, "root", "revoke-staff").await;
    server.wait_for_log(&audit_line(&server, "revoke-staff", "ops", "root", root_id).await).await;
    // root's socket stayed open through all of it (revoking staff closes nothing): a log out shows it.
    act(&server, &ops, "root", "log-out").await;
    assert_eq!(close_code(&mut ws).await, Some(4001));
}

#[tokio::test]
async fn admin_actions_need_the_csrf_token() {
    let Scene { server, root, bob, .. } = scene().await;
    let mut ws = socket(&server, &bob).await;
    let path = action_path(&server, "bob", "deactivate").await;
    // Load a page so root has a csrftoken cookie, then post without the field, or a wrong one.
    get_html(&server, &root, &path).await;
    for fields in [&[][..], &[("csrfmiddlewaretoken", "wrongwrongwrongwrongwrongwrong12")][..]] {
        let r = post_form(&server, &root.client, &path, fields).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let html = body(r).await;
        assert!(html.contains("CSRF verification failed"), "{html}");
    }
    assert!(server.store().await.user_by_key("bob").await.expect("query").expect("bob").is_active, "nothing changed");
    assert!(!server.logs().contains("admin action"), "no audit line");
    // The socket was never closed: the next close it sees is a log out's 4001, not 1008.
    act(&server, &root, "bob", "log-out").await;
    assert_eq!(close_code(&mut ws).await, Some(4001));
}

#[tokio::test]
async fn the_list_pages_by_username_searches_by_prefix_and_shows_presence() {
    let server = TestServer::start_with(&["--page-size", "2"]).await;
    let root = staff_browser(&server, "root").await;
    let store = server.store().await;
    for name in ["cat", "Ben", "amy", "bea", "Anna"] {
        let key = name.to_lowercase();
        let new = NewUser {
            username: name,
            username_key: &key,
            password_hash: "unusable",
            is_staff: false,
            is_active: true,
            date_joined: 1_764_000_000_000,
            last_login: None,
        };
        store.create_user(&new).await.expect("create");
    }
    let (_a, _b) = (socket(&server, &root).await, socket(&server, &root).await);

    // Forward, by keyset: username order, case-insensitively.
    let first = get_html(&server, &root, "/admin/").await;
    assert_eq!(rows(&first), ["amy", "Anna"]);
    assert_eq!(pager_link(&first, "prev"), None);
    let second_url = pager_link(&first, "next").expect("a next page");
    assert_eq!(second_url, "/admin/?after=anna");
    let second = get_html(&server, &root, &second_url).await;
    assert_eq!(rows(&second), ["bea", "Ben"]);
    let third = get_html(&server, &root, &pager_link(&second, "next").expect("a third page")).await;
    assert_eq!(rows(&third), ["cat", "root"]);
    assert_eq!(pager_link(&third, "next"), None, "the last page");
    // root's row: Online with the two sockets open on this node; the others never seen.
    let own = row(&third, "root");
    assert!(own.contains(">Online<") && own.contains(r#"class="sockets">2<"#), "{own}");
    let cat = row(&third, "cat");
    assert!(cat.contains(">Offline<") && cat.contains(r#"class="sockets">0<"#) && cat.contains(">never<"), "{cat}");
    assert!(cat.contains("2025-11-24"), "date joined: {cat}");
    // Backward.
    let back = get_html(&server, &root, &pager_link(&third, "prev").expect("prev")).await;
    assert_eq!(rows(&back), ["bea", "Ben"]);
    let back = get_html(&server, &root, &pager_link(&back, "prev").expect("prev")).await;
    assert_eq!(rows(&back), ["amy", "Anna"]);
    assert_eq!(pager_link(&back, "prev"), None, "the first page again");

    // Search: a case-insensitive prefix, paged within it.
    let found = get_html(&server, &root, "/admin/?q=B").await;
    assert_eq!(rows(&found), ["bea", "Ben"]);
    assert_eq!(pager_link(&found, "next"), None);
    let found = get_html(&server, &root, "/admin/?q=a").await;
    assert_eq!(rows(&found), ["amy", "Anna"]);
    assert_eq!(pager_link(&found, "next"), None, "exactly one page of a's");
    assert_eq!(rows(&get_html(&server, &root, "/admin/?q=an").await), ["Anna"]);
    let none = get_html(&server, &root, "/admin/?q=zz").await;
    assert!(rows(&none).is_empty() && none.contains("No accounts match “zz”."), "{none}");
    let next = pager_link(&get_html(&server, &root, "/admin/?q=%20r").await, "next");
    assert_eq!(next, None, "trimmed q: root alone");

    // Bad input: a clear 400.
    let long = "a".repeat(151);
    for path in [
        "/admin/?after=a&before=b".to_owned(),
        format!("/admin/?q={long}"),
        format!("/admin/?after={}", "a".repeat(601)),
    ] {
        let r = root.client.get(server.url(&path)).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
    }
}

/// With `--log-format json`, an action's audit line is one object of target `roster::audit`
/// saying who, what and whom, with no password in it.
#[tokio::test]
async fn the_audit_line_in_json_says_who_what_and_whom() {
    const NEW_PASSWORD: &str = "json-Audit-staple-6";
    let Scene { server, root, bob_id, .. } = scene_with(&["--log-format", "json"]).await;
    let fields = [("password1", NEW_PASSWORD), ("password2", NEW_PASSWORD)];
    assert_eq!(act_with(&server, &root, "bob", "set-password", &fields).await.status(), StatusCode::FOUND);
    server.wait_for_log(r#""target":"roster::audit""#).await;

    let logs = server.logs();
    let audit: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "roster::audit")
        .collect();
    assert_eq!(audit.len(), 1, "one line per action: {audit:?}");
    let line = &audit[0];
    let root_id = user_id(&server, "root").await;
    let expected = serde_json::json!({
        "level": "INFO", "message": "admin action", "action": "set-password",
        "staff": "root", "staff_id": root_id, "user": "bob", "user_id": bob_id,
    });
    for (key, value) in expected.as_object().expect("an object") {
        assert_eq!(&line[key], value, "{key} in {line}");
    }
    assert!(!logs.contains(NEW_PASSWORD) && !logs.contains(GOOD_PASSWORD), "no password in the logs");
}
