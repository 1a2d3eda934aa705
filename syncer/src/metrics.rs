//! Prometheus metrics (all names here, `hipache_syncer_*`) and the admin
//! listener: `/metrics`, `/healthz`, `/readyz`, and `/status` when the
//! status page is on ([`crate::status_page`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio_util::sync::CancellationToken;

/// Every metric name the syncer exports.
pub const NAMES: &[&str] = &[
    "hipache_syncer_reconciles_total",
    "hipache_syncer_reconcile_errors_total",
    "hipache_syncer_redis_resets_total",
    "hipache_syncer_redis_writes_total",
    "hipache_syncer_redis_deletes_total",
    "hipache_syncer_watch_events_total",
    "hipache_syncer_watch_errors_total",
    "hipache_syncer_frontends",
    "hipache_syncer_invalid_ingresses",
    "hipache_syncer_unsupported_annotations",
    "hipache_syncer_reports",
    "hipache_syncer_foreign_hosts",
    "hipache_syncer_leader",
    "hipache_syncer_sync_duration_seconds",
    "hipache_syncer_status_updates_total",
    "hipache_syncer_events_total",
    "hipache_syncer_health_probes_total",
    "hipache_syncer_backends_dead",
];

/// Values of the `effect` label of `hipache_syncer_unsupported_annotations`.
pub const ANNOTATION_EFFECTS: &[&str] = &["ignored", "refused", "unprotected"];

/// Values of the `resource` label.
pub const RESOURCES: &[&str] = &[
    "ingressclasses",
    "ingresses",
    "services",
    "endpointslices",
    "publishservice",
];

/// The syncer's metrics.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounter,
    pub reconcile_errors: IntCounter,
    pub redis_resets: IntCounter,
    pub redis_writes: IntCounter,
    pub redis_deletes: IntCounter,
    /// Label `resource`: ingresses, ingressclasses, services, endpointslices.
    pub watch_events: IntCounterVec,
    pub watch_errors: IntCounterVec,
    pub frontends: IntGauge,
    pub invalid_ingresses: IntGauge,
    /// Label `effect`: [`ANNOTATION_EFFECTS`].
    pub unsupported_annotations: IntGaugeVec,
    pub reports: IntGauge,
    pub foreign_hosts: IntGauge,
    pub leader: IntGauge,
    pub sync_duration: Histogram,
    pub status_updates: IntCounter,
    pub events: IntCounter,
    /// Label `result`: ok, fail.
    pub health_probes: IntCounterVec,
    pub backends_dead: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Buckets of `hipache_syncer_sync_duration_seconds`: from a pass that
/// writes nothing (a millisecond) to a resync of a large Redis (seconds).
const SYNC_DURATION_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// Creates metrics and registers them in one registry.
struct Register<'r>(&'r Registry);

// The definitions are constants: an invalid or duplicate one is a bug that
// the metric-name test shows at once.
#[allow(clippy::expect_used)]
impl Register<'_> {
    fn add<C: Collector + Clone + 'static>(&self, metric: C) -> C {
        self.0
            .register(Box::new(metric.clone()))
            .expect("unique name");
        metric
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid counter"))
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"))
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge"))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid gauge"))
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts).expect("valid histogram"))
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds, ... read from /proc at each scrape.
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = registry.register(Box::new(process)) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        let r = Register(&registry);
        let m = Self {
            reconciles: r.counter("hipache_syncer_reconciles_total", "Reconcile passes"),
            reconcile_errors: r.counter(
                "hipache_syncer_reconcile_errors_total",
                "Reconcile passes that failed (Redis)",
            ),
            redis_resets: r.counter(
                "hipache_syncer_redis_resets_total",
                "Times Redis had lost the syncer's keys (its marker gone) and everything was rewritten",
            ),
            redis_writes: r.counter("hipache_syncer_redis_writes_total", "Keys written"),
            redis_deletes: r.counter("hipache_syncer_redis_deletes_total", "Keys deleted"),
            watch_events: r.counter_vec(
                "hipache_syncer_watch_events_total",
                "Watch events received",
                &["resource"],
            ),
            watch_errors: r.counter_vec(
                "hipache_syncer_watch_errors_total",
                "Watch errors (retried)",
                &["resource"],
            ),
            frontends: r.gauge("hipache_syncer_frontends", "Frontends desired"),
            unsupported_annotations: r.gauge_vec(
                "hipache_syncer_unsupported_annotations",
                "ingress-nginx annotations on our Ingresses that are not supported, by effect: ignored, refused (the Ingress is not served), unprotected (served without the restriction)",
                &["effect"],
            ),
            invalid_ingresses: r.gauge(
                "hipache_syncer_invalid_ingresses",
                "Ingresses of our class that do not validate",
            ),
            reports: r.gauge("hipache_syncer_reports", "Problems reported on Ingresses"),
            foreign_hosts: r.gauge(
                "hipache_syncer_foreign_hosts",
                "Desired hosts owned by someone else",
            ),
            leader: r.gauge(
                "hipache_syncer_leader",
                "1 while this replica holds the Lease",
            ),
            sync_duration: r.histogram(
                "hipache_syncer_sync_duration_seconds",
                "Time of one reconcile pass (translate and write)",
                SYNC_DURATION_BUCKETS,
            ),
            status_updates: r.counter(
                "hipache_syncer_status_updates_total",
                "Ingress status patches",
            ),
            events: r.counter("hipache_syncer_events_total", "Kubernetes Events published"),
            health_probes: r.counter_vec(
                "hipache_syncer_health_probes_total",
                "Active health probes",
                &["result"],
            ),
            backends_dead: r.gauge(
                "hipache_syncer_backends_dead",
                "Backends marked dead by the checker",
            ),
            registry,
        };
        m.create_label_values();
        m
    }

    /// Creates every bounded label value at zero, so dashboards and alerts
    /// see the series before the first event.
    fn create_label_values(&self) {
        for r in RESOURCES {
            self.watch_events.with_label_values(&[r]);
            self.watch_errors.with_label_values(&[r]);
        }
        for r in ["ok", "fail"] {
            self.health_probes.with_label_values(&[r]);
        }
        for e in ANNOTATION_EFFECTS {
            self.unsupported_annotations.with_label_values(&[e]);
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// What `/readyz` answers.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Every watch has listed once.
    pub synced: AtomicBool,
    /// The last Redis pass succeeded (always true on a follower).
    pub redis_ok: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Relaxed) && self.redis_ok.load(Ordering::Relaxed)
    }
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve_admin(
    addr: SocketAddr,
    metrics: Metrics,
    ready: Arc<Readiness>,
    page: Option<Arc<crate::status_page::StatusPage>>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(_) => continue,
                },
            };
            let metrics = metrics.clone();
            let ready = ready.clone();
            let page = page.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let path = req.uri().path();
                    if let Some(page) = page
                        .as_ref()
                        .filter(|_| crate::status_page::StatusPage::is_page_path(path))
                    {
                        return std::future::ready(Ok::<_, Infallible>(page.answer(&req)));
                    }
                    let (status, body) = match path {
                        "/metrics" => (StatusCode::OK, metrics.render()),
                        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
                        "/readyz" if ready.is_ready() => (StatusCode::OK, "ready\n".to_owned()),
                        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
                        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = status;
                    std::future::ready(Ok::<_, Infallible>(resp))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_exported_and_listed() {
        let m = Metrics::new();
        m.watch_events.with_label_values(&["ingresses"]).inc();
        m.watch_errors.with_label_values(&["ingresses"]).inc();
        m.health_probes.with_label_values(&["ok"]).inc();
        let text = m.render();
        for n in NAMES {
            assert!(text.contains(n), "{n} not exported");
        }
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge"));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap_or_default();
            // The process's own families are documented with the proxy's.
            if name.starts_with("process_") {
                continue;
            }
            assert!(NAMES.contains(&name), "{name} not listed in NAMES");
        }
    }
}
