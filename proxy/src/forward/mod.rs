//! One request through the proxy: route it, pick a backend, forward it with
//! the right headers, retry on connection failures, report dead backends,
//! and answer errors with the error pages.

pub mod authority;
pub mod body;
pub mod headers;
pub mod redirect;
pub mod target;
pub mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::accesslog::{AccessLog, Entry};
use crate::config::{Config, DebugFrom};
use crate::error::{ErrorPages, ProxyError};
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::routing::{DeadMark, Route, RouteStore};
use crate::upstream::{self, Pool};
pub use body::ProxyBody;
use body::UpstreamBody;
use headers::*;

/// Everything a request needs, shared by all connections.
pub struct Shared {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub store: Arc<RouteStore>,
    pub pool: Pool,
    pub pages: Arc<ErrorPages>,
    pub access_log: Option<AccessLog>,
    /// Set to `true` when the drain timeout ends: every open tunnel sends
    /// its close frames and ends. Each tunnel holds a receiver, so the
    /// receiver count is the number of open tunnels (see
    /// [`crate::server`]'s drain).
    pub tunnel_close: tokio::sync::watch::Sender<bool>,
}

/// What a request knows about the connection it came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The peer is in `trustedProxies`: its forwarding headers are kept
    /// and appended to.
    pub trusted: bool,
    /// The peer may ask for `x-debug-*` headers (`server.debugFrom`).
    pub debug_allowed: bool,
}

impl ConnInfo {
    /// What the forwarding headers tell a backend about this connection.
    pub fn forwarded(&self, rfc7239: bool) -> Forwarded {
        Forwarded {
            client: self.peer.ip(),
            proto: if self.tls { "https" } else { "http" },
            port: self.local.port(),
            trusted: self.trusted,
            rfc7239,
        }
    }

    /// Decided once per connection: the peer does not change.
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool, config: &Config) -> Self {
        let ip = peer.ip().to_canonical();
        let trusted = config.trusted_proxies.iter().any(|n| n.contains(&ip));
        let debug_allowed = match &config.debug_from {
            DebugFrom::Any => true,
            DebugFrom::Networks(nets) => trusted || nets.iter().any(|n| n.contains(&ip)),
        };
        Self {
            peer,
            local,
            tls,
            trusted,
            debug_allowed,
        }
    }
}

/// Longest request target accepted (414 above), as nginx's default
/// `large_client_header_buffers`. Longer heads as a whole get 431.
pub const MAX_URI_LENGTH: usize = 8192;

/// The `Host: __ping__` liveness probe kept from Hipache.
const PING_HOST: &str = "__ping__";

/// Per-request state kept for the access log and debug headers.
struct Exchange {
    start: Instant,
    time: SystemTime,
    debug: bool,
    method: Method,
    target: String,
    version: Version,
    referer: String,
    user_agent: String,
    /// The matched frontend, once known (for its identifier).
    frontend: OnceLock<Arc<hipache_schema::Frontend>>,
}

impl Exchange {
    fn identifier(&self) -> Option<&str> {
        self.frontend.get().map(|f| f.identifier.as_str())
    }
}

/// The hyper service function: never fails; every error becomes a page.
pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // Only the access log needs these copies: skip them without one.
    let logging = shared.access_log.is_some();
    let header_text = |name: header::HeaderName| match logging {
        true => req
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        false => String::new(),
    };
    let ex = Exchange {
        start: Instant::now(),
        time: SystemTime::now(),
        debug: shared.config.debug || (conn.debug_allowed && req.headers().contains_key(&X_DEBUG)),
        method: req.method().clone(),
        target: match logging {
            true => req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .to_owned(),
            false => String::new(),
        },
        version: req.version(),
        referer: header_text(header::REFERER),
        user_agent: header_text(header::USER_AGENT),
        frontend: OnceLock::new(),
    };
    shared.metrics.in_flight.inc();
    let resp = match proxy(&shared, &conn, &ex, req).await {
        Ok(resp) => resp,
        Err(e) => error_response(&shared, &conn, &ex, e),
    };
    shared.metrics.in_flight.dec();
    shared.metrics.request(
        resp.status(),
        &ex.method,
        ex.start.elapsed(),
        ex.identifier(),
    );
    Ok(resp)
}

async fn proxy(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    ex: &Exchange,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let raw_host = authority::routing_host(&req)?;
    let host = hipache_schema::normalize_host(raw_host)?;
    if host == PING_HOST {
        return Ok(ping_response());
    }
    if let Some(r) = redirect::to_https(shared, conn, &req, raw_host) {
        return Ok(r);
    }
    let target::Target { path, normalized } = target::check(&req, shared.config.max_body_size)?;
    let found = shared.store.lookup(&host, &path).await;
    drop(path);
    shared
        .metrics
        .lookup(crate::routing::outcome(&host, &found));
    let route = found?.ok_or(ProxyError::NoFrontend)?;
    let _ = ex.frontend.set(route.frontend.clone());
    forward(shared, conn, ex, &host, &route, req, normalized).await
}

/// Sends the request to a live backend, trying others on connection
/// failures, and relays the answer.
async fn forward(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    ex: &Exchange,
    host: &str,
    route: &Route,
    mut req: Request<Incoming>,
    normalized: Option<http::uri::PathAndQuery>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let count = route.frontend.backends.len();
    let mut tried: Vec<usize> = Vec::new();
    let mut last_error = None;
    let upgrade = upgrade::requested(req.headers(), &shared.config.upgrade_protocols);
    let websocket_key = match &upgrade {
        Some(u) if upgrade::is_websocket(u) => Some(upgrade::check_websocket_request(
            req.method(),
            req.version(),
            req.headers(),
        )?),
        _ => None,
    };
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (upstream_req, client_body_failed) =
        upstream_request(shared, conn, req, normalized, upgrade.clone());
    let skipped = route
        .frontend
        .group(route.group.as_ref())
        .filter(|b| route.is_dead(b.position))
        .count();
    shared.metrics.dead_skipped.inc_by(skipped as u64);
    // One attempt per backend: a failure before the request left (refused,
    // connect timeout, also when a pooled connection turned out closed and
    // its replacement failed) is retried on another live backend with the
    // request untouched; anything later is answered.
    let mut req = upstream_req;
    let (backend, resp, upstream_conn, backend_start) = loop {
        let Some(backend) = upstream::choose(route, &tried) else {
            return Err(last_error.unwrap_or(ProxyError::NoBackend));
        };
        if !tried.is_empty() {
            shared.metrics.retries.inc();
        }
        tried.push(backend.position);
        let Ok(url) = &backend.url else { continue };
        let backend_start = Instant::now();
        let attempt = match shared.pool.acquire(url).await {
            Ok(c) => send(shared, url, c, req).await,
            Err(e) => Err(SendError {
                error: e,
                unsent: Some(req),
            }),
        };
        let SendError { error, unsent } = match attempt {
            Ok((resp, conn)) => break (backend, resp, conn, backend_start),
            // A body the client framed badly (an invalid chunk) fails the
            // upstream send too: that is the client's error, not the
            // backend's.
            Err(_)
                if client_body_failed
                    .as_ref()
                    .is_some_and(|f| f.load(Ordering::Acquire)) =>
            {
                return Err(ProxyError::BadRequest("malformed request body"));
            }
            Err(e) => e,
        };
        tracing::warn!(frontend = %route.frontend_host, backend = %url, error = %error, "backend failed");
        if let Some(kind) = error.upstream_kind() {
            shared.metrics.upstream_error(kind);
        }
        if error.marks_dead() && count > 1 {
            shared.store.mark_dead(dead_mark(host, backend, count));
        }
        match unsent {
            Some(r)
                if error.retryable() && tried.len() <= shared.config.retry_on_error as usize =>
            {
                req = r;
                last_error = Some(error);
            }
            _ => return Err(error),
        }
    };
    let backend_time = backend_start.elapsed();
    shared
        .metrics
        .upstream_duration
        .observe(backend_time.as_secs_f64());
    let status = resp.status();
    if status.is_server_error() {
        shared.metrics.upstream_error(UpstreamErrorKind::Status5xx);
    }
    if count > 1 && marks_dead(status, resp.headers(), shared.config.dead_backend_on_500) {
        shared.store.mark_dead(dead_mark(host, backend, count));
    }
    // A 101 the client did not ask for, to another protocol than the one
    // it asked for, or to WebSocket without answering the client's key,
    // would open a tunnel nobody chose.
    if status == StatusCode::SWITCHING_PROTOCOLS
        && !(upgrade
            .as_ref()
            .is_some_and(|u| upgrade::same_protocol(u, resp.headers().get(header::UPGRADE)))
            && websocket_key
                .as_ref()
                .is_none_or(|k| upgrade::accepts(k, resp.headers())))
    {
        shared.metrics.upstream_error(UpstreamErrorKind::Reset);
        return Err(ProxyError::Upstream(
            "101 Switching Protocols to a protocol the client did not ask for".to_owned(),
        ));
    }
    let mut resp = resp;
    let tunnel = match client_upgrade {
        Some(client) if status == StatusCode::SWITCHING_PROTOCOLS => {
            Some((client, hyper::upgrade::on(&mut resp)))
        }
        _ => None,
    };
    let (mut parts, incoming) = resp.into_parts();
    // Answer in the client's protocol version, whatever the backend spoke.
    parts.version = ex.version;
    let switched = parts.headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    if ex.debug {
        let h = &mut parts.headers;
        set(h, &X_DEBUG_BACKEND_URL, &backend.url_text);
        h.insert(
            X_DEBUG_BACKEND_ID.clone(),
            HeaderValue::from(backend.position),
        );
        set(h, &X_DEBUG_VHOST, &route.frontend.identifier);
        set(h, &X_DEBUG_FRONTEND_KEY, &route.frontend_host);
        set(
            h,
            &X_DEBUG_TIME_TOTAL,
            &format!("{:.3}", ex.start.elapsed().as_secs_f64()),
        );
        set(
            h,
            &X_DEBUG_TIME_BACKEND,
            &format!("{:.3}", backend_time.as_secs_f64()),
        );
    }
    let log = shared.access_log.clone().map(|log| {
        (
            log,
            entry(
                ex,
                conn,
                status,
                0,
                &route.frontend.identifier,
                Some(backend_time),
            ),
        )
    });
    if let Some((client, backend_side)) = tunnel {
        // The backend connection now belongs to the tunnel, outside the pool.
        drop(upstream_conn);
        // Subscribed before the response goes out, so that a drain that
        // starts now already counts this tunnel.
        let close = upgrade::Close {
            signal: shared.tunnel_close.subscribe(),
            websocket: switched
                .as_ref()
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")),
        };
        if let Some(v) = switched {
            upgrade::restore(&mut parts.headers, v);
        }
        let idle = shared.config.tunnel_idle_timeout;
        let metrics = shared.metrics.clone();
        tokio::spawn(async move {
            metrics.tunnels.inc();
            metrics.tunnels_open.inc();
            let stats = upgrade::tunnel(client, backend_side, idle, close).await;
            metrics.tunnels_open.dec();
            metrics.response_bytes.inc_by(stats.to_client);
            metrics.request_bytes.inc_by(stats.to_backend);
            if let Some((log, mut e)) = log {
                e.bytes = stats.to_client;
                e.total = e.time.elapsed().unwrap_or(Duration::ZERO);
                log.log(e);
            }
        });
        return Ok(Response::from_parts(parts, ProxyBody::empty()));
    }
    let body = if incoming.is_end_stream() {
        upstream_conn.release();
        drop(UpstreamBody::new(
            incoming,
            None,
            log,
            shared.metrics.clone(),
            ex.start,
        ));
        ProxyBody::empty()
    } else {
        ProxyBody::Upstream(Box::new(UpstreamBody::new(
            incoming,
            Some(upstream_conn),
            log,
            shared.metrics.clone(),
            ex.start,
        )))
    };
    Ok(Response::from_parts(parts, body))
}

/// A failed send, with the request when it never left (so that another
/// backend can be tried with it).
struct SendError {
    error: ProxyError,
    unsent: Option<Request<upstream::pool::UpstreamBody>>,
}

/// Sends on a pooled connection; one that turns out to be closed before
/// the request left hands it back, and it goes out on a fresh connection.
async fn send(
    shared: &Arc<Shared>,
    url: &hipache_schema::BackendUrl,
    mut conn: upstream::pool::Conn,
    req: Request<upstream::pool::UpstreamBody>,
) -> Result<(Response<Incoming>, upstream::pool::Conn), SendError> {
    let timeout = shared.config.tcp_timeout;
    let mut req = req;
    loop {
        let sent = conn.sender.try_send_request(req);
        let result = match timeout {
            Some(t) => match tokio::time::timeout(t, sent).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(SendError {
                        error: ProxyError::UpstreamTimeout,
                        unsent: None,
                    })
                }
            },
            None => sent.await,
        };
        match result {
            Ok(resp) => return Ok((resp, conn)),
            Err(mut e) => match e.take_message() {
                Some(unsent) if conn.reused => match shared.pool.reconnect(url, conn).await {
                    Ok(fresh) => {
                        req = unsent;
                        conn = fresh;
                    }
                    Err(error) => {
                        return Err(SendError {
                            error,
                            unsent: Some(unsent),
                        })
                    }
                },
                unsent => {
                    let err = e.into_error();
                    let error = if err.is_body_write_aborted() || is_body_limit(&err) {
                        ProxyError::BodyTooLarge
                    } else {
                        ProxyError::Upstream(err.to_string())
                    };
                    return Err(SendError { error, unsent });
                }
            },
        }
    }
}

fn is_body_limit(err: &hyper::Error) -> bool {
    std::error::Error::source(err).is_some_and(|s| {
        s.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
    })
}

/// The request as it goes upstream: its head by [`upstream_head`], the
/// body streamed (with the configured limit).
fn upstream_request(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
    normalized: Option<http::uri::PathAndQuery>,
    upgrade: Option<HeaderValue>,
) -> (
    Request<upstream::pool::UpstreamBody>,
    Option<Arc<AtomicBool>>,
) {
    let (mut parts, body) = req.into_parts();
    upstream_head(
        &mut parts,
        normalized,
        upgrade,
        shared.config.http_keep_alive,
        conn.forwarded(shared.config.forwarded_header),
    );
    // Most requests have no body: an empty body costs no allocation.
    if body.is_end_stream() {
        let empty = http_body_util::Empty::<bytes::Bytes>::new().map_err(Into::into);
        return (Request::from_parts(parts, empty.boxed_unsync()), None);
    }
    let client_body_failed = Arc::new(AtomicBool::new(false));
    let failed = client_body_failed.clone();
    let metrics = shared.metrics.clone();
    let body = body
        .map_err(move |e| {
            failed.store(true, Ordering::Release);
            e
        })
        .map_frame(move |frame| {
            if let Some(d) = frame.data_ref() {
                metrics.request_bytes.inc_by(d.len() as u64);
            }
            frame
        });
    let body = match shared.config.max_body_size {
        Some(limit) => http_body_util::Limited::new(body, limit as usize).boxed_unsync(),
        None => body.map_err(Into::into).boxed_unsync(),
    };
    (Request::from_parts(parts, body), Some(client_body_failed))
}

/// Hipache's passive health rule for answers: 501-599, but 503 only
/// without `Retry-After`, and 500 only when `deadBackendOn500` is set.
pub fn marks_dead(status: StatusCode, headers: &http::HeaderMap, dead_on_500: bool) -> bool {
    match status.as_u16() {
        500 => dead_on_500,
        503 => !headers.contains_key(header::RETRY_AFTER),
        501..=599 => true,
        _ => false,
    }
}

fn dead_mark(host: &str, backend: &hipache_schema::BackendEntry, count: usize) -> DeadMark {
    DeadMark {
        host: host.to_owned(),
        backend: backend.url_text.clone(),
        position: backend.position,
        count,
    }
}

fn ping_response() -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::from(bytes::Bytes::from_static(b"ok")));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn entry(
    ex: &Exchange,
    conn: &ConnInfo,
    status: StatusCode,
    bytes: u64,
    identifier: &str,
    backend: Option<std::time::Duration>,
) -> Entry {
    Entry {
        client: conn.peer.ip().to_canonical(),
        time: ex.time,
        method: ex.method.to_string(),
        target: ex.target.clone(),
        version: ex.version,
        status: status.as_u16(),
        bytes,
        referer: ex.referer.clone(),
        user_agent: ex.user_agent.clone(),
        identifier: identifier.to_owned(),
        total: ex.start.elapsed(),
        backend,
    }
}

/// The one place errors are logged and rendered.
fn error_response(
    shared: &Shared,
    conn: &ConnInfo,
    ex: &Exchange,
    e: ProxyError,
) -> Response<ProxyBody> {
    let identifier = ex.identifier().unwrap_or_default();
    let status = e.status();
    match &e {
        ProxyError::NoHost
        | ProxyError::BadHost(_)
        | ProxyError::NoFrontend
        | ProxyError::BadRequest(_) => {
            tracing::debug!(peer = %conn.peer, error = %e, "request refused")
        }
        _ => {
            tracing::warn!(peer = %conn.peer, error = %e, status = status.as_u16(), "request failed")
        }
    }
    let mut resp: Response<ProxyBody> = if ex.method == Method::HEAD {
        let mut r = shared.pages.response::<ProxyBody>(status);
        *r.body_mut() = ProxyBody::empty();
        r
    } else {
        shared.pages.response(status)
    };
    // After a malformed or refused request the connection's framing can
    // no longer be trusted: answer, then close.
    if matches!(
        e,
        ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::UriTooLong
            | ProxyError::TransferCoding
    ) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if matches!(e, ProxyError::WebSocketVersion) {
        resp.headers_mut().insert(
            upgrade::SEC_WEBSOCKET_VERSION.clone(),
            HeaderValue::from_static("13"),
        );
    }
    if ex.debug {
        set(resp.headers_mut(), &X_DEBUG_ERROR, e.reason());
    }
    if let Some(log) = &shared.access_log {
        let bytes = shared.pages.page(status).len() as u64;
        log.log(entry(
            ex,
            conn,
            status,
            if ex.method == Method::HEAD { 0 } else { bytes },
            identifier,
            None,
        ));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_health_statuses() {
        let none = http::HeaderMap::new();
        let mut retry = http::HeaderMap::new();
        retry.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        assert!(marks_dead(StatusCode::BAD_GATEWAY, &none, false));
        assert!(marks_dead(StatusCode::NOT_IMPLEMENTED, &none, false));
        assert!(marks_dead(StatusCode::SERVICE_UNAVAILABLE, &none, false));
        assert!(!marks_dead(StatusCode::SERVICE_UNAVAILABLE, &retry, true));
        assert!(marks_dead(StatusCode::INTERNAL_SERVER_ERROR, &none, true));
        assert!(!marks_dead(StatusCode::INTERNAL_SERVER_ERROR, &none, false));
        assert!(!marks_dead(StatusCode::NOT_FOUND, &none, true));
    }
}
