//! Forward authentication (to be implemented).

use std::net::IpAddr;

use hipache_schema::routes::policies::ForwardAuth;
use http::header::{HeaderName, HeaderValue};
use http::{Request, StatusCode};

use super::super::ConnInfo;
use super::Denial;
use crate::error::ProxyError;
use crate::shared::Shared;

/// Asks the authentication service about `req` (from `client`): on a 2xx,
/// the headers to add upstream; otherwise the refusal.
pub async fn check<B>(
    shared: &Shared,
    conn: &ConnInfo,
    auth: &ForwardAuth,
    req: &Request<B>,
    client: IpAddr,
) -> Result<Vec<(HeaderName, HeaderValue)>, ProxyError> {
    let _ = (shared, conn, auth, req, client);
    Err(Denial::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "forward authentication not implemented",
    )
    .into())
}
