//! From the raw document to a validated [`Config`]: defaults, and every
//! problem collected at once. The listeners of both Hipache layouts are
//! read by [`super::listeners`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;

use super::defaults;
use super::driver;
use super::error::ConfigErrors;
use super::raw::{self, list_items, show, Ctx, Obj};
use super::{AccessLogTarget, Config, DebugFrom, Driver, LruCache, RedisUrl, RouteCacheMode};

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

/// The configuration being built from a document, and what was found.
pub(super) struct Builder<'o> {
    pub ctx: Ctx,
    pub cfg: Config,
    pub opts: &'o Options<'o>,
    /// Every listener with the key it came from, to find duplicates.
    pub listeners: Vec<(SocketAddr, String)>,
    /// Files to check, with their keys.
    pub files: Vec<(String, PathBuf)>,
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
        self.listeners(top, server.as_ref());
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

    pub(super) fn path(&mut self, obj: &Obj<'_>, key: &str) -> Option<PathBuf> {
        let v = obj.get(key)?;
        let k = obj.key(key);
        let p = PathBuf::from(raw::string(&mut self.ctx, &k, v)?);
        self.files.push((k, p.clone()));
        Some(p)
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
