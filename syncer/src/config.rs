//! Command-line flags (each with a `HIPACHE_SYNCER_…` environment variable)
//! and the validated [`Config`] the library runs on.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
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
    /// Validate the flags and environment, say so, and exit (nothing is
    /// contacted): for charts and deployment checks.
    #[arg(long, env = "HIPACHE_SYNCER_CHECK_CONFIG")]
    pub check_config: bool,

    /// Redis URL: redis://[:password@]host[:port][/db][#prefix]; the
    /// fragment is the key prefix, as in the proxy's driver URL.
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
    /// The Redis URL without its `#prefix` fragment.
    pub redis_url: String,
    /// Key prefix (the URL's fragment).
    pub redis_prefix: String,
    pub controller: String,
    pub ingress_class: String,
    pub namespace: Option<String>,
    pub backend_mode: BackendMode,
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
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--redis-url {0:?}: {1}")]
    RedisUrl(String, String),
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
    #[error("{0}")]
    Other(String),
}

/// Every problem found in the flags.
#[derive(Debug, Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Splits `redis://…#prefix` into the URL the client opens and the prefix.
pub fn split_redis_url(url: &str) -> Result<(String, String), String> {
    let url = url.trim();
    let (base, prefix) = match url.split_once('#') {
        Some((b, p)) => (b, p.to_owned()),
        None => (url, String::new()),
    };
    if !(base.starts_with("redis://")
        || base.starts_with("rediss://")
        || base.starts_with("unix://"))
    {
        return Err("expected redis://, rediss:// or unix://".to_owned());
    }
    redis::Client::open(base).map_err(|e| e.to_string())?;
    Ok((base.to_owned(), prefix))
}

/// The Redis URL with its password replaced (percent-encoded as needed).
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    parsed
        .set_password(Some(password))
        .map_err(|()| "this URL cannot carry a password".to_owned())?;
    Ok(parsed.to_string())
}

impl Args {
    /// Validates the flags into a [`Config`], reporting every problem.
    pub fn into_config(self) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let (redis_url, redis_prefix) = match split_redis_url(&self.redis_url) {
            Ok((url, prefix)) => match &self.redis_password {
                Some(pw) => match with_password(&url, pw) {
                    Ok(url) => (url, prefix),
                    Err(e) => {
                        errors.push(ConfigError::RedisUrl(self.redis_url.clone(), e));
                        (String::new(), String::new())
                    }
                },
                None => (url, prefix),
            },
            Err(e) => {
                errors.push(ConfigError::RedisUrl(self.redis_url.clone(), e));
                (String::new(), String::new())
            }
        };
        let publish = match (&self.publish_service, self.publish_address.is_empty()) {
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
        };
        let admin_address = if self.admin_address.trim().is_empty() {
            None
        } else {
            match self.admin_address.trim().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(e) => {
                    errors.push(ConfigError::AdminAddress(
                        self.admin_address.clone(),
                        e.to_string(),
                    ));
                    None
                }
            }
        };
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
        let method = match http::Method::from_bytes(
            self.health_method.trim().to_ascii_uppercase().as_bytes(),
        ) {
            Ok(m) => m,
            Err(_) => {
                errors.push(ConfigError::HealthMethod(self.health_method.clone()));
                http::Method::HEAD
            }
        };
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
        let identity = self
            .identity
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("hipache-syncer-{}", std::process::id()));
        let lease = (!self.no_leader_election).then(|| LeaseConfig {
            name: self.lease_name,
            namespace: self
                .lease_namespace
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "default".to_owned()),
            identity,
            duration: Duration::from_secs(self.lease_duration_seconds),
        });
        let health = (!self.no_health_checks).then(|| HealthConfig {
            method,
            path: self.health_path,
            host: self.health_host,
            interval: Duration::from_millis(self.health_interval_ms),
            connect_timeout: Duration::from_millis(self.health_connect_timeout_ms),
            timeout: Duration::from_millis(self.health_timeout_ms),
            fall: self.health_fall,
            rise: self.health_rise,
            dead_ttl: Duration::from_secs(self.dead_ttl_seconds),
            concurrency: DEFAULT_HEALTH_CONCURRENCY,
        });
        Ok(Config {
            redis_url,
            redis_prefix,
            controller: self.controller,
            ingress_class: self.ingress_class,
            namespace: self.namespace.filter(|n| !n.is_empty()),
            backend_mode: self.backend_mode,
            resync: Duration::from_secs(self.resync_seconds),
            publish,
            lease,
            admin_address,
            health,
            log_json: self.log_json,
            debounce: Duration::from_millis(20),
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
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379");
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
        let info = redis::IntoConnectionInfo::into_connection_info(c.redis_url.as_str()).unwrap();
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
        assert_eq!(c.redis_url, "redis://:pw@10.0.0.1:6380/2");
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
}
