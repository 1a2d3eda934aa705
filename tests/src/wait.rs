//! Polling with deadlines: tests wait for a condition, never for a fixed time.

use std::future::Future;
use std::time::Duration;

/// Default bound for conditions that should hold within milliseconds.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Interval between two polls.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `check` until it returns `Some`, and returns that value. Panics
/// with `what` and the last observation when `deadline` passes first.
pub async fn until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(observed) => observed,
        };
        if tokio::time::Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}; last observed: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Awaits `fut`, panicking with `what` if it takes longer than `deadline`.
pub async fn within<T>(what: &str, deadline: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(deadline, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {deadline:?}"),
    }
}
