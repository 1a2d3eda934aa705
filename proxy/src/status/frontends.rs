//! What the page reads of frontends: a search over their hosts (Redis
//! `SCAN`, never `KEYS`; or the routes file's table) and one host's routes,
//! dead marks and their time to live.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hipache_schema::keys::glob_escape;
use hipache_schema::{Frontend, Keys};
use redis::aio::MultiplexedConnection;
use redis::Value;

use crate::routing::redis::{dead_positions, value_string};
use crate::routing::{RedisStore, RouteStore, Table};

/// A search stops at this many hosts.
pub const SEARCH_LIMIT: usize = 50;
/// A search stops after this long, with what it found so far.
pub const SEARCH_BUDGET: Duration = Duration::from_millis(300);
/// Keys Redis looks at per `SCAN` call: large enough that 100,000
/// frontends take about a hundred calls, small enough that no call holds
/// Redis for more than a fraction of a millisecond.
pub const SCAN_COUNT: usize = 1000;
/// Bound on one Redis command of the page: a hung Redis gives an error on
/// the page, not a hung page.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// A search's result.
#[derive(Debug, Default)]
pub struct Found {
    /// Hosts with their identifiers (element 0 of their lists), sorted.
    pub hosts: Vec<(String, Option<String>)>,
    /// Whether every matching host is listed (no limit or budget hit).
    pub complete: bool,
    pub error: Option<String>,
}

/// A frontend host as the store holds it.
#[derive(Debug, Default)]
pub struct Read {
    /// Its routes, or why its document was refused; `None`: no frontend.
    pub table: Option<Result<Table, Arc<str>>>,
    /// Positions in `dead:<host>`.
    pub dead: Vec<usize>,
    /// What is left of the dead set's time to live.
    pub dead_ttl: Option<Duration>,
    /// Why the store could not be read.
    pub error: Option<String>,
}

/// The hosts of frontends whose host contains `needle` (lower-cased).
pub async fn search(store: &RouteStore, needle: &str) -> Found {
    let needle = needle.trim().to_ascii_lowercase();
    match store {
        RouteStore::File(f) => {
            let (hosts, complete) = f.search(&needle, SEARCH_LIMIT);
            let hosts = hosts
                .into_iter()
                .map(|h| {
                    let id = f
                        .frontend(&h)
                        .and_then(|t| t.ok())
                        .map(|t| t.identifier().to_owned());
                    (h, id)
                })
                .collect();
            Found {
                hosts,
                complete,
                error: None,
            }
        }
        RouteStore::Redis(r) => match r.connection() {
            None => Found {
                error: Some("Redis is unreachable".to_owned()),
                ..Found::default()
            },
            Some(conn) => scan(conn, r.keys(), &needle)
                .await
                .unwrap_or_else(|e| Found {
                    error: Some(e),
                    ..Found::default()
                }),
        },
    }
}

/// `SCAN` with `MATCH <prefix>frontend:*<needle>*` until [`SEARCH_LIMIT`]
/// hosts or [`SEARCH_BUDGET`], then their identifiers in one pipeline.
async fn scan(mut conn: MultiplexedConnection, keys: &Keys, needle: &str) -> Result<Found, String> {
    let pattern = format!(
        "{}*{}*",
        glob_escape(&keys.frontend("")),
        glob_escape(needle)
    );
    let started = Instant::now();
    let mut hosts = BTreeSet::new();
    let mut cursor: u64 = 0;
    let complete = loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let (next, batch): (u64, Vec<Vec<u8>>) = bounded(cmd.query_async(&mut conn)).await?;
        for key in batch {
            let key = String::from_utf8_lossy(&key);
            if let Some(h) = keys.frontend_host(&key) {
                hosts.insert(h.to_owned());
            }
        }
        cursor = next;
        if cursor == 0 {
            break hosts.len() <= SEARCH_LIMIT;
        }
        if hosts.len() >= SEARCH_LIMIT || started.elapsed() >= SEARCH_BUDGET {
            break false;
        }
    };
    let hosts: Vec<String> = hosts.into_iter().take(SEARCH_LIMIT).collect();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for h in &hosts {
        pipe.cmd("LINDEX").arg(keys.frontend(h)).arg(0);
    }
    let ids: Vec<Value> = if hosts.is_empty() {
        Vec::new()
    } else {
        bounded(pipe.query_async(&mut conn)).await?
    };
    let hosts = hosts
        .into_iter()
        .enumerate()
        .map(|(i, h)| (h, ids.get(i).and_then(value_string)))
        .collect();
    Ok(Found {
        hosts,
        complete,
        error: None,
    })
}

/// One frontend host: its routes, dead marks and their time to live.
pub async fn read(store: &RouteStore, host: &str) -> Read {
    match store {
        RouteStore::File(f) => {
            let (dead, dead_ttl) = f.dead(host);
            Read {
                table: f.frontend(host),
                dead,
                dead_ttl,
                error: None,
            }
        }
        RouteStore::Redis(r) => match r.connection() {
            None => Read {
                error: Some("Redis is unreachable".to_owned()),
                ..Read::default()
            },
            Some(conn) => read_redis(r, conn, host).await.unwrap_or_else(|e| Read {
                error: Some(e),
                ..Read::default()
            }),
        },
    }
}

/// `LRANGE`, `GET routes:`, `SMEMBERS dead:` and `PTTL dead:`, pipelined.
async fn read_redis(
    store: &RedisStore,
    mut conn: MultiplexedConnection,
    host: &str,
) -> Result<Read, String> {
    let keys = store.keys();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("LRANGE").arg(keys.frontend(host)).arg(0).arg(-1);
    pipe.cmd("GET").arg(keys.routes(host));
    pipe.cmd("SMEMBERS").arg(keys.dead(host));
    pipe.cmd("PTTL").arg(keys.dead(host));
    let replies: Vec<Value> = bounded(pipe.query_async(&mut conn)).await?;
    let reply = |i: usize| replies.get(i).unwrap_or(&Value::Nil);
    let table = match reply(1) {
        Value::BulkString(json) => Some(store.documents().table(host, json)),
        _ => match reply(0) {
            Value::Array(items) => {
                let list: Vec<String> = items.iter().filter_map(value_string).collect();
                Frontend::decode(&list).map(|f| Ok(Table::List(Arc::new(f))))
            }
            Value::Nil => None,
            other => Some(Err(Arc::from(format!(
                "frontend key is not a list: {other:?}"
            )))),
        },
    };
    let dead_ttl = match reply(3) {
        Value::Int(ms) if *ms >= 0 => Some(Duration::from_millis(ms.unsigned_abs())),
        _ => None,
    };
    Ok(Read {
        table,
        dead: dead_positions(reply(2)),
        dead_ttl,
        error: None,
    })
}

/// A Redis command bounded by [`REDIS_TIMEOUT`], its error as text.
async fn bounded<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("Redis: {e}")),
        Err(_) => Err(format!("Redis did not answer within {REDIS_TIMEOUT:?}")),
    }
}
