//! Fleet-wide rate limits (`docs/policies.md`, "Rate limits") end to end:
//! a real `redis-server`, real backends, proxies in-process and as
//! processes, and a client that counts what got through: three proxy
//! processes sharing one bucket, 429 with `Retry-After`, buckets scoped by
//! client (forwarded and peer addresses), by rule and by host, and what
//! each `onRedisDown` does while Redis is stopped or stalled.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hipache_tests::backend::Backend;
use hipache_tests::client::{Req, Resp};
use hipache_tests::free_port;
use hipache_tests::metrics::{scrape, scrape_until, Scrape};
use hipache_tests::proxy::{ProxyProcess, TestProxy};
use hipache_tests::redis::RedisServer;
use hipache_tests::wait::{until, within};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Bound on anything that happens off the request path (a reconnection, a
/// metric).
const DEADLINE: Duration = Duration::from_secs(10);
/// Bound on one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may wait for Redis's decision before the limit's
/// `onRedisDown` decides (the proxy's bound), and the slack a loaded test
/// machine gets on top of it (216 ms were seen on two busy cores): the
/// bound plus the slack stays under the route reads' 500 ms reply timeout,
/// far under the stalls the tests cause.
const ANSWER_BOUND: Duration = Duration::from_millis(50);
const SLACK: Duration = Duration::from_millis(250);

const DECISIONS: &str = "hipache_rate_limit_decisions_total";
const REDIS_DURATION: &str = "hipache_rate_limit_redis_duration_seconds";
const REDIS_ERRORS: &str = "hipache_rate_limit_redis_errors_total";

/// A `rateLimit` policy.
fn limit(requests: u32, period: &str, burst: u32, key: &str, on_down: &str) -> Value {
    json!({
        "requests": requests,
        "period": period,
        "burst": burst,
        "key": key,
        "onRedisDown": on_down,
    })
}

/// A document whose one rule (every path) goes to `backend`, with `policy`
/// host-wide.
fn host_limited(id: &str, backend: &Backend, policy: Value) -> Value {
    json!({
        "id": id,
        "policies": {"rateLimit": policy},
        "rules": [{"backends": [{"url": backend.url()}]}],
    })
}

/// A document whose rule `/limited` has `policy`, and whose other paths
/// are not limited (a request there caches the host's routes without
/// taking from a bucket).
fn rule_limited(id: &str, backend: &Backend, policy: Value) -> Value {
    json!({
        "id": id,
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/limited"}}],
                "policies": {"rateLimit": policy},
                "backends": [{"url": backend.url()}],
            },
            {"backends": [{"url": backend.url()}]},
        ],
    })
}

async fn send_to(addr: SocketAddr, r: Req) -> Resp {
    r.timeout(REQUEST_TIMEOUT)
        .send(addr)
        .await
        .unwrap_or_else(|e| panic!("request through the proxy at {addr} failed: {e:#}"))
}

async fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    send_to(addr, Req::get(host, path)).await
}

/// `GET` from `X-Forwarded-For: client` (the proxy trusts 127.0.0.1).
async fn get_as(addr: SocketAddr, host: &str, path: &str, client: &str) -> Resp {
    send_to(addr, Req::get(host, path).header("x-forwarded-for", client)).await
}

/// Statuses of `n` requests in a row.
async fn statuses(addr: SocketAddr, host: &str, path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(addr, host, path).await.status.as_u16());
    }
    out
}

/// A `GET` over a connection from the loopback address `source` (the
/// proxy sees it as the peer): its status and `Retry-After`.
async fn get_from(source: Ipv4Addr, addr: SocketAddr, host: &str) -> (u16, Option<String>) {
    let exchange = async {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::from((source, 0)))
            .unwrap_or_else(|e| panic!("bind {source}: {e}"));
        let mut stream = socket.connect(addr).await.expect("connect to the proxy");
        let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        parsed.parse(&answer).expect("an HTTP answer");
        let retry_after = parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
            .map(|h| String::from_utf8_lossy(h.value).into_owned());
        (parsed.code.expect("a status"), retry_after)
    };
    within(&format!("GET from {source}"), REQUEST_TIMEOUT, exchange).await
}

fn decisions(s: &Scrape, decision: &str) -> f64 {
    s.value(DECISIONS, &[("decision", decision)])
}

async fn ratelimit_keys(redis: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis.query(&["KEYS", "ratelimit:*"]).await;
    keys.sort();
    keys
}

/// Three proxy processes on `redis`, each with an admin listener.
async fn three_proxies(redis: &RedisServer) -> Vec<ProxyProcess> {
    let mut proxies = Vec::new();
    for _ in 0..3 {
        let admin = format!("127.0.0.1:{}", free_port());
        proxies.push(ProxyProcess::start(&redis.url(), json!({"adminAddress": admin})).await);
    }
    proxies
}

/// Three proxy processes on one Redis, a host limited to 10 requests a
/// second with a burst of 5, a client sending far more for 3 s round-robin
/// through the three. Together they let through what one bucket allows:
/// burst + 1 at once, then one every 100 ms for the 29 intervals that end
/// inside the window, 10 x 3 + 5 = 35 (± 3 for scheduling at the window's
/// ends); per-replica buckets would let through three times as many.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_proxies_on_one_redis_let_through_one_buckets_worth() {
    const RATE: u32 = 10;
    const BURST: u32 = 5;
    const WINDOW: Duration = Duration::from_secs(3);
    let redis = RedisServer::start();
    let backend = Backend::start("app").await;
    let host = "fleet.example.com";
    let proxies = three_proxies(&redis).await;
    redis
        .set_routes(
            host,
            &host_limited("fleet", &backend, limit(RATE, "1s", BURST, "all", "deny")),
        )
        .await;
    let addrs: Vec<SocketAddr> = proxies.iter().map(ProxyProcess::addr).collect();

    // Six clients, each sending to the proxies in turn, about 400 requests
    // a second in all.
    let results = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..6 {
        let (addrs, results) = (addrs.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = client;
            while start.elapsed() < WINDOW {
                let proxy = i % addrs.len();
                let resp = get(addrs[proxy], host, "/").await;
                let retry_after = resp.header("retry-after").map(str::to_owned);
                results
                    .lock()
                    .expect("results")
                    .push((proxy, resp.status.as_u16(), retry_after));
                i += 1;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    for t in tasks {
        within("the client loops", WINDOW + DEADLINE, t)
            .await
            .expect("a client loop");
    }
    let results = results.lock().expect("results").clone();
    let allowed: Vec<&(usize, u16, Option<String>)> =
        results.iter().filter(|(_, s, _)| *s == 200).collect();
    let limited: Vec<&(usize, u16, Option<String>)> =
        results.iter().filter(|(_, s, _)| *s == 429).collect();
    assert_eq!(
        allowed.len() + limited.len(),
        results.len(),
        "every answer is a 200 or a 429"
    );
    let expected = (RATE * WINDOW.as_secs() as u32 + BURST) as usize;
    let tolerance = 3;
    eprintln!(
        "{} requests through 3 proxies in {WINDOW:?}: {} allowed (expected {expected} ± {tolerance}), {} limited",
        results.len(),
        allowed.len(),
        limited.len()
    );
    assert!(
        results.len() > 10 * expected,
        "the client sent far more than the limit: {}",
        results.len()
    );
    assert!(
        allowed.len().abs_diff(expected) <= tolerance,
        "{} allowed through 3 proxies, expected {expected} ± {tolerance}",
        allowed.len()
    );
    for proxy in 0..3 {
        assert!(
            allowed.iter().any(|(p, _, _)| *p == proxy),
            "proxy {proxy} let nothing through: the bucket is shared, not owned"
        );
    }
    for (_, _, retry_after) in &limited {
        let secs: u64 = retry_after
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a 429 without a Retry-After in seconds: {retry_after:?}"));
        assert_eq!(secs, 1, "a 10/s bucket is never more than a second away");
    }

    // Redis decided every request; what each proxy counted adds up.
    let (mut redis_allowed, mut redis_limited, mut round_trips, mut seconds) = (0.0, 0.0, 0.0, 0.0);
    for p in &proxies {
        let s = scrape(p.admin_addr()).await;
        redis_allowed += decisions(&s, "redis_allowed");
        redis_limited += decisions(&s, "redis_limited");
        for other in [
            "local_allowed",
            "local_limited",
            "down_allowed",
            "down_refused",
        ] {
            assert_eq!(decisions(&s, other), 0.0, "{other} while Redis is up");
        }
        assert_eq!(s.value(REDIS_ERRORS, &[]), 0.0);
        round_trips += s.histogram_count(REDIS_DURATION, &[]);
        seconds += s.value(&format!("{REDIS_DURATION}_sum"), &[]);
    }
    assert_eq!(redis_allowed as usize, allowed.len());
    assert_eq!(redis_limited as usize, limited.len());
    // A limit this slow takes no leases: one round trip per request.
    assert_eq!(
        round_trips as usize,
        results.len(),
        "one round trip per request"
    );
    eprintln!(
        "Redis round trip per decision: {:.3} ms on average over {round_trips} for {} requests (debug build, loopback)",
        seconds / round_trips * 1000.0,
        results.len()
    );
    assert_eq!(
        ratelimit_keys(&redis).await,
        [format!("ratelimit:{host}:host:all")]
    );
}

/// `clients` loops, each sending `GET /` to the proxies in turn for
/// `window`: the statuses, in no order.
async fn flood(
    addrs: &[SocketAddr],
    host: &'static str,
    clients: usize,
    window: Duration,
) -> Vec<u16> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let addrs = addrs.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = client;
            while start.elapsed() < window {
                out.push(get(addrs[i % addrs.len()], host, "/").await.status.as_u16());
                i += 1;
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            within("the client loops", window + DEADLINE, t)
                .await
                .expect("a client loop"),
        );
    }
    all
}

/// Round trips to Redis for rate-limit decisions, over `proxies`.
async fn round_trips(proxies: &[ProxyProcess]) -> f64 {
    let mut n = 0.0;
    for p in proxies {
        n += scrape(p.admin_addr())
            .await
            .histogram_count(REDIS_DURATION, &[]);
    }
    n
}

/// A limit fast enough for leases (250/s, burst 250: blocks of up to 12
/// tokens), flooded through three proxy processes: together they never
/// let through more than the bucket allows (burst + 1 + rate x window),
/// lose at most a few leases' worth, and take the burst in leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_keep_three_proxies_within_a_fast_limit() {
    const RATE: u32 = 250;
    const BURST: u32 = 250;
    const WINDOW: Duration = Duration::from_secs(2);
    let redis = RedisServer::start();
    let backend = Backend::start("app").await;
    let host = "leased.example.com";
    let proxies = three_proxies(&redis).await;
    redis
        .set_routes(
            host,
            &host_limited("leased", &backend, limit(RATE, "1s", BURST, "all", "deny")),
        )
        .await;
    let addrs: Vec<SocketAddr> = proxies.iter().map(ProxyProcess::addr).collect();
    let statuses = flood(&addrs, host, 12, WINDOW).await;
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        allowed + limited,
        statuses.len(),
        "every answer is a 200 or a 429"
    );
    let most = (BURST + 1 + RATE * WINDOW.as_secs() as u32) as usize;
    let trips = round_trips(&proxies).await;
    eprintln!(
        "{} requests through 3 proxies in {WINDOW:?}: {allowed} allowed (at most {most}), {limited} limited, {trips} Redis round trips",
        statuses.len()
    );
    assert!(
        limited > 0,
        "the client sent more than the limit: {} requests",
        statuses.len()
    );
    // The window's edges: the client's clock starts before the first
    // request reaches Redis, so a few more tokens than the formula may be
    // on Redis's clock inside it.
    assert!(allowed <= most + 5, "{allowed} allowed, at most {most}");
    // At most one unspent lease per proxy at the end (25 tokens), plus
    // leases lapsed while demand moved between proxies.
    assert!(
        allowed + 150 >= most,
        "{allowed} allowed of {most}: leases lost too much"
    );
    // Every refusal asks Redis, and so does each token once the bucket is
    // empty (it refills one at a time); the burst came in leases.
    assert!(
        (trips as usize) < limited + allowed,
        "{trips} round trips for {allowed} allowed and {limited} limited"
    );
}

/// A limit that is never reached costs about one Redis round trip per
/// lease of up to 256 requests, not one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_that_is_not_reached_asks_redis_once_per_lease() {
    let redis = RedisServer::start();
    let backend = Backend::start("app").await;
    let host = "roomy.example.com";
    let admin = format!("127.0.0.1:{}", free_port());
    let proxy = ProxyProcess::start(&redis.url(), json!({"adminAddress": admin})).await;
    redis
        .set_routes(
            host,
            &host_limited(
                "roomy",
                &backend,
                limit(100_000, "1s", 100_000, "all", "deny"),
            ),
        )
        .await;
    let statuses = flood(&[proxy.addr()], host, 8, Duration::from_secs(2)).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a limit never reached refuses nothing"
    );
    let trips = round_trips(std::slice::from_ref(&proxy)).await;
    let s = scrape(proxy.admin_addr()).await;
    assert_eq!(decisions(&s, "redis_allowed") as usize, statuses.len());
    eprintln!(
        "{} requests, {trips} Redis round trips ({:.1} requests per round trip)",
        statuses.len(),
        statuses.len() as f64 / trips
    );
    assert!(
        trips * 10.0 <= statuses.len() as f64,
        "{trips} round trips for {} requests",
        statuses.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_bucket_answers_429_with_retry_after_and_the_error_page() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&redis.url(), json!({})).await;
    let backend = Backend::start("app").await;
    redis
        .set_routes(
            "once.example.com",
            &host_limited("once", &backend, limit(1, "1m", 0, "all", "local")),
        )
        .await;
    let first = get(proxy.addr(), "once.example.com", "/").await;
    assert_eq!(first.status, 200, "{}", first.served_by());
    assert_eq!(first.header("retry-after"), None);
    let second = get(proxy.addr(), "once.example.com", "/").await;
    assert_eq!(second.status, 429, "{}", second.served_by());
    let secs: u64 = second
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((59..=60).contains(&secs), "Retry-After: {secs}");
    assert!(
        second.text().contains("429"),
        "the error page: {}",
        second.text()
    );
    assert_eq!(
        backend.request_count(),
        1,
        "a limited request never reaches the backend"
    );
    // The bucket in Redis expires when it is full again: within a minute.
    let pttl: i64 = redis
        .query(&["PTTL", "ratelimit:once.example.com:host:all"])
        .await;
    assert!((1..=60_000).contains(&pttl), "PTTL {pttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_trusted_proxy_get_a_bucket_each() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&redis.url(), json!({"trustedProxies": ["127.0.0.1/32"]})).await;
    let backend = Backend::start("app").await;
    let host = "clients.example.com";
    redis
        .set_routes(
            host,
            &host_limited("clients", &backend, limit(1, "1m", 1, "client", "local")),
        )
        .await;
    for client in ["10.0.0.1", "10.0.0.2"] {
        for n in 0..2 {
            let r = get_as(proxy.addr(), host, "/", client).await;
            assert_eq!(r.status, 200, "{client}'s request {n}: {}", r.served_by());
        }
        let r = get_as(proxy.addr(), host, "/", client).await;
        assert_eq!(r.status, 429, "{client} past its burst: {}", r.served_by());
    }
    // A client that prepends an address to the header is still itself.
    let forged = get_as(proxy.addr(), host, "/", "10.0.0.9, 10.0.0.1").await;
    assert_eq!(
        forged.status, 429,
        "the rightmost untrusted address is the client"
    );
    // Clients the trusted proxy gives no address for share one bucket.
    let mut unknown = Vec::new();
    for client in ["unknown", "10.0.0.3, unknown", "_hidden"] {
        unknown.push(
            get_as(proxy.addr(), host, "/", client)
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(unknown, [200, 200, 429]);
    assert_eq!(
        ratelimit_keys(&redis).await,
        [
            format!("ratelimit:{host}:host:10.0.0.1"),
            format!("ratelimit:{host}:host:10.0.0.2"),
            format!("ratelimit:{host}:host:unknown"),
        ]
    );

    // Keyed by `all`, the same two clients share one bucket.
    let shared = "shared.example.com";
    redis
        .set_routes(
            shared,
            &host_limited("shared", &backend, limit(1, "1m", 1, "all", "local")),
        )
        .await;
    let mut got = Vec::new();
    for client in ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"] {
        got.push(
            get_as(proxy.addr(), shared, "/", client)
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(got, [200, 200, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_from_different_addresses_get_a_bucket_each() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&redis.url(), json!({"trustedProxies": []})).await;
    let backend = Backend::start("app").await;
    let host = "peers.example.com";
    redis
        .set_routes(
            host,
            &host_limited("peers", &backend, limit(1, "1m", 0, "client", "local")),
        )
        .await;
    let (a, b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    assert_eq!(get_from(a, proxy.addr(), host).await.0, 200);
    let (status, retry_after) = get_from(a, proxy.addr(), host).await;
    assert_eq!(status, 429);
    assert!(retry_after.is_some(), "429 carries Retry-After");
    assert_eq!(
        get_from(b, proxy.addr(), host).await.0,
        200,
        "another peer, another bucket"
    );
    assert_eq!(get_from(b, proxy.addr(), host).await.0, 429);
    assert_eq!(
        ratelimit_keys(&redis).await,
        [
            format!("ratelimit:{host}:host:127.0.0.2"),
            format!("ratelimit:{host}:host:127.0.0.3"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_with_their_own_limits_have_their_own_buckets() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&redis.url(), json!({})).await;
    let backend = Backend::start("app").await;
    let host = "rules.example.com";
    let one = limit(1, "1m", 0, "all", "local");
    let rule = |name: Option<&str>, path: &str, policy: &Value| {
        let mut r = json!({
            "matches": [{"path": {"type": "PathPrefix", "value": path}}],
            "backends": [{"url": backend.url()}],
        });
        if let Some(name) = name {
            r["name"] = json!(name);
        }
        if !policy.is_null() {
            r["policies"] = json!({"rateLimit": policy});
        }
        r
    };
    // A host-wide limit (shared by /c and /d, which have none of their
    // own) and two rules with their own: a named one and an unnamed one.
    let host_wide = limit(1, "1m", 1, "all", "local");
    redis
        .set_routes(
            host,
            &json!({
                "id": "rules",
                "policies": {"rateLimit": host_wide},
                "rules": [
                    rule(Some("api"), "/a", &one),
                    rule(None, "/b", &one),
                    rule(None, "/c", &Value::Null),
                    rule(None, "/d", &Value::Null),
                ],
            }),
        )
        .await;
    assert_eq!(statuses(proxy.addr(), host, "/a", 2).await, [200, 429]);
    assert_eq!(
        statuses(proxy.addr(), host, "/b", 2).await,
        [200, 429],
        "a rule's bucket is its own"
    );
    assert_eq!(statuses(proxy.addr(), host, "/c", 1).await, [200]);
    assert_eq!(
        statuses(proxy.addr(), host, "/d", 2).await,
        [200, 429],
        "rules without a limit of their own share the host's"
    );
    assert_eq!(statuses(proxy.addr(), host, "/c", 1).await, [429]);
    assert_eq!(
        ratelimit_keys(&redis).await,
        [
            format!("ratelimit:{host}:host:all"),
            format!("ratelimit:{host}:rule:#1:all"),
            format!("ratelimit:{host}:rule:api:all"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_never_share_a_bucket_and_a_wildcards_hosts_share_its_own() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&redis.url(), json!({})).await;
    let backend = Backend::start("app").await;
    let policy = limit(1, "1m", 0, "all", "local");
    for (host, id) in [
        ("a.example.com", "a"),
        ("b.example.com", "b"),
        ("*.w.example.com", "w"),
    ] {
        redis
            .set_routes(host, &host_limited(id, &backend, policy.clone()))
            .await;
    }
    assert_eq!(
        statuses(proxy.addr(), "a.example.com", "/", 2).await,
        [200, 429]
    );
    assert_eq!(
        statuses(proxy.addr(), "b.example.com", "/", 2).await,
        [200, 429],
        "the same policy on another host is another bucket"
    );
    // A wildcard document's limit covers every host it serves together: a
    // client cannot get a fresh bucket by naming another subdomain.
    assert_eq!(
        statuses(proxy.addr(), "x.w.example.com", "/", 1).await,
        [200]
    );
    assert_eq!(
        statuses(proxy.addr(), "y.w.example.com", "/", 1).await,
        [429]
    );
    assert_eq!(
        ratelimit_keys(&redis).await,
        [
            "ratelimit:*.w.example.com:host:all",
            "ratelimit:a.example.com:host:all",
            "ratelimit:b.example.com:host:all",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_prefix_applies_to_buckets() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&redis.url_with_prefix("edge:"), json!({})).await;
    let backend = Backend::start("app").await;
    let doc = host_limited("p", &backend, limit(1, "1m", 0, "all", "deny"));
    let _: () = redis
        .query(&["SET", "edge:routes:p.example.com", &doc.to_string()])
        .await;
    assert_eq!(
        statuses(proxy.addr(), "p.example.com", "/", 2).await,
        [200, 429]
    );
    let keys: Vec<String> = redis.query(&["KEYS", "*ratelimit:*"]).await;
    assert_eq!(keys, ["edge:ratelimit:p.example.com:host:all"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_script_cache_is_reloaded_in_the_same_round_trip() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({})).await;
    let backend = Backend::start("app").await;
    let host = "flush.example.com";
    redis
        .set_routes(
            host,
            &host_limited("flush", &backend, limit(1, "1m", 2, "all", "deny")),
        )
        .await;
    assert_eq!(statuses(proxy.addr(), host, "/", 1).await, [200]);
    let _: () = redis.query(&["SCRIPT", "FLUSH"]).await;
    assert_eq!(statuses(proxy.addr(), host, "/", 3).await, [200, 200, 429]);
    let s = scrape(proxy.admin_addr()).await;
    assert_eq!(decisions(&s, "redis_allowed"), 3.0);
    assert_eq!(decisions(&s, "redis_limited"), 1.0);
    assert_eq!(s.value(REDIS_ERRORS, &[]), 0.0, "NOSCRIPT is not an error");
    assert_eq!(s.histogram_count(REDIS_DURATION, &[]), 4.0);
}

/// Starts a proxy with its admin listener, a document on `host` limited at
/// `/limited` by 1 a minute with a burst of 1 (two requests) and
/// `on_down`, and caches its routes (a request elsewhere), so that the
/// host is still served once Redis stops.
async fn outage_setup(on_down: &str, host: &str) -> (RedisServer, TestProxy, Backend) {
    let redis = RedisServer::start();
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({})).await;
    let backend = Backend::start("app").await;
    redis
        .set_routes(
            host,
            &rule_limited("outage", &backend, limit(1, "1m", 1, "all", on_down)),
        )
        .await;
    assert_eq!(get(proxy.addr(), host, "/").await.status, 200);
    (redis, proxy, backend)
}

/// Waits until the proxy's route connection saw Redis go.
async fn link_lost(proxy: &TestProxy) {
    scrape_until(
        proxy.admin_addr(),
        "the Redis connection lost",
        DEADLINE,
        |s| match s.value("hipache_redis_connected", &[]) {
            0.0 => Ok(()),
            v => Err(format!("hipache_redis_connected {v}")),
        },
    )
    .await;
}

/// `n` requests to `/limited`, each answered within the bound (Redis is
/// known to be down: no request waits for it).
async fn fast_statuses(addr: SocketAddr, host: &str, n: usize, bound: Duration) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let status = get(addr, host, "/limited").await.status.as_u16();
        assert!(
            started.elapsed() < bound,
            "answered in {:?} while Redis is down",
            started.elapsed()
        );
        out.push(status);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_each_proxy_limits_alone_with_the_same_parameters() {
    let host = "local.example.com";
    let (mut redis, one, backend) = outage_setup("local", host).await;
    let two = TestProxy::start_with_admin(&redis.url(), json!({})).await;
    assert_eq!(get(two.addr(), host, "/").await.status, 200);
    redis.stop();
    for proxy in [&one, &two] {
        // Until the proxy sees the connection gone, a request may wait for
        // it (at most the bound); then it fails over at once.
        link_lost(proxy).await;
        let got = fast_statuses(proxy.addr(), host, 3, ANSWER_BOUND + SLACK).await;
        assert_eq!(got, [200, 200, 429], "one burst per proxy, the same limit");
        let s = scrape(proxy.admin_addr()).await;
        assert_eq!(decisions(&s, "local_allowed"), 2.0);
        assert_eq!(decisions(&s, "local_limited"), 1.0);
        assert_eq!(decisions(&s, "redis_allowed"), 0.0);
    }
    assert_eq!(
        backend.request_count(),
        2 + 4,
        "two cache warmers, two each"
    );
    let limited = get(one.addr(), host, "/limited").await;
    let secs: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a local 429 has Retry-After too");
    assert!((1..=60).contains(&secs), "Retry-After: {secs}");

    // Redis back (empty): Redis decides again, on a fresh bucket.
    redis.restart();
    redis
        .set_routes(
            host,
            &rule_limited("outage", &backend, limit(1, "1m", 1, "all", "local")),
        )
        .await;
    let first = until("Redis deciding again", DEADLINE, || async {
        let status = get(one.addr(), host, "/limited").await.status.as_u16();
        let s = scrape(one.admin_addr()).await;
        match decisions(&s, "redis_allowed") {
            n if n >= 1.0 => Ok(status),
            _ => Err(format!(
                "{status}, {} local decisions",
                decisions(&s, "local_allowed") + decisions(&s, "local_limited")
            )),
        }
    })
    .await;
    assert_eq!(first, 200, "a fresh bucket in the restarted Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_allow_lets_everything_through_and_counts_it() {
    let host = "allow.example.com";
    let (mut redis, proxy, _backend) = outage_setup("allow", host).await;
    redis.stop();
    link_lost(&proxy).await;
    let got = fast_statuses(proxy.addr(), host, 5, ANSWER_BOUND + SLACK).await;
    assert_eq!(got, [200; 5]);
    let s = scrape(proxy.admin_addr()).await;
    assert_eq!(decisions(&s, "down_allowed"), 5.0);
    assert_eq!(decisions(&s, "local_allowed"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_deny_fails_closed_with_503() {
    let host = "deny.example.com";
    let (mut redis, proxy, backend) = outage_setup("deny", host).await;
    redis.stop();
    link_lost(&proxy).await;
    let before = backend.request_count();
    let got = fast_statuses(proxy.addr(), host, 3, ANSWER_BOUND + SLACK).await;
    assert_eq!(got, [503; 3]);
    let refused = get(proxy.addr(), host, "/limited").await;
    assert!(
        refused.text().contains("503"),
        "the error page: {}",
        refused.text()
    );
    assert_eq!(refused.header("retry-after"), None);
    assert_eq!(
        backend.request_count(),
        before,
        "nothing reached the backend"
    );
    let s = scrape(proxy.admin_addr()).await;
    assert_eq!(decisions(&s, "down_refused"), 4.0);
    // The unlimited rule of the same host is served all along.
    assert_eq!(get(proxy.addr(), host, "/").await.status, 200);
}

/// Redis connected but not answering the limiter (`CLIENT PAUSE WRITE`
/// holds scripts, not the route reads or the heartbeat): each request
/// waits at most the bound, then the local limiter decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_delays_a_request_by_the_bound_at_most() {
    let host = "stall.example.com";
    let (redis, proxy, _backend) = outage_setup("local", host).await;
    let _: () = redis.query(&["CLIENT", "PAUSE", "3000", "WRITE"]).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        got.push(get(proxy.addr(), host, "/limited").await.status);
        let took = started.elapsed();
        assert!(
            took >= ANSWER_BOUND && took < ANSWER_BOUND + SLACK,
            "a request took {took:?} while Redis stalled"
        );
    }
    assert_eq!(got, [200, 200, 429]);
    let s = scrape(proxy.admin_addr()).await;
    assert_eq!(s.value(REDIS_ERRORS, &[]), 3.0, "three timeouts");
    assert_eq!(decisions(&s, "local_allowed"), 2.0);
    assert_eq!(decisions(&s, "local_limited"), 1.0);
    let _: () = redis.query(&["CLIENT", "UNPAUSE"]).await;
    // Redis decides again. (The requests it held may or may not have run
    // when it resumed: the probe that follows a timeout waits behind them
    // on the same connection and may drop it first.)
    until("Redis deciding again", DEADLINE, || async {
        let status = get(proxy.addr(), host, "/limited").await.status.as_u16();
        let s = scrape(proxy.admin_addr()).await;
        match decisions(&s, "redis_allowed") + decisions(&s, "redis_limited") {
            n if n >= 1.0 => Ok(()),
            _ => Err(format!("{status}, no Redis decision yet")),
        }
    })
    .await;
}
