//! The master's admin listener: `/healthz` (the master is alive),
//! `/readyz` (every worker slot has a ready worker and the master is not
//! draining) and `/metrics` (the master's own families, then each ready
//! worker's, fetched from its private loopback admin listener and labelled
//! `worker="<slot>"`); with the status page on, `/status*` forwarded to
//! one ready worker's private admin listener (the worker checks the
//! token and says on the page which worker it is).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use prometheus::{Encoder, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::admin::{exposition, text};
use crate::metrics::names;

/// The master's gauge of live worker processes (including replacements
/// starting and workers draining after a recycle).
pub const WORKERS: &str = "hipache_workers";

/// How long the master waits for one worker's `/metrics`; a worker that
/// does not answer in time is left out of that scrape.
pub const WORKER_SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The master's own metric families.
pub struct MasterMetrics {
    registry: Registry,
    pub worker_restarts: IntCounter,
    pub memory_recycles: IntCounter,
    pub workers: IntGauge,
}

impl MasterMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = crate::metrics::registry_with_process_metrics();
        let worker_restarts = IntCounter::new(
            names::WORKER_RESTARTS,
            "Worker processes restarted by the master.",
        )?;
        let memory_recycles = IntCounter::new(
            names::MEMORY_RECYCLES,
            "Workers recycled for exceeding the memory limit.",
        )?;
        let workers = IntGauge::new(WORKERS, "Worker processes alive (master only).")?;
        let build_info = IntGaugeVec::new(
            Opts::new(names::BUILD_INFO, "Always 1; labels carry the version."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(worker_restarts.clone()))?;
        registry.register(Box::new(memory_recycles.clone()))?;
        registry.register(Box::new(workers.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Self {
            registry,
            worker_restarts,
            memory_recycles,
            workers,
        })
    }

    fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// What the master's admin endpoints read.
pub struct MasterState {
    pub metrics: MasterMetrics,
    /// Per slot: the private admin port of its ready worker, if any.
    pub ready: Mutex<Vec<Option<u16>>>,
    /// Set when SIGTERM starts the shutdown.
    pub draining: AtomicBool,
    /// Whether `/status` is forwarded to a worker (`server.statusPage`).
    pub status_page: bool,
}

/// How long the master waits for a worker's status page (a search spends
/// at most `SEARCH_BUDGET`, a Redis read at most `REDIS_TIMEOUT`).
pub const WORKER_STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the master's admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<MasterState>) {
    crate::admin::serve_with(listener, move |req| {
        let state = state.clone();
        async move { answer(&state, &req).await }
    })
    .await
}

async fn answer(state: &MasterState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        path if state.status_page && crate::status::is_page_path(path) => {
            forward_status(state, req).await
        }
        "/metrics" => {
            let ports: Vec<(usize, u16)> = state
                .ready
                .lock()
                .iter()
                .enumerate()
                .filter_map(|(slot, p)| p.filter(|&p| p != 0).map(|p| (slot, p)))
                .collect();
            let scrapes = ports.into_iter().map(|(slot, port)| async move {
                match tokio::time::timeout(WORKER_SCRAPE_TIMEOUT, fetch_metrics(port)).await {
                    Ok(Ok(body)) => Some((slot, body)),
                    Ok(Err(e)) => {
                        tracing::debug!(slot, error = %e, "cannot scrape a worker");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(slot, "worker scrape timed out");
                        None
                    }
                }
            });
            let workers: Vec<(usize, String)> = futures_util::future::join_all(scrapes)
                .await
                .into_iter()
                .flatten()
                .collect();
            let body = super::merge::merge(&state.metrics.render(), &workers, &[]);
            exposition(body)
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let missing = state.ready.lock().iter().filter(|p| p.is_none()).count();
            if state.draining.load(Ordering::Acquire) {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if missing > 0 {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{missing} worker slot(s) without a ready worker\n"),
                )
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One worker's `/metrics`, from its private admin listener.
async fn fetch_metrics(port: u16) -> Result<String, BoxError> {
    let resp = worker_get(port, "/metrics", &[]).await?;
    if resp.status() != StatusCode::OK {
        return Err(format!("status {}", resp.status()).into());
    }
    Ok(String::from_utf8(resp.into_body().to_vec())?)
}

/// `GET path_and_query` with `headers` on a worker's private admin
/// listener, the answer read whole.
async fn worker_get(
    port: u16,
    path_and_query: &str,
    headers: &[(header::HeaderName, HeaderValue)],
) -> Result<Response<Bytes>, BoxError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::get(path_and_query)
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    for (name, value) in headers {
        req.headers_mut().append(name.clone(), value.clone());
    }
    let (parts, body) = sender.send_request(req).await?.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

/// The headers of a status page answer the master passes on.
const STATUS_ANSWER_HEADERS: [header::HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::CONTENT_SECURITY_POLICY,
    header::X_CONTENT_TYPE_OPTIONS,
    header::SET_COOKIE,
    header::WWW_AUTHENTICATE,
];

/// `/status*` answered by the first ready worker: the request's
/// credentials (`Authorization`, `Cookie`) go along.
async fn forward_status(state: &MasterState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let first = state
        .ready
        .lock()
        .iter()
        .enumerate()
        .find_map(|(slot, p)| p.filter(|&p| p != 0).map(|p| (slot, p)));
    let Some((slot, port)) = first else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no ready worker\n");
    };
    let headers: Vec<(header::HeaderName, HeaderValue)> = [header::AUTHORIZATION, header::COOKIE]
        .iter()
        .flat_map(|n| {
            req.headers()
                .get_all(n)
                .iter()
                .map(|v| (n.clone(), v.clone()))
        })
        .collect();
    let target = req.uri().path_and_query().map_or("/status", |p| p.as_str());
    match tokio::time::timeout(WORKER_STATUS_TIMEOUT, worker_get(port, target, &headers)).await {
        Ok(Ok(answer)) => {
            let (parts, body) = answer.into_parts();
            let mut resp = Response::new(Full::new(body));
            *resp.status_mut() = parts.status;
            for name in STATUS_ANSWER_HEADERS {
                for v in parts.headers.get_all(&name) {
                    resp.headers_mut().append(name.clone(), v.clone());
                }
            }
            resp
        }
        Ok(Err(e)) => text(StatusCode::BAD_GATEWAY, format!("worker {slot}: {e}\n")),
        Err(_) => text(
            StatusCode::GATEWAY_TIMEOUT,
            format!("worker {slot} did not answer\n"),
        ),
    }
}
