//! The one error type at the HTTP edge. It logs the cause chain for operators and shows the
//! person a plain page with the right status; it never shows internals or secrets.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::templates::{render, ErrorPage};
use crate::accounts::AccountError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A request that failed the CSRF check (the only 403 that talks about CSRF).
    #[error("CSRF verification failed: {0}")]
    CsrfFailed(&'static str),
    /// A logged-in person without the right to this page (not staff).
    #[error("permission denied")]
    PermissionDenied,
    #[error("not found")]
    NotFound,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("request body too slow")]
    RequestTimeout,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("database unavailable")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<AccountError> for AppError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Store(e) => AppError::Store(e),
            AccountError::NotFound => AppError::NotFound,
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl AppError {
    fn status_and_text(&self) -> (StatusCode, &'static str, String) {
        match self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", (*m).to_owned()),
            AppError::CsrfFailed(m) => {
                (StatusCode::FORBIDDEN, "Forbidden (403)", format!("CSRF verification failed. Request aborted. {m}"))
            }
            AppError::PermissionDenied => {
                (StatusCode::FORBIDDEN, "Forbidden (403)", "You don't have permission to view this page.".to_owned())
            }
            AppError::NotFound => (StatusCode::NOT_FOUND, "Not found", "There is no page at this address.".to_owned()),
            AppError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request too large",
                "The form sent more data than this server accepts.".to_owned(),
            ),
            AppError::RequestTimeout => {
                (StatusCode::REQUEST_TIMEOUT, "Request timeout", "The form data did not arrive in time.".to_owned())
            }
            AppError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported form encoding",
                "Forms must be sent as application/x-www-form-urlencoded.".to_owned(),
            ),
            AppError::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
                "The database cannot be reached right now. Please try again in a moment.".to_owned(),
            ),
            AppError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "Server error", "Something went wrong on our side.".to_owned())
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, title, message) = self.status_and_text();
        if status.is_server_error() {
            tracing::error!(error = %self, cause = ?std::error::Error::source(&self), "request failed");
        }
        let page = ErrorPage { title, message: &message };
        (status, render(&page)).into_response()
    }
}
