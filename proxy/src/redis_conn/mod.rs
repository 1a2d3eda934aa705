//! Connections to Redis: the one place that knows how to reach a Redis
//! server, how long to wait for it, and how to come back after losing it.
//! Everything in the proxy that talks to Redis stands on this module (the
//! route reader, the dead-mark writer, the TLS certificate source), and
//! nothing here knows what they do with a connection.
//!
//! # Layout
//! - [`target`]: [`Target`] (a driver URL and the CA to trust) and the
//!   [`Dialer`] built from it: plain or TLS, AUTH, SELECT, RESP3 and
//!   `CLIENT TRACKING ON` when tracking is needed; every connection
//!   attempt goes through [`Dialer::multiplexed`] or [`Dialer::subscribe`].
//! - [`backoff`]: [`Backoff`], the one reconnect backoff (exponential,
//!   jittered) of every Redis connection.
//! - [`link`]: [`Link`], a multiplexed connection kept up in the
//!   background: probed by a heartbeat and on reported failures,
//!   re-established with the backoff; [`Link::get`] never waits, and
//!   [`Link::wait_connected`] is the one way to wait for it.
//! - [`subscription`]: a pub/sub channel subscribed to in the background,
//!   re-subscribed with the backoff.
//!
//! The timeouts below are the only connection and reply timeouts of the
//! proxy's Redis connections (how long startup waits for the routes is the
//! route store's `STARTUP_WAIT`).

pub mod backoff;
pub mod link;
pub mod subscription;
pub mod target;

use std::time::Duration;

pub use backoff::Backoff;
pub use link::{Events, Link};
pub use target::{Dialer, Target, TargetError};

/// How long one connection attempt may take, from the TCP connect through
/// TLS, `HELLO 3` (for tracking), AUTH and SELECT. A Redis on the same
/// network does all of it in a few milliseconds; one that takes a second
/// is treated as down, and the backoff tries again.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long a command waits for its reply: route lookups, dead marks and
/// every connection probe. Redis answers these in well under a
/// millisecond; past this it is overloaded or gone, and a request must
/// fail fast (or be served from memory) rather than hang. This is the
/// longest a lookup can delay a request.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a reply that carries many keys may take: the certificate
/// source's `SCAN` steps and `HMGET` batches of PEM certificates and keys,
/// hundreds of kilobytes at a time. They are off the request path, and a
/// rescan that fails keeps the certificates already loaded, so they may
/// wait ten times longer than a lookup.
pub const BULK_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often an otherwise idle connection is probed (`PING`), so that an
/// outage shows in readiness and metrics within about a second even when
/// no request comes, and a half-open connection is dropped.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
