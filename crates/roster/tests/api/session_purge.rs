//! Expired sessions leave the `sessions` table: once at start-up, then every
//! `--session-purge-interval`. Checked in the real database the server writes.

use reqwest::StatusCode;
use roster::store::{NewUser, Store};

use crate::helpers::*;

/// Rows in the `sessions` table, and whether the one with `id_hash` is among them.
async fn sessions(store: &Store, id_hash: &str) -> (i64, bool) {
    let Store::Sqlite(pool) = store else { panic!("the test servers use SQLite") };
    let count = sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(pool).await.expect("count sessions");
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM sessions WHERE id_hash = $1")
        .bind(id_hash)
        .fetch_optional(pool)
        .await
        .expect("find session");
    (count, found.is_some())
}

/// Polls until `sessions(store, id_hash)` is `want`, or panics at the deadline.
async fn wait_for_sessions(store: &Store, id_hash: &str, want: (i64, bool)) {
    let start = tokio::time::Instant::now();
    loop {
        let now = sessions(store, id_hash).await;
        if now == want {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "sessions table is {now:?}, expected {want:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn expired_sessions_are_purged_at_start_up() {
    let data = tempfile::tempdir().expect("tmp");
    let db_url = format!("sqlite://{}", data.path().join("roster.db").display());
    let store = Store::connect(&db_url).await.expect("open");
    store.migrate().await.expect("migrate");
    let user = store
        .create_user(&NewUser {
            username: "sleeper",
            username_key: "sleeper",
            password_hash: "unused",
            is_staff: false,
            is_active: true,
            date_joined: now_ms(),
            last_login: None,
        })
        .await
        .expect("create user");
    let now = now_ms();
    store.create_session("expired", user.id, now - 20_000, now - 10_000).await.expect("session");
    store.create_session("live", user.id, now, now + 3_600_000).await.expect("session");
    assert_eq!(sessions(&store, "expired").await, (2, true));

    // The default interval (10 minutes) is far longer than this test: only the start-up run purges.
    let server = TestServer::start_on(tempfile::tempdir().expect("tmp"), db_url, "127.0.0.1:0", &[]).await;
    wait_for_sessions(&store, "expired", (1, false)).await;
    assert_eq!(sessions(&store, "live").await, (1, true), "a live session stays");
    server.wait_for_log("purged expired sessions count=1").await;
    assert!(server.stop().await.success());
}

#[tokio::test]
async fn expired_sessions_are_purged_on_schedule() {
    let server = TestServer::start_with(&["--session-ttl", "1s", "--session-purge-interval", "200ms"]).await;
    let store = server.store().await;
    let client = user_client(&server, "brief").await;

    // The log in made a session that expires after 1 s; a later run of the purge deletes it
    // (the start-up run found nothing, and logs nothing then).
    server.wait_for_log("purged expired sessions count=1").await;
    wait_for_sessions(&store, "-", (0, false)).await;
    assert_eq!(client.get(server.url("/")).send().await.expect("GET /").status(), StatusCode::FOUND);
    assert_eq!(server.logs().matches("purged expired sessions").count(), 1, "logged only when some went");
    assert!(server.stop().await.success());
}
