//! End-to-end test harness for the proxy: a real `redis-server`, fake
//! backends, clients, and the proxy's own library code (or its binary).
//!
//! # Layout
//! - [`redis`]: [`redis::RedisServer`], a `redis-server` per test on a free
//!   port, with helpers to write frontends and read dead marks.
//! - [`backend`]: builder-style fake backends (HTTP via hyper, and raw TCP
//!   for broken responses), recording what they received.
//! - [`proxy`]: [`proxy::TestProxy`] (the proxy in-process, from a JSON
//!   config) and [`proxy::ProxyProcess`] (the `hipache` binary).
//! - [`grpc`]: a real gRPC service (tonic, protobuf) and its client.
//! - [`client`]: requests through the proxy (hyper HTTP/1.1 client) and raw
//!   bytes over TCP for malformed requests.
//! - [`metrics`]: scraping `/metrics` from the admin listener and reading
//!   samples out of the Prometheus text format.
//! - [`browser`]: a real headless Chromium: the DOM after a page's
//!   scripts ran, screenshots kept as test artifacts.
//! - [`body`]: streaming checksums and generated (never buffered) bodies.
//! - [`wait`]: polling with deadlines instead of sleeps.
//!
//! Nothing here uses a fixed port: every listener binds `127.0.0.1:0`.

pub mod backend;
pub mod body;
pub mod browser;
pub mod client;
pub mod grpc;
pub mod https;
pub mod metrics;
pub mod proxy;
pub mod redis;
pub mod routes;
pub mod wait;
pub mod ws;

use std::net::{SocketAddr, TcpListener};

/// A loopback port that was free a moment ago (bound to `127.0.0.1:0`, then
/// released). Callers that hand it to another process must retry when that
/// process fails to bind.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// A loopback address where nothing listens: connections are refused.
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local address of a bound listener")
}

/// `http://` URL of [`refused_addr`]: a backend that refuses connections.
pub fn refused_url() -> String {
    format!("http://{}", refused_addr())
}

/// This process's resident memory (`VmRSS`), in bytes.
pub fn rss_bytes() -> u64 {
    proc_status_kib("VmRSS:") * 1024
}

/// This process's peak resident memory (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> u64 {
    proc_status_kib("VmHWM:") * 1024
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// A fresh `redis-server` and an in-process proxy reading it, with
/// `server_extra` merged into the config's `server` section.
pub async fn setup(server_extra: serde_json::Value) -> (redis::RedisServer, proxy::TestProxy) {
    let redis = redis::RedisServer::start();
    let proxy = proxy::TestProxy::start(&redis.url(), server_extra).await;
    (redis, proxy)
}
