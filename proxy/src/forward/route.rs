//! Step one of a request: find its route. The routing host and the target
//! are checked (see [`super::authority`] and [`super::target`]), `__ping__`
//! and the HTTPS redirect are answered here, and the route store is asked
//! for the frontend, its path group and its dead marks.

use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response};

use super::{authority, redirect, target, ConnInfo, ProxyBody};
use crate::error::ProxyError;
use crate::routing::Route;
use crate::shared::Shared;

/// The `Host: __ping__` liveness probe kept from Hipache.
pub const PING_HOST: &str = "__ping__";

/// Where a request goes.
pub enum Routed {
    /// Answered without a backend (`__ping__`, the HTTPS redirect).
    Answer(Response<ProxyBody>),
    /// To a frontend's backends.
    To(Destination),
}

/// A request's route, with what forwarding it needs from routing.
pub struct Destination {
    /// The normalised request host (dead marks are keyed by it).
    pub host: String,
    pub route: Route,
    /// The origin-form target to send when normalising changed the path.
    pub normalized: Option<PathAndQuery>,
}

/// Routes `req`: an answer of the proxy's own, a destination, or the error
/// (400 no host or no frontend, 414, 413, 501, 503 routes unavailable).
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
    let target::Target { path, normalized } = target::check(req, shared.config.max_body_size)?;
    let found = shared.store.lookup(&host, &path).await;
    shared
        .metrics
        .lookup(crate::routing::outcome(&host, &found));
    let route = found?.ok_or(ProxyError::NoFrontend)?;
    Ok(Routed::To(Destination {
        host,
        route,
        normalized,
    }))
}

fn ping_response() -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::from(bytes::Bytes::from_static(b"ok")));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
