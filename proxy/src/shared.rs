//! The composition root: everything a request needs, built once from the
//! validated configuration and shared by every connection.

use std::sync::Arc;

use crate::accesslog::AccessLog;
use crate::config::Config;
use crate::error::{ErrorPages, StartError};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::routing::RouteStore;
use crate::status::BackendStats;
use crate::tls;
use crate::upstream::{Pool, PoolConfig};

/// Everything a request needs, shared by all connections.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Arc<RouteStore>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) pages: Arc<ErrorPages>,
    pub(crate) access_log: Option<AccessLog>,
    /// Rate-limit policies' buckets: in Redis's write server (on their own
    /// link), or local with a routes file.
    pub(crate) rate_limits: RateLimiter,
    /// Set to `true` when the drain timeout ends: every open tunnel sends
    /// its close frames and ends. Each tunnel holds a receiver, so the
    /// receiver count is the number of open tunnels (see
    /// [`crate::shutdown::drain`]).
    pub(crate) tunnel_close: tokio::sync::watch::Sender<bool>,
    /// Per-backend counters for the status page; `None` (nothing
    /// counted) unless `statusPage` is on.
    pub(crate) backend_stats: Option<Arc<BackendStats>>,
}

impl Shared {
    /// Builds the request path's parts: the metrics, the route store
    /// (opened: Redis or a routes file), the access log, the backend pool
    /// with its TLS configuration and the error pages. Must be called
    /// inside a tokio runtime.
    pub(crate) async fn build(config: Config) -> Result<Self, StartError> {
        let backend_tls =
            tls::client_config(config.backend_ca.as_deref(), config.backend_tls_verify)
                .map_err(|e| StartError::Tls(format!("server.backendCa: {e}")))?;
        if !config.backend_tls_verify {
            tracing::warn!(
                "server.backendTlsVerify is false: https:// backends are not authenticated"
            );
        }
        let metrics = Arc::new(Metrics::new(config.metrics_per_frontend));
        let store = RouteStore::open(&config, metrics.clone())
            .await
            .map_err(StartError::Routes)?;
        let access_log = match &config.access_log {
            Some(target) => Some(AccessLog::open(target).map_err(StartError::AccessLog)?),
            None => None,
        };
        let pool = Arc::new(Pool::new(PoolConfig {
            max_sockets: config.max_sockets,
            connect_timeout: config.connect_timeout,
            queue_timeout: config.max_sockets_wait,
            keep_alive: config.http_keep_alive,
            tls: backend_tls,
        }));
        let pages = ErrorPages::new(config.static_dir.clone());
        let rate_limits =
            RateLimiter::start(&config, metrics.clone()).map_err(StartError::Routes)?;
        // Up before the first request when Redis is (a few milliseconds),
        // so that no limit is decided locally for want of a connection.
        rate_limits
            .wait_connected(crate::redis_conn::timeouts::CONNECT_TIMEOUT)
            .await;
        Ok(Self {
            metrics,
            store,
            pool,
            pages,
            access_log,
            rate_limits,
            tunnel_close: tokio::sync::watch::channel(false).0,
            backend_stats: config
                .status_page
                .then(|| Arc::new(BackendStats::default())),
            config,
        })
    }
}
