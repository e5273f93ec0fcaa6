//! Reading and writing cookies: just the two we use (`sessionid`, `csrftoken`), no jar.
//!
//! Values we accept are plain ASCII tokens; anything else in a cookie header is ignored, pair by
//! pair (one bad byte in another cookie must not hide ours).

use axum::http::{header, HeaderMap, HeaderValue};

/// Options shared by every cookie Roster sets.
#[derive(Clone, Copy, Debug, Default)]
pub struct CookieOptions {
    /// Add `Secure` (the site is served over HTTPS, e.g. behind a TLS proxy).
    pub secure: bool,
}

/// The value of cookie `name` in the request, if present and valid UTF-8 (surrounding double
/// quotes removed). The header is read as bytes, one `name=value` pair at a time, so a
/// non-ASCII byte in another cookie hides nothing; the first pair with this name counts.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
        })
        .find(|(k, _)| *k == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .map(|v| v.trim_matches('"'))
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
    fn a_non_ascii_byte_elsewhere_hides_nothing() {
        let mut h = HeaderMap::new();
        let raw = b"theme=caf\xe9; sessionid=abc ; x=\xff\xfe;csrftoken=\"xyz\"";
        h.insert(header::COOKIE, HeaderValue::from_bytes(raw).expect("obs-text"));
        assert_eq!(cookie_value(&h, "sessionid"), Some("abc"));
        assert_eq!(cookie_value(&h, "csrftoken"), Some("xyz"));
        assert_eq!(cookie_value(&h, "theme"), None, "not UTF-8: absent");
        h.append(header::COOKIE, HeaderValue::from_static("late=1"));
        assert_eq!(cookie_value(&h, "late"), Some("1"), "every Cookie header is read");
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("novalue; =x; sessionid="));
        assert_eq!(cookie_value(&h, "sessionid"), Some(""));
        assert_eq!(cookie_value(&h, "novalue"), None);
    }

    #[test]
    fn set_cookie_flags() {
        let v = set_cookie("sessionid", "tok", Some(10), true, CookieOptions { secure: true });
        assert_eq!(v, "sessionid=tok; Path=/; SameSite=Lax; Max-Age=10; HttpOnly; Secure");
    }
}
