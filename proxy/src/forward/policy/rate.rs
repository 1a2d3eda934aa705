//! The fleet-wide rate limit of a rule (`docs/policies.md`, "Rate
//! limits"): the request takes one from its bucket in Redis (or, while
//! Redis gives no decision, what the limit's `onRedisDown` says; see
//! [`crate::ratelimit`]).

use std::net::IpAddr;

use hipache_schema::routes::policies::RateLimit;
use http::header::RETRY_AFTER;
use http::{HeaderValue, StatusCode};

use super::Denial;
use crate::ratelimit::Verdict;
use crate::shared::Shared;

/// Takes one request from the bucket of (`frontend_host`, the limit's
/// scope, `client` when keyed by client): 429 with `Retry-After` when it is
/// empty; 503 when Redis gives no decision and the limit fails closed
/// (`onRedisDown: deny`).
pub async fn check(
    shared: &Shared,
    limit: &RateLimit,
    frontend_host: &str,
    client: IpAddr,
) -> Result<(), Denial> {
    denial(shared.rate_limits.check(limit, frontend_host, client).await)
}

fn denial(verdict: Verdict) -> Result<(), Denial> {
    match verdict {
        Verdict::Allowed => Ok(()),
        Verdict::Limited { retry_after_secs } => Err(Denial::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded",
        )
        .with(RETRY_AFTER, HeaderValue::from(retry_after_secs))),
        Verdict::Unavailable => Err(Denial::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rate limit cannot be evaluated: Redis gives no decision (onRedisDown: deny)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_become_answers() {
        assert!(denial(Verdict::Allowed).is_ok());
        let limited = denial(Verdict::Limited {
            retry_after_secs: 7,
        })
        .expect_err("limited");
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers[RETRY_AFTER], "7");
        let down = denial(Verdict::Unavailable).expect_err("refused");
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(down.headers.get(RETRY_AFTER).is_none());
    }
}
