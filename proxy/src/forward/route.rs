//! Step one of a request: find its route. The routing host and the target
//! are checked (see [`super::authority`] and [`super::target`]), `__ping__`
//! and the HTTPS redirect are answered here, the route store is asked for
//! the frontend, the path group or document rule, and the dead marks; a
//! rule's redirect is answered and its path rewrite decided here, where
//! the path that matched is known.

use hipache_schema::routes::{PathCond, RequestView};
use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response};

use super::{authority, redirect, target, ConnInfo, ProxyBody};
use crate::error::ProxyError;
use crate::routing::{Resolved, Route};
use crate::shared::Shared;

/// The `Host: __ping__` liveness probe kept from Hipache.
pub const PING_HOST: &str = "__ping__";

/// Where a request goes.
pub enum Routed {
    /// Answered without a backend (`__ping__`, a redirect).
    Answer(Response<ProxyBody>),
    /// To a frontend's backends.
    To(Destination),
}

/// A request's route, with what forwarding it needs from routing.
pub struct Destination {
    /// The normalised request host (dead marks are keyed by it).
    pub host: String,
    pub route: Route,
    /// The origin-form target to send when it is not the one received:
    /// the path normalised, or rewritten by the rule.
    pub normalized: Option<PathAndQuery>,
    /// The request body limit: the rule's, else `maxBodySize`.
    pub body_limit: Option<u64>,
    /// The rule's redirect, answered once its policies let the request
    /// through.
    pub answer: Option<Response<ProxyBody>>,
}

/// Routes `req`: an answer of the proxy's own, a destination, or the error
/// (400 no host, 400 or 404 no frontend, 404 no route, 414, 413, 501, 503
/// routes unavailable or a refused route document).
pub async fn route<B>(
    shared: &Shared,
    conn: &ConnInfo,
    req: &Request<B>,
) -> Result<Routed, ProxyError> {
    let raw_host = authority::routing_host(req)?;
    let host = hipache_schema::normalize_host(raw_host)?;
    if host == PING_HOST {
        return Ok(Routed::Answer(ping_response()));
    }
    if let Some(r) = redirect::to_https(shared, conn, req, raw_host) {
        return Ok(Routed::Answer(r));
    }
    let target::Target {
        path,
        mut normalized,
    } = target::check(req)?;
    let view = RequestView {
        method: req.method(),
        path: &path,
        query: req.uri().query(),
        headers: req.headers(),
    };
    let found = shared.store.lookup(&host, &view).await;
    shared
        .metrics
        .lookup(crate::routing::outcome(&host, &found));
    let route = match found? {
        Resolved::Found(route) => route,
        Resolved::NotCovered => return Err(ProxyError::NotFound { known_host: true }),
        Resolved::Unknown if shared.config.unknown_host_not_found => {
            return Err(ProxyError::NotFound { known_host: false })
        }
        Resolved::Unknown => return Err(ProxyError::NoFrontend),
    };
    let mut limit = shared.config.max_body_size;
    let mut answer = None;
    if let Some((_, rule, matched)) = route.rule() {
        let prefix = match &matched.path {
            PathCond::Prefix(p) => Some(p.path.as_str()),
            _ => None,
        };
        let filters = &rule.filters;
        if let Some(r) = &filters.redirect {
            let new_path = r.path.as_ref().map(|m| m.apply(&path, prefix));
            let path = new_path.as_deref().unwrap_or(&path);
            let query = req.uri().query();
            let resp = redirect::by_rule(r, conn, &host, raw_host, path, query).ok_or(
                ProxyError::BadRequest("redirect location is not a valid header"),
            )?;
            answer = Some(resp);
        }
        if let Some(m) = filters.rewrite.as_ref().and_then(|r| r.path.as_ref()) {
            normalized = Some(target::with_query(
                &m.apply(&path, prefix),
                req.uri().query(),
            )?);
        }
        limit = rule.max_body_size.or(limit);
    }
    target::check_declared_length(req.headers(), limit)?;
    Ok(Routed::To(Destination {
        host,
        route,
        normalized,
        body_limit: limit,
        answer,
    }))
}

fn ping_response() -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::from(bytes::Bytes::from_static(b"ok")));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
