//! Reading and writing cookies: just the two we use (`sessionid`, `csrftoken`), no jar.
//!
//! Values we accept are plain ASCII tokens; anything else in a cookie header is ignored.

use axum::http::{header, HeaderMap, HeaderValue};

/// Options shared by every cookie Roster sets.
#[derive(Clone, Copy, Debug, Default)]
pub struct CookieOptions {
    /// Add `Secure` (the site is served over HTTPS, e.g. behind a TLS proxy).
    pub secure: bool,
}

/// The value of cookie `name` in the request, if present and valid UTF-8.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` header value. `value` must be a token we generated (ASCII alphanumerics and
/// `-_`), so it needs no quoting. `max_age: None` makes a browser-session cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>, http_only: bool, opts: CookieOptions) -> HeaderValue {
    let mut s = format!("{name}={value}; Path=/; SameSite=Lax");
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={age}"));
    }
    if http_only {
        s.push_str("; HttpOnly");
    }
    if opts.secure {
        s.push_str("; Secure");
    }
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear_cookie(name: &str, opts: CookieOptions) -> HeaderValue {
    set_cookie(name, "", Some(0), true, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; sessionid=abc; csrftoken=xyz"));
        assert_eq!(cookie_value(&h, "sessionid"), Some("abc"));
        assert_eq!(cookie_value(&h, "csrftoken"), Some("xyz"));
        assert_eq!(cookie_value(&h, "missing"), None);
    }

    #[test]
    fn set_cookie_flags() {
        let v = set_cookie("sessionid", "tok", Some(10), true, CookieOptions { secure: true });
        assert_eq!(v, "sessionid=tok; Path=/; SameSite=Lax; Max-Age=10; HttpOnly; Secure");
    }
}
