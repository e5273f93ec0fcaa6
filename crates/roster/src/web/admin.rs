//! The admin pages, for staff (`/admin/`): every account with its presence (Online, sockets open
//! on this node, last seen), searchable by username prefix and paged by keyset; and the actions
//! on one account (deactivate, activate, delete, log out everywhere, set password, grant and
//! revoke staff), each a confirmation page (GET) and a POST that does it.
//!
//! Every action goes through the account operations ([`crate::accounts::Accounts`]), which
//! change the rows, forget the cached sessions and close the sockets on every node; this module
//! holds no workflow of its own. What it adds: the staff check (the [`StaffUser`] extractor),
//! the rule that nobody removes their own staff status or deactivates or deletes their own
//! account, and one audit line per action done (target `roster::audit`: who, what, whom, never
//! a password). CSRF is checked by the middleware before any POST reaches a handler here.
//!
//! Must not contain SQL or presence logic: it reads the store's pages and the hub's counts.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::cookies::{clear_cookie, cookie_value, set_cookie};
use super::csrf::CsrfToken;
use super::error::AppError;
use super::form::Form;
use super::pages::{format_time, frame_of, password_fields, search_param, PasswordFields};
use super::session::{AuthUser, StaffUser};
use super::templates::{render, AdminConfirmPage, AdminRow, AdminUsersPage, KeysetPager};
use super::AppState;
use crate::accounts::{self, Username};
use crate::store::{KeyBound, KeyPage, User};

/// The cookie that carries "alice was deactivated." from an action to the list it redirects
/// to (a one-time notice: the list clears it). Set only by us, and re-checked when read.
const NOTICE_COOKIE: &str = "adminnotice";
/// How long a notice waits for the list to show it.
const NOTICE_MAX_AGE: u64 = 60;
/// The longest `?after=`/`?before=` key accepted: a username's key (NFKC can lengthen a
/// 150-character name) with room to spare. Longer is a 400.
const MAX_KEY_CHARS: usize = 4 * accounts::MAX_USERNAME_CHARS;

/// An action on one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Deactivate,
    Activate,
    Delete,
    LogOut,
    SetPassword,
    GrantStaff,
    RevokeStaff,
}

impl Action {
    const ALL: [Action; 7] = [
        Action::Deactivate,
        Action::Activate,
        Action::Delete,
        Action::LogOut,
        Action::SetPassword,
        Action::GrantStaff,
        Action::RevokeStaff,
    ];

    /// The action's part of its address (`/admin/users/ID/SLUG/`), of the audit line and of the
    /// notice cookie.
    pub fn slug(self) -> &'static str {
        match self {
            Action::Deactivate => "deactivate",
            Action::Activate => "activate",
            Action::Delete => "delete",
            Action::LogOut => "log-out",
            Action::SetPassword => "set-password",
            Action::GrantStaff => "grant-staff",
            Action::RevokeStaff => "revoke-staff",
        }
    }

    fn parse(slug: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.slug() == slug)
    }

    /// The button, and the confirmation page's heading.
    pub fn label(self) -> &'static str {
        match self {
            Action::Deactivate => "Deactivate",
            Action::Activate => "Activate",
            Action::Delete => "Delete",
            Action::LogOut => "Log out everywhere",
            Action::SetPassword => "Set password",
            Action::GrantStaff => "Grant staff",
            Action::RevokeStaff => "Revoke staff",
        }
    }

    /// "Are you sure you want to deactivate " USERNAME "?"
    fn question(self) -> (&'static str, &'static str) {
        match self {
            Action::Deactivate => ("Are you sure you want to deactivate ", "?"),
            Action::Activate => ("Are you sure you want to activate ", "?"),
            Action::Delete => ("Are you sure you want to delete ", "?"),
            Action::LogOut => ("Are you sure you want to log out every session of ", "?"),
            Action::SetPassword => ("Are you sure you want to set a new password for ", "?"),
            Action::GrantStaff => ("Are you sure you want to grant staff status to ", "?"),
            Action::RevokeStaff => ("Are you sure you want to revoke the staff status of ", "?"),
        }
    }

    /// What happens, said on the confirmation page.
    fn consequence(self) -> &'static str {
        match self {
            Action::Deactivate => {
                "They can no longer log in. Every session of theirs ends and their open pages close at once."
            }
            Action::Activate => "They can log in again.",
            Action::Delete => {
                "The account and its sessions are removed for good; their open pages close at once. \
                 This cannot be undone."
            }
            Action::LogOut => {
                "Every session of theirs ends: their open pages close at once and they must log in again."
            }
            Action::SetPassword => {
                "Every session of theirs ends: their open pages close at once and they log in with the new password."
            }
            Action::GrantStaff => "They can open these admin pages and act on every account.",
            Action::RevokeStaff => "They lose these admin pages at once.",
        }
    }

    /// "alice was " + this + "."
    fn done(self) -> &'static str {
        match self {
            Action::Deactivate => "deactivated",
            Action::Activate => "activated",
            Action::Delete => "deleted",
            Action::LogOut => "logged out everywhere",
            Action::SetPassword => "given a new password",
            Action::GrantStaff => "made staff",
            Action::RevokeStaff => "removed from staff",
        }
    }

    /// Shown in red: it takes something away.
    fn dangerous(self) -> bool {
        matches!(self, Action::Deactivate | Action::Delete | Action::RevokeStaff)
    }

    /// Why `me` may not do this to `target` (themselves), if so: a staff member cannot lock
    /// themselves out, so there is always someone left who can undo a mistake.
    fn refusal(self, me: &User, target: &User) -> Option<&'static str> {
        if me.id != target.id {
            return None;
        }
        match self {
            Action::Deactivate => Some("You cannot deactivate your own account."),
            Action::Delete => Some("You cannot delete your own account."),
            Action::RevokeStaff => Some("You cannot remove your own staff status."),
            _ => None,
        }
    }

    /// The actions the list offers for `user`: the ones that change something, none that would
    /// be refused.
    fn offered(user: &User, me: &User) -> Vec<Action> {
        let toggles = [
            if user.is_active { Action::Deactivate } else { Action::Activate },
            Action::LogOut,
            Action::SetPassword,
            if user.is_staff { Action::RevokeStaff } else { Action::GrantStaff },
            Action::Delete,
        ];
        toggles.into_iter().filter(|a| a.refusal(me, user).is_none()).collect()
    }
}

/// `?q=&after=KEY` or `?q=&before=KEY` of the list.
struct ListParams<'a> {
    q: &'a str,
    from: KeyBound<'a>,
}

impl<'a> ListParams<'a> {
    fn parse(query: &'a HashMap<String, String>) -> Result<ListParams<'a>, AppError> {
        let q = search_param(query).map_err(|e| AppError::BadRequest(e.page_message()))?;
        let key = |name: &str| query.get(name).map(String::as_str).filter(|k| !k.is_empty());
        let from = match (key("after"), key("before")) {
            (None, None) => KeyBound::Start,
            (Some(after), None) => KeyBound::After(after),
            (None, Some(before)) => KeyBound::Before(before),
            (Some(_), Some(_)) => {
                return Err(AppError::BadRequest("A page starts after a name or before one, not both."))
            }
        };
        if let KeyBound::After(k) | KeyBound::Before(k) = from {
            if k.chars().count() > MAX_KEY_CHARS {
                return Err(AppError::BadRequest("The page address is longer than any username."));
            }
        }
        Ok(ListParams { q, from })
    }
}

/// `/admin/?q=...&after=...` (or `before`), `q` and the key percent-encoded.
fn list_url(q: &str, bound: Option<(&str, &str)>) -> String {
    let mut url = String::from("/admin/");
    let mut sep = '?';
    if !q.is_empty() {
        url.push_str(&format!("?q={}", urlencoding::encode(q)));
        sep = '&';
    }
    if let Some((name, key)) = bound {
        url.push_str(&format!("{sep}{name}={}", urlencoding::encode(key)));
    }
    url
}

/// Cuts `users` (read from `from` with a limit of `size + 1`) to the page and links its
/// neighbours: the extra row, when there is one, only shows that there is more that way.
fn page_of(users: &mut Vec<User>, from: KeyBound<'_>, size: u64, q: &str) -> KeysetPager {
    let more = users.len() as u64 > size;
    if more {
        match from {
            KeyBound::Before(_) => drop(users.remove(0)),
            _ => users.truncate(users.len() - 1),
        }
    }
    let (has_prev, has_next) = match from {
        KeyBound::Start => (false, more),
        KeyBound::After(_) => (true, more),
        KeyBound::Before(_) => (more, true),
    };
    KeysetPager {
        // An empty page after a key (its accounts deleted meanwhile) links back to the start.
        prev: has_prev.then(|| match users.first() {
            Some(first) => list_url(q, Some(("before", &first.username_key))),
            None => list_url(q, None),
        }),
        next: has_next.then(|| users.last().map(|last| list_url(q, Some(("after", &last.username_key))))).flatten(),
    }
}

/// `GET /admin/`: one page of the accounts in username order, with their presence.
pub async fn users(
    State(app): State<AppState>,
    StaffUser(me): StaffUser,
    Extension(csrf): Extension<CsrfToken>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let ListParams { q, from } = ListParams::parse(&query)?;
    let prefix = (!q.is_empty()).then(|| accounts::username_key(q));
    let size = u64::from(app.page_size);
    let mut users = app.store.users_by_key_page(&KeyPage { prefix: prefix.as_deref(), from, limit: size + 1 }).await?;
    let pager = page_of(&mut users, from, size, q);
    let rows = users
        .iter()
        .map(|u| AdminRow {
            id: u.id,
            username: u.username.clone(),
            online: app.hub.is_online(u.id),
            sockets: app.hub.sockets_of(u.id),
            last_seen: u.last_seen.map(format_time),
            date_joined: format_time(u.date_joined),
            active: u.is_active,
            staff: u.is_staff,
            is_me: u.id == me.user.id,
            actions: Action::offered(u, &me.user)
                .into_iter()
                .map(|a| (a.label(), format!("/admin/users/{}/{}/", u.id, a.slug()), a.dangerous()))
                .collect(),
        })
        .collect();
    let notice = cookie_value(&headers, NOTICE_COOKIE).and_then(read_notice);
    let page = AdminUsersPage {
        frame: frame_of(Some(&me), &csrf),
        notice,
        q,
        rows,
        counts: (app.hub.online_count(), app.hub.registered_count()),
        pager,
    };
    let mut response = render(&page).into_response();
    if cookie_value(&headers, NOTICE_COOKIE).is_some() {
        response.headers_mut().append(header::SET_COOKIE, clear_cookie(NOTICE_COOKIE, app.cookies));
    }
    Ok(response)
}

/// The notice cookie's value for `action` done to `username`.
fn notice_value(action: Action, username: &str) -> String {
    format!("{}.{}", action.slug(), urlencoding::encode(username))
}

/// The sentence of a notice cookie, if it is one of ours (a known action and a valid username).
fn read_notice(value: &str) -> Option<String> {
    let (slug, name) = value.split_once('.')?;
    let action = Action::parse(slug)?;
    let name = urlencoding::decode(name).ok()?;
    let name = Username::parse(&name).ok()?;
    Some(format!("{} was {}.", name.as_str(), action.done()))
}

/// The account and action an action page is about: a 404 for an unknown action, a malformed
/// id or an account that does not exist.
async fn target(app: &AppState, id: &str, action: &str) -> Result<(User, Action), AppError> {
    let action = Action::parse(action).ok_or(AppError::NotFound)?;
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    let user = app.store.user_by_id(id).await?.ok_or(AppError::NotFound)?;
    Ok((user, action))
}

/// The confirmation page of `action` on `target`, or the refusal, or the password form with
/// its errors.
fn confirm_page<'a>(
    me: &'a AuthUser,
    csrf: &CsrfToken,
    target: &'a User,
    action: Action,
    errors: (Vec<String>, Vec<String>),
) -> AdminConfirmPage<'a> {
    AdminConfirmPage {
        frame: frame_of(Some(me), csrf),
        target: &target.username,
        action_url: format!("/admin/users/{}/{}/", target.id, action.slug()),
        label: action.label(),
        question: action.question(),
        consequence: action.consequence(),
        dangerous: action.dangerous(),
        refusal: action.refusal(&me.user, target),
        password_form: action == Action::SetPassword,
        password1_errors: errors.0,
        password2_errors: errors.1,
    }
}

/// `GET /admin/users/{id}/{action}/`: "Are you sure you want to ... USER?" and the form that
/// does it (or why it cannot be done). Changes nothing.
pub async fn confirm(
    State(app): State<AppState>,
    StaffUser(me): StaffUser,
    Extension(csrf): Extension<CsrfToken>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let (target, action) = target(&app, &id, &action).await?;
    let page = confirm_page(&me, &csrf, &target, action, Default::default());
    let status = if page.refusal.is_some() { StatusCode::FORBIDDEN } else { StatusCode::OK };
    Ok((status, render(&page)).into_response())
}

/// `POST /admin/users/{id}/{action}/`: does it through the account operations, writes the
/// audit line, and goes back to the list with a notice. A refused action (on oneself) is a 403
/// that says why; an invalid new password shows the form again with its errors. Neither
/// changes anything.
#[tracing::instrument(skip_all)]
pub async fn act(
    State(app): State<AppState>,
    StaffUser(me): StaffUser,
    Extension(csrf): Extension<CsrfToken>,
    Path((id, action_slug)): Path<(String, String)>,
    form: Form,
) -> Result<Response, AppError> {
    let (target, action) = target(&app, &id, &action_slug).await?;
    if let Some(reason) = action.refusal(&me.user, &target) {
        tracing::info!(staff_id = me.user.id, reason, "admin action refused");
        let page = confirm_page(&me, &csrf, &target, action, Default::default());
        return Ok((StatusCode::FORBIDDEN, render(&page)).into_response());
    }
    let accounts = &app.accounts;
    match action {
        Action::Deactivate | Action::Activate => {
            accounts.set_active(target.id, action == Action::Activate).await?;
        }
        Action::Delete => accounts.delete(target.id).await?,
        Action::LogOut => {
            accounts.end_sessions(target.id).await?;
        }
        Action::GrantStaff | Action::RevokeStaff => {
            accounts.set_staff(target.id, action == Action::GrantStaff).await?;
        }
        Action::SetPassword => {
            let PasswordFields { password, password1_errors, password2_errors } =
                password_fields(form.get("password1"), form.get("password2"), &target.username);
            let Some(password) = password else {
                let page = confirm_page(&me, &csrf, &target, action, (password1_errors, password2_errors));
                return Ok(render(&page).into_response());
            };
            accounts.set_password(&target, password).await?;
        }
    }
    audit(&me.user, action, &target);
    let back = if action == Action::Delete { list_url("", None) } else { list_url(&target.username, None) };
    let mut response = super::found(&back);
    let notice =
        set_cookie(NOTICE_COOKIE, &notice_value(action, &target.username), Some(NOTICE_MAX_AGE), true, app.cookies);
    response.headers_mut().append(header::SET_COOKIE, notice);
    Ok(response)
}

/// The audit line of an action done: who (staff username and id), what, whom. Never a password.
fn audit(me: &User, action: Action, target: &User) {
    tracing::info!(
        target: "roster::audit",
        action = %action.slug(),
        staff = %me.username,
        staff_id = me.id,
        user = %target.username,
        user_id = target.id,
        "admin action"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, name: &str, active: bool, staff: bool) -> User {
        User {
            id,
            username: name.to_owned(),
            username_key: name.to_lowercase(),
            password_hash: String::new(),
            is_active: active,
            is_staff: staff,
            date_joined: 0,
            last_login: None,
            last_seen: None,
        }
    }

    #[test]
    fn slugs_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.slug()), Some(a));
        }
        assert_eq!(Action::parse("drop-table"), None);
        assert_eq!(Action::parse(""), None);
    }

    #[test]
    fn nobody_locks_themselves_out() {
        let me = user(1, "root", true, true);
        let other = user(2, "bob", true, true);
        for a in Action::ALL {
            assert_eq!(a.refusal(&me, &other), None, "{a:?} on someone else");
        }
        let refused: Vec<Action> = Action::ALL.into_iter().filter(|a| a.refusal(&me, &me).is_some()).collect();
        assert_eq!(refused, [Action::Deactivate, Action::Delete, Action::RevokeStaff]);
        assert_eq!(Action::offered(&me, &me), [Action::LogOut, Action::SetPassword]);
        let inactive = user(3, "eve", false, false);
        assert_eq!(
            Action::offered(&inactive, &me),
            [Action::Activate, Action::LogOut, Action::SetPassword, Action::GrantStaff, Action::Delete]
        );
    }

    #[test]
    fn notices_are_ours_or_nothing() {
        assert_eq!(read_notice(&notice_value(Action::Deactivate, "bob")).as_deref(), Some("bob was deactivated."));
        let odd = notice_value(Action::GrantStaff, "Zoë.o+x@y");
        assert!(odd.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b','), "{odd}");
        assert_eq!(read_notice(&odd).as_deref(), Some("Zoë.o+x@y was made staff."));
        for bad in ["", "deactivate", "nuke.bob", "delete.", "delete.%3Cscript%3E", "delete.%ff"] {
            assert_eq!(read_notice(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pages_drop_the_extra_row_on_the_side_read() {
        let read = |names: &[&str]| names.iter().enumerate().map(|(i, n)| user(i as i64, n, true, false)).collect();
        let names = |users: &[User]| users.iter().map(|u| u.username.clone()).collect::<Vec<_>>();
        let mut users: Vec<User> = read(&["a", "b", "c"]);
        let pager = page_of(&mut users, KeyBound::Start, 2, "");
        assert_eq!(
            (names(&users), pager.prev, pager.next.as_deref()),
            (vec!["a".into(), "b".into()], None, Some("/admin/?after=b"))
        );
        let mut users: Vec<User> = read(&["a", "b", "c"]);
        let pager = page_of(&mut users, KeyBound::Before("d"), 2, "x");
        assert_eq!(names(&users), ["b", "c"]);
        assert_eq!(
            (pager.prev.as_deref(), pager.next.as_deref()),
            (Some("/admin/?q=x&before=b"), Some("/admin/?q=x&after=c"))
        );
        let mut users: Vec<User> = read(&["c"]);
        let pager = page_of(&mut users, KeyBound::After("b"), 2, "");
        assert_eq!(
            (names(&users), pager.prev.as_deref(), pager.next),
            (vec!["c".into()], Some("/admin/?before=c"), None)
        );
        let mut users: Vec<User> = Vec::new();
        let pager = page_of(&mut users, KeyBound::After("z"), 2, "");
        assert_eq!((pager.prev.as_deref(), pager.next), (Some("/admin/"), None), "an empty page links to the start");
    }

    #[test]
    fn list_urls_encode_the_search_and_the_key() {
        assert_eq!(list_url("", None), "/admin/");
        assert_eq!(list_url("a b", None), "/admin/?q=a%20b");
        assert_eq!(list_url("", Some(("after", "zoë"))), "/admin/?after=zo%C3%AB");
        assert_eq!(list_url("a&", Some(("before", "a+b"))), "/admin/?q=a%26&before=a%2Bb");
    }
}
