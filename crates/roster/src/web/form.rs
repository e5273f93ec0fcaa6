//! `application/x-www-form-urlencoded` bodies, parsed strictly: a body that is not valid
//! UTF-8 after percent-decoding is a 400 with a clear message, not a lossy guess.
//!
//! The CSRF middleware has already buffered and size-limited the body.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};

use super::error::AppError;

/// A parsed form: the first value of each field.
#[derive(Debug, Default)]
pub struct Form {
    fields: HashMap<String, String>,
}

impl Form {
    /// Parses a body. Fails on bytes that do not decode to UTF-8.
    pub fn parse(body: &[u8]) -> Result<Form, AppError> {
        let mut fields = HashMap::new();
        for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let k = decode(k).ok_or(AppError::BadRequest("The form data is not valid UTF-8."))?;
            let v = decode(v).ok_or(AppError::BadRequest("The form data is not valid UTF-8."))?;
            fields.entry(k).or_insert(v);
        }
        Ok(Form { fields })
    }

    /// The value of `name`, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    /// One field from a raw body, for the CSRF check (which runs before the handler). A form
    /// body that does not decode is an error (400), not a missing token.
    pub fn field_from_body(headers: &HeaderMap, body: &[u8], name: &str) -> Result<Option<String>, AppError> {
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Ok(None);
        }
        Ok(Form::parse(body)?.fields.remove(name))
    }
}

/// Percent-decoding with `+` as space; `None` when the result is not UTF-8.
fn decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|_| AppError::PayloadTooLarge)?;
        Form::parse(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let f = Form::parse(b"username=a%40b.c&password=p+w%26&x=1&x=2&empty=&flag").expect("valid");
        assert_eq!(f.get("username"), "a@b.c");
        assert_eq!(f.get("password"), "p w&");
        assert_eq!(f.get("x"), "1");
        assert_eq!(f.get("empty"), "");
        assert_eq!(f.get("flag"), "");
        assert_eq!(f.get("missing"), "");
    }

    #[test]
    fn rejects_invalid_utf8() {
        assert!(Form::parse(b"username=%ff%fe").is_err());
        assert!(Form::parse(b"username=\xff").is_err());
    }

    #[test]
    fn stray_percent_is_literal() {
        assert_eq!(Form::parse(b"a=100%&b=%4").expect("valid").get("a"), "100%");
        assert_eq!(Form::parse(b"b=%4").expect("valid").get("b"), "%4");
        assert_eq!(Form::parse(b"c=%zz").expect("valid").get("c"), "%zz");
    }
}
