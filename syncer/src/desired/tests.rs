//! Translation table tests, including the path-matching cases of the
//! Kubernetes Ingress conformance suite (features/path_rules.feature,
//! host_rules.feature), run through the proxy's own lookup algorithm
//! (`hipache_schema::candidates` and `Frontend::select`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hipache_schema::entry::Selection;
use hipache_schema::{candidates, Frontend};

use super::*;
use crate::fixtures::*;

const CTRL: &str = "hipache.io/ingress-controller";

fn settings() -> Settings {
    Settings {
        controller: CTRL.to_owned(),
        class: "hipache".to_owned(),
        backend_mode: BackendMode::Endpoints,
        nginx_class: false,
        serve_unsupported_protections: false,
    }
}

/// A world with our IngressClass `hipache`, Services `web`, `api`, `exact`
/// and `empty` in namespace `ns`, each with one ready endpoint
/// (10.0.0.1 for web, .2 api, .3 exact; `empty` has none) on port 8080
/// (Service port 80, named `http`).
fn world(ingresses: Vec<Ingress>) -> World {
    let mut w = World {
        classes: vec![Arc::new(ingress_class("hipache", CTRL).build())],
        ingresses: ingresses.into_iter().map(Arc::new).collect(),
        ..Default::default()
    };
    for (svc, ip) in [
        ("web", "10.0.0.1"),
        ("api", "10.0.0.2"),
        ("exact", "10.0.0.3"),
        ("empty", ""),
    ] {
        w.services.push(Arc::new(
            service("ns", svc)
                .port("http", 80)
                .cluster_ip("172.16.0.9")
                .build(),
        ));
        let mut s = slice("ns", svc, &format!("{svc}-1")).port("http", 8080);
        if !ip.is_empty() {
            s = s.ready(ip);
        }
        w.slices.push(Arc::new(s.build()));
    }
    w
}

fn compute_one(i: Ingress) -> Desired {
    compute(&world(vec![i]), &settings())
}

/// The backend hosts the proxy would choose among for `host` and `path`:
/// `None` when no frontend matches (400), `Some(vec![])` for 502.
fn route(d: &Desired, host: &str, path: &str) -> Option<Vec<String>> {
    for c in candidates(host) {
        let Some(list) = d.frontends.get(&c) else {
            continue;
        };
        let Some(f) = Frontend::decode(list) else {
            continue;
        };
        if !f.covers(&c, host) {
            continue;
        }
        match f.select(path) {
            Selection::NoMatch => continue,
            Selection::Group(g) => {
                return Some(
                    f.group(g)
                        .filter_map(|b| b.url.as_ref().ok().map(|u| u.host.clone()))
                        .collect(),
                )
            }
        }
    }
    None
}

fn r(d: &Desired, host: &str, path: &str) -> Vec<String> {
    route(d, host, path).unwrap_or_else(|| vec!["<none>".to_owned()])
}

#[test]
fn simple_host_becomes_plain_hipache_list() {
    let d = compute_one(
        ingress("ns", "site")
            .host("a.example.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    assert_eq!(
        d.frontends.get("a.example.com").unwrap(),
        &vec!["k8s:ns/site".to_owned(), "http://10.0.0.1:8080".to_owned()]
    );
    assert!(d.reports.is_empty(), "{:?}", d.reports);
    assert!(d.ingresses.contains(&ObjectKey::new("ns", "site")));
}

#[test]
fn named_and_numeric_ports_resolve_through_the_slice() {
    let by_name = compute_one(
        ingress("ns", "a")
            .host("a.com")
            .path("/", "Prefix", "web", "http")
            .build(),
    );
    let by_number = compute_one(
        ingress("ns", "a")
            .host("a.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    assert_eq!(by_name.frontends, by_number.frontends);
    let missing = compute_one(
        ingress("ns", "a")
            .host("a.com")
            .path("/", "Prefix", "web", 81)
            .build(),
    );
    assert_eq!(missing.reports[0].kind, ReportKind::MissingService);
    assert_eq!(missing.frontends["a.com"][1], NO_ENDPOINTS);
}

#[test]
fn unnamed_service_port_matches_unnamed_slice_port() {
    let mut w = world(vec![ingress("ns", "a")
        .host("a.com")
        .path("/", "Prefix", "solo", 80)
        .build()]);
    w.services
        .push(Arc::new(service("ns", "solo").port("", 80).build()));
    w.slices.push(Arc::new(
        slice("ns", "solo", "solo-x")
            .port("", 9000)
            .ready("10.1.1.1")
            .build(),
    ));
    let d = compute(&w, &settings());
    assert_eq!(d.frontends["a.com"][1], "http://10.1.1.1:9000");
}

#[test]
fn only_ready_endpoints_terminating_removed() {
    let mut w = world(vec![ingress("ns", "a")
        .host("a.com")
        .path("/", "Prefix", "pods", 80)
        .build()]);
    w.services
        .push(Arc::new(service("ns", "pods").port("http", 80).build()));
    w.slices.push(Arc::new(
        slice("ns", "pods", "pods-1")
            .port("http", 8080)
            .ready("10.0.1.1")
            .endpoint("10.0.1.2", Some(false), None)
            .endpoint("10.0.1.3", Some(true), Some(true))
            .endpoint("10.0.1.4", None, None)
            .build(),
    ));
    w.slices.push(Arc::new(
        slice("ns", "pods", "pods-2")
            .port("http", 8080)
            .ready("10.0.1.5")
            .build(),
    ));
    let d = compute(&w, &settings());
    assert_eq!(
        d.frontends["a.com"][1..],
        [
            "http://10.0.1.1:8080",
            "http://10.0.1.4:8080",
            "http://10.0.1.5:8080"
        ]
    );
}

#[test]
fn ipv6_endpoints_get_brackets() {
    let mut w = world(vec![ingress("ns", "a")
        .host("a.com")
        .path("/", "Prefix", "v6", 80)
        .build()]);
    w.services
        .push(Arc::new(service("ns", "v6").port("http", 80).build()));
    w.slices.push(Arc::new(
        slice("ns", "v6", "v6-1")
            .address_type("IPv6")
            .port("http", 8080)
            .ready("fd00::1")
            .build(),
    ));
    let d = compute(&w, &settings());
    assert_eq!(d.frontends["a.com"][1], "http://[fd00::1]:8080");
}

#[test]
fn cluster_ip_mode_writes_the_service_address() {
    let mut s = settings();
    s.backend_mode = BackendMode::ClusterIp;
    let d = compute(
        &world(vec![ingress("ns", "a")
            .host("a.com")
            .path("/", "Prefix", "web", 80)
            .build()]),
        &s,
    );
    assert_eq!(d.frontends["a.com"][1..], ["http://172.16.0.9:80"]);
}

#[test]
fn external_name_service() {
    let mut w = world(vec![ingress("ns", "a")
        .host("a.com")
        .path("/", "Prefix", "ext", 8443)
        .build()]);
    w.services.push(Arc::new(
        service("ns", "ext")
            .external_name("api.partner.net")
            .build(),
    ));
    let d = compute(&w, &settings());
    assert_eq!(d.frontends["a.com"][1..], ["http://api.partner.net:8443"]);
}

#[test]
fn wildcard_and_hostless_rules_and_default_backend() {
    let d = compute_one(
        ingress("ns", "a")
            .host("*.example.com")
            .path("/", "Prefix", "web", 80)
            .any_host()
            .path("/api", "Prefix", "api", 80)
            .default_backend("exact", 80)
            .build(),
    );
    assert_eq!(d.frontends["*.example.com"][1..], ["http://10.0.0.1:8080"]);
    assert_eq!(
        d.frontends["*"][1..],
        ["http://10.0.0.3:8080", "/api http://10.0.0.2:8080"]
    );
    assert_eq!(r(&d, "x.example.com", "/"), ["10.0.0.1"]);
    assert_eq!(r(&d, "other.org", "/api/v1"), ["10.0.0.2"]);
    assert_eq!(r(&d, "other.org", "/"), ["10.0.0.3"]);
    // The bare domain never matches its wildcard: it gets the catch-all.
    assert_eq!(r(&d, "example.com", "/"), ["10.0.0.3"]);
}

#[test]
fn unmatched_paths_fall_to_the_default_backend() {
    let d = compute_one(
        ingress("ns", "a")
            .host("a.com")
            .path("/api", "Prefix", "api", 80)
            .default_backend("web", 80)
            .build(),
    );
    assert_eq!(r(&d, "a.com", "/api/x"), ["10.0.0.2"]);
    assert_eq!(r(&d, "a.com", "/other"), ["10.0.0.1"]);
}

#[test]
fn path_without_endpoints_answers_502_instead_of_falling_through() {
    let d = compute_one(
        ingress("ns", "a")
            .host("a.com")
            .path("/", "Prefix", "web", 80)
            .path("/admin", "Prefix", "empty", 80)
            .build(),
    );
    assert_eq!(d.frontends["a.com"][2], format!("/admin {NO_ENDPOINTS}"));
    assert_eq!(r(&d, "a.com", "/admin/x"), Vec::<String>::new());
    assert_eq!(r(&d, "a.com", "/x"), ["10.0.0.1"]);
}

/// (rules, request path, expected backend) from the conformance suite's
/// path_rules.feature; services: web=.1, api=.2, exact=.3.
#[test]
fn conformance_path_rules() {
    type Rules = &'static [(&'static str, &'static str, &'static str)];
    let cases: &[(Rules, &str, &str)] = &[
        // Exact
        (&[("/foo", "Exact", "web")], "/foo", "10.0.0.1"),
        (&[("/foo", "Exact", "web")], "/foo/", "<none>"),
        (&[("/foo", "Exact", "web")], "/foo/bar", "<none>"),
        (&[("/foo", "Exact", "web")], "/fo", "<none>"),
        // Prefix, element-wise
        (&[("/foo", "Prefix", "web")], "/foo", "10.0.0.1"),
        (&[("/foo", "Prefix", "web")], "/foo/", "10.0.0.1"),
        (&[("/foo", "Prefix", "web")], "/foo/bar", "10.0.0.1"),
        (&[("/foo", "Prefix", "web")], "/foobar", "<none>"),
        (&[("/foo/", "Prefix", "web")], "/foo", "10.0.0.1"),
        (&[("/foo/", "Prefix", "web")], "/foobar", "<none>"),
        (&[("/aaa/bbb", "Prefix", "web")], "/aaa/bbb/ccc", "10.0.0.1"),
        (&[("/aaa/bbb", "Prefix", "web")], "/aaa/bbbxyz", "<none>"),
        (&[("/", "Prefix", "web")], "/anything/at/all", "10.0.0.1"),
        // ImplementationSpecific behaves like Prefix
        (
            &[("/foo", "ImplementationSpecific", "web")],
            "/foo/bar",
            "10.0.0.1",
        ),
        (
            &[("/foo", "ImplementationSpecific", "web")],
            "/foobar",
            "<none>",
        ),
        // Exact beats Prefix of the same path
        (
            &[("/foo", "Prefix", "web"), ("/foo", "Exact", "exact")],
            "/foo",
            "10.0.0.3",
        ),
        (
            &[("/foo", "Exact", "exact"), ("/foo", "Prefix", "web")],
            "/foo/",
            "10.0.0.1",
        ),
        // Longest match wins
        (
            &[("/", "Prefix", "web"), ("/foo", "Prefix", "api")],
            "/foo/x",
            "10.0.0.2",
        ),
        (
            &[("/", "Prefix", "web"), ("/foo", "Prefix", "api")],
            "/bar",
            "10.0.0.1",
        ),
        (
            &[("/foo", "Prefix", "web"), ("/foo/bar", "Prefix", "api")],
            "/foo/bar/baz",
            "10.0.0.2",
        ),
        (
            &[("/foo", "Prefix", "web"), ("/foo/bar", "Prefix", "api")],
            "/foo/baz",
            "10.0.0.1",
        ),
        (
            &[("/foo/bar", "Exact", "exact"), ("/foo", "Prefix", "web")],
            "/foo/bar",
            "10.0.0.3",
        ),
    ];
    for (rules, path, want) in cases {
        let mut b = ingress("ns", "a").host("a.com");
        for (p, t, svc) in *rules {
            b = b.path(p, t, svc, 80);
        }
        let d = compute_one(b.build());
        assert!(d.reports.is_empty(), "{rules:?}: {:?}", d.reports);
        assert_eq!(
            r(&d, "a.com", path).join(","),
            *want,
            "rules {rules:?} path {path}"
        );
    }
}

#[test]
fn conformance_host_rules() {
    let d = compute_one(
        ingress("ns", "a")
            .host("foo.bar.com")
            .path("/", "Prefix", "web", 80)
            .host("*.foo.com")
            .path("/", "Prefix", "api", 80)
            .build(),
    );
    assert_eq!(r(&d, "foo.bar.com", "/"), ["10.0.0.1"]);
    assert_eq!(
        r(&d, "FOO.bar.com:8080", "/").len(),
        1,
        "the proxy normalises; here raw"
    );
    assert_eq!(r(&d, "bar.foo.com", "/"), ["10.0.0.2"]);
    assert_eq!(
        r(&d, "foo.com", "/"),
        ["<none>"],
        "a wildcard never matches its bare domain"
    );
    assert_eq!(r(&d, "other.com", "/"), ["<none>"]);
}

/// Kubernetes: `*.foo.com` matches exactly one label. Hipache's wildcard
/// lookup matches any depth; frontends written by the syncer cover one
/// label only (`Frontend::covers`).
#[test]
fn conformance_wildcard_one_label_deep() {
    let d = compute_one(
        ingress("ns", "a")
            .host("*.foo.com")
            .path("/", "Prefix", "api", 80)
            .build(),
    );
    assert_eq!(r(&d, "baz.bar.foo.com", "/"), ["<none>"]);
}

#[test]
fn invalid_ingresses_are_reported_not_applied_and_never_stop_others() {
    let bad = [
        (
            "badhost",
            ingress("ns", "badhost")
                .host("Bad_Host.com")
                .path("/", "Prefix", "web", 80)
                .build(),
        ),
        (
            "ip",
            ingress("ns", "ip")
                .host("10.0.0.1")
                .path("/", "Prefix", "web", 80)
                .build(),
        ),
        (
            "midwild",
            ingress("ns", "midwild")
                .host("a.*.com")
                .path("/", "Prefix", "web", 80)
                .build(),
        ),
        (
            "nopath",
            ingress("ns", "nopath")
                .host("a.com")
                .path("", "Exact", "web", 80)
                .build(),
        ),
        (
            "relpath",
            ingress("ns", "relpath")
                .host("a.com")
                .path("foo", "Prefix", "web", 80)
                .build(),
        ),
        (
            "space",
            ingress("ns", "space")
                .host("a.com")
                .path("/a b", "Prefix", "web", 80)
                .build(),
        ),
        (
            "type",
            ingress("ns", "type")
                .host("a.com")
                .path("/", "Regex", "web", 80)
                .build(),
        ),
        (
            "notype",
            ingress("ns", "notype")
                .host("a.com")
                .path("/", "", "web", 80)
                .build(),
        ),
        (
            "port0",
            ingress("ns", "port0")
                .host("a.com")
                .path("/", "Prefix", "web", 0)
                .build(),
        ),
        ("noport", {
            let mut i = ingress("ns", "noport")
                .host("a.com")
                .path("/", "Prefix", "web", 80)
                .build();
            if let Some(b) = i
                .spec
                .as_mut()
                .and_then(|s| s.rules.as_mut())
                .and_then(|r| r[0].http.as_mut())
            {
                b.paths[0].backend.service.as_mut().unwrap().port = None;
            }
            i
        }),
        ("resource", {
            let mut i = ingress("ns", "resource").default_backend("web", 80).build();
            let b = i.spec.as_mut().unwrap().default_backend.as_mut().unwrap();
            b.service = None;
            b.resource = Some(Default::default());
            i
        }),
        (
            "badtls",
            ingress("ns", "badtls")
                .host("a.com")
                .path("/", "Prefix", "web", 80)
                .tls(&["A.com"], "s")
                .build(),
        ),
    ];
    let mut ings: Vec<Ingress> = bad.iter().map(|(_, i)| i.clone()).collect();
    ings.push(
        ingress("ns", "good")
            .host("good.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    let d = compute(&world(ings), &settings());
    assert_eq!(d.frontends.keys().collect::<Vec<_>>(), ["good.com"]);
    for (name, _) in &bad {
        assert!(
            d.reports
                .iter()
                .any(|r| r.ingress.name == *name && r.kind == ReportKind::Invalid),
            "{name} not reported: {:?}",
            d.reports
        );
    }
    assert!(!d.ingresses.contains(&ObjectKey::new("ns", "badhost")));
}

#[test]
fn class_selection() {
    let classes = vec![
        Arc::new(ingress_class("hipache", CTRL).build()),
        Arc::new(ingress_class("mine-too", CTRL).build()),
        Arc::new(ingress_class("nginx", "k8s.io/ingress-nginx").build()),
    ];
    let s = settings();
    let ours = |i: IngressBuilder| is_ours(&i.build(), &classes, &s);
    assert!(ours(ingress("ns", "a")));
    assert!(ours(ingress("ns", "a").class_name(Some("mine-too"))));
    assert!(!ours(ingress("ns", "a").class_name(Some("nginx"))));
    assert!(!ours(ingress("ns", "a").class_name(Some("unknown"))));
    // The legacy annotation decides when present.
    assert!(ours(
        ingress("ns", "a")
            .class_name(None)
            .class_annotation("hipache")
    ));
    assert!(ours(
        ingress("ns", "a")
            .class_name(None)
            .class_annotation("mine-too")
    ));
    assert!(!ours(
        ingress("ns", "a")
            .class_name(Some("hipache"))
            .class_annotation("nginx")
    ));
    // Class-less: only when our class is the cluster default.
    assert!(!ours(ingress("ns", "a").class_name(None)));
    let mut with_default = classes.clone();
    with_default[0] = Arc::new(ingress_class("hipache", CTRL).default_class().build());
    assert!(is_ours(
        &ingress("ns", "a").class_name(None).build(),
        &with_default,
        &s
    ));
    // Another controller's default class does not make class-less ours.
    let nginx_default = vec![Arc::new(
        ingress_class("nginx", "k8s.io/ingress-nginx")
            .default_class()
            .build(),
    )];
    assert!(!is_ours(
        &ingress("ns", "a").class_name(None).build(),
        &nginx_default,
        &s
    ));

    let d = compute(
        &world(vec![ingress("ns", "other")
            .class_name(Some("nginx"))
            .host("a.com")
            .path("/", "Prefix", "web", 80)
            .build()]),
        &s,
    );
    assert!(d.frontends.is_empty() && d.reports.is_empty());
}

#[test]
fn ingresses_merge_paths_on_one_host() {
    let d = compute(
        &world(vec![
            ingress("ns", "site")
                .created(100)
                .host("a.com")
                .path("/", "Prefix", "web", 80)
                .build(),
            ingress("ns", "acme")
                .created(200)
                .host("a.com")
                .path("/.well-known/acme-challenge/x", "Exact", "api", 80)
                .build(),
        ]),
        &settings(),
    );
    assert!(d.reports.is_empty(), "{:?}", d.reports);
    assert_eq!(d.frontends["a.com"][0], "k8s:ns/site");
    assert_eq!(
        r(&d, "a.com", "/.well-known/acme-challenge/x"),
        ["10.0.0.2"]
    );
    assert_eq!(r(&d, "a.com", "/"), ["10.0.0.1"]);
}

#[test]
fn conflicts_oldest_wins_then_namespace_name() {
    let older = ingress("ns", "zzz")
        .created(100)
        .host("a.com")
        .path("/", "Prefix", "web", 80)
        .build();
    let newer = ingress("ns", "aaa")
        .created(200)
        .host("a.com")
        .path("/", "Prefix", "api", 80)
        .build();
    for order in [
        vec![older.clone(), newer.clone()],
        vec![newer.clone(), older.clone()],
    ] {
        let d = compute(&world(order), &settings());
        assert_eq!(d.frontends["a.com"], ["k8s:ns/zzz", "http://10.0.0.1:8080"]);
        assert_eq!(d.reports.len(), 1);
        assert_eq!(d.reports[0].ingress, ObjectKey::new("ns", "aaa"));
        assert_eq!(d.reports[0].kind, ReportKind::Conflict);
        assert!(d.reports[0].message.contains("ns/zzz"));
    }
    // Same age: namespace/name decides.
    let a = ingress("a", "x")
        .created(100)
        .host("a.com")
        .path("/", "Prefix", "web", 80)
        .build();
    let b = ingress("b", "x")
        .created(100)
        .host("a.com")
        .path("/", "Prefix", "web", 80)
        .build();
    let d = compute(&world(vec![b, a]), &settings());
    assert_eq!(d.frontends["a.com"][0], "k8s:a/x");
    let conflicts: Vec<_> = d
        .reports
        .iter()
        .filter(|r| r.kind == ReportKind::Conflict)
        .collect();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].ingress, ObjectKey::new("b", "x"));
}

#[test]
fn tls_secrets_published_and_conflicts() {
    let mut w = world(vec![
        ingress("ns", "a")
            .created(1)
            .host("a.com")
            .path("/", "Prefix", "web", 80)
            .tls(&["a.com", "*.a.com"], "cert-a")
            .build(),
        ingress("ns", "b")
            .created(2)
            .host("b.com")
            .path("/", "Prefix", "web", 80)
            .tls(&["a.com"], "cert-b")
            .tls(&["b.com"], "gone")
            .build(),
    ]);
    assert_eq!(
        secret_refs(&w, &settings())
            .into_iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>(),
        ["ns/cert-a", "ns/cert-b", "ns/gone"]
    );
    for n in ["cert-a", "cert-b"] {
        w.secrets.insert(
            ObjectKey::new("ns", n),
            TlsPair {
                cert: format!("CERT {n}"),
                key: format!("KEY {n}"),
            },
        );
    }
    let d = compute(&w, &settings());
    assert_eq!(d.tls.keys().collect::<Vec<_>>(), ["*.a.com", "a.com"]);
    assert_eq!(d.tls["a.com"].cert, "CERT cert-a");
    assert_eq!(d.tls["a.com"].owner, "k8s:ns/a");
    let kinds: Vec<_> = d
        .reports
        .iter()
        .map(|r| (r.ingress.name.as_str(), r.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("b", ReportKind::Conflict),
            ("b", ReportKind::MissingSecret)
        ]
    );
}

#[test]
fn identifiers_round_trip() {
    let k = ObjectKey::new("ns", "web");
    assert_eq!(k.identifier(), "k8s:ns/web");
    assert_eq!(ObjectKey::from_identifier("k8s:ns/web"), Some(k));
    assert_eq!(ObjectKey::from_identifier("mywebsite"), None);
}

#[test]
fn output_is_deterministic() {
    let ings = vec![
        ingress("ns", "a")
            .host("a.com")
            .path("/z", "Prefix", "web", 80)
            .path("/a", "Exact", "api", 80)
            .build(),
        ingress("ns", "b")
            .host("b.com")
            .path("/", "Prefix", "api", 80)
            .build(),
    ];
    let mut rev = ings.clone();
    rev.reverse();
    assert_eq!(
        compute(&world(ings), &settings()),
        compute(&world(rev), &settings())
    );
}

/// What an ingress-nginx Ingress becomes: its annotations in, frontends and
/// Events out.
fn nginx_ingress(annotations: &[(&str, &str)]) -> Ingress {
    let mut b = ingress("ns", "legacy")
        .class_name(Some("nginx"))
        .host("legacy.example.com")
        .path("/", "Prefix", "web", 80);
    for (name, value) in annotations {
        b = b.annotation(&format!("nginx.ingress.kubernetes.io/{name}"), value);
    }
    b.build()
}

fn with(nginx_class: bool, serve_unsupported_protections: bool) -> Settings {
    Settings {
        nginx_class,
        serve_unsupported_protections,
        ..settings()
    }
}

fn reasons(d: &Desired) -> Vec<(&'static str, String)> {
    d.reports
        .iter()
        .map(|r| (r.kind.reason(), r.message.clone()))
        .collect()
}

#[test]
fn class_nginx_is_taken_only_with_the_flag() {
    let plain = nginx_ingress(&[]);
    let d = compute(&world(vec![plain.clone()]), &settings());
    assert!(d.frontends.is_empty(), "not ours without --nginx-class");
    let d = compute(&world(vec![plain]), &with(true, false));
    assert_eq!(
        d.frontends["legacy.example.com"],
        ["k8s:ns/legacy", "http://10.0.0.1:8080"]
    );
    let annotated = ingress("ns", "old")
        .class_annotation("nginx")
        .host("old.example.com")
        .path("/", "Prefix", "web", 80)
        .build();
    let d = compute(&world(vec![annotated]), &with(true, false));
    assert!(d.frontends.contains_key("old.example.com"));
}

#[test]
fn unsupported_annotations_are_reported_and_the_ingress_served() {
    let i = nginx_ingress(&[("proxy-body-size", "8m"), ("rewrite-target", "/$2")]);
    let d = compute(&world(vec![i]), &with(true, false));
    assert!(d.frontends.contains_key("legacy.example.com"));
    assert_eq!(
        reasons(&d),
        [
            ("UnsupportedAnnotation", "nginx.ingress.kubernetes.io/proxy-body-size is not supported: ignored, the Ingress is served without it".to_owned()),
            ("UnsupportedAnnotation", "nginx.ingress.kubernetes.io/rewrite-target is not supported: ignored, the Ingress is served without it".to_owned()),
        ]
    );
}

#[test]
fn an_unsupported_protection_refuses_the_whole_ingress() {
    for protection in [
        ("whitelist-source-range", "10.0.0.0/8"),
        ("auth-url", "http://auth.example.com/check"),
        ("auth-type", "basic"),
        ("limit-rps", "10"),
        ("configuration-snippet", "deny all;"),
        ("satisfy", "any"),
    ] {
        let i = nginx_ingress(&[protection, ("ssl-redirect", "true")]);
        let d = compute(&world(vec![i]), &with(true, false));
        assert!(
            d.frontends.is_empty(),
            "{protection:?}: served open to everyone"
        );
        assert!(!d.ingresses.contains(&ObjectKey::new("ns", "legacy")));
        let refused: Vec<_> = d
            .reports
            .iter()
            .filter(|r| r.kind == ReportKind::UnsupportedProtection)
            .collect();
        assert_eq!(refused.len(), 1, "{:?}", d.reports);
        assert!(refused[0].message.contains(protection.0));
        assert!(refused[0].message.contains("not served"));
    }
}

#[test]
fn the_operator_may_serve_unsupported_protections_unprotected() {
    let i = nginx_ingress(&[("whitelist-source-range", "10.0.0.0/8")]);
    let d = compute(&world(vec![i]), &with(true, true));
    assert!(d.frontends.contains_key("legacy.example.com"));
    assert_eq!(d.reports.len(), 1);
    assert_eq!(d.reports[0].kind.reason(), "ServedUnprotected");
    assert!(d.reports[0].message.contains("WITHOUT"));
}
