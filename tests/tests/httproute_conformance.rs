//! Gateway API's HTTPRoute conformance cases, as route documents, through
//! the proxy: for each case of `conformance/httproute.json` (see its
//! README), the document is written at `routes:<host>` in a real Redis, its
//! backends are real HTTP servers, and every request's answer and what the
//! backends saw are checked against what the conformance suite expects.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hipache_tests::backend::{Backend, RecordedRequest};
use hipache_tests::client::Req;
use hipache_tests::https::HttpsProxy;
use hipache_tests::redis::RedisServer;
use serde::Deserialize;
use serde_json::Value;

const TABLE: &str = include_str!("conformance/httproute.json");

/// How long a mirrored copy may take to arrive.
const MIRROR_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
struct Table {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    host: String,
    backends: Vec<String>,
    document: Value,
    requests: Vec<Request>,
    #[serde(default)]
    tls: bool,
}

#[derive(Deserialize)]
struct Request {
    #[serde(default = "get")]
    method: String,
    path: String,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    backend_response_headers: HashMap<String, String>,
    expect: Expect,
}

fn get() -> String {
    "GET".into()
}

#[derive(Deserialize, Default)]
struct Expect {
    status: Option<u16>,
    backend: Option<String>,
    backend_path: Option<String>,
    backend_host: Option<String>,
    #[serde(default)]
    backend_headers: HashMap<String, String>,
    #[serde(default)]
    backend_absent_headers: Vec<String>,
    #[serde(default)]
    response_headers: HashMap<String, String>,
    #[serde(default)]
    response_absent_headers: Vec<String>,
    location: Option<String>,
    #[serde(default)]
    mirrored_to: Vec<String>,
    weights: Option<HashMap<String, f64>>,
    backend_delay_ms: Option<u64>,
}

/// What the client got.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
}

/// The values of a header, joined with `,` as the conformance suite
/// compares them.
fn joined(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The document with `backend:<name>` replaced by the backends' URLs.
fn with_urls(document: &Value, urls: &HashMap<String, String>) -> Value {
    match document {
        Value::String(s) => match s.strip_prefix("backend:") {
            Some(name) => Value::String(urls[name].clone()),
            None => document.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|v| with_urls(v, urls)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), with_urls(v, urls)))
                .collect(),
        ),
        other => other.clone(),
    }
}

struct Rig {
    https: HttpsProxy,
}

impl Rig {
    async fn start() -> Rig {
        Rig {
            https: HttpsProxy::start(&["example.org", "example.com", "example.net"]).await,
        }
    }

    async fn send(&self, case: &Case, r: &Request) -> Answer {
        let host = r.headers.get("Host").cloned().unwrap_or(case.host.clone());
        let mut headers: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in &r.backend_response_headers {
            headers.push(("x-test-response-header".into(), format!("{k}: {v}")));
        }
        if let Some(ms) = r.expect.backend_delay_ms {
            headers.push(("x-test-delay-ms".into(), ms.to_string()));
        }
        if case.tls {
            let resp = self
                .https
                .request(&case.host, &r.method, &r.path, &host, &headers)
                .await;
            return Answer {
                status: resp.status,
                headers: resp.headers,
            };
        }
        let mut req = Req::new(&r.method, &host, &r.path);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let resp = req
            .send(self.https.proxy.addr())
            .await
            .unwrap_or_else(|e| panic!("{}: {} {}: {e:#}", case.name, r.method, r.path));
        Answer {
            status: resp.status.as_u16(),
            headers: resp.headers,
        }
    }
}

fn counts(backends: &HashMap<String, Backend>) -> HashMap<String, usize> {
    backends
        .iter()
        .map(|(n, b)| (n.clone(), b.request_count()))
        .collect()
}

/// The request `name` got since `before`, by its path.
fn received<'a>(
    seen: &'a [RecordedRequest],
    before: usize,
    path: &str,
) -> Option<&'a RecordedRequest> {
    seen[before.min(seen.len())..]
        .iter()
        .find(|r| r.uri == path)
}

async fn check_weights(
    rig: &Rig,
    case: &Case,
    r: &Request,
    backends: &HashMap<String, Backend>,
    want: &HashMap<String, f64>,
) {
    const N: usize = 500;
    let before = counts(backends);
    for _ in 0..N {
        let a = rig.send(case, r).await;
        assert_eq!(
            a.status, 200,
            "{}: every weighted request is served",
            case.name
        );
    }
    let after = counts(backends);
    for (name, share) in want {
        let got = (after[name] - before[name]) as f64 / N as f64;
        if *share == 0.0 {
            assert_eq!(got, 0.0, "{}: {name} has weight 0", case.name);
        }
        assert!(
            (got - share).abs() <= 0.05,
            "{}: {name} got {got:.3}, want {share} ± 0.05",
            case.name
        );
    }
}

/// Runs one case; the number of requests it checked.
async fn run_case(rig: &Rig, redis: &RedisServer, case: &Case) -> usize {
    let mut backends = HashMap::new();
    for name in &case.backends {
        backends.insert(name.clone(), Backend::start(name).await);
    }
    let urls: HashMap<String, String> =
        backends.iter().map(|(n, b)| (n.clone(), b.url())).collect();
    redis
        .set_routes(&case.host, &with_urls(&case.document, &urls))
        .await;
    let mut checked = 0;
    for r in &case.requests {
        let what = format!("{} {} {} {:?}", case.name, r.method, r.path, r.headers);
        let e = &r.expect;
        if let Some(want) = &e.weights {
            check_weights(rig, case, r, &backends, want).await;
            checked += 1;
            continue;
        }
        let before = counts(&backends);
        let started = Instant::now();
        let a = rig.send(case, r).await;
        assert_eq!(a.status, e.status.unwrap_or(200), "{what}: status");
        for (k, v) in &e.response_headers {
            assert_eq!(
                joined(&a.headers, k).as_deref(),
                Some(v.as_str()),
                "{what}: response header {k}"
            );
        }
        for k in &e.response_absent_headers {
            assert!(
                !a.headers.contains_key(k.as_str()),
                "{what}: response header {k} should be absent"
            );
        }
        if let Some(loc) = &e.location {
            assert_eq!(
                joined(&a.headers, "location").as_deref(),
                Some(loc.as_str()),
                "{what}: Location"
            );
        }
        match &e.backend {
            None => {
                let after = counts(&backends);
                assert_eq!(after, before, "{what}: no backend may receive it");
            }
            Some(name) => {
                let b = &backends[name];
                let seen = b.requests();
                let got = seen
                    .get(before[name])
                    .unwrap_or_else(|| panic!("{what}: {name} got nothing"));
                if let Some(p) = &e.backend_path {
                    assert_eq!(&got.uri, p, "{what}: path at {name}");
                }
                if let Some(h) = &e.backend_host {
                    assert_eq!(
                        got.header("host"),
                        Some(h.as_str()),
                        "{what}: Host at {name}"
                    );
                }
                for (k, v) in &e.backend_headers {
                    assert_eq!(
                        joined(&got.headers, k).as_deref(),
                        Some(v.as_str()),
                        "{what}: header {k} at {name}"
                    );
                }
                for k in &e.backend_absent_headers {
                    assert!(
                        !got.headers.contains_key(k.as_str()),
                        "{what}: header {k} should not reach {name}"
                    );
                }
                if let Some(ms) = e.backend_delay_ms {
                    let waited = started.elapsed();
                    let status = e.status.unwrap_or(200);
                    match status {
                        504 => assert!(
                            waited < Duration::from_millis(ms),
                            "{what}: 504 before the backend answered ({waited:?})"
                        ),
                        _ => assert!(
                            waited >= Duration::from_millis(ms),
                            "{what}: the backend's answer was awaited"
                        ),
                    }
                }
                let others: Vec<&String> = backends
                    .keys()
                    .filter(|n| *n != name && !e.mirrored_to.contains(n))
                    .filter(|n| backends[*n].request_count() != before[*n])
                    .collect();
                assert!(others.is_empty(), "{what}: {others:?} received it too");
            }
        }
        for m in &e.mirrored_to {
            let mirror = &backends[m];
            let path = e.backend_path.as_deref().unwrap_or(&r.path);
            let deadline = Instant::now() + MIRROR_DEADLINE;
            loop {
                let seen = mirror.requests();
                if let Some(copy) = received(&seen, before[m], path) {
                    assert_eq!(copy.method.as_str(), r.method, "{what}: mirrored method");
                    for (k, v) in &e.backend_headers {
                        assert_eq!(
                            joined(&copy.headers, k).as_deref(),
                            Some(v.as_str()),
                            "{what}: header {k} at mirror {m}"
                        );
                    }
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: no copy at mirror {m} within {MIRROR_DEADLINE:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        checked += 1;
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_httproute_conformance_cases() {
    let table: Table = serde_json::from_str(TABLE).expect("the case table parses");
    assert!(
        table.cases.len() >= 20,
        "the table holds the conformance cases"
    );
    let rig = Rig::start().await;
    let redis = &rig.https.redis;
    let mut checked = 0;
    for case in &table.cases {
        checked += run_case(&rig, redis, case).await;
    }
    let listed: usize = table.cases.iter().map(|c| c.requests.len()).sum();
    assert_eq!(checked, listed, "every request of the table was checked");
    assert!(listed >= 100, "{listed} requests");
}
