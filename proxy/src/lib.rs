//! `hipache`: a Redis-configured HTTP and WebSocket reverse proxy that
//! routes every request from Hipache's Redis schema.
//!
//! `main.rs` parses the command line, starts tracing and calls
//! [`Proxy::bind`] then [`Proxy::serve`]; tests drive the same code.
//!
//! # Layout
//! - [`config`]: config.json (both Hipache layouts, JSON or YAML) into one
//!   validated [`config::Config`].
//! - [`cli`]: command-line flags and their environment fallbacks.
//! - [`tools`]: what the binary runs instead of the proxy (`hipache
//!   routes ...`: check, list, get, set, resolve, export, import).
//! - [`shared`]: the composition root: what every request needs (config,
//!   metrics, route store, backend pool, error pages, access log), built
//!   once.
//! - [`server`]: listeners, the accept loop and client connections (with
//!   the HTTP/2 limits), HTTPS listener wiring.
//! - [`routing`]: the route store (Redis or a routes file): host to
//!   frontend or route document, backends and dead marks; the route cache
//!   and its modes; route documents decoded once per change.
//! - [`redis_conn`]: connections to Redis: targets and dialing (TLS, AUTH,
//!   db, RESP3 tracking), the one reconnect backoff, kept-up links and
//!   subscriptions, the Redis timeouts.
//! - [`upstream`]: backend choice and the backend connection pool.
//! - [`ratelimit`]: fleet-wide rate limits: GCRA buckets in Redis (a Lua
//!   script on Redis's clock), the in-process fallback.
//! - [`forward`]: one request, as named steps: route, attempt (backend
//!   choice, retries, dead marks), respond (debug headers, tunnels); the
//!   headers a backend is told, upgrades (WebSocket).
//! - [`error`]: request errors, their status codes and error pages;
//!   start-up errors.
//! - [`accesslog`]: the nginx-style access log, written off the request path.
//! - [`tls`]: rustls: SNI certificates (directory and Redis, reloaded),
//!   listener and backend TLS configurations.
//! - [`metrics`]: every Prometheus metric, named in one place.
//! - [`admin`]: the admin listener (`/metrics`, `/healthz`, `/readyz`,
//!   and `/status` when the status page is on).
//! - [`status`]: the live status page: frontends searched, backends with
//!   dead marks and live statistics, route documents as rules, Redis and
//!   cache state, certificates.
//! - [`shutdown`]: signals and the drain (readiness first, GOAWAY, idle
//!   connections, tunnels last).
//! - [`process`]: one process, or a master and its workers: sockets passed
//!   to workers, restarts, the memory watch, privilege drop.

// The public API is what the binary and the tests drive: the command
// line, the configuration, the metric names, the process model and the
// proxy itself. Everything else is the crate's own.
pub mod cli;
pub mod config;
pub mod metrics;
pub mod process;
pub mod shutdown;
pub mod tools;

mod accesslog;
mod admin;
mod error;
mod forward;
#[cfg(test)]
mod fuzz;
mod ratelimit;
mod redis_conn;
mod routing;
mod server;
mod shared;
mod status;
mod tls;
mod upstream;

pub use error::StartError;
pub use server::{Listeners, Proxy};
