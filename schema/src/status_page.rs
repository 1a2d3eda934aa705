//! What the proxy's and the syncer's status pages share: the token (its
//! form, and where a request may carry it: `Authorization: Bearer`, the
//! cookie a `?token=` visit set, or `?token=`), compared in constant time;
//! HTML escaping; the content security policy that keeps every asset
//! inline.

use http::{header, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

/// The cookie that carries the token for a page's own requests.
pub const COOKIE: &str = "hipache_status_token";

/// Nothing but the page itself: no asset from another origin, inline
/// style and script only, fetches to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     script-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Whether `token` may be a status token: non-empty, letters, digits and
/// `-._~` (it travels in a header, a query string and a cookie unencoded).
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Whether a request may see a page.
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
    let matches = |given: &[u8]| bool::from(given.ct_eq(token.as_bytes()));
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .any(|t| matches(t.trim().as_bytes()));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(|t| matches(t.as_bytes()));
    if bearer || cookie {
        return Access::Allowed;
    }
    let in_query = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.strip_prefix("token="))
        .any(|t| {
            let t: Vec<u8> = percent_encoding::percent_decode_str(t).collect();
            matches(&t)
        });
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

/// The headers of every status answer: never cached, never sniffed, and,
/// when the token came in the query (`keep` is the token), the cookie that
/// keeps it for the page's own requests.
pub fn finish(headers: &mut HeaderMap, access: Access, keep: Option<&str>) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if access == Access::AllowedSetCookie {
        if let Some(c) = keep.and_then(cookie) {
            headers.insert(header::SET_COOKIE, c);
        }
    }
}

/// `text` safe in HTML text and in quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
        assert_eq!(check(t, &none, Some("mytoken=s3cret")), Access::Denied);
        assert_eq!(
            check(t, &none, Some("q=a&token=s3cret")),
            Access::AllowedSetCookie
        );
        assert_eq!(
            check(t, &none, Some("token=%73%33cret")),
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

    #[test]
    fn tokens_are_url_safe() {
        assert!(is_valid_token("a-b.c_d~9"));
        for bad in ["", "a b", "a;b", "a&b", "a%b", "é"] {
            assert!(!is_valid_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
