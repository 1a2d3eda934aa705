//! `server.httpsRedirect`: plain-HTTP requests answered with a redirect to
//! the same host and path over HTTPS.
//!
//! The target is `https://<host as sent, minus its port><path and query>`,
//! with the first HTTPS listener's port when it is not 443. `__ping__`
//! (the liveness probe) and ACME HTTP-01 challenges
//! (`/.well-known/acme-challenge/`, which must be answered over plain
//! HTTP) are proxied as usual. GET and HEAD get a 301 (Moved Permanently);
//! other methods a 308 (Permanent Redirect), which keeps the method and
//! body where a 301 lets clients turn a POST into a GET.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::{ConnInfo, ProxyBody};
use crate::shared::Shared;

/// Path prefix of ACME HTTP-01 challenges.
const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

/// The redirect for this request, or `None` when it is to be proxied
/// (redirect off, a TLS connection, ACME). `raw_host` is the host that
/// routes the request (see [`super::authority`]), already valid and not
/// `__ping__`.
pub fn to_https<B>(
    shared: &Shared,
    conn: &ConnInfo,
    req: &Request<B>,
    raw_host: &str,
) -> Option<Response<ProxyBody>> {
    if !shared.config.https_redirect || conn.tls {
        return None;
    }
    let port = shared.config.https.first()?.address.port();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if path.starts_with(ACME_CHALLENGE) {
        return None;
    }
    let target = location(raw_host, port, path)?;
    let status = if req.method() == Method::GET || req.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::LOCATION, target);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Some(resp)
}

/// `https://host[:port]/path` from the host as sent (case kept, port
/// dropped, IPv6 brackets kept).
fn location(raw_host: &str, port: u16, path: &str) -> Option<HeaderValue> {
    let raw_host = raw_host.trim();
    let host = if raw_host.starts_with('[') {
        &raw_host[..=raw_host.find(']')?]
    } else {
        raw_host.rsplit_once(':').map_or(raw_host, |(h, _)| h)
    };
    if host.is_empty() {
        return None;
    }
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    HeaderValue::from_str(&format!("https://{host}{port}{path}")).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let l = |h, p, path| location(h, p, path).unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            l("Example.com:8080", 443, "/a?b"),
            "https://Example.com/a?b"
        );
        assert_eq!(l("example.com", 8443, "/"), "https://example.com:8443/");
        assert_eq!(l("[::1]:80", 8443, "/x"), "https://[::1]:8443/x");
        assert_eq!(l("[::1]", 443, "/x"), "https://[::1]/x");
        assert!(location("", 443, "/").is_none());
        assert!(location("[::1", 443, "/").is_none());
    }
}
