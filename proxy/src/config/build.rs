//! From the raw document to a validated [`Config`]: both Hipache layouts,
//! defaults, and every problem collected at once.
//!
//! Layouts: the 0.3 layout puts listeners under `server` (`port`,
//! `address`, `address6`, `https`); the 0.4 layout in top-level `http` and
//! `https`. A file using both for listeners is refused: Hipache 0.4 merged
//! them silently and dropped `server.address6`, a trap.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;

use super::defaults;
use super::driver;
use super::error::ConfigErrors;
use super::raw::{self, join, list_items, show, Ctx, Obj};
use super::{
    AccessLogTarget, Config, DebugFrom, Driver, HttpsListener, LruCache, RedisUrl, RouteCacheMode,
};

/// Hipache's legacy top-level Redis keys (0.3 and earlier).
const LEGACY_REDIS: &[&str] = &[
    "redisHost",
    "redisPort",
    "redisDatabase",
    "redisPassword",
    "redisMasterHost",
    "redisMasterPort",
    "redisMasterPassword",
    "redisMasterDatabase",
];

const TOP: &[&str] = &[
    "server",
    "http",
    "https",
    "driver",
    "user",
    "group",
    "redisHost",
    "redisPort",
    "redisDatabase",
    "redisPassword",
    "redisMasterHost",
    "redisMasterPort",
    "redisMasterPassword",
    "redisMasterDatabase",
    // Hipache 0.1/0.2 test configs: {"host", "port"}.
    "redis",
];

const SERVER: &[&str] = &[
    // Hipache.
    "accessLog",
    "port",
    "workers",
    "maxSockets",
    "maxSocketsWait",
    "deadBackendTTL",
    "tcpTimeout",
    "retryOnError",
    "deadBackendOn500",
    "httpKeepAlive",
    "debug",
    "lruCache",
    "staticDir",
    "address",
    "address6",
    "https",
    "uniqueIdHeader",
    // Ours.
    "connectTimeout",
    "trustedProxies",
    "maxBodySize",
    "maxHeaderSize",
    "maxHeaders",
    "adminAddress",
    "routeCache",
    "drainTimeout",
    "memoryLimit",
    "tunnelIdleTimeout",
    "metricsPerFrontend",
    "tlsDir",
    "backendCa",
    "redisCa",
    "backendTlsVerify",
    "httpsRedirect",
    "tlsHandshakeTimeout",
    "debugFrom",
    "upgradeProtocols",
    "forwardedHeader",
];

/// Listener keys of the 0.3 layout, under `server`.
const SERVER_LISTENERS_03: &[&str] = &["port", "address", "address6", "https"];

const HTTP: &[&str] = &["port", "bind"];
const HTTP_BIND: &[&str] = &["address", "port"];

/// TLS options of node that Hipache passed through and rustls decides itself.
const TLS_IGNORED: &[&str] = &[
    "ciphers",
    "secureProtocol",
    "secureOptions",
    "honorCipherOrder",
];

const HTTPS_03: &[&str] = &[
    "port",
    "key",
    "cert",
    "ca",
    "passphrase",
    "ciphers",
    "secureProtocol",
    "secureOptions",
    "honorCipherOrder",
];
const HTTPS_04: &[&str] = &[
    "port",
    "bind",
    "key",
    "cert",
    "ca",
    "passphrase",
    "ciphers",
    "secureProtocol",
    "secureOptions",
    "honorCipherOrder",
];
const HTTPS_BIND: &[&str] = &[
    "address",
    "port",
    "key",
    "cert",
    "ca",
    "passphrase",
    "ciphers",
    "secureProtocol",
    "secureOptions",
    "honorCipherOrder",
];

const LRU: &[&str] = &["size", "ttl"];
const LEGACY_REDIS_OBJ: &[&str] = &["host", "port", "password", "database"];

/// Smallest `maxHeaderSize`: hyper refuses read buffers under 8 KiB.
const MIN_HEADER_SIZE: u64 = 8 * 1024;
/// Largest `maxHeaderSize`: a typo guard.
const MAX_HEADER_SIZE_LIMIT: u64 = 16 * 1024 * 1024;
/// Largest `maxHeaders`: a typo guard.
const MAX_HEADERS_LIMIT: usize = 10_000;

pub(super) struct Options<'a> {
    /// Directory of the config file: relative `file:` driver paths start there.
    pub base_dir: Option<&'a Path>,
    /// Check that files named by the config exist (certificates, static
    /// directory, routes file). Off for pure parsing.
    pub check_files: bool,
}

pub(super) struct Built {
    pub config: Config,
    pub warnings: Vec<String>,
}

struct Builder<'o> {
    ctx: Ctx,
    cfg: Config,
    opts: &'o Options<'o>,
    /// Every listener with the key it came from, to find duplicates.
    listeners: Vec<(SocketAddr, String)>,
    /// Files to check, with their keys.
    files: Vec<(String, PathBuf)>,
}

pub(super) fn build(doc: &Value, opts: &Options<'_>) -> Result<Built, ConfigErrors> {
    let mut b = Builder {
        ctx: Ctx::default(),
        cfg: Config::default(),
        opts,
        listeners: Vec::new(),
        files: Vec::new(),
    };
    b.cfg.http.clear();
    if let Some(top) = Obj::new(&mut b.ctx, String::new(), doc, TOP) {
        b.document(&top);
        top.finish(&mut b.ctx);
    }
    b.check_duplicates();
    if b.cfg.https_redirect && b.cfg.https.is_empty() {
        b.ctx.err(
            "server.httpsRedirect",
            "needs an HTTPS listener to redirect to (https.bind or server.https)",
        );
    }
    if opts.check_files {
        b.check_files();
    }
    if b.ctx.errors.is_empty() {
        Ok(Built {
            config: b.cfg,
            warnings: b.ctx.warnings,
        })
    } else {
        Err(ConfigErrors {
            file: None,
            errors: b.ctx.errors,
        })
    }
}

impl Builder<'_> {
    fn document(&mut self, top: &Obj<'_>) {
        let server = match top.get("server") {
            Some(v) => Obj::new(&mut self.ctx, "server".to_owned(), v, SERVER),
            None => None,
        };
        if let Some(server) = &server {
            self.server(server);
        }
        self.listeners_for(top, server.as_ref());
        self.cfg.user = self.user_or_group(top, "user");
        self.cfg.group = self.user_or_group(top, "group");
        self.driver(top);
        if let Some(server) = &server {
            server.finish(&mut self.ctx);
        }
    }

    fn server(&mut self, s: &Obj<'_>) {
        let ctx = &mut self.ctx;
        let cfg = &mut self.cfg;
        match s.raw("accessLog") {
            None => {}
            Some(Value::Null | Value::Bool(false)) => cfg.access_log = None,
            Some(Value::String(p)) if p.is_empty() => cfg.access_log = None,
            Some(Value::String(p)) if p == "-" => cfg.access_log = Some(AccessLogTarget::Stdout),
            Some(Value::String(p)) => cfg.access_log = Some(AccessLogTarget::File(p.into())),
            Some(other) => ctx.err(
                s.key("accessLog"),
                format!(
                    "expected a file path, \"-\" (stdout) or null (no access log), got {}",
                    show(other)
                ),
            ),
        }
        if let Some(v) = s.get("workers") {
            if let Some(n) = raw::usize_in(ctx, &s.key("workers"), v, 0, defaults::MAX_WORKERS) {
                cfg.workers = n;
            }
        }
        if let Some(v) = s.get("maxSocketsWait") {
            if let Some(d) = raw::seconds(ctx, &s.key("maxSocketsWait"), v) {
                cfg.max_sockets_wait = d;
            }
        }
        if let Some(v) = s.get("maxSockets") {
            if let Some(n) = raw::usize_in(ctx, &s.key("maxSockets"), v, 1, u32::MAX as usize) {
                cfg.max_sockets = n;
            }
        }
        if let Some(v) = s.get("deadBackendTTL") {
            if let Some(d) = raw::whole_seconds(ctx, &s.key("deadBackendTTL"), v) {
                cfg.dead_backend_ttl = d;
            }
        }
        if let Some(v) = s.get("tcpTimeout") {
            if let Some(d) = raw::seconds(ctx, &s.key("tcpTimeout"), v) {
                cfg.tcp_timeout = (!d.is_zero()).then_some(d);
            }
        }
        if let Some(v) = s.get("connectTimeout") {
            if let Some(d) = raw::seconds(ctx, &s.key("connectTimeout"), v) {
                cfg.connect_timeout = (!d.is_zero()).then_some(d);
            }
        }
        if let Some(v) = s.get("retryOnError") {
            if let Some(n) = raw::uint(ctx, &s.key("retryOnError"), v, 0, u64::from(u32::MAX)) {
                cfg.retry_on_error = u32::try_from(n).unwrap_or(u32::MAX);
            }
        }
        for (key, field) in [
            ("deadBackendOn500", &mut cfg.dead_backend_on_500),
            ("httpKeepAlive", &mut cfg.http_keep_alive),
            ("debug", &mut cfg.debug),
            ("forwardedHeader", &mut cfg.forwarded_header),
        ] {
            if let Some(v) = s.get(key) {
                if let Some(b) = raw::boolean(ctx, &s.key(key), v) {
                    *field = b;
                }
            }
        }
        match s.raw("lruCache") {
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(Value::Bool(true)) => {
                cfg.lru_cache = Some(LruCache {
                    size: defaults::LRU_CACHE_SIZE,
                    ttl: defaults::LRU_CACHE_TTL,
                });
            }
            Some(v) => {
                if let Some(lru) = Obj::new(ctx, s.key("lruCache"), v, LRU) {
                    let mut cache = LruCache {
                        size: defaults::LRU_CACHE_SIZE,
                        ttl: defaults::LRU_CACHE_TTL,
                    };
                    if let Some(v) = lru.get("size") {
                        cache.size = raw::usize_in(ctx, &lru.key("size"), v, 1, u32::MAX as usize)
                            .unwrap_or(cache.size);
                    }
                    if let Some(v) = lru.get("ttl") {
                        match raw::seconds(ctx, &lru.key("ttl"), v) {
                            Some(d) if d.is_zero() => ctx.err(
                                lru.key("ttl"),
                                "must be more than 0 (set lruCache to null to disable the cache)",
                            ),
                            Some(d) => cache.ttl = d,
                            None => {}
                        }
                    }
                    lru.finish(ctx);
                    cfg.lru_cache = Some(cache);
                }
            }
        }
        match s.raw("staticDir") {
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(Value::String(p)) if p.is_empty() => {}
            Some(Value::String(p)) => {
                cfg.static_dir = Some(PathBuf::from(p));
            }
            Some(other) => ctx.err(
                s.key("staticDir"),
                format!("expected a directory path or null, got {}", show(other)),
            ),
        }
        if let Some(v) = s.get("uniqueIdHeader") {
            ctx.warn(format!(
                "server.uniqueIdHeader ({}) is not supported and is ignored",
                show(v)
            ));
        }
        if let Some(v) = s.get("routeCache") {
            match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("strict") => cfg.route_cache = RouteCacheMode::Strict,
                Some("tracking") => cfg.route_cache = RouteCacheMode::Tracking,
                _ => ctx.err(
                    s.key("routeCache"),
                    format!("expected \"strict\" or \"tracking\", got {}", show(v)),
                ),
            }
            if cfg.route_cache == RouteCacheMode::Tracking && cfg.lru_cache.is_some() {
                ctx.err(
                    s.key("routeCache"),
                    "\"tracking\" conflicts with server.lruCache (Hipache's TTL cache): use one",
                );
            }
        }
        match s.raw("debugFrom") {
            None => {}
            Some(Value::String(w)) if w.eq_ignore_ascii_case("any") => cfg.debug_from = DebugFrom::Any,
            Some(Value::String(w)) if w.eq_ignore_ascii_case("trusted") => {
                cfg.debug_from = DebugFrom::default();
            }
            Some(v @ Value::Array(_)) => {
                let mut nets = Vec::new();
                for (key, item) in list_items(&s.key("debugFrom"), v) {
                    match item.as_str().and_then(parse_net) {
                        Some(net) => nets.push(net),
                        None => ctx.err(
                            key,
                            format!("expected an IP address or CIDR network, got {}", show(item)),
                        ),
                    }
                }
                cfg.debug_from = DebugFrom::Networks(nets);
            }
            Some(v) => ctx.err(
                s.key("debugFrom"),
                format!(
                    "expected \"trusted\" (loopback and trustedProxies), \"any\", or a list of networks, got {}",
                    show(v)
                ),
            ),
        }
        if let Some(v) = s.get("upgradeProtocols") {
            cfg.upgrade_protocols.clear();
            for (key, item) in list_items(&s.key("upgradeProtocols"), v) {
                match item.as_str().map(|p| p.trim().to_ascii_lowercase()) {
                    Some(p) if p == "h2c" => ctx.err(
                        key,
                        "h2c is never relayed: an h2c tunnel reaches paths the route table never sent it to",
                    ),
                    Some(p) if !p.is_empty() && p.bytes().all(is_token_byte) => {
                        cfg.upgrade_protocols.push(p);
                    }
                    _ => ctx.err(
                        key,
                        format!("expected an upgrade protocol name (such as \"websocket\"), got {}", show(item)),
                    ),
                }
            }
        }
        if let Some(v) = s.get("trustedProxies") {
            cfg.trusted_proxies.clear();
            for (key, item) in list_items(&s.key("trustedProxies"), v) {
                match item.as_str().and_then(parse_net) {
                    Some(net) => cfg.trusted_proxies.push(net),
                    None => ctx.err(
                        key,
                        format!(
                            "expected an IP address or CIDR network (such as \"10.0.0.0/8\"), got {}",
                            show(item)
                        ),
                    ),
                }
            }
        }
        match s.raw("maxBodySize") {
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(v) => match raw::bytes(ctx, &s.key("maxBodySize"), v) {
                Some(0) => ctx.err(s.key("maxBodySize"), "must be more than 0 (null: no limit)"),
                Some(n) => cfg.max_body_size = Some(n),
                None => {}
            },
        }
        if let Some(v) = s.get("maxHeaderSize") {
            match raw::bytes(ctx, &s.key("maxHeaderSize"), v) {
                Some(n) if (MIN_HEADER_SIZE..=MAX_HEADER_SIZE_LIMIT).contains(&n) => {
                    cfg.max_header_size = usize::try_from(n).unwrap_or(defaults::MAX_HEADER_SIZE);
                }
                Some(n) => ctx.err(
                    s.key("maxHeaderSize"),
                    format!("{n} bytes is out of range: between {MIN_HEADER_SIZE} and {MAX_HEADER_SIZE_LIMIT}"),
                ),
                None => {}
            }
        }
        if let Some(v) = s.get("maxHeaders") {
            if let Some(n) = raw::usize_in(ctx, &s.key("maxHeaders"), v, 1, MAX_HEADERS_LIMIT) {
                cfg.max_headers = n;
            }
        }
        match s.raw("adminAddress") {
            None => {}
            Some(Value::Null | Value::Bool(false)) => cfg.admin = None,
            Some(v) => match v.as_str().and_then(parse_socket_addr) {
                Some(a) => cfg.admin = Some(a),
                None => ctx.err(
                    s.key("adminAddress"),
                    format!(
                        "expected \"ip:port\" (such as \"127.0.0.1:9090\" or \"[::]:9090\"), or null to disable, got {}",
                        show(v)
                    ),
                ),
            },
        }
        if let Some(v) = s.get("metricsPerFrontend") {
            if let Some(n) = raw::usize_in(ctx, &s.key("metricsPerFrontend"), v, 0, 10_000) {
                cfg.metrics_per_frontend = n;
            }
        }
        if let Some(v) = s.get("tunnelIdleTimeout") {
            if let Some(d) = raw::seconds(ctx, &s.key("tunnelIdleTimeout"), v) {
                cfg.tunnel_idle_timeout = (!d.is_zero()).then_some(d);
            }
        }
        self.tls_keys(s);
        let ctx = &mut self.ctx;
        let cfg = &mut self.cfg;
        if let Some(v) = s.get("drainTimeout") {
            if let Some(d) = raw::seconds(ctx, &s.key("drainTimeout"), v) {
                cfg.drain_timeout = d;
            }
        }
        match s.raw("memoryLimit") {
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(v) => match raw::bytes(ctx, &s.key("memoryLimit"), v) {
                Some(0) => ctx.err(s.key("memoryLimit"), "must be more than 0 (null: no limit)"),
                Some(n) => cfg.memory_limit = Some(n),
                None => {}
            },
        }
    }

    /// `tlsDir`, `backendCa`, `backendTlsVerify`, `httpsRedirect`,
    /// `tlsHandshakeTimeout`.
    fn tls_keys(&mut self, s: &Obj<'_>) {
        match s.raw("tlsDir") {
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(Value::String(p)) if p.is_empty() => {}
            Some(Value::String(p)) => self.cfg.tls_dir = Some(PathBuf::from(p)),
            Some(other) => self.ctx.err(
                s.key("tlsDir"),
                format!("expected a directory path or null, got {}", show(other)),
            ),
        }
        if s.has("backendCa") {
            self.cfg.backend_ca = self.path(s, "backendCa");
        }
        if s.has("redisCa") {
            self.cfg.redis_ca = self.path(s, "redisCa");
        }
        for (key, field) in [
            ("backendTlsVerify", &mut self.cfg.backend_tls_verify),
            ("httpsRedirect", &mut self.cfg.https_redirect),
        ] {
            if let Some(v) = s.get(key) {
                if let Some(b) = raw::boolean(&mut self.ctx, &s.key(key), v) {
                    *field = b;
                }
            }
        }
        if let Some(v) = s.get("tlsHandshakeTimeout") {
            if let Some(d) = raw::seconds(&mut self.ctx, &s.key("tlsHandshakeTimeout"), v) {
                self.cfg.tls_handshake_timeout = (!d.is_zero()).then_some(d);
            }
        }
    }

    fn listeners_for(&mut self, top: &Obj<'_>, server: Option<&Obj<'_>>) {
        let has04 = top.has("http") || top.has("https");
        let keys03: Vec<&str> = server
            .map(|s| {
                SERVER_LISTENERS_03
                    .iter()
                    .copied()
                    .filter(|k| s.has(k))
                    .collect()
            })
            .unwrap_or_default();
        match (has04, keys03.is_empty(), server) {
            (true, false, _) => {
                for k in keys03 {
                    self.ctx.err(
                        join("server", k),
                        "0.3 layout key, but this file also has the 0.4 `http`/`https` sections: \
                         use one layout (server.port -> http.port, server.address(6) -> http.bind \
                         and https.bind, server.https -> https)",
                    );
                }
                self.layout04(top);
            }
            (false, false, Some(server)) => self.layout03(server),
            _ => self.layout04(top),
        }
    }

    /// `server.{port, address, address6, https}`.
    fn layout03(&mut self, s: &Obj<'_>) {
        let port = match s.get("port") {
            Some(v) => raw::port(&mut self.ctx, &s.key("port"), v).unwrap_or(defaults::HTTP_PORT),
            None => defaults::HTTP_PORT,
        };
        // Hipache 0.3 listened on server.address (default 0.0.0.0) and on
        // server.address6 (default ::1); an empty list means none.
        let mut ips: Vec<(IpAddr, String)> = Vec::new();
        for (key, default) in [
            ("address", defaults::ADDRESS_03),
            ("address6", defaults::ADDRESS6_03),
        ] {
            match s.get(key) {
                None => ips.extend(default.iter().map(|ip| (*ip, s.key(key)))),
                Some(v) => {
                    for (k, item) in list_items(&s.key(key), v) {
                        if let Some(ip) = raw::listen_ip(&mut self.ctx, &k, item) {
                            ips.push((ip, k));
                        }
                    }
                }
            }
        }
        for (ip, key) in &ips {
            self.add_http(SocketAddr::new(*ip, port), key.clone());
        }
        let Some(v) = s.get("https") else { return };
        let Some(h) = Obj::new(&mut self.ctx, s.key("https"), v, HTTPS_03) else {
            return;
        };
        let port = match h.get("port") {
            Some(v) => raw::port(&mut self.ctx, &h.key("port"), v).unwrap_or(defaults::HTTPS_PORT),
            None => defaults::HTTPS_PORT,
        };
        let key = self.path(&h, "key");
        let cert = self.path(&h, "cert");
        let ca = self.ca(&h);
        self.tls_options(&h);
        self.require(&h, "key", key.is_some(), "a private key file (PEM)");
        self.require(&h, "cert", cert.is_some(), "a certificate chain file (PEM)");
        if let (Some(key_path), Some(cert_path)) = (key, cert) {
            for (ip, from) in &ips {
                self.add_https(
                    HttpsListener {
                        address: SocketAddr::new(*ip, port),
                        key: key_path.clone(),
                        cert: cert_path.clone(),
                        ca: ca.clone(),
                    },
                    from.clone(),
                );
            }
        }
        h.finish(&mut self.ctx);
    }

    /// `http {port, bind}`, `https {port, bind, key, cert, ca}`.
    fn layout04(&mut self, top: &Obj<'_>) {
        let http = match top.get("http") {
            Some(v) => Obj::new(&mut self.ctx, "http".to_owned(), v, HTTP),
            None => None,
        };
        let port = match http.as_ref().and_then(|h| h.get("port")) {
            Some(v) => raw::port(&mut self.ctx, "http.port", v).unwrap_or(defaults::HTTP_PORT),
            None => defaults::HTTP_PORT,
        };
        match http.as_ref().and_then(|h| h.get("bind")) {
            None => {
                for ip in defaults::HTTP_BIND_04 {
                    self.add_http(SocketAddr::new(ip, port), "http.bind".to_owned());
                }
            }
            Some(v) => {
                for (key, item) in list_items("http.bind", v) {
                    if let Some((addr, bind)) = self.bind_item(&key, item, port, HTTP_BIND) {
                        self.add_http(addr, key);
                        if let Some(bind) = bind {
                            bind.finish(&mut self.ctx);
                        }
                    }
                }
            }
        }
        if let Some(h) = &http {
            h.finish(&mut self.ctx);
        }

        let Some(v) = top.get("https") else { return };
        let Some(h) = Obj::new(&mut self.ctx, "https".to_owned(), v, HTTPS_04) else {
            return;
        };
        let port = match h.get("port") {
            Some(v) => raw::port(&mut self.ctx, "https.port", v).unwrap_or(defaults::HTTPS_PORT),
            None => defaults::HTTPS_PORT,
        };
        let key = self.path(&h, "key");
        let cert = self.path(&h, "cert");
        let ca = self.ca(&h);
        self.tls_options(&h);
        let items = h
            .get("bind")
            .map(|v| list_items("https.bind", v))
            .unwrap_or_default();
        if items.is_empty() && key.is_some() && cert.is_some() {
            self.ctx.warn(
                "https has a key and certificate but no `bind`: no HTTPS listener (as in Hipache 0.4); \
                 add https.bind such as [\"0.0.0.0\"]",
            );
        }
        // A bind without its own key/cert uses the section's; the section
        // needs them unless every bind has its own.
        let mut key_missing = items.is_empty() && key.is_none();
        let mut cert_missing = items.is_empty() && cert.is_none();
        for (bkey, item) in items {
            let Some((addr, bind)) = self.bind_item(&bkey, item, port, HTTPS_BIND) else {
                continue;
            };
            let (bind_key, bind_cert, bind_ca) = match &bind {
                Some(b) => {
                    self.tls_options(b);
                    let ca = if b.has("ca") { Some(self.ca(b)) } else { None };
                    (self.path(b, "key"), self.path(b, "cert"), ca)
                }
                None => (None, None, None),
            };
            let lkey = bind_key.or_else(|| key.clone());
            let lcert = bind_cert.or_else(|| cert.clone());
            key_missing |= lkey.is_none();
            cert_missing |= lcert.is_none();
            if let (Some(lkey), Some(lcert)) = (lkey, lcert) {
                self.add_https(
                    HttpsListener {
                        address: addr,
                        key: lkey,
                        cert: lcert,
                        ca: bind_ca.unwrap_or_else(|| ca.clone()),
                    },
                    bkey,
                );
            }
            if let Some(b) = bind {
                b.finish(&mut self.ctx);
            }
        }
        self.require(
            &h,
            "key",
            !key_missing,
            "a private key file (PEM), here or on every https.bind",
        );
        self.require(
            &h,
            "cert",
            !cert_missing,
            "a certificate chain file (PEM), here or on every https.bind",
        );
        h.finish(&mut self.ctx);
    }

    /// A bind element: an address string, or an object with `address` and
    /// optional overrides (returned for the caller to read and finish).
    fn bind_item<'v>(
        &mut self,
        key: &str,
        item: &'v Value,
        port: u16,
        known: &'static [&'static str],
    ) -> Option<(SocketAddr, Option<Obj<'v>>)> {
        match item {
            Value::Object(_) => {
                let obj = Obj::new(&mut self.ctx, key.to_owned(), item, known)?;
                let port = match obj.get("port") {
                    Some(v) => raw::port(&mut self.ctx, &obj.key("port"), v),
                    None => Some(port),
                };
                let ip = match obj.get("address") {
                    Some(v) => raw::listen_ip(&mut self.ctx, &obj.key("address"), v),
                    None => {
                        self.ctx
                            .err(obj.key("address"), "missing: the IP address to listen on");
                        None
                    }
                };
                match (ip, port) {
                    (Some(ip), Some(port)) => Some((SocketAddr::new(ip, port), Some(obj))),
                    _ => {
                        obj.finish(&mut self.ctx);
                        None
                    }
                }
            }
            other => raw::listen_ip(&mut self.ctx, key, other)
                .map(|ip| (SocketAddr::new(ip, port), None)),
        }
    }

    fn path(&mut self, obj: &Obj<'_>, key: &str) -> Option<PathBuf> {
        let v = obj.get(key)?;
        let k = obj.key(key);
        let p = PathBuf::from(raw::string(&mut self.ctx, &k, v)?);
        self.files.push((k, p.clone()));
        Some(p)
    }

    /// `ca`: a path or a list of paths.
    fn ca(&mut self, obj: &Obj<'_>) -> Vec<PathBuf> {
        let Some(v) = obj.get("ca") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, item) in list_items(&obj.key("ca"), v) {
            if let Some(s) = raw::string(&mut self.ctx, &k, item) {
                self.files.push((k, PathBuf::from(&s)));
                out.push(PathBuf::from(s));
            }
        }
        out
    }

    fn tls_options(&mut self, obj: &Obj<'_>) {
        for k in TLS_IGNORED {
            if obj.has(k) {
                self.ctx.warn(format!(
                    "{} is ignored: TLS is rustls, 1.2 and 1.3 only, with its own modern cipher suites",
                    obj.key(k)
                ));
            }
        }
        if obj.has("passphrase") {
            self.ctx.warn(format!(
                "{} is ignored: encrypted private keys are not supported, decrypt the key \
                 (openssl pkey -in enc.key -out plain.key)",
                obj.key("passphrase")
            ));
        }
    }

    fn require(&mut self, obj: &Obj<'_>, key: &str, present: bool, what: &str) {
        if !present && self.ctx.errors.iter().all(|e| e.key != obj.key(key)) {
            self.ctx
                .err(obj.key(key), format!("missing: HTTPS needs {what}"));
        }
    }

    fn add_http(&mut self, addr: SocketAddr, key: String) {
        self.cfg.http.push(addr);
        self.listeners.push((addr, key));
    }

    fn add_https(&mut self, l: HttpsListener, key: String) {
        self.listeners.push((l.address, key));
        self.cfg.https.push(l);
    }

    fn user_or_group(&mut self, top: &Obj<'_>, key: &str) -> Option<String> {
        match top.get(key)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) if n.is_u64() => Some(n.to_string()),
            other => {
                self.ctx.err(
                    key,
                    format!(
                        "expected a user or group name or numeric id, got {}",
                        show(other)
                    ),
                );
                None
            }
        }
    }

    fn driver(&mut self, top: &Obj<'_>) {
        let legacy: Vec<&str> = LEGACY_REDIS
            .iter()
            .copied()
            .chain(std::iter::once("redis"))
            .filter(|k| top.has(k))
            .collect();
        if let Some(v) = top.get("driver") {
            for k in &legacy {
                self.ctx.err(
                    *k,
                    "conflicts with `driver` (Hipache ignored it silently): remove it or put it in the driver URL",
                );
            }
            self.driver_urls(v);
        } else if !legacy.is_empty() {
            self.ctx.warn(
                "the redisHost/redisPort/... keys are deprecated (as in Hipache): \
                 use \"driver\": [\"redis://host:port\", \"redis://masterhost:port\"]",
            );
            self.legacy_redis(top);
        }
    }

    fn driver_urls(&mut self, v: &Value) {
        let mut urls = Vec::new();
        let mut keys = Vec::new();
        let mut ok = true;
        let items = list_items("driver", v);
        if items.is_empty() {
            self.ctx.err("driver", "needs at least one driver URL");
            return;
        }
        for (key, item) in items {
            let Some(text) = raw::string(&mut self.ctx, &key, item) else {
                ok = false;
                continue;
            };
            match driver::parse_url(&text, self.opts.base_dir) {
                Ok(url) => {
                    urls.push(url);
                    keys.push(key);
                }
                Err(msg) => {
                    self.ctx.err(key, msg);
                    ok = false;
                }
            }
        }
        if !ok {
            return;
        }
        match driver::from_urls(urls) {
            Ok(d) => {
                if let Driver::File(p) = &d {
                    self.files.push(("driver".to_owned(), p.clone()));
                }
                self.cfg.driver = d;
            }
            Err((i, msg)) => {
                let key = i
                    .and_then(|i| keys.get(i).cloned())
                    .unwrap_or_else(|| "driver".to_owned());
                self.ctx.err(key, msg);
            }
        }
    }

    /// Hipache's `redisHost`, ..., `redisMaster*` keys, or the older
    /// `redis {host, port, password, database}` object.
    fn legacy_redis(&mut self, top: &Obj<'_>) {
        let mut read = RedisUrl::default();
        if let Some(v) = top.get("redis") {
            if let Some(r) = Obj::new(&mut self.ctx, "redis".to_owned(), v, LEGACY_REDIS_OBJ) {
                for k in ["host", "port", "password", "database"] {
                    if r.has(k) && top.has(&legacy_name("redis", k)) {
                        self.ctx.err(
                            r.key(k),
                            format!("conflicts with {}: use one", legacy_name("redis", k)),
                        );
                    }
                }
                self.redis_fields(&mut read, |k| (r.key(k), r.get(k)));
                r.finish(&mut self.ctx);
            }
        }
        self.redis_fields(&mut read, |k| {
            let name = legacy_name("redis", k);
            let v = top.get(&name);
            (name, v)
        });
        let mut write = read.clone();
        if top.has("redisMasterHost") {
            write = RedisUrl::default();
            self.redis_fields(&mut write, |k| {
                let name = legacy_name("redisMaster", k);
                let v = top.get(&name);
                (name, v)
            });
        } else {
            for k in ["port", "password", "database"] {
                let name = legacy_name("redisMaster", k);
                if top.has(&name) {
                    self.ctx.err(
                        name,
                        "needs redisMasterHost (Hipache ignored it without one)",
                    );
                }
            }
        }
        self.cfg.driver = Driver::Redis { read, write };
    }

    fn redis_fields<'v>(
        &mut self,
        url: &mut RedisUrl,
        field: impl Fn(&str) -> (String, Option<&'v Value>),
    ) {
        let ctx = &mut self.ctx;
        if let (k, Some(v)) = field("host") {
            if let Some(h) = raw::string(ctx, &k, v) {
                url.host = h;
            }
        }
        if let (k, Some(v)) = field("port") {
            match raw::port(ctx, &k, v) {
                Some(0) => ctx.err(k, "a Redis port must be between 1 and 65535"),
                Some(p) => url.port = p,
                None => {}
            }
        }
        if let (k, Some(v)) = field("password") {
            match v {
                // Hipache: an empty password means none.
                Value::String(s) if s.is_empty() => {}
                _ => url.password = raw::string(ctx, &k, v),
            }
        }
        if let (k, Some(v)) = field("database") {
            if let Some(db) = raw::uint(ctx, &k, v, 0, i64::MAX as u64) {
                url.db = i64::try_from(db).unwrap_or(0);
            }
        }
    }

    fn check_duplicates(&mut self) {
        for (i, (addr, key)) in self.listeners.iter().enumerate() {
            if addr.port() == 0 {
                continue;
            }
            if let Some((_, first)) = self.listeners[..i].iter().find(|(a, _)| a == addr) {
                self.ctx.errors.push(super::ConfigError::new(
                    key.clone(),
                    format!("{addr} is already a listener (from {first})"),
                ));
            }
        }
    }

    fn check_files(&mut self) {
        for (key, path) in &self.files {
            if !path.is_file() {
                self.ctx
                    .err(key.clone(), format!("{}: no such file", path.display()));
            }
        }
        if let Some(dir) = &self.cfg.tls_dir {
            if !dir.is_dir() {
                self.ctx.err(
                    "server.tlsDir",
                    format!("{}: no such directory", dir.display()),
                );
            }
        }
        if let Some(dir) = &self.cfg.static_dir {
            if !dir.is_dir() {
                self.ctx.err(
                    "server.staticDir",
                    format!("{}: no such directory", dir.display()),
                );
            }
        }
    }
}

/// `redis` + `Port` -> `redisPort`; `database` -> `redisDatabase`.
fn legacy_name(prefix: &str, field: &str) -> String {
    let mut chars = field.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    let mut out = prefix.to_owned();
    out.extend(first);
    out.extend(chars);
    out
}

/// `10.0.0.0/8`, `fd00::/8`, or a single address (`/32`, `/128`).
pub(super) fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

/// A byte of an RFC 9110 token (upgrade protocol names are tokens).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b)
}

/// `ip:port` or `[v6]:port`.
pub(super) fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Some(a);
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.eq_ignore_ascii_case("localhost") {
        let port = port.parse().ok()?;
        return Some(SocketAddr::new(
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port,
        ));
    }
    None
}

/// Seconds as JSON: whole when whole.
pub(super) fn seconds_json(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::from(d.as_secs())
    } else {
        Value::from(d.as_secs_f64())
    }
}
