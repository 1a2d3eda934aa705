//! The read connection to Redis: one multiplexed connection shared by every
//! request (their lookups pipeline on it), supervised by a task that
//! reconnects with backoff, probes it when lookups fail, and, in tracking
//! mode, turns RESP3 invalidation pushes into cache invalidations.
//!
//! While the connection is down, [`ReadConn::get`] returns `None` at once,
//! so no request waits on a dead Redis.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hipache_schema::Keys;
use parking_lot::RwLock;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::{mpsc, watch, Notify};

use super::cache::{Mode, RouteCache};
use super::redis::RedisTarget;
use crate::metrics::Metrics;

/// One connection attempt at most this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// A lookup (and a probe) waits this long for Redis at most. Redis
/// answers a lookup in well under a millisecond; past this it is
/// overloaded or gone.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often an otherwise idle connection is checked, so that an outage
/// shows in readiness and metrics even when no request comes.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Backoff between reconnection attempts, doubling up to the maximum.
pub const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(50);
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

pub struct ReadConn {
    slot: RwLock<Option<MultiplexedConnection>>,
    metrics: Arc<Metrics>,
    connected: watch::Sender<bool>,
    trouble: Notify,
    stale_logged: AtomicBool,
}

impl ReadConn {
    pub fn start(
        target: &RedisTarget,
        keys: Keys,
        cache: Arc<RouteCache>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, String> {
        let tracking = cache.mode() == Mode::Tracking;
        let url = &target.url;
        let client = target
            .client(tracking)
            .map_err(|e| format!("read Redis: {e}"))?;
        let this = Arc::new(Self {
            slot: RwLock::new(None),
            metrics,
            connected: watch::Sender::new(false),
            trouble: Notify::new(),
            stale_logged: AtomicBool::new(false),
        });
        tokio::spawn(supervise(
            Arc::downgrade(&this),
            client,
            url.censored(),
            keys,
            cache,
            tracking,
        ));
        Ok(this)
    }

    /// The connection, or `None` while Redis is unreachable.
    pub fn get(&self) -> Option<MultiplexedConnection> {
        self.slot.read().clone()
    }

    /// A lookup failed: the supervisor probes the connection.
    pub fn report_failure(&self) {
        self.trouble.notify_one();
    }

    /// Whether this outage was already logged as "serving known routes";
    /// true for the first caller of each outage.
    pub fn first_stale_of_outage(&self) -> bool {
        !self.stale_logged.swap(true, Ordering::AcqRel)
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until connected, for at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn set(&self, conn: Option<MultiplexedConnection>) {
        let up = conn.is_some();
        *self.slot.write() = conn;
        self.metrics.redis_connected.set(i64::from(up));
        if up {
            self.stale_logged.store(false, Ordering::Release);
            self.metrics.staleness.set(0);
        }
        self.connected.send_replace(up);
    }
}

async fn supervise(
    this: Weak<ReadConn>,
    client: redis::Client,
    target: String,
    keys: Keys,
    cache: Arc<RouteCache>,
    tracking: bool,
) {
    let mut delay = MIN_RECONNECT_DELAY;
    let mut lost_logged = false;
    loop {
        if this.strong_count() == 0 {
            return;
        }
        let (push_tx, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
        let mut config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        if tracking {
            config = config.set_push_sender(push_tx);
        }
        let conn = match connect(&client, &config, tracking).await {
            Ok(c) => c,
            Err(e) => {
                if !lost_logged {
                    tracing::warn!(redis = %target, error = %e, "cannot reach Redis; retrying with backoff");
                    lost_logged = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RECONNECT_DELAY);
                continue;
            }
        };
        delay = MIN_RECONNECT_DELAY;
        // Whatever changed while we were away was not pushed to us.
        cache.invalidate_all();
        let Some(owner) = this.upgrade() else { return };
        owner.set(Some(conn.clone()));
        tracing::info!(redis = %target, tracking, "connected to Redis (routes)");
        watch_connection(&owner, conn, &mut pushes, tracking, &keys, &cache).await;
        owner.set(None);
        drop(owner);
        tracing::warn!(redis = %target, "lost the Redis connection (routes); known hosts are served from memory");
        lost_logged = true;
    }
}

async fn connect(
    client: &redis::Client,
    config: &AsyncConnectionConfig,
    tracking: bool,
) -> redis::RedisResult<MultiplexedConnection> {
    let mut conn = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    if tracking {
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(conn)
}

/// Returns when the connection is gone.
async fn watch_connection(
    owner: &ReadConn,
    mut conn: MultiplexedConnection,
    pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    tracking: bool,
    keys: &Keys,
    cache: &RouteCache,
) {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = pushes.recv(), if tracking => match push {
                Some(p) if p.kind == PushKind::Invalidate => invalidate(p, keys, cache),
                Some(p) if p.kind == PushKind::Disconnection => return,
                Some(_) => {}
                None => return,
            },
            _ = owner.trouble.notified() => {
                if !ping(&mut conn).await {
                    return;
                }
            }
            _ = heartbeat.tick() => {
                if !ping(&mut conn).await {
                    return;
                }
            }
        }
    }
}

/// Whether Redis answers a PING within [`RESPONSE_TIMEOUT`].
async fn ping(conn: &mut MultiplexedConnection) -> bool {
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(conn);
    matches!(
        tokio::time::timeout(RESPONSE_TIMEOUT, ping).await,
        Ok(Ok(_))
    )
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
                        if let Some(h) = keys.frontend_host(&key).or_else(|| keys.dead_host(&key)) {
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
