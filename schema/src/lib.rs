//! The Hipache Redis schema: the contract between the proxy (which reads it
//! on every request) and the syncer and redis-cli users (who write it).
//!
//! Nothing here does I/O ([`keys::unix_now`] only reads the clock). The
//! proxy, the syncer and the tests all parse the driver URL, name keys,
//! decode entries, read `hchecker_ping` and format dead-mark messages
//! through this crate, so the two sides cannot drift apart.
//!
//! # Layout
//! - [`driver`]: the Redis driver URL (`redis://…#prefix`, or
//!   `redis+sentinel://` for a server found through Sentinel): server,
//!   credentials, database and key prefix; its censored form for logs.
//! - [`host`]: request host normalisation and the candidate frontend keys
//!   (exact, wildcards, catch-all) in lookup order.
//! - [`keys`]: key and channel names, with the driver's key prefix; when
//!   `hchecker_ping` is fresh, and the Unix clock it is written in.
//! - [`entry`]: a `frontend:` list decoded into an identifier and backends,
//!   including our path-route extension.
//! - [`backend`]: a backend URL (`http://host:port`).
//! - [`path`]: Kubernetes Ingress path matching (Exact, Prefix).
//! - [`dead`]: `dead:` set members and the `dead` channel message.
//! - [`routes`]: route documents (`routes:<host>`): matches, weighted
//!   backends, filters and per-rule settings, decoded and validated.
//! - [`routes_file`]: the YAML routes file used when there is no Redis.
//! - [`status_page`]: what the proxy's and the syncer's status pages
//!   share: the token and its checks, HTML escaping, the content security
//!   policy.

pub mod backend;
pub mod dead;
pub mod driver;
pub mod entry;
pub mod host;
pub mod keys;
pub mod path;
pub mod routes;
pub mod routes_file;
pub mod status_page;

pub use backend::{BackendUrl, Scheme};
pub use driver::{ReadFrom, RedisUrl, RedisUrlError, Sentinel};
pub use entry::{BackendEntry, Frontend};
pub use host::{candidates, normalize_host, HostError};
pub use keys::Keys;
pub use path::{PathKind, PathMatch};
