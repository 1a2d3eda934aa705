//! The generic cell rate algorithm (GCRA), in the integer microseconds
//! both limiters count in: the Lua script in Redis (`gcra.lua`, the same
//! arithmetic on Redis's clock) and the in-process fallback.
//!
//! A bucket is one number, its theoretical arrival time (TAT): when the
//! next request would be on schedule if requests came exactly at the
//! limit's rate. A request at `now` conforms when the TAT is at most
//! `tolerance` ahead of `now`; it then pushes the TAT one `interval`
//! further. So a quiet client may send `burst + 1` requests at once, then
//! one per `interval`: over a span `d` starting from a full bucket, at most
//! `burst + 1 + d / interval` conform.

use std::time::Duration;

/// One limit's parameters, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// `period / requests`: the spacing of requests at the limit's rate.
    /// At least 1 µs (a limit faster than a million requests a second per
    /// bucket is held to that).
    pub interval_us: u64,
    /// `burst * interval`: how far ahead of now the TAT may be.
    pub tolerance_us: u64,
}

impl Params {
    /// `requests` per `period`, with `burst` requests more at once.
    pub fn new(requests: u32, period: Duration, burst: u32) -> Params {
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        let interval_us = (period_us / u64::from(requests.max(1))).max(1);
        Params {
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(burst)),
        }
    }

    /// How long a bucket may live after its last request: once `now` has
    /// passed its TAT it is full again, and forgetting it changes nothing.
    #[cfg(test)]
    pub fn horizon_us(&self) -> u64 {
        self.tolerance_us.saturating_add(self.interval_us)
    }

    /// The decision for a request at `now` on a bucket whose TAT is `tat`
    /// (`None`: never used, or forgotten): `Ok(new TAT)` when it conforms,
    /// `Err(wait)` with the microseconds until it would.
    pub fn decide(&self, tat: Option<u64>, now: u64) -> Result<u64, u64> {
        let tat = tat.map_or(now, |t| t.max(now));
        let ahead = tat - now;
        if ahead > self.tolerance_us {
            return Err(ahead - self.tolerance_us);
        }
        Ok(tat.saturating_add(self.interval_us))
    }
}

/// `Retry-After` in whole seconds for a wait in microseconds: rounded up,
/// at least 1 (the header has no fractions, and 0 would invite a retry
/// that is refused again).
pub fn retry_after_secs(wait_us: u64) -> u64 {
    wait_us.div_ceil(1_000_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_from_a_limit() {
        let p = Params::new(10, Duration::from_secs(1), 5);
        assert_eq!(p.interval_us, 100_000);
        assert_eq!(p.tolerance_us, 500_000);
        assert_eq!(p.horizon_us(), 600_000);
        let per_minute = Params::new(3, Duration::from_secs(60), 0);
        assert_eq!(per_minute.interval_us, 20_000_000);
        assert_eq!(per_minute.tolerance_us, 0);
        // A million a millisecond is held to one a microsecond.
        let fast = Params::new(1_000_000, Duration::from_millis(1), 1_000_000);
        assert_eq!(fast.interval_us, 1);
        assert_eq!(fast.tolerance_us, 1_000_000);
    }

    /// Requests every `step` µs for `span` µs; how many conform.
    fn conforming(p: Params, step: u64, span: u64) -> u64 {
        let mut tat = None;
        let mut allowed = 0;
        let mut now = 1_700_000_000_000_000;
        let end = now + span;
        while now <= end {
            if let Ok(t) = p.decide(tat, now) {
                tat = Some(t);
                allowed += 1;
            }
            now += step;
        }
        allowed
    }

    #[test]
    fn a_burst_then_the_rate() {
        let p = Params::new(10, Duration::from_secs(1), 5);
        // At once: burst + 1.
        let mut tat = None;
        let now = 5_000_000;
        let mut allowed = 0;
        for _ in 0..20 {
            if let Ok(t) = p.decide(tat, now) {
                tat = Some(t);
                allowed += 1;
            }
        }
        assert_eq!(allowed, 6);
        // Over 3 s of a flood (every ms): 6 + 30 (one per 100 ms).
        assert_eq!(conforming(p, 1_000, 3_000_000), 36);
        // Below the rate, everything passes.
        assert_eq!(conforming(p, 200_000, 10_000_000), 51);
    }

    #[test]
    fn the_wait_is_until_the_next_conforming_instant() {
        let p = Params::new(1, Duration::from_secs(60), 0);
        let now = 1_000_000_000;
        let tat = p.decide(None, now).expect("the first request conforms");
        assert_eq!(tat, now + 60_000_000);
        assert_eq!(p.decide(Some(tat), now + 1), Err(59_999_999));
        assert_eq!(retry_after_secs(59_999_999), 60);
        assert_eq!(p.decide(Some(tat), now + 60_000_000), Ok(now + 120_000_000));
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1_000_000), 1);
        assert_eq!(retry_after_secs(1_000_001), 2);
    }

    #[test]
    fn a_tat_in_the_past_is_a_full_bucket() {
        let p = Params::new(10, Duration::from_secs(1), 2);
        assert_eq!(p.decide(Some(5), 1_000_000), p.decide(None, 1_000_000));
    }
}
