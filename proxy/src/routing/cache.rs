//! The local route cache: what Redis answered for a request host.
//!
//! It serves three purposes, by mode:
//! - `strict` (default, Hipache's meaning): never answers a lookup while
//!   Redis is reachable; it only remembers the last answer per host so that
//!   known hosts keep working while Redis is down.
//! - `tracking`: answers lookups until Redis itself says a key changed
//!   (RESP3 client tracking pushes an invalidation within about a
//!   millisecond of the write). Reconnecting drops everything, since
//!   invalidations may have been missed while disconnected.
//! - Hipache's `lruCache {size, ttl}`: answers for `ttl` after the read.
//!
//! Entries older than [`MAX_STALENESS`] are never served, even during an
//! outage.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use super::replies::Replies;
use super::route::Candidate;
use crate::metrics::Metrics;

/// The longest a remembered route is served while Redis is unreachable.
/// Past this, a host is as unknown as one never seen: a backend list from
/// an hour ago is more likely wrong than right.
pub const MAX_STALENESS: Duration = Duration::from_secs(3600);

/// How long strict mode serves a confirmed route before reading it again.
/// A write is always seen by the next request (its invalidation comes
/// first), but a key that *expires* (a dead mark's set) is only pushed as
/// invalidated once Redis deletes it, which its expiry cycle may do some
/// time after the TTL: a read sees the expiry at once. Reading each host
/// again at least once a second bounds that lag at a second, for one
/// lookup per host and second.
pub const CONFIRMED_MAX_AGE: Duration = Duration::from_secs(1);

/// Hosts remembered at most (in `strict` and `tracking` modes; the TTL
/// cache has its own `size`). About 1 KB each: well under the memory
/// target at 100,000 frontends.
pub const DEFAULT_CAPACITY: usize = 200_000;

const SHARDS: usize = 32;

/// One lookup as read from Redis: every candidate frontend and the request
/// host's own dead set.
#[derive(Clone)]
pub struct Lookup {
    pub candidates: Vec<Candidate>,
    pub request_dead: Vec<usize>,
    /// What Redis answered, in strict mode: the next answer is compared
    /// with it ([`RouteCache::unchanged`]).
    pub replies: Option<Replies>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Strict,
    Tracking,
    Ttl(Duration),
}

struct Entry {
    lookup: Arc<Lookup>,
    read_at: Instant,
    /// Still known to match Redis (tracking mode).
    valid: bool,
}

pub struct RouteCache {
    mode: Mode,
    metrics: Arc<Metrics>,
    capacity: usize,
    shards: Vec<RwLock<HashMap<String, Entry>>>,
    /// Bumped by every invalidation: a read that started before one may
    /// not be cached as valid.
    epoch: AtomicU64,
}

impl RouteCache {
    pub fn new(mode: Mode, capacity: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            mode,
            metrics,
            capacity: capacity.max(SHARDS),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            epoch: AtomicU64::new(0),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn shard(&self, host: &str) -> &RwLock<HashMap<String, Entry>> {
        let mut h = DefaultHasher::new();
        host.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// The epoch to pass to [`RouteCache::insert`] for a read starting now.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A cached answer that may be served while Redis is reachable.
    pub fn fresh(&self, host: &str) -> Option<Arc<Lookup>> {
        let shard = self.shard(host).read();
        let e = shard.get(host)?;
        let ok = match self.mode {
            Mode::Strict => false,
            Mode::Tracking => e.valid,
            Mode::Ttl(ttl) => e.read_at.elapsed() < ttl,
        };
        ok.then(|| e.lookup.clone())
    }

    /// The last answer for a host, however old (within [`MAX_STALENESS`]),
    /// for when Redis cannot be read; with its age.
    pub fn stale(&self, host: &str) -> Option<(Arc<Lookup>, Duration)> {
        let shard = self.shard(host).read();
        let e = shard.get(host)?;
        let age = e.read_at.elapsed();
        (age < MAX_STALENESS).then(|| (e.lookup.clone(), age))
    }

    /// Remembers what Redis answered. `epoch` is [`RouteCache::epoch`] from
    /// before the read: if an invalidation came in between, the answer is
    /// kept for outages but not served as fresh.
    pub fn insert(&self, host: &str, lookup: Arc<Lookup>, epoch: u64) {
        let valid = self.epoch() == epoch;
        let mut shard = self.shard(host).write();
        if shard.len() >= self.capacity / SHARDS && !shard.contains_key(host) {
            // Full: forget an arbitrary tenth of this shard.
            let drop: Vec<String> = shard.keys().take(shard.len() / 10 + 1).cloned().collect();
            for k in drop {
                shard.remove(&k);
            }
        }
        shard.insert(
            host.to_owned(),
            Entry {
                lookup,
                read_at: Instant::now(),
                valid,
            },
        );
    }

    /// The cached answer for `host` when Redis answered `replies` again,
    /// byte for byte: it counts as read now (at `epoch`, as for
    /// [`RouteCache::insert`]), and is served as it is.
    pub fn unchanged(
        &self,
        host: &str,
        replies: &[redis::Value],
        epoch: u64,
    ) -> Option<Arc<Lookup>> {
        let valid = self.epoch() == epoch;
        let mut shard = self.shard(host).write();
        let e = shard.get_mut(host)?;
        if !e.lookup.replies.as_ref()?.same_as(replies) {
            return None;
        }
        e.read_at = Instant::now();
        e.valid = valid;
        Some(e.lookup.clone())
    }

    /// The cached answer for `host` if it was read less than
    /// [`CONFIRMED_MAX_AGE`] ago and no invalidation has come for it since,
    /// whatever the mode (strict mode serves it only after a confirmation,
    /// see [`super::barrier`]).
    pub fn valid(&self, host: &str) -> Option<Arc<Lookup>> {
        let shard = self.shard(host).read();
        let e = shard.get(host)?;
        (e.valid && e.read_at.elapsed() < CONFIRMED_MAX_AGE).then(|| e.lookup.clone())
    }

    /// Redis reported a change of `host`'s frontend or dead set: `host` may
    /// be a wildcard (`*.example.com`) or `*`, which every request host under
    /// it read.
    pub fn invalidate_host(&self, host: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics.cache_invalidations.inc();
        if host == "*" {
            return self.invalidate_all();
        }
        if let Some(domain) = host.strip_prefix("*.") {
            let suffix = format!(".{domain}");
            for shard in &self.shards {
                for (h, e) in shard.write().iter_mut() {
                    if h.ends_with(&suffix) {
                        e.valid = false;
                    }
                }
            }
            return;
        }
        if let Some(e) = self.shard(host).write().get_mut(host) {
            e.valid = false;
        }
    }

    /// Everything may have changed (a reconnection, a FLUSHALL).
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics.cache_invalidations.inc();
        for shard in &self.shards {
            for e in shard.write().values_mut() {
                e.valid = false;
            }
        }
    }

    /// Hosts remembered.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(0))
    }

    fn lookup() -> Arc<Lookup> {
        Arc::new(Lookup {
            candidates: Vec::new(),
            request_dead: vec![1],
            replies: None,
        })
    }

    #[test]
    fn strict_never_serves_fresh_but_remembers() {
        let c = RouteCache::new(Mode::Strict, 100, metrics());
        c.insert("a.com", lookup(), c.epoch());
        assert!(c.fresh("a.com").is_none());
        assert!(c.stale("a.com").is_some());
    }

    #[test]
    fn tracking_serves_until_invalidated() {
        let c = RouteCache::new(Mode::Tracking, 100, metrics());
        c.insert("x.a.com", lookup(), c.epoch());
        c.insert("b.com", lookup(), c.epoch());
        assert!(c.fresh("x.a.com").is_some());
        c.invalidate_host("*.a.com");
        assert!(c.fresh("x.a.com").is_none());
        assert!(c.fresh("b.com").is_some());
        assert!(c.stale("x.a.com").is_some(), "kept for outages");
        c.invalidate_host("*");
        assert!(c.fresh("b.com").is_none());
    }

    #[test]
    fn a_read_racing_an_invalidation_is_not_fresh() {
        let c = RouteCache::new(Mode::Tracking, 100, metrics());
        let before = c.epoch();
        c.invalidate_host("a.com");
        c.insert("a.com", lookup(), before);
        assert!(c.fresh("a.com").is_none());
    }

    #[test]
    fn ttl_mode_expires() {
        let c = RouteCache::new(Mode::Ttl(Duration::ZERO), 100, metrics());
        c.insert("a.com", lookup(), c.epoch());
        assert!(c.fresh("a.com").is_none());
        let c = RouteCache::new(Mode::Ttl(Duration::from_secs(60)), 100, metrics());
        c.insert("a.com", lookup(), c.epoch());
        assert!(c.fresh("a.com").is_some());
    }

    #[test]
    fn capacity_is_bounded() {
        let c = RouteCache::new(Mode::Tracking, 64, metrics());
        for i in 0..1000 {
            c.insert(&format!("h{i}.com"), lookup(), c.epoch());
        }
        assert!(c.len() <= 64, "{}", c.len());
    }
}
