//! Label values are bounded: 10,000 distinct hosts, paths and methods (exact,
//! wildcard and unknown hosts) leave the set of series unchanged, and the
//! opt-in per-frontend series stay capped at `metricsPerFrontend` + `other`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use hipache::metrics::{names, OTHER_FRONTEND};
use hipache_tests::backend::Backend;
use hipache_tests::client::{Conn, Req};
use hipache_tests::metrics::scrape;
use hipache_tests::proxy::TestProxy;
use hipache_tests::redis::RedisServer;
use hipache_tests::wait::within;
use serde_json::json;

const REQUESTS: usize = 10_000;
/// Client connections, each sending its share of requests with keep-alive.
const CONNECTIONS: usize = 16;
/// Bound on the whole flood (debug build, two shared cores).
const FLOOD_DEADLINE: Duration = Duration::from_secs(180);
/// Exact frontends, each with its own identifier.
const FRONTENDS: usize = 50;
const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PURGE", "PROPFIND", "BREW",
];

/// xorshift64*: deterministic, dependency-free request mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Request `i`: a random method (a made-up one one time in ten), and a host
/// that is exact (one of [`FRONTENDS`]), a fresh subdomain under the
/// wildcard, or unknown; every path distinct.
fn request(i: usize, rng: &mut Rng) -> (String, String, String) {
    let method = if rng.below(10) == 0 {
        format!("X-M{i}")
    } else {
        METHODS[rng.below(METHODS.len())].to_owned()
    };
    let host = match rng.below(3) {
        0 => format!("app{}.test", rng.below(FRONTENDS)),
        1 => format!("h{i}.s{}.many.test", rng.below(1000)),
        _ => format!("unknown-{i}.example"),
    };
    (method, host, format!("/p/{i}/{}?q={i}", rng.next()))
}

/// Sends [`REQUESTS`] requests over [`CONNECTIONS`] keep-alive connections;
/// returns how many got an answer from a backend (a matched frontend).
async fn flood(addr: SocketAddr) -> usize {
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
            let mut conn = Conn::open(addr).await.expect("connect to the proxy");
            let mut served = 0;
            for i in (c..REQUESTS).step_by(CONNECTIONS) {
                let (method, host, path) = request(i, &mut rng);
                let resp = match conn.send(Req::new(&method, &host, &path)).await {
                    Ok(resp) => resp,
                    // The proxy may close after an error answer: send that
                    // request again on a new connection.
                    Err(_) if conn.is_closed() => {
                        conn = Conn::open(addr).await.expect("reconnect");
                        conn.send(Req::new(&method, &host, &path))
                            .await
                            .unwrap_or_else(|e| panic!("request {i}: {e:#}"))
                    }
                    Err(e) => panic!("request {i}: {e:#}"),
                };
                assert!(
                    [200, 400].contains(&resp.status.as_u16()),
                    "request {i}: {}",
                    resp.served_by()
                );
                if resp.status == 200 {
                    served += 1;
                }
            }
            served
        }));
    }
    let mut served = 0;
    for t in tasks {
        served += t.await.expect("client task");
    }
    served
}

async fn frontends(redis: &RedisServer, backend: &Backend) {
    for n in 0..FRONTENDS {
        redis
            .rpush_frontend(
                &format!("app{n}.test"),
                &format!("id-{n}"),
                &[backend.url()],
            )
            .await;
    }
    redis
        .rpush_frontend("*.many.test", "wild", &[backend.url()])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hosts_paths_and_methods_add_no_series() {
    let redis = RedisServer::start();
    let backend = Backend::start("b").await;
    frontends(&redis, &backend).await;
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({})).await;
    let before = scrape(proxy.admin_addr()).await;

    let served = within("the flood", FLOOD_DEADLINE, flood(proxy.addr())).await;

    let after = scrape(proxy.admin_addr()).await;
    assert_eq!(
        after.series(),
        before.series(),
        "10,000 distinct hosts, paths and methods changed the set of series"
    );
    assert_eq!(
        after.value(names::REQUESTS, &[]) - before.value(names::REQUESTS, &[]),
        REQUESTS as f64,
        "every request counted"
    );
    assert_eq!(
        after.value(names::REQUESTS, &[("class", "2xx")]),
        served as f64
    );
    assert!(
        after.value(names::REQUESTS, &[("method", "other")]) > 0.0,
        "made-up methods are counted as `other`"
    );
    for outcome in ["exact", "wildcard", "not_found"] {
        assert!(after.value(names::ROUTE_LOOKUPS, &[("outcome", outcome)]) > 0.0);
    }
    assert!(!after.text.contains("unknown-"), "no raw host in /metrics");
    assert!(!after.text.contains("many.test"), "no raw host in /metrics");
    assert!(!after.text.contains("/p/"), "no raw path in /metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_frontend_series_are_capped_with_other() {
    let cap = 5;
    let redis = RedisServer::start();
    let backend = Backend::start("b").await;
    frontends(&redis, &backend).await;
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({"metricsPerFrontend": cap})).await;
    let before = scrape(proxy.admin_addr()).await;

    let served = within("the flood", FLOOD_DEADLINE, flood(proxy.addr())).await;

    let after = scrape(proxy.admin_addr()).await;
    let per_frontend: Vec<_> = after
        .samples
        .iter()
        .filter(|s| s.name == names::FRONTEND_REQUESTS)
        .collect();
    let labels: BTreeSet<&str> = per_frontend
        .iter()
        .map(|s| s.labels["frontend"].as_str())
        .collect();
    assert!(
        labels.contains(OTHER_FRONTEND),
        "identifiers beyond the cap count under `other`: {labels:?}"
    );
    assert_eq!(
        labels.len(),
        cap + 1,
        "{cap} identifiers and `other`: {labels:?}"
    );
    assert!(
        per_frontend.len() <= (cap + 1) * 5,
        "at most one series per (identifier, class): {}",
        per_frontend.len()
    );
    assert_eq!(
        per_frontend.iter().map(|s| s.value).sum::<f64>(),
        served as f64,
        "every request with a frontend is counted once"
    );
    // Apart from the per-frontend family, the series are those of a fresh
    // proxy.
    let others: BTreeSet<String> = after
        .series()
        .into_iter()
        .filter(|s| !s.starts_with(names::FRONTEND_REQUESTS))
        .collect();
    assert_eq!(others, before.series());
}
