//! What the page shows, as plain data: the HTML renders it and the JSON
//! endpoints serialize it, so both always say the same.

use serde::Serialize;

use hipache_schema::routes::{
    Filters, HeaderModifier, Match, PathCond, PathModifier, Pattern, Rule,
};
use hipache_schema::BackendEntry;

use super::frontends::{Found, Read};
use super::stats::{BackendStats, Snapshot};
use crate::routing::Table;

/// The process, its Redis and its certificates.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// Which process answered (a worker slot and pid, or the pid).
    pub answered_by: String,
    pub routes: RoutesState,
    pub certificates: Vec<Certificate>,
    /// Backends with live statistics, and the most there can be.
    pub backends_tracked: usize,
    pub backends_cap: usize,
}

/// The route store's state.
#[derive(Debug, Serialize)]
pub struct RoutesState {
    /// `"redis"` or `"file"`.
    pub driver: &'static str,
    /// The Redis URL (password censored) or the routes file.
    pub source: String,
    pub connected: bool,
    /// `"strict"`, `"tracking"`, `"ttl"`, or `"file"`.
    pub cache_mode: String,
    pub cache_entries: usize,
    /// Age of the oldest route served from memory in this Redis outage.
    pub staleness_seconds: i64,
}

#[derive(Debug, Serialize)]
pub struct Certificate {
    pub name: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Whole days left (negative: expired).
    pub days_left: i64,
}

/// A search's answer.
#[derive(Debug, Serialize)]
pub struct Search {
    pub query: String,
    pub hosts: Vec<Host>,
    /// Every matching host is listed.
    pub complete: bool,
    pub elapsed_ms: f64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Host {
    pub host: String,
    pub identifier: Option<String>,
}

impl Search {
    pub fn of(query: &str, found: Found, elapsed_ms: f64) -> Self {
        Search {
            query: query.to_owned(),
            hosts: found
                .hosts
                .into_iter()
                .map(|(host, identifier)| Host { host, identifier })
                .collect(),
            complete: found.complete,
            elapsed_ms,
            error: found.error,
        }
    }
}

/// One frontend host.
#[derive(Debug, Serialize)]
pub struct Frontend {
    pub host: String,
    /// `"list"`, `"document"`, `"refused"` (a document that does not
    /// validate) or `"none"`.
    pub kind: &'static str,
    pub identifier: Option<String>,
    pub backends: Vec<Backend>,
    /// A document's rules.
    pub rules: Vec<RuleView>,
    /// Seconds the dead marks have left.
    pub dead_ttl_seconds: Option<f64>,
    /// Why the host could not be read, or its document was refused.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Backend {
    pub position: usize,
    pub url: String,
    /// A list entry's path rule (`/api`, `=/login`).
    pub path: Option<String>,
    pub valid: bool,
    pub dead: bool,
    /// `None`: not counted (the page is off, the registry full, or no
    /// request yet).
    pub stats: Option<Snapshot>,
}

/// A route document's rule, in words.
#[derive(Debug, Serialize)]
pub struct RuleView {
    pub name: Option<String>,
    pub matches: Vec<String>,
    pub filters: Vec<String>,
    /// `(position, weight)` of its backends.
    pub backends: Vec<(usize, u32)>,
    /// Timeouts, retries, limits, protocol and policies.
    pub settings: Vec<String>,
}

impl Frontend {
    pub fn of(host: &str, read: Read, stats: Option<&BackendStats>) -> Self {
        let backend = |b: &BackendEntry| Backend {
            position: b.position,
            url: b.url_text.clone(),
            path: b.path.as_ref().map(|p| p.to_string()),
            valid: b.url.is_ok(),
            dead: read.dead.contains(&b.position),
            stats: stats.and_then(|s| s.get(&b.url_text)),
        };
        let (kind, identifier, backends, rules, error) = match &read.table {
            None => ("none", None, Vec::new(), Vec::new(), read.error.clone()),
            Some(Err(why)) => (
                "refused",
                None,
                Vec::new(),
                Vec::new(),
                Some(why.to_string()),
            ),
            Some(Ok(table)) => {
                let rules = match table {
                    Table::Document(d) => d
                        .rules
                        .iter()
                        .map(|r| {
                            rule(
                                d.rule_backends(r).map(|(b, w)| (b.position, w)).collect(),
                                r,
                            )
                        })
                        .collect(),
                    Table::List(_) => Vec::new(),
                };
                let kind = match table {
                    Table::Document(_) => "document",
                    Table::List(_) => "list",
                };
                let backends = table.backends().iter().map(backend).collect();
                (
                    kind,
                    Some(table.identifier().to_owned()),
                    backends,
                    rules,
                    None,
                )
            }
        };
        Frontend {
            host: host.to_owned(),
            kind,
            identifier,
            backends,
            rules,
            dead_ttl_seconds: read.dead_ttl.map(|d| d.as_secs_f64()),
            error,
        }
    }
}

fn rule(backends: Vec<(usize, u32)>, r: &Rule) -> RuleView {
    let mut settings = Vec::new();
    if let Some(t) = r.timeouts.request {
        settings.push(format!("request timeout {t:?}"));
    }
    if let Some(t) = r.timeouts.backend_request {
        settings.push(format!("backend timeout {t:?}"));
    }
    if let Some(retry) = &r.retry {
        settings.push(format!(
            "retry {} attempts on {:?}, backoff {:?}",
            retry.attempts, retry.codes, retry.backoff
        ));
    }
    if let Some(n) = r.max_body_size {
        settings.push(format!("max body {n} bytes"));
    }
    settings.push(format!("protocol {}", r.protocol.as_str()));
    let p = &r.policies;
    let policies: Vec<&str> = [
        (p.ip_allow.is_some(), "ipAllow"),
        (p.ip_deny.is_some(), "ipDeny"),
        (p.basic_auth.is_some(), "basicAuth"),
        (p.forward_auth.is_some(), "forwardAuth"),
        (p.rate_limit.is_some(), "rateLimit"),
        (p.affinity.is_some(), "affinity"),
        (p.cors.is_some(), "cors"),
        (p.hsts.is_some(), "hsts"),
        (p.security_headers.is_some(), "securityHeaders"),
        (p.error_pages.is_some(), "errorPages"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if !policies.is_empty() {
        settings.push(format!("policies: {}", policies.join(", ")));
    }
    RuleView {
        name: r.name.clone(),
        matches: r.matches.iter().map(describe_match).collect(),
        filters: describe_filters(&r.filters),
        backends,
        settings,
    }
}

fn describe_match(m: &Match) -> String {
    let mut parts = vec![match &m.path {
        PathCond::Exact(p) => format!("path = {p}"),
        PathCond::Prefix(p) => format!("path prefix {}", p.path),
        PathCond::Regex(re, _) => format!("path ~ {re}"),
    }];
    let cond = |what: &str, name: &str, p: &Pattern| match p {
        Pattern::Exact(v) => format!("{what} {name} = {v}"),
        Pattern::Regex(re, _) => format!("{what} {name} ~ {re}"),
    };
    parts.extend(
        m.headers
            .iter()
            .map(|c| cond("header", &c.name, &c.pattern)),
    );
    parts.extend(m.query.iter().map(|c| cond("query", &c.name, &c.pattern)));
    if let Some(method) = &m.method {
        parts.push(format!("method {method}"));
    }
    parts.join(", ")
}

fn describe_filters(f: &Filters) -> Vec<String> {
    let mut out = Vec::new();
    let headers = |out: &mut Vec<String>, which: &str, h: &HeaderModifier| {
        for (n, v) in &h.set {
            out.push(format!(
                "{which} header set {n}: {}",
                String::from_utf8_lossy(v.as_bytes())
            ));
        }
        for (n, v) in &h.add {
            out.push(format!(
                "{which} header add {n}: {}",
                String::from_utf8_lossy(v.as_bytes())
            ));
        }
        for n in &h.remove {
            out.push(format!("{which} header remove {n}"));
        }
    };
    if let Some(h) = &f.request_headers {
        headers(&mut out, "request", h);
    }
    if let Some(h) = &f.response_headers {
        headers(&mut out, "response", h);
    }
    if let Some(r) = &f.redirect {
        let mut s = format!("redirect {}", r.status.as_u16());
        if let Some(scheme) = r.scheme {
            s.push_str(&format!(" scheme {}", scheme.as_str()));
        }
        if let Some(h) = &r.hostname {
            s.push_str(&format!(" host {h}"));
        }
        if let Some(p) = r.port {
            s.push_str(&format!(" port {p}"));
        }
        if let Some(p) = &r.path {
            s.push_str(&format!(" {}", describe_path_modifier(p)));
        }
        out.push(s);
    }
    if let Some(r) = &f.rewrite {
        let mut s = "rewrite".to_owned();
        if let Some(h) = &r.hostname {
            s.push_str(&format!(" host {h}"));
        }
        if let Some(p) = &r.path {
            s.push_str(&format!(" {}", describe_path_modifier(p)));
        }
        out.push(s);
    }
    for m in &f.mirrors {
        out.push(format!(
            "mirror {}/{} of requests to {}",
            m.numerator, m.denominator, m.url_text
        ));
    }
    out
}

fn describe_path_modifier(p: &PathModifier) -> String {
    match p {
        PathModifier::Full(path) => format!("path {path}"),
        PathModifier::Prefix(prefix) => format!("matched prefix to {prefix}"),
    }
}
