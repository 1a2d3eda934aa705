//! The fleet-wide rate limit (to be implemented).

use std::net::IpAddr;

use hipache_schema::routes::policies::RateLimit;
use http::StatusCode;

use super::Denial;
use crate::shared::Shared;

/// Takes one request from the bucket of (`frontend_host`, the limit's
/// scope, `client` when keyed by client); 429 with `Retry-After` when it is
/// empty.
pub async fn check(
    shared: &Shared,
    limit: &RateLimit,
    frontend_host: &str,
    client: IpAddr,
) -> Result<(), Denial> {
    let _ = (shared, limit, frontend_host, client);
    Err(Denial::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "rate limit not implemented",
    ))
}
