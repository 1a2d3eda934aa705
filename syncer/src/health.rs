//! Active health checks: the role of Hipache's `hipache-hchecker`.
//!
//! The leader probes every backend of every frontend in Redis (SCAN
//! `frontend:*`, so the redis-cli ones too) with an HTTP request (method,
//! path, Host, interval and timeouts configurable). A backend answering a
//! status below 500 is up; a refused or timed-out connection, a timeout
//! waiting for the response head, or a 5xx is a failure. After `fall`
//! consecutive failures it is marked dead in `dead:<frontend host>`
//! (`SADD` its position + `EXPIRE`, renewed every round while it stays
//! dead); after `rise` consecutive successes it is revived (`SREM`).
//! `hchecker_ping` is set to the Unix time every 10 s, so proxies only
//! publish their own dead events and leave the sets to us. A message on the
//! `dead` channel (a proxy saw a failure) re-probes that backend at once.
//! `https://` backends get a TCP connect probe only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use hipache_schema::keys::{unix_now, DEAD_CHANNEL, HCHECKER_PING, HCHECKER_PING_INTERVAL_SECS};
use hipache_schema::{BackendUrl, Frontend, Keys, RedisUrl, Scheme};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::HealthConfig;
use crate::metrics::Metrics;
use crate::store::{self, Redis, StoreError};

/// A backend's probe history.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub dead: bool,
    fails: u32,
    oks: u32,
}

impl Health {
    /// Records one probe; returns `Some(dead)` on a transition.
    pub fn record(&mut self, ok: bool, fall: u32, rise: u32) -> Option<bool> {
        if ok {
            self.fails = 0;
            self.oks = self.oks.saturating_add(1);
            if self.dead && self.oks >= rise {
                self.dead = false;
                return Some(false);
            }
        } else {
            self.oks = 0;
            self.fails = self.fails.saturating_add(1);
            if !self.dead && self.fails >= fall {
                self.dead = true;
                return Some(true);
            }
        }
        None
    }
}

/// Where a backend appears: (frontend host, position).
type Places = BTreeMap<String, BTreeSet<(String, usize)>>;

/// Probes one backend.
pub async fn probe(url: &BackendUrl, host: &str, cfg: &HealthConfig) -> bool {
    let connect = tokio::net::TcpStream::connect(url.authority());
    let stream = match tokio::time::timeout(cfg.connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        _ => return false,
    };
    if url.scheme == Scheme::Https {
        return true;
    }
    let _ = stream.set_nodelay(true);
    let work = async {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method(cfg.method.clone())
            .uri(cfg.path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "hipache-syncer-healthcheck")
            .body(Empty::new())
            .ok()?;
        let resp = send.send_request(req).await.ok()?;
        Some(resp.status().as_u16() < 500)
    };
    matches!(
        tokio::time::timeout(cfg.timeout, work).await,
        Ok(Some(true))
    )
}

struct Checker {
    con: ConnectionManager,
    keys: Keys,
    cfg: HealthConfig,
    metrics: Metrics,
    state: BTreeMap<String, Health>,
    /// URL → where it appeared in the last scan.
    places: Places,
}

impl Checker {
    /// Every backend URL in Redis and where it sits.
    async fn scan(&mut self) -> Result<Places, StoreError> {
        let pattern = self.keys.frontend_pattern();
        let mut places = Places::new();
        for key in store::scan(&mut self.con, &pattern).await? {
            let Some(host) = self.keys.frontend_host(&key).map(str::to_owned) else {
                continue;
            };
            let Some(list) = store::read_list(&mut self.con, &key).await? else {
                continue;
            };
            let Some(f) = Frontend::decode(&list) else {
                continue;
            };
            for b in f.backends {
                if let Ok(url) = &b.url {
                    places
                        .entry(url.to_string())
                        .or_default()
                        .insert((host.clone(), b.position));
                }
            }
        }
        Ok(places)
    }

    /// The Host header for probing `url`.
    fn host_for(&self, url: &BackendUrl, places: &BTreeSet<(String, usize)>) -> String {
        if let Some(h) = &self.cfg.host {
            return h.clone();
        }
        places
            .iter()
            .map(|(h, _)| h)
            .find(|h| !h.starts_with('*'))
            .cloned()
            .unwrap_or_else(|| url.authority())
    }

    /// Probes `urls` (bounded concurrency) and applies the results.
    async fn check(&mut self, urls: Vec<String>) -> Result<(), StoreError> {
        let jobs: Vec<(String, BackendUrl, String)> = urls
            .into_iter()
            .filter_map(|u| {
                let parsed = BackendUrl::parse(&u).ok()?;
                let host = self.host_for(&parsed, self.places.get(&u)?);
                Some((u, parsed, host))
            })
            .collect();
        let cfg = self.cfg.clone();
        let results: Vec<(String, bool)> = futures_util::stream::iter(jobs)
            .map(|(u, parsed, host)| {
                let cfg = cfg.clone();
                async move {
                    let ok = probe(&parsed, &host, &cfg).await;
                    (u, ok)
                }
            })
            .buffer_unordered(self.cfg.concurrency.max(1))
            .collect()
            .await;
        let ttl = i64::try_from(self.cfg.dead_ttl.as_secs()).unwrap_or(i64::MAX);
        for (url, ok) in results {
            self.metrics
                .health_probes
                .with_label_values(&[if ok { "ok" } else { "fail" }])
                .inc();
            let h = self.state.entry(url.clone()).or_default();
            let change = h.record(ok, self.cfg.fall, self.cfg.rise);
            let dead = h.dead;
            let Some(places) = self.places.get(&url) else {
                continue;
            };
            if dead {
                // Marked, and renewed every round while it stays dead.
                let mut pipe = redis::pipe();
                for (host, pos) in places {
                    let key = self.keys.dead(host);
                    pipe.sadd(&key, *pos).ignore().expire(&key, ttl).ignore();
                }
                pipe.query_async::<()>(&mut self.con).await?;
                if change == Some(true) {
                    tracing::info!(backend = %url, "health: backend marked dead");
                }
            } else if change == Some(false) {
                let mut pipe = redis::pipe();
                for (host, pos) in places {
                    pipe.srem(self.keys.dead(host), *pos).ignore();
                }
                pipe.query_async::<()>(&mut self.con).await?;
                tracing::info!(backend = %url, "health: backend revived");
            }
        }
        self.metrics
            .backends_dead
            .set(i64::try_from(self.state.values().filter(|h| h.dead).count()).unwrap_or(i64::MAX));
        Ok(())
    }

    async fn ping(&mut self) -> Result<(), StoreError> {
        self.con.set::<_, _, ()>(HCHECKER_PING, unix_now()).await?;
        Ok(())
    }

    async fn round(&mut self) -> Result<(), StoreError> {
        self.places = self.scan().await?;
        self.state.retain(|u, _| self.places.contains_key(u));
        let urls: Vec<String> = self.places.keys().cloned().collect();
        self.check(urls).await
    }
}

/// Forwards the backend URL of every `dead` channel message.
async fn follow_dead_channel(redis: Redis, tx: mpsc::Sender<String>, shutdown: CancellationToken) {
    loop {
        let sub = async {
            let mut ps = redis.subscribe(DEAD_CHANNEL).await.ok()?;
            let mut msgs = ps.on_message();
            while let Some(m) = msgs.next().await {
                let Ok(payload) = m.get_payload::<String>() else {
                    continue;
                };
                if let Some(d) = hipache_schema::dead::parse_message(&payload) {
                    if tx.send(d.backend).await.is_err() {
                        return Some(());
                    }
                }
            }
            None
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sub => if r.is_some() { return },
        }
        // Disconnected: resubscribe after a pause.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Runs the checker while this replica leads, until `shutdown`.
pub async fn run(
    redis: RedisUrl,
    keys: Keys,
    cfg: HealthConfig,
    mut leader: watch::Receiver<bool>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let redis = Redis::new(&redis);
    loop {
        // Wait for leadership.
        while !*leader.borrow() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = leader.changed() => if r.is_err() { return },
            }
        }
        let term = shutdown.child_token();
        let lost = {
            let term = term.clone();
            let mut leader = leader.clone();
            async move {
                while *leader.borrow() {
                    if leader.changed().await.is_err() {
                        break;
                    }
                }
                term.cancel();
            }
        };
        let work = lead(&redis, &keys, &cfg, &metrics, term.clone());
        tokio::select! {
            _ = work => {}
            _ = lost => {}
        }
        term.cancel();
        if shutdown.is_cancelled() {
            return;
        }
    }
}

async fn lead(
    redis: &Redis,
    keys: &Keys,
    cfg: &HealthConfig,
    metrics: &Metrics,
    term: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let con = loop {
        match redis.connect().await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "health: cannot connect to redis");
                tokio::select! {
                    _ = term.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    // The subscriber task ends with this term, also when `lead` is dropped.
    let _term_guard = term.clone().drop_guard();
    let (tx, mut rx) = mpsc::channel(1024);
    tokio::spawn(follow_dead_channel(redis.clone(), tx, term.clone()));
    let mut c = Checker {
        con,
        keys: keys.clone(),
        cfg: cfg.clone(),
        metrics: metrics.clone(),
        state: BTreeMap::new(),
        places: Places::new(),
    };
    let mut ping = tokio::time::interval(Duration::from_secs(HCHECKER_PING_INTERVAL_SECS));
    let mut round = tokio::time::interval(cfg.interval);
    round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let r = tokio::select! {
            _ = term.cancelled() => return,
            _ = ping.tick() => c.ping().await,
            _ = round.tick() => c.round().await,
            Some(url) = rx.recv() => {
                // A proxy saw this backend fail: re-check it now.
                let mut urls = vec![url];
                while let Ok(more) = rx.try_recv() {
                    urls.push(more);
                }
                urls.sort();
                urls.dedup();
                urls.retain(|u| c.places.contains_key(u));
                c.check(urls).await
            }
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "health: redis error");
            if redis.is_sentinel() {
                // The master may have moved: connect again through the
                // Sentinels after a pause (`run` calls us again).
                tokio::select! {
                    _ = term.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_and_rise_thresholds() {
        let mut h = Health::default();
        assert_eq!(h.record(false, 2, 2), None);
        assert_eq!(h.record(false, 2, 2), Some(true));
        assert_eq!(h.record(false, 2, 2), None);
        assert_eq!(h.record(true, 2, 2), None);
        assert_eq!(
            h.record(false, 2, 2),
            None,
            "a failure resets the rise count"
        );
        assert_eq!(h.record(true, 2, 2), None);
        assert_eq!(h.record(true, 2, 2), Some(false));
        assert!(!h.dead);
    }
}
