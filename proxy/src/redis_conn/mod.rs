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
//! - [`timeouts`]: every connection and reply timeout of the proxy's Redis
//!   connections, and the heartbeat.
//!
//! The children import each other, never this module: it only declares
//! them and re-exports what the rest of the proxy uses.

pub mod backoff;
pub mod link;
pub mod subscription;
pub mod target;
pub mod timeouts;

pub use backoff::Backoff;
pub use link::{Events, Link};
pub use target::{Dialer, Target};
pub use timeouts::BULK_RESPONSE_TIMEOUT;
