//! Fuzz targets (property-based, stable Rust): request heads through the
//! proxy's head handling, and `frontend:` lists through the Redis entry
//! decoder, from generated input that mixes valid pieces with hostile ones.
//!
//! By default each target runs a few thousand cases with the test suite,
//! from a fixed seed (the same cases every run).
//! On demand, `HIPACHE_FUZZ_SECONDS=N` keeps each target running for `N`
//! seconds with fresh seeds (`scripts/fuzz N` does that for both). A
//! failure prints the smallest input proptest found; it then becomes a
//! unit test next to the code it broke.
//!
//! What each target asserts:
//! - heads: no panic; a head is either refused with a client error (4xx or
//!   501) or goes upstream in origin form, HTTP/1.1, with exactly one
//!   `Host`, the one that chose the route, a path that normalising again
//!   does not change and that has no dot or empty segment, no hop-by-hop
//!   header, and no forwarding header from the untrusted client;
//! - entries: no panic; one entry per element, positions in order, a path
//!   rule and URL that encode back to what decodes to them, and a
//!   selection only ever naming backends of the frontend.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Request};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRng, TestRunner};

use crate::config::Config as ProxyConfig;
use crate::forward::{authority, headers, target, upgrade, ConnInfo};

/// Runs `test` over `strategy`: `cases` cases, or for
/// `HIPACHE_FUZZ_SECONDS` when set.
fn fuzz<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let seconds: u64 = std::env::var("HIPACHE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rounds = 0u64;
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    loop {
        // With the suite: the same cases every run, so that a failure is
        // one a change brought. Timed runs: fresh seeds each round.
        let mut runner = match seconds {
            0 => TestRunner::new_with_rng(
                config.clone(),
                TestRng::deterministic_rng(config.rng_algorithm),
            ),
            _ => TestRunner::new(config.clone()),
        };
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{e}");
        }
        rounds += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    if seconds > 0 {
        eprintln!("fuzz: {} cases in {seconds} s", rounds * u64::from(cases));
    }
}

// ------------------------------------------------------------ heads

fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%61dmin".to_owned()),
        Just("%zz".to_owned()),
        Just("%00".to_owned()),
        Just("%".to_owned()),
        Just("admin".to_owned()),
        "[a-zA-Z0-9._~%-]{1,8}",
        "\\PC{1,4}",
    ]
}

fn target_text() -> impl Strategy<Value = String> {
    let path = || {
        proptest::collection::vec(path_segment(), 0..6).prop_map(|s| format!("/{}", s.join("/")))
    };
    let query = proptest::option::of("[a-z0-9=&/.%]{0,12}");
    prop_oneof![
        6 => (path(), query).prop_map(|(p, q)| match q {
            Some(q) => format!("{p}?{q}"),
            None => p,
        }),
        2 => (host_text(), path()).prop_map(|(h, p)| format!("http://{h}{p}")),
        1 => host_text(),
        1 => Just("*".to_owned()),
        1 => "\\PC{0,16}",
    ]
}

fn host_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a.test".to_owned()),
        Just("A.Test:8080".to_owned()),
        Just("b.test.".to_owned()),
        Just("[::1]:80".to_owned()),
        Just("evil@a.test".to_owned()),
        Just("a.test/x".to_owned()),
        Just(String::new()),
        "[a-z0-9.:*-]{1,20}",
        "\\PC{0,12}",
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("host".to_owned()),
        Just("connection".to_owned()),
        Just("upgrade".to_owned()),
        Just("transfer-encoding".to_owned()),
        Just("content-length".to_owned()),
        Just("te".to_owned()),
        Just("http2-settings".to_owned()),
        Just("keep-alive".to_owned()),
        Just("forwarded".to_owned()),
        Just("x-forwarded-for".to_owned()),
        Just("x-forwarded-host".to_owned()),
        Just("x-forwarded-prefix".to_owned()),
        Just("x-real-ip".to_owned()),
        Just("true-client-ip".to_owned()),
        Just("x-original-url".to_owned()),
        Just("sec-websocket-key".to_owned()),
        Just("sec-websocket-version".to_owned()),
        "[a-zA-Z-]{1,12}",
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"a.test".to_vec()),
        Just(b"b.test".to_vec()),
        Just(b"upgrade".to_vec()),
        Just(b"keep-alive, upgrade, x-forwarded-for".to_vec()),
        Just(b"websocket".to_vec()),
        Just(b"h2c".to_vec()),
        Just(b"chunked".to_vec()),
        Just(b"gzip, chunked".to_vec()),
        Just(b"5".to_vec()),
        Just(b"dGhlIHNhbXBsZSBub25jZQ==".to_vec()),
        Just(b"13".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ]
}

/// A request head as hyper could hand it over: the pieces that make a
/// valid `http::Request`, the rest dropped as hyper would refuse them.
#[derive(Debug, Clone)]
struct Head {
    method: String,
    target: String,
    http2: bool,
    headers: Vec<(String, Vec<u8>)>,
}

fn head() -> impl Strategy<Value = Head> {
    (
        prop_oneof![
            Just("GET".to_owned()),
            Just("POST".to_owned()),
            Just("OPTIONS".to_owned()),
            Just("CONNECT".to_owned()),
            "[A-Z]{1,7}",
        ],
        target_text(),
        any::<bool>(),
        proptest::collection::vec((header_name(), header_value()), 0..10),
    )
        .prop_map(|(method, target, http2, headers)| Head {
            method,
            target,
            http2,
            headers,
        })
}

fn build(head: &Head) -> Option<Request<()>> {
    let mut b = Request::builder()
        .method(head.method.as_str())
        .uri(head.target.as_str())
        .version(match head.http2 {
            true => http::Version::HTTP_2,
            false => http::Version::HTTP_11,
        });
    for (name, value) in &head.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(value).ok()?;
        b = b.header(name, value);
    }
    b.body(()).ok()
}

/// The head handling of [`crate::forward`], in its order, without I/O.
fn through_the_proxy(req: Request<()>) -> Result<http::request::Parts, crate::error::ProxyError> {
    let config = ProxyConfig::default();
    let raw_host = authority::routing_host(&req)?.to_owned();
    hipache_schema::normalize_host(&raw_host)?;
    let target::Target { normalized, .. } = target::check(&req)?;
    let upgrade = upgrade::Requested::of(&req, &config.upgrade_protocols)?;
    let peer: SocketAddr = "203.0.113.9:4000"
        .parse()
        .map_err(|_| crate::error::ProxyError::NoHost)?;
    let local: SocketAddr = "127.0.0.1:80"
        .parse()
        .map_err(|_| crate::error::ProxyError::NoHost)?;
    let conn = ConnInfo::new(peer, local, false, &config);
    let (mut parts, ()) = req.into_parts();
    let protocol = upgrade.as_ref().map(|u| &u.protocol);
    headers::upstream_head(&mut parts, normalized, protocol, true, conn.forwarded(true));
    Ok(parts)
}

fn check_head(head: Head) -> Result<(), TestCaseError> {
    let Some(req) = build(&head) else {
        return Ok(());
    };
    let routing = authority::routing_host(&req).map(str::to_owned);
    let parts = match through_the_proxy(req) {
        Ok(parts) => parts,
        Err(e) => {
            let status = e.status().as_u16();
            prop_assert!(
                (400..500).contains(&status) || status == 501,
                "{e}: {status}"
            );
            return Ok(());
        }
    };
    let routing =
        routing.map_err(|e| TestCaseError::fail(format!("forwarded without a host: {e}")))?;
    prop_assert_eq!(parts.version, http::Version::HTTP_11);
    prop_assert!(
        parts.uri.scheme().is_none() && parts.uri.authority().is_none(),
        "origin form"
    );
    // The path as hyper writes it on the request line (an empty one is
    // written as `/`).
    let sent = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let path = sent.split('?').next().unwrap_or_default();
    prop_assert!(path.starts_with('/'), "path {path:?}");
    prop_assert_eq!(
        target::normalize_path(path).ok().map(|p| p.into_owned()),
        Some(path.to_owned()),
        "normalised once"
    );
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, s) in segments.iter().enumerate() {
        prop_assert!(*s != "." && *s != "..", "{path:?}: dot segment");
        prop_assert!(
            !s.is_empty() || i + 1 == segments.len(),
            "{path:?}: empty segment"
        );
    }
    let hosts: Vec<_> = parts.headers.get_all(http::header::HOST).iter().collect();
    prop_assert_eq!(hosts.len(), 1, "one Host");
    prop_assert_eq!(
        hosts[0].as_bytes(),
        routing.as_bytes(),
        "the routing host upstream"
    );
    for name in [
        "transfer-encoding",
        "te",
        "keep-alive",
        "http2-settings",
        "proxy-connection",
    ] {
        prop_assert!(!parts.headers.contains_key(name), "{name} forwarded");
    }
    let upgraded = parts.headers.contains_key(http::header::UPGRADE);
    if upgraded {
        prop_assert!(
            upgrade::is_websocket(&parts.headers[http::header::UPGRADE]),
            "only websocket by default"
        );
    }
    // From an untrusted client, every forwarding header is ours.
    // RFC 7239: a value that is not a token is a quoted string.
    let token = routing
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let forwarded = match token {
        true => format!("for=203.0.113.9;host={routing};proto=http"),
        false => format!("for=203.0.113.9;host=\"{routing}\";proto=http"),
    };
    let ours = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-real-ip", "203.0.113.9"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-protocol", "http"),
        ("x-forwarded-port", "80"),
        ("x-forwarded-host", routing.as_str()),
        ("forwarded", forwarded.as_str()),
    ];
    for (name, value) in parts.headers.iter() {
        let n = name.as_str();
        if n.starts_with("x-forwarded-") || n == "forwarded" || n == "x-real-ip" {
            let want = ours.iter().find(|(o, _)| *o == n).map(|(_, v)| *v);
            prop_assert_eq!(Some(value.as_bytes()), want.map(str::as_bytes), "{}", n);
        }
    }
    for (name, _) in ours {
        prop_assert_eq!(parts.headers.get_all(name).iter().count(), 1, "{}", name);
    }
    Ok(())
}

#[test]
fn request_heads() {
    fuzz(4096, head(), check_head);
}

// ------------------------------------------------------------ entries

fn element() -> impl Strategy<Value = String> {
    let url = prop_oneof![
        Just("http://10.0.0.1:8080".to_owned()),
        Just("https://b.test".to_owned()),
        Just("http://[::1]:80".to_owned()),
        Just("http://h:99999".to_owned()),
        Just("unavailable:no endpoints".to_owned()),
        Just("ftp://x".to_owned()),
        "[a-z]{1,5}://[a-z0-9.:\\[\\]@]{0,15}(/[a-z]{0,4})?",
        "\\PC{0,20}",
    ];
    let rule = proptest::option::of(prop_oneof![
        Just("/".to_owned()),
        Just("/api".to_owned()),
        Just("=/login".to_owned()),
        Just("=".to_owned()),
        "=?/[a-z/]{0,8}",
    ]);
    (rule, url).prop_map(|(r, u)| match r {
        Some(r) => format!("{r} {u}"),
        None => u,
    })
}

fn check_entries(
    (identifier, elements, path): (String, Vec<String>, String),
) -> Result<(), TestCaseError> {
    let mut list = vec![identifier];
    list.extend(elements);
    let Some(f) = hipache_schema::Frontend::decode(&list) else {
        return Err(TestCaseError::fail("a list with an identifier decodes"));
    };
    prop_assert_eq!(f.backends.len(), list.len() - 1);
    for (i, b) in f.backends.iter().enumerate() {
        prop_assert_eq!(b.position, i);
        let bad_rule = b.url == Err(hipache_schema::backend::BackendUrlError::PathRule);
        // An element as a writer would store it: no surrounding white
        // space (which decoding trims, so it cannot encode back).
        let canonical = b.raw == b.raw.trim() && b.url_text == b.url_text.trim();
        if !bad_rule && canonical && !b.url_text.is_empty() {
            let again = hipache_schema::BackendEntry::decode(
                i,
                &hipache_schema::BackendEntry::encode(b.path.as_ref(), &b.url_text),
            );
            prop_assert_eq!(&again.path, &b.path);
            prop_assert_eq!(&again.url_text, &b.url_text);
        }
    }
    if let hipache_schema::entry::Selection::Group(g) = f.select(&path) {
        for b in f.group(g) {
            prop_assert!(b.position < f.backends.len());
            prop_assert_eq!(b.path.as_ref(), g);
        }
    }
    Ok(())
}

#[test]
fn redis_entries() {
    fuzz(
        4096,
        (
            "\\PC{0,12}",
            proptest::collection::vec(element(), 0..8),
            "/[a-z/.]{0,12}",
        ),
        check_entries,
    );
}
