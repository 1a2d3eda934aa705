//! Steps two and three of a request: choose a live backend and attempt the
//! exchange. One attempt per backend: a failure before the request left
//! (refused, connect timeout, also a pooled connection found closed whose
//! replacement failed) is retried on another live backend with the request
//! untouched, up to `retryOnError` times; anything later is answered.
//! Backends that fail are marked dead (Hipache's passive health).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::headers::upstream_head;
use super::ConnInfo;
use crate::error::ProxyError;
use crate::metrics::UpstreamErrorKind;
use crate::routing::{DeadMark, Route};
use crate::shared::Shared;
use crate::upstream::pool::{Conn, UpstreamBody};
use hipache_schema::{BackendEntry, BackendUrl};

/// A request ready to go upstream, and how to tell that its body failed on
/// the client's side (an invalid chunk: the client's error, not the
/// backend's).
pub struct Outbound {
    pub request: Request<UpstreamBody>,
    client_body_failed: Option<Arc<AtomicBool>>,
}

/// A backend's answer.
pub struct Answered<'r> {
    pub backend: &'r BackendEntry,
    pub response: Response<Incoming>,
    /// The connection it came on, back to the pool when its body ends.
    pub conn: Conn,
    pub backend_time: Duration,
}

/// The request as it goes upstream: its head by [`upstream_head`], the
/// body streamed, counted and limited (`maxBodySize`).
pub fn outbound(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
    normalized: Option<PathAndQuery>,
    upgrade: Option<&HeaderValue>,
) -> Outbound {
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
        return Outbound {
            request: Request::from_parts(parts, empty.boxed_unsync()),
            client_body_failed: None,
        };
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
    Outbound {
        request: Request::from_parts(parts, body),
        client_body_failed: Some(client_body_failed),
    }
}

/// Sends `out` to a live backend of `route`, trying others on failures
/// before the request left, and reports dead backends (by `host` and by
/// the frontend key).
pub async fn attempt<'r>(
    shared: &Shared,
    host: &str,
    route: &'r Route,
    out: Outbound,
) -> Result<Answered<'r>, ProxyError> {
    let count = route.frontend.backends.len();
    let skipped = route
        .frontend
        .group(route.group.as_ref())
        .filter(|b| route.is_dead(b.position))
        .count();
    shared.metrics.dead_skipped.inc_by(skipped as u64);
    let Outbound {
        request: mut req,
        client_body_failed,
    } = out;
    let mut tried: Vec<usize> = Vec::new();
    let mut last_error = None;
    loop {
        let Some(backend) = crate::upstream::choose(route, &tried) else {
            return Err(last_error.unwrap_or(ProxyError::NoBackend));
        };
        if !tried.is_empty() {
            shared.metrics.retries.inc();
        }
        tried.push(backend.position);
        let Ok(url) = &backend.url else { continue };
        let start = Instant::now();
        let sent = match shared.pool.acquire(url).await {
            Ok(c) => send(shared, url, c, req).await,
            Err(e) => Err(SendError {
                error: e,
                unsent: Some(req),
            }),
        };
        let SendError { error, unsent } = match sent {
            Ok((response, conn)) => {
                let answered = Answered {
                    backend,
                    response,
                    conn,
                    backend_time: start.elapsed(),
                };
                passive_health(shared, host, count, &answered);
                return Ok(answered);
            }
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
    }
}

/// The upstream metrics of an answer, and Hipache's passive health rule
/// for it (see [`marks_dead`]) when the frontend has more than one backend.
fn passive_health(shared: &Shared, host: &str, count: usize, a: &Answered<'_>) {
    shared
        .metrics
        .upstream_duration
        .observe(a.backend_time.as_secs_f64());
    let status = a.response.status();
    if status.is_server_error() {
        shared.metrics.upstream_error(UpstreamErrorKind::Status5xx);
    }
    let dead_on_500 = shared.config.dead_backend_on_500;
    if count > 1 && marks_dead(status, a.response.headers(), dead_on_500) {
        shared.store.mark_dead(dead_mark(host, a.backend, count));
    }
}

/// A failed send, with the request when it never left (so that another
/// backend can be tried with it).
struct SendError {
    error: ProxyError,
    unsent: Option<Request<UpstreamBody>>,
}

/// Sends on a pooled connection; one that turns out to be closed before
/// the request left hands it back, and it goes out on a fresh connection.
async fn send(
    shared: &Shared,
    url: &BackendUrl,
    mut conn: Conn,
    mut req: Request<UpstreamBody>,
) -> Result<(Response<Incoming>, Conn), SendError> {
    loop {
        let sent = conn.sender.try_send_request(req);
        let result = match shared.config.tcp_timeout {
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
        let mut e = match result {
            Ok(resp) => return Ok((resp, conn)),
            Err(e) => e,
        };
        match e.take_message() {
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
        }
    }
}

fn is_body_limit(err: &hyper::Error) -> bool {
    std::error::Error::source(err).is_some_and(|s| {
        s.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
    })
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

fn dead_mark(host: &str, backend: &BackendEntry, count: usize) -> DeadMark {
    DeadMark {
        host: host.to_owned(),
        backend: backend.url_text.clone(),
        position: backend.position,
        count,
    }
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
