//! The master's admin listener: `/healthz` (the master is alive),
//! `/readyz` (every worker slot has a ready worker and the master is not
//! draining) and `/metrics` (the master's own families, then each ready
//! worker's, fetched from its private loopback admin listener and labelled
//! `worker="<slot>"`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
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
}

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

/// One worker's `/metrics`, from its private admin listener.
async fn fetch_metrics(port: u16) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get("/metrics")
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    if resp.status() != StatusCode::OK {
        return Err(format!("status {}", resp.status()).into());
    }
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec())?)
}
