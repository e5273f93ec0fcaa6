//! The tutorial's HTTP side: form sign-up and log-in with Django-style CSRF
//! (`csrftoken` cookie + `csrfmiddlewaretoken` form field), session cookie `sessionid`.
//! Cookies are handled by hand so one pooled client serves many users.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode};

/// A client that never follows redirects and keeps no cookies of its own.
pub fn client(local: Option<IpAddr>) -> Client {
    let mut b = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(64);
    if let Some(ip) = local {
        b = b.local_address(ip);
    }
    b.build().expect("http client")
}

/// Value of cookie `name` among a response's `Set-Cookie` headers.
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let s = v.to_str().ok()?;
        let first = s.split(';').next()?.trim();
        let (k, val) = first.split_once('=')?;
        (k == name && !val.is_empty()).then(|| val.to_string())
    })
}

/// The `value` of the `csrfmiddlewaretoken` input in an HTML form (attribute order free).
pub fn form_token(html: &str) -> Option<String> {
    let at = html.find("csrfmiddlewaretoken")?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let v = tag.find("value=")? + "value=".len();
    let rest = &tag[v..];
    let quote = rest.chars().next()?;
    if quote == '"' || quote == '\'' {
        let rest = &rest[1..];
        Some(rest[..rest.find(quote)?].to_string())
    } else {
        Some(rest.split(|c: char| c.is_whitespace() || c == '/').next()?.to_string())
    }
}

/// GET a form page; returns (csrftoken cookie, form token).
async fn get_form(c: &Client, url: &str) -> Result<(String, String), String> {
    let resp = c.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let cookie = set_cookie(&resp, "csrftoken");
    let html = resp.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if status != StatusCode::OK {
        return Err(format!("GET {url}: {status}"));
    }
    let token = form_token(&html).ok_or_else(|| format!("GET {url}: no csrfmiddlewaretoken"))?;
    // Django rotates/masks tokens; the cookie may be absent when already set: reuse the form token.
    let cookie = cookie.ok_or_else(|| format!("GET {url}: no csrftoken cookie"))?;
    Ok((cookie, token))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignUp {
    Created,
    /// 200 with the form again (most likely: the user exists already).
    Rejected,
}

pub async fn sign_up(c: &Client, base: &str, user: &str, password: &str) -> Result<SignUp, String> {
    let url = format!("{base}/sign_up/");
    let (cookie, token) = get_form(c, &url).await?;
    let resp = c
        .post(&url)
        .header(COOKIE, format!("csrftoken={cookie}"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", user),
            ("password1", password),
            ("password2", password),
        ])
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    match resp.status() {
        StatusCode::FOUND | StatusCode::SEE_OTHER => Ok(SignUp::Created),
        StatusCode::OK => Ok(SignUp::Rejected),
        s => Err(format!("POST {url} ({user}): {s}")),
    }
}

/// Log in through the form; returns the `Cookie` header value to use afterwards
/// (`sessionid=..; csrftoken=..`).
pub async fn log_in(c: &Client, base: &str, user: &str, password: &str) -> Result<String, String> {
    let url = format!("{base}/log_in/");
    let (cookie, token) = get_form(c, &url).await?;
    let resp = c
        .post(&url)
        .header(COOKIE, format!("csrftoken={cookie}"))
        .form(&[("csrfmiddlewaretoken", token.as_str()), ("username", user), ("password", password)])
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    if status != StatusCode::FOUND && status != StatusCode::SEE_OTHER {
        return Err(format!("POST {url} ({user}): {status} (expected 302)"));
    }
    let loc = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if loc.contains("log_in") {
        return Err(format!("POST {url} ({user}): redirected back to {loc}"));
    }
    let session = set_cookie(&resp, "sessionid").ok_or_else(|| format!("POST {url} ({user}): no sessionid cookie"))?;
    let csrf = set_cookie(&resp, "csrftoken").unwrap_or(cookie);
    Ok(format!("sessionid={session}; csrftoken={csrf}"))
}

/// The value of cookie `name` in a `Cookie` header value (`a=1; b=2`).
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Log out through the confirm form (GET `/log_out/` for the CSRF token, then POST): the
/// session ends on the server, and with it every socket opened with it (close 4001).
pub async fn log_out(c: &Client, base: &str, cookie: &str) -> Result<(), String> {
    let url = format!("{base}/log_out/");
    let session = cookie_value(cookie, "sessionid").ok_or("log out: no sessionid in the cookie")?;
    let resp = c.get(&url).header(COOKIE, cookie).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let fresh = set_cookie(&resp, "csrftoken");
    let html = resp.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if status != StatusCode::OK {
        return Err(format!("GET {url}: {status}"));
    }
    let token = form_token(&html).ok_or_else(|| format!("GET {url}: no csrfmiddlewaretoken"))?;
    let csrf = fresh.or_else(|| cookie_value(cookie, "csrftoken").map(str::to_owned));
    let csrf = csrf.ok_or_else(|| format!("GET {url}: no csrftoken cookie"))?;
    let resp = c
        .post(&url)
        .header(COOKIE, format!("sessionid={session}; csrftoken={csrf}"))
        .form(&[("csrfmiddlewaretoken", token.as_str())])
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    match resp.status() {
        StatusCode::FOUND | StatusCode::SEE_OTHER => Ok(()),
        s => Err(format!("POST {url}: {s} (expected 302)")),
    }
}

/// GET a page as a logged-in browser would (the list page before its socket opens); reads the
/// whole body. Returns its size.
pub async fn get_page(c: &Client, url: &str, cookie: &str) -> Result<usize, String> {
    let resp = c.get(url).header(COOKIE, cookie).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
    if status != StatusCode::OK {
        return Err(format!("GET {url}: {status}"));
    }
    Ok(body.len())
}

#[cfg(test)]
mod tests {
    use super::{cookie_value, form_token};

    #[test]
    fn reads_cookies_from_a_cookie_header() {
        assert_eq!(cookie_value("sessionid=abc; csrftoken=xyz", "csrftoken"), Some("xyz"));
        assert_eq!(cookie_value("sessionid=abc", "sessionid"), Some("abc"));
        assert_eq!(cookie_value("xsessionid=abc", "sessionid"), None);
    }

    #[test]
    fn finds_django_and_reordered_tokens() {
        let d = r#"<form><input type="hidden" name="csrfmiddlewaretoken" value="abc123"></form>"#;
        assert_eq!(form_token(d).as_deref(), Some("abc123"));
        let r = r#"<input value='xyz' type=hidden name=csrfmiddlewaretoken>"#;
        assert_eq!(form_token(r).as_deref(), Some("xyz"));
    }
}
