//! The process model (SPEC §6): one process, or a master and its workers.
//!
//! - `server.workers: 0` (the default): one process binds, drops
//!   privileges, serves and watches its own memory ([`memory::watch_self`]):
//!   above `server.memoryLimit` it drains and exits 0 for its supervisor
//!   (Kubernetes, systemd) to start it again.
//! - `server.workers: N`: a master ([`master`]) binds every listener, then
//!   re-executes its own binary N times with the listening sockets passed as
//!   fds 3.. (`LISTEN_FDS`) and `HIPACHE_WORKER=<slot>`: all workers accept
//!   from the same kernel queues, so a worker that stops accepting loses no
//!   queued connection. The master serves no traffic: it restarts workers
//!   that die, recycles those above the memory limit (replacement first,
//!   then a drain of the old one), forwards SIGTERM and SIGUSR1, and serves
//!   the admin listener with every worker's metrics merged in ([`admin`]).
//! - A worker ([`worker`]) takes its sockets, builds the proxy, drops
//!   privileges ([`privileges`]), tells the master it is ready (and the
//!   port of its private loopback admin listener), and serves until
//!   SIGTERM.

pub mod admin;
pub mod master;
pub mod memory;
pub mod merge;
pub mod privileges;
pub mod worker;

/// The environment variable that makes the binary a worker: its slot
/// number (0-based), set by the master.
pub const WORKER_ENV: &str = "HIPACHE_WORKER";
