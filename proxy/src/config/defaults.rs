//! Default values, each with the reason it was chosen. A driver URL's
//! (host, port, database) are the schema crate's ([`hipache_schema::driver`]),
//! shared with the syncer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Worker processes. Hipache defaulted to 10 workers under a master. Ours is
/// 0: one process serving traffic with no master, which is what a container
/// wants (one process per container, the orchestrator restarts it, scale by
/// replicas). `N >= 1` means a master plus `N` workers, as in Hipache.
pub const WORKERS: usize = 0;

/// Largest accepted `server.workers`: a guard against typos (`1000000`).
pub const MAX_WORKERS: usize = 1024;

/// Most connections open to one backend at once (Hipache's `maxSockets`).
pub const MAX_SOCKETS: usize = 100;

/// A request waits this long for a free connection to a saturated backend
/// (all `maxSockets` in use) before a 503: long enough to ride out a burst,
/// short enough that clients are not left hanging on an overloaded backend.
pub const MAX_SOCKETS_WAIT: Duration = Duration::from_secs(10);

/// Seconds a backend stays marked dead (Hipache's `deadBackendTTL`).
pub const DEAD_BACKEND_TTL: Duration = Duration::from_secs(30);

/// Client idle timeout and upstream response timeout (Hipache's `tcpTimeout`).
pub const TCP_TIMEOUT: Duration = Duration::from_secs(30);

/// Upstream connect timeout (ours). Hipache had none, so a black-holed
/// backend held the request for the whole `tcpTimeout`; 5 s is long enough
/// for a loaded backend on the same network and short enough to retry.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Retries on another backend when a connection fails (Hipache's).
pub const RETRY_ON_ERROR: u32 = 3;

/// A 500 answer marks a backend dead (Hipache's default).
pub const DEAD_BACKEND_ON_500: bool = true;

/// Reuse backend connections. Hipache's default was `false` (a fresh backend
/// connection per request); we pool on purpose (SPEC section 9): `false`
/// still gives Hipache's behaviour.
pub const HTTP_KEEP_ALIVE: bool = true;

/// `x-debug-*` headers only on request (Hipache's default).
pub const DEBUG: bool = false;

/// Networks whose clients may ask for `x-debug-*` headers, besides
/// `trustedProxies`: loopback only (an operator on the machine, a sidecar,
/// a test). The headers name backend addresses and frontend keys.
pub fn debug_from() -> Vec<ipnet::IpNet> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    vec![
        ipnet::Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8).into(),
        ipnet::Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128).into(),
    ]
}

/// Upgrade protocols relayed to backends: WebSocket only. Any other token
/// turns a request into a tunnel past the route table (`h2c` most of all:
/// "h2c smuggling"), so each must be asked for by name.
pub const UPGRADE_PROTOCOLS: &[&str] = &["websocket"];

/// The RFC 7239 `Forwarded` header is not added unless asked: most
/// backends read `X-Forwarded-*`, and one more header costs every request.
pub const FORWARDED_HEADER: bool = false;

/// Plain HTTP port (Hipache's `http.port` / `server.port`).
pub const HTTP_PORT: u16 = 80;

/// TLS port (Hipache 0.4's `https.port`).
pub const HTTPS_PORT: u16 = 443;

/// Verify `https://` backends' certificates: anything else lets whoever is
/// on the path impersonate a backend.
pub const BACKEND_TLS_VERIFY: bool = true;

/// Plain HTTP is served, not redirected, unless asked: Hipache had no
/// redirect, and many setups terminate TLS in front of the proxy.
pub const HTTPS_REDIRECT: bool = false;

/// The status page is off unless asked: it shows backend addresses and
/// route documents, and turning it on makes every request count its
/// backend's statistics.
pub const STATUS_PAGE: bool = false;

/// How long a client gets to finish the TLS handshake: ample for a slow
/// mobile link (a handshake is 1 or 2 round trips), short enough that idle
/// half-open connections do not pile up.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Hipache 0.4's default `http.bind`: loopback only, so that a fresh
/// install exposes nothing.
pub const HTTP_BIND_04: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::LOCALHOST)];

/// Hipache 0.3's default `server.address`: every IPv4 address.
pub const ADDRESS_03: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::UNSPECIFIED)];

/// Hipache 0.3's default `server.address6`: IPv6 loopback.
pub const ADDRESS6_03: [IpAddr; 1] = [IpAddr::V6(Ipv6Addr::LOCALHOST)];

/// Hipache's default `server.accessLog`; `"-"` means stdout, `null` or
/// `false` disables the access log.
pub const ACCESS_LOG: &str = "/var/log/hipache/access.log";

/// Largest request head accepted (431 above): 64 KiB, what nginx accepts
/// with its largest common `large_client_header_buffers`, and far above any
/// browser's cookies.
pub const MAX_HEADER_SIZE: usize = 64 * 1024;

/// Most request headers accepted (431 above): hyper's own default.
pub const MAX_HEADERS: usize = 100;

/// Admin listener (`/metrics`, `/healthz`, `/readyz`): loopback, so that
/// metrics are not exposed by accident; in Kubernetes set `0.0.0.0:10264`.
/// Port 10264 because no common tool takes it: 9090 (the old default) is
/// Prometheus's own port, 10254 is ingress-nginx's (which may run beside
/// this proxy during a migration), 10250-10259 are the kubelet's,
/// kube-proxy's and the control plane's.
pub const ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 10264);

/// How long SIGTERM waits for in-flight requests: Kubernetes' default
/// termination grace period, so a pod drains before it is killed.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Entries of Hipache's `lruCache` when it is `true` or omits `size`: the
/// value in Hipache's own dev and test configurations.
pub const LRU_CACHE_SIZE: usize = 5;

/// Seconds an entry of Hipache's `lruCache` lives when `ttl` is omitted:
/// the value in Hipache's own dev and test configurations.
pub const LRU_CACHE_TTL: Duration = Duration::from_secs(5);

/// WebSocket over HTTP/2 (RFC 8441) is opt-in while it is new here: on, the
/// proxy advertises `SETTINGS_ENABLE_CONNECT_PROTOCOL` and browsers open
/// their WebSockets on the page's HTTP/2 connection; off, they open an
/// HTTP/1.1 connection for each, as they do with any server without it.
pub const HTTP2_WEBSOCKET: bool = false;
