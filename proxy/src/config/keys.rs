//! Every key of the configuration file, declared once.
//!
//! A [`Key`] is a name, what kind of value it takes, one line of
//! documentation and whether it holds a secret. The file is a tree of these
//! tables: [`TOP`] holds `server`, whose [`Key::keys`] are [`SERVER`], and
//! so on down to the elements of `https.bind`. From the tables come:
//!
//! - the keys each object may hold ([`super::raw::Obj`] reports the others,
//!   with a "did you mean" from the same table);
//! - how a setting is read into its [`Config`] field ([`Kind::read`]),
//!   called in table order by `Builder::read_keys`;
//! - how it is printed back by `--dry` ([`show`]);
//! - the key tables of `docs/configuration.md`, which a test holds to the
//!   declarations: a row per key, its default, its doc line.
//!
//! A table's order is the order its settings are read in (so the order of
//! their errors) and the one "did you mean" breaks ties in: add keys at the
//! end.
//!
//! A setting's default is its field's value in `Config::default()` (the
//! named constants of [`super::defaults`]), shown through its printer; the
//! declaration does not say it again. The parts of listeners and of the
//! Redis connection ([`Kind::Part`]) are read together by the code of their
//! object, which knows how they combine; their declaration gives the
//! default the docs show.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{json, Map, Value};

use super::defaults;
use super::driver;
use super::raw::{self, list_items, show as shown, Ctx, Obj};
use super::raw::{parse_net, parse_socket_addr, seconds_json};
use super::reading::{Builder, Field, Key, Kind};
use super::{AccessLogTarget, Config, DebugFrom, Driver, LruCache, RouteCacheMode};

/// Smallest `maxHeaderSize`: hyper refuses read buffers under 8 KiB.
const MIN_HEADER_SIZE: u64 = 8 * 1024;
/// Largest `maxHeaderSize`: a typo guard.
const MAX_HEADER_SIZE_LIMIT: u64 = 16 * 1024 * 1024;
/// Largest `maxHeaders`: a typo guard.
const MAX_HEADERS_LIMIT: usize = 10_000;
/// Largest `metricsPerFrontend`: each series is kept in memory and sent on
/// every scrape.
const MAX_FRONTEND_SERIES: usize = 10_000;

/// The [`Field`] of `Config` named so.
macro_rules! field {
    ($name:ident) => {
        Field {
            get: |c| &c.$name,
            set: |c| &mut c.$name,
        }
    };
}

/// A key, a part of its object until [`Key::kind`] says otherwise.
const fn key(name: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Part(None),
        doc: "",
        secret: false,
        reads_null: false,
        keys: &[],
    }
}

impl Key {
    const fn kind(self, kind: Kind) -> Key {
        Key { kind, ..self }
    }

    const fn doc(self, doc: &'static str) -> Key {
        Key { doc, ..self }
    }

    const fn secret(self) -> Key {
        Key {
            secret: true,
            ..self
        }
    }

    const fn reads_null(self) -> Key {
        Key {
            reads_null: true,
            ..self
        }
    }

    const fn holding(self, keys: &'static [Key]) -> Key {
        Key { keys, ..self }
    }

    /// This part, with a row in the docs showing `default`.
    const fn documented(self, default: fn() -> Value) -> Key {
        match self.kind {
            Kind::Part(_) => self.kind(Kind::Part(Some(default))),
            _ => panic!("a setting's documented default is its value in Config::default()"),
        }
    }
}

/// `a` then `b`, for objects that share keys: `N` is their total length.
const fn concat<const N: usize>(a: &[Key], b: &[Key]) -> [Key; N] {
    assert!(a.len() + b.len() == N);
    let mut out = [TLS_KEY; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < a.len() { a[i] } else { b[i - a.len()] };
        i += 1;
    }
    out
}

/// The top level of the file.
pub(super) const TOP: &[Key] = &[
    key("server")
        .doc("Hipache's settings, and the 0.3 layout's listeners.")
        .holding(SERVER),
    key("http")
        .doc("The 0.4 layout's plain HTTP listeners.")
        .holding(HTTP),
    key("https")
        .doc("No HTTPS unless present.")
        .documented(absent)
        .holding(HTTPS),
    key("driver")
        .kind(Kind::Custom(read_driver, show_driver))
        .doc("A driver URL, or a list of Redis URLs")
        .secret(),
    key("user")
        .kind(Kind::Custom(read_user, |c| Value::from(c.user.clone())))
        .doc("After binding, when started as root, switch to this user"),
    key("group")
        .kind(Kind::Custom(read_group, |c| Value::from(c.group.clone())))
        .doc("Group to switch to."),
    // Hipache 0.3's Redis keys, used when `driver` is absent: the top-level
    // keys named `redis*` (`Builder::legacy_redis` reads them).
    key("redisHost").doc("The read connection's host."),
    key("redisPort").doc("The read connection's port."),
    key("redisDatabase").doc("The read connection's database."),
    key("redisPassword")
        .doc("The read connection's password.")
        .secret(),
    key("redisMasterHost").doc("The write connection's host."),
    key("redisMasterPort").doc("The write connection's port."),
    key("redisMasterPassword")
        .doc("The write connection's password.")
        .secret(),
    key("redisMasterDatabase").doc("The write connection's database."),
    key("redis")
        .doc("Hipache 0.1's `{host, port, password, database}`.")
        .holding(REDIS),
];

/// `server`. Its parts are the 0.3 layout's listeners.
const SERVER: &[Key] = &[
    key("accessLog")
        .kind(Kind::Custom(read_access_log, show_access_log))
        .doc("Access log file; `\"-\"` is stdout")
        .reads_null(),
    key("port")
        .doc("HTTP port of every address.")
        .documented(|| json!(defaults::HTTP_PORT)),
    key("workers")
        .kind(Kind::Count(field!(workers), 0, defaults::MAX_WORKERS))
        .doc("Worker processes"),
    key("maxSockets")
        .kind(Kind::Count(field!(max_sockets), 1, u32::MAX as usize))
        .doc("Most connections open to one backend at once"),
    key("maxSocketsWait")
        .kind(Kind::Seconds(field!(max_sockets_wait)))
        .doc("Seconds a request waits for a free connection"),
    key("deadBackendTTL")
        .kind(Kind::Custom(read_dead_backend_ttl, show_dead_backend_ttl))
        .doc("Seconds a backend stays marked dead"),
    key("tcpTimeout")
        .kind(Kind::Timeout(field!(tcp_timeout)))
        .doc("Seconds: client idle timeout and upstream response timeout."),
    key("retryOnError")
        .kind(Kind::Custom(read_retries, |c| {
            Value::from(c.retry_on_error)
        }))
        .doc("Retries on another backend when a connection fails"),
    key("deadBackendOn500")
        .kind(Kind::Flag(field!(dead_backend_on_500)))
        .doc("A `500` answer marks the backend dead."),
    key("httpKeepAlive")
        .kind(Kind::Flag(field!(http_keep_alive)))
        .doc("Reuse backend connections (pooled)."),
    key("debug")
        .kind(Kind::Flag(field!(debug)))
        .doc("Add `x-debug-*` headers to every answer, to every client"),
    key("lruCache")
        .kind(Kind::Custom(read_lru_cache, show_lru_cache))
        .doc("Hipache's TTL route cache")
        .holding(LRU_CACHE),
    key("staticDir")
        .kind(Kind::Dir(field!(static_dir)))
        .doc("Directory of custom error pages"),
    key("address")
        .doc("Addresses to listen on")
        .documented(|| ips(&defaults::ADDRESS_03)),
    key("address6")
        .doc("More addresses, meant for IPv6")
        .documented(|| ips(&defaults::ADDRESS6_03)),
    key("https")
        .doc("`{port, key, cert, ca}`: HTTPS on every address of both lists.")
        .documented(absent)
        .holding(SERVER_HTTPS),
    key("uniqueIdHeader")
        .kind(Kind::Ignored(unsupported))
        .doc("Hipache's request id header: not supported."),
    key("connectTimeout")
        .kind(Kind::Timeout(field!(connect_timeout)))
        .doc("Seconds to connect to a backend"),
    key("trustedProxies")
        .kind(Kind::Custom(read_trusted_proxies, show_trusted_proxies))
        .doc("Peers whose forwarding headers are kept"),
    key("proxyProtocolFrom")
        .kind(Kind::Custom(
            read_proxy_protocol_from,
            show_proxy_protocol_from,
        ))
        .doc("Load balancers that hand over the client address with the PROXY protocol"),
    key("maxBodySize")
        .kind(Kind::Limit(field!(max_body_size)))
        .doc("Largest request body accepted, in bytes (413 above)"),
    key("maxHeaderSize")
        .kind(Kind::Custom(read_max_header_size, show_max_header_size))
        .doc("Largest request head (request line and headers) in bytes"),
    key("maxHeaders")
        .kind(Kind::Count(field!(max_headers), 1, MAX_HEADERS_LIMIT))
        .doc("Most request headers (431 above)."),
    key("adminAddress")
        .kind(Kind::Custom(read_admin_address, show_admin_address))
        .doc("Admin listener (`/metrics`, `/healthz`, `/readyz`)")
        .reads_null(),
    key("routeCache")
        .kind(Kind::Custom(read_route_cache, show_route_cache))
        .doc("How routes read from Redis may be cached."),
    key("drainTimeout")
        .kind(Kind::Seconds(field!(drain_timeout)))
        .doc("Seconds SIGTERM waits for in-flight requests"),
    key("memoryLimit")
        .kind(Kind::Limit(field!(memory_limit)))
        .doc("Worker memory limit in bytes"),
    key("tunnelIdleTimeout")
        .kind(Kind::Timeout(field!(tunnel_idle_timeout)))
        .doc("Seconds a WebSocket (or other upgraded) tunnel may stay silent"),
    key("metricsPerFrontend")
        .kind(Kind::Count(
            field!(metrics_per_frontend),
            0,
            MAX_FRONTEND_SERIES,
        ))
        .doc("How many frontends get a request series of their own"),
    key("tlsDir")
        .kind(Kind::Dir(field!(tls_dir)))
        .doc("Directory of SNI certificates"),
    key("backendCa")
        .kind(Kind::File(field!(backend_ca)))
        .doc("PEM file of CA certificates trusted for `https://` backends"),
    key("redisCa")
        .kind(Kind::File(field!(redis_ca)))
        .doc("A PEM CA file trusted for `rediss://` drivers"),
    key("backendTlsVerify")
        .kind(Kind::Flag(field!(backend_tls_verify)))
        .doc("Verify `https://` backends' certificates"),
    key("httpsRedirect")
        .kind(Kind::Flag(field!(https_redirect)))
        .doc("Redirect plain-HTTP requests to HTTPS"),
    key("tlsHandshakeTimeout")
        .kind(Kind::Timeout(field!(tls_handshake_timeout)))
        .doc("Seconds a client gets to finish the TLS handshake"),
    key("debugFrom")
        .kind(Kind::Custom(read_debug_from, show_debug_from))
        .doc("Who may ask for `x-debug-*` headers"),
    key("http2WebSocket")
        .kind(Kind::Flag(field!(http2_websocket)))
        .doc("Accept WebSocket over HTTP/2 (RFC 8441 extended CONNECT)"),
    key("upgradeProtocols")
        .kind(Kind::Custom(read_upgrade_protocols, show_upgrade_protocols))
        .doc("Upgrade protocols relayed to backends"),
    key("forwardedHeader")
        .kind(Kind::Flag(field!(forwarded_header)))
        .doc("Also send an RFC 7239 `Forwarded` header"),
    key("unknownHostStatus")
        .kind(Kind::Custom(
            read_unknown_host_status,
            show_unknown_host_status,
        ))
        .doc("Status for a host no frontend routes"),
    key("statusPage")
        .kind(Kind::Flag(field!(status_page)))
        .doc("Serve the live status page (`/status`) on the admin listener"),
    key("statusToken")
        .kind(Kind::Custom(read_status_token, show_status_token))
        .doc("A token every `/status` request must carry")
        .secret()
        .reads_null(),
];

/// `server.lruCache` as an object.
const LRU_CACHE: &[Key] = &[
    key("size").doc("Entries cached."),
    key("ttl").doc("Seconds an entry lives."),
];

/// `http`.
const HTTP: &[Key] = &[
    key("port")
        .doc("Port of every bind that does not give its own.")
        .documented(|| json!(defaults::HTTP_PORT)),
    key("bind")
        .doc("An address, a list of addresses, or objects")
        .documented(|| ips(&defaults::HTTP_BIND_04))
        .holding(BIND),
];

/// `https`.
const HTTPS: &[Key] = &concat::<10>(
    &[
        key("port")
            .doc("Port of every bind that does not give its own.")
            .documented(|| json!(defaults::HTTPS_PORT)),
        key("bind")
            .doc("Like `http.bind`")
            .documented(|| json!([]))
            .holding(HTTPS_BIND),
        TLS_KEY.documented(absent),
        TLS_CERT.documented(absent),
        TLS_CA.documented(|| json!([])),
    ],
    TLS_IGNORED,
);

/// `server.https`.
const SERVER_HTTPS: &[Key] = &concat::<9>(
    &[
        key("port").doc("HTTPS port of every address."),
        TLS_KEY,
        TLS_CERT,
        TLS_CA,
    ],
    TLS_IGNORED,
);

/// An object of `http.bind`.
const BIND: &[Key] = &[BIND_ADDRESS, BIND_PORT];

/// An object of `https.bind`.
const HTTPS_BIND: &[Key] = &concat::<10>(
    &[BIND_ADDRESS, BIND_PORT, TLS_KEY, TLS_CERT, TLS_CA],
    TLS_IGNORED,
);

const BIND_ADDRESS: Key = key("address").doc("The IP address to listen on.");
const BIND_PORT: Key = key("port").doc("Its own port.");
const TLS_KEY: Key = key("key").doc("Private key (PEM)");
const TLS_CERT: Key = key("cert").doc("Certificate chain (PEM)");
const TLS_CA: Key = key("ca").doc("Extra CA file(s)");

/// TLS options of node that Hipache passed through; rustls decides them
/// itself, and reads no encrypted keys.
const TLS_IGNORED: &[Key] = &[
    key("passphrase")
        .kind(Kind::Ignored(no_encrypted_keys))
        .doc("The key's passphrase."),
    key("ciphers")
        .kind(Kind::Ignored(tls_decides))
        .doc("node's cipher list."),
    key("secureProtocol")
        .kind(Kind::Ignored(tls_decides))
        .doc("node's TLS method."),
    key("secureOptions")
        .kind(Kind::Ignored(tls_decides))
        .doc("node's OpenSSL options."),
    key("honorCipherOrder")
        .kind(Kind::Ignored(tls_decides))
        .doc("node's cipher order."),
];

/// Hipache 0.1's `redis` object.
const REDIS: &[Key] = &[
    key("host").doc("The Redis host."),
    key("port").doc("The Redis port."),
    key("password").doc("The Redis password.").secret(),
    key("database").doc("The Redis database."),
];

impl Kind {
    /// Reads `v`, found at `key`, into the configuration; a bad value is an
    /// error at `key` and leaves the default.
    pub(super) fn read(self, b: &mut Builder<'_>, key: &str, v: &Value) {
        let (ctx, cfg) = (&mut b.ctx, &mut b.cfg);
        match self {
            Kind::Flag(f) => put((f.set)(cfg), raw::boolean(ctx, key, v)),
            Kind::Count(f, min, max) => put((f.set)(cfg), raw::usize_in(ctx, key, v, min, max)),
            Kind::Seconds(f) => put((f.set)(cfg), raw::seconds(ctx, key, v)),
            Kind::Timeout(f) => {
                let d = raw::seconds(ctx, key, v);
                put((f.set)(cfg), d.map(|d| (!d.is_zero()).then_some(d)));
            }
            Kind::Limit(_) if v == &Value::Bool(false) => {}
            Kind::Limit(f) => match raw::bytes(ctx, key, v) {
                Some(0) => ctx.err(key, "must be more than 0 (null: no limit)"),
                n => put((f.set)(cfg), n.map(Some)),
            },
            Kind::Dir(f) => match v {
                Value::Bool(false) => {}
                Value::String(p) if p.is_empty() => {}
                Value::String(p) => {
                    *(f.set)(cfg) = Some(PathBuf::from(p));
                    b.dirs.push((key.to_owned(), PathBuf::from(p)));
                }
                other => ctx.expected(key, "a directory path or null", other),
            },
            Kind::File(f) => {
                let path = b.file(key, v);
                *(f.set)(&mut b.cfg) = path;
            }
            Kind::Custom(read, _) => read(b, key, v),
            Kind::Part(_) | Kind::Ignored(_) => {}
        }
    }

    /// The value `--dry` prints; `None` for parts and ignored keys.
    pub(super) fn show(self, c: &Config) -> Option<Value> {
        let path = |p: &Option<PathBuf>| Value::from(p.as_ref().map(|p| p.display().to_string()));
        Some(match self {
            Kind::Flag(f) => Value::from(*(f.get)(c)),
            Kind::Count(f, ..) => Value::from(*(f.get)(c)),
            Kind::Seconds(f) => seconds_json(*(f.get)(c)),
            Kind::Timeout(f) => (f.get)(c).map_or(Value::from(0), seconds_json),
            Kind::Limit(f) => Value::from(*(f.get)(c)),
            Kind::Dir(f) | Kind::File(f) => path((f.get)(c)),
            Kind::Custom(_, show) => show(c),
            Kind::Part(_) | Kind::Ignored(_) => return None,
        })
    }
}

/// The keys of an object as `--dry` prints them: every setting, and every
/// object that holds one.
pub(super) fn show(keys: &[Key], c: &Config) -> Map<String, Value> {
    let mut out = Map::new();
    for key in keys {
        let value = match key.kind.show(c) {
            Some(v) => v,
            None => {
                let inner = show(key.keys, c);
                if inner.is_empty() {
                    continue;
                }
                Value::Object(inner)
            }
        };
        out.insert(key.name.to_owned(), value);
    }
    out
}

/// Stores a value that was read; `None` (a bad value) leaves the field.
fn put<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

fn absent() -> Value {
    Value::Null
}

fn ips(list: &[IpAddr]) -> Value {
    list.iter().map(ToString::to_string).collect()
}

fn tls_decides(key: &str, _: &Value) -> String {
    format!("{key} is ignored: TLS is rustls, 1.2 and 1.3 only, with its own modern cipher suites")
}

fn no_encrypted_keys(key: &str, _: &Value) -> String {
    format!(
        "{key} is ignored: encrypted private keys are not supported, decrypt the key \
         (openssl pkey -in enc.key -out plain.key)"
    )
}

fn unsupported(key: &str, v: &Value) -> String {
    format!("{key} ({}) is not supported and is ignored", shown(v))
}

fn read_user(b: &mut Builder<'_>, key: &str, v: &Value) {
    b.cfg.user = user_or_group(&mut b.ctx, key, v);
}

fn read_group(b: &mut Builder<'_>, key: &str, v: &Value) {
    b.cfg.group = user_or_group(&mut b.ctx, key, v);
}

/// `user`, `group`: a name or a numeric id; `""`: none.
fn user_or_group(ctx: &mut Ctx, key: &str, v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        other => {
            ctx.expected(key, "a user or group name or numeric id", other);
            None
        }
    }
}

/// Redis URLs censored: one when reads and writes go to the same server.
fn show_driver(c: &Config) -> Value {
    match &c.driver {
        Driver::File(p) => Value::from(format!("file:{}", p.display())),
        Driver::Redis { read, write } if read == write => Value::from(read.censored()),
        Driver::Redis { read, write } => json!([read.censored(), write.censored()]),
    }
}

fn read_access_log(b: &mut Builder<'_>, key: &str, v: &Value) {
    b.cfg.access_log = match v {
        Value::Null | Value::Bool(false) => None,
        Value::String(p) if p.is_empty() => None,
        Value::String(p) if p == "-" => Some(AccessLogTarget::Stdout),
        Value::String(p) => Some(AccessLogTarget::File(p.into())),
        other => {
            let what = "a file path, \"-\" (stdout) or null (no access log)";
            return b.ctx.expected(key, what, other);
        }
    };
}

fn show_access_log(c: &Config) -> Value {
    match &c.access_log {
        None => Value::Null,
        Some(AccessLogTarget::Stdout) => Value::from("-"),
        Some(AccessLogTarget::File(p)) => Value::from(p.display().to_string()),
    }
}

fn read_dead_backend_ttl(b: &mut Builder<'_>, key: &str, v: &Value) {
    let ttl = raw::whole_seconds(&mut b.ctx, key, v);
    put(&mut b.cfg.dead_backend_ttl, ttl);
}

fn show_dead_backend_ttl(c: &Config) -> Value {
    seconds_json(c.dead_backend_ttl)
}

fn read_retries(b: &mut Builder<'_>, key: &str, v: &Value) {
    let n = raw::uint(&mut b.ctx, key, v, 0, u64::from(u32::MAX));
    put(
        &mut b.cfg.retry_on_error,
        n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
    );
}

/// `true` (Hipache's dev values), or `{size, ttl}`; `false`: off.
fn read_lru_cache(b: &mut Builder<'_>, key: &str, v: &Value) {
    let mut cache = LruCache {
        size: defaults::LRU_CACHE_SIZE,
        ttl: defaults::LRU_CACHE_TTL,
    };
    match v {
        Value::Bool(false) => return,
        Value::Bool(true) => {}
        _ => {
            let ctx = &mut b.ctx;
            let Some(lru) = Obj::new(ctx, key.to_owned(), v, LRU_CACHE) else {
                return;
            };
            if let Some(v) = lru.get("size") {
                let size = raw::usize_in(ctx, &lru.key("size"), v, 1, u32::MAX as usize);
                put(&mut cache.size, size);
            }
            if let Some(v) = lru.get("ttl") {
                match raw::seconds(ctx, &lru.key("ttl"), v) {
                    Some(d) if d.is_zero() => ctx.err(
                        lru.key("ttl"),
                        "must be more than 0 (set lruCache to null to disable the cache)",
                    ),
                    ttl => put(&mut cache.ttl, ttl),
                }
            }
            lru.finish(ctx);
        }
    }
    b.cfg.lru_cache = Some(cache);
}

fn show_lru_cache(c: &Config) -> Value {
    c.lru_cache.map_or(
        Value::Null,
        |l| json!({"size": l.size, "ttl": seconds_json(l.ttl)}),
    )
}

fn read_route_cache(b: &mut Builder<'_>, key: &str, v: &Value) {
    match v.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("strict") => b.cfg.route_cache = RouteCacheMode::Strict,
        Some("tracking") => b.cfg.route_cache = RouteCacheMode::Tracking,
        _ => b.ctx.expected(key, "\"strict\" or \"tracking\"", v),
    }
}

fn show_route_cache(c: &Config) -> Value {
    Value::from(match c.route_cache {
        RouteCacheMode::Strict => "strict",
        RouteCacheMode::Tracking => "tracking",
    })
}

fn read_debug_from(b: &mut Builder<'_>, key: &str, v: &Value) {
    b.cfg.debug_from = match v {
        Value::String(w) if w.eq_ignore_ascii_case("any") => DebugFrom::Any,
        Value::String(w) if w.eq_ignore_ascii_case("trusted") => DebugFrom::default(),
        Value::Array(_) => {
            let what = "an IP address or CIDR network";
            DebugFrom::Networks(networks(&mut b.ctx, key, v, what))
        }
        _ => {
            let what = "\"trusted\" (loopback and trustedProxies), \"any\", or a list of networks";
            return b.ctx.expected(key, what, v);
        }
    };
}

fn show_debug_from(c: &Config) -> Value {
    match &c.debug_from {
        DebugFrom::Networks(nets) => networks_json(nets),
        DebugFrom::Any => Value::from("any"),
    }
}

fn read_trusted_proxies(b: &mut Builder<'_>, key: &str, v: &Value) {
    let what = "an IP address or CIDR network (such as \"10.0.0.0/8\")";
    b.cfg.trusted_proxies = networks(&mut b.ctx, key, v, what);
}

fn show_trusted_proxies(c: &Config) -> Value {
    networks_json(&c.trusted_proxies)
}

fn read_proxy_protocol_from(b: &mut Builder<'_>, key: &str, v: &Value) {
    let what = "an IP address or CIDR network (such as \"10.0.0.0/8\")";
    b.cfg.proxy_protocol_from = networks(&mut b.ctx, key, v, what);
}

fn show_proxy_protocol_from(c: &Config) -> Value {
    networks_json(&c.proxy_protocol_from)
}

/// A list of networks (a single one is a list of one); each bad element is
/// an error: `what` was expected.
fn networks(ctx: &mut Ctx, key: &str, v: &Value, what: &str) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for (key, item) in list_items(key, v) {
        match item.as_str().and_then(parse_net) {
            Some(net) => nets.push(net),
            None => ctx.expected(key, what, item),
        }
    }
    nets
}

fn networks_json(nets: &[IpNet]) -> Value {
    nets.iter().map(ToString::to_string).collect()
}

fn read_upgrade_protocols(b: &mut Builder<'_>, key: &str, v: &Value) {
    b.cfg.upgrade_protocols.clear();
    for (key, item) in list_items(key, v) {
        match item.as_str().map(|p| p.trim().to_ascii_lowercase()) {
            Some(p) if p == "h2c" => b.ctx.err(
                key,
                "h2c is never relayed: an h2c tunnel reaches paths the route table never sent it to",
            ),
            Some(p) if !p.is_empty() && p.bytes().all(is_token_byte) => {
                b.cfg.upgrade_protocols.push(p);
            }
            _ => {
                let what = "an upgrade protocol name (such as \"websocket\")";
                b.ctx.expected(key, what, item);
            }
        }
    }
}

fn read_unknown_host_status(b: &mut Builder<'_>, key: &str, v: &Value) {
    match v.as_u64() {
        Some(code @ (400 | 404)) => b.cfg.unknown_host_not_found = code == 404,
        _ => b.ctx.expected(key, "400 or 404", v),
    }
}

fn show_unknown_host_status(c: &Config) -> Value {
    Value::from(if c.unknown_host_not_found { 404 } else { 400 })
}

fn show_upgrade_protocols(c: &Config) -> Value {
    Value::from(c.upgrade_protocols.clone())
}

/// A byte of an RFC 9110 token (upgrade protocol names are tokens).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b)
}

fn read_max_header_size(b: &mut Builder<'_>, key: &str, v: &Value) {
    match raw::bytes(&mut b.ctx, key, v) {
        Some(n) if (MIN_HEADER_SIZE..=MAX_HEADER_SIZE_LIMIT).contains(&n) => {
            b.cfg.max_header_size = usize::try_from(n).unwrap_or(defaults::MAX_HEADER_SIZE);
        }
        Some(n) => b.ctx.err(
            key,
            format!(
                "{n} bytes is out of range: between {MIN_HEADER_SIZE} and {MAX_HEADER_SIZE_LIMIT}"
            ),
        ),
        None => {}
    }
}

fn show_max_header_size(c: &Config) -> Value {
    Value::from(c.max_header_size)
}

/// `"ip:port"`; `null` or `false`: no admin listener.
fn read_admin_address(b: &mut Builder<'_>, key: &str, v: &Value) {
    if matches!(v, Value::Null | Value::Bool(false)) {
        b.cfg.admin = None;
        return;
    }
    match v.as_str().and_then(parse_socket_addr) {
        Some(a) => b.cfg.admin = Some(a),
        None => {
            let what =
                "\"ip:port\" (such as \"127.0.0.1:10264\" or \"[::]:10264\"), or null to disable";
            b.ctx.expected(key, what, v);
        }
    }
}

/// `statusToken`: a non-empty string, or `null` for none.
fn read_status_token(b: &mut Builder<'_>, key: &str, v: &Value) {
    match v {
        Value::Null => b.cfg.status_token = None,
        Value::String(s) if hipache_schema::status_page::is_valid_token(s) => {
            b.cfg.status_token = Some(s.clone());
        }
        // A secret: its value is never repeated in an error.
        Value::String(_) => b.ctx.err(
            key,
            "must be a non-empty string of letters, digits and `-._~` (such as the output of `openssl rand -hex 32`)",
        ),
        other => b
            .ctx
            .err(key, format!("expected a string or null, got {}", raw::kind(other))),
    }
}

fn show_status_token(c: &Config) -> Value {
    Value::from(c.status_token.as_ref().map(|_| "***"))
}

fn show_admin_address(c: &Config) -> Value {
    Value::from(c.admin.map(|a| a.to_string()))
}

/// `driver`: one URL or a list (the first for reads, the last for writes).
fn read_driver(b: &mut Builder<'_>, key: &str, v: &Value) {
    let mut urls = Vec::new();
    let mut keys = Vec::new();
    let mut ok = true;
    let items = list_items(key, v);
    if items.is_empty() {
        b.ctx.err(key, "needs at least one driver URL");
        return;
    }
    for (item_key, item) in items {
        let Some(text) = raw::string(&mut b.ctx, &item_key, item) else {
            ok = false;
            continue;
        };
        match driver::parse_url(&text, b.opts.base_dir) {
            Ok(url) => {
                urls.push(url);
                keys.push(item_key);
            }
            Err(msg) => {
                b.ctx.err(item_key, msg);
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
                b.files.push((key.to_owned(), p.clone()));
            }
            b.cfg.driver = d;
        }
        Err((i, msg)) => {
            let at = i
                .and_then(|i| keys.get(i).cloned())
                .unwrap_or_else(|| key.to_owned());
            b.ctx.err(at, msg);
        }
    }
}
