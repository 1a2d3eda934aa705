//! Connections to Redis: the one place that knows how to reach a Redis
//! server, how long to wait for it, and how to come back after losing it.
//! The route reader and the dead-mark writer stand on this module;
//! nothing here knows what a connection is used for.
//!
//! # Layout
//! - [`target`]: [`Target`] (a driver URL and the CA to trust) and the
//!   [`Dialer`] built from it: plain or TLS, AUTH, SELECT, RESP3 and
//!   `CLIENT TRACKING ON` when tracking is needed; connection attempts go
//!   through [`Dialer::multiplexed`].
//! - [`backoff`]: [`Backoff`], the one reconnect backoff (exponential,
//!   jittered) of every Redis connection.
//! - [`link`]: [`Link`], a multiplexed connection kept up in the
//!   background: probed by a heartbeat and on reported failures,
//!   re-established with the backoff; [`Link::get`] never waits, and
//!   [`Link::wait_connected`] is the one way to wait for it.
//!
//! The timeouts below are the Redis timeouts of the connections made
//! here.

pub mod backoff;
pub mod link;
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

/// How often an otherwise idle connection is probed (`PING`), so that an
/// outage shows in readiness and metrics within about a second even when
/// no request comes, and a half-open connection is dropped.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
