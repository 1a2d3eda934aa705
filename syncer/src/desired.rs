//! Desired state, purely: Kubernetes objects in, Redis frontends and TLS
//! certificates out. No I/O here, so every translation rule is a table test.
//!
//! Rules (docs/syncer.md tells the same story for operators):
//! - Class selection: see [`is_ours`].
//! - Each Ingress rule host becomes `frontend:<host>` (wildcards keep their
//!   `*.`); a rule without a host and `spec.defaultBackend` go to the
//!   catch-all `frontend:*`.
//! - A path `Prefix /` (or `ImplementationSpecific /`) is written as plain
//!   Hipache backends; other paths as the schema's path-rule elements
//!   (`/api http://…`, `=/login http://…`); `ImplementationSpecific` is
//!   `Prefix`.
//! - Several Ingresses may add paths to one host. When two claim the same
//!   host and path (same kind), or the same TLS host, the oldest Ingress by
//!   `creationTimestamp` wins, then the smaller `namespace/name`; the loser
//!   gets a `Conflict` report (a Kubernetes Event).
//! - The identifier (element 0) is `k8s:<namespace>/<name>` of the oldest
//!   Ingress contributing to the host: that is the ownership mark.
//! - A path whose Service has no ready endpoint keeps its rule with the
//!   [`NO_ENDPOINTS`] element, a backend that never parses: the proxy
//!   answers 502 for it instead of letting the path fall to a shorter rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use hipache_schema::entry::SYNCER_IDENTIFIER_PREFIX;
use hipache_schema::{BackendEntry, PathMatch};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass, ServiceBackendPort};
use k8s_openapi::jiff::Timestamp;

use crate::config::BackendMode;

/// Legacy class annotation on an Ingress.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Annotation on an IngressClass that makes it the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// Label of an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Backend element of a path whose Service has no ready endpoint: not a URL,
/// so the proxy selects the path's group and finds no live backend (502).
pub const NO_ENDPOINTS: &str = "unavailable:no-ready-endpoints";
/// The catch-all frontend host.
pub const CATCH_ALL: &str = "*";

/// A namespaced object's key; displays as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a namespaced object, `None` when it has no name.
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Self> {
        Some(Self::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone()?,
        ))
    }

    /// The identifier written as element 0: `k8s:<namespace>/<name>`.
    pub fn identifier(&self) -> String {
        format!("{SYNCER_IDENTIFIER_PREFIX}{self}")
    }

    /// The inverse of [`identifier`](Self::identifier).
    pub fn from_identifier(identifier: &str) -> Option<Self> {
        let (ns, name) = identifier
            .strip_prefix(SYNCER_IDENTIFIER_PREFIX)?
            .split_once('/')?;
        Some(Self::new(ns, name))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the translation needs besides the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Our IngressClass controller string.
    pub controller: String,
    /// Our value of the legacy class annotation.
    pub class: String,
    pub backend_mode: BackendMode,
    /// Also take Ingresses of class `nginx` (`ingressClassName` or the
    /// legacy annotation), to switch a cluster from ingress-nginx without
    /// editing its Ingresses.
    pub nginx_class: bool,
    /// Serve an Ingress whose ingress-nginx annotations restrict access
    /// (not supported) without the restriction, instead of refusing it.
    pub serve_unsupported_protections: bool,
}

/// The class of ingress-nginx's Ingresses.
pub const NGINX_CLASS: &str = "nginx";

/// A TLS Secret's PEM data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPair {
    pub cert: String,
    pub key: String,
}

/// A `tls:<host>` hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsEntry {
    /// `k8s:<namespace>/<ingress>`.
    pub owner: String,
    pub cert: String,
    pub key: String,
}

/// The objects the translation reads.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub classes: Vec<Arc<IngressClass>>,
    pub ingresses: Vec<Arc<Ingress>>,
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    /// TLS Secrets by key, as fetched for our Ingresses.
    pub secrets: BTreeMap<ObjectKey, TlsPair>,
}

/// Why an Ingress is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReportKind {
    /// The Ingress does not validate; nothing of it is applied.
    Invalid,
    /// An older Ingress holds the same host and path (or TLS host).
    Conflict,
    /// A referenced Service or Service port does not exist.
    MissingService,
    /// A TLS Secret is missing or has no `tls.crt`/`tls.key`.
    MissingSecret,
    /// The frontend key belongs to someone else (a redis-cli tenant).
    ForeignKey,
    /// An ingress-nginx annotation that is not supported: ignored.
    UnsupportedAnnotation,
    /// An ingress-nginx annotation that restricts access and is not
    /// supported: the Ingress is not served.
    UnsupportedProtection,
    /// The same, served without the restriction (the operator's choice).
    ServedUnprotected,
}

impl ReportKind {
    /// The Event `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            ReportKind::Invalid => "InvalidIngress",
            ReportKind::Conflict => "HostConflict",
            ReportKind::MissingService => "ServiceNotFound",
            ReportKind::MissingSecret => "SecretNotFound",
            ReportKind::ForeignKey => "HostOwnedElsewhere",
            ReportKind::UnsupportedAnnotation => "UnsupportedAnnotation",
            ReportKind::UnsupportedProtection => "UnsupportedProtection",
            ReportKind::ServedUnprotected => "ServedUnprotected",
        }
    }
}

/// A problem with one Ingress, published as a Warning Event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Report {
    pub ingress: ObjectKey,
    pub kind: ReportKind,
    pub message: String,
}

/// The desired Redis content of the syncer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Frontend host → the whole list (identifier first).
    pub frontends: BTreeMap<String, Vec<String>>,
    /// TLS host → certificate.
    pub tls: BTreeMap<String, TlsEntry>,
    /// Ingresses of our class that validated (their status is ours to write).
    pub ingresses: BTreeSet<ObjectKey>,
    pub reports: Vec<Report>,
    /// Frontend host → the Ingress serving each of its paths (what the
    /// status page shows behind a host).
    pub sources: BTreeMap<String, Vec<HostRoute>>,
}

/// One path of a frontend host and the Ingress that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    /// `/ (Prefix)`, `/api (Prefix)`, `/login (Exact)`.
    pub path: String,
    pub ingress: ObjectKey,
    /// Backend addresses written for it (0: no ready endpoint, or its
    /// Service is missing).
    pub backends: usize,
}

/// Whether an Ingress belongs to our class.
///
/// 1. The legacy `kubernetes.io/ingress.class` annotation, when present,
///    decides alone: ours when it equals our class value or names an
///    IngressClass whose controller is ours.
/// 2. Else `spec.ingressClassName`: ours when it names an IngressClass whose
///    `spec.controller` is ours.
/// 3. Else (class-less): ours when one of our IngressClasses carries
///    `ingressclass.kubernetes.io/is-default-class: "true"`.
pub fn is_ours(ing: &Ingress, classes: &[Arc<IngressClass>], s: &Settings) -> bool {
    let our_class = |name: &str| {
        classes.iter().any(|c| {
            c.metadata.name.as_deref() == Some(name)
                && c.spec.as_ref().and_then(|s| s.controller.as_deref())
                    == Some(s.controller.as_str())
        })
    };
    if let Some(a) = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLASS_ANNOTATION))
    {
        return a == &s.class || our_class(a) || (s.nginx_class && a == NGINX_CLASS);
    }
    if let Some(name) = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return our_class(name) || (s.nginx_class && name == NGINX_CLASS);
    }
    classes.iter().any(|c| {
        c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(s.controller.as_str())
            && c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
    })
}

/// The TLS Secrets our Ingresses name (the controller fetches these, and
/// only these, before calling [`compute`]).
pub fn secret_refs(world: &World, s: &Settings) -> BTreeSet<ObjectKey> {
    world
        .ingresses
        .iter()
        .filter(|i| is_ours(i, &world.classes, s))
        .flat_map(|i| {
            let ns = i.metadata.namespace.clone().unwrap_or_default();
            i.spec
                .iter()
                .flat_map(|s| s.tls.iter().flatten())
                .filter_map(move |t| {
                    t.secret_name
                        .as_ref()
                        .map(|n| ObjectKey::new(ns.clone(), n))
                })
        })
        .collect()
}

/// Order of precedence between Ingresses: oldest first, then by key. An
/// Ingress without a creation time sorts last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    created: (bool, Timestamp),
    key: ObjectKey,
}

/// One validated route of an Ingress.
struct Route<'a> {
    host: String,
    path: Option<PathMatch>,
    backend: &'a IngressBackend,
}

/// One validated Ingress.
struct Valid<'a> {
    rank: Rank,
    routes: Vec<Route<'a>>,
    /// (TLS host, Secret name).
    tls: Vec<(String, String)>,
}

/// Computes the desired state. Ingresses that do not validate are reported
/// and skipped; they never stop the others.
pub fn compute(world: &World, s: &Settings) -> Desired {
    let mut out = Desired::default();
    let valid = validate_ours(world, s, &mut out.reports);
    let index = Index::new(world);
    let mut claims = Claims::default();
    for v in &valid {
        out.ingresses.insert(v.rank.key.clone());
        claims.routes(v, &index, s.backend_mode, &mut out.reports);
        claims.tls(v, &world.secrets, &mut out);
    }
    out.sources = claims.sources();
    out.frontends = claims.frontends();
    out.reports.sort();
    out.reports.dedup();
    out
}

/// The Ingresses of our class that validate, oldest first; the others are
/// reported as invalid.
fn validate_ours<'w>(world: &'w World, s: &Settings, reports: &mut Vec<Report>) -> Vec<Valid<'w>> {
    let mut valid: Vec<Valid<'_>> = Vec::new();
    for ing in &world.ingresses {
        if !is_ours(ing, &world.classes, s) {
            continue;
        }
        let Some(key) = ObjectKey::of(&ing.metadata) else {
            continue;
        };
        if !nginx_annotations(ing, &key, s, reports) {
            continue;
        }
        match validate(ing, key.clone()) {
            Ok(v) => valid.push(v),
            Err(message) => reports.push(Report {
                ingress: key,
                kind: ReportKind::Invalid,
                message,
            }),
        }
    }
    valid.sort_by(|a, b| a.rank.cmp(&b.rank));
    valid
}

/// Reports the ingress-nginx annotations of an Ingress (see [`nginx`]);
/// `false` when it must not be served.
fn nginx_annotations(
    ing: &Ingress,
    key: &ObjectKey,
    s: &Settings,
    reports: &mut Vec<Report>,
) -> bool {
    let found = nginx::found(ing);
    let mut report = |kind, message| {
        reports.push(Report {
            ingress: key.clone(),
            kind,
            message,
        })
    };
    for a in &found.ignored {
        report(
            ReportKind::UnsupportedAnnotation,
            format!("{a} is not supported: ignored, the Ingress is served without it"),
        );
    }
    let refuse = !s.serve_unsupported_protections;
    for a in &found.protective {
        report(
            match refuse {
                true => ReportKind::UnsupportedProtection,
                false => ReportKind::ServedUnprotected,
            },
            match refuse {
                true => format!("{a} restricts access and is not supported: the Ingress is not served, rather than served open to everyone (--serve-unsupported-protections serves such Ingresses without the restriction)"),
                false => format!("{a} restricts access and is not supported: the Ingress is served WITHOUT this restriction (--serve-unsupported-protections)"),
            },
        );
    }
    found.protective.is_empty() || !refuse
}

/// The rules of one frontend host: route key (`None`: plain) → (rule,
/// winner rank, backend URLs).
type HostRoutes<'v> = BTreeMap<Option<(String, bool)>, (Option<PathMatch>, &'v Rank, Vec<String>)>;

/// Who holds each host and path, and each TLS host: the first Ingress to
/// claim it, as Ingresses claim in rank order (oldest first).
#[derive(Default)]
struct Claims<'v> {
    hosts: BTreeMap<String, HostRoutes<'v>>,
    tls: BTreeMap<String, &'v Rank>,
}

impl<'v> Claims<'v> {
    /// Claims the routes of `v`. A host and path held by an older Ingress
    /// is a conflict; a missing Service keeps the rule without backends.
    fn routes(
        &mut self,
        v: &'v Valid<'_>,
        index: &Index<'_>,
        mode: BackendMode,
        reports: &mut Vec<Report>,
    ) {
        for r in &v.routes {
            let routes = self.hosts.entry(r.host.clone()).or_default();
            let rkey = route_key(r.path.as_ref());
            if let Some((_, winner, _)) = routes.get(&rkey) {
                if winner.key != v.rank.key {
                    let what = format!("host {} path {}", r.host, describe_path(r.path.as_ref()));
                    reports.push(conflict(&v.rank.key, &what, &winner.key));
                }
                continue;
            }
            let urls = match index.resolve(&v.rank.key.namespace, r.backend, mode) {
                Ok(urls) => urls,
                Err(message) => {
                    reports.push(Report {
                        ingress: v.rank.key.clone(),
                        kind: ReportKind::MissingService,
                        message,
                    });
                    Vec::new()
                }
            };
            routes.insert(rkey, (r.path.clone(), &v.rank, urls));
        }
    }

    /// Claims the TLS hosts of `v` into `out.tls`. A TLS host held by an
    /// older Ingress is a conflict; one whose Secret is missing stays free.
    fn tls(&mut self, v: &'v Valid<'_>, secrets: &BTreeMap<ObjectKey, TlsPair>, out: &mut Desired) {
        for (host, secret) in &v.tls {
            if let Some(winner) = self.tls.get(host) {
                if winner.key != v.rank.key {
                    let what = format!("TLS host {host}");
                    out.reports.push(conflict(&v.rank.key, &what, &winner.key));
                }
                continue;
            }
            let skey = ObjectKey::new(v.rank.key.namespace.clone(), secret.clone());
            match secrets.get(&skey) {
                Some(pair) => {
                    self.tls.insert(host.clone(), &v.rank);
                    out.tls.insert(
                        host.clone(),
                        TlsEntry {
                            owner: v.rank.key.identifier(),
                            cert: pair.cert.clone(),
                            key: pair.key.clone(),
                        },
                    );
                }
                None => out.reports.push(Report {
                    ingress: v.rank.key.clone(),
                    kind: ReportKind::MissingSecret,
                    message: format!(
                        "TLS Secret {skey} for host {host} is missing or has no tls.crt/tls.key"
                    ),
                }),
            }
        }
    }

    /// Per host, the Ingress that won each path.
    fn sources(&self) -> BTreeMap<String, Vec<HostRoute>> {
        self.hosts
            .iter()
            .map(|(host, routes)| {
                let paths = routes
                    .values()
                    .map(|(path, rank, urls)| HostRoute {
                        path: describe_path(path.as_ref()),
                        ingress: rank.key.clone(),
                        backends: urls.len(),
                    })
                    .collect();
                (host.clone(), paths)
            })
            .collect()
    }

    /// One list per host: the identifier of the oldest Ingress contributing
    /// to it, then the backends of each rule.
    fn frontends(self) -> BTreeMap<String, Vec<String>> {
        let mut frontends = BTreeMap::new();
        for (host, routes) in self.hosts {
            let Some(owner) = routes.values().map(|(_, rank, _)| *rank).min() else {
                continue;
            };
            let mut list = vec![owner.key.identifier()];
            // BTreeMap order: None (plain) first, then rules by path and kind.
            for (path, _, urls) in routes.values() {
                if urls.is_empty() {
                    list.push(BackendEntry::encode(path.as_ref(), NO_ENDPOINTS));
                }
                for url in urls {
                    list.push(BackendEntry::encode(path.as_ref(), url));
                }
            }
            frontends.insert(host, list);
        }
        frontends
    }
}

/// The report of an Ingress that claims `what` (a host and path, or a TLS
/// host) already held by the older `winner`.
fn conflict(ingress: &ObjectKey, what: &str, winner: &ObjectKey) -> Report {
    Report {
        ingress: ingress.clone(),
        kind: ReportKind::Conflict,
        message: format!("{what} is already served by the older Ingress {winner}"),
    }
}

/// An ordered key for a path rule: by path, Prefix before Exact.
fn route_key(p: Option<&PathMatch>) -> Option<(String, bool)> {
    p.map(|p| (p.path.clone(), p.kind == hipache_schema::PathKind::Exact))
}

fn describe_path(p: Option<&PathMatch>) -> String {
    match p {
        None => "/ (Prefix)".to_owned(),
        Some(p) => format!("{} ({:?})", p.path, p.kind),
    }
}

fn validate(ing: &Ingress, key: ObjectKey) -> Result<Valid<'_>, String> {
    let created = match &ing.metadata.creation_timestamp {
        Some(t) => (false, t.0),
        None => (true, Timestamp::MAX),
    };
    let rank = Rank { created, key };
    let Some(spec) = ing.spec.as_ref() else {
        return Err("Ingress has no spec".to_owned());
    };
    let mut routes = Vec::new();
    if let Some(b) = &spec.default_backend {
        check_backend(b).map_err(|e| format!("spec.defaultBackend: {e}"))?;
        routes.push(Route {
            host: CATCH_ALL.to_owned(),
            path: None,
            backend: b,
        });
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let host = match rule.host.as_deref() {
            None | Some("") => CATCH_ALL.to_owned(),
            Some(h) => check_host(h).map_err(|e| format!("spec.rules[{i}].host {h:?}: {e}"))?,
        };
        let Some(http) = &rule.http else { continue };
        let mut seen: BTreeSet<Option<(String, bool)>> = BTreeSet::new();
        for (j, p) in http.paths.iter().enumerate() {
            let at = || format!("spec.rules[{i}].http.paths[{j}]");
            check_backend(&p.backend).map_err(|e| format!("{}.backend: {e}", at()))?;
            let path = translate_path(p.path.as_deref(), &p.path_type)
                .map_err(|e| format!("{}: {e}", at()))?;
            // The first of two identical paths in one Ingress wins.
            if seen.insert(route_key(path.as_ref())) {
                routes.push(Route {
                    host: host.clone(),
                    path,
                    backend: &p.backend,
                });
            }
        }
    }
    let mut tls = Vec::new();
    for (i, t) in spec.tls.iter().flatten().enumerate() {
        // No secretName: the hosts use the proxy's default certificate.
        let Some(secret) = t.secret_name.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        for h in t.hosts.iter().flatten() {
            let host = check_host(h).map_err(|e| format!("spec.tls[{i}].hosts {h:?}: {e}"))?;
            tls.push((host, secret.to_owned()));
        }
    }
    Ok(Valid { rank, routes, tls })
}

/// `Some(rule)` or `None` for "every path" (`Prefix /`).
fn translate_path(path: Option<&str>, path_type: &str) -> Result<Option<PathMatch>, String> {
    let path = path.filter(|p| !p.is_empty());
    let exact = match path_type {
        "Exact" => true,
        "Prefix" | "ImplementationSpecific" => false,
        "" => return Err("pathType is required".to_owned()),
        other => return Err(format!("unknown pathType {other:?}")),
    };
    let path = match path {
        Some(p) => p,
        None if exact => return Err("an Exact path needs a path".to_owned()),
        None => "/",
    };
    let spec = if exact {
        format!("={path}")
    } else {
        path.to_owned()
    };
    let m = PathMatch::parse(&spec).ok_or_else(|| {
        format!("path {path:?} must start with '/' and hold no spaces or control characters")
    })?;
    if !exact && path.trim_end_matches('/').is_empty() {
        return Ok(None);
    }
    Ok(Some(m))
}

fn check_backend(b: &IngressBackend) -> Result<(), String> {
    if b.resource.is_some() {
        return Err("resource backends are not supported".to_owned());
    }
    let Some(svc) = &b.service else {
        return Err("a service backend is required".to_owned());
    };
    if svc.name.is_empty() {
        return Err("service.name is empty".to_owned());
    }
    match &svc.port {
        Some(p) => match (&p.name, p.number) {
            (Some(n), None) if !n.is_empty() => Ok(()),
            (None, Some(n)) if (1..=65535).contains(&n) => Ok(()),
            _ => Err("service.port needs exactly one of a name or a number in 1..65535".to_owned()),
        },
        None => Err("service.port is required".to_owned()),
    }
}

/// Validates an Ingress host: a lower-case DNS name, optionally with a
/// leading `*.` label (Kubernetes' rules); returns it as written.
pub fn check_host(host: &str) -> Result<String, String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || host.len() > 253 {
        return Err("not a DNS name".to_owned());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err("must be a lower-case DNS name, optionally starting with '*.'".to_owned());
        }
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("IP addresses are not allowed as hosts".to_owned());
    }
    Ok(host.to_owned())
}

/// Services and EndpointSlices indexed for lookups.
struct Index<'a> {
    services: BTreeMap<(&'a str, &'a str), &'a Service>,
    slices: BTreeMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> Index<'a> {
    fn new(world: &'a World) -> Self {
        let mut services = BTreeMap::new();
        for s in &world.services {
            if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                services.insert((ns.as_str(), name.as_str()), &**s);
            }
        }
        let mut slices: BTreeMap<_, Vec<&EndpointSlice>> = BTreeMap::new();
        for s in &world.slices {
            let svc = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(ns), Some(svc)) = (&s.metadata.namespace, svc) {
                slices
                    .entry((ns.as_str(), svc.as_str()))
                    .or_default()
                    .push(&**s);
            }
        }
        Self { services, slices }
    }

    /// The backend URLs of an Ingress backend (sorted, deduplicated); an
    /// error names a missing Service or port.
    fn resolve(
        &self,
        ns: &str,
        b: &IngressBackend,
        mode: BackendMode,
    ) -> Result<Vec<String>, String> {
        let Some(sb) = &b.service else {
            return Ok(Vec::new());
        };
        let Some(svc) = self.services.get(&(ns, sb.name.as_str())) else {
            return Err(format!("Service {ns}/{} not found", sb.name));
        };
        let want = sb.port.as_ref();
        let sp = service_port(svc, want);
        let ty = svc.spec.as_ref().and_then(|s| s.type_.as_deref());
        if ty.unwrap_or("ClusterIP") == "ExternalName" {
            return match external_name_url(svc, want, sp) {
                Some(url) => Ok(vec![url]),
                None => Err(format!(
                    "ExternalName Service {ns}/{} has no name or port",
                    sb.name
                )),
            };
        }
        let Some(sp) = sp else {
            return Err(format!(
                "Service {ns}/{} has no port {}",
                sb.name,
                want.and_then(|w| w.name.clone().or(w.number.map(|n| n.to_string())))
                    .unwrap_or_default()
            ));
        };
        let scheme = port_scheme(sp);
        if mode == BackendMode::ClusterIp {
            if let Some(ip) = cluster_ip(svc) {
                return Ok(vec![url(scheme, ip, sp.port)]);
            }
            // Headless Service: fall back to its endpoints.
        }
        let port_name = sp.name.as_deref().unwrap_or("");
        Ok(self.ready_endpoints(ns, &sb.name, port_name, scheme))
    }

    /// The URLs of the ready endpoints of Service `ns/service` on the
    /// EndpointSlice port named `port_name` (sorted, deduplicated).
    fn ready_endpoints(
        &self,
        ns: &str,
        service: &str,
        port_name: &str,
        scheme: &str,
    ) -> Vec<String> {
        let mut urls = BTreeSet::new();
        for slice in self.slices.get(&(ns, service)).into_iter().flatten() {
            let Some(port) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .and_then(|p| p.port)
            else {
                continue;
            };
            for ep in &slice.endpoints {
                let c = ep.conditions.as_ref();
                // A nil `ready` means ready; terminating endpoints leave
                // before their pods stop.
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                if !ready || terminating {
                    continue;
                }
                for addr in &ep.addresses {
                    urls.insert(url(scheme, addr, port));
                }
            }
        }
        urls.into_iter().collect()
    }
}

/// The Service port an Ingress backend names, by name or by number.
fn service_port<'s>(
    svc: &'s Service,
    want: Option<&ServiceBackendPort>,
) -> Option<&'s ServicePort> {
    let want = want?;
    let ports = svc.spec.as_ref()?.ports.as_ref()?;
    ports.iter().find(|p| match (&want.name, want.number) {
        (Some(n), _) => p.name.as_deref() == Some(n.as_str()),
        (None, Some(n)) => p.port == n,
        _ => false,
    })
}

/// The URL of an ExternalName Service: the external name, on the Ingress's
/// port number (the port on the external name), else the Service port's.
fn external_name_url(
    svc: &Service,
    want: Option<&ServiceBackendPort>,
    sp: Option<&ServicePort>,
) -> Option<String> {
    let port = want.and_then(|w| w.number).or(sp.map(|p| p.port))?;
    let name = svc.spec.as_ref()?.external_name.as_deref()?;
    Some(url("http", name, port))
}

/// `https` for a Service port whose appProtocol or name says so, else `http`.
fn port_scheme(sp: &ServicePort) -> &'static str {
    if sp.app_protocol.as_deref() == Some("https") || sp.name.as_deref() == Some("https") {
        "https"
    } else {
        "http"
    }
}

/// A Service's cluster IP; `None` for a headless Service.
fn cluster_ip(svc: &Service) -> Option<&str> {
    let ip = svc.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

fn url(scheme: &str, host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

pub mod nginx;

#[cfg(test)]
mod tests;
