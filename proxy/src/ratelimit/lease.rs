//! Leases: a process takes tokens from a fleet bucket in small blocks,
//! so that a busy bucket costs one Redis round trip per block instead of
//! one per request.
//!
//! # What stays exact
//! - **Never more than the limit, over time.** A token is taken from the
//!   shared bucket (its TAT advanced in Redis) before the request it lets
//!   through; a lease only moves the taking earlier. A token left unused
//!   when its lease lapses ([`LEASE_TTL`]) is lost, never given back, so
//!   the fleet may let through *less* than the rate (at most one lease per
//!   process whose demand stopped), never more.
//! - **Refusals** are not remembered: a refused request asks Redis every
//!   time, so that a bucket reset in Redis (`DEL`) lets the very next
//!   request through, as any edit in Redis applies to the next request.
//!
//! # What a lease changes
//! A lease is taken at one instant and spent over up to [`LEASE_TTL`], so
//! over a short sliding window a process may let through up to one
//! lease more than the bucket allowed in that window. The block is small:
//! at most what the limit grants in [`LEASE_TTL`], a quarter of the burst
//! and [`MAX_LEASE`], whichever is least, and 1 (no lease, one round trip
//! per request: exactly as without leases) for a limit too slow or a
//! burst too small for more. A bucket's lease size starts at 1 and doubles
//! each time a lease is used up before it lapses (demand is there), and
//! shrinks to what was used when one lapses unused, so a trickle of
//! requests takes single tokens.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::gcra::Params;

/// How long a lease's tokens may be spent after they were taken.
pub const LEASE_TTL: Duration = Duration::from_millis(50);

/// The most tokens one lease takes.
pub const MAX_LEASE: u32 = 256;

/// Buckets remembered at most; idle ones are forgotten first, and a bucket
/// that finds no room is decided without a lease.
pub const CAPACITY: usize = 65_536;

/// The most tokens `params` lets one lease take (at least 1).
pub fn max_lease(params: Params) -> u32 {
    let interval = params.interval_us.max(1);
    let per_ttl = u64::try_from(LEASE_TTL.as_micros()).unwrap_or(u64::MAX) / interval;
    let burst = params.tolerance_us / interval;
    let quarter_of_burst = (burst + 1) / 4;
    let most = per_ttl.min(quarter_of_burst).min(u64::from(MAX_LEASE));
    u32::try_from(most).unwrap_or(MAX_LEASE).max(1)
}

/// What Redis granted for a lease of `want` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `n` tokens (1 to `want`): this request takes one, the rest are
    /// leased.
    Tokens(u32),
    /// None: the bucket lets one through in this many µs.
    Refused { wait_us: u64 },
}

/// What the leases say about one request.
#[derive(Debug)]
pub enum Take {
    /// A leased token: allowed, without asking Redis.
    Allowed,
    /// Ask Redis for this many tokens, holding `refill` (one refill per
    /// bucket at a time; the others wait for it and take from its lease).
    Ask {
        want: u32,
        refill: Arc<tokio::sync::Mutex<()>>,
    },
    /// No room to remember the bucket: ask Redis for one token.
    Unleased,
}

pub struct Leases {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    /// Tokens left in the current lease, until `expires`.
    tokens: u32,
    /// How many the current lease granted.
    granted: u32,
    expires: Instant,
    /// The size of the last lease asked for.
    size: u32,
    refill: Arc<tokio::sync::Mutex<()>>,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Bucket {
            tokens: 0,
            granted: 0,
            expires: now,
            size: 1,
            refill: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Forgetting it changes nothing: no live lease or refill.
    fn idle(&self, now: Instant) -> bool {
        (self.tokens == 0 || self.expires <= now) && Arc::strong_count(&self.refill) == 1
    }
}

impl Default for Leases {
    fn default() -> Self {
        Self::new()
    }
}

impl Leases {
    pub fn new() -> Self {
        Leases {
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A request on `bucket`: a leased token, or what to ask Redis.
    pub fn take(&self, bucket: &str, params: Params) -> Take {
        self.take_at(bucket, params, Instant::now())
    }

    fn take_at(&self, bucket: &str, params: Params, now: Instant) -> Take {
        let mut buckets = self.buckets.lock();
        if !buckets.contains_key(bucket) {
            if buckets.len() >= CAPACITY {
                buckets.retain(|_, b| !b.idle(now));
            }
            if buckets.len() >= CAPACITY {
                return Take::Unleased;
            }
            buckets.insert(bucket.to_owned(), Bucket::new(now));
        }
        let Some(b) = buckets.get_mut(bucket) else {
            return Take::Unleased;
        };
        if b.tokens > 0 && b.expires > now {
            b.tokens -= 1;
            return Take::Allowed;
        }
        // Sized from the last lease only (not changed here), so that
        // requests waiting on one refill all ask the same.
        let want = if b.granted == 0 {
            b.size
        } else if b.expires > now {
            // Used up before it lapsed: more demand than the lease.
            b.size.saturating_mul(2)
        } else {
            // Lapsed: as many as were used.
            b.granted - b.tokens
        };
        Take::Ask {
            want: want.clamp(1, max_lease(params)),
            refill: b.refill.clone(),
        }
    }

    /// Records Redis's answer to a lease of `asked` tokens: the request
    /// that asked takes one token of a grant.
    pub fn record(&self, bucket: &str, asked: u32, grant: Grant) {
        self.record_at(bucket, asked, grant, Instant::now());
    }

    fn record_at(&self, bucket: &str, asked: u32, grant: Grant, now: Instant) {
        let mut buckets = self.buckets.lock();
        let Some(b) = buckets.get_mut(bucket) else {
            return;
        };
        match grant {
            Grant::Tokens(n) => {
                b.size = asked;
                b.granted = n;
                b.tokens = n.saturating_sub(1);
                b.expires = now + LEASE_TTL;
            }
            Grant::Refused { .. } => {
                b.tokens = 0;
                b.granted = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(requests: u32, period: Duration, burst: u32) -> Params {
        Params::new(requests, period, burst)
    }

    #[test]
    fn slow_limits_and_small_bursts_take_single_tokens() {
        // The fleet test's limit: 10/s, burst 5. No lease: exact.
        assert_eq!(max_lease(params(10, Duration::from_secs(1), 5)), 1);
        // Fast, but a burst of 3: a quarter is below 1.
        assert_eq!(max_lease(params(100_000, Duration::from_secs(1), 3)), 1);
        // 1000/s with a large burst: what 50 ms grants.
        assert_eq!(max_lease(params(1000, Duration::from_secs(1), 10_000)), 50);
        // 1000/s with burst 40: a quarter of 41.
        assert_eq!(max_lease(params(1000, Duration::from_secs(1), 40)), 10);
        // Very fast: capped.
        assert_eq!(
            max_lease(params(1_000_000, Duration::from_secs(1), 1_000_000)),
            MAX_LEASE
        );
    }

    fn ask(t: Take) -> u32 {
        match t {
            Take::Ask { want, .. } => want,
            other => panic!("expected to ask Redis, got {other:?}"),
        }
    }

    #[test]
    fn leases_double_while_used_up_and_shrink_when_they_lapse() {
        let l = Leases::new();
        let p = params(1_000_000, Duration::from_secs(1), 1_000_000);
        let t0 = Instant::now();
        assert_eq!(ask(l.take_at("b", p, t0)), 1);
        l.record_at("b", 1, Grant::Tokens(1), t0);
        // Used up (the asker took the one token): twice as many next.
        assert_eq!(ask(l.take_at("b", p, t0)), 2);
        l.record_at("b", 2, Grant::Tokens(2), t0);
        assert!(matches!(l.take_at("b", p, t0), Take::Allowed));
        assert_eq!(ask(l.take_at("b", p, t0)), 4);
        // Requests waiting on the same refill all ask the same.
        assert_eq!(ask(l.take_at("b", p, t0)), 4);
        l.record_at("b", 4, Grant::Tokens(4), t0);
        for _ in 0..3 {
            assert!(matches!(l.take_at("b", p, t0), Take::Allowed));
        }
        assert_eq!(ask(l.take_at("b", p, t0)), 8);
        // Redis granted fewer than asked: only those are spent.
        l.record_at("b", 8, Grant::Tokens(3), t0);
        for _ in 0..2 {
            assert!(matches!(l.take_at("b", p, t0), Take::Allowed));
        }
        assert_eq!(ask(l.take_at("b", p, t0)), 16);
        l.record_at("b", 16, Grant::Tokens(16), t0);
        assert!(matches!(l.take_at("b", p, t0), Take::Allowed));
        // It lapses with 14 unused (2 of 16 used): the next asks for 2.
        let later = t0 + LEASE_TTL + Duration::from_millis(1);
        assert_eq!(ask(l.take_at("b", p, later)), 2);
    }

    #[test]
    fn lease_size_never_exceeds_the_limits_block() {
        let l = Leases::new();
        let p = params(1000, Duration::from_secs(1), 40);
        let t0 = Instant::now();
        let mut want = 1;
        for _ in 0..10 {
            want = ask(l.take_at("b", p, t0));
            l.record_at("b", want, Grant::Tokens(want), t0);
            for _ in 1..want {
                assert!(matches!(l.take_at("b", p, t0), Take::Allowed));
            }
        }
        assert_eq!(want, 10);
    }

    #[test]
    fn a_refusal_is_not_remembered() {
        let l = Leases::new();
        let p = params(10, Duration::from_secs(1), 0);
        let t0 = Instant::now();
        ask(l.take_at("b", p, t0));
        l.record_at("b", 1, Grant::Refused { wait_us: 80_000 }, t0);
        // The next request asks Redis again (a reset there applies at once).
        assert_eq!(ask(l.take_at("b", p, t0)), 1);
    }

    #[test]
    fn a_full_table_forgets_idle_buckets_then_goes_unleased() {
        let l = Leases::new();
        let p = params(1_000_000, Duration::from_secs(1), 1_000_000);
        let t0 = Instant::now();
        {
            let mut b = l.buckets.lock();
            for i in 0..CAPACITY {
                let mut bucket = Bucket::new(t0);
                bucket.tokens = 5;
                bucket.expires = t0 + LEASE_TTL;
                b.insert(format!("live{i}"), bucket);
            }
        }
        assert!(matches!(l.take_at("new", p, t0), Take::Unleased));
        // Once the leases lapse, their buckets make room.
        let later = t0 + LEASE_TTL;
        assert_eq!(ask(l.take_at("new", p, later)), 1);
        assert_eq!(l.buckets.lock().len(), 1);
    }
}
