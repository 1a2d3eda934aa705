//! Dead marks: what the request path reports when a backend fails, and the
//! background writer that records them without ever blocking a request,
//! over its own [`Link`] to the write Redis.

use std::sync::Arc;

use hipache_schema::keys::{hchecker_is_fresh, unix_now, Keys, DEAD_CHANNEL, HCHECKER_PING};
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::redis_conn::{Dialer, Link, Target};

/// A backend reported dead by a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadMark {
    /// The normalised request host: Hipache keyed `dead:` by it.
    pub host: String,
    /// The backend element as stored (for the `dead` channel message).
    pub backend: String,
    pub position: usize,
    /// Backends in the frontend.
    pub count: usize,
}

/// Marks waiting for the writer; past this they are dropped with a log
/// line (Redis is too slow or gone, and the next failure will mark again).
pub const QUEUE: usize = 1024;

/// Starts the Redis writer and its connection to `target`; returns the
/// sending side. Both stop when every sender is dropped.
pub fn spawn_redis_writer(
    target: &Target,
    keys: Keys,
    ttl_secs: u64,
    metrics: Arc<Metrics>,
) -> Result<mpsc::Sender<DeadMark>, String> {
    let dialer = Dialer::new(target, false).map_err(|e| format!("write Redis: {e}"))?;
    let link = Link::start(dialer, "write");
    let (tx, mut rx) = mpsc::channel::<DeadMark>(QUEUE);
    tokio::spawn(async move {
        while let Some(mark) = rx.recv().await {
            let Some(mut c) = link.get() else {
                tracing::warn!(host = %mark.host, backend = %mark.backend, "Redis unavailable: dead mark dropped");
                metrics.dead_mark("dropped");
                continue;
            };
            match write_mark(&mut c, &keys, ttl_secs, &mark).await {
                Ok(result) => metrics.dead_mark(result),
                Err(e) => {
                    tracing::warn!(host = %mark.host, backend = %mark.backend, error = %e, "dead mark not written");
                    metrics.dead_mark("dropped");
                    link.report_failure();
                }
            }
        }
    });
    Ok(tx)
}

/// SADD + EXPIRE + PUBLISH in one MULTI, or only the PUBLISH while an
/// active health checker keeps `hchecker_ping` fresh.
async fn write_mark(
    c: &mut MultiplexedConnection,
    keys: &Keys,
    ttl_secs: u64,
    mark: &DeadMark,
) -> redis::RedisResult<&'static str> {
    let message =
        hipache_schema::dead::message(&mark.host, &mark.backend, mark.position, mark.count);
    let ping: Option<String> = redis::cmd("GET").arg(HCHECKER_PING).query_async(c).await?;
    if hchecker_is_fresh(ping.as_deref(), unix_now()) {
        tracing::info!(host = %mark.host, backend = %mark.backend, "backend reported dead (health checker active)");
        return redis::cmd("PUBLISH")
            .arg(DEAD_CHANNEL)
            .arg(&message)
            .query_async(c)
            .await
            .map(|()| "published");
    }
    let dead_key = keys.dead(&mark.host);
    tracing::info!(host = %mark.host, backend = %mark.backend, position = mark.position, "backend marked dead");
    redis::pipe()
        .atomic()
        .cmd("SADD")
        .arg(&dead_key)
        .arg(mark.position)
        .ignore()
        .cmd("EXPIRE")
        .arg(&dead_key)
        .arg(ttl_secs)
        .ignore()
        .cmd("PUBLISH")
        .arg(DEAD_CHANNEL)
        .arg(&message)
        .ignore()
        .query_async(c)
        .await
        .map(|()| "written")
}
