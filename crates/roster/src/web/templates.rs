//! Askama templates (autoescaped HTML) and the small view structs they read.
//!
//! Templates live in `crates/roster/templates/` and are compiled into the binary. No handler
//! builds HTML by hand.

use askama::Template;
use axum::response::Html;

use super::assets;

/// Renders a template; a render failure (a bug) becomes a plain 500 text.
pub fn render<T: Template>(t: &T) -> Html<String> {
    match t.render() {
        Ok(s) => Html(s),
        Err(e) => {
            tracing::error!(error = %e, "template render failed");
            Html("<!doctype html><title>Server error</title><p>Server error.</p>".to_owned())
        }
    }
}

/// What every page's frame needs.
pub struct Frame<'a> {
    pub user: Option<&'a str>,
    /// The user is staff: the header links to `/admin/`.
    pub staff: bool,
    pub csrf: String,
}

impl Frame<'_> {
    pub fn css(&self) -> &'static str {
        assets::url("style.css")
    }
    pub fn js(&self) -> &'static str {
        assets::url("roster.js")
    }
    pub fn icon(&self) -> &'static str {
        assets::url("favicon.svg")
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

impl ErrorPage<'_> {
    pub fn css(&self) -> &'static str {
        assets::url("style.css")
    }
    pub fn icon(&self) -> &'static str {
        assets::url("favicon.svg")
    }
}

#[derive(Template)]
#[template(path = "sign_up.html")]
pub struct SignUpPage<'a> {
    pub frame: Frame<'a>,
    pub username: &'a str,
    /// Errors about the whole form (e.g. too many sign-ups from this address).
    pub form_errors: Vec<String>,
    pub username_errors: Vec<String>,
    pub password1_errors: Vec<String>,
    pub password2_errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "log_in.html")]
pub struct LogInPage<'a> {
    pub frame: Frame<'a>,
    pub username: &'a str,
    pub next: &'a str,
    pub form_errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "log_out.html")]
pub struct LogOutPage<'a> {
    pub frame: Frame<'a>,
}

pub struct ListEntry {
    pub id: i64,
    pub username: String,
    pub online: bool,
    /// "2026-11-24 01:02 UTC", for offline users that have been seen.
    pub last_seen: Option<String>,
    pub last_seen_ms: Option<i64>,
}

#[derive(Template)]
#[template(path = "user_list.html")]
pub struct UserListPage<'a> {
    pub frame: Frame<'a>,
    pub users: Vec<ListEntry>,
    pub online_count: usize,
    pub registered_count: u64,
    pub q: &'a str,
    pub page: u64,
    pub prev_url: Option<String>,
    pub next_url: Option<String>,
}

