//! The status page's token: `Authorization: Bearer <token>`, the cookie a
//! `?token=` visit set, or `?token=` itself; compared in constant time.

use http::{header, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

/// The cookie that carries the token for the page's own requests.
pub const COOKIE: &str = "hipache_status_token";

/// Whether a request may see the page.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Allowed by `?token=`: the answer sets the cookie, so that the
    /// page's script (and links) need not carry it.
    AllowedSetCookie,
    Denied,
}

/// Checks a request's credentials against `token` (`None`: none asked).
pub fn check(token: Option<&str>, headers: &HeaderMap, query: Option<&str>) -> Access {
    let Some(token) = token else {
        return Access::Allowed;
    };
    let matches = |given: &str| bool::from(given.as_bytes().ct_eq(token.as_bytes()));
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .any(|t| matches(t.trim()));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(matches);
    if bearer || cookie {
        return Access::Allowed;
    }
    let in_query = query
        .map(|q| url::form_urlencoded::parse(q.as_bytes()))
        .into_iter()
        .flatten()
        .any(|(k, v)| k == "token" && matches(&v));
    if in_query {
        Access::AllowedSetCookie
    } else {
        Access::Denied
    }
}

/// The `Set-Cookie` value that keeps `token` for the page's own requests.
pub fn cookie(token: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/status; HttpOnly; SameSite=Strict"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    #[test]
    fn no_token_asked_lets_everyone_in() {
        assert_eq!(check(None, &HeaderMap::new(), None), Access::Allowed);
    }

    #[test]
    fn a_token_by_header_cookie_or_query() {
        let t = Some("s3cret");
        let none = HeaderMap::new();
        assert_eq!(check(t, &none, None), Access::Denied);
        assert_eq!(check(t, &none, Some("token=wrong")), Access::Denied);
        assert_eq!(
            check(t, &none, Some("q=a&token=s3cret")),
            Access::AllowedSetCookie
        );
        let bearer = headers(&[(header::AUTHORIZATION, "Bearer s3cret")]);
        assert_eq!(check(t, &bearer, None), Access::Allowed);
        let wrong = headers(&[(header::AUTHORIZATION, "Bearer s3cre")]);
        assert_eq!(check(t, &wrong, None), Access::Denied);
        let cookie = headers(&[(header::COOKIE, "a=b; hipache_status_token=s3cret")]);
        assert_eq!(check(t, &cookie, None), Access::Allowed);
        let other = headers(&[(header::COOKIE, "hipache_status_tokenx=s3cret")]);
        assert_eq!(check(t, &other, None), Access::Denied);
    }
}
