//! The in-process limiter: the same GCRA and the same bucket keys as in
//! Redis, on this process's monotonic clock. It decides while Redis cannot
//! (a limit with `onRedisDown: local`) and when there is no Redis at all
//! (a routes file). Each process limits alone: N proxies let through up to
//! N times the rate.
//!
//! Memory is bounded: at most [`CAPACITY`] buckets. A bucket whose TAT has
//! passed is full again and is forgotten when room is needed; when every
//! bucket is live, a new client shares its limit's overflow bucket (one
//! per host and scope) rather than evicting a live one, so a flood of new
//! addresses is limited together instead of each getting a fresh burst.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use parking_lot::Mutex;

use super::gcra::Params;

/// Buckets held at most (about 100 bytes each).
pub const CAPACITY: usize = 65_536;
const SHARDS: usize = 16;
const PER_SHARD: usize = CAPACITY / SHARDS;

pub struct Local {
    epoch: Instant,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

/// Buckets (TATs in µs on [`Local`]'s clock) of one shard.
#[derive(Default)]
struct Shard {
    map: HashMap<String, u64>,
    /// When a full shard was last swept: at most one sweep per
    /// [`SWEEP_EVERY_US`], so a flood of new keys does not scan the shard
    /// on every request.
    swept_at: Option<u64>,
}

const SWEEP_EVERY_US: u64 = 1_000;

impl Default for Local {
    fn default() -> Self {
        Self::new()
    }
}

impl Local {
    pub fn new() -> Self {
        Local {
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// One request on the bucket `key` (its overflow bucket `overflow` when
    /// the limiter is full): `Ok(())` or `Err(wait in µs)`.
    pub fn check(&self, key: &str, overflow: &str, params: Params) -> Result<(), u64> {
        self.check_at(key, overflow, params, self.now_us())
    }

    fn check_at(&self, key: &str, overflow: &str, params: Params, now: u64) -> Result<(), u64> {
        let mut shard = self.shards[self.shard(key)].lock();
        if let Some(tat) = shard.map.get_mut(key) {
            return apply(tat, params, now);
        }
        if shard.map.len() >= PER_SHARD && shard.swept_at.is_none_or(|t| now >= t + SWEEP_EVERY_US)
        {
            // A bucket whose TAT has passed is full: forgetting it is free.
            shard.map.retain(|_, tat| *tat > now);
            shard.swept_at = Some(now);
        }
        if shard.map.len() < PER_SHARD {
            shard.map.insert(key.to_owned(), params.decide(None, now)?);
            return Ok(());
        }
        drop(shard);
        self.overflow(overflow, params, now)
    }

    /// A full limiter's shared bucket for `overflow` (its shard may be full
    /// too: then the overflow bucket replaces an arbitrary live one, the
    /// only eviction there is).
    fn overflow(&self, overflow: &str, params: Params, now: u64) -> Result<(), u64> {
        let mut shard = self.shards[self.shard(overflow)].lock();
        let map = &mut shard.map;
        if let Some(b) = map.get_mut(overflow) {
            return apply(b, params, now);
        }
        if map.len() >= PER_SHARD {
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(overflow.to_owned(), params.decide(None, now)?);
        Ok(())
    }

    fn shard(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// Buckets held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}

fn apply(tat: &mut u64, params: Params, now: u64) -> Result<(), u64> {
    *tat = params.decide(Some(*tat), now)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn buckets_are_separate_and_limited() {
        let local = Local::new();
        let p = Params::new(1, Duration::from_secs(60), 1);
        let now = 10_000_000;
        for _ in 0..2 {
            assert_eq!(local.check_at("h:host:1.2.3.4", "o", p, now), Ok(()));
        }
        let wait = local
            .check_at("h:host:1.2.3.4", "o", p, now)
            .expect_err("the third request of a burst of 1 is limited");
        assert_eq!(wait, 60_000_000);
        assert_eq!(local.check_at("h:host:1.2.3.5", "o", p, now), Ok(()));
        assert_eq!(local.check_at("g:host:1.2.3.4", "o", p, now), Ok(()));
        // After the interval, one more.
        assert_eq!(
            local.check_at("h:host:1.2.3.4", "o", p, now + 60_000_000),
            Ok(())
        );
    }

    #[test]
    fn memory_is_bounded_and_a_flood_of_new_keys_shares_one_bucket() {
        let local = Local::new();
        let p = Params::new(1, Duration::from_secs(3600), 0);
        let now = 1;
        let mut allowed = 0;
        for i in 0..(CAPACITY * 2) {
            if local
                .check_at(&format!("h:host:{i}"), "h:host:overflow", p, now)
                .is_ok()
            {
                allowed += 1;
            }
        }
        assert!(local.len() <= CAPACITY, "{} buckets held", local.len());
        // Every shard filled (about CAPACITY keys, give or take the hash
        // spread), then the overflow bucket let one more through.
        assert!(allowed <= CAPACITY + 1, "{allowed} allowed");
        assert!(allowed >= CAPACITY / 2, "{allowed} allowed");
        // Past their horizon the buckets are forgotten: new keys fit again.
        let later = now + p.horizon_us() + 1;
        assert_eq!(
            local.check_at("h:host:new", "h:host:overflow", p, later),
            Ok(())
        );
    }
}
