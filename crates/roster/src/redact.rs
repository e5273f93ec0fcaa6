//! Secrets out of what is shown: a URL's password becomes `***` (database and Redis URLs in
//! errors, logs and `roster config`). Pure string work; depends on nothing.

/// `scheme://user:secret@host/db` -> `scheme://user:***@host/db`; other strings unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let authority_end = url[rest_start..].find(['/', '?', '#']).map_or(url.len(), |i| rest_start + i);
    let authority = &url[rest_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..rest_start], &userinfo[..colon], &url[rest_start + at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:p@h:5432/d"), "postgres://u:***@h:5432/d");
        assert_eq!(redact_url("x://u:p@ss@h/d?a=b"), "x://u:***@h/d?a=b");
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact_url("sqlite://roster.db"), "sqlite://roster.db");
        assert_eq!(redact_url("mysql://h/a@b:c"), "mysql://h/a@b:c");
        assert_eq!(redact_url("postgres://bob:hunter2@db:5432/roster"), "postgres://bob:***@db:5432/roster");
        assert_eq!(redact_url("postgres://a:b@c@h/d?x=1"), "postgres://a:***@h/d?x=1");
        assert_eq!(redact_url("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
    }
}
