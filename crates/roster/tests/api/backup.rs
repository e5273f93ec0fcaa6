//! `roster backup` of a live SQLite database while users sign up, then serving from the copy;
//! `roster copy` into a private PostgreSQL, then logging in there with a copied password and a
//! copied session cookie. All through the real binary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use roster::store::{NewUser, Store, User};

use crate::helpers::*;
use crate::pg;

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Waits until `store` holds at least `n` users.
async fn wait_for_users(store: &Store, n: u64) {
    let start = tokio::time::Instant::now();
    loop {
        let count = store.count_users().await.expect("count users");
        if count >= n {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "{count} users, waiting for {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn backup_while_signing_up_then_serve_from_it() {
    let server = TestServer::start().await;
    let live = server.store().await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("backup.db");
    let file_arg = file.to_str().expect("utf-8 path");

    // One person signs up user after user, while the backup is taken.
    let stop = AtomicBool::new(false);
    let writer = async {
        let client = server.client();
        let mut signed_up = 0;
        while !stop.load(Ordering::Relaxed) {
            let r = sign_up(&server, &client, &format!("writer{signed_up}"), GOOD_PASSWORD).await;
            assert_eq!(r.status(), StatusCode::FOUND, "sign-up {signed_up} during the backup");
            signed_up += 1;
        }
        signed_up
    };
    let backup = async {
        wait_for_users(&live, 3).await;
        let out = server.cli(&["backup", file_arg], "").await;
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("Backed up"), "{}", text(&out));
        // The sign-ups go on after the backup, so it was taken while they ran.
        let at_backup = Store::connect(&format!("sqlite://{file_arg}")).await.expect("open").count_users().await;
        wait_for_users(&live, at_backup.expect("count") + 2).await;
        stop.store(true, Ordering::Relaxed);
    };
    let (signed_up, ()) = tokio::join!(writer, backup);

    // The copy is whole and consistent: a prefix of the sign-ups, in order.
    let copy = Store::connect(&format!("sqlite://{file_arg}")).await.expect("open the backup");
    let Store::Sqlite(pool) = &copy else { unreachable!() };
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(pool).await.expect("check");
    assert_eq!(check, "ok");
    let users = copy.list_all(0, 10_000).await.expect("list");
    assert!(users.len() >= 3 && users.len() < signed_up, "{} of {signed_up} users in the backup", users.len());
    for (i, u) in users.iter().enumerate() {
        assert_eq!(u.username, format!("writer{i}"));
    }
    copy.close().await;

    // Never overwritten: a second backup to the same file fails and leaves it as it was.
    let before = std::fs::read(&file).expect("read backup");
    let out = server.cli(&["backup", file_arg], "").await;
    assert!(!out.status.success() && text(&out).contains("already exists"), "{}", text(&out));
    assert_eq!(std::fs::read(&file).expect("read backup"), before);
    assert!(server.stop().await.success());

    // Restore: serve from the backup file, and the last user in it logs in.
    let restored =
        TestServer::start_on(tempfile::tempdir().expect("tmp"), format!("sqlite://{file_arg}"), "127.0.0.1:0", &[])
            .await;
    let last = &users.last().expect("users").username;
    assert_eq!(log_in(&restored, &restored.client(), last, GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    let missing = format!("writer{}", users.len());
    assert_eq!(log_in(&restored, &restored.client(), &missing, GOOD_PASSWORD).await.status(), StatusCode::OK);
    assert!(restored.stop().await.success());
}

#[tokio::test]
async fn backup_refuses_postgres_and_missing_databases() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("backup.db");
    let file_arg = file.to_str().expect("utf-8 path");
    let out = run_cli("postgres://roster:pg-Secret-1@127.0.0.1:1/roster", &["backup", file_arg], "").await;
    assert!(!out.status.success());
    assert!(text(&out).contains("pg_dump") && text(&out).contains("postgres://roster:***@"), "{}", text(&out));
    assert!(!text(&out).contains("pg-Secret-1"));
    let missing = format!("sqlite://{}", dir.path().join("missing.db").display());
    let out = run_cli(&missing, &["backup", file_arg], "").await;
    assert!(!out.status.success() && text(&out).contains("no SQLite database"), "{}", text(&out));
    assert!(!file.exists() && !dir.path().join("missing.db").exists(), "nothing created");
}

/// Every user and session in `store`, in id order: what must not change between copies.
async fn contents(store: &Store) -> (Vec<User>, Vec<(String, i64, i64, i64)>) {
    let users = store.list_all(0, 10_000).await.expect("users");
    let Store::Postgres(pool) = store else { panic!("the copy target is PostgreSQL") };
    let sessions = sqlx::query_as("SELECT id_hash, user_id, created_at, expires_at FROM sessions ORDER BY id_hash")
        .fetch_all(pool)
        .await
        .expect("sessions");
    (users, sessions)
}

#[tokio::test]
async fn copy_to_postgres_then_log_in_there() {
    let data = tempfile::tempdir().expect("tmp");
    let sqlite = format!("sqlite://{}", data.path().join("roster.db").display());
    let server = TestServer::start_on(tempfile::tempdir().expect("tmp"), sqlite.clone(), "127.0.0.1:0", &[]).await;
    let alice = user_browser(&server, "alice").await;
    user_client(&server, "bob").await;
    user_client(&server, "carol").await;
    let out = server.cli(&["user", "delete", "carol"], "").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(server.stop().await.success());

    // A password in the target URL (the private cluster trusts everyone, so any will do) is
    // never printed.
    let pg_url = pg::fresh_database_url().await;
    let to = pg_url.replacen("postgres@", "postgres:pg-Secret-2@", 1);
    let mut printed = String::new();
    let out = run_cli(&sqlite, &["copy", "--to", &to], "").await;
    printed += &text(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Copied 2 user(s) and 2 session(s)"), "{}", text(&out));
    assert!(text(&out).contains("the next new user gets id 4"), "carol's id is not given again: {}", text(&out));
    let target = Store::connect(&pg_url).await.expect("open the target");
    let copied = contents(&target).await;
    assert_eq!(copied.0.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);

    // Again without --merge: refused, target unchanged.
    let out = run_cli(&sqlite, &["copy", "--to", &to], "").await;
    printed += &text(&out);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("already holds 2 user(s)") && text(&out).contains("--merge"), "{}", text(&out));
    assert_eq!(contents(&target).await, copied);
    // With --merge: the same target again (idempotent).
    for _ in 0..2 {
        let out = run_cli(&sqlite, &["copy", "--to", &to, "--merge"], "").await;
        printed += &text(&out);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(contents(&target).await, copied);
    }
    assert!(printed.contains("postgres:***@") && !printed.contains("pg-Secret-2"), "{printed}");

    // Serve from PostgreSQL: alice's session cookie still works, bob logs in with his password,
    // and a new sign-up gets the next id.
    let server = TestServer::start_on(tempfile::tempdir().expect("tmp"), pg_url.clone(), "127.0.0.1:0", &[]).await;
    let page = alice.client.get(server.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), StatusCode::OK, "the copied session is valid");
    assert!(page.text().await.expect("body").contains("data-username=\"bob\""));
    assert_eq!(log_in(&server, &server.client(), "bob", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    assert_eq!(sign_up(&server, &server.client(), "dave", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    assert_eq!(target.user_by_key("dave").await.expect("q").expect("dave").id, 4);
    assert!(server.stop().await.success());
}

#[tokio::test]
async fn copy_with_merge_refuses_a_username_held_by_another_id() {
    let data = tempfile::tempdir().expect("tmp");
    let sqlite = format!("sqlite://{}", data.path().join("roster.db").display());
    for name in ["first", "frank"] {
        let out = run_cli(&sqlite, &["user", "create", name], &format!("{GOOD_PASSWORD}\n")).await;
        assert!(out.status.success(), "{}", text(&out));
    }
    let pg_url = pg::fresh_database_url().await;
    let target = Store::connect(&pg_url).await.expect("open the target");
    target.migrate().await.expect("migrate");
    let frank = NewUser {
        username: "Frank",
        username_key: "frank",
        password_hash: "x",
        is_staff: false,
        is_active: true,
        date_joined: now_ms(),
        last_login: None,
    };
    assert_eq!(target.create_user(&frank).await.expect("create").id, 1);
    let before = contents(&target).await;
    let out = run_cli(&sqlite, &["copy", "--to", &pg_url, "--merge"], "").await;
    assert!(!out.status.success());
    assert!(text(&out).contains("\"Frank\" belongs to user id 2 in the source but to id 1"), "{}", text(&out));
    assert!(text(&out).contains("nothing was copied"), "{}", text(&out));
    assert_eq!(contents(&target).await, before, "the target is unchanged");
}
