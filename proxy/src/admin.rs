//! The admin listener, separate from traffic: `/metrics` (Prometheus text
//! format), `/healthz` (the process is alive), `/readyz` (listeners
//! bound, not draining) and, when it is on, the status page (`/status`,
//! see [`crate::status`]; never served on a traffic listener).
//!
//! Readiness does not depend on Redis: a proxy that cannot read routes
//! answers what every proxy of the fleet answers then (the last known route
//! of a host it has seen, a fast 503 for one it has not), so keeping it out
//! of the Service would only move its share of clients onto the others, and
//! during a Redis outage it would keep new replicas (an autoscaler's, a
//! rollout's) from ever becoming ready. `hipache_redis_connected` and its
//! alert report the outage instead.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::routing::RouteStore;
use crate::status::{self, StatusPage};
use crate::tls::CertStore;

/// Serves the admin endpoints until the task is dropped: the metrics (with
/// the route store's gauges and, with HTTPS listeners, the certificates'
/// expiry), and readiness from the route store and
/// `draining` (set when SIGTERM starts the drain, so that Kubernetes stops
/// sending traffic before connections are closed); the status page when
/// `status` is there.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Arc<RouteStore>,
    certs: Option<Arc<CertStore>>,
    draining: Arc<AtomicBool>,
    status: Option<Arc<StatusPage>>,
) {
    serve_with(listener, move |req| {
        let answered = match status.as_ref() {
            Some(page) if status::is_page_path(req.uri().path()) => Err(page.clone()),
            _ => Ok(answer(&metrics, &store, certs.as_deref(), &draining, &req)),
        };
        async move {
            match answered {
                Ok(resp) => resp,
                // The page reads Redis: answered in the request's future.
                Err(page) => page.answer(&req).await,
            }
        }
    })
    .await
}

/// The accept loop of an admin listener (this process's, or a master's),
/// answering every request with `handler`.
pub(crate) async fn serve_with<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let resp = handler(req);
            async move { Ok::<_, Infallible>(resp.await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn answer(
    metrics: &Metrics,
    store: &RouteStore,
    certs: Option<&CertStore>,
    draining: &AtomicBool,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => {
            store.refresh_gauges();
            if let Some(certs) = certs {
                metrics.set_certificate_expirations(&certs.expirations());
            }
            exposition(metrics.render())
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if draining.load(Ordering::Acquire) {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else {
                text(StatusCode::OK, "ready\n")
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz\n",
        ),
    }
}

/// A `/metrics` answer in the Prometheus text format.
pub(crate) fn exposition(body: String) -> Response<Full<Bytes>> {
    let mut resp = text(StatusCode::OK, body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
