//! Certificates from Redis: `tls:<host>` hashes (`cert`, `key`: PEM),
//! with the driver's key prefix. All are loaded at start (SCAN), one host
//! is reloaded when its name is published on the `tls` channel (a separate
//! pub/sub connection), and everything is rescanned every
//! [`RESCAN_INTERVAL`] to repair missed messages and a lost subscription.
//!
//! Both connections come from [`crate::redis_conn`]: a [`Link`] of its own
//! for the scans (so that they never queue behind request lookups, with
//! the longer [`BULK_RESPONSE_TIMEOUT`]) and a subscription; each
//! reconnects by itself.
//!
//! The name served is the key's host (an exact name or `*.<domain>`), not
//! the certificate's SAN: that is what the writer (the syncer, from an
//! Ingress's `tls.hosts`) asked for. A hash that does not load is logged
//! and skipped, and the certificate loaded before for that host keeps
//! serving; a deleted hash removes the host.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hipache_schema::keys::{TLS_CERT_FIELD, TLS_CHANNEL, TLS_KEY_FIELD};
use hipache_schema::Keys;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use tokio::sync::mpsc;

use super::certs;
use super::store::{normalize, CertStore, Names, Source};
use crate::redis_conn::subscription::{self, Delivery};
use crate::redis_conn::{Backoff, Dialer, Link, Target, BULK_RESPONSE_TIMEOUT};

/// Full rescan period: how long a missed `tls` message can go unnoticed.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(30);

/// Keys asked per SCAN step.
const SCAN_COUNT: usize = 200;

/// A loaded host: a hash of its `cert` and `key` fields (to skip parsing
/// unchanged ones on a rescan) and the certificate.
type Loaded = HashMap<String, (u64, Arc<CertifiedKey>)>;

/// The `cert` and `key` fields of a `tls:` hash, as HMGET answers them.
type Fields = (Option<Vec<u8>>, Option<Vec<u8>>);

struct RedisCerts {
    store: Weak<CertStore>,
    /// The command connection.
    link: Link,
    keys: Keys,
    provider: Arc<CryptoProvider>,
    loaded: Mutex<Loaded>,
    /// Hosts whose current hash failed to load, with its fingerprint (so
    /// a rescan logs it once, not every time).
    bad: Mutex<HashMap<String, u64>>,
}

/// Starts the Redis certificate source for `url` (the driver's read URL):
/// connections, the initial load, the subscription and the rescans, all in
/// the background until `store` is dropped.
pub fn spawn(
    target: &Target,
    store: &Arc<CertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<(), String> {
    let dialer = Dialer::new(target, false).map_err(|e| format!("tls Redis: {e}"))?;
    let deliveries = subscription::subscribe(dialer.clone(), TLS_CHANNEL, "tls");
    let link = Link::start(dialer.with_response_timeout(BULK_RESPONSE_TIMEOUT), "tls");
    let this = Arc::new(RedisCerts {
        store: Arc::downgrade(store),
        link,
        keys: Keys::new(target.url.prefix.clone()),
        provider,
        loaded: Mutex::default(),
        bad: Mutex::default(),
    });
    tokio::spawn(this.clone().rescans());
    tokio::spawn(this.subscription(deliveries));
    Ok(())
}

impl RedisCerts {
    fn alive(&self) -> bool {
        self.store.strong_count() > 0
    }

    /// A full scan now (as soon as Redis is reachable) and every
    /// [`RESCAN_INTERVAL`].
    async fn rescans(self: Arc<Self>) {
        let mut retry = Backoff::new();
        let mut done_once = false;
        while self.alive() {
            match self.full_scan().await {
                Ok(()) => {
                    done_once = true;
                    tokio::time::sleep(RESCAN_INTERVAL).await;
                }
                Err(e) if done_once => {
                    tracing::warn!(error = %e, "TLS certificates: Redis rescan failed; keeping the loaded ones");
                    tokio::time::sleep(RESCAN_INTERVAL).await;
                }
                // Not connected yet: the first load comes as soon as it is.
                Err(_) if !self.link.is_connected() => {
                    self.link.wait_connected(RESCAN_INTERVAL).await;
                }
                Err(_) => retry.wait().await,
            }
        }
    }

    /// Reloads each host published on `tls`, and rescans after each
    /// re-subscription, for what was published meanwhile.
    async fn subscription(self: Arc<Self>, mut deliveries: mpsc::Receiver<Delivery>) {
        while self.alive() {
            let delivery = tokio::select! {
                d = deliveries.recv() => d,
                () = tokio::time::sleep(RESCAN_INTERVAL) => continue,
            };
            match delivery {
                None => return,
                Some(Delivery::Subscribed { again: false }) => {}
                Some(Delivery::Subscribed { again: true }) => {
                    if let Err(e) = self.full_scan().await {
                        tracing::debug!(error = %e, "TLS certificates: rescan after re-subscribing failed");
                    }
                }
                Some(Delivery::Message(payload)) => {
                    let payload = String::from_utf8_lossy(&payload);
                    let Some(host) = normalize(payload.trim()).map(|h| h.into_owned()) else {
                        continue;
                    };
                    if let Err(e) = self.reload_host(&host).await {
                        tracing::warn!(host = %host, error = %e, "TLS certificates: reload from Redis failed");
                    }
                }
            }
        }
    }

    /// The command connection, or why there is none.
    fn conn(&self) -> Result<MultiplexedConnection, String> {
        self.link
            .get()
            .ok_or_else(|| "not connected to Redis".to_owned())
    }

    /// A command failed: the link probes its connection.
    fn failed(&self, e: redis::RedisError) -> String {
        self.link.report_failure();
        e.to_string()
    }

    /// Re-reads one `tls:<host>` hash.
    async fn reload_host(&self, host: &str) -> Result<(), String> {
        let mut conn = self.conn()?;
        let (cert, key): Fields = redis::cmd("HMGET")
            .arg(self.keys.tls(host))
            .arg(TLS_CERT_FIELD)
            .arg(TLS_KEY_FIELD)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let Some(store) = self.store.upgrade() else {
            return Ok(());
        };
        match (cert, key) {
            (Some(cert), Some(key)) => {
                if let Some(c) = self.load(host, &cert, &key) {
                    store.set(Source::Redis, host, Some(c));
                }
            }
            (None, None) => {
                if self.loaded.lock().remove(host).is_some() {
                    tracing::info!(host, "TLS certificate removed (Redis)");
                }
                self.bad.lock().remove(host);
                store.set(Source::Redis, host, None);
            }
            _ => self.skip(host, 0, "the hash needs both `cert` and `key`"),
        }
        Ok(())
    }

    /// SCANs every `tls:` key and replaces the whole Redis source.
    async fn full_scan(&self) -> Result<(), String> {
        let mut conn = self.conn()?;
        let pattern = self.keys.tls_pattern();
        let mut cursor: u64 = 0;
        let mut seen: HashSet<String> = HashSet::new();
        let mut fresh = Names::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            let hosts: Vec<(String, String)> = batch
                .into_iter()
                .filter_map(|k| {
                    let host = normalize(self.keys.tls_host(&k)?)?.into_owned();
                    seen.insert(host.clone()).then_some((k, host))
                })
                .collect();
            if !hosts.is_empty() {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for (k, _) in &hosts {
                    pipe.cmd("HMGET")
                        .arg(k)
                        .arg(TLS_CERT_FIELD)
                        .arg(TLS_KEY_FIELD);
                }
                let replies: Vec<redis::Value> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.failed(e))?;
                for ((_, host), reply) in hosts.iter().zip(replies) {
                    let fields: Option<Fields> = redis::from_redis_value(reply).ok();
                    match fields {
                        Some((Some(cert), Some(key))) => {
                            if let Some(c) = self.load(host, &cert, &key) {
                                fresh.insert(host.clone(), c);
                            }
                        }
                        // Not a hash, or one field missing.
                        _ => self.skip(host, 0, "not a hash with both `cert` and `key`"),
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let Some(store) = self.store.upgrade() else {
            return Ok(());
        };
        {
            let mut loaded = self.loaded.lock();
            let gone: Vec<String> = loaded
                .keys()
                .filter(|h| !seen.contains(*h))
                .cloned()
                .collect();
            for h in gone {
                loaded.remove(&h);
                tracing::info!(host = %h, "TLS certificate removed (Redis)");
            }
            // A bad hash keeps the host's previous certificate.
            for (h, (_, c)) in loaded.iter() {
                fresh.entry(h.clone()).or_insert_with(|| c.clone());
            }
            self.bad.lock().retain(|h, _| seen.contains(h));
        }
        store.replace(Source::Redis, fresh);
        Ok(())
    }

    /// Parses a hash's fields (unless unchanged since the last load); the
    /// certificate to serve for `host`, or `None` when it does not load
    /// and nothing was loaded before.
    fn load(&self, host: &str, cert: &[u8], key: &[u8]) -> Option<Arc<CertifiedKey>> {
        let fp = fingerprint(cert, key);
        if let Some((old_fp, c)) = self.loaded.lock().get(host) {
            if *old_fp == fp {
                return Some(c.clone());
            }
        }
        if self.bad.lock().get(host) == Some(&fp) {
            return self.loaded.lock().get(host).map(|(_, c)| c.clone());
        }
        match certs::load(cert, key, &self.provider) {
            Ok(l) => {
                tracing::info!(host, san = ?l.names, "TLS certificate loaded (Redis)");
                self.bad.lock().remove(host);
                self.loaded
                    .lock()
                    .insert(host.to_owned(), (fp, l.key.clone()));
                Some(l.key)
            }
            Err(e) => {
                self.skip(host, fp, &e.to_string());
                self.loaded.lock().get(host).map(|(_, c)| c.clone())
            }
        }
    }

    fn skip(&self, host: &str, fp: u64, why: &str) {
        if self.bad.lock().insert(host.to_owned(), fp) == Some(fp) {
            return;
        }
        let kept = if self.loaded.lock().contains_key(host) {
            "; the previous certificate keeps serving"
        } else {
            ""
        };
        tracing::warn!(host, key = %self.keys.tls(host), error = why, "TLS certificate in Redis skipped{kept}");
    }
}

fn fingerprint(cert: &[u8], key: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cert.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}
