//! The config file through the real binary: `roster config` shows flag > environment > file >
//! default with each value's source, errors name the file and the key, secrets never show, and
//! `roster serve --config FILE` runs with the file's settings.

use std::collections::HashMap;
use std::process::Output;

use reqwest::StatusCode;

use crate::helpers::*;

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `key -> (value, source)` from `roster config`'s `key = value  # source` lines.
pub fn settings(out: &Output) -> HashMap<String, (String, String)> {
    assert!(out.status.success(), "roster config failed: {}", stderr(out));
    stdout(out)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (setting, source) = l.rsplit_once("  # ")?;
            let (key, value) = setting.split_once(" = ")?;
            Some((key.to_owned(), (value.trim().to_owned(), source.to_owned())))
        })
        .collect()
}

fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("roster.toml");
    std::fs::write(&path, text).expect("write the config file");
    let path = path.display().to_string();
    (dir, path)
}

fn pair(value: &str, source: &str) -> (String, String) {
    (value.to_owned(), source.to_owned())
}

#[tokio::test]
async fn flags_beat_environment_beat_file_beat_defaults() {
    let (_dir, file) = config_file(
        "# a comment\npresence-grace = \"7s\"\npage-size = 50\ntick = \"250ms\"\nsecure-cookies = true\n\
         allowed-origins = [\"https://a.example\", \"https://b.example\"]\n",
    );
    let env = [("ROSTER_PAGE_SIZE", "60"), ("ROSTER_TICK", "300ms")];
    let out = run_roster(&["config", "--config", &file, "--tick", "400ms"], &env).await;
    let s = settings(&out);
    assert_eq!(s["tick"], pair("\"400ms\"", "flag"), "a flag beats the environment and the file");
    assert_eq!(s["page-size"], pair("60", "env ROSTER_PAGE_SIZE"), "the environment beats the file");
    assert_eq!(s["presence-grace"], pair("\"7s\"", "file"), "the file beats the default");
    assert_eq!(s["secure-cookies"], pair("true", "file"));
    assert_eq!(s["allowed-origins"], pair("[\"https://a.example\", \"https://b.example\"]", "file"));
    assert_eq!(s["bind"], pair("\"127.0.0.1:8000\"", "default"));
    assert_eq!(s["login-limit"], pair("5", "default"));
    assert!(stdout(&out).contains(&format!("# Config file: {file}")), "{}", stdout(&out));

    // ROSTER_CONFIG names the file as well as --config does; the same precedence holds.
    let out = run_roster(&["config"], &[("ROSTER_CONFIG", &file), ("ROSTER_PAGE_SIZE", "70")]).await;
    let s = settings(&out);
    assert_eq!(s["presence-grace"], pair("\"7s\"", "file"));
    assert_eq!(s["page-size"], pair("70", "env ROSTER_PAGE_SIZE"));
    assert_eq!(s["tick"], pair("\"250ms\"", "file"));

    // Without a file, every value is a default, and every key of the file is listed.
    let out = run_roster(&["config"], &[]).await;
    let s = settings(&out);
    assert!(s.values().all(|(_, source)| source == "default"), "{}", stdout(&out));
    for key in ["presence-grace", "page-size", "tick", "secure-cookies", "allowed-origins", "session-purge-interval"] {
        assert!(s.contains_key(key), "{key} is listed");
    }
}

#[tokio::test]
async fn config_errors_name_the_file_and_the_key() {
    for (text, key, says) in [
        ("presence_grace = \"1s\"\n", "presence_grace", "did you mean `presence-grace`"),
        ("colour = \"blue\"\n", "colour", "unknown key"),
        ("bind = \"127.0.0.1:0\"\npage-size = 0\n", "page-size", "0 is not in 1..=10000"),
        ("tick = \"soon\"\n", "tick", "not a duration"),
        ("log-format = \"xml\"\n", "log-format", "text, json"),
        ("secure-cookies = \"yes\"\n", "secure-cookies", "true or false"),
    ] {
        let (_dir, file) = config_file(text);
        for args in [&["config", "--config", &file][..], &["serve", "--bind", "127.0.0.1:0", "--config", &file]] {
            let out = run_roster(args, &[]).await;
            let err = stderr(&out);
            assert!(!out.status.success(), "{text:?} is refused by {args:?}");
            assert!(err.contains(&file) && err.contains(&format!("`{key}`")) && err.contains(says), "{text:?}: {err}");
            assert!(stdout(&out).is_empty(), "nothing printed or served for {text:?}");
        }
    }
    let out = run_roster(&["config", "--config", "/nonexistent/roster.toml"], &[]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read the config file /nonexistent/roster.toml"), "{}", stderr(&out));
}

#[tokio::test]
async fn config_redacts_secrets_from_every_source() {
    // Port 1 on loopback: nothing listens, so `serve` fails at once after printing its settings.
    let (_dir, file) = config_file("database-url = \"postgres://roster:file-Secret-1@127.0.0.1:1/roster\"\n");
    let from_file = run_roster(&["config", "--config", &file], &[]).await;
    assert_eq!(settings(&from_file)["database-url"], pair("\"postgres://roster:***@127.0.0.1:1/roster\"", "file"));
    let from_env =
        run_roster(&["config", "--config", &file], &[("ROSTER_DATABASE_URL", "postgres://u:env-Secret-2@h/db")]).await;
    assert_eq!(settings(&from_env)["database-url"], pair("\"postgres://u:***@h/db\"", "env ROSTER_DATABASE_URL"));
    let from_flag =
        run_roster(&["config", "--database-url", "postgresql://u:flag-Secret-3@h:5433/db?sslmode=require"], &[]).await;
    assert_eq!(settings(&from_flag)["database-url"], pair("\"postgresql://u:***@h:5433/db?sslmode=require\"", "flag"));
    let serving = run_roster(&["serve", "--print-settings", "--bind", "127.0.0.1:0", "--config", &file], &[]).await;
    assert!(!serving.status.success(), "no database on port 1");
    assert!(stdout(&serving).contains("database-url = \"postgres://roster:***@127.0.0.1:1/roster\""));
    assert!(stderr(&serving).contains("cannot open the database postgres://roster:***@127.0.0.1:1/roster"));
    for out in [&from_file, &from_env, &from_flag, &serving] {
        assert!(!stdout(out).contains("Secret") && !stderr(out).contains("Secret"), "{}{}", stdout(out), stderr(out));
    }
}

#[tokio::test]
async fn serve_runs_with_the_file_settings() {
    let (_dir, file) = config_file("log-format = \"json\"\npage-size = 1\n");
    let server = TestServer::start_with(&["--config", &file]).await;
    assert!(server.logs().contains("\"message\":\"Roster serving on http://"), "JSON logs: {}", server.logs());
    // page-size = 1: two users make two pages.
    let c = user_client(&server, "first").await;
    user_client(&server, "second").await;
    let page = c.get(server.url("/?page=2")).send().await.expect("GET");
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.text().await.expect("body").matches("<li data-username=").count(), 1, "one user per page");
    assert!(server.stop().await.success());
}
