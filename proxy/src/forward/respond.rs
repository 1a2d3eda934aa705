//! Step four of a request: relay the backend's answer. Its head goes out in
//! the client's protocol version with hop-by-hop headers removed and, when
//! asked, the debug headers; its body streams through, returning the
//! connection to the pool and writing the access log when it ends. After a
//! `101` that answers the client's upgrade, both connections are piped
//! instead (see [`super::upgrade`]).

use std::time::Duration;

use http::header::HeaderValue;
use http::{Response, StatusCode};
use http_body::Body as _;
use hyper::upgrade::OnUpgrade;

use super::attempt::Answered;
use super::body::UpstreamBody;
use super::exchange::Exchange;
use super::headers::*;
use super::upgrade::{self, Requested};
use super::{ConnInfo, ProxyBody};
use crate::accesslog::{AccessLog, Entry};
use crate::error::ProxyError;
use crate::metrics::UpstreamErrorKind;
use crate::routing::Route;
use crate::shared::Shared;

/// The client's side of an upgrade it asked for: what it asked, and its
/// connection once the answer is out.
pub struct ClientUpgrade {
    pub requested: Requested,
    pub on: OnUpgrade,
}

/// The answer to the client for `answered`.
pub fn relay(
    shared: &Shared,
    conn: &ConnInfo,
    ex: &Exchange,
    route: &Route,
    answered: Answered<'_>,
    client: Option<ClientUpgrade>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Answered {
        backend,
        mut response,
        conn: upstream_conn,
        backend_time,
        set_cookie,
    } = answered;
    let status = response.status();
    let switched = status == StatusCode::SWITCHING_PROTOCOLS;
    // A 101 the client did not ask for, to another protocol than the one
    // it asked for, or to WebSocket without answering the client's key,
    // would open a tunnel nobody chose.
    if switched
        && !client
            .as_ref()
            .is_some_and(|c| c.requested.switched_by(response.headers()))
    {
        shared.metrics.upstream_error(UpstreamErrorKind::Reset);
        return Err(ProxyError::Upstream(
            "101 Switching Protocols to a protocol the client did not ask for".to_owned(),
        ));
    }
    let backend_side = switched.then(|| hyper::upgrade::on(&mut response));
    let (mut parts, incoming) = response.into_parts();
    // Answer in the client's protocol version, whatever the backend spoke.
    parts.version = ex.version;
    let kept = client
        .as_ref()
        .filter(|_| switched)
        .map(|c| &c.requested.protocol);
    strip_hop_by_hop_but(&mut parts.headers, kept);
    if let Some((_, rule, _)) = route.rule() {
        super::filters::response(rule, &mut parts.headers);
    }
    if let Some(cookie) = set_cookie {
        parts.headers.append(http::header::SET_COOKIE, cookie);
    }
    if ex.debug {
        debug_headers(&mut parts.headers, ex, route, backend, backend_time);
    }
    let log = shared
        .access_log
        .clone()
        .map(|log| (log, ex.entry(conn, status, 0, Some(backend_time))));
    if let (Some(client), Some(backend_side)) = (client, backend_side) {
        if ex.version == http::Version::HTTP_2 {
            upgrade::http2_switched(&mut parts);
        }
        // The backend connection now belongs to the tunnel, outside the pool.
        drop(upstream_conn);
        spawn_tunnel(shared, client, backend_side, log);
        return Ok(Response::from_parts(parts, ProxyBody::empty()));
    }
    let metrics = shared.metrics.clone();
    // A gRPC call's status is in the head (trailers-only) or the trailers.
    let grpc_head = ex.grpc.then(|| super::grpc::status_of(&parts.headers));
    if let Some(Some(code)) = grpc_head {
        metrics.grpc_call(Some(code));
    }
    let body = if incoming.is_end_stream() {
        upstream_conn.release();
        if grpc_head == Some(None) {
            metrics.grpc_call(None);
        }
        drop(UpstreamBody::new(incoming, None, log, metrics, ex.start));
        ProxyBody::empty()
    } else {
        let mut body = UpstreamBody::new(incoming, Some(upstream_conn), log, metrics, ex.start);
        if grpc_head == Some(None) {
            body = body.with_grpc_status_pending();
        }
        ProxyBody::Upstream(Box::new(body))
    };
    Ok(Response::from_parts(parts, body))
}

/// The `x-debug-*` headers: backend URL and position, identifier, frontend
/// key, total and backend time.
fn debug_headers(
    h: &mut http::HeaderMap,
    ex: &Exchange,
    route: &Route,
    backend: &hipache_schema::BackendEntry,
    backend_time: Duration,
) {
    set(h, &X_DEBUG_BACKEND_URL, &backend.url_text);
    h.insert(
        X_DEBUG_BACKEND_ID.clone(),
        HeaderValue::from(backend.position),
    );
    set(h, &X_DEBUG_VHOST, route.table.identifier());
    set(h, &X_DEBUG_FRONTEND_KEY, &route.frontend_host);
    if let Some(name) = route.rule().and_then(|(_, rule, _)| rule.name.as_deref()) {
        set(h, &X_DEBUG_RULE, name);
    }
    let seconds = |d: Duration| format!("{:.3}", d.as_secs_f64());
    set(h, &X_DEBUG_TIME_TOTAL, &seconds(ex.start.elapsed()));
    set(h, &X_DEBUG_TIME_BACKEND, &seconds(backend_time));
}

/// Pipes the two upgraded connections in a task of its own, counted in the
/// metrics and written to the access log when it ends.
fn spawn_tunnel(
    shared: &Shared,
    client: ClientUpgrade,
    backend_side: OnUpgrade,
    log: Option<(AccessLog, Entry)>,
) {
    // Subscribed before the response goes out, so that a drain that starts
    // now already counts this tunnel.
    let close = upgrade::Close {
        signal: shared.tunnel_close.subscribe(),
        websocket: upgrade::is_websocket(&client.requested.protocol),
    };
    let idle = shared.config.tunnel_idle_timeout;
    let metrics = shared.metrics.clone();
    tokio::spawn(async move {
        metrics.tunnels.inc();
        metrics.tunnels_open.inc();
        let stats = upgrade::tunnel(client.on, backend_side, idle, close).await;
        metrics.tunnels_open.dec();
        metrics.response_bytes.inc_by(stats.to_client);
        metrics.request_bytes.inc_by(stats.to_backend);
        if let Some((log, mut e)) = log {
            e.bytes = stats.to_client;
            e.total = e.time.elapsed().unwrap_or(Duration::ZERO);
            log.log(e);
        }
    });
}
