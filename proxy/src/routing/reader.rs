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
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, Value};

use super::barrier::Barrier;
use super::cache::{Mode, RouteCache};
use crate::metrics::Metrics;
use crate::redis_conn::{Dialer, Events, Link, Target};

pub struct ReadConn {
    link: Link,
    routes: Arc<RouteEvents>,
    barrier: Barrier,
}

impl ReadConn {
    /// Starts the read connection: RESP3 with client tracking in tracking
    /// mode (required) and in strict mode (when the server allows it, for
    /// [`ReadConn::confirm`]); invalidations applied as the connection
    /// reads them.
    pub fn start(
        target: &Target,
        keys: Keys,
        cache: Arc<RouteCache>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let dialer = match cache.mode() {
            Mode::Tracking => Dialer::new(target, true),
            Mode::Strict => Dialer::preferring_tracking(target),
            Mode::Ttl(_) => Dialer::new(target, false),
        }
        .map_err(|e| format!("read Redis: {e}"))?;
        let routes = Arc::new(RouteEvents {
            keys,
            cache,
            metrics,
            stale_logged: AtomicBool::new(false),
            tracking: AtomicBool::new(false),
        });
        let inline = {
            let routes = routes.clone();
            Arc::new(move |push: &PushInfo| invalidate(push, &routes.keys, &routes.cache))
        };
        // Broadcast tracking of the three kinds of route keys: a read
        // registers nothing in Redis (no table of read keys per proxy,
        // which grows with frontends × proxies), and every write under
        // them reaches every proxy.
        let prefixes = vec![
            routes.keys.frontend(""),
            routes.keys.dead(""),
            routes.keys.routes(""),
        ];
        let dialer = dialer
            .with_inline_pushes(inline)
            .with_broadcast_prefixes(prefixes);
        let link = Link::start_with_events(dialer, "read", routes.clone());
        Ok(Self {
            link,
            routes,
            barrier: Barrier::default(),
        })
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Whether `conn` (from [`Link::get`]) tracks (else `None`, at once),
    /// and a `PING` queued on it now was answered: then every write
    /// acknowledged before this call has been applied to the cache (see
    /// [`super::barrier`]).
    pub async fn confirm(&self, conn: &MultiplexedConnection) -> Option<bool> {
        // Read after the connection was taken: `connected` sets it before
        // handing a connection out.
        if !self.routes.tracking.load(Ordering::Acquire) {
            return None;
        }
        let answered = self.barrier.pass(conn).await;
        if !answered {
            self.link.report_failure();
        }
        Some(answered)
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
    /// Whether the current connection tracks.
    tracking: AtomicBool,
}

impl Events for RouteEvents {
    fn connected(&self, tracking: bool) {
        // Whatever changed while we were away was not pushed to us.
        self.cache.invalidate_all();
        self.tracking.store(tracking, Ordering::Release);
        self.metrics.redis_connected.set(1);
        self.stale_logged.store(false, Ordering::Release);
        self.metrics.staleness.set(0);
    }

    fn lost(&self) {
        self.metrics.redis_connected.set(0);
    }
    // No `push`: invalidations are applied inline, as the connection reads
    // them (see `start`), and no other push concerns routes.
}

/// An invalidation push: the keys that changed, or nil after a flush.
fn invalidate(push: &PushInfo, keys: &Keys, cache: &RouteCache) {
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
