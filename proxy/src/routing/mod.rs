//! The route store: from a normalised request host (and path) to the
//! matched frontend, its backends and the dead marks that apply.
//!
//! Two stores share one lookup rule ([`resolve`]): Redis (the production
//! path, read on every request) and a YAML routes file (no Redis at all).
//!
//! # Layout
//! - [`route`]: [`Route`], the candidates a store reads, and the lookup
//!   rule [`resolve`] shared by both stores.
//! - `redis`: [`RedisStore`]: one pipelined round trip per lookup, the
//!   route cache in front of it, dead marks handed to the writer.
//! - `reader`: the read connection (a `crate::redis_conn::Link`) and
//!   what its events do: the cache dropped on reconnection, tracking
//!   invalidations, the connection metrics.
//! - [`cache`]: the route cache and its modes (strict, tracking, TTL).
//! - `barrier`: strict mode's read-your-writes on the tracking
//!   connection (one `PING` for the requests of a turn, instead of a read
//!   each).
//! - `replies`: a lookup's replies kept in strict mode, so that an
//!   answer the same as the last is served from what was decoded then.
//! - [`documents`]: route documents decoded once per change of their
//!   bytes, and what this proxy can serve of them.
//! - [`deadmark`]: [`DeadMark`] and the background writer to Redis, on
//!   its own link to the write server.
//! - `file`: [`FileStore`], routes from a YAML file, dead marks in memory.
//!
//! Nothing here imports this module back: each store stands on `route`,
//! and [`RouteStore`] below picks one.

mod barrier;
pub mod cache;
pub mod deadmark;
pub mod documents;
mod file;
pub(crate) mod reader;
pub(crate) mod redis;
mod replies;
pub mod route;

use std::sync::Arc;

use crate::config::{Config, Driver};
use crate::error::ProxyError;
use crate::metrics::Metrics;

pub use deadmark::DeadMark;
pub use file::FileStore;
pub use redis::RedisStore;
pub use route::{outcome, Resolved, Route, Served, Table};

/// How long startup waits for the first Redis connection before serving
/// anyway (with 503s until Redis is reachable).
pub const STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where routes come from.
pub enum RouteStore {
    Redis(RedisStore),
    File(FileStore),
}

impl RouteStore {
    /// Opens the configured store. Redis that is not reachable yet is not
    /// an error: the store keeps connecting in the background and requests
    /// fail fast until it is up.
    pub async fn open(config: &Config, metrics: Arc<Metrics>) -> Result<Arc<Self>, String> {
        Ok(Arc::new(match &config.driver {
            Driver::Redis { read, write } => {
                let store = RedisStore::open(read, write, config, metrics)?;
                if !store.wait_connected(STARTUP_WAIT).await {
                    tracing::warn!(
                        "Redis not reachable yet: starting anyway; requests fail fast until it is"
                    );
                }
                RouteStore::Redis(store)
            }
            Driver::File(path) => RouteStore::File(FileStore::open(
                path.clone(),
                config.dead_backend_ttl,
                metrics,
            )?),
        }))
    }

    /// Finds the route for a request to a normalised host.
    pub async fn lookup(
        &self,
        host: &str,
        req: &hipache_schema::routes::RequestView<'_>,
    ) -> Result<Resolved, ProxyError> {
        match self {
            RouteStore::Redis(s) => s.lookup(host, req).await,
            RouteStore::File(s) => s.lookup(host, req),
        }
    }

    /// Updates gauges that are read rather than counted (before a scrape).
    pub fn refresh_gauges(&self) {
        if let RouteStore::Redis(s) = self {
            s.refresh_gauges();
        }
    }

    /// Records a dead backend. Never waits: the write happens in the
    /// background.
    pub fn mark_dead(&self, mark: DeadMark) {
        match self {
            RouteStore::Redis(s) => s.mark_dead(mark),
            RouteStore::File(s) => s.mark_dead(mark),
        }
    }
}
