//! Step two of a request served by a route document's rule: its access
//! policies (`docs/policies.md`), checked before anything of the rule runs
//! (its redirect included), in this order, cheapest and most decisive
//! first:
//!
//! 1. [`ip`]: the client address against the allow- and deny-lists (403);
//! 2. [`rate`]: the fleet-wide rate limit (429);
//! 3. [`cors`]: a CORS preflight is answered here;
//! 4. [`basic`]: Basic authentication (401);
//! 5. [`forward_auth`]: the authentication service's verdict.
//!
//! The rule's affinity is read here too (the [`Pin`] backend choice
//! follows; see [`crate::upstream::affinity`]).
//!
//! What every answer of the exchange carries (HSTS, security headers, CORS
//! headers, the host's error pages) is decided first ([`Decor`]), so that
//! a refusal carries it too. A policy that cannot be evaluated refuses the
//! request: nothing here fails open.

pub mod basic;
pub mod cors;
pub mod forward_auth;
pub mod ip;
pub mod rate;

use std::net::IpAddr;
use std::sync::Arc;

use hipache_schema::routes::policies::{ErrorPages, Policies};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};

use super::{ConnInfo, ProxyBody};
use crate::error::ProxyError;
use crate::routing::Route;
use crate::shared::Shared;
use crate::upstream::Pin;

/// A request the policies let through, with what it gains on its way.
#[derive(Default)]
pub struct Admitted {
    /// Headers removed from the request sent upstream, whatever the
    /// client sent (a forward-auth policy's `responseHeaders`: only the
    /// service may set them).
    pub upstream_cleared: Vec<HeaderName>,
    /// Headers added to the request sent upstream (the forward-auth
    /// answer's values of those names).
    pub upstream_headers: Vec<(HeaderName, HeaderValue)>,
    /// What the rule's affinity asks of backend choice.
    pub pin: Option<Pin>,
}

/// What the policies decided.
pub enum Admission {
    Pass(Admitted),
    /// Answered by the proxy (a CORS preflight).
    Answer(Response<ProxyBody>),
}

/// A refusal by a policy: its status, the headers it needs
/// (`WWW-Authenticate`, `Retry-After`, `Location`) and a short reason.
#[derive(Debug, Clone)]
pub struct Denial {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub reason: &'static str,
}

impl Denial {
    pub fn new(status: StatusCode, reason: &'static str) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            reason,
        }
    }

    pub fn with(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

impl From<Denial> for ProxyError {
    fn from(d: Denial) -> Self {
        ProxyError::Denied(Box::new(d))
    }
}

/// What every answer of an exchange on a document's host carries.
#[derive(Debug, Default)]
pub struct Decor {
    /// `Strict-Transport-Security`, on HTTPS answers only (RFC 6797 §7.2).
    hsts: Option<HeaderValue>,
    security: Option<Arc<Vec<(HeaderName, HeaderValue)>>>,
    /// CORS headers of a non-preflight request from an allowed origin.
    cors: Vec<(HeaderName, HeaderValue)>,
    pub pages: Option<Arc<ErrorPages>>,
}

impl Decor {
    /// Decided from the rule's policies and the request.
    pub fn of(policies: &Policies, headers: &HeaderMap, tls: bool) -> Self {
        Decor {
            hsts: policies
                .hsts
                .filter(|_| tls)
                .and_then(|h| HeaderValue::from_str(&h.header_value()).ok()),
            security: policies.security_headers.clone(),
            // A preflight's answer carries its own (see `cors::preflight`).
            cors: policies
                .cors
                .as_ref()
                .filter(|_| !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD))
                .map(|c| cors::response_headers(c, headers))
                .unwrap_or_default(),
            pages: policies.error_pages.clone(),
        }
    }

    /// Adds the headers to an answer.
    pub fn apply(&self, h: &mut HeaderMap) {
        if let Some(v) = &self.hsts {
            h.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
        }
        for (name, value) in self.security.iter().flat_map(|s| s.iter()) {
            h.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.cors {
            h.insert(name.clone(), value.clone());
        }
        if !self.cors.is_empty() {
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// The host's page for a status, if it has one.
    pub fn page(&self, status: StatusCode) -> Option<&Arc<str>> {
        let pages = self.pages.as_ref()?;
        pages
            .iter()
            .find(|(s, _)| *s == status.as_u16())
            .map(|(_, p)| p)
    }
}

/// Runs the rule's policies for a request on `route` (the frontend host's
/// rate-limit buckets are keyed by `route.frontend_host`).
pub async fn admit<B>(
    shared: &Shared,
    conn: &ConnInfo,
    route: &Route,
    req: &Request<B>,
) -> Result<Admission, ProxyError> {
    let Some((_, rule, _)) = route.rule() else {
        return Ok(Admission::Pass(Admitted::default()));
    };
    let p = &rule.policies;
    let client = ip::client_address(conn, req.headers(), &shared.config.trusted_proxies);
    let pin = p
        .affinity
        .as_ref()
        .and_then(|a| Pin::of(a, req.headers(), client));
    // A client whose address a trusted proxy did not give shares one
    // rate-limit bucket with every other such client.
    let known = client.unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    if p.admits_all() {
        return Ok(Admission::Pass(Admitted {
            pin,
            ..Admitted::default()
        }));
    }
    ip::check(p, client).map_err(counted(shared, "ip_list"))?;
    if let Some(limit) = &p.rate_limit {
        rate::check(shared, limit, &route.frontend_host, known)
            .await
            .map_err(counted(shared, "rate_limit"))?;
    }
    if let Some(c) = &p.cors {
        if let Some(answer) = cors::preflight(c, req) {
            return Ok(Admission::Answer(answer));
        }
    }
    if let Some(auth) = &p.basic_auth {
        basic::check(auth, req.headers())
            .await
            .map_err(counted(shared, "basic_auth"))?;
    }
    let mut admitted = Admitted {
        pin,
        ..Admitted::default()
    };
    if let Some(auth) = &p.forward_auth {
        admitted.upstream_headers = forward_auth::check(shared, conn, auth, req, known)
            .await
            .map_err(counted(shared, "forward_auth"))?;
        admitted.upstream_cleared = auth.response_headers.clone();
    }
    Ok(Admission::Pass(admitted))
}

/// Passes an error through, counting it as a refusal by `policy`.
fn counted<'a, E>(shared: &'a Shared, policy: &'static str) -> impl FnOnce(E) -> E + 'a {
    move |e| {
        shared.metrics.policy_refusal(policy);
        e
    }
}
