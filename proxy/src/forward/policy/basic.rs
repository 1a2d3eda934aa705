//! HTTP Basic authentication (to be implemented).

use hipache_schema::routes::policies::BasicAuth;
use http::{HeaderMap, StatusCode};

use super::Denial;

/// Lets the request through when its `Authorization: Basic` credentials
/// match an entry of `auth`; 401 with `WWW-Authenticate` otherwise.
pub async fn check(auth: &BasicAuth, headers: &HeaderMap) -> Result<(), Denial> {
    let _ = (auth, headers);
    Err(Denial::new(
        StatusCode::UNAUTHORIZED,
        "basic authentication not implemented",
    ))
}
