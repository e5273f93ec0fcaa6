//! Entry points for the fuzz targets in `fuzz/` (docs/fuzzing.md). Not an API: thin wrappers that
//! let the targets run the crate-private parsers the server runs (the WebSocket frame reader,
//! the handshake checks, the sign-up form's fields, the CSRF cookie and token), with the same
//! calls in the same order as the handlers. The public parsers (`safe_next`, `import_csv`,
//! `verify`, …) are fuzzed directly.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use presence::protocol::views::WindowError;
use presence::Window;
use tokio::io::{AsyncRead, ReadBuf};

use crate::accounts::Username;
use crate::web::cookies::CookieOptions;
use crate::web::csrf::{submitted_token, CsrfPolicy, CsrfToken};
use crate::web::pages::password_fields;
use crate::ws::{accept_key, handshake_key, protocol_and_window, FrameReader, Incoming, ReadError};

/// What the socket loop gets from [`FrameReader::next`], one per call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    Ping(Vec<u8>),
    Close(Option<u16>),
    /// A pong, or the start of a data frame.
    Other,
    /// A whole roster.v2 text message.
    Text(Vec<u8>),
    /// The socket closes with this code.
    Violation(u16),
    /// End of input.
    Gone,
}

/// Reads `wire` as client frames, `chunk` bytes (at least 1) per read, until a close, an error
/// or the end; `roster_v2` as on a roster.v2 socket (text messages delivered, not skipped).
pub fn read_client_frames(wire: &[u8], chunk: usize, roster_v2: bool) -> Vec<ClientEvent> {
    let mut reader = FrameReader::new(Chunked { rest: wire, chunk: chunk.max(1) });
    reader.messages = roster_v2;
    let mut events = Vec::new();
    loop {
        let event = match ready(reader.next()) {
            Ok(Incoming::Ping(p)) => ClientEvent::Ping(p),
            Ok(Incoming::Close(code)) => ClientEvent::Close(code),
            Ok(Incoming::Other) => ClientEvent::Other,
            Ok(Incoming::Text(t)) => ClientEvent::Text(t),
            Err(ReadError::Violation(code)) => ClientEvent::Violation(code),
            Err(ReadError::Gone) => ClientEvent::Gone,
        };
        let end = matches!(event, ClientEvent::Close(_) | ClientEvent::Violation(_) | ClientEvent::Gone);
        events.push(event);
        if end {
            return events;
        }
    }
}

/// A reader over a byte slice that hands out at most `chunk` bytes per read (never pending).
struct Chunked<'a> {
    rest: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = self.rest.len().min(self.chunk).min(buf.remaining());
        let (head, tail) = self.rest.split_at(n);
        buf.put_slice(head);
        self.rest = tail;
        Poll::Ready(Ok(()))
    }
}

/// Runs a future whose every read is ready. Pending would be a bug of the reader.
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the frame reader waited on input that was all there"),
    }
}

/// The verdict of the handshake checks `GET /users/` runs before the session and the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// `Sec-WebSocket-Accept`, or the status the handshake is refused with.
    pub accept: Result<String, u16>,
    pub origin_allowed: bool,
    /// The subprotocol answered and (roster.v2) the window, or why the window is refused.
    pub protocol: Result<(Option<&'static str>, Option<Window>), WindowError>,
}

/// The handshake checks on a request made of raw parts; `None` when the method or a header is
/// not even valid HTTP (hyper refuses those before any handler runs).
pub fn ws_handshake(
    method: &[u8],
    headers: &[(&[u8], &[u8])],
    query: Option<&str>,
    https: bool,
    allowed_origins: &[&str],
) -> Option<Handshake> {
    let method = Method::from_bytes(method).ok()?;
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(HeaderName::from_bytes(name).ok()?, HeaderValue::from_bytes(value).ok()?);
    }
    let policy = CsrfPolicy {
        cookies: CookieOptions { secure: https },
        body_timeout: std::time::Duration::from_secs(1),
        allowed_origins: allowed_origins.iter().map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase()).collect(),
    };
    let accept = handshake_key(&method, &map)
        .map(|key| accept_key(key.as_bytes()).to_str().map(str::to_owned).unwrap_or_default())
        .map_err(|(refusal, _)| refusal.status().as_u16());
    Some(Handshake {
        accept,
        origin_allowed: policy.socket_origin_allowed(&map, https),
        protocol: protocol_and_window(&map, query, 200).map(|(p, w)| (p.subprotocol(), w)),
    })
}

/// The sign-up form's verdict on its fields, as `POST /sign_up/` reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignUp {
    /// The normalized username, or the error shown.
    pub username: Result<String, String>,
    /// Whether the two password fields give a valid new password, else the messages shown
    /// under password1 and password2.
    pub password: Result<(), (Vec<String>, Vec<String>)>,
}

/// Decodes a sign-up body and checks its fields; `Err` when the body is refused (400).
pub fn sign_up_form(body: &[u8]) -> Result<SignUp, String> {
    let form = crate::web::form::Form::parse(body).map_err(|e| e.to_string())?;
    let raw_username = form.get("username");
    let username = Username::parse(raw_username).map(Username::into_string).map_err(|e| e.to_string());
    let fields = password_fields(form.get("password1"), form.get("password2"), raw_username);
    let password = match fields.password {
        Some(_) => Ok(()),
        None => Err((fields.password1_errors, fields.password2_errors)),
    };
    Ok(SignUp { username, password })
}

/// What the CSRF middleware makes of a request's cookies and submitted token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csrf {
    /// The secret of a well-formed `csrftoken` cookie.
    pub secret: Option<String>,
    /// The submitted token (`X-CSRFToken`, else the form field), or a refused form body.
    pub submitted: Result<Option<String>, String>,
    /// Whether the request passes the token check (a cookie, a token, and they match).
    pub passes: bool,
    /// A fresh masked form token of the cookie's secret, and whether it matches that secret.
    pub fresh_form_token: Option<(String, bool)>,
}

/// The token check of an unsafe request: `cookie_headers` are its `Cookie` headers,
/// `csrf_header` its `X-CSRFToken`, `body` a form body. `None` when a header is not valid HTTP.
pub fn csrf(cookie_headers: &[&[u8]], csrf_header: Option<&[u8]>, body: &[u8]) -> Option<Csrf> {
    let mut map = HeaderMap::new();
    for value in cookie_headers {
        map.append(axum::http::header::COOKIE, HeaderValue::from_bytes(value).ok()?);
    }
    if let Some(value) = csrf_header {
        map.append(crate::web::csrf::CSRF_HEADER, HeaderValue::from_bytes(value).ok()?);
    }
    map.append(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    let token = CsrfToken::from_cookie(&map);
    let submitted = submitted_token(&map, body).map_err(|e| e.to_string());
    let passes = match (&token, &submitted) {
        (Some(token), Ok(Some(t))) => token.matches(t),
        _ => false,
    };
    let fresh_form_token = token.as_ref().map(|t| {
        let form = t.form_token();
        let ok = t.matches(&form);
        (form, ok)
    });
    Some(Csrf { secret: token.map(|t| t.secret().to_owned()), submitted, passes, fresh_form_token })
}

/// The hash of the session cookie among `cookie_headers`, as the session extractor computes it.
pub fn session_hash(cookie_headers: &[&[u8]]) -> Option<Option<String>> {
    let mut req = axum::http::Request::builder();
    for value in cookie_headers {
        req = req.header(axum::http::header::COOKIE, HeaderValue::from_bytes(value).ok()?);
    }
    let (parts, ()) = req.body(()).ok()?.into_parts();
    Some(crate::web::session::session_hash(&parts))
}
