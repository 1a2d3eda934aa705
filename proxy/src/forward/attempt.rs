//! Steps two and three of a request: choose a live backend and attempt the
//! exchange. One attempt per backend: a failure before the request left
//! (refused, connect timeout, also a pooled connection found closed whose
//! replacement failed) is retried on another live backend with the request
//! untouched, up to `retryOnError` times (a rule's `retry.attempts`);
//! anything later is answered, except a status a rule's retry policy lists,
//! for a request that can be sent again. Backends that fail are marked dead
//! (Hipache's passive health).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::headers::upstream_head;
use super::route::Destination;
use super::{filters, mirror, policy, ConnInfo};
use crate::error::ProxyError;
use crate::metrics::UpstreamErrorKind;
use crate::routing::{DeadMark, Route};
use crate::shared::Shared;
use crate::upstream::pool::{Conn, UpstreamBody, Wire};
use crate::upstream::Pin;
use hipache_schema::routes::{Protocol, Retry};
use hipache_schema::{BackendEntry, BackendUrl};

/// A request ready to go upstream, and how to tell that its body failed on
/// the client's side (an invalid chunk: the client's error, not the
/// backend's).
pub struct Outbound {
    pub request: Request<UpstreamBody>,
    client_body_failed: Option<Arc<AtomicBool>>,
    /// The head to send again when a rule retries on a status: kept only
    /// for requests that can be repeated (no body, an idempotent method).
    replay: Option<Replay>,
    /// The rule's affinity for this request.
    pin: Option<Pin>,
    /// HTTP/1.1, or HTTP/2 for a rule whose `protocol` asks for it.
    wire: Wire,
    /// A gRPC client's `grpc-timeout`: the deadline of the whole attempt.
    deadline: Option<Duration>,
    /// The PROXY protocol header the rule sends its backends first.
    preamble: Option<Vec<u8>>,
}

/// A bodyless request's head, to send again.
struct Replay {
    method: Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl Replay {
    fn request(&self) -> Request<UpstreamBody> {
        let mut r = Request::new(UpstreamBody::default());
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// A backend's answer.
pub struct Answered<'r> {
    pub backend: &'r BackendEntry,
    pub response: Response<Incoming>,
    /// The connection it came on, back to the pool when its body ends.
    pub conn: Conn,
    pub backend_time: Duration,
    /// The affinity cookie to set, when the backend is not the one the
    /// request's cookie named.
    pub set_cookie: Option<HeaderValue>,
}

/// The request as it goes upstream: its head by [`upstream_head`] and the
/// rule's filters, the body streamed, counted, limited (`maxBodySize`, or
/// the rule's) and copied to the rule's mirrors.
pub fn outbound(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
    to: &mut Destination,
    upgrade: Option<&HeaderValue>,
    admitted: policy::Admitted,
    grpc: bool,
) -> Outbound {
    let (mut parts, body) = req.into_parts();
    let deadline = grpc.then(|| super::grpc::timeout(&parts.headers)).flatten();
    // Upgrades (WebSocket) are HTTP/1.1 exchanges whatever the rule says.
    let wire = match to.route.rule() {
        Some((_, rule, _)) if upgrade.is_none() && rule.protocol != Protocol::Http1 => Wire::Http2,
        _ => Wire::Http1,
    };
    let preamble = to
        .route
        .rule()
        .and_then(|(_, rule, _)| rule.proxy_protocol)
        .map(|v| crate::upstream::proxy_header::header(v, conn.peer, conn.local));
    upstream_head(
        &mut parts,
        to.normalized.take(),
        upgrade,
        shared.config.http_keep_alive,
        conn.forwarded(shared.config.forwarded_header),
    );
    let rule = to.route.rule().map(|(_, rule, _)| rule);
    if let Some(rule) = rule {
        filters::request(rule, &mut parts);
    }
    let policy::Admitted {
        upstream_cleared,
        upstream_headers,
        pin,
    } = admitted;
    for name in &upstream_cleared {
        parts.headers.remove(name);
    }
    for (name, value) in upstream_headers {
        parts.headers.append(name, value);
    }
    let empty = body.is_end_stream();
    let tee = rule
        .filter(|r| !r.filters.mirrors.is_empty())
        .and_then(|r| mirror::start(shared, &r.filters.mirrors, &parts, !empty));
    let replay = rule
        .and_then(|r| r.retry.as_ref())
        .filter(|r| !r.codes.is_empty() && empty && parts.method.is_idempotent())
        .map(|_| Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        });
    // Most requests have no body: an empty body costs no allocation.
    if empty {
        return Outbound {
            request: Request::from_parts(parts, UpstreamBody::default()),
            client_body_failed: None,
            replay,
            pin,
            wire,
            deadline,
            preamble,
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
    let body: UpstreamBody = match to.body_limit {
        Some(limit) => http_body_util::Limited::new(body, limit as usize).boxed_unsync(),
        None => body.map_err(Into::into).boxed_unsync(),
    };
    let body = match tee {
        Some(tee) => tee.body(body).boxed_unsync(),
        None => body,
    };
    Outbound {
        request: Request::from_parts(parts, body),
        client_body_failed: Some(client_body_failed),
        replay,
        pin,
        wire,
        deadline,
        preamble,
    }
}

/// How a route retries and times out: a rule's settings, else the
/// configuration's.
struct Policy<'r> {
    /// Attempts after the first.
    retries: u32,
    /// Statuses answered by a backend that are retried (a rule's).
    retry: Option<&'r Retry>,
    /// Each attempt, to the response head.
    backend_timeout: Option<Duration>,
    /// The whole of [`attempt`].
    request_timeout: Option<Duration>,
}

impl<'r> Policy<'r> {
    fn of(shared: &Shared, route: &'r Route) -> Self {
        let rule = route.rule().map(|(_, rule, _)| rule);
        let retry = rule.and_then(|r| r.retry.as_ref());
        Policy {
            retries: retry.map_or(shared.config.retry_on_error, |r| r.attempts),
            retry,
            backend_timeout: rule
                .and_then(|r| r.timeouts.backend_request)
                .or(shared.config.tcp_timeout),
            request_timeout: rule.and_then(|r| r.timeouts.request),
        }
    }

    fn retries_status(&self, status: StatusCode) -> bool {
        self.retry
            .is_some_and(|r| r.codes.contains(&status.as_u16()))
    }
}

/// Sends `out` to a live backend of `route`, trying others on failures
/// before the request left (and, under a rule's retry policy, on the
/// statuses it lists), and reports dead backends (by `host` and by the
/// frontend key). A rule's request timeout bounds the whole: 504.
pub async fn attempt<'r>(
    shared: &Shared,
    host: &str,
    route: &'r Route,
    out: Outbound,
) -> Result<Answered<'r>, ProxyError> {
    let mut policy = Policy::of(shared, route);
    if let Some(deadline) = out.deadline {
        policy.request_timeout = Some(policy.request_timeout.map_or(deadline, |t| t.min(deadline)));
    }
    match policy.request_timeout {
        Some(limit) => tokio::time::timeout(limit, attempts(shared, host, route, out, &policy))
            .await
            .unwrap_or(Err(ProxyError::UpstreamTimeout)),
        None => attempts(shared, host, route, out, &policy).await,
    }
}

async fn attempts<'r>(
    shared: &Shared,
    host: &str,
    route: &'r Route,
    out: Outbound,
    policy: &Policy<'_>,
) -> Result<Answered<'r>, ProxyError> {
    let count = route.table.backends().len();
    let skipped = route.with_candidates(|c| c.filter(|b| route.is_dead(b.position)).count());
    shared.metrics.dead_skipped.inc_by(skipped as u64);
    let Outbound {
        request: mut req,
        client_body_failed,
        replay,
        pin,
        wire,
        deadline: _,
        preamble,
    } = out;
    let pin = pin.as_ref();
    // An HTTP/2 backend may refuse a stream after hyper took the request
    // (REFUSED_STREAM, or a GOAWAY that ends below it): nothing of it was
    // processed, and a bodyless one can go to another backend from this
    // copy of its head.
    let refused_copy = (wire == Wire::Http2 && client_body_failed.is_none()).then(|| Replay {
        method: req.method().clone(),
        uri: req.uri().clone(),
        headers: req.headers().clone(),
    });
    let mut tried: Vec<usize> = Vec::new();
    let mut retried = 0;
    let mut last_error = None;
    loop {
        let drawn = crate::upstream::choose(route, &tried, pin).or_else(|| {
            // A status retry may go back to a backend already tried when
            // no other is left (one backend answering a transient 503).
            let status_retry = last_error.is_none() && !tried.is_empty();
            status_retry.then(|| crate::upstream::choose(route, &[], pin))?
        });
        let Some(backend) = drawn else {
            return Err(last_error.unwrap_or_else(|| crate::upstream::nothing_to_draw(route)));
        };
        if !tried.is_empty() {
            shared.metrics.retries.inc();
        }
        tried.push(backend.position);
        let Ok(url) = &backend.url else {
            // A document's backend declared invalid: its share answers 500.
            return Err(ProxyError::InvalidBackend);
        };
        let start = Instant::now();
        // The status page's counters: one branch when it is off.
        let flight = shared
            .backend_stats
            .as_ref()
            .and_then(|s| s.begin(&backend.url_text));
        let acquired = match &preamble {
            Some(p) => Box::pin(shared.pool.acquire_private(url, wire, p)).await,
            None => shared.pool.acquire_for(url, wire).await,
        };
        let sent = match acquired {
            Ok(c) => send(shared, url, c, req, policy.backend_timeout)
                .await
                .map_err(|mut e| {
                    if e.unsent.is_none() && e.refused {
                        e.unsent = refused_copy.as_ref().map(Replay::request);
                    }
                    e
                }),
            Err(e) => Err(SendError {
                error: e,
                unsent: Some(req),
                refused: false,
            }),
        };
        if let Some(flight) = flight {
            match &sent {
                Ok((response, _)) => flight.answered(response.status(), start.elapsed()),
                Err(_) => flight.failed(),
            }
        }
        let SendError { error, unsent, .. } = match sent {
            Ok((response, conn)) => {
                let answered = Answered {
                    backend,
                    response,
                    conn,
                    backend_time: start.elapsed(),
                    set_cookie: pin.and_then(|p| p.set_cookie(backend)),
                };
                passive_health(shared, host, count, &answered);
                let status = answered.response.status();
                match &replay {
                    Some(replay) if retried < policy.retries && policy.retries_status(status) => {
                        tracing::debug!(frontend = %route.frontend_host, backend = %url, status = status.as_u16(), "status retried");
                        retried += 1;
                        drop(answered);
                        if let Some(r) = policy.retry {
                            tokio::time::sleep(r.backoff_before(retried)).await;
                        }
                        req = replay.request();
                        continue;
                    }
                    _ => return Ok(answered),
                }
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
            Some(r) if error.retryable() && retried < policy.retries => {
                retried += 1;
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
    /// An HTTP/2 backend refused the stream unprocessed.
    refused: bool,
}

/// Sends on a pooled connection; one that turns out to be closed before
/// the request left hands it back, and it goes out on a fresh connection.
async fn send(
    shared: &Shared,
    url: &BackendUrl,
    mut conn: Conn,
    mut req: Request<UpstreamBody>,
    timeout: Option<Duration>,
) -> Result<(Response<Incoming>, Conn), SendError> {
    loop {
        let sent = conn.sender.try_send(req);
        let result = match timeout {
            Some(t) => match tokio::time::timeout(t, sent).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(SendError {
                        error: ProxyError::UpstreamTimeout,
                        unsent: None,
                        refused: false,
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
                        refused: false,
                    })
                }
            },
            unsent => {
                let err = e.into_error();
                let refused = is_refused_stream(&err);
                let error = if err.is_body_write_aborted() || is_body_limit(&err) {
                    ProxyError::BodyTooLarge
                } else if refused {
                    ProxyError::StreamRefused(err.to_string())
                } else {
                    ProxyError::Upstream(err.to_string())
                };
                return Err(SendError {
                    error,
                    unsent,
                    refused,
                });
            }
        }
    }
}

/// An HTTP/2 stream the backend did not process: refused
/// (`REFUSED_STREAM`), or cut by the backend's GOAWAY (h2 reports that
/// only to the streams above its last-stream-id).
fn is_refused_stream(err: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.is_remote());
        }
        source = s.source();
    }
    false
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
