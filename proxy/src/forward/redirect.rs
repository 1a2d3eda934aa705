//! Redirects answered by the proxy: a route document's `RequestRedirect`
//! filter ([`by_rule`]), and `server.httpsRedirect` ([`to_https`]), which
//! answers plain-HTTP requests with a redirect to the same host and path
//! over HTTPS.
//!
//! The target is `https://<host as sent, minus its port><path and query>`,
//! with the first HTTPS listener's port when it is not 443. `__ping__`
//! (the liveness probe) and ACME HTTP-01 challenges
//! (`/.well-known/acme-challenge/`, which must be answered over plain
//! HTTP) are proxied as usual. GET and HEAD get a 301 (Moved Permanently);
//! other methods a 308 (Permanent Redirect), which keeps the method and
//! body where a 301 lets clients turn a POST into a GET.

use hipache_schema::routes::rewrite::Origin;
use hipache_schema::routes::Redirect;
use hipache_schema::Scheme;
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
    Some(response(status, target))
}

/// A rule's `RequestRedirect` for a request: `host` is the normalised
/// request host, `raw_host` the host as sent (its port is the one the
/// client addressed), `path` the path after the redirect's own path
/// replacement. `None` when the location is not a valid header value.
pub fn by_rule(
    redirect: &Redirect,
    conn: &ConnInfo,
    host: &str,
    raw_host: &str,
    path: &str,
    query: Option<&str>,
) -> Option<Response<ProxyBody>> {
    let scheme = if conn.tls {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let origin = Origin {
        scheme,
        host,
        port: addressed_port(raw_host).unwrap_or(scheme.default_port()),
        path,
        query,
    };
    let location = HeaderValue::from_str(&redirect.location(&origin)).ok()?;
    Some(response(redirect.status, location))
}

/// The port in a `Host` value, if it names one.
fn addressed_port(raw_host: &str) -> Option<u16> {
    let after_host = match raw_host.rfind(']') {
        Some(end) => &raw_host[end + 1..],
        None => raw_host,
    };
    after_host.rsplit_once(':')?.1.trim().parse().ok()
}

fn response(status: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::LOCATION, location);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
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

    #[test]
    fn addressed_ports() {
        assert_eq!(addressed_port("a.com:8080"), Some(8080));
        assert_eq!(addressed_port("a.com"), None);
        assert_eq!(addressed_port("[::1]:81"), Some(81));
        assert_eq!(addressed_port("[::1]"), None);
    }
}
