//! The store conformance story, run against SQLite (a temp file) and a private PostgreSQL
//! cluster (see `testkit::pg`). Both backends must tell the same story.

use testkit::pg;

use std::path::{Component, Path};

use roster::store::{KeyBound, KeyPage, ListQuery, NewUser, Store, StoreError, User};

const NEVER_SEEN: Option<i64> = None;

#[tokio::test]
async fn store_story_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.db");
    let url = format!("sqlite://{}", path.display()); // sqlite:///abs/path.db
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(path.exists(), "the database file is created on connect");
    store_story(store.clone()).await;
    bulk_prefix_story(&store).await;
    store.close().await;

    // Reopening the file keeps the data, and migrating again changes nothing.
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.user_by_key("bob").await.unwrap().is_some());
    store.close().await;
}

#[tokio::test]
async fn sqlite_relative_url_is_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let relative = relative_from_cwd(&dir.path().join("rel.db"));
    assert!(relative.is_relative());
    let store = Store::connect(&format!("sqlite://{}", relative.display())).await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert!(dir.path().join("rel.db").exists());
    store.close().await;
}

#[tokio::test]
async fn store_story_postgres() {
    let url = pg::fresh_database_url().await;
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    store_story(store.clone()).await;
    bulk_prefix_story(&store).await;
    store.close().await;
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["mysql://u:pw@h/d", "roster.db", "http://x"] {
        match Store::connect(url).await {
            Err(StoreError::UnsupportedUrl(msg)) => assert!(!msg.contains("pw@"), "{msg}"),
            other => panic!("{url}: expected UnsupportedUrl, got {other:?}"),
        }
    }
}

fn new_user<'a>(username: &'a str, key: &'a str) -> NewUser<'a> {
    NewUser {
        username,
        username_key: key,
        password_hash: "hash-0",
        is_staff: false,
        is_active: true,
        date_joined: 1_000,
        last_login: None,
    }
}

fn names(users: &[User]) -> Vec<&str> {
    users.iter().map(|u| u.username.as_str()).collect()
}

async fn list(store: &Store, prefix: Option<&str>, exclude: &[i64], offset: u64, limit: u64) -> Vec<String> {
    let page = store.list_users(&ListQuery { prefix, exclude, offset, limit }).await.unwrap();
    page.into_iter().map(|u| u.username).collect()
}

/// A page of the admin pages' keyset paging, as usernames.
async fn key_page(store: &Store, prefix: Option<&str>, from: KeyBound<'_>, limit: u64) -> Vec<String> {
    let page = store.users_by_key_page(&KeyPage { prefix, from, limit }).await.unwrap();
    page.into_iter().map(|u| u.username).collect()
}

/// The whole story on an empty database.
async fn store_story(store: Store) {
    store.ping().await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap(); // idempotent
    assert_eq!(store.count_users().await.unwrap(), 0);
    assert!(store.all_accounts().await.unwrap().is_empty());

    // --- users
    let ann = store
        .create_user(&NewUser { is_staff: true, last_login: Some(1_500), ..new_user("Ann", "ann") })
        .await
        .unwrap();
    assert_eq!(
        (ann.username.as_str(), ann.username_key.as_str(), ann.is_staff, ann.is_active),
        ("Ann", "ann", true, true)
    );
    assert_eq!((ann.date_joined, ann.last_login, ann.last_seen), (1_000, Some(1_500), NEVER_SEEN));
    let bob = store.create_user(&new_user("bob", "bob")).await.unwrap();
    let carol = store.create_user(&new_user("Carol", "carol")).await.unwrap();
    assert!(ann.id < bob.id && bob.id < carol.id);
    assert_eq!(store.count_users().await.unwrap(), 3);

    // Same name in another case: taken, and nothing changed.
    let dup = store.create_user(&NewUser { password_hash: "other", ..new_user("ANN", "ann") }).await;
    assert!(matches!(dup, Err(StoreError::UsernameTaken)), "{dup:?}");
    assert_eq!(store.count_users().await.unwrap(), 3);
    assert_eq!(store.user_by_key("ann").await.unwrap().unwrap(), ann);

    // --- lookups
    assert_eq!(store.user_by_id(bob.id).await.unwrap().unwrap(), bob);
    assert_eq!(store.user_by_id(-1).await.unwrap(), None);
    assert_eq!(store.user_by_key("carol").await.unwrap().unwrap(), carol);
    assert_eq!(store.user_by_key("Carol").await.unwrap(), None, "keys are exact");
    assert_eq!(store.user_by_key("nobody").await.unwrap(), None);
    let first_two = store.list_all(0, 2).await.unwrap();
    assert_eq!(names(&first_two), ["Ann", "bob"]);
    let rest = store.list_all(first_two[1].id, 10).await.unwrap();
    assert_eq!(names(&rest), ["Carol"]);
    let by_id = store.users_by_id(&[carol.id, ann.id, 999_999]).await.unwrap();
    assert_eq!(names(&by_id), ["Ann", "Carol"]);
    assert!(store.users_by_id(&[]).await.unwrap().is_empty());

    // --- updates
    assert!(store.set_password_hash(bob.id, "hash-1").await.unwrap());
    assert_eq!(store.user_by_id(bob.id).await.unwrap().unwrap().password_hash, "hash-1");
    assert!(!store.set_password_hash(999_999, "x").await.unwrap());
    assert!(store.set_active(bob.id, false).await.unwrap());
    assert!(store.set_staff(bob.id, true).await.unwrap());
    let b = store.user_by_id(bob.id).await.unwrap().unwrap();
    assert_eq!((b.is_active, b.is_staff), (false, true));
    assert!(store.set_active(bob.id, true).await.unwrap());
    assert!(store.set_staff(bob.id, false).await.unwrap());
    assert!(!store.set_active(999_999, true).await.unwrap());
    assert!(!store.set_staff(999_999, true).await.unwrap());
    store.record_login(bob.id, 2_000).await.unwrap();
    store.record_login(999_999, 2_000).await.unwrap();
    assert_eq!(store.user_by_id(bob.id).await.unwrap().unwrap().last_login, Some(2_000));

    // --- sessions
    store.create_session("s1", ann.id, 100, 2_000).await.unwrap();
    store.create_session("s2", ann.id, 100, 3_000).await.unwrap();
    store.create_session("s3", bob.id, 100, 1_500).await.unwrap();
    assert_eq!(store.session_user("s1", 1_000).await.unwrap().unwrap().id, ann.id);
    assert_eq!(store.session_user("s3", 1_499).await.unwrap().unwrap().id, bob.id);
    assert_eq!(store.session_user("s1", 2_000).await.unwrap(), None, "expired at expires_at");
    assert_eq!(store.session_user("nope", 0).await.unwrap(), None);
    let until = store.session_user_until("s1", 1_000).await.unwrap().map(|(u, expires)| (u.id, expires));
    assert_eq!(until, Some((ann.id, 2_000)), "with the session's expiry");
    // The sessions of open sockets, checked in one go: existing, unexpired, of active users.
    let asked: Vec<String> = ["s1", "s2", "s3", "nope"].map(String::from).to_vec();
    let live = store.live_sessions(&asked, 1_600).await.unwrap();
    assert_eq!(live, ["s1", "s2"].map(String::from).into(), "s3 expired at 1_500, nope never was");
    assert!(store.set_active(ann.id, false).await.unwrap());
    assert!(store.live_sessions(&asked, 0).await.unwrap().iter().all(|h| h == "s3"), "inactive: not live");
    assert!(store.set_active(ann.id, true).await.unwrap());
    assert!(store.live_sessions(&[], 0).await.unwrap().is_empty());
    let many: Vec<String> = (0..12_000).map(|i| format!("{i:064x}")).chain(["s2".to_owned()]).collect();
    assert_eq!(store.live_sessions(&many, 0).await.unwrap(), ["s2"].map(String::from).into(), "chunked");
    assert!(store.create_session("s1", bob.id, 0, 1).await.is_err(), "hash is the key");
    assert_eq!(store.delete_session("s1").await.unwrap(), Some(ann.id));
    assert_eq!(store.delete_session("s1").await.unwrap(), None);
    assert_eq!(store.session_user("s1", 0).await.unwrap(), None);
    store.create_session("s4", ann.id, 100, 5_000).await.unwrap();
    let mut gone = store.delete_user_sessions(ann.id).await.unwrap();
    gone.sort();
    assert_eq!(gone, ["s2", "s4"]);
    assert!(store.delete_user_sessions(ann.id).await.unwrap().is_empty());
    assert_eq!(store.session_user("s3", 0).await.unwrap().unwrap().id, bob.id, "others untouched");
    store.create_session("s5", bob.id, 100, 1_000).await.unwrap();
    assert_eq!(store.purge_expired_sessions(1_200).await.unwrap(), 1); // s5; s3 lives to 1_500
    assert_eq!(store.session_user("s3", 1_200).await.unwrap().unwrap().id, bob.id);
    assert_eq!(store.purge_expired_sessions(1_500).await.unwrap(), 1); // s3
    assert_eq!(store.purge_expired_sessions(1_500).await.unwrap(), 0);

    // --- cascade: deleting a user deletes their sessions
    store.create_session("c1", carol.id, 100, 9_000).await.unwrap();
    assert!(store.delete_user(carol.id).await.unwrap());
    assert!(!store.delete_user(carol.id).await.unwrap());
    assert_eq!(store.session_user("c1", 0).await.unwrap(), None);
    assert_eq!(store.delete_session("c1").await.unwrap(), None, "the row went with the user");
    assert_eq!(store.user_by_id(carol.id).await.unwrap(), None);
    assert_eq!(store.count_users().await.unwrap(), 2);
    // The key is free again.
    let carol = store.create_user(&new_user("carol", "carol")).await.unwrap();

    // --- last seen, in batches
    store.set_last_seen(&[]).await.unwrap();
    store.set_last_seen(&[(ann.id, 100), (bob.id, 300), (ann.id, 200), (999_999, 1)]).await.unwrap();
    assert_eq!(store.user_by_id(ann.id).await.unwrap().unwrap().last_seen, Some(200));
    assert_eq!(store.user_by_id(bob.id).await.unwrap().unwrap().last_seen, Some(300));
    store.set_last_seen(&[(bob.id, 50)]).await.unwrap();
    assert_eq!(
        store.user_by_id(bob.id).await.unwrap().unwrap().last_seen,
        Some(300),
        "last_seen never moves backwards"
    );
    assert_eq!(store.user_by_id(carol.id).await.unwrap().unwrap().last_seen, NEVER_SEEN);

    // --- every account at once (the presence hub's directory)
    let mut all = store.all_accounts().await.unwrap();
    all.sort_by_key(|a| a.id);
    let rows: Vec<(&str, &str, Option<i64>)> =
        all.iter().map(|a| (a.username.as_str(), a.username_key.as_str(), a.last_seen)).collect();
    assert_eq!(rows, [("Ann", "ann", Some(200)), ("bob", "bob", Some(300)), ("carol", "carol", NEVER_SEEN)]);

    // --- the account reconciler's check: only the gone or inactive come back
    assert!(store.set_active(bob.id, false).await.unwrap());
    let mut odd = store.gone_or_inactive(&[ann.id, bob.id, 999_999, carol.id]).await.unwrap();
    odd.sort();
    assert_eq!(odd, [(bob.id, true), (999_999, false)]);
    assert!(store.set_active(bob.id, true).await.unwrap());
    assert!(store.gone_or_inactive(&[ann.id, bob.id]).await.unwrap().is_empty());
    assert!(store.gone_or_inactive(&[]).await.unwrap().is_empty());

    // --- the list: last_seen DESC, never-seen last, then id
    let pct = store.create_user(&new_user("a%b", "a%b")).await.unwrap();
    store.create_user(&new_user("axb", "axb")).await.unwrap();
    store.create_user(&new_user("a_c", "a_c")).await.unwrap();
    store.create_user(&new_user("azc", "azc")).await.unwrap();
    store.create_user(&new_user("a\\q", "a\\q")).await.unwrap();
    let zed = store.create_user(&new_user("Zed", "zed")).await.unwrap();
    store.set_last_seen(&[(pct.id, 200), (zed.id, 1)]).await.unwrap();
    let everyone = ["bob", "Ann", "a%b", "Zed", "carol", "axb", "a_c", "azc", "a\\q"];
    assert_eq!(list(&store, None, &[], 0, 100).await, everyone);
    assert_eq!(list(&store, Some(""), &[], 0, 100).await, everyone, "empty prefix = none");
    assert_eq!(list(&store, None, &[], 1, 2).await, ["Ann", "a%b"]);
    assert_eq!(list(&store, None, &[], 8, 5).await, ["a\\q"]);
    assert!(list(&store, None, &[], 9, 5).await.is_empty());
    assert!(list(&store, None, &[], 0, 0).await.is_empty());
    assert_eq!(list(&store, None, &[], 0, u64::MAX).await, everyone);
    assert_eq!(list(&store, None, &[bob.id, zed.id, 424_242], 0, 4).await, ["Ann", "a%b", "carol", "axb"]);
    // Prefix: a case-insensitive key prefix, with LIKE wildcards taken literally.
    assert_eq!(list(&store, Some("a"), &[], 0, 100).await, ["Ann", "a%b", "axb", "a_c", "azc", "a\\q"]);
    assert_eq!(list(&store, Some("a%"), &[], 0, 100).await, ["a%b"]);
    assert_eq!(list(&store, Some("a_"), &[], 0, 100).await, ["a_c"]);
    assert_eq!(list(&store, Some("a\\"), &[], 0, 100).await, ["a\\q"]);
    assert_eq!(list(&store, Some("an"), &[], 0, 100).await, ["Ann"]);
    assert_eq!(list(&store, Some("a"), &[ann.id], 1, 2).await, ["axb", "a_c"]);
    assert!(list(&store, Some("q"), &[], 0, 100).await.is_empty());

    // --- the admin pages: keyset pages in username_key (code point) order, always ascending
    use KeyBound::{After, Before, Start};
    assert_eq!(key_page(&store, None, Start, 4).await, ["a%b", "a\\q", "a_c", "Ann"]);
    assert_eq!(key_page(&store, None, After("ann"), 4).await, ["axb", "azc", "bob", "carol"]);
    assert_eq!(key_page(&store, None, After("carol"), 4).await, ["Zed"]);
    assert!(key_page(&store, None, After("zed"), 4).await.is_empty());
    assert_eq!(key_page(&store, None, After("b"), 9).await, ["bob", "carol", "Zed"], "a bound needs no row");
    assert_eq!(key_page(&store, None, Before("axb"), 2).await, ["a_c", "Ann"], "the last two before");
    assert!(key_page(&store, None, Before("a%b"), 2).await.is_empty());
    assert!(key_page(&store, None, Start, 0).await.is_empty());
    assert_eq!(key_page(&store, Some(""), Start, 2).await, ["a%b", "a\\q"], "empty prefix = none");
    assert_eq!(key_page(&store, Some("a"), Start, 3).await, ["a%b", "a\\q", "a_c"]);
    assert_eq!(key_page(&store, Some("a"), After("a_c"), 9).await, ["Ann", "axb", "azc"]);
    assert_eq!(key_page(&store, Some("a"), Before("axb"), 2).await, ["a_c", "Ann"]);
    assert_eq!(key_page(&store, Some("a_"), Start, 9).await, ["a_c"], "no wildcards");
    assert_eq!(key_page(&store, Some("a%"), Start, 9).await, ["a%b"]);
    assert!(key_page(&store, Some("b"), After("bob"), 9).await.is_empty());
    assert!(key_page(&store, Some("q"), Start, 9).await.is_empty());
}

/// Enough users sharing a prefix for `list_users` to take its "walk the list order" path, with
/// look-alikes that only an unescaped `_` would match. Checked against a sort done here.
async fn bulk_prefix_story(store: &Store) {
    const BULK: i64 = 6_000; // above the store's narrow-prefix threshold (5,000)
    let last_seen = |i: i64| (i % 5 != 0).then_some((i * 7_919) % 10_007);
    match store {
        Store::Sqlite(pool) => {
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
                 INSERT INTO users (username, username_key, password_hash, date_joined, last_seen) \
                 SELECT printf('b_%05d', i), printf('b_%05d', i), 'h', 0, \
                        CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 7919) % 10007 END FROM n",
            )
            .bind(BULK)
            .execute(pool)
            .await
            .unwrap();
        }
        Store::Postgres(pool) => {
            sqlx::query(
                "INSERT INTO users (username, username_key, password_hash, date_joined, last_seen) \
                 SELECT format('b_%s', lpad(i::text, 5, '0')), format('b_%s', lpad(i::text, 5, '0')), 'h', 0, \
                        CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 7919) % 10007 END \
                 FROM generate_series(1, $1::BIGINT) AS i",
            )
            .bind(BULK)
            .execute(pool)
            .await
            .unwrap();
        }
    }
    // Look-alikes seen most recently: they would head the page if `_` were a wildcard.
    let bx = store.create_user(&new_user("bx00001", "bx00001")).await.unwrap();
    store.set_last_seen(&[(bx.id, 1_000_000)]).await.unwrap();

    let mut expected: Vec<(Option<i64>, i64)> = (1..=BULK).map(|i| (last_seen(i), i)).collect();
    // last_seen DESC with None last, then the insertion order (= id order).
    expected.sort_by(|a, b| b.0.is_some().cmp(&a.0.is_some()).then(b.0.cmp(&a.0)).then(a.1.cmp(&b.1)));
    let expected_names = |from: usize, n: usize| -> Vec<String> {
        expected[from..from + n].iter().map(|(_, i)| format!("b_{i:05}")).collect()
    };

    // Broad prefix (6,000 matches).
    assert_eq!(list(store, Some("b_"), &[], 0, 50).await, expected_names(0, 50));
    assert_eq!(list(store, Some("b_"), &[], 4_790, 20).await, expected_names(4_790, 20), "into the never-seen tail");
    // Excluding the first two of the order shifts the page by two.
    let first_two =
        store.list_users(&ListQuery { prefix: Some("b_"), exclude: &[], offset: 0, limit: 2 }).await.unwrap();
    let ids: Vec<i64> = first_two.iter().map(|u| u.id).collect();
    assert_eq!(list(store, Some("b_"), &ids, 0, 10).await, expected_names(2, 10));
    // Narrow prefix (10 matches: b_0001x and b_00010..): same order rules.
    let mut narrow: Vec<(Option<i64>, i64)> =
        expected.iter().copied().filter(|(_, i)| format!("{i:05}").starts_with("0001")).collect();
    narrow.truncate(100);
    let narrow_names: Vec<String> = narrow.iter().map(|(_, i)| format!("b_{i:05}")).collect();
    assert_eq!(list(store, Some("b_0001"), &[], 0, 100).await, narrow_names);
    // Without a prefix the look-alike heads the list.
    assert_eq!(list(store, None, &[], 0, 1).await, ["bx00001"]);

    // Keyset pages deep into 6,000 keys, both ways, and the prefix's end.
    use KeyBound::{After, Before};
    assert_eq!(key_page(store, Some("b_"), After("b_02999"), 2).await, ["b_03000", "b_03001"]);
    assert_eq!(key_page(store, Some("b_"), Before("b_00003"), 5).await, ["b_00001", "b_00002"]);
    assert_eq!(key_page(store, Some("b_"), After("b_05999"), 5).await, ["b_06000"], "bx00001 is past the prefix");
    assert_eq!(key_page(store, Some("b"), After("b_06000"), 5).await, ["bob", "bx00001"]);
}

/// `target` (absolute) as a path relative to the current directory, through `..` up to `/`.
fn relative_from_cwd(target: &Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let depth = cwd.components().filter(|c| matches!(c, Component::Normal(_))).count();
    let mut rel = std::path::PathBuf::new();
    for _ in 0..depth {
        rel.push("..");
    }
    rel.push(target.strip_prefix("/").unwrap());
    rel
}
