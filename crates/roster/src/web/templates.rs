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
    /// Users per page (the page script asks for windows of this size).
    pub page_size: u32,
    /// [`super::reconnect_spread`], in milliseconds.
    pub reconnect_spread_ms: u128,
    pub prev_url: Option<String>,
    pub next_url: Option<String>,
}

/// One account in the admin list.
pub struct AdminRow {
    pub id: i64,
    pub username: String,
    pub online: bool,
    /// Sockets open on this node.
    pub sockets: usize,
    pub last_seen: Option<String>,
    pub date_joined: String,
    pub active: bool,
    pub staff: bool,
    /// The staff member looking at the page.
    pub is_me: bool,
    /// (label, confirmation page, takes something away)
    pub actions: Vec<(&'static str, String, bool)>,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
pub struct AdminUsersPage<'a> {
    pub frame: Frame<'a>,
    /// "alice was deactivated.", after an action.
    pub notice: Option<String>,
    pub q: &'a str,
    pub rows: Vec<AdminRow>,
    /// Users online, accounts registered.
    pub counts: (usize, u64),
    pub pager: KeysetPager,
}

/// An action's confirmation page (with the password form for "set password").
#[derive(Template)]
#[template(path = "admin_confirm.html")]
pub struct AdminConfirmPage<'a> {
    pub frame: Frame<'a>,
    /// The account's username.
    pub target: &'a str,
    pub action_url: String,
    pub label: &'static str,
    /// The question's words before and after the username.
    pub question: (&'static str, &'static str),
    pub consequence: &'static str,
    pub dangerous: bool,
    /// Why this cannot be done (to oneself); no form then.
    pub refusal: Option<&'static str>,
    pub password_form: bool,
    pub password1_errors: Vec<String>,
    pub password2_errors: Vec<String>,
}

/// The links of a page read by keyset (the admin list): none where there is nothing more.
pub struct KeysetPager {
    pub prev: Option<String>,
    pub next: Option<String>,
}
