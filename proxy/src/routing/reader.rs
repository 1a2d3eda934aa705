//! The read connection: one [`Link`] shared by every lookup (they pipeline
//! on it), and what its events mean for routes: the route cache dropped on
//! every (re)connection, tracking invalidations applied, and the
//! connection's metrics kept.
//!
//! While the connection is down, [`Link::get`] returns `None` at once, so
//! no request waits on a dead Redis.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hipache_schema::Keys;
use redis::{PushInfo, PushKind, Value};

use super::cache::{Mode, RouteCache};
use crate::metrics::Metrics;
use crate::redis_conn::{Dialer, Events, Link, Target};

pub struct ReadConn {
    link: Link,
    routes: Arc<RouteEvents>,
}

impl ReadConn {
    /// Starts the read connection (RESP3 with client tracking when the
    /// cache is in tracking mode).
    pub fn start(
        target: &Target,
        keys: Keys,
        cache: Arc<RouteCache>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let tracking = cache.mode() == Mode::Tracking;
        let dialer = Dialer::new(target, tracking).map_err(|e| format!("read Redis: {e}"))?;
        let routes = Arc::new(RouteEvents {
            keys,
            cache,
            metrics,
            stale_logged: AtomicBool::new(false),
        });
        let link = Link::start_with_events(dialer, "read", routes.clone());
        Ok(Self { link, routes })
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Whether this outage was already logged as "serving known routes";
    /// true for the first caller of each outage.
    pub fn first_stale_of_outage(&self) -> bool {
        !self.routes.stale_logged.swap(true, Ordering::AcqRel)
    }
}

/// The read connection's events, applied to the cache and the metrics.
struct RouteEvents {
    keys: Keys,
    cache: Arc<RouteCache>,
    metrics: Arc<Metrics>,
    stale_logged: AtomicBool,
}

impl Events for RouteEvents {
    fn connected(&self) {
        // Whatever changed while we were away was not pushed to us.
        self.cache.invalidate_all();
        self.metrics.redis_connected.set(1);
        self.stale_logged.store(false, Ordering::Release);
        self.metrics.staleness.set(0);
    }

    fn lost(&self) {
        self.metrics.redis_connected.set(0);
    }

    fn push(&self, push: PushInfo) {
        if push.kind == PushKind::Invalidate {
            invalidate(push, &self.keys, &self.cache);
        }
    }
}

/// An invalidation push: the keys that changed, or nil after a flush.
fn invalidate(push: PushInfo, keys: &Keys, cache: &RouteCache) {
    let mut any = false;
    for v in &push.data {
        match v {
            Value::Array(ks) => {
                for k in ks {
                    if let Value::BulkString(b) = k {
                        let key = String::from_utf8_lossy(b);
                        if let Some(h) = keys.lookup_host(&key) {
                            cache.invalidate_host(h);
                        }
                        any = true;
                    }
                }
            }
            _ => {
                cache.invalidate_all();
                any = true;
            }
        }
    }
    if !any {
        cache.invalidate_all();
    }
}
