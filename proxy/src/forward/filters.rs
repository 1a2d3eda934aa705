//! What a route document's rule does to the request on its way to the
//! backend and to the answer on its way back (its redirect is answered in
//! [`super::route`], its path rewrite decided there, its mirrors started by
//! [`super::mirror`]).
//!
//! They apply after the proxy wrote its forwarding headers: a rule may set
//! a header such as `X-Forwarded-Prefix` for its backend, and
//! `X-Forwarded-Host` keeps the host the client asked for, not a rewritten
//! one.

use hipache_schema::routes::Rule;
use http::header::{self, HeaderValue};

/// The rewritten `Host` and the request header changes.
pub fn request(rule: &Rule, parts: &mut http::request::Parts) {
    let f = &rule.filters;
    if let Some(host) = f.rewrite.as_ref().and_then(|r| r.hostname.as_deref()) {
        if let Ok(v) = HeaderValue::from_str(host) {
            parts.headers.insert(header::HOST, v);
        }
    }
    if let Some(m) = &f.request_headers {
        m.apply(&mut parts.headers);
    }
}

/// The response header changes.
pub fn response(rule: &Rule, headers: &mut http::HeaderMap) {
    if let Some(m) = &rule.filters.response_headers {
        m.apply(headers);
    }
}
