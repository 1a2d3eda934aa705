//! Command-line flags (each with a `HIPACHE_SYNCER_…` environment variable)
//! and the validated [`Config`] the library runs on.
//!
//! `--redis-url` is parsed by [`hipache_schema::driver`], the parser of the
//! proxy's driver URL, so the key prefix (`#hipache%3A` is `hipache:`) and
//! the credentials mean what they mean to the proxy. The Redis client is
//! given [`RedisUrl::server_url`], checked here to read back as the same
//! server, database and credentials (a URL rather than a
//! `redis::ConnectionInfo` because the store and the health checker open
//! connections from a URL, as their tests do).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use hipache_schema::RedisUrl;
use redis::{ConnectionAddr, IntoConnectionInfo};
use thiserror::Error;

/// Controller string of our IngressClass (`spec.controller`). The
/// `hipache.io/` domain keeps it apart from other controllers.
pub const DEFAULT_CONTROLLER: &str = "hipache.io/ingress-controller";
/// Value of the legacy `kubernetes.io/ingress.class` annotation we answer to.
pub const DEFAULT_CLASS: &str = "hipache";
/// Full resync (re-read Redis, repair drift, remove leftovers) this often:
/// short enough that a hand edit of an owned key is repaired within a
/// minute, long enough that a SCAN of a large Redis stays cheap.
pub const DEFAULT_RESYNC_SECS: u64 = 60;
/// Lease duration: a new leader takes over at most this long after the old
/// one stopped renewing (client-go's default for leader election).
pub const DEFAULT_LEASE_DURATION_SECS: u64 = 15;
/// Health probe interval; Hipache's hchecker probed every few seconds.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 3_000;
/// Connect timeout of a probe: a backend that cannot accept a TCP
/// connection in 2 s is as good as dead for a proxy.
pub const DEFAULT_HEALTH_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Response timeout of a probe (time to the response head).
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 3_000;
/// Consecutive failures before a backend is marked dead: one lost probe on
/// a busy backend does not take it out.
pub const DEFAULT_HEALTH_FALL: u32 = 2;
/// Consecutive successes before a dead backend is revived.
pub const DEFAULT_HEALTH_RISE: u32 = 2;
/// TTL of `dead:` sets written by the checker, renewed on every failed
/// probe; the proxy's own `deadBackendTTL` default.
pub const DEFAULT_DEAD_TTL_SECS: u64 = 30;
/// At most this many probes in flight at once.
pub const DEFAULT_HEALTH_CONCURRENCY: usize = 64;

/// Where backends point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendMode {
    /// Ready endpoint addresses from EndpointSlices (pod IPs).
    Endpoints,
    /// The Service's cluster IP and service port (kube-proxy balances).
    ClusterIp,
}

/// Flags of `hipache-syncer`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hipache-syncer",
    version,
    about = "Kubernetes Ingress to Hipache Redis syncer"
)]
pub struct Args {
    /// Validate the flags and environment, say so with the Redis target
    /// (password censored) and key prefix, and exit (nothing is
    /// contacted): for charts and deployment checks.
    #[arg(long, env = "HIPACHE_SYNCER_CHECK_CONFIG")]
    pub check_config: bool,

    /// Redis URL: redis://[[user]:password@]host[:port][/db][#prefix]
    /// (rediss:// for TLS), read as the proxy reads its driver URL: the
    /// fragment is the key prefix, percent-decoded.
    #[arg(
        long,
        env = "HIPACHE_SYNCER_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// Password for Redis, replacing any in `--redis-url`: for a secret with
    /// characters a URL would need escaped. Prefer the environment variable.
    #[arg(long, env = "HIPACHE_SYNCER_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// Password for the Sentinels of a `redis+sentinel://` URL, replacing
    /// any `sentinel_password` in it. Prefer the environment variable.
    #[arg(long, env = "HIPACHE_SYNCER_SENTINEL_PASSWORD", hide_env_values = true)]
    pub sentinel_password: Option<String>,

    /// IngressClass controller string we implement.
    #[arg(long, env = "HIPACHE_SYNCER_CONTROLLER", default_value = DEFAULT_CONTROLLER)]
    pub controller: String,

    /// Value of the legacy kubernetes.io/ingress.class annotation we serve.
    #[arg(long, env = "HIPACHE_SYNCER_INGRESS_CLASS", default_value = DEFAULT_CLASS)]
    pub ingress_class: String,

    /// Watch only this namespace (Ingresses, Services, EndpointSlices);
    /// default: all namespaces.
    #[arg(long, env = "HIPACHE_SYNCER_NAMESPACE")]
    pub namespace: Option<String>,

    /// Also take the Ingresses of class `nginx` (`ingressClassName: nginx`
    /// or the annotation `kubernetes.io/ingress.class: nginx`), to switch a
    /// cluster from ingress-nginx without editing its Ingresses.
    #[arg(long, env = "HIPACHE_SYNCER_NGINX_CLASS")]
    pub nginx_class: bool,

    /// Serve an Ingress whose ingress-nginx annotations restrict access
    /// (allow lists, authentication, limits, snippets: not supported)
    /// without the restriction. Default: such an Ingress is not served, and
    /// its Event says why.
    #[arg(long, env = "HIPACHE_SYNCER_SERVE_UNSUPPORTED_PROTECTIONS")]
    pub serve_unsupported_protections: bool,

    /// Backends: pod IPs from EndpointSlices, or the Service's cluster IP.
    #[arg(
        long,
        env = "HIPACHE_SYNCER_BACKEND_MODE",
        value_enum,
        default_value = "endpoints"
    )]
    pub backend_mode: BackendMode,

    /// Seconds between full resyncs.
    #[arg(long, env = "HIPACHE_SYNCER_RESYNC_SECONDS", default_value_t = DEFAULT_RESYNC_SECS)]
    pub resync_seconds: u64,

    /// Service whose LoadBalancer ingress (or external IPs) is published in
    /// Ingress status: namespace/name.
    #[arg(long, env = "HIPACHE_SYNCER_PUBLISH_SERVICE")]
    pub publish_service: Option<String>,

    /// Fixed addresses (IPs or host names, comma-separated) published in
    /// Ingress status instead of a Service's.
    #[arg(long, env = "HIPACHE_SYNCER_PUBLISH_ADDRESS", value_delimiter = ',')]
    pub publish_address: Vec<String>,

    /// Disable leader election (a single replica that always writes).
    #[arg(long, env = "HIPACHE_SYNCER_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,

    /// Name of the coordination.k8s.io/v1 Lease.
    #[arg(
        long,
        env = "HIPACHE_SYNCER_LEASE_NAME",
        default_value = "hipache-syncer"
    )]
    pub lease_name: String,

    /// Namespace of the Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long, env = "HIPACHE_SYNCER_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Lease duration in seconds.
    #[arg(long, env = "HIPACHE_SYNCER_LEASE_DURATION_SECONDS", default_value_t = DEFAULT_LEASE_DURATION_SECS)]
    pub lease_duration_seconds: u64,

    /// Identity in the Lease (default: $POD_NAME, else the host name).
    #[arg(long, env = "HIPACHE_SYNCER_IDENTITY")]
    pub identity: Option<String>,

    /// Admin listener: /metrics, /healthz, /readyz. Empty disables it.
    #[arg(
        long,
        env = "HIPACHE_SYNCER_ADMIN_ADDRESS",
        default_value = "0.0.0.0:9102"
    )]
    pub admin_address: String,

    /// Disable active health checks.
    #[arg(long, env = "HIPACHE_SYNCER_NO_HEALTH_CHECKS")]
    pub no_health_checks: bool,

    /// HTTP method of health probes.
    #[arg(long, env = "HIPACHE_SYNCER_HEALTH_METHOD", default_value = "HEAD")]
    pub health_method: String,

    /// Path of health probes.
    #[arg(long, env = "HIPACHE_SYNCER_HEALTH_PATH", default_value = "/")]
    pub health_path: String,

    /// Host header of health probes (default: the frontend host, or the
    /// backend's address for wildcard and catch-all frontends).
    #[arg(long, env = "HIPACHE_SYNCER_HEALTH_HOST")]
    pub health_host: Option<String>,

    /// Milliseconds between two probes of a backend.
    #[arg(long, env = "HIPACHE_SYNCER_HEALTH_INTERVAL_MS", default_value_t = DEFAULT_HEALTH_INTERVAL_MS)]
    pub health_interval_ms: u64,

    /// Connect timeout of a probe, milliseconds.
    #[arg(long, env = "HIPACHE_SYNCER_HEALTH_CONNECT_TIMEOUT_MS", default_value_t = DEFAULT_HEALTH_CONNECT_TIMEOUT_MS)]
    pub health_connect_timeout_ms: u64,

    /// Response timeout of a probe, milliseconds.
    #[arg(long, env = "HIPACHE_SYNCER_HEALTH_TIMEOUT_MS", default_value_t = DEFAULT_HEALTH_TIMEOUT_MS)]
    pub health_timeout_ms: u64,

    /// Consecutive failed probes before a backend is marked dead.
    #[arg(long, env = "HIPACHE_SYNCER_HEALTH_FALL", default_value_t = DEFAULT_HEALTH_FALL)]
    pub health_fall: u32,

    /// Consecutive good probes before a dead backend is revived.
    #[arg(long, env = "HIPACHE_SYNCER_HEALTH_RISE", default_value_t = DEFAULT_HEALTH_RISE)]
    pub health_rise: u32,

    /// TTL in seconds of the dead: sets written by the checker.
    #[arg(long, env = "HIPACHE_SYNCER_DEAD_TTL_SECONDS", default_value_t = DEFAULT_DEAD_TTL_SECS)]
    pub dead_ttl_seconds: u64,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "HIPACHE_SYNCER_LOG_JSON")]
    pub log_json: bool,

    /// Serve the status page (`/status`: the hosts written, the Ingresses
    /// behind them, their problems) on the admin listener.
    #[arg(long, env = "HIPACHE_SYNCER_STATUS_PAGE")]
    pub status_page: bool,

    /// A token every `/status` request must carry (`Authorization: Bearer`,
    /// or `?token=` once, then a cookie): letters, digits and `-._~`.
    #[arg(long, env = "HIPACHE_SYNCER_STATUS_TOKEN")]
    pub status_token: Option<String>,
}

/// The status page's settings (`--status-page`).
#[derive(Clone, PartialEq, Eq)]
pub struct StatusPageConfig {
    /// `--status-token`; `None`: none asked.
    pub token: Option<String>,
}

impl std::fmt::Debug for StatusPageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusPageConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Where the status addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishStatus {
    /// No status is written.
    None,
    /// The LoadBalancer ingress or external IPs of this Service.
    Service { namespace: String, name: String },
    /// These addresses (IPs go to `ip`, names to `hostname`).
    Fixed(Vec<String>),
}

/// Active health-check settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub method: http::Method,
    pub path: String,
    pub host: Option<String>,
    pub interval: Duration,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
    pub dead_ttl: Duration,
    pub concurrency: usize,
}

/// Lease settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Redis server, credentials and key prefix of `--redis-url`, with
    /// `--redis-password` applied. Logs show `redis.censored()`.
    pub redis: RedisUrl,
    /// Key prefix: `redis.prefix`, the URL's `#prefix` percent-decoded.
    pub redis_prefix: String,
    pub controller: String,
    pub ingress_class: String,
    pub namespace: Option<String>,
    pub backend_mode: BackendMode,
    /// `--nginx-class`.
    pub nginx_class: bool,
    /// `--serve-unsupported-protections`.
    pub serve_unsupported_protections: bool,
    pub resync: Duration,
    pub publish: PublishStatus,
    /// `None`: no leader election, always write.
    pub lease: Option<LeaseConfig>,
    pub admin_address: Option<SocketAddr>,
    /// `None`: no active health checks.
    pub health: Option<HealthConfig>,
    pub log_json: bool,
    /// Debounce between a watch event and the write it causes, so that a
    /// burst of events (a re-list) costs one diff.
    pub debounce: Duration,
    /// `None`: no status page (the default).
    pub status_page: Option<StatusPageConfig>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Never the URL itself: it may hold a password.
    #[error("--redis-url: {0}")]
    RedisUrl(String),
    #[error("--publish-service {0:?}: expected namespace/name")]
    PublishService(String),
    #[error("--publish-service and --publish-address are exclusive")]
    PublishBoth,
    #[error("--admin-address {0:?}: {1}")]
    AdminAddress(String, String),
    #[error("--health-method {0:?} is not an HTTP method")]
    HealthMethod(String),
    #[error("--health-path {0:?} must start with '/'")]
    HealthPath(String),
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// Never the token itself: it is a secret.
    #[error("--status-token: must be letters, digits and -._~ (such as the output of openssl rand -hex 32)")]
    StatusToken,
    #[error(
        "--status-page needs the admin listener (--admin-address), the only one it is served on"
    )]
    StatusPageWithoutAdmin,
    #[error("{0}")]
    Other(String),
}

/// Every problem found in the flags.
#[derive(Debug, Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Parses `--redis-url` and applies `--redis-password` (an empty one means
/// none, as an empty password in the URL does).
pub fn redis_target(
    url: &str,
    password: Option<&str>,
    sentinel_password: Option<&str>,
) -> Result<RedisUrl, String> {
    let mut redis = RedisUrl::parse(url).map_err(|e| e.to_string())?;
    if let Some(pw) = password {
        redis.password = (!pw.is_empty()).then(|| pw.to_owned());
    }
    if let (Some(pw), Some(s)) = (sentinel_password, &mut redis.sentinel) {
        s.password = (!pw.is_empty()).then(|| pw.to_owned());
    }
    // The servers of a Sentinel URL are plain URLs made from its parts:
    // the first Sentinel's address stands for them.
    check_client_reading(&redis.at(&redis.host, redis.port))?;
    Ok(redis)
}

/// The Redis client parses [`RedisUrl::server_url`] again (with a general
/// URL parser): refuses a URL it would read as another server, database or
/// credentials (a host it would escape or refuse), so the difference shows
/// at startup and in `--check-config`, not as a connection to elsewhere.
fn check_client_reading(redis: &RedisUrl) -> Result<(), String> {
    let target = redis.censored();
    let info = redis
        .server_url()
        .into_connection_info()
        .map_err(|e| format!("{target}: {e}"))?;
    let addr = if redis.tls {
        ConnectionAddr::TcpTls {
            host: redis.host.clone(),
            port: redis.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(redis.host.clone(), redis.port)
    };
    let settings = info.redis_settings();
    if *info.addr() != addr {
        return Err(format!(
            "{target}: the Redis client would connect to {} instead",
            info.addr()
        ));
    }
    if settings.db() != redis.db
        || settings.username() != redis.username.as_deref()
        || settings.password() != redis.password.as_deref()
    {
        return Err(format!(
            "{target}: the Redis client would read another database or credentials"
        ));
    }
    Ok(())
}

impl Args {
    /// Validates the flags into a [`Config`], reporting every problem.
    pub fn into_config(self) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let redis = match redis_target(
            &self.redis_url,
            self.redis_password.as_deref(),
            self.sentinel_password.as_deref(),
        ) {
            Ok(redis) => redis,
            Err(e) => {
                errors.push(ConfigError::RedisUrl(e));
                RedisUrl::default()
            }
        };
        let publish = self.publish_status(&mut errors);
        let admin_address = self.parse_admin_address(&mut errors);
        let status_page = self.status_page(admin_address.is_some(), &mut errors);
        self.check_positive(&mut errors);
        let method = self.health_method(&mut errors);
        if !self.health_path.starts_with('/') {
            errors.push(ConfigError::HealthPath(self.health_path.clone()));
        }
        if self.controller.trim().is_empty() {
            errors.push(ConfigError::Other(
                "--controller must not be empty".to_owned(),
            ));
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let lease = self.lease();
        let health = self.health(method);
        Ok(Config {
            redis_prefix: redis.prefix.clone(),
            redis,
            controller: self.controller,
            ingress_class: self.ingress_class,
            namespace: self.namespace.filter(|n| !n.is_empty()),
            backend_mode: self.backend_mode,
            nginx_class: self.nginx_class,
            serve_unsupported_protections: self.serve_unsupported_protections,
            resync: Duration::from_secs(self.resync_seconds),
            publish,
            lease,
            admin_address,
            health,
            log_json: self.log_json,
            debounce: Duration::from_millis(20),
            status_page,
        })
    }

    /// `--publish-service` (namespace/name) or `--publish-address`, not both.
    fn publish_status(&self, errors: &mut Vec<ConfigError>) -> PublishStatus {
        match (&self.publish_service, self.publish_address.is_empty()) {
            (Some(_), false) => {
                errors.push(ConfigError::PublishBoth);
                PublishStatus::None
            }
            (Some(s), true) => match s.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    PublishStatus::Service {
                        namespace: ns.to_owned(),
                        name: name.to_owned(),
                    }
                }
                _ => {
                    errors.push(ConfigError::PublishService(s.clone()));
                    PublishStatus::None
                }
            },
            (None, false) => PublishStatus::Fixed(
                self.publish_address
                    .iter()
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect(),
            ),
            (None, true) => PublishStatus::None,
        }
    }

    /// `--status-page` and `--status-token`.
    fn status_page(&self, admin: bool, errors: &mut Vec<ConfigError>) -> Option<StatusPageConfig> {
        let token = self.status_token.clone().filter(|t| !t.is_empty());
        if token
            .as_deref()
            .is_some_and(|t| !hipache_schema::status_page::is_valid_token(t))
        {
            errors.push(ConfigError::StatusToken);
        }
        if !self.status_page {
            return None;
        }
        if !admin {
            errors.push(ConfigError::StatusPageWithoutAdmin);
        }
        Some(StatusPageConfig { token })
    }

    /// `--admin-address`; empty disables the admin listener.
    fn parse_admin_address(&self, errors: &mut Vec<ConfigError>) -> Option<SocketAddr> {
        let addr = self.admin_address.trim();
        if addr.is_empty() {
            return None;
        }
        match addr.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                errors.push(ConfigError::AdminAddress(
                    self.admin_address.clone(),
                    e.to_string(),
                ));
                None
            }
        }
    }

    /// Every period, timeout, threshold and TTL is above zero.
    fn check_positive(&self, errors: &mut Vec<ConfigError>) {
        for (name, v) in [
            ("--resync-seconds", self.resync_seconds),
            ("--lease-duration-seconds", self.lease_duration_seconds),
            ("--health-interval-ms", self.health_interval_ms),
            (
                "--health-connect-timeout-ms",
                self.health_connect_timeout_ms,
            ),
            ("--health-timeout-ms", self.health_timeout_ms),
            ("--health-fall", u64::from(self.health_fall)),
            ("--health-rise", u64::from(self.health_rise)),
            ("--dead-ttl-seconds", self.dead_ttl_seconds),
        ] {
            if v == 0 {
                errors.push(ConfigError::Zero(name));
            }
        }
    }

    /// `--health-method`, in any case.
    fn health_method(&self, errors: &mut Vec<ConfigError>) -> http::Method {
        let name = self.health_method.trim().to_ascii_uppercase();
        match http::Method::from_bytes(name.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                errors.push(ConfigError::HealthMethod(self.health_method.clone()));
                http::Method::HEAD
            }
        }
    }

    /// The Lease settings, `None` without leader election. The identity
    /// defaults to `$POD_NAME`, then `$HOSTNAME`, then one with our pid.
    fn lease(&self) -> Option<LeaseConfig> {
        if self.no_leader_election {
            return None;
        }
        let identity = self
            .identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("hipache-syncer-{}", std::process::id()));
        Some(LeaseConfig {
            name: self.lease_name.clone(),
            namespace: self
                .lease_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "default".to_owned()),
            identity,
            duration: Duration::from_secs(self.lease_duration_seconds),
        })
    }

    /// The active health-check settings, `None` when they are disabled.
    fn health(&self, method: http::Method) -> Option<HealthConfig> {
        (!self.no_health_checks).then(|| HealthConfig {
            method,
            path: self.health_path.clone(),
            host: self.health_host.clone(),
            interval: Duration::from_millis(self.health_interval_ms),
            connect_timeout: Duration::from_millis(self.health_connect_timeout_ms),
            timeout: Duration::from_millis(self.health_timeout_ms),
            fall: self.health_fall,
            rise: self.health_rise,
            dead_ttl: Duration::from_secs(self.dead_ttl_seconds),
            concurrency: DEFAULT_HEALTH_CONCURRENCY,
        })
    }
}

/// Parses flags from an iterator (tests) into a validated config.
pub fn parse_from<I, T>(args: I) -> Result<Config, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::try_parse_from(args).map_err(|e| e.to_string())?;
    args.into_config().map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane() {
        let c = parse_from(["hipache-syncer"]).unwrap();
        assert_eq!(c.redis.server_url(), "redis://127.0.0.1:6379");
        assert_eq!(c.redis_prefix, "");
        assert_eq!(c.controller, DEFAULT_CONTROLLER);
        assert_eq!(c.backend_mode, BackendMode::Endpoints);
        assert!(c.lease.is_some());
        let h = c.health.unwrap();
        assert_eq!(h.method, http::Method::HEAD);
        assert_eq!((h.fall, h.rise), (2, 2));
    }

    #[test]
    fn redis_password_replaces_the_urls() {
        let c = parse_from([
            "hipache-syncer",
            "--redis-url",
            "redis://:old@10.0.0.1:6380/2#tenant",
            "--redis-password",
            "p@ss:w/rd#1",
        ])
        .unwrap();
        assert_eq!(c.redis_prefix, "tenant");
        let info = redis::IntoConnectionInfo::into_connection_info(c.redis.server_url()).unwrap();
        assert_eq!(info.redis_settings().password(), Some("p@ss:w/rd#1"));
        assert_eq!(info.redis_settings().db(), 2);
    }

    #[test]
    fn prefix_and_modes() {
        let c = parse_from([
            "x",
            "--redis-url",
            "redis://:pw@10.0.0.1:6380/2#tenant1",
            "--backend-mode",
            "cluster-ip",
            "--publish-service",
            "ingress/hipache",
            "--no-leader-election",
            "--admin-address",
            "",
        ])
        .unwrap();
        assert_eq!(c.redis.server_url(), "redis://:pw@10.0.0.1:6380/2");
        // Printing the configuration never shows the password.
        assert!(!format!("{c:?}").contains(":pw@"), "{c:?}");
        assert_eq!(c.redis_prefix, "tenant1");
        assert_eq!(c.backend_mode, BackendMode::ClusterIp);
        assert_eq!(
            c.publish,
            PublishStatus::Service {
                namespace: "ingress".into(),
                name: "hipache".into()
            }
        );
        assert!(c.lease.is_none() && c.admin_address.is_none());
    }

    #[test]
    fn prefix_is_percent_decoded_as_the_proxy_does() {
        // The chart's URL for `redis.keyPrefix: "hipache:"`.
        let c = parse_from(["x", "--redis-url", "redis://127.0.0.1:6379#hipache%3A"]).unwrap();
        assert_eq!(c.redis_prefix, "hipache:");
        assert_eq!(c.redis.server_url(), "redis://127.0.0.1:6379");
        let proxy = hipache::config::driver::parse_url("redis://127.0.0.1:6379#hipache%3A", None);
        let Ok(hipache::config::driver::DriverUrl::Redis(proxy)) = proxy else {
            panic!("the proxy refused it: {proxy:?}")
        };
        assert_eq!(proxy.prefix, c.redis_prefix);
    }

    #[test]
    fn hipache_forms_and_escapes_reach_the_client() {
        for (url, password, user, want_password, db) in [
            // Hipache: user info without ':' is the password.
            ("redis://secret@h:6380/3", None, None, Some("secret"), 3),
            (
                "redis://bob:s%40cr%3At@h",
                None,
                Some("bob"),
                Some("s@cr:t"),
                0,
            ),
            // The chart's form: the ACL user in the URL, the password apart.
            (
                "redis://bob:@h/1",
                Some("p%40ss w/rd#1"),
                Some("bob"),
                Some("p%40ss w/rd#1"),
                1,
            ),
            ("redis://:old@h", Some(""), None, None, 0),
            ("redis:", None, None, None, 0),
        ] {
            let mut args = vec!["x", "--redis-url", url];
            if let Some(pw) = password {
                args.extend(["--redis-password", pw]);
            }
            let c = parse_from(args).unwrap();
            let info = c.redis.server_url().into_connection_info().unwrap();
            let settings = info.redis_settings();
            assert_eq!(settings.username(), user, "{url}");
            assert_eq!(settings.password(), want_password, "{url}");
            assert_eq!(settings.db(), db, "{url}");
        }
    }

    #[test]
    fn ipv6_and_tls_targets() {
        let c = parse_from(["x", "--redis-url", "rediss://[::1]:6390/2#p"]).unwrap();
        assert_eq!(c.redis.server_url(), "rediss://[::1]:6390/2");
        let info = c.redis.server_url().into_connection_info().unwrap();
        assert!(
            matches!(info.addr(), ConnectionAddr::TcpTls { host, port: 6390, .. } if host == "::1")
        );
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_password() {
        for url in [
            "redis://:hunter2@h:99999",
            "redis://:hunter2@h?db=1",
            "redis://:hunter2@h/x",
            "redis://:hunter2@0.0.0.0",
            "redis://:hunter2@ré",
            "unix:///run/redis.sock",
            "http://:hunter2@h",
        ] {
            let err = parse_from(["x", "--redis-url", url]).unwrap_err();
            assert!(err.contains("--redis-url"), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[test]
    fn censored_target_hides_the_password_override() {
        let c = parse_from([
            "x",
            "--redis-url",
            "redis://bob:@10.0.0.1/2#hipache%3A",
            "--redis-password",
            "hunter2",
        ])
        .unwrap();
        assert_eq!(
            c.redis.censored(),
            "redis://bob:***@10.0.0.1:6379/2#hipache:"
        );
        assert!(!format!("{:?}", c.redis).contains("hunter2"));
    }

    mod client_reading {
        use super::*;
        use proptest::prelude::*;
        use std::net::Ipv6Addr;

        fn host() -> impl Strategy<Value = (String, String)> {
            // (as written in the URL, as the client should see it)
            prop_oneof![
                "[a-z0-9]([a-z0-9_-]{0,20}[a-z0-9])?(\\.[a-z0-9-]{1,10}){0,3}"
                    .prop_map(|h| (h.clone(), h)),
                any::<[u8; 4]>()
                    .prop_filter("not a wildcard", |o| *o != [0; 4])
                    .prop_map(|o| {
                        let ip = std::net::Ipv4Addr::from(o).to_string();
                        (ip.clone(), ip)
                    }),
                (any::<u128>(), any::<bool>())
                    .prop_filter("not a wildcard", |(b, _)| *b != 0)
                    .prop_map(|(b, full)| {
                        let ip = Ipv6Addr::from(b);
                        let written = if full {
                            ip.segments().map(|s| format!("{s:X}")).join(":")
                        } else {
                            ip.to_string()
                        };
                        (format!("[{written}]"), ip.to_string())
                    }),
            ]
        }

        fn escape(text: &str) -> String {
            text.bytes().map(|b| format!("%{b:02X}")).collect()
        }

        proptest! {
            /// Whatever the URL's parts, the Redis client is handed a URL
            /// it reads back as the same server, database and credentials,
            /// with the prefix decoded as the proxy decodes it.
            #[test]
            fn the_client_reads_the_parsed_parts(
                tls in any::<bool>(),
                (written, host) in host(),
                port in 1..=u16::MAX,
                db in 0..=i64::MAX,
                user in proptest::option::of(".{1,12}"),
                password in proptest::option::of(".{1,12}"),
                override_password in proptest::option::of(".{1,12}"),
                prefix in ".{0,12}",
            ) {
                let auth = match (&user, &password) {
                    (None, None) => String::new(),
                    (u, p) => format!(
                        "{}:{}@",
                        u.as_deref().map(escape).unwrap_or_default(),
                        p.as_deref().map(escape).unwrap_or_default()
                    ),
                };
                let scheme = if tls { "rediss" } else { "redis" };
                let url = format!("{scheme}://{auth}{written}:{port}/{db}#{}", escape(&prefix));
                let mut args = vec!["x".to_owned(), "--redis-url".to_owned(), url.clone()];
                if let Some(pw) = &override_password {
                    args.push(format!("--redis-password={pw}"));
                }
                let c = parse_from(args).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
                prop_assert_eq!(&c.redis_prefix, &prefix);
                let info = c.redis.server_url().into_connection_info().unwrap();
                let want = if tls {
                    ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None }
                } else {
                    ConnectionAddr::Tcp(host, port)
                };
                prop_assert_eq!(info.addr(), &want);
                let settings = info.redis_settings();
                let want_password = override_password.or(password);
                prop_assert_eq!(settings.db(), db);
                prop_assert_eq!(settings.username(), user.as_deref());
                prop_assert_eq!(settings.password(), want_password.as_deref());
            }
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = parse_from([
            "x",
            "--redis-url",
            "http://nope",
            "--publish-service",
            "noslash",
            "--health-path",
            "x",
            "--health-fall",
            "0",
        ])
        .unwrap_err();
        for needle in [
            "--redis-url",
            "--publish-service",
            "--health-path",
            "--health-fall",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
    }

    #[test]
    fn the_status_page_is_off_by_default_and_needs_the_admin_listener() {
        assert_eq!(parse_from(["x"]).unwrap().status_page, None);
        let c = parse_from(["x", "--status-page", "--status-token", "a-b.c_d~9"]).unwrap();
        let page = c.status_page.unwrap();
        assert_eq!(page.token.as_deref(), Some("a-b.c_d~9"));
        assert!(!format!("{page:?}").contains("a-b.c_d~9"));
        let err = parse_from(["x", "--status-page", "--admin-address", ""]).unwrap_err();
        assert!(err.contains("--status-page"), "{err}");
        let err = parse_from(["x", "--status-token", "semi;colon"]).unwrap_err();
        assert!(
            err.contains("--status-token") && !err.contains("semi;colon"),
            "{err}"
        );
    }
}
