//! Prometheus metrics: every family the proxy exports, named in one place.
//!
//! Labels come from bounded sets only (status class, method, error kind,
//! lookup outcome): never a raw host, path or client address. Per-frontend
//! series exist only when enabled, keyed by frontend identifier and capped,
//! with the rest counted under `other`.
//!
//! Each proxy owns its registry (several proxies can run in one test
//! process without mixing their numbers).

use std::collections::HashSet;
use std::time::Duration;

use http::{Method, StatusCode};
use parking_lot::Mutex;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric name, for docs/metrics.md and the dashboard checks.
pub mod names {
    pub const REQUESTS: &str = "hipache_requests_total";
    pub const REQUEST_DURATION: &str = "hipache_request_duration_seconds";
    pub const UPSTREAM_DURATION: &str = "hipache_upstream_duration_seconds";
    pub const REQUEST_BYTES: &str = "hipache_request_bytes_total";
    pub const RESPONSE_BYTES: &str = "hipache_response_bytes_total";
    pub const CONNECTIONS_OPEN: &str = "hipache_client_connections";
    pub const CONNECTIONS: &str = "hipache_client_connections_total";
    pub const IN_FLIGHT: &str = "hipache_requests_in_flight";
    pub const TUNNELS_OPEN: &str = "hipache_websocket_tunnels";
    pub const TUNNELS: &str = "hipache_websocket_tunnels_total";
    pub const TLS_HANDSHAKES: &str = "hipache_tls_handshakes_total";
    pub const TLS_HANDSHAKE_FAILURES: &str = "hipache_tls_handshake_failures_total";
    pub const PROXY_PROTOCOL_REFUSALS: &str = "hipache_proxy_protocol_refusals_total";
    pub const UPSTREAM_ERRORS: &str = "hipache_upstream_errors_total";
    pub const RETRIES: &str = "hipache_retries_total";
    pub const DEAD_MARKS: &str = "hipache_dead_marks_total";
    pub const DEAD_SKIPPED: &str = "hipache_dead_backends_skipped_total";
    pub const ROUTE_LOOKUPS: &str = "hipache_route_lookups_total";
    pub const REDIS_DURATION: &str = "hipache_redis_request_duration_seconds";
    pub const REDIS_ERRORS: &str = "hipache_redis_errors_total";
    pub const REDIS_CONNECTED: &str = "hipache_redis_connected";
    pub const CACHE: &str = "hipache_route_cache_total";
    pub const CACHE_INVALIDATIONS: &str = "hipache_route_cache_invalidations_total";
    pub const CACHE_ENTRIES: &str = "hipache_route_cache_entries";
    pub const STALENESS: &str = "hipache_route_staleness_seconds";
    pub const DOCUMENT_ERRORS: &str = "hipache_route_document_errors_total";
    pub const MIRRORS: &str = "hipache_mirror_requests_total";
    pub const RATE_LIMIT_DECISIONS: &str = "hipache_rate_limit_decisions_total";
    pub const RATE_LIMIT_REDIS_DURATION: &str = "hipache_rate_limit_redis_duration_seconds";
    pub const RATE_LIMIT_REDIS_ERRORS: &str = "hipache_rate_limit_redis_errors_total";
    pub const FORWARD_AUTH: &str = "hipache_forward_auth_total";
    pub const POLICY_REFUSALS: &str = "hipache_policy_refusals_total";
    pub const WORKER_RESTARTS: &str = "hipache_worker_restarts_total";
    pub const MEMORY_RECYCLES: &str = "hipache_memory_recycles_total";
    pub const BUILD_INFO: &str = "hipache_build_info";
    pub const FRONTEND_REQUESTS: &str = "hipache_frontend_requests_total";
    pub const TLS_CERT_EXPIRY: &str = "hipache_tls_certificate_expiration_timestamp_seconds";
    pub const GRPC_CALLS: &str = "hipache_grpc_calls_total";

    /// The process's own families (prometheus' process collector, from
    /// `/proc`), in the order of docs/metrics.md; the syncer exports them too.
    pub const PROCESS: &[&str] = &[
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_virtual_memory_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_threads",
    ];

    /// Every family, in the order of docs/metrics.md.
    pub const ALL: &[&str] = &[
        REQUESTS,
        REQUEST_DURATION,
        UPSTREAM_DURATION,
        REQUEST_BYTES,
        RESPONSE_BYTES,
        CONNECTIONS_OPEN,
        CONNECTIONS,
        IN_FLIGHT,
        TUNNELS_OPEN,
        TUNNELS,
        TLS_HANDSHAKES,
        TLS_HANDSHAKE_FAILURES,
        PROXY_PROTOCOL_REFUSALS,
        UPSTREAM_ERRORS,
        GRPC_CALLS,
        RETRIES,
        DEAD_MARKS,
        DEAD_SKIPPED,
        ROUTE_LOOKUPS,
        REDIS_DURATION,
        REDIS_ERRORS,
        REDIS_CONNECTED,
        CACHE,
        CACHE_INVALIDATIONS,
        CACHE_ENTRIES,
        STALENESS,
        DOCUMENT_ERRORS,
        MIRRORS,
        RATE_LIMIT_DECISIONS,
        RATE_LIMIT_REDIS_DURATION,
        RATE_LIMIT_REDIS_ERRORS,
        FORWARD_AUTH,
        POLICY_REFUSALS,
        WORKER_RESTARTS,
        MEMORY_RECYCLES,
        BUILD_INFO,
        FRONTEND_REQUESTS,
        TLS_CERT_EXPIRY,
    ];
}

/// Label for per-frontend series beyond the cap.
pub const OTHER_FRONTEND: &str = "other";

/// Latency buckets, in seconds: sub-millisecond proxying to slow backends.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Redis round trips are much faster.
const REDIS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0,
];

/// Values of the `class` label.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Values of the `method` label.
const METHOD_LABELS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
/// Values of the `listener` label.
const LISTENERS: [&str; 2] = ["http", "https"];
/// Values of the `result` label of dead marks.
const DEAD_MARK_RESULTS: [&str; 3] = ["written", "published", "dropped"];
/// Values of the `result` label of the route cache.
const CACHE_RESULTS: [&str; 3] = ["hit", "miss", "stale"];

/// Why an upstream exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Refused,
    ConnectTimeout,
    Timeout,
    Reset,
    Status5xx,
    Other,
}

impl UpstreamErrorKind {
    pub const ALL: [UpstreamErrorKind; 6] = [
        UpstreamErrorKind::Refused,
        UpstreamErrorKind::ConnectTimeout,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Status5xx,
        UpstreamErrorKind::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::Refused => "refused",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Status5xx => "5xx",
            UpstreamErrorKind::Other => "other",
        }
    }
}

/// How a lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupOutcome {
    Exact,
    Wildcard,
    CatchAll,
    NotFound,
    Error,
}

impl LookupOutcome {
    pub const ALL: [LookupOutcome; 5] = [
        LookupOutcome::Exact,
        LookupOutcome::Wildcard,
        LookupOutcome::CatchAll,
        LookupOutcome::NotFound,
        LookupOutcome::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LookupOutcome::Exact => "exact",
            LookupOutcome::Wildcard => "wildcard",
            LookupOutcome::CatchAll => "catch_all",
            LookupOutcome::NotFound => "not_found",
            LookupOutcome::Error => "error",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    /// The series of `requests` and `request_duration`, resolved once:
    /// the per-request path then does no label hashing or locking.
    requests_by: Vec<[IntCounter; METHOD_LABELS.len()]>,
    duration_by: Vec<Histogram>,
    pub upstream_duration: Histogram,
    pub request_bytes: IntCounter,
    pub response_bytes: IntCounter,
    connections_open: IntGaugeVec,
    connections: IntCounterVec,
    pub in_flight: IntGauge,
    pub tunnels_open: IntGauge,
    pub tunnels: IntCounter,
    pub tls_handshakes: IntCounter,
    pub tls_handshake_failures: IntCounter,
    pub proxy_protocol_refusals: IntCounter,
    upstream_errors: IntCounterVec,
    grpc_calls: IntCounterVec,
    pub retries: IntCounter,
    dead_marks: IntCounterVec,
    pub dead_skipped: IntCounter,
    route_lookups: IntCounterVec,
    pub redis_duration: Histogram,
    pub redis_errors: IntCounter,
    pub redis_connected: IntGauge,
    cache: IntCounterVec,
    pub cache_invalidations: IntCounter,
    pub cache_entries: IntGauge,
    pub staleness: IntGauge,
    pub document_errors: IntCounter,
    mirrors: IntCounterVec,
    rate_limit_decisions: IntCounterVec,
    pub rate_limit_redis_duration: Histogram,
    pub rate_limit_redis_errors: IntCounter,
    forward_auth: IntCounterVec,
    policy_refusals: IntCounterVec,
    pub worker_restarts: IntCounter,
    pub memory_recycles: IntCounter,
    frontend_requests: Option<IntCounterVec>,
    tls_cert_expiry: IntGaugeVec,
    frontend_cap: usize,
    frontends_seen: Mutex<HashSet<String>>,
}

/// A registry with the process's own families (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, ...), read from
/// `/proc` at each scrape.
pub(crate) fn registry_with_process_metrics() -> Registry {
    let registry = Registry::new();
    let process = prometheus::process_collector::ProcessCollector::for_self();
    if let Err(e) = registry.register(Box::new(process)) {
        tracing::warn!(error = %e, "process metrics unavailable");
    }
    registry
}

impl Metrics {
    /// `per_frontend`: the most frontends given their own series (0: none).
    pub fn new(per_frontend: usize) -> Self {
        let registry = registry_with_process_metrics();
        let r = &registry;
        let frontend_requests = (per_frontend > 0).then(|| {
            counter_vec(r, names::FRONTEND_REQUESTS, "Requests by frontend identifier (capped; the rest under \"other\") and status class.", &["frontend", "class"])
        });
        let build_info = gauge_vec(
            r,
            names::BUILD_INFO,
            "Always 1; labels carry the version.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let mut m = Self {
            requests: counter_vec(r, names::REQUESTS, "Requests answered, by status class and method.", &["class", "method"]),
            request_duration: histogram_vec(r, names::REQUEST_DURATION, "Time from request to response headers, by status class.", &["class"], LATENCY_BUCKETS),
            upstream_duration: histogram(r, names::UPSTREAM_DURATION, "Time from sending to a backend to its response headers.", LATENCY_BUCKETS),
            request_bytes: counter(r, names::REQUEST_BYTES, "Request body bytes received from clients and sent upstream."),
            response_bytes: counter(r, names::RESPONSE_BYTES, "Response body bytes sent to clients."),
            connections_open: gauge_vec(r, names::CONNECTIONS_OPEN, "Client connections open, by listener kind.", &["listener"]),
            connections: counter_vec(r, names::CONNECTIONS, "Client connections accepted, by listener kind.", &["listener"]),
            in_flight: gauge(r, names::IN_FLIGHT, "Requests being handled."),
            tunnels_open: gauge(r, names::TUNNELS_OPEN, "WebSocket (upgraded) tunnels open."),
            tunnels: counter(r, names::TUNNELS, "WebSocket (upgraded) tunnels established."),
            tls_handshakes: counter(r, names::TLS_HANDSHAKES, "TLS handshakes completed."),
            tls_handshake_failures: counter(r, names::TLS_HANDSHAKE_FAILURES, "TLS handshakes that failed or timed out."),
            proxy_protocol_refusals: counter(r, names::PROXY_PROTOCOL_REFUSALS, "Connections from proxyProtocolFrom closed without a valid PROXY header."),
            upstream_errors: counter_vec(r, names::UPSTREAM_ERRORS, "Failed upstream exchanges, by kind.", &["kind"]),
            grpc_calls: counter_vec(r, names::GRPC_CALLS, "gRPC calls answered, by the class of their grpc-status.", &["grpc_class"]),
            retries: counter(r, names::RETRIES, "Requests retried on another backend after a connection failure."),
            dead_marks: counter_vec(r, names::DEAD_MARKS, "Dead marks, by what was done: written (SADD+EXPIRE+PUBLISH), published (checker active), dropped.", &["result"]),
            dead_skipped: counter(r, names::DEAD_SKIPPED, "Backends skipped because they were marked dead."),
            route_lookups: counter_vec(r, names::ROUTE_LOOKUPS, "Route lookups, by outcome.", &["outcome"]),
            redis_duration: histogram(r, names::REDIS_DURATION, "Redis lookup round-trip time.", REDIS_BUCKETS),
            redis_errors: counter(r, names::REDIS_ERRORS, "Redis lookups that failed or timed out."),
            redis_connected: gauge(r, names::REDIS_CONNECTED, "1 while the route connection to Redis is up."),
            cache: counter_vec(r, names::CACHE, "Route cache use: hit, miss, or stale (served from memory while Redis is unreachable).", &["result"]),
            cache_invalidations: counter(r, names::CACHE_INVALIDATIONS, "Route cache invalidations received from Redis (or on reconnection)."),
            cache_entries: gauge(r, names::CACHE_ENTRIES, "Hosts held in the route cache."),
            staleness: gauge(r, names::STALENESS, "Age in seconds of the oldest route served from memory during the current Redis outage; 0 when Redis is reachable."),
            document_errors: counter(r, names::DOCUMENT_ERRORS, "Route documents refused (they do not parse or validate), once per change of a document."),
            mirrors: counter_vec(r, names::MIRRORS, "Mirrored request copies by outcome: answered, failed, or abandoned (the mirror could not keep up with the body).", &["outcome"]),
            rate_limit_decisions: counter_vec(r, names::RATE_LIMIT_DECISIONS, "Rate-limited requests by who decided and what: redis_allowed, redis_limited, local_allowed, local_limited (the process's own limiter), down_allowed, down_refused (Redis gave no decision: onRedisDown allow or deny).", &["decision"]),
            rate_limit_redis_duration: histogram(r, names::RATE_LIMIT_REDIS_DURATION, "Round-trip time of a rate-limit decision in Redis (EVALSHA), failed and timed-out ones included.", REDIS_BUCKETS),
            rate_limit_redis_errors: counter(r, names::RATE_LIMIT_REDIS_ERRORS, "Rate-limit decisions Redis did not give while connected: an error reply or no answer within the bound."),
            forward_auth: counter_vec(r, names::FORWARD_AUTH, "Forward-authentication subrequests by outcome: allowed (2xx), denied (401 or 403), error (any other status: 500), unavailable (no answer in time or no connection: 503).", &["outcome"]),
            policy_refusals: counter_vec(r, names::POLICY_REFUSALS, "Requests refused by an access policy, by policy: ip_list (403), rate_limit (429, or 503 when Redis is down and the limit says deny), basic_auth (401), forward_auth (the service's 401/403 or sign-in redirect, 500, 503).", &["policy"]),
            worker_restarts: counter(r, names::WORKER_RESTARTS, "Worker processes restarted by the master."),
            memory_recycles: counter(r, names::MEMORY_RECYCLES, "Workers recycled for exceeding the memory limit."),
            frontend_requests,
            tls_cert_expiry: gauge_vec(r, names::TLS_CERT_EXPIRY, "When each served certificate expires (its notAfter, Unix seconds); `default` is the earliest of the HTTPS listeners' default certificates.", &["certificate"]),
            frontend_cap: per_frontend,
            frontends_seen: Mutex::default(),
            requests_by: Vec::new(),
            duration_by: Vec::new(),
            registry,
        };
        m.zero_bounded_series();
        m.requests_by = STATUS_CLASSES
            .iter()
            .map(|class| METHOD_LABELS.map(|method| m.requests.with_label_values(&[class, method])))
            .collect();
        m.duration_by = STATUS_CLASSES
            .iter()
            .map(|class| m.request_duration.with_label_values(&[class]))
            .collect();
        m
    }

    /// Replaces the certificate-expiry series (at each scrape).
    pub fn set_certificate_expirations(&self, expirations: &[(String, i64)]) {
        self.tls_cert_expiry.reset();
        for (certificate, not_after) in expirations {
            self.tls_cert_expiry
                .with_label_values(&[certificate])
                .set(*not_after);
        }
    }

    /// Creates every series of the bounded label sets at 0, so that each
    /// family is exported from the first scrape and `rate()`/`increase()`
    /// see the first event (a series born at 1 hides that increment).
    fn zero_bounded_series(&self) {
        for class in STATUS_CLASSES {
            let _ = self.request_duration.with_label_values(&[class]);
            for method in METHOD_LABELS {
                let _ = self.requests.with_label_values(&[class, method]);
            }
        }
        for listener in LISTENERS {
            let _ = self.connections.with_label_values(&[listener]);
            let _ = self.connections_open.with_label_values(&[listener]);
        }
        for kind in UpstreamErrorKind::ALL {
            let _ = self.upstream_errors.with_label_values(&[kind.label()]);
        }
        for class in crate::forward::grpc::CLASSES {
            let _ = self.grpc_calls.with_label_values(&[class]);
        }
        for result in DEAD_MARK_RESULTS {
            let _ = self.dead_marks.with_label_values(&[result]);
        }
        for outcome in LookupOutcome::ALL {
            let _ = self.route_lookups.with_label_values(&[outcome.label()]);
        }
        for result in CACHE_RESULTS {
            let _ = self.cache.with_label_values(&[result]);
        }
        for outcome in MIRROR_OUTCOMES {
            let _ = self.mirrors.with_label_values(&[outcome]);
        }
        for decision in crate::ratelimit::DECISIONS {
            let _ = self.rate_limit_decisions.with_label_values(&[decision]);
        }
        for policy in POLICY_KINDS {
            let _ = self.policy_refusals.with_label_values(&[policy]);
        }
        for outcome in FORWARD_AUTH_OUTCOMES {
            let _ = self.forward_auth.with_label_values(&[outcome]);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// One answered request.
    pub fn request(
        &self,
        status: StatusCode,
        method: &Method,
        duration: Duration,
        identifier: Option<&str>,
    ) {
        let class = class_index(status);
        if let Some(by_method) = self.requests_by.get(class) {
            by_method[method_index(method)].inc();
        }
        if let Some(h) = self.duration_by.get(class) {
            h.observe(duration.as_secs_f64());
        }
        let class = STATUS_CLASSES[class];
        if let (Some(vec), Some(id)) = (&self.frontend_requests, identifier) {
            vec.with_label_values(&[self.frontend_label(id), class])
                .inc();
        }
    }

    fn frontend_label<'a>(&self, id: &'a str) -> &'a str {
        let mut seen = self.frontends_seen.lock();
        if seen.contains(id) {
            return id;
        }
        if seen.len() < self.frontend_cap {
            seen.insert(id.to_owned());
            return id;
        }
        OTHER_FRONTEND
    }

    pub fn connection_opened(&self, tls: bool) {
        let l = if tls { "https" } else { "http" };
        self.connections.with_label_values(&[l]).inc();
        self.connections_open.with_label_values(&[l]).inc();
    }

    pub fn connection_closed(&self, tls: bool) {
        self.connections_open
            .with_label_values(&[if tls { "https" } else { "http" }])
            .dec();
    }

    /// A gRPC call answered with `grpc-status` `code` (`None`: it ended
    /// without one).
    pub fn grpc_call(&self, code: Option<u32>) {
        self.grpc_calls
            .with_label_values(&[crate::forward::grpc::class(code)])
            .inc();
    }

    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors
            .with_label_values(&[kind.label()])
            .inc();
    }

    pub fn dead_mark(&self, result: &'static str) {
        self.dead_marks.with_label_values(&[result]).inc();
    }

    pub fn lookup(&self, outcome: LookupOutcome) {
        self.route_lookups
            .with_label_values(&[outcome.label()])
            .inc();
    }

    pub fn cache(&self, result: &'static str) {
        self.cache.with_label_values(&[result]).inc();
    }

    /// One mirrored copy's outcome (one of [`MIRROR_OUTCOMES`]).
    pub fn mirror(&self, outcome: &'static str) {
        self.mirrors.with_label_values(&[outcome]).inc();
    }

    /// One rate-limit decision (a value of the `decision` label).
    pub fn rate_limit(&self, decision: &'static str) {
        self.rate_limit_decisions
            .with_label_values(&[decision])
            .inc();
    }

    /// One forward-authentication subrequest's outcome (one of
    /// [`FORWARD_AUTH_OUTCOMES`]).
    pub fn forward_auth(&self, outcome: &'static str) {
        self.forward_auth.with_label_values(&[outcome]).inc();
    }

    /// A request refused by an access policy (one of [`POLICY_KINDS`]).
    pub fn policy_refusal(&self, policy: &'static str) {
        self.policy_refusals.with_label_values(&[policy]).inc();
    }
}

/// Outcomes of a mirrored copy.
pub const MIRROR_OUTCOMES: [&str; 3] = ["answered", "failed", "abandoned"];

/// Outcomes of a forward-authentication subrequest.
pub const FORWARD_AUTH_OUTCOMES: [&str; 4] = ["allowed", "denied", "error", "unavailable"];

/// The access policies that refuse requests, as `policy` label values.
pub const POLICY_KINDS: [&str; 4] = ["ip_list", "rate_limit", "basic_auth", "forward_auth"];

pub fn status_class(status: StatusCode) -> &'static str {
    STATUS_CLASSES[class_index(status)]
}

/// Index into [`STATUS_CLASSES`].
fn class_index(status: StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Index into [`METHOD_LABELS`].
fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are fixed and unique: registration only fails on a duplicate,
    // which the unit test below rules out.
    if let Err(e) = r.register(Box::new(m.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    m
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        r,
        IntCounter::with_opts(Opts::new(name, help)).unwrap_or_else(|_| unreachable_metric(name)),
    )
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|_| unreachable_metric(name)),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        r,
        IntGauge::with_opts(Opts::new(name, help)).unwrap_or_else(|_| unreachable_metric(name)),
    )
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|_| unreachable_metric(name)),
    )
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(
        r,
        Histogram::with_opts(opts).unwrap_or_else(|_| unreachable_metric(name)),
    )
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(
        r,
        HistogramVec::new(opts, labels).unwrap_or_else(|_| unreachable_metric(name)),
    )
}

/// Metric options are compile-time constants; an invalid one is a bug
/// caught by the unit tests, never by input.
#[allow(clippy::panic)]
fn unreachable_metric(name: &str) -> ! {
    panic!("invalid metric definition: {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exported_and_named_in_one_place() {
        let m = Metrics::new(2);
        // Touch the vectors so their families appear.
        m.request(
            StatusCode::OK,
            &Method::GET,
            Duration::from_millis(1),
            Some("a"),
        );
        m.connection_opened(false);
        m.upstream_error(UpstreamErrorKind::Refused);
        m.dead_mark("written");
        m.lookup(LookupOutcome::Exact);
        m.cache("hit");
        m.set_certificate_expirations(&[("a.test".to_owned(), 2_000_000_000)]);
        let text = m.render();
        for name in names::ALL.iter().chain(names::PROCESS) {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from /metrics"
            );
        }
        let exported = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(
            exported,
            names::ALL.len() + names::PROCESS.len(),
            "a family is exported but not listed in names::ALL or names::PROCESS"
        );
    }

    #[test]
    fn bounded_families_are_exported_before_any_event() {
        let text = Metrics::new(0).render();
        // The optional families: per frontend, and certificates (HTTPS).
        for name in names::ALL
            .iter()
            .filter(|n| ![names::FRONTEND_REQUESTS, names::TLS_CERT_EXPIRY].contains(n))
        {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from a fresh /metrics"
            );
        }
        assert!(text.contains(r#"hipache_upstream_errors_total{kind="refused"} 0"#));
        assert!(!text.contains(names::FRONTEND_REQUESTS));
    }

    #[test]
    fn per_frontend_series_are_capped() {
        let m = Metrics::new(2);
        for id in ["a", "b", "c", "d", "a"] {
            m.request(StatusCode::OK, &Method::GET, Duration::ZERO, Some(id));
        }
        let text = m.render();
        assert!(text.contains("frontend=\"a\""));
        assert!(text.contains("frontend=\"b\""));
        assert!(!text.contains("frontend=\"c\""));
        assert!(text.contains("frontend=\"other\""));
    }
}
