//! The host that routes a request, read once, so that the host which
//! chose the route is the host the backend is told.
//!
//! RFC 9112 §3.2: a request with more than one `Host` line is answered
//! 400. §3.2.2: in an absolute-form request (`GET http://b.example/`) the
//! target's authority is the host and `Host` is ignored (and replaced
//! upstream, see [`super::upstream_request`]). RFC 9113 §8.3.1: an HTTP/2
//! request whose `host` names another entity than `:authority` is
//! malformed. Without these rules a client can route by one host while
//! the backend, which builds links and picks tenants from `Host`, is told
//! another.

use http::header::{self, HeaderValue};
use http::{Request, Version};

use crate::error::ProxyError;

/// The raw host of `req` as sent (port and case kept): the authority of an
/// absolute-form or HTTP/2 request, else the one `Host` header.
pub fn routing_host<B>(req: &Request<B>) -> Result<&str, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    let Some(authority) = req.uri().authority() else {
        return host_text(host.ok_or(ProxyError::NoHost)?);
    };
    // Authority form (`GET host:80`) is CONNECT's alone (§3.2.3).
    if req.uri().scheme().is_none() {
        return Err(ProxyError::BadRequest("authority-form target"));
    }
    if req.version() == Version::HTTP_2 {
        if let Some(host) = host {
            let same = hipache_schema::normalize_host(host_text(host)?)
                .is_ok_and(|h| hipache_schema::normalize_host(authority.as_str()) == Ok(h));
            if !same {
                return Err(ProxyError::BadRequest(":authority and Host disagree"));
            }
        }
    }
    Ok(authority.as_str())
}

fn host_text(value: &HeaderValue) -> Result<&str, ProxyError> {
    value
        .to_str()
        .map_err(|_| ProxyError::BadRequest("invalid Host header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn origin_form_uses_the_one_host_header() {
        let r = req(Version::HTTP_11, "/", &["A.example:8080"]);
        assert_eq!(routing_host(&r).ok(), Some("A.example:8080"));
    }

    #[test]
    fn two_host_headers_are_refused() {
        let r = req(Version::HTTP_11, "/", &["a.example", "b.example"]);
        assert!(matches!(routing_host(&r), Err(ProxyError::BadRequest(_))));
        let same = req(Version::HTTP_11, "/", &["a.example", "a.example"]);
        assert!(matches!(
            routing_host(&same),
            Err(ProxyError::BadRequest(_))
        ));
    }

    #[test]
    fn no_host_is_no_host() {
        let r = req(Version::HTTP_11, "/", &[]);
        assert!(matches!(routing_host(&r), Err(ProxyError::NoHost)));
    }

    #[test]
    fn absolute_form_authority_wins_over_host() {
        let r = req(Version::HTTP_11, "http://b.example/x", &["a.example"]);
        assert_eq!(routing_host(&r).ok(), Some("b.example"));
    }

    #[test]
    fn http2_authority_and_host_must_agree() {
        let agree = req(Version::HTTP_2, "https://A.example/", &["a.example"]);
        assert_eq!(routing_host(&agree).ok(), Some("A.example"));
        let alone = req(Version::HTTP_2, "https://a.example/", &[]);
        assert_eq!(routing_host(&alone).ok(), Some("a.example"));
        let differ = req(Version::HTTP_2, "https://a.example/", &["b.example"]);
        assert!(matches!(
            routing_host(&differ),
            Err(ProxyError::BadRequest(_))
        ));
        let invalid = req(Version::HTTP_2, "https://a.example/", &["a example"]);
        assert!(matches!(
            routing_host(&invalid),
            Err(ProxyError::BadRequest(_))
        ));
    }
}
