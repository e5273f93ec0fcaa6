//! The `roster` subcommands against a real database file: migrate, user create/list/
//! set-password/delete, and importing a Django `auth_user` export whose pbkdf2 hashes are
//! upgraded to Argon2id at the next log in.

use reqwest::StatusCode;

use crate::helpers::*;

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn user_commands_manage_accounts() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());

    let out = run_cli(&db, &["migrate"], "").await;
    assert!(out.status.success(), "{}", text(&out));

    let out = run_cli(&db, &["user", "create", "root", "--staff"], &format!("{GOOD_PASSWORD}\n")).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Created user root"));

    // Weak password, bad name, duplicate: clear errors, non-zero exit, nothing created.
    let out = run_cli(&db, &["user", "create", "weak"], "12345678\n").await;
    assert!(!out.status.success());
    assert!(text(&out).contains("entirely numeric"), "{}", text(&out));
    let out = run_cli(&db, &["user", "create", "bad name"], &format!("{GOOD_PASSWORD}\n")).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("Enter a valid username"), "{}", text(&out));
    let out = run_cli(&db, &["user", "create", "ROOT"], &format!("{GOOD_PASSWORD}\n")).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));

    let out = run_cli(&db, &["user", "list"], "").await;
    let listing = text(&out);
    assert!(out.status.success() && listing.contains("root") && !listing.contains("weak"), "{listing}");
    assert!(!listing.contains(GOOD_PASSWORD) && !listing.contains("argon2"), "no secrets in the listing");

    // The server sees the CLI's user; set-password changes what logs in.
    let server = TestServer::start_on(tempfile::tempdir().expect("tmp"), db.clone(), "127.0.0.1:0", &[]).await;
    let c = server.client();
    assert_eq!(log_in(&server, &c, "root", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    let out = server.cli(&["user", "set-password", "root"], "another-Secret-42\n").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 session(s) logged out"), "{}", text(&out));
    assert_eq!(c.get(server.url("/")).send().await.expect("GET").status(), StatusCode::FOUND, "the old session ended");
    assert_eq!(log_in(&server, &c, "root", GOOD_PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(log_in(&server, &c, "root", "another-Secret-42").await.status(), StatusCode::FOUND);

    let out = server.cli(&["user", "delete", "root"], "").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(server.store().await.user_by_key("root").await.expect("q").is_none());
    let out = server.cli(&["user", "delete", "root"], "").await;
    assert!(!out.status.success() && text(&out).contains("no user named"));
}

#[tokio::test]
async fn help_explains_every_command() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("h.db").display());
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["user", "--help"],
        &["user", "create", "--help"],
        &["migrate", "--help"],
    ] {
        let out = run_cli(&db, args, "").await;
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out).contains("Usage"), "{args:?}");
    }
    let out = run_cli(&db, &["serve", "--help"], "").await;
    for flag in ["--bind", "ROSTER_BIND", "--presence-grace", "--page-size", "--login-limit", "--log-format"] {
        assert!(text(&out).contains(flag), "serve --help mentions {flag}");
    }
    let out = run_cli(&db, &["serve", "--presence-grace", "soon"], "").await;
    assert!(!out.status.success() && text(&out).contains("not a duration"), "{}", text(&out));
}

#[tokio::test]
async fn django_users_import_and_upgrade_to_argon2_at_log_in() {
    let server = TestServer::start().await;
    let csv = "id,password,last_login,is_superuser,username,first_name,last_name,email,is_staff,is_active,date_joined\n\
        1,pbkdf2_sha256$1000$Zq0wz1Tv3RbX$oopD1JNs6kiRuy2u/pQqOLEj36zZ5+0hpP3bZb2zE8Q=,2024-01-02 03:04:05.123456+00,t,olddjango,,,,t,t,2023-05-06 07:08:09+00\n\
        2,pbkdf2_sha256$1000$Zq0wz1Tv3RbX$oopD1JNs6kiRuy2u/pQqOLEj36zZ5+0hpP3bZb2zE8Q=,,f,bad name,,,,f,t,2023-05-06 07:08:09+00\n";
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("auth_user.csv");
    std::fs::write(&file, csv).expect("write csv");
    let out = server.cli(&["user", "import-django", file.to_str().expect("path")], "").await;
    assert!(!out.status.success(), "a bad row is reported: {}", text(&out));
    assert!(text(&out).contains("Imported 1 user(s)"), "{}", text(&out));

    let store = server.store().await;
    let before = store.user_by_key("olddjango").await.expect("q").expect("imported");
    assert!(before.password_hash.starts_with("pbkdf2_sha256$1000$"));
    assert!(before.is_staff);

    let c = server.client();
    assert_eq!(log_in(&server, &c, "olddjango", "wrong-Password-1").await.status(), StatusCode::OK);
    assert!(
        store.user_by_key("olddjango").await.expect("q").expect("u").password_hash.starts_with("pbkdf2"),
        "no upgrade on failure"
    );
    assert_eq!(log_in(&server, &c, "olddjango", GOOD_PASSWORD).await.status(), StatusCode::FOUND);
    let after = store.user_by_key("olddjango").await.expect("q").expect("u");
    assert!(after.password_hash.starts_with("$argon2id$"), "upgraded: {:?}", &after.password_hash[..10]);
    let c2 = server.client();
    assert_eq!(
        log_in(&server, &c2, "olddjango", GOOD_PASSWORD).await.status(),
        StatusCode::FOUND,
        "the new hash verifies"
    );
}
