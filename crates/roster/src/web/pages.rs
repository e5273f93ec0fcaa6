//! The tutorial's pages: sign up, log in, log out and the user list.
//!
//! Handlers parse input into domain types (`Username`, `NewPassword`), call the store and the
//! presence hub, and render a template. Authentication and CSRF have already happened in
//! extractors and middleware.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use presence::UserRef;

use super::client::ClientAddr;
use super::csrf::CsrfToken;
use super::error::AppError;
use super::form::Form;
use super::metrics::Throttled;
use super::session::{clear_session_cookie, safe_next, session_cookie, AuthUser, MaybeUser, RequireUser};
use super::templates::{render, Frame, ListEntry, LogInPage, LogOutPage, SignUpPage, UserListPage};
use super::AppState;
use crate::accounts::{self, AccountError, Admission, LogIn, NewPassword, Username};
use crate::store::ListQuery;

const REQUIRED: &str = "This field is required.";
const INVALID_LOGIN: &str =
    "Please enter a correct username and password. Note that both fields may be case-sensitive.";

fn frame<'a>(user: &'a MaybeUser, csrf: &CsrfToken) -> Frame<'a> {
    frame_of(user.0.as_ref(), csrf)
}

/// The page frame for `user` (None: anonymous): their name, the admin link for staff, a fresh
/// masked CSRF token for the header's log-out form.
pub(super) fn frame_of<'a>(user: Option<&'a AuthUser>, csrf: &CsrfToken) -> Frame<'a> {
    Frame {
        user: user.map(|u| u.user.username.as_str()),
        staff: user.is_some_and(|u| u.user.is_staff),
        csrf: csrf.form_token(),
    }
}

/// Django's two new-password fields (sign up, the admin's "set password"), checked: both
/// required, equal, then the validators on the first (with `username` for the similarity
/// check). Either the password or each field's errors.
pub(crate) struct PasswordFields {
    pub password: Option<NewPassword>,
    pub password1_errors: Vec<String>,
    pub password2_errors: Vec<String>,
}

pub(crate) fn password_fields(p1: &str, p2: &str, username: &str) -> PasswordFields {
    let mut fields = PasswordFields { password: None, password1_errors: Vec::new(), password2_errors: Vec::new() };
    if p1.is_empty() {
        fields.password1_errors.push(REQUIRED.to_owned());
    }
    if p2.is_empty() {
        fields.password2_errors.push(REQUIRED.to_owned());
    }
    if !p1.is_empty() && !p2.is_empty() {
        if p1 != p2 {
            fields.password2_errors.push(accounts::PASSWORD_MISMATCH_MESSAGE.to_owned());
        } else {
            match NewPassword::parse(p1, username) {
                Ok(p) => fields.password = Some(p),
                Err(errors) => fields.password1_errors.extend(errors.iter().map(ToString::to_string)),
            }
        }
    }
    fields
}

// ---------------------------------------------------------------- sign up

pub async fn sign_up_form(user: MaybeUser, Extension(csrf): Extension<CsrfToken>) -> Response {
    render(&SignUpPage {
        frame: frame(&user, &csrf),
        username: "",
        form_errors: vec![],
        username_errors: vec![],
        password1_errors: vec![],
        password2_errors: vec![],
    })
    .into_response()
}

#[tracing::instrument(skip_all)]
pub async fn sign_up(
    State(app): State<AppState>,
    client: ClientAddr,
    user: MaybeUser,
    Extension(csrf): Extension<CsrfToken>,
    form: Form,
) -> Result<Response, AppError> {
    let raw_username = form.get("username");
    let address = client.ip.to_string();
    if let Err(wait) = app.sign_ups.check(&address, Instant::now()) {
        tracing::warn!(client = %client.ip, "sign-up throttled");
        let page = SignUpPage {
            frame: frame(&user, &csrf),
            username: raw_username,
            form_errors: vec![format!(
                "Too many accounts were created from your address. Try again in {}.",
                super::wait_phrase(wait.0)
            )],
            username_errors: vec![],
            password1_errors: vec![],
            password2_errors: vec![],
        };
        return Ok(super::too_many(
            Throttled::SignUp,
            wait,
            (StatusCode::TOO_MANY_REQUESTS, render(&page)).into_response(),
        ));
    }
    let mut username_errors = Vec::new();
    let username = Username::parse(raw_username).map_err(|e| username_errors.push(e.to_string())).ok();
    let PasswordFields { password, password1_errors, password2_errors } =
        password_fields(form.get("password1"), form.get("password2"), raw_username);
    if let Some(u) = &username {
        if app.store.user_by_key(&u.key()).await?.is_some() {
            username_errors.push(accounts::DUPLICATE_USERNAME_MESSAGE.to_owned());
        }
    }

    let (Some(username), Some(password), true) = (username, password, username_errors.is_empty()) else {
        let page = SignUpPage {
            frame: frame(&user, &csrf),
            username: raw_username,
            form_errors: vec![],
            username_errors,
            password1_errors,
            password2_errors,
        };
        return Ok(render(&page).into_response());
    };

    match app.accounts.sign_up(&username, password, false).await {
        Ok(_) => {
            app.sign_ups.record_failure(&address, Instant::now());
            Ok(super::found("/log_in/"))
        }
        Err(AccountError::UsernameTaken) => {
            let page = SignUpPage {
                frame: frame(&user, &csrf),
                username: raw_username,
                form_errors: vec![],
                username_errors: vec![accounts::DUPLICATE_USERNAME_MESSAGE.to_owned()],
                password1_errors: vec![],
                password2_errors: vec![],
            };
            Ok(render(&page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------- log in

pub async fn log_in_form(
    user: MaybeUser,
    Extension(csrf): Extension<CsrfToken>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let next = safe_next(query.get("next").map_or("/", String::as_str));
    render(&LogInPage { frame: frame(&user, &csrf), username: "", next, form_errors: vec![] }).into_response()
}

#[tracing::instrument(skip_all)]
pub async fn log_in(
    State(app): State<AppState>,
    client: ClientAddr,
    user: MaybeUser,
    Extension(csrf): Extension<CsrfToken>,
    form: Form,
) -> Result<Response, AppError> {
    let raw_username = form.get("username");
    let password = form.get("password");
    let next = safe_next(form.get("next"));
    let show = |status: StatusCode, errors: Vec<String>| {
        let page = LogInPage { frame: frame(&user, &csrf), username: raw_username, next, form_errors: errors };
        Ok((status, render(&page)).into_response())
    };

    if raw_username.is_empty() || password.is_empty() {
        return show(StatusCode::OK, vec![INVALID_LOGIN.to_owned()]);
    }
    // A username that cannot exist counts only against the address (see `LogInLimits`).
    let account_key = Username::parse(raw_username).ok().map(|u| u.key());
    let now = Instant::now();
    match app.log_in_limits.admit(account_key.as_deref(), client.ip, now) {
        Admission::Go => {}
        Admission::Slow(delay) => {
            tracing::info!(client = %client.ip, "log-in slowed: the account is past its failure ceiling");
            tokio::time::sleep(delay).await;
        }
        Admission::Refuse(wait) => {
            tracing::warn!(client = %client.ip, "log-in throttled");
            let msg = format!("Too many failed log-in attempts. Try again in {}.", super::wait_phrase(wait.0));
            return show(StatusCode::TOO_MANY_REQUESTS, vec![msg])
                .map(|page| super::too_many(Throttled::LogIn, wait, page));
        }
    }

    let account = match app.accounts.check_log_in(account_key.as_deref(), password).await? {
        LogIn::Valid(account) => account,
        LogIn::Invalid => {
            if app.log_in_limits.failed(account_key.as_deref(), client.ip, Instant::now()) {
                tracing::warn!(client = %client.ip, "failed log-ins on one account passed --login-account-limit; \
                    repeat attempts on it are slowed");
            }
            tracing::info!(client = %client.ip, "log-in failed");
            return show(StatusCode::OK, vec![INVALID_LOGIN.to_owned()]);
        }
    };
    app.log_in_limits.succeeded(&account.username_key, client.ip);

    let previous = user.0.as_ref().map(|old| (old.session_hash.as_str(), old.user.id));
    let ttl_ms = i64::try_from(app.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let session = app.accounts.log_in(&account, previous, ttl_ms).await?;
    let session_id = session.id;

    let mut headers = HeaderMap::new();
    headers.append(header::SET_COOKIE, session_cookie(&session_id, app.session_ttl.as_secs(), app.cookies));
    headers.append(header::SET_COOKIE, CsrfToken::generate().cookie(app.cookies));
    Ok((headers, super::found(next)).into_response())
}

// ---------------------------------------------------------------- log out

pub async fn log_out_form(user: MaybeUser, Extension(csrf): Extension<CsrfToken>) -> Response {
    render(&LogOutPage { frame: frame(&user, &csrf) }).into_response()
}

#[tracing::instrument(skip_all)]
pub async fn log_out(State(app): State<AppState>, user: MaybeUser) -> Result<Response, AppError> {
    if let Some(current) = user.0 {
        app.accounts.log_out(&current.session_hash, current.user.id).await?;
    }
    let mut headers = HeaderMap::new();
    headers.append(header::SET_COOKIE, clear_session_cookie(app.cookies));
    Ok((headers, super::found("/log_in/")).into_response())
}

// ---------------------------------------------------------------- the list

/// One page of the list: online users first (from the presence core, in memory), then the
/// others most recently seen first (from the store, walking its `last_seen` index and skipping
/// the online ids). Never touches every account.
pub async fn user_list(
    State(app): State<AppState>,
    RequireUser(me): RequireUser,
    Extension(csrf): Extension<CsrfToken>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let ListParams { page, q } = ListParams::parse(&query).map_err(|e| AppError::BadRequest(e.page_message()))?;
    let listing = app.list_page(q, page).await?;
    let mut users = listing.users;
    for u in &mut users {
        u.online = app.hub.is_online(u.id);
    }
    let link = |p: u64| {
        let mut s = format!("/?page={p}");
        if !q.is_empty() {
            s.push_str("&q=");
            s.push_str(&urlencoding::encode(q));
        }
        s
    };
    let me_user = MaybeUser(Some(me));
    let page_view = UserListPage {
        frame: frame(&me_user, &csrf),
        users,
        online_count: app.hub.online_count(),
        registered_count: app.hub.registered_count(),
        q,
        page,
        page_size: app.page_size,
        reconnect_spread_ms: app.reconnect_spread.as_millis(),
        prev_url: (page > 1).then(|| link(page - 1)),
        next_url: listing.has_next.then(|| link(page + 1)),
    };
    Ok(render(&page_view).into_response())
}

/// `?page=N&q=PREFIX` of the list, shared by the page and the JSON API.
pub struct ListParams<'a> {
    /// From 1.
    pub page: u64,
    /// Trimmed; empty means no search.
    pub q: &'a str,
}

/// Why `?page=`/`?q=` were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListParamsError {
    Page,
    SearchTooLong,
}

impl ListParamsError {
    /// The sentence the HTML page shows.
    pub fn page_message(self) -> &'static str {
        match self {
            ListParamsError::Page => "The page number must be a whole number from 1.",
            ListParamsError::SearchTooLong => "The search text is longer than any username (150 characters).",
        }
    }

    /// The message the JSON API returns.
    pub fn api_message(self) -> &'static str {
        match self {
            ListParamsError::Page => "page must be a whole number from 1",
            ListParamsError::SearchTooLong => "q is longer than any username (150 characters)",
        }
    }
}

impl<'a> ListParams<'a> {
    pub fn parse(query: &'a HashMap<String, String>) -> Result<ListParams<'a>, ListParamsError> {
        let page = match query.get("page").map(|p| p.parse::<u64>()) {
            None => 1,
            Some(Ok(p)) if (1..=1_000_000).contains(&p) => p,
            Some(_) => return Err(ListParamsError::Page),
        };
        Ok(ListParams { page, q: search_param(query)? })
    }
}

/// `?q=`, the username prefix searched (the list, the JSON API, the admin pages): trimmed,
/// empty for none, at most a username long.
pub fn search_param(query: &HashMap<String, String>) -> Result<&str, ListParamsError> {
    let q = query.get("q").map_or("", |q| q.trim());
    if q.chars().count() > accounts::MAX_USERNAME_CHARS {
        return Err(ListParamsError::SearchTooLong);
    }
    Ok(q)
}

pub struct Listing {
    pub users: Vec<ListEntry>,
    pub has_next: bool,
}

impl AppState {
    /// The users on page `page` (from 1) of the list filtered by username prefix `q`.
    pub async fn list_page(&self, q: &str, page: u64) -> Result<Listing, AppError> {
        let size = u64::from(self.page_size);
        let prefix = (!q.is_empty()).then(|| accounts::username_key(q));
        let online = self.hub.online_users();
        let matching: Vec<&UserRef> = online
            .iter()
            .filter(|u| prefix.as_deref().is_none_or(|p| accounts::username_key(&u.username).starts_with(p)))
            .collect();
        let k = matching.len() as u64;
        let start = (page - 1).saturating_mul(size);
        let mut users: Vec<ListEntry> = matching
            .iter()
            .skip(usize::try_from(start).unwrap_or(usize::MAX))
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .map(|u| ListEntry {
                id: u.id,
                username: u.username.to_string(),
                online: true,
                last_seen: None,
                last_seen_ms: None,
            })
            .collect();
        let remaining = size - users.len() as u64;
        let mut has_next = start + size < k;
        if remaining > 0 {
            let exclude: Vec<i64> = online.iter().map(|u| u.id).collect();
            let rows = self
                .store
                .list_users(&ListQuery {
                    prefix: prefix.as_deref(),
                    exclude: &exclude,
                    offset: start.saturating_sub(k),
                    limit: remaining + 1,
                })
                .await?;
            has_next = rows.len() as u64 > remaining;
            users.extend(rows.into_iter().take(usize::try_from(remaining).unwrap_or(usize::MAX)).map(|u| ListEntry {
                id: u.id,
                last_seen: u.last_seen.map(format_time),
                last_seen_ms: u.last_seen,
                username: u.username,
                online: false,
            }));
        }
        Ok(Listing { users, has_next })
    }
}

/// `2026-11-24 01:02 UTC`
pub fn format_time(ms: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

pub async fn not_found() -> AppError {
    AppError::NotFound
}
