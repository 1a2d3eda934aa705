//! CORS (Gateway API's HTTPCORSFilter): a preflight from an allowed origin
//! is answered by the proxy with what may be sent; an actual request from
//! one gets `Access-Control-Allow-Origin` (and the rest) on its answer. A
//! request from an origin not allowed gets no CORS header at all, so the
//! browser refuses it; a preflight from one is answered 204 without them.

use hipache_schema::routes::policies::Cors;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};

use super::super::headers::set;
use super::super::ProxyBody;

/// Methods allowed when the filter names none (CORS "simple" methods).
const DEFAULT_METHODS: &str = "GET, HEAD, POST";

/// The answer to a preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`); `None` for any other request.
pub fn preflight<B>(cors: &Cors, req: &Request<B>) -> Option<Response<ProxyBody>> {
    let h = req.headers();
    if req.method() != Method::OPTIONS || !h.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return None;
    }
    let origin = h.get(header::ORIGIN)?;
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let out = resp.headers_mut();
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    if !origin.to_str().is_ok_and(|o| cors.allows(o)) {
        return Some(resp);
    }
    for (name, value) in allow_origin(cors, origin) {
        out.insert(name, value);
    }
    let methods = match cors.allow_methods.is_empty() {
        true => DEFAULT_METHODS.to_owned(),
        false => cors.allow_methods.join(", "),
    };
    set(out, &header::ACCESS_CONTROL_ALLOW_METHODS, &methods);
    let requested = h
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok());
    let headers = match (cors.allow_headers.iter().any(|a| a == "*"), requested) {
        // `*` means any header; with credentials browsers take it
        // literally, so the requested ones are echoed instead.
        (true, Some(r)) if cors.allow_credentials => Some(r.to_owned()),
        _ if !cors.allow_headers.is_empty() => Some(cors.allow_headers.join(", ")),
        _ => None,
    };
    if let Some(v) = headers {
        set(out, &header::ACCESS_CONTROL_ALLOW_HEADERS, &v);
    }
    if let Some(age) = cors.max_age {
        out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
    }
    Some(resp)
}

/// The CORS headers of an actual answer to a request from `Origin`.
pub fn response_headers(cors: &Cors, request: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let Some(origin) = request.get(header::ORIGIN) else {
        return Vec::new();
    };
    if !origin.to_str().is_ok_and(|o| cors.allows(o)) {
        return Vec::new();
    }
    let mut out = allow_origin(cors, origin);
    if !cors.expose_headers.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(", ")) {
            out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, v));
        }
    }
    out
}

/// `Access-Control-Allow-Origin` (`*` only without credentials: browsers
/// refuse `*` on a credentialed request) and `-Allow-Credentials`.
fn allow_origin(cors: &Cors, origin: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let value = match cors.any_origin() && !cors.allow_credentials {
        true => HeaderValue::from_static("*"),
        false => origin.clone(),
    };
    out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, value));
    if cors.allow_credentials {
        out.push((
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(credentials: bool) -> Cors {
        Cors {
            allow_origins: vec!["https://*.example.com".into()],
            allow_methods: vec!["GET".into(), "PUT".into()],
            allow_headers: vec!["content-type".into()],
            expose_headers: vec!["x-total".into()],
            allow_credentials: credentials,
            max_age: Some(600),
        }
    }

    fn req(origin: &str, preflight: bool) -> Request<()> {
        let mut r = Request::new(());
        *r.method_mut() = if preflight {
            Method::OPTIONS
        } else {
            Method::GET
        };
        r.headers_mut()
            .insert(header::ORIGIN, origin.parse().expect("origin"));
        if preflight {
            r.headers_mut().insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                "PUT".parse().expect("method"),
            );
        }
        r
    }

    #[test]
    fn preflights_are_answered() {
        let c = cors(true);
        let r = preflight(&c, &req("https://app.example.com", true)).expect("preflight");
        let h = r.headers();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, PUT");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
        let refused = preflight(&c, &req("https://evil.net", true)).expect("answered");
        assert!(!refused
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert!(
            preflight(&c, &req("https://app.example.com", false)).is_none(),
            "not a preflight"
        );
    }

    #[test]
    fn actual_requests_get_the_origin_back() {
        let h = response_headers(&cors(false), req("https://a.example.com", false).headers());
        assert!(
            h.iter()
                .any(|(n, v)| n == header::ACCESS_CONTROL_ALLOW_ORIGIN
                    && v == "https://a.example.com")
        );
        assert!(h
            .iter()
            .any(|(n, _)| n == header::ACCESS_CONTROL_EXPOSE_HEADERS));
        assert!(response_headers(&cors(false), req("https://b.com", false).headers()).is_empty());
        let any = Cors {
            allow_origins: vec!["*".into()],
            ..Cors::default()
        };
        let h = response_headers(&any, req("https://b.com", false).headers());
        assert_eq!(h[0].1, "*");
    }
}
