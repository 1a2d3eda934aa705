//! Configuration: Hipache's config.json (0.3 and 0.4 layouts, JSON or YAML)
//! read into a raw document, then validated into one [`Config`], which is
//! all the rest of the proxy ever sees. Every problem is reported at once.
//!
//! Layout:
//! - [`keys`] declares every key of the file once, in tables that mirror
//!   the file's objects: its name, the kind of value it takes (and so how
//!   it is read into its `Config` field and printed back by `--dry`), one
//!   line of documentation, whether it holds a secret. The keys an object
//!   may hold, the `--dry` printer and the key tables of
//!   `docs/configuration.md` (held to the tables by a test) all come from
//!   there. A key's default is its field's value in [`Config::default`].
//! - [`reading`] holds what reading works with and the tables and readers
//!   stand on: the error collector, the declaration of a key and what it
//!   takes, and the configuration being built (so that no module of the
//!   walk imports one that imports it).
//! - [`raw`] reads JSON or YAML and holds the typed getters that collect
//!   errors, and [`raw::Obj`], an object checked against its declared keys
//!   ("did you mean").
//! - [`build`] walks the document: the settings as declared, the driver and
//!   Hipache's legacy `redis*` keys, the checks that span keys;
//!   [`listeners`] reads the listeners of both layouts.
//! - [`driver`] parses driver URLs (Redis ones with the schema crate's
//!   parser, into its [`RedisUrl`]), [`defaults`] names every default,
//!   [`error`] is the error list.
//! - [`load`] finds the file and applies the command-line and environment
//!   overrides of [`crate::cli::Args`].
//!
//! Why tables of plain data (a slice of key declarations, each kind of
//! value parsed and printed by one function) rather than serde derive: a
//! derive stops at the first bad field, and an operator must see every
//! problem at once; rather than a macro generating them: the tables read
//! as the list of keys they are, and rustfmt formats them (only `field!`,
//! one line, names a `Config` field once for reading and for printing).

mod build;
pub mod defaults;
pub mod driver;
mod error;
mod keys;
mod listeners;
mod raw;
mod reading;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;

pub use error::{ConfigError, ConfigErrors};
/// A Redis driver URL: the schema crate's, the parser the syncer uses too.
pub use hipache_schema::RedisUrl;
pub use raw::Format;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Plain HTTP listeners (0.3: `server.address`/`server.address6` with
    /// `server.port`; 0.4: `http.bind` with `http.port`).
    pub http: Vec<SocketAddr>,
    /// TLS listeners.
    pub https: Vec<HttpsListener>,
    /// Drop privileges to these after binding (0.4 `user`/`group`).
    pub user: Option<String>,
    pub group: Option<String>,
    /// Worker processes; 0 means a single process with no master.
    pub workers: usize,
    /// Most connections open to one backend at once.
    pub max_sockets: usize,
    /// How long a request waits for one of a backend's `max_sockets`
    /// connections before a 503.
    pub max_sockets_wait: Duration,
    pub dead_backend_ttl: Duration,
    /// Client idle timeout and upstream response timeout; `None` disables.
    pub tcp_timeout: Option<Duration>,
    /// A WebSocket (or other upgraded) tunnel with no data either way for
    /// this long is closed; `None`: never (the default).
    pub tunnel_idle_timeout: Option<Duration>,
    /// Frontends (by identifier) given their own request series; the rest
    /// are counted as `other`. 0: no per-frontend series.
    pub metrics_per_frontend: usize,
    /// Upstream connect timeout; `None` disables.
    pub connect_timeout: Option<Duration>,
    pub retry_on_error: u32,
    pub dead_backend_on_500: bool,
    /// Reuse backend connections (Hipache's `httpKeepAlive`).
    pub http_keep_alive: bool,
    /// Add `x-debug-*` headers even without an `X-Debug` request header.
    pub debug: bool,
    /// Which clients an `X-Debug` request header is honoured from.
    pub debug_from: DebugFrom,
    /// Upgrade protocols relayed to backends (`server.upgradeProtocols`),
    /// lower-case; never `h2c`.
    pub upgrade_protocols: Vec<String>,
    /// Add an RFC 7239 `Forwarded` header (`server.forwardedHeader`).
    pub forwarded_header: bool,
    /// `server.unknownHostStatus: 404`: a host no frontend routes answers
    /// 404 (Kubernetes' expectation) instead of Hipache's 400.
    pub unknown_host_not_found: bool,
    /// Hipache's TTL route cache, when set.
    pub lru_cache: Option<LruCache>,
    pub route_cache: RouteCacheMode,
    pub static_dir: Option<PathBuf>,
    pub access_log: Option<AccessLogTarget>,
    pub driver: Driver,
    /// Peers whose `X-Forwarded-*` headers are trusted and appended to.
    pub trusted_proxies: Vec<IpNet>,
    /// Peers that must open every connection with a PROXY protocol header
    /// (v1 or v2), whose client address replaces theirs; empty: none.
    pub proxy_protocol_from: Vec<IpNet>,
    /// Largest request body accepted (413 above); `None`: unlimited.
    pub max_body_size: Option<u64>,
    /// Largest request head (request line plus headers) accepted (431 above).
    pub max_header_size: usize,
    /// Most request headers accepted (431 above).
    pub max_headers: usize,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`); `None` disables.
    pub admin: Option<SocketAddr>,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Worker memory limit in bytes (recycle above it); `None` disables.
    pub memory_limit: Option<u64>,
    /// Directory of SNI certificates (`server.tlsDir`), rescanned.
    pub tls_dir: Option<PathBuf>,
    /// Extra CA (PEM) trusted for `https://` backends (`server.backendCa`).
    pub backend_ca: Option<PathBuf>,
    /// CA file (PEM) trusted for `rediss://` drivers, instead of the
    /// bundled web roots.
    pub redis_ca: Option<PathBuf>,
    /// Verify `https://` backends' certificates (`server.backendTlsVerify`).
    pub backend_tls_verify: bool,
    /// `server.http2WebSocket`: RFC 8441 WebSocket from HTTP/2 clients.
    pub http2_websocket: bool,
    /// Answer plain-HTTP requests with a redirect to HTTPS.
    pub https_redirect: bool,
    /// Bound on a client's TLS handshake; `None` disables.
    pub tls_handshake_timeout: Option<Duration>,
    /// Serve the live status page on the admin listener
    /// (`server.statusPage`), and collect the per-backend statistics it
    /// shows.
    pub status_page: bool,
    /// The token every status page request must carry
    /// (`server.statusToken`); `None`: none asked.
    pub status_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpsListener {
    pub address: SocketAddr,
    pub key: PathBuf,
    pub cert: PathBuf,
    pub ca: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LruCache {
    pub size: usize,
    pub ttl: Duration,
}

/// Who may ask for `x-debug-*` headers with an `X-Debug` request header
/// (`server.debugFrom`). The headers name backend addresses and frontend
/// keys, which an internet client has no business seeing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugFrom {
    /// Peers in these networks, and `trustedProxies` (by default: loopback).
    Networks(Vec<IpNet>),
    /// Any client (Hipache's behaviour).
    Any,
}

impl Default for DebugFrom {
    fn default() -> Self {
        DebugFrom::Networks(defaults::debug_from())
    }
}

/// How routes read from Redis may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteCacheMode {
    /// Every request reads Redis (Hipache's meaning).
    #[default]
    Strict,
    /// Routes are cached and invalidated by Redis itself (client tracking).
    Tracking,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
// One per configuration, read at start: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Driver {
    /// Reads from `read`, dead marks to `write` (the same server unless a
    /// list of URLs or Hipache's `redisMaster*` keys said otherwise).
    Redis { read: RedisUrl, write: RedisUrl },
    /// A YAML routes file, reloaded when it changes; dead marks in memory.
    File(PathBuf),
}

/// Hipache 0.4's defaults, with ours where we differ (see
/// `docs/configuration.md`): what an empty file `{}` means.
impl Default for Config {
    fn default() -> Self {
        let http = defaults::HTTP_BIND_04
            .iter()
            .map(|ip| SocketAddr::new(*ip, defaults::HTTP_PORT))
            .collect();
        let redis = RedisUrl::default();
        Self {
            http,
            https: Vec::new(),
            user: None,
            group: None,
            workers: defaults::WORKERS,
            max_sockets: defaults::MAX_SOCKETS,
            max_sockets_wait: defaults::MAX_SOCKETS_WAIT,
            dead_backend_ttl: defaults::DEAD_BACKEND_TTL,
            tcp_timeout: Some(defaults::TCP_TIMEOUT),
            tunnel_idle_timeout: None,
            metrics_per_frontend: 0,
            connect_timeout: Some(defaults::CONNECT_TIMEOUT),
            retry_on_error: defaults::RETRY_ON_ERROR,
            dead_backend_on_500: defaults::DEAD_BACKEND_ON_500,
            http_keep_alive: defaults::HTTP_KEEP_ALIVE,
            debug: defaults::DEBUG,
            debug_from: DebugFrom::default(),
            upgrade_protocols: defaults::UPGRADE_PROTOCOLS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            forwarded_header: defaults::FORWARDED_HEADER,
            unknown_host_not_found: false,
            lru_cache: None,
            route_cache: RouteCacheMode::default(),
            static_dir: None,
            access_log: Some(AccessLogTarget::File(PathBuf::from(defaults::ACCESS_LOG))),
            driver: Driver::Redis {
                read: redis.clone(),
                write: redis,
            },
            trusted_proxies: Vec::new(),
            proxy_protocol_from: Vec::new(),
            max_body_size: None,
            max_header_size: defaults::MAX_HEADER_SIZE,
            max_headers: defaults::MAX_HEADERS,
            admin: Some(defaults::ADMIN),
            drain_timeout: defaults::DRAIN_TIMEOUT,
            memory_limit: None,
            tls_dir: None,
            backend_ca: None,
            redis_ca: None,
            backend_tls_verify: defaults::BACKEND_TLS_VERIFY,
            http2_websocket: defaults::HTTP2_WEBSOCKET,
            https_redirect: defaults::HTTPS_REDIRECT,
            tls_handshake_timeout: Some(defaults::TLS_HANDSHAKE_TIMEOUT),
            status_page: defaults::STATUS_PAGE,
            status_token: None,
        }
    }
}

/// Parses a configuration document (JSON or YAML) into a validated
/// [`Config`]. Pure: files named by the configuration are not checked, and
/// a relative `file:` driver path stays relative.
pub fn parse(text: &str, format: Format) -> Result<Config, ConfigErrors> {
    parse_document(text, format, None, false).map(|(c, _)| c)
}

/// [`parse`], plus the warnings (ignored or deprecated keys).
pub fn parse_with_warnings(
    text: &str,
    format: Format,
) -> Result<(Config, Vec<String>), ConfigErrors> {
    parse_document(text, format, None, false)
}

fn parse_document(
    text: &str,
    format: Format,
    base_dir: Option<&Path>,
    check_files: bool,
) -> Result<(Config, Vec<String>), ConfigErrors> {
    let doc = raw::read_document(text, format)?;
    let opts = reading::Options {
        base_dir,
        check_files,
    };
    build::build(&doc, &opts).map(|b| (b.config, b.warnings))
}

/// A configuration ready to run, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file read; `None` when there was none and the built-in defaults
    /// are used (worth a log line: "no config file, using built-in defaults").
    pub path: Option<PathBuf>,
    /// Worth logging at warn: ignored or deprecated keys.
    pub warnings: Vec<String>,
}

/// Finds the configuration file, reads and validates it, checks the files
/// it names, and applies the command-line and environment overrides.
///
/// The file: `--config` (`HIPACHE_CONFIG`) when given, which must exist;
/// else `config_<SETTINGS_FLAVOR>.json` in the working directory when
/// `SETTINGS_FLAVOR` is set; else `config.json` there; else the built-in
/// defaults.
pub fn load(args: &crate::cli::Args) -> Result<LoadedConfig, ConfigErrors> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let flavor = std::env::var("SETTINGS_FLAVOR").ok();
    load_from(args, &cwd, flavor.as_deref())
}

/// [`load`] with the working directory and `SETTINGS_FLAVOR` given, for tests.
pub fn load_from(
    args: &crate::cli::Args,
    cwd: &Path,
    settings_flavor: Option<&str>,
) -> Result<LoadedConfig, ConfigErrors> {
    let path = match &args.config {
        Some(p) => Some(cwd.join(p)),
        None => {
            let name = match settings_flavor.filter(|f| !f.is_empty()) {
                Some(f) => format!("config_{f}.json"),
                None => "config.json".to_owned(),
            };
            Some(cwd.join(name)).filter(|p| p.is_file())
        }
    };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut config = None;
    match &path {
        None => config = Some(Config::default()),
        Some(p) => match std::fs::read_to_string(p) {
            Err(e) => errors.push(ConfigError::new(
                "--config",
                format!("cannot read {}: {e}", p.display()),
            )),
            Ok(text) => {
                let base = p.parent().map(Path::to_path_buf);
                match parse_document(&text, Format::from_path(p), base.as_deref(), true) {
                    Ok((c, w)) => {
                        config = Some(c);
                        warnings = w;
                    }
                    Err(e) => errors.extend(e.errors),
                }
            }
        },
    }
    let overrides = Overrides::from_args(args, cwd, &mut errors);
    match config {
        Some(mut c) if errors.is_empty() => {
            overrides.apply(&mut c, &mut errors);
            if errors.is_empty() {
                return Ok(LoadedConfig {
                    config: c,
                    path,
                    warnings,
                });
            }
        }
        _ => {}
    }
    Err(ConfigErrors { file: path, errors })
}

/// The command-line and environment values, validated.
#[derive(Default)]
struct Overrides {
    driver: Option<Driver>,
    redis_password: Option<String>,
    sentinel_password: Option<String>,
    status_token: Option<String>,
    http_port: Option<u16>,
    https_port: Option<u16>,
    admin: Option<Option<SocketAddr>>,
    workers: Option<usize>,
}

impl Overrides {
    fn from_args(args: &crate::cli::Args, cwd: &Path, errors: &mut Vec<ConfigError>) -> Self {
        let mut o = Overrides {
            http_port: args.http_port,
            https_port: args.https_port,
            redis_password: args.redis_password.clone(),
            sentinel_password: args.sentinel_password.clone(),
            ..Overrides::default()
        };
        match (&args.routes, &args.driver) {
            (Some(_), Some(_)) => errors.push(ConfigError::new(
                "--routes",
                "give either --routes (HIPACHE_ROUTES) or --driver (HIPACHE_DRIVER), not both",
            )),
            (Some(p), None) => o.driver = Some(Driver::File(cwd.join(p))),
            (None, Some(text)) => {
                let mut urls = Vec::new();
                let parts = driver::split_list(text);
                for part in &parts {
                    match driver::parse_url(part, Some(cwd)) {
                        Ok(u) => urls.push(u),
                        Err(msg) => errors.push(ConfigError::new("--driver", msg)),
                    }
                }
                if !urls.is_empty() && urls.len() == parts.len() {
                    match driver::from_urls(urls) {
                        Ok(d) => o.driver = Some(d),
                        Err((_, msg)) => errors.push(ConfigError::new("--driver", msg)),
                    }
                }
            }
            (None, None) => {}
        }
        if let Some(Driver::File(p)) = &o.driver {
            if !p.is_file() {
                let key = if args.routes.is_some() {
                    "--routes"
                } else {
                    "--driver"
                };
                errors.push(ConfigError::new(
                    key,
                    format!("{}: no such file", p.display()),
                ));
            }
        }
        match &args.status_token {
            Some(t) if hipache_schema::status_page::is_valid_token(t) => {
                o.status_token = Some(t.clone())
            }
            // A secret: its value is never repeated in an error.
            Some(_) => errors.push(ConfigError::new(
                "--status-token",
                "must be a non-empty string of letters, digits and `-._~` (such as the output of `openssl rand -hex 32`)",
            )),
            None => {}
        }
        if let Some(text) = &args.admin {
            let t = text.trim();
            if ["off", "none", "false", ""].contains(&t.to_ascii_lowercase().as_str()) {
                o.admin = Some(None);
            } else {
                match raw::parse_socket_addr(t) {
                    Some(a) => o.admin = Some(Some(a)),
                    None => errors.push(ConfigError::new(
                        "--admin",
                        format!("expected IP:PORT (such as 0.0.0.0:10264) or off, got {text:?}"),
                    )),
                }
            }
        }
        if let Some(n) = args.workers {
            if n > defaults::MAX_WORKERS {
                errors.push(ConfigError::new(
                    "--workers",
                    format!("{n} is more than {}", defaults::MAX_WORKERS),
                ));
            } else {
                o.workers = Some(n);
            }
        }
        o
    }

    fn apply(self, c: &mut Config, errors: &mut Vec<ConfigError>) {
        if let Some(d) = self.driver {
            c.driver = d;
        }
        if let (Some(pw), Driver::Redis { read, write }) = (self.redis_password, &mut c.driver) {
            read.password = Some(pw.clone());
            write.password = Some(pw);
        }
        if let (Some(pw), Driver::Redis { read, write }) = (self.sentinel_password, &mut c.driver) {
            for s in [&mut read.sentinel, &mut write.sentinel]
                .into_iter()
                .flatten()
            {
                s.password = Some(pw.clone());
            }
        }
        if let Some(p) = self.http_port {
            for a in &mut c.http {
                a.set_port(p);
            }
        }
        if let Some(p) = self.https_port {
            for l in &mut c.https {
                l.address.set_port(p);
            }
        }
        if let Some(a) = self.admin {
            c.admin = a;
        }
        if let Some(t) = self.status_token {
            c.status_token = Some(t);
        }
        if let Some(n) = self.workers {
            c.workers = n;
        }
        if self.http_port.is_some() || self.https_port.is_some() {
            let all: Vec<SocketAddr> = c
                .http
                .iter()
                .copied()
                .chain(c.https.iter().map(|l| l.address))
                .collect();
            for (i, a) in all.iter().enumerate() {
                if a.port() != 0 && all[..i].contains(a) {
                    let key = if i < c.http.len() {
                        "--http-port"
                    } else {
                        "--https-port"
                    };
                    errors.push(ConfigError::new(key, format!("makes {a} a listener twice")));
                }
            }
        }
    }
}

impl Config {
    /// The effective configuration as a document in the 0.4 layout (which
    /// parses back to the same `Config`), Redis passwords replaced by `***`.
    pub fn censored_value(&self) -> Value {
        let mut doc = keys::show(keys::TOP, self);
        listeners::show(self, &mut doc);
        Value::Object(doc)
    }

    /// [`Config::censored_value`] as pretty JSON.
    pub fn censored_display(&self) -> String {
        serde_json::to_string_pretty(&self.censored_value()).unwrap_or_default()
    }
}

/// What `hipache --dry` prints on stdout: the effective configuration,
/// secrets censored.
pub fn dry_run_output(cfg: &Config) -> String {
    let mut out = cfg.censored_display();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests;
