//! One request through the proxy, as a short sequence of named steps:
//! [`route`] it (routing host, target, `__ping__`, the HTTPS redirect, the
//! route store), apply its rule's access [`policy`], check the upgrade it
//! asks for ([`upgrade`]), build the
//! request as it goes upstream and [`attempt`] it on a live backend
//! (choice, retries, dead marks), then [`respond`] with the backend's
//! answer (or a tunnel); the [`exchange`] record feeds the access log and
//! the debug headers, and is where every error becomes an error page.
//!
//! # Layout
//! - [`route`]: step one, where a request goes; [`authority`] (the routing
//!   host), [`target`] (target checks, path normalisation) and
//!   [`redirect`] (HTTPS redirect) serve it.
//! - [`attempt`]: the request as it goes upstream, backend choice,
//!   retries, timeouts, passive health.
//! - [`policy`]: a rule's access policies (IP lists, rate limits, CORS,
//!   authentication) and what every answer of its host carries.
//! - [`filters`]: what a route document's rule does to the request and
//!   the answer; [`mirror`]: its request mirrors.
//! - [`respond`]: the answer relayed, debug headers, tunnels.
//! - [`exchange`]: per-request record, access-log entry, error answers.
//! - [`grpc`]: gRPC requests, their deadline, errors as gRPC statuses.
//! - [`headers`]: hop-by-hop and forwarding headers, the upstream head.
//! - [`upgrade`]: which upgrades are relayed, WebSocket handshake checks,
//!   the tunnel.
//! - [`body`]: response bodies (pages, or a backend's streamed through).

pub mod attempt;
pub mod authority;
pub mod body;
pub mod exchange;
pub mod filters;
pub mod grpc;
pub mod headers;
pub mod mirror;
pub mod policy;
pub mod redirect;
pub mod respond;
pub mod route;
pub mod target;
pub mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::config::{Config, DebugFrom};
use crate::error::ProxyError;
use crate::shared::Shared;
pub use body::ProxyBody;
use exchange::Exchange;
use headers::Forwarded;
use respond::ClientUpgrade;
use route::Routed;

/// What a request knows about the connection it came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The peer is in `trustedProxies`: its forwarding headers are kept
    /// and appended to.
    pub trusted: bool,
    /// The peer may ask for `x-debug-*` headers (`server.debugFrom`).
    pub debug_allowed: bool,
}

impl ConnInfo {
    /// What the forwarding headers tell a backend about this connection.
    pub fn forwarded(&self, rfc7239: bool) -> Forwarded {
        Forwarded {
            client: self.peer.ip(),
            proto: if self.tls { "https" } else { "http" },
            port: self.local.port(),
            trusted: self.trusted,
            rfc7239,
        }
    }

    /// Decided once per connection: the peer does not change.
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool, config: &Config) -> Self {
        let ip = peer.ip().to_canonical();
        let trusted = config.trusted_proxies.iter().any(|n| n.contains(&ip));
        let debug_allowed = match &config.debug_from {
            DebugFrom::Any => true,
            DebugFrom::Networks(nets) => trusted || nets.iter().any(|n| n.contains(&ip)),
        };
        Self {
            peer,
            local,
            tls,
            trusted,
            debug_allowed,
        }
    }
}

/// Longest request target accepted (414 above), as nginx's default
/// `large_client_header_buffers`. Longer heads as a whole get 431.
pub const MAX_URI_LENGTH: usize = 8192;

/// The hyper service function: never fails; every error becomes a page.
pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let ex = Exchange::new(&shared, &conn, &req);
    shared.metrics.in_flight.inc();
    // Boxed, as are the large steps inside: an async fn's future holds
    // every future it awaits, and hyper moves this one twice per request.
    // Unboxed it was 30 KB (60 KB copied per request, 13% of the proxy's
    // instructions); boxed, about 1 KB.
    let mut resp = match Box::pin(proxy(&shared, &conn, &ex, req)).await {
        Ok(resp) => resp,
        Err(e) => exchange::error_response(&shared, &conn, &ex, e),
    };
    if let Some(decor) = ex.decor.get() {
        decor.apply(resp.headers_mut());
    }
    shared.metrics.in_flight.dec();
    shared.metrics.request(
        resp.status(),
        &ex.method,
        ex.start.elapsed(),
        ex.identifier(),
    );
    Ok(resp)
}

/// Route, check the upgrade, attempt, respond.
async fn proxy(
    shared: &Shared,
    conn: &ConnInfo,
    ex: &Exchange,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    // Only reachable when `http2WebSocket` advertised extended CONNECT.
    upgrade::from_extended_connect(&mut req);
    let mut to = match route::route(shared, conn, &req).await? {
        Routed::Answer(resp) => return Ok(resp),
        Routed::To(to) => to,
    };
    let _ = ex.table.set(to.route.table.clone());
    let admitted = match to.route.rule() {
        Some((_, rule, _)) => {
            let _ = ex
                .decor
                .set(policy::Decor::of(&rule.policies, req.headers(), conn.tls));
            match Box::pin(policy::admit(shared, conn, &to.route, &req)).await? {
                policy::Admission::Answer(resp) => return Ok(resp),
                policy::Admission::Pass(admitted) => admitted,
            }
        }
        None => policy::Admitted::default(),
    };
    if let Some(resp) = to.answer.take() {
        return Ok(resp);
    }
    let client = upgrade::Requested::of(&req, &shared.config.upgrade_protocols)?.map(|requested| {
        ClientUpgrade {
            requested,
            on: hyper::upgrade::on(&mut req),
        }
    });
    let protocol = client.as_ref().map(|c| &c.requested.protocol);
    let out = attempt::outbound(shared, conn, req, &mut to, protocol, admitted, ex.grpc);
    let answered = Box::pin(attempt::attempt(shared, &to.host, &to.route, out)).await?;
    respond::relay(shared, conn, ex, &to.route, answered, client)
}
