//! Redis connections from driver URLs, shared by the proxy and the syncer:
//! how a [`RedisUrl`](hipache_schema::RedisUrl) becomes a client, and for
//! `redis+sentinel://` URLs which server that is right now.
//!
//! Both binaries keep their own connection handling (the proxy's links
//! never wait on a dead Redis, the syncer's writes are transactions); what
//! they share is here, so that the two find the same server from the same
//! URL and judge a connection by the same rule.
//!
//! # Layout
//! - [`client`]: a `redis::Client` for one server: TLS with the CA to
//!   trust, AUTH, SELECT, RESP3 when asked.
//! - [`role`]: what `ROLE` says of a connection, and whether that is the
//!   server it was opened for (a master, or a replica linked to its
//!   master).
//! - [`sentinel`]: [`Discovery`](sentinel::Discovery): the servers the
//!   Sentinels name for a reader or a writer, best first, and a counter of
//!   the master switches they announce.
//!
//! Discovery is written on the redis crate's connections rather than with
//! its `sentinel` module: that module opens its own connections to the
//! servers (without the callers' connect timeouts, RESP3 push senders or
//! CA file) and hands back a client, where both binaries need only the
//! address, and a role check on the connection they really use.

pub mod client;
pub mod role;
pub mod sentinel;

pub use client::{client, connection_info, ClientError};
pub use role::{check_role, RoleError};
pub use sentinel::{Discovery, DiscoveryError};
