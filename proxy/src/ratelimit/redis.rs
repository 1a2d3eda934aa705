//! The fleet's limiter: the GCRA script (`gcra.lua`) run in Redis with
//! `EVALSHA` on the limiter's own [`Link`] to the write Redis, one round
//! trip per lease (one or more requests, [`super::lease`]), within
//! [`ANSWER_BOUND`].
//!
//! The script is never sent with `EVAL`: when Redis does not know it
//! (`NOSCRIPT`: Redis restarted, failed over, or its script cache was
//! flushed), `SCRIPT LOAD` and the `EVALSHA` go out pipelined, still one
//! round trip, and the script stays cached until the next flush. So the
//! proxy's ACL user needs `EVALSHA` and `SCRIPT LOAD`, not `EVAL`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError, ServerErrorKind};
use sha1::{Digest, Sha1};

use super::gcra::Params;
use super::lease::Grant;
use crate::metrics::Metrics;
use crate::redis_conn::{Dialer, Link, Target};

/// The script, as sent to `SCRIPT LOAD`.
pub const SCRIPT: &str = include_str!("gcra.lua");

/// Its SHA1, as Redis names it (lower-case hex).
pub static SHA: LazyLock<String> =
    LazyLock::new(|| data_encoding::HEXLOWER.encode(&Sha1::digest(SCRIPT.as_bytes())));

/// How long a request waits for Redis's decision before the limit's
/// `onRedisDown` decides instead. A Redis on the same network answers in
/// well under a millisecond; one that takes 50 ms is overloaded or gone,
/// and a limit must not add more than this to a request.
pub const ANSWER_BOUND: Duration = Duration::from_millis(50);

/// Why Redis gave no decision.
#[derive(Debug)]
pub enum Unanswered {
    /// No connection (Redis down, or not reached yet): known at once.
    NotConnected,
    /// No answer within [`ANSWER_BOUND`].
    Timeout,
    /// An error reply or a broken connection (an ACL refusal, a key of
    /// another type, out of memory, ...).
    Error(RedisError),
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::NotConnected => f.write_str("not connected"),
            Unanswered::Timeout => write!(f, "no answer within {ANSWER_BOUND:?}"),
            Unanswered::Error(e) => write!(f, "{e}"),
        }
    }
}

pub struct RedisLimiter {
    link: Link,
    /// The write Redis's key prefix.
    prefix: String,
    /// Whether a `SCRIPT LOAD` answered another SHA1 than [`SHA`] was
    /// logged (it would mean every request pays a `SCRIPT LOAD`).
    sha_mismatch_logged: AtomicBool,
}

impl RedisLimiter {
    /// Starts the limiter's link to `target` (the write Redis).
    pub fn start(target: &Target) -> Result<Self, String> {
        let dialer = Dialer::new(target, false).map_err(|e| format!("rate-limit Redis: {e}"))?;
        Ok(RedisLimiter {
            link: Link::start(dialer, "ratelimit"),
            prefix: target.url.prefix.clone(),
            sha_mismatch_logged: AtomicBool::new(false),
        })
    }

    /// The Redis key of a bucket.
    pub fn key(&self, bucket: &str) -> String {
        format!("{}ratelimit:{bucket}", self.prefix)
    }

    /// Up to `want` requests on `bucket` (without the prefix), decided by
    /// Redis, answered by `deadline`.
    pub async fn take(
        &self,
        bucket: &str,
        params: Params,
        want: u32,
        deadline: tokio::time::Instant,
        metrics: &Metrics,
    ) -> Result<Grant, Unanswered> {
        let Some(mut conn) = self.link.get() else {
            return Err(Unanswered::NotConnected);
        };
        let key = self.key(bucket);
        let started = Instant::now();
        let answer =
            tokio::time::timeout_at(deadline, self.run(&mut conn, &key, params, want)).await;
        metrics
            .rate_limit_redis_duration
            .observe(started.elapsed().as_secs_f64());
        let reply = match answer {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                metrics.rate_limit_redis_errors.inc();
                self.link.report_failure();
                return Err(Unanswered::Error(e));
            }
            Err(_) => {
                metrics.rate_limit_redis_errors.inc();
                self.link.report_failure();
                return Err(Unanswered::Timeout);
            }
        };
        match reply {
            (n, _) if n >= 1 => Ok(Grant::Tokens(u32::try_from(n).unwrap_or(want).min(want))),
            (_, wait) => Ok(Grant::Refused {
                wait_us: u64::try_from(wait).unwrap_or(0),
            }),
        }
    }

    /// `EVALSHA`; on `NOSCRIPT`, `SCRIPT LOAD` and `EVALSHA` pipelined.
    async fn run(
        &self,
        conn: &mut MultiplexedConnection,
        key: &str,
        params: Params,
        want: u32,
    ) -> redis::RedisResult<(i64, i64)> {
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg(SHA.as_str())
            .arg(1)
            .arg(key)
            .arg(params.interval_us)
            .arg(params.tolerance_us)
            .arg(want);
        match evalsha.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let (sha, reply): (String, (i64, i64)) = redis::pipe()
                    .add_command(redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).to_owned())
                    .add_command(evalsha)
                    .query_async(conn)
                    .await?;
                if sha != *SHA && !self.sha_mismatch_logged.swap(true, Ordering::Relaxed) {
                    tracing::error!(expected = %*SHA, loaded = %sha, "Redis names the rate-limit script by another SHA1: every limited request loads it again");
                }
                Ok(reply)
            }
            other => other,
        }
    }

    /// Waits (bounded) for the link: for tests and start-up.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.link.wait_connected(timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha1_is_of_the_script_text() {
        assert_eq!(SHA.len(), 40);
        assert!(SHA
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // SHA1("") as a check of the encoding.
        assert_eq!(
            data_encoding::HEXLOWER.encode(&Sha1::digest(b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }

    #[test]
    fn the_script_calls_only_what_the_acl_allows_in_its_selector() {
        let calls: Vec<&str> = SCRIPT
            .split("redis.call('")
            .skip(1)
            .filter_map(|rest| rest.split('\'').next())
            .collect();
        assert_eq!(calls, ["TIME", "GET", "SET"]);
    }
}
