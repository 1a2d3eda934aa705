//! The timeouts of every Redis connection of the proxy, each with why it
//! has its value. How long startup waits for the routes is the route
//! store's (`routing::STARTUP_WAIT`), and the reconnect pauses are the
//! backoff's.

use std::time::Duration;

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
