//! The reconnect backoff of every Redis connection: exponential from
//! [`MIN_RECONNECT_DELAY`] to [`MAX_RECONNECT_DELAY`], with jitter.
//!
//! Jitter matters because a restarted Redis is reconnected to by every
//! proxy process at once (each worker has its own connections): with fixed
//! steps they would all knock at the same instants, at each step. Each
//! pause is drawn from the upper half of its step ("equal jitter"), so the
//! bounds stay what operators read in the docs: 50 ms up to 2 s.

use std::time::Duration;

use rand::Rng;

/// The first step: a Redis restart takes longer than this, a dropped
/// connection to a live Redis (a failover, a proxy in between) is
/// re-established at once.
pub const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(50);

/// The longest pause between attempts while Redis is down: how late, at
/// worst, the proxy notices that it is back. Attempts are cheap (a refused
/// TCP connect), so two seconds keeps an outage short for clients without
/// flooding Redis's logs.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Pauses between connection attempts; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self {
            step: MIN_RECONNECT_DELAY,
        }
    }

    /// The pause before the next attempt, between half the current step
    /// and the step; the step then doubles, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(MAX_RECONNECT_DELAY);
        rand::rng().random_range(step / 2..=step)
    }

    /// Sleeps for [`Backoff::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Back to the first step (after a connection was made).
    pub fn reset(&mut self) {
        self.step = MIN_RECONNECT_DELAY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_bounds_and_resets() {
        let mut b = Backoff::new();
        let mut step = MIN_RECONNECT_DELAY;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d >= step / 2 && d <= step, "{d:?} outside {step:?}");
            step = (step * 2).min(MAX_RECONNECT_DELAY);
        }
        assert_eq!(step, MAX_RECONNECT_DELAY, "the step reached the maximum");
        b.reset();
        assert!(b.next_delay() <= MIN_RECONNECT_DELAY);
    }

    #[test]
    fn pauses_are_jittered() {
        let mut b = Backoff::new();
        for _ in 0..6 {
            b.next_delay();
        }
        let pauses: std::collections::HashSet<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(pauses.len() > 1, "20 pauses at the maximum step all equal");
    }
}
