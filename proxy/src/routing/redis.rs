//! The Redis route store: one pipelined round trip per lookup on the read
//! connection (`reader`), the route cache in front of it, route documents
//! decoded once per change (`documents`), and dead marks handed to the
//! writer (`deadmark`) on its own connection.

use std::sync::Arc;
use std::time::Duration;

use hipache_schema::routes::RequestView;
use hipache_schema::{candidates, Frontend, Keys};
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::mpsc;

use super::cache::{self, Lookup, Mode, RouteCache};
use super::deadmark::{self, DeadMark};
use super::documents::Documents;
use super::reader::ReadConn;
use super::replies::Replies;
use super::route::{log_invalid_backends, resolve, Candidate, Resolved, Table};
use crate::config::{Config, RedisUrl, RouteCacheMode};
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::redis_conn::Target;

pub struct RedisStore {
    read: ReadConn,
    metrics: Arc<Metrics>,
    keys: Keys,
    cache: Arc<RouteCache>,
    documents: Documents,
    marks: mpsc::Sender<DeadMark>,
}

impl RedisStore {
    pub fn open(
        read: &RedisUrl,
        write: &RedisUrl,
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let keys = Keys::new(read.prefix.clone());
        let (mode, capacity) = match (config.route_cache, config.lru_cache) {
            (RouteCacheMode::Tracking, _) => (Mode::Tracking, cache::DEFAULT_CAPACITY),
            (RouteCacheMode::Strict, Some(lru)) => (Mode::Ttl(lru.ttl), lru.size.max(1)),
            (RouteCacheMode::Strict, None) => (Mode::Strict, cache::DEFAULT_CAPACITY),
        };
        let cache = Arc::new(RouteCache::new(mode, capacity, metrics.clone()));
        let target = |url: &RedisUrl| Target {
            url: url.clone(),
            ca: config.redis_ca.clone(),
        };
        let read_conn =
            ReadConn::start(&target(read), keys.clone(), cache.clone(), metrics.clone())?;
        let marks = deadmark::spawn_redis_writer(
            &target(write),
            Keys::new(write.prefix.clone()),
            config.dead_backend_ttl.as_secs(),
            metrics.clone(),
        )?;
        Ok(Self {
            read: read_conn,
            documents: Documents::new(metrics.clone()),
            metrics,
            keys,
            cache,
            marks,
        })
    }

    /// The route for a host: from the cache when its mode allows, else one
    /// round trip to Redis; while Redis cannot be read, the last known
    /// answer (bounded staleness) or a fast failure.
    ///
    /// In strict mode a cached route is served only once Redis confirmed,
    /// after the request arrived, that no write had invalidated it
    /// ([`ReadConn::confirm`]); without tracking, every lookup reads.
    pub async fn lookup(&self, host: &str, req: &RequestView<'_>) -> Result<Resolved, ProxyError> {
        let strict = self.cache.mode() == Mode::Strict;
        if !strict {
            if let Some(hit) = self.cache.fresh(host) {
                self.metrics.cache("hit");
                return resolve(host, &hit.candidates, &hit.request_dead, req);
            }
            self.metrics.cache("miss");
        }
        // Taken before the connection: a read on a connection handed out
        // after a reconnection is never cached as valid from before it.
        let epoch = self.cache.epoch();
        let Some(conn) = self.read.link().get() else {
            return self.stale(host, req, "not connected");
        };
        if strict && self.cache.valid(host).is_some() {
            let started = std::time::Instant::now();
            let confirmed = self.read.confirm(&conn).await;
            if confirmed.is_some() {
                self.metrics
                    .redis_duration
                    .observe(started.elapsed().as_secs_f64());
            }
            // Checked again: an invalidation may have come before the PONG.
            if let Some(hit) = confirmed
                .filter(|c| *c)
                .and_then(|_| self.cache.valid(host))
            {
                self.metrics.cache("hit");
                return resolve(host, &hit.candidates, &hit.request_dead, req);
            }
        }
        let started = std::time::Instant::now();
        let hosts = candidates(host);
        let replies = self.query(conn, &hosts).await;
        self.metrics
            .redis_duration
            .observe(started.elapsed().as_secs_f64());
        if let Ok(replies) = &replies {
            if let Some(same) = strict
                .then(|| self.cache.unchanged(host, replies, epoch))
                .flatten()
            {
                return resolve(host, &same.candidates, &same.request_dead, req);
            }
        }
        match replies.and_then(|r| self.decode(hosts, r, strict)) {
            Ok(lookup) => {
                let route = resolve(host, &lookup.candidates, &lookup.request_dead, req);
                self.cache.insert(host, Arc::new(lookup), epoch);
                route
            }
            Err(e) => {
                self.metrics.redis_errors.inc();
                self.read.link().report_failure();
                self.stale(host, req, &e.to_string())
            }
        }
    }

    fn stale(&self, host: &str, req: &RequestView<'_>, why: &str) -> Result<Resolved, ProxyError> {
        match self.cache.stale(host) {
            Some((hit, age)) => {
                self.metrics.cache("stale");
                let age_secs = age.as_secs() as i64;
                if age_secs > self.metrics.staleness.get() {
                    self.metrics.staleness.set(age_secs);
                }
                if self.read.first_stale_of_outage() {
                    tracing::warn!(error = why, age = ?age, "Redis unreachable: serving last known routes");
                }
                resolve(host, &hit.candidates, &hit.request_dead, req)
            }
            None => Err(ProxyError::RoutesUnavailable(why.to_owned())),
        }
    }

    /// One round trip: `LRANGE` of every candidate frontend (`hosts`),
    /// `SMEMBERS` of every candidate's dead set (the request host's is the
    /// first) and one `MGET` of every candidate's route document,
    /// pipelined.
    async fn query(
        &self,
        mut conn: MultiplexedConnection,
        hosts: &[String],
    ) -> redis::RedisResult<Vec<Value>> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for h in hosts {
            pipe.cmd("LRANGE").arg(self.keys.frontend(h)).arg(0).arg(-1);
        }
        for h in hosts {
            pipe.cmd("SMEMBERS").arg(self.keys.dead(h));
        }
        let mget = pipe.cmd("MGET");
        for h in hosts {
            mget.arg(self.keys.routes(h));
        }
        pipe.query_async(&mut conn).await
    }

    /// The lookup `replies` of [`RedisStore::query`] for `hosts` mean;
    /// with a copy of the replies when `keep_replies` (strict mode: the
    /// next request's replies are compared with it).
    fn decode(
        &self,
        hosts: Vec<String>,
        replies: Vec<Value>,
        keep_replies: bool,
    ) -> redis::RedisResult<Lookup> {
        let n = hosts.len();
        let (lists, rest) = replies.split_at(n.min(replies.len()));
        let (deads, documents) = rest.split_at(n.min(rest.len()));
        // A refused MGET (an ACL without `routes:`) is an error, not "no
        // documents": a host's policies are never skipped unread.
        let documents: &[Value] = match documents.first() {
            Some(Value::Array(d)) => d,
            other => {
                let detail = format!("MGET of route documents: {other:?}");
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "route documents unreadable",
                    detail,
                )));
            }
        };
        let request_dead = deads.first().map(dead_positions).unwrap_or_default();
        // Candidates with neither a list nor a document can never win: keep
        // only the others (what the cache holds per host is then usually one
        // candidate). A document, when there is one, is the host's routes.
        let candidates = hosts
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let table = match documents.get(i) {
                    Some(Value::BulkString(json)) => self.documents.table(&h, json),
                    _ => Ok(Table::List(decode_list(&h, lists.get(i)?)?)),
                };
                Some(Candidate {
                    table,
                    dead: deads.get(i).map(dead_positions).unwrap_or_default(),
                    host: h,
                })
            })
            .collect();
        Ok(Lookup {
            candidates,
            request_dead,
            replies: keep_replies.then(|| Replies::of(&replies)),
        })
    }

    /// Updates gauges that are read rather than counted.
    pub fn refresh_gauges(&self) {
        self.metrics.cache_entries.set(self.cache.len() as i64);
    }

    /// The read connection, when it is up (the status page's reads share
    /// it with lookups).
    pub fn connection(&self) -> Option<MultiplexedConnection> {
        self.read.link().get()
    }

    /// The key names, with this store's prefix.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Route documents decoded once per change (shared with lookups).
    pub fn documents(&self) -> &Documents {
        &self.documents
    }

    /// The route cache's mode and how many hosts it holds.
    pub fn cache_state(&self) -> (Mode, usize) {
        (self.cache.mode(), self.cache.len())
    }

    /// Waits for the read connection.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.read.link().wait_connected(timeout).await
    }

    pub fn mark_dead(&self, mark: DeadMark) {
        if let Err(e) = self.marks.try_send(mark) {
            tracing::warn!(error = %e, "dead-mark queue full: mark dropped");
        }
    }
}

/// A `frontend:` reply decoded; anything that is not a list of strings
/// (a key of another type, a server error) counts as absent, with a log.
fn decode_list(host: &str, v: &Value) -> Option<Arc<Frontend>> {
    match v {
        Value::Array(items) => {
            let strings: Vec<String> = items.iter().filter_map(value_string).collect();
            let frontend = Frontend::decode(&strings)?;
            log_invalid_backends(host, &frontend);
            Some(Arc::new(frontend))
        }
        Value::Nil => None,
        other => {
            tracing::warn!(frontend = host, reply = ?other, "frontend key is not a list; ignored");
            None
        }
    }
}

pub(crate) fn dead_positions(v: &Value) -> Vec<usize> {
    match v {
        Value::Array(items) | Value::Set(items) => items
            .iter()
            .filter_map(value_string)
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}
