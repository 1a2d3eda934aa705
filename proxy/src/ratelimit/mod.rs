//! Fleet-wide rate limits (`docs/policies.md`, "Rate limits"): one GCRA
//! bucket per frontend host, scope and client, kept in Redis so that every
//! proxy sharing the Redis takes from the same bucket, and decided on
//! Redis's clock so that proxies whose clocks disagree share one timeline.
//!
//! # Layout
//! - [`gcra`]: the algorithm and its parameters, in microseconds.
//! - `gcra.lua`: the same algorithm as a Redis script.
//! - [`redis`]: the script run with `EVALSHA` on the limiter's own link to
//!   the write Redis, within [`redis::ANSWER_BOUND`].
//! - [`lease`]: tokens taken from Redis in small blocks for a busy bucket.
//! - [`local`]: the in-process limiter: the same buckets on this process's
//!   clock, for a limit whose `onRedisDown` is `local` while Redis gives no
//!   answer, and for every limit when routes come from a file.
//!
//! The bucket key is `<prefix>ratelimit:<frontend host>:<scope>:<client>`:
//! the frontend host is the document's (`*.example.com` for a wildcard's,
//! whatever host the request named), the scope `host` for a host-wide
//! limit or `rule:<name or index>` for a rule's own (`:` and `%` in a name
//! percent-encoded), the client the address the trust model decides (IPv6
//! by its /64) or `all`. The local limiter uses the same keys, so a limit
//! is scoped the same way whoever decides.

pub mod gcra;
pub mod lease;
pub mod local;
pub mod redis;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hipache_schema::routes::policies::{OnRedisDown, RateKey, RateLimit};

use self::gcra::Params;
use self::lease::{Grant, Leases, Take};
use self::local::Local;
use self::redis::{RedisLimiter, Unanswered};
use crate::config::{Config, Driver};
use crate::metrics::Metrics;
use crate::redis_conn::Target;

/// What a limit decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit: 429, with `Retry-After` in seconds.
    Limited {
        retry_after_secs: u64,
    },
    /// Redis gave no decision and the limit says `onRedisDown: deny`: 503.
    Unavailable,
}

/// Values of the `decision` label of
/// [`crate::metrics::names::RATE_LIMIT_DECISIONS`]: who decided, and what.
pub const DECISIONS: [&str; 6] = [
    "redis_allowed",
    "redis_limited",
    "local_allowed",
    "local_limited",
    "down_allowed",
    "down_refused",
];

/// The rate limiter of a proxy process.
pub struct RateLimiter {
    /// The write Redis (censored URL, for logs) and the limiter's link to
    /// it; `None` with a routes file. The link is up from the start, so
    /// that no limited request is decided locally for want of a connection
    /// Redis could have given.
    redis: Option<(String, RedisLimiter)>,
    leases: Leases,
    local: Local,
    metrics: Arc<Metrics>,
    /// Whether Redis decided the last request it was asked about: a log
    /// line per change, not per request.
    answering: AtomicBool,
    /// Whether "local only" (no Redis) was logged.
    local_only_logged: AtomicBool,
}

impl RateLimiter {
    /// The limiter of `config`'s driver: its own link to Redis's write
    /// server (connecting in the background), or local only for a routes
    /// file. Must be called inside a tokio runtime.
    pub fn start(config: &Config, metrics: Arc<Metrics>) -> Result<Self, String> {
        let redis = match &config.driver {
            Driver::Redis { write, .. } => {
                let target = Target {
                    url: write.clone(),
                    ca: config.redis_ca.clone(),
                };
                Some((write.censored(), RedisLimiter::start(&target)?))
            }
            Driver::File(_) => None,
        };
        Ok(RateLimiter {
            redis,
            leases: Leases::new(),
            local: Local::new(),
            metrics,
            answering: AtomicBool::new(true),
            local_only_logged: AtomicBool::new(false),
        })
    }

    /// Waits (bounded) until Redis can decide; true without Redis.
    pub async fn wait_connected(&self, timeout: std::time::Duration) -> bool {
        match &self.redis {
            Some((_, r)) => r.wait_connected(timeout).await,
            None => true,
        }
    }

    /// One request of `client` on `limit` of the document of
    /// `frontend_host`.
    pub async fn check(&self, limit: &RateLimit, frontend_host: &str, client: IpAddr) -> Verdict {
        let params = Params::new(limit.requests, limit.period, limit.burst);
        let (bucket, overflow) = bucket_keys(limit, frontend_host, client);
        let Some((name, redis)) = &self.redis else {
            if !self.local_only_logged.swap(true, Ordering::Relaxed) {
                tracing::info!("rate limits: no Redis; each process limits alone");
            }
            return self.local(&bucket, &overflow, params);
        };
        match self.fleet(redis, &bucket, params).await {
            Ok(answer) => {
                if !self.answering.swap(true, Ordering::Relaxed) {
                    tracing::info!(redis = %name, "rate limits: Redis decides again");
                }
                match answer {
                    Ok(()) => self.decided("redis_allowed", Verdict::Allowed),
                    Err(wait) => self.decided(
                        "redis_limited",
                        Verdict::Limited {
                            retry_after_secs: gcra::retry_after_secs(wait),
                        },
                    ),
                }
            }
            Err(why) => {
                self.unanswered(name, &why);
                match limit.on_redis_down {
                    OnRedisDown::Local => self.local(&bucket, &overflow, params),
                    OnRedisDown::Allow => self.decided("down_allowed", Verdict::Allowed),
                    OnRedisDown::Deny => self.decided("down_refused", Verdict::Unavailable),
                }
            }
        }
    }

    /// The fleet's decision: from a lease when there is one, else from
    /// Redis (one refill per bucket at a time; the
    /// requests waiting for it take from what it brings). `Ok(Err(wait in
    /// µs))` is limited. The whole decision, waiting included, is bounded
    /// by [`redis::ANSWER_BOUND`].
    async fn fleet(
        &self,
        redis: &RedisLimiter,
        bucket: &str,
        params: Params,
    ) -> Result<Result<(), u64>, Unanswered> {
        let deadline = tokio::time::Instant::now() + redis::ANSWER_BOUND;
        let refill = match self.leases.take(bucket, params) {
            Take::Allowed => return Ok(Ok(())),
            Take::Unleased => {
                return match redis
                    .take(bucket, params, 1, deadline, &self.metrics)
                    .await?
                {
                    Grant::Tokens(_) => Ok(Ok(())),
                    Grant::Refused { wait_us } => Ok(Err(wait_us)),
                };
            }
            Take::Ask { refill, .. } => refill,
        };
        let Ok(_refilling) = tokio::time::timeout_at(deadline, refill.lock()).await else {
            self.metrics.rate_limit_redis_errors.inc();
            return Err(Unanswered::Timeout);
        };
        // The refill this request waited for may have brought a token.
        let want = match self.leases.take(bucket, params) {
            Take::Allowed => return Ok(Ok(())),
            Take::Unleased => 1,
            Take::Ask { want, .. } => want,
        };
        let grant = redis
            .take(bucket, params, want, deadline, &self.metrics)
            .await?;
        self.leases.record(bucket, want, grant);
        match grant {
            Grant::Tokens(_) => Ok(Ok(())),
            Grant::Refused { wait_us } => Ok(Err(wait_us)),
        }
    }

    fn local(&self, bucket: &str, overflow: &str, params: Params) -> Verdict {
        match self.local.check(bucket, overflow, params) {
            Ok(()) => self.decided("local_allowed", Verdict::Allowed),
            Err(wait) => self.decided(
                "local_limited",
                Verdict::Limited {
                    retry_after_secs: gcra::retry_after_secs(wait),
                },
            ),
        }
    }

    fn decided(&self, decision: &'static str, verdict: Verdict) -> Verdict {
        self.metrics.rate_limit(decision);
        verdict
    }

    fn unanswered(&self, name: &str, why: &Unanswered) {
        if self.answering.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                redis = name,
                error = %why,
                "rate limits: Redis gives no decision; each limit's onRedisDown applies until it does"
            );
        }
    }
}

/// A limit's bucket for a request, and the overflow bucket of its host and
/// scope (see [`local`]), both without the key prefix and `ratelimit:`.
pub fn bucket_keys(limit: &RateLimit, frontend_host: &str, client: IpAddr) -> (String, String) {
    let mut base = String::with_capacity(frontend_host.len() + limit.scope.len() + 48);
    base.push_str(frontend_host);
    base.push(':');
    push_scope(&mut base, &limit.scope);
    let overflow = format!("{base}:overflow");
    base.push(':');
    match limit.key {
        RateKey::All => base.push_str("all"),
        RateKey::Client => push_client(&mut base, client),
    }
    (base, overflow)
}

/// `host`, or `rule:` and the rule's name or index with `%` and `:`
/// percent-encoded: the key's fields stay apart whatever a name holds.
fn push_scope(out: &mut String, scope: &str) {
    let (kind, name) = match scope.split_once(':') {
        Some((kind, name)) => (kind, Some(name)),
        None => (scope, None),
    };
    out.push_str(kind);
    if let Some(name) = name {
        out.push(':');
        for c in name.chars() {
            match c {
                '%' => out.push_str("%25"),
                ':' => out.push_str("%3A"),
                c => out.push(c),
            }
        }
    }
}

/// An IPv4 address (IPv4-mapped IPv6 included) as written; an IPv6 one by
/// its /64, the least a subscriber is given: one client may not take a
/// fresh bucket per address of its network. The unspecified address is
/// what the policy step passes for a client whose address a trusted proxy
/// did not give: `unknown`, one bucket for all of them.
fn push_client(out: &mut String, client: IpAddr) {
    match client.to_canonical() {
        IpAddr::V6(v6) if v6.is_unspecified() => out.push_str("unknown"),
        IpAddr::V4(v4) => {
            let _ = write!(out, "{v4}");
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            let _ = write!(out, "{net}/64");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limit(key: RateKey, scope: &str) -> RateLimit {
        RateLimit {
            requests: 10,
            period: Duration::from_secs(1),
            burst: 5,
            key,
            scope: scope.to_owned(),
            on_redis_down: OnRedisDown::Local,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn bucket_keys_carry_host_scope_and_client() {
        let (b, o) = bucket_keys(
            &limit(RateKey::Client, "host"),
            "www.example.com",
            ip("10.0.0.7"),
        );
        assert_eq!(b, "www.example.com:host:10.0.0.7");
        assert_eq!(o, "www.example.com:host:overflow");
        let (b, _) = bucket_keys(
            &limit(RateKey::All, "rule:api"),
            "*.example.com",
            ip("10.0.0.7"),
        );
        assert_eq!(b, "*.example.com:rule:api:all");
        let (b, _) = bucket_keys(
            &limit(RateKey::Client, "rule:3"),
            "a",
            ip("::ffff:10.1.2.3"),
        );
        assert_eq!(b, "a:rule:3:10.1.2.3");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let l = limit(RateKey::Client, "host");
        let (a, _) = bucket_keys(&l, "h", ip("2001:db8:1:2:aaaa::1"));
        let (b, _) = bucket_keys(&l, "h", ip("2001:db8:1:2:ffff::9"));
        let (c, _) = bucket_keys(&l, "h", ip("2001:db8:1:3::1"));
        assert_eq!(a, "h:host:2001:db8:1:2::/64");
        assert_eq!(a, b);
        assert_ne!(a, c);
        let (unknown, _) = bucket_keys(&l, "h", ip("::"));
        assert_eq!(unknown, "h:host:unknown");
    }

    #[test]
    fn names_cannot_forge_another_bucket() {
        // A rule named "a:10.0.0.1" keyed by everyone, against a rule "a"
        // keyed by client 10.0.0.1: apart.
        let (named, _) = bucket_keys(&limit(RateKey::All, "rule:a:10.0.0.1"), "h", ip("10.0.0.9"));
        let (client, _) = bucket_keys(&limit(RateKey::Client, "rule:a"), "h", ip("10.0.0.1"));
        assert_eq!(named, "h:rule:a%3A10.0.0.1:all");
        assert_ne!(named, client);
        let (pct, _) = bucket_keys(
            &limit(RateKey::All, "rule:a%3A10.0.0.1"),
            "h",
            ip("10.0.0.9"),
        );
        assert_eq!(pct, "h:rule:a%253A10.0.0.1:all");
        assert_ne!(pct, named);
    }

    #[tokio::test]
    async fn without_redis_each_process_limits_alone() {
        let config = Config {
            driver: Driver::File("/nonexistent/routes.yaml".into()),
            ..Config::default()
        };
        let metrics = Arc::new(Metrics::new(0));
        let limiter = RateLimiter::start(&config, metrics.clone()).expect("a local limiter");
        let mut l = limit(RateKey::Client, "host");
        l.requests = 1;
        l.period = Duration::from_secs(60);
        l.burst = 2;
        l.on_redis_down = OnRedisDown::Deny;
        let mut verdicts = Vec::new();
        for _ in 0..4 {
            verdicts.push(limiter.check(&l, "h", ip("10.0.0.1")).await);
        }
        assert_eq!(verdicts[..3], [Verdict::Allowed; 3]);
        assert_eq!(
            verdicts[3],
            Verdict::Limited {
                retry_after_secs: 60
            }
        );
        assert_eq!(
            limiter.check(&l, "h", ip("10.0.0.2")).await,
            Verdict::Allowed
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"hipache_rate_limit_decisions_total{decision="local_allowed"} 4"#),
            "{text}"
        );
        assert!(text.contains(r#"hipache_rate_limit_decisions_total{decision="local_limited"} 1"#));
    }
}
