//! The JSON API, session-authenticated like the pages.
//!
//! `GET /api/users/` returns the same snapshot a `roster.v1` socket gets on connect.
//! `GET /api/users/?page=N&q=PREFIX` returns that page of the list as the page shows it:
//! online users first, then the others most recently seen first, with `online` and `last_seen`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::AppError;
use super::pages::ListParams;
use super::session::MaybeUser;
use super::AppState;

#[derive(Serialize)]
struct ApiUser {
    id: i64,
    username: String,
    online: bool,
    /// Unix milliseconds; null for online users and users never seen.
    last_seen: Option<i64>,
}

#[derive(Serialize)]
struct ApiPage {
    page: u64,
    page_size: u32,
    q: String,
    has_next: bool,
    online_count: usize,
    registered_count: u64,
    users: Vec<ApiUser>,
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

pub async fn users(
    State(app): State<AppState>,
    user: MaybeUser,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if user.0.is_none() {
        return api_error(StatusCode::FORBIDDEN, "authentication required: log in first");
    }
    if !query.contains_key("page") && !query.contains_key("q") {
        return Json(app.hub.snapshot()).into_response();
    }
    let ListParams { page, q } = match ListParams::parse(&query) {
        Ok(params) => params,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e.api_message()),
    };
    match app.list_page(q, page).await {
        Ok(listing) => Json(ApiPage {
            page,
            page_size: app.page_size,
            q: q.to_owned(),
            has_next: listing.has_next,
            online_count: app.hub.online_count(),
            registered_count: app.hub.registered_count(),
            users: listing
                .users
                .into_iter()
                .map(|u| {
                    let online = app.hub.is_online(u.id);
                    ApiUser {
                        id: u.id,
                        username: u.username,
                        online,
                        last_seen: if online { None } else { u.last_seen_ms },
                    }
                })
                .collect(),
        })
        .into_response(),
        Err(AppError::Store(e)) => {
            tracing::error!(error = %e, "api: database unavailable");
            api_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        Err(e) => e.into_response(),
    }
}
