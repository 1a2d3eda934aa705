//! Live statistics per backend for the status page: requests in flight,
//! requests, failures and latency bucket counts, as atomics.
//!
//! Collected only when `statusPage` is on (the request path holds an
//! `Option` of the registry and pays one branch otherwise). The registry
//! is bounded: the first [`MAX_BACKENDS`] backend URLs seen get counters,
//! later ones are not counted (the page says how many are tracked), so
//! that a Redis full of ever-changing pod addresses cannot grow it without
//! end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use parking_lot::RwLock;

use crate::metrics::LATENCY_BUCKETS;

/// Most backend URLs given counters; each costs about 200 bytes.
pub const MAX_BACKENDS: usize = 10_000;

/// One backend's counters.
#[derive(Default)]
pub struct Counters {
    in_flight: AtomicI64,
    requests: AtomicU64,
    failures: AtomicU64,
    /// Answers by [`LATENCY_BUCKETS`] (time to the response head); the
    /// last slot counts those slower than the last bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
}

/// What the page shows of one backend's counters.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Snapshot {
    pub in_flight: i64,
    pub requests: u64,
    pub failures: u64,
    /// Seconds; `None` before the first answer.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        Snapshot {
            in_flight: self.in_flight.load(Ordering::Relaxed).max(0),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            p50: quantile(&counts, 0.5),
            p99: quantile(&counts, 0.99),
        }
    }
}

/// The bounded registry of every backend's [`Counters`], by backend URL as
/// stored.
#[derive(Default)]
pub struct BackendStats {
    by_url: RwLock<HashMap<Box<str>, Arc<Counters>>>,
}

impl BackendStats {
    /// Starts counting one attempt to `url`: `None` when the registry is
    /// full and `url` is not in it.
    pub fn begin(&self, url: &str) -> Option<Flight> {
        let counters = self.counters(url)?;
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Flight(counters))
    }

    fn counters(&self, url: &str) -> Option<Arc<Counters>> {
        if let Some(c) = self.by_url.read().get(url) {
            return Some(c.clone());
        }
        let mut map = self.by_url.write();
        if let Some(c) = map.get(url) {
            return Some(c.clone());
        }
        if map.len() >= MAX_BACKENDS {
            return None;
        }
        let c = Arc::new(Counters::default());
        map.insert(url.into(), c.clone());
        Some(c)
    }

    /// The counters of `url`, if it was ever counted.
    pub fn get(&self, url: &str) -> Option<Snapshot> {
        self.by_url.read().get(url).map(|c| c.snapshot())
    }

    /// How many backends have counters.
    pub fn len(&self) -> usize {
        self.by_url.read().len()
    }
}

/// One attempt in flight; leaves the in-flight count when dropped
/// (answered, failed, or cancelled by a timeout).
pub struct Flight(Arc<Counters>);

impl Flight {
    /// The backend answered with `status` after `elapsed` (to its
    /// response head); a 5xx counts as a failure.
    pub fn answered(self, status: StatusCode, elapsed: Duration) {
        let c = &self.0;
        c.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            c.failures.fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        c.buckets[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The attempt failed without an answer (refused, timed out, broken).
    pub fn failed(self) {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.failures.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The `q` quantile (0..1) of answers counted by bucket, interpolated
/// linearly inside its bucket as Prometheus' `histogram_quantile` does;
/// answers slower than the last bound report that bound.
fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                return LATENCY_BUCKETS.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let within = (rank - below as f64) / n as f64;
            return Some(lower + (upper - lower) * within);
        }
        below += n;
    }
    LATENCY_BUCKETS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_an_attempt_and_leaves_flight_when_done() {
        let stats = BackendStats::default();
        let f = stats.begin("http://a").expect("room");
        assert_eq!(stats.get("http://a").map(|s| s.in_flight), Some(1));
        f.answered(StatusCode::OK, Duration::from_millis(3));
        stats.begin("http://a").expect("room").failed();
        let f = stats.begin("http://a").expect("room");
        f.answered(StatusCode::BAD_GATEWAY, Duration::from_millis(3));
        drop(stats.begin("http://a"));
        let s = stats.get("http://a").expect("counted");
        assert_eq!((s.in_flight, s.requests, s.failures), (0, 3, 2));
        // 3 ms lies in the (2.5 ms, 5 ms] bucket.
        let p50 = s.p50.expect("answers");
        assert!(p50 > 0.0025 && p50 <= 0.005, "{p50}");
    }

    #[test]
    fn the_registry_is_bounded() {
        let stats = BackendStats::default();
        for i in 0..MAX_BACKENDS {
            drop(stats.begin(&format!("http://10.0.0.1:{i}")));
        }
        assert!(stats.begin("http://one-too-many").is_none());
        assert!(stats.begin("http://10.0.0.1:0").is_some());
        assert_eq!(stats.len(), MAX_BACKENDS);
    }

    #[test]
    fn quantiles_of_buckets() {
        assert_eq!(quantile(&[0; LATENCY_BUCKETS.len() + 1], 0.5), None);
        let mut counts = [0u64; LATENCY_BUCKETS.len() + 1];
        counts[0] = 99;
        counts[LATENCY_BUCKETS.len()] = 1;
        assert!(quantile(&counts, 0.5).is_some_and(|v| v <= LATENCY_BUCKETS[0]));
        assert_eq!(quantile(&counts, 1.0), LATENCY_BUCKETS.last().copied());
    }
}
