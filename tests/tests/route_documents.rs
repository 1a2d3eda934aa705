//! Route documents (`routes:<host>`, docs/routes.md) end to end: a real
//! `redis-server` (or a routes file), real backends, the proxy in-process,
//! and what a client and a backend see: matches and precedence, weights,
//! invalid and dead backends, header filters, redirects, rewrites, mirrors,
//! per-rule timeouts, retries and body limits, refused documents, 404
//! against 400, documents beside lists, and the tracking cache.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hipache_tests::backend::{Backend, RecordedRequest};
use hipache_tests::body::GeneratedBody;
use hipache_tests::client::Req;
use hipache_tests::metrics::{scrape, scrape_until, Scrape};
use hipache_tests::proxy::TestProxy;
use hipache_tests::redis::RedisServer;
use hipache_tests::routes::{document, get, req, send};
use hipache_tests::setup;
use hipache_tests::wait::until;
use serde_json::{json, Value};

/// Bound on something that happens off the request path (a mirrored copy,
/// a metric, a reload).
const DEADLINE: Duration = Duration::from_secs(10);

const MIRRORS: &str = "hipache_mirror_requests_total";
const DOCUMENT_ERRORS: &str = "hipache_route_document_errors_total";
const CACHE: &str = "hipache_route_cache_total";

/// A redis-server and an in-process proxy with its admin listener.
async fn setup_admin(server_extra: Value) -> (RedisServer, TestProxy) {
    let redis = RedisServer::start();
    let proxy = TestProxy::start_with_admin(&redis.url(), server_extra).await;
    (redis, proxy)
}

/// Backends named after the rules they serve.
async fn named_backends(names: &[&str]) -> HashMap<String, Backend> {
    let mut out = HashMap::new();
    for name in names {
        out.insert((*name).to_owned(), Backend::start(name).await);
    }
    out
}

/// Waits until `backend` holds a request whose body arrived complete, and
/// returns the first such request.
async fn complete_request(backend: &Backend, deadline: Duration) -> RecordedRequest {
    until(
        &format!("a complete request at {}", backend.name()),
        deadline,
        || async {
            let seen = backend.requests();
            seen.iter()
                .find(|r| r.complete)
                .cloned()
                .ok_or(format!("{} requests, none complete: {seen:?}", seen.len()))
        },
    )
    .await
}

/// Total requests received by these backends.
fn total(backends: &[&Backend]) -> usize {
    backends.iter().map(|b| b.request_count()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_route_by_path_header_query_and_method_with_precedence() {
    let (redis, proxy) = setup(json!({})).await;
    let names = [
        "root",
        "short",
        "long",
        "prefix-x",
        "exact-x",
        "regex",
        "any-m",
        "post-m",
        "hdr1",
        "hdr2",
        "hdr-re",
        "query",
        "query-name",
        "qq1",
        "qq2",
        "delete",
        "r-prefix",
        "r-regex",
        "eq-regex",
        "eq-prefix",
        "mh-hdr",
        "mh-method",
    ];
    let b = named_backends(&names).await;
    let rule = |name: &str, matches: Value| json!({"name": name, "matches": matches, "backends": [{"url": b[name].url()}]});
    let prefix = |v: &str| json!({"type": "PathPrefix", "value": v});
    // Rules in an order where document order alone would choose wrongly:
    // precedence must decide.
    let rules = json!([
        {"name": "root", "backends": [{"url": b["root"].url()}]},
        rule("short", json!([{"path": prefix("/p")}])),
        rule("long", json!([{"path": prefix("/p/q")}])),
        rule("prefix-x", json!([{"path": prefix("/x")}])),
        rule("exact-x", json!([{"path": {"type": "Exact", "value": "/x"}}])),
        rule(
            "regex",
            json!([{"path": {"type": "RegularExpression", "value": "/items/[0-9]+"}}])
        ),
        rule("any-m", json!([{"path": prefix("/m")}])),
        rule("post-m", json!([{"path": prefix("/m"), "method": "POST"}])),
        rule(
            "hdr1",
            json!([{"path": prefix("/h"), "headers": [{"name": "x-env", "value": "staging"}]}])
        ),
        rule(
            "hdr2",
            json!([{"path": prefix("/h"), "headers": [
                {"name": "x-env", "value": "staging"},
                {"name": "x-tier", "value": "gold"}
            ]}])
        ),
        rule(
            "hdr-re",
            json!([{"path": prefix("/hr"), "headers": [
                {"name": "X-Version", "type": "RegularExpression", "value": "v[0-9]+"}
            ]}])
        ),
        rule(
            "query",
            json!([{"path": prefix("/q"), "queryParams": [{"name": "v", "value": "2"}]}])
        ),
        rule(
            "query-name",
            json!([{"path": prefix("/q"), "queryParams": [{"name": "name", "value": "a b"}]}])
        ),
        rule(
            "qq1",
            json!([{"path": prefix("/qq"), "queryParams": [{"name": "a", "value": "1"}]}])
        ),
        rule(
            "qq2",
            json!([{"path": prefix("/qq"), "queryParams": [
                {"name": "a", "value": "1"},
                {"name": "b", "value": "2"}
            ]}])
        ),
        rule(
            "delete",
            json!([{"path": {"type": "Exact", "value": "/thing"}, "method": "DELETE"}])
        ),
        rule("r-prefix", json!([{"path": prefix("/r")}])),
        rule(
            "r-regex",
            json!([{"path": {"type": "RegularExpression", "value": "/r/[a-z]+"}}])
        ),
        rule(
            "eq-regex",
            json!([{"path": {"type": "RegularExpression", "value": "/e."}}])
        ),
        rule("eq-prefix", json!([{"path": prefix("/eq")}])),
        rule(
            "mh-hdr",
            json!([{"path": prefix("/mh"), "headers": [{"name": "x-a", "value": "1"}]}])
        ),
        rule("mh-method", json!([{"path": prefix("/mh"), "method": "GET"}])),
    ]);
    redis
        .set_routes("match.test", &document("match", rules))
        .await;

    // (method, target, headers, the rule that serves)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        // Exact beats a prefix of the same path; prefixes match by element.
        ("GET", "/x", &[], "exact-x"),
        ("GET", "/x/", &[], "prefix-x"),
        ("GET", "/x/y", &[], "prefix-x"),
        ("GET", "/xy", &[], "root"),
        ("GET", "/a/../x", &[], "exact-x"),
        // The longer prefix first.
        ("GET", "/p", &[], "short"),
        ("GET", "/p/qq", &[], "short"),
        ("GET", "/p/q", &[], "long"),
        ("GET", "/p/q/z?k=v", &[], "long"),
        // Regular expressions are anchored.
        ("GET", "/items/42", &[], "regex"),
        ("GET", "/items/42/x", &[], "root"),
        ("GET", "/items/abc", &[], "root"),
        ("GET", "/r/abc", &[], "r-regex"),
        ("GET", "/r/123", &[], "r-prefix"),
        // Equal lengths: the prefix before the pattern.
        ("GET", "/eq", &[], "eq-prefix"),
        ("GET", "/ex", &[], "eq-regex"),
        // A match with a method before one without.
        ("GET", "/m/1", &[], "any-m"),
        ("POST", "/m/1", &[], "post-m"),
        ("DELETE", "/thing", &[], "delete"),
        ("GET", "/thing", &[], "root"),
        // The most headers; names case-insensitive, values exact.
        ("GET", "/h", &[("x-env", "staging")], "hdr1"),
        (
            "GET",
            "/h/a",
            &[("x-env", "staging"), ("x-tier", "gold")],
            "hdr2",
        ),
        (
            "GET",
            "/h",
            &[("x-env", "prod"), ("x-tier", "gold")],
            "root",
        ),
        ("GET", "/hr", &[("x-version", "v12")], "hdr-re"),
        ("GET", "/hr", &[("x-version", "v12beta")], "root"),
        // A method ranks before header counts.
        ("GET", "/mh", &[("x-a", "1")], "mh-method"),
        ("POST", "/mh", &[("x-a", "1")], "mh-hdr"),
        // Query parameters: first occurrence, percent-decoded; the most win.
        ("GET", "/q?v=2", &[], "query"),
        ("GET", "/q?v=3", &[], "root"),
        ("GET", "/q?v=2&v=3", &[], "query"),
        ("GET", "/q?v=3&v=2", &[], "root"),
        ("GET", "/q?name=a%20b", &[], "query-name"),
        ("GET", "/qq?a=1", &[], "qq1"),
        ("GET", "/qq?b=2&a=1", &[], "qq2"),
    ];
    for (method, path, headers, expected) in cases {
        let what = format!("{method} {path} {headers:?}");
        let resp = send(&proxy, &what, req(method, "match.test", path, headers)).await;
        assert_eq!(resp.status, 200, "{what}: status ({})", resp.served_by());
        assert_eq!(resp.served_by(), *expected, "{what}: the rule that served");
        assert_eq!(
            b[*expected].last_request().method.as_str(),
            *method,
            "{what}: the backend saw the method"
        );
    }
    let served: usize = b.values().map(Backend::request_count).sum();
    assert_eq!(
        served,
        cases.len(),
        "one backend request per client request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_and_shift_live() {
    let (redis, proxy) = setup(json!({})).await;
    let a = Backend::start("w70").await;
    let b = Backend::start("w30").await;
    let c = Backend::start("w0").await;
    let weighted = |wa: u32, wb: u32, wc: u32| {
        document(
            "weights",
            json!([{"backends": [
                {"url": a.url(), "weight": wa},
                {"url": b.url(), "weight": wb},
                {"url": c.url(), "weight": wc}
            ]}]),
        )
    };
    redis.set_routes("weights.test", &weighted(70, 30, 0)).await;

    const N: usize = 600;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..N {
        let resp = get(&proxy, "weights.test", &format!("/r/{i}")).await;
        assert_eq!(resp.status, 200, "request {i}: {}", resp.served_by());
        *counts.entry(resp.served_by()).or_default() += 1;
    }
    let share = |name: &str| counts.get(name).copied().unwrap_or(0) as f64 / N as f64;
    assert!(
        (share("w70") - 0.7).abs() <= 0.06,
        "weight 70 of 100 got {:.3} of {N} requests: {counts:?}",
        share("w70")
    );
    assert!(
        (share("w30") - 0.3).abs() <= 0.06,
        "weight 30 of 100 got {:.3} of {N} requests: {counts:?}",
        share("w30")
    );
    assert_eq!(c.request_count(), 0, "a weight of 0 is never drawn");
    assert_eq!(a.request_count() + b.request_count(), N);

    // One SET moves all traffic; strict mode reads Redis on every request.
    redis.set_routes("weights.test", &weighted(0, 100, 0)).await;
    let before = (a.request_count(), b.request_count());
    for i in 0..50 {
        let resp = get(&proxy, "weights.test", "/").await;
        assert_eq!(
            resp.served_by(),
            "w30",
            "request {i} after the weights moved to 0/100/0"
        );
    }
    assert_eq!(a.request_count(), before.0, "the weight-0 backend got none");
    assert_eq!(b.request_count(), before.1 + 50);
    assert_eq!(c.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_zero_weight_and_dead_backends() {
    let (redis, proxy) = setup(json!({})).await;
    let good = Backend::start("good").await;
    let other = Backend::start("other").await;
    let third = Backend::start("third").await;
    let fourth = Backend::start("fourth").await;

    // Every request a rule's invalid backend would have had answers 500.
    redis
        .set_routes(
            "invalid.test",
            &document(
                "invalid",
                json!([{"backends": [{"invalid": "Service shop/missing does not exist"}]}]),
            ),
        )
        .await;
    for _ in 0..5 {
        let resp = get(&proxy, "invalid.test", "/").await;
        assert_eq!(resp.status, 500, "an invalid backend: {}", resp.served_by());
    }

    // Half invalid by weight: about half the requests answer 500, the rest
    // reach the valid backend.
    redis
        .set_routes(
            "half.test",
            &document(
                "half",
                json!([{"backends": [
                    {"url": good.url(), "weight": 1},
                    {"invalid": "reference not permitted", "weight": 1}
                ]}]),
            ),
        )
        .await;
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for _ in 0..100 {
        let resp = get(&proxy, "half.test", "/").await;
        if resp.status == 200 {
            assert_eq!(resp.served_by(), "good");
        }
        *statuses.entry(resp.status.as_u16()).or_default() += 1;
    }
    assert_eq!(
        statuses
            .keys()
            .copied()
            .filter(|s| *s != 200 && *s != 500)
            .count(),
        0,
        "only 200 and 500: {statuses:?}"
    );
    let errors = statuses.get(&500).copied().unwrap_or(0);
    assert!(
        (25..=75).contains(&errors),
        "the invalid backend's share (1 of 2) answers 500: {statuses:?}"
    );
    assert_eq!(
        good.request_count(),
        statuses.get(&200).copied().unwrap_or(0)
    );

    // An invalid backend with weight 0 takes no share.
    redis
        .set_routes(
            "zero-invalid.test",
            &document(
                "zero-invalid",
                json!([{"backends": [
                    {"url": other.url(), "weight": 1},
                    {"invalid": "not permitted", "weight": 0}
                ]}]),
            ),
        )
        .await;
    for _ in 0..20 {
        let resp = get(&proxy, "zero-invalid.test", "/").await;
        assert_eq!(resp.served_by(), "other");
    }

    // All weights 0: 500, and no backend is asked.
    redis
        .set_routes(
            "zero.test",
            &document(
                "zero",
                json!([{"backends": [
                    {"url": third.url(), "weight": 0},
                    {"url": fourth.url(), "weight": 0}
                ]}]),
            ),
        )
        .await;
    for _ in 0..5 {
        let resp = get(&proxy, "zero.test", "/").await;
        assert_eq!(resp.status, 500, "all weights 0: {}", resp.served_by());
    }
    assert_eq!(total(&[&third, &fourth]), 0, "no backend asked");

    // Dead marks count positions over the whole document, rule by rule:
    // rule 0's backend is 0, rule 1's are 1 and 2.
    let a = Backend::start("dead-a").await;
    let b1 = Backend::start("dead-b1").await;
    let b2 = Backend::start("dead-b2").await;
    redis
        .set_routes(
            "dead.test",
            &document(
                "dead",
                json!([
                    {"matches": [{"path": {"value": "/a"}}], "backends": [{"url": a.url()}]},
                    {"matches": [{"path": {"value": "/b"}}], "backends": [{"url": b1.url()}, {"url": b2.url()}]}
                ]),
            ),
        )
        .await;
    let _: i64 = redis.query(&["SADD", "dead:dead.test", "1"]).await;
    for _ in 0..20 {
        let resp = get(&proxy, "dead.test", "/b").await;
        assert_eq!(resp.served_by(), "dead-b2", "position 1 is marked dead");
    }
    assert_eq!(b1.request_count(), 0, "a dead backend is not drawn");
    let _: i64 = redis.query(&["SADD", "dead:dead.test", "2"]).await;
    for _ in 0..3 {
        let resp = get(&proxy, "dead.test", "/b").await;
        assert_eq!(
            resp.status,
            502,
            "every backend of the rule dead: {}",
            resp.served_by()
        );
    }
    let resp = get(&proxy, "dead.test", "/a").await;
    assert_eq!(
        resp.served_by(),
        "dead-a",
        "rule 0's backend (position 0) is alive"
    );
    assert_eq!(b1.request_count() + b2.request_count(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_modifiers_shape_the_request_and_the_answer() {
    let (redis, proxy) = setup(json!({"trustedProxies": []})).await;
    let backend = Backend::start("hdrs").await;
    redis
        .set_routes(
            "headers.test",
            &document(
                "headers",
                json!([{
                    "backends": [{"url": backend.url()}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "set": [
                                {"name": "x-track", "value": "canary"},
                                {"name": "X-Forwarded-Prefix", "value": "/app"}
                            ],
                            "add": [{"name": "x-multi", "value": "two"}],
                            "remove": ["x-secret"]
                        },
                        {
                            "type": "ResponseHeaderModifier",
                            "set": [{"name": "x-version", "value": "new"}],
                            "add": [{"name": "x-resp-multi", "value": "b"}],
                            "remove": ["x-internal"]
                        }
                    ]
                }]),
            ),
        )
        .await;

    let resp = send(
        &proxy,
        "GET with headers to modify",
        req(
            "GET",
            "headers.test",
            "/h",
            &[
                ("x-track", "stable"),
                ("x-multi", "one"),
                ("x-secret", "s3cr3t"),
                ("x-kept", "yes"),
                ("x-forwarded-prefix", "/forged"),
                ("x-test-response-header", "x-version: old"),
                ("x-test-response-header", "x-resp-multi: a"),
                ("x-test-response-header", "x-internal: 10.0.0.7"),
            ],
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.served_by());

    let seen = backend.last_request();
    assert_eq!(seen.header_all("x-track"), ["canary"], "set replaces");
    assert_eq!(seen.header_all("x-multi"), ["one", "two"], "add appends");
    assert_eq!(seen.header("x-secret"), None, "remove deletes");
    assert_eq!(seen.header("x-kept"), Some("yes"), "other headers pass");
    // The filter runs after the forwarding headers were written: the
    // client's forged X-Forwarded-Prefix is gone, the rule's is kept.
    assert_eq!(
        seen.header_all("x-forwarded-prefix"),
        ["/app"],
        "the rule's X-Forwarded-Prefix reaches the backend"
    );
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "the forwarding headers are still written"
    );

    let values = |name: &str| -> Vec<String> {
        resp.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    assert_eq!(values("x-version"), ["new"], "response set replaces");
    assert_eq!(values("x-resp-multi"), ["a", "b"], "response add appends");
    assert_eq!(
        values("x-internal"),
        Vec::<String>::new(),
        "response remove"
    );
    assert_eq!(resp.text(), "hdrs", "the body is the backend's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_answered_by_the_proxy() {
    let (redis, proxy) = setup(json!({})).await;
    let sentinel = Backend::start("sentinel").await;
    let redirect = |path: Value, filter: Value| {
        let mut f = filter;
        f["type"] = json!("RequestRedirect");
        json!({"matches": [{"path": path}], "backends": [{"url": sentinel.url()}], "filters": [f]})
    };
    let prefix = |v: &str| json!({"type": "PathPrefix", "value": v});
    redis
        .set_routes(
            "redir.test",
            &document(
                "redir",
                json!([
                    redirect(
                        json!({"type": "Exact", "value": "/old"}),
                        json!({"path": {"type": "ReplaceFullPath", "value": "/new"}, "statusCode": 301})
                    ),
                    redirect(
                        prefix("/docs"),
                        json!({"scheme": "https", "path": {"type": "ReplacePrefixMatch", "value": "/v2/docs"}})
                    ),
                    redirect(
                        prefix("/moved"),
                        json!({"hostname": "other.test", "port": 8443, "statusCode": 308})
                    ),
                    redirect(
                        prefix("/strip"),
                        json!({"path": {"type": "ReplacePrefixMatch", "value": "/"}, "statusCode": 307})
                    ),
                    redirect(
                        prefix("/secure"),
                        json!({"scheme": "https", "port": 443, "hostname": "secure.test", "statusCode": 303})
                    ),
                    redirect(
                        prefix("/plain"),
                        json!({"scheme": "http", "port": 8080})
                    ),
                ]),
            ),
        )
        .await;

    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("GET", "redir.test", "/old", 301, "http://redir.test/new"),
        (
            "GET",
            "redir.test",
            "/old?x=1&y=2",
            301,
            "http://redir.test/new?x=1&y=2",
        ),
        (
            "GET",
            "redir.test:8080",
            "/old",
            301,
            "http://redir.test:8080/new",
        ),
        (
            "GET",
            "redir.test",
            "/docs/a/b?q=1",
            302,
            "https://redir.test/v2/docs/a/b?q=1",
        ),
        (
            "GET",
            "redir.test:8080",
            "/docs",
            302,
            "https://redir.test/v2/docs",
        ),
        (
            "POST",
            "redir.test",
            "/moved/x?k=v",
            308,
            "http://other.test:8443/moved/x?k=v",
        ),
        ("GET", "redir.test", "/strip/x", 307, "http://redir.test/x"),
        ("GET", "redir.test", "/strip", 307, "http://redir.test/"),
        (
            "GET",
            "redir.test",
            "/secure/p",
            303,
            "https://secure.test/secure/p",
        ),
        (
            "GET",
            "redir.test:9000",
            "/plain",
            302,
            "http://redir.test:8080/plain",
        ),
    ];
    for (method, host, path, status, location) in cases {
        let what = format!("{method} http://{host}{path}");
        let mut r = Req::new(method, host, path);
        if *method == "POST" {
            r = r.body("payload");
        }
        let resp = send(&proxy, &what, r).await;
        assert_eq!(
            resp.status,
            *status,
            "{what}: status ({})",
            resp.served_by()
        );
        assert_eq!(resp.header("location"), Some(*location), "{what}: Location");
        assert!(resp.body.is_empty(), "{what}: a redirect has no body");
    }
    assert_eq!(
        sentinel.request_count(),
        0,
        "a redirect is answered without asking a backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_rewrites_change_host_and_path_for_the_backend() {
    let (redis, proxy) = setup(json!({"trustedProxies": []})).await;
    let backend = Backend::start("rewritten").await;
    let rewrite = |path: Value, filter: Value| {
        let mut f = filter;
        f["type"] = json!("URLRewrite");
        json!({"matches": [{"path": path}], "backends": [{"url": backend.url()}], "filters": [f]})
    };
    let prefix = |v: &str| json!({"type": "PathPrefix", "value": v});
    redis
        .set_routes(
            "rw.test",
            &document(
                "rw",
                json!([
                    rewrite(
                        prefix("/api"),
                        json!({"hostname": "internal.svc", "path": {"type": "ReplacePrefixMatch", "value": "/v1"}})
                    ),
                    rewrite(
                        json!({"type": "Exact", "value": "/page"}),
                        json!({"path": {"type": "ReplaceFullPath", "value": "/index.html"}})
                    ),
                    rewrite(
                        prefix("/strip"),
                        json!({"path": {"type": "ReplacePrefixMatch", "value": "/"}})
                    ),
                    rewrite(prefix("/host-only"), json!({"hostname": "only.svc"})),
                ]),
            ),
        )
        .await;

    // (path sent, Host the backend sees, path and query it sees)
    let cases: &[(&str, &str, &str)] = &[
        ("/api/users?id=7", "internal.svc", "/v1/users?id=7"),
        ("/api", "internal.svc", "/v1"),
        ("/page?lang=fr", "rw.test", "/index.html?lang=fr"),
        ("/strip/a/b?z=1", "rw.test", "/a/b?z=1"),
        ("/strip", "rw.test", "/"),
        ("/host-only/x?q=1", "only.svc", "/host-only/x?q=1"),
    ];
    for (path, host, uri) in cases {
        let resp = get(&proxy, "rw.test", path).await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.served_by());
        let seen = backend.last_request();
        assert_eq!(seen.header_all("host"), [*host], "{path}: Host");
        assert_eq!(seen.uri, *uri, "{path}: the target the backend sees");
        assert_eq!(
            seen.header("x-forwarded-host"),
            Some("rw.test"),
            "{path}: X-Forwarded-Host keeps the host the client asked for"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_get_a_copy_without_slowing_the_client() {
    let (redis, proxy) = setup_admin(json!({})).await;
    let admin = proxy.admin_addr();
    let primary = Backend::start("primary").await;
    let mirror = Backend::start("mirror").await;
    let slow = Backend::builder("slow-mirror")
        .delay(Duration::from_secs(3))
        .start()
        .await;
    let spare = Backend::start("spare-mirror").await;
    let mirrored = |path: &str, filter: Value| {
        let mut f = filter;
        f["type"] = json!("RequestMirror");
        json!({
            "matches": [{"path": {"type": "PathPrefix", "value": path}}],
            "backends": [{"url": primary.url()}],
            "filters": [f]
        })
    };
    redis
        .set_routes(
            "mirror.test",
            &document(
                "mirror",
                json!([
                    mirrored("/copy", json!({"url": mirror.url()})),
                    mirrored("/slow", json!({"url": slow.url()})),
                    mirrored("/never", json!({"url": spare.url(), "percent": 0})),
                    mirrored("/control", json!({"url": spare.url(), "percent": 100})),
                ]),
            ),
        )
        .await;
    let answered = |s: &Scrape| s.value(MIRRORS, &[("outcome", "answered")]);
    let start_answered = answered(&scrape(admin).await);

    // A POST: the mirror gets the method, target and body; the client the
    // primary's answer.
    let body = "a body worth mirroring";
    let resp = send(
        &proxy,
        "POST /copy",
        Req::new("POST", "mirror.test", "/copy/x?k=1").body(body),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.served_by(), "primary", "the answer is the primary's");
    assert_eq!(resp.text(), "primary");
    let copy = complete_request(&mirror, DEADLINE).await;
    assert_eq!(copy.method.as_str(), "POST");
    assert_eq!(copy.uri, "/copy/x?k=1");
    assert_eq!(
        copy.body.as_deref(),
        Some(body.as_bytes()),
        "the body copied"
    );
    let original = primary.last_request();
    assert_eq!(original.body.as_deref(), Some(body.as_bytes()));

    let resp = get(&proxy, "mirror.test", "/copy/get").await;
    assert_eq!(resp.served_by(), "primary");
    until("the mirrored GET", DEADLINE, || async {
        let seen = mirror.requests();
        match seen
            .iter()
            .any(|r| r.method == "GET" && r.uri == "/copy/get")
        {
            true => Ok(()),
            false => Err(format!("{seen:?}")),
        }
    })
    .await;
    scrape_until(admin, "two answered mirror copies", DEADLINE, |s| {
        let d = answered(s) - start_answered;
        if d == 2.0 {
            Ok(())
        } else {
            Err(format!("{MIRRORS}{{outcome=answered}} moved by {d}"))
        }
    })
    .await;

    // A mirror taking 3 s does not delay the client.
    let started = Instant::now();
    let resp = get(&proxy, "mirror.test", "/slow").await;
    let client_time = started.elapsed();
    assert_eq!(resp.served_by(), "primary");
    assert!(
        client_time < Duration::from_millis(1500),
        "the client waited {client_time:?} behind a mirror that takes 3 s"
    );
    until("the slow mirror's copy", DEADLINE, || async {
        match slow.request_count() {
            1 => Ok(()),
            n => Err(format!("{n} requests")),
        }
    })
    .await;
    scrape_until(admin, "the slow mirror's answer", DEADLINE, |s| {
        let d = answered(s) - start_answered;
        if d == 3.0 {
            Ok(())
        } else {
            Err(format!("{MIRRORS}{{outcome=answered}} moved by {d}"))
        }
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "the slow mirror answered after {:?}: it was not slow, the bound above proves nothing",
        started.elapsed()
    );

    // percent 0 never mirrors; the same mirror with 100 does.
    for _ in 0..30 {
        let resp = get(&proxy, "mirror.test", "/never").await;
        assert_eq!(resp.served_by(), "primary");
    }
    let resp = get(&proxy, "mirror.test", "/control").await;
    assert_eq!(resp.served_by(), "primary");
    until("the control copy", DEADLINE, || async {
        match spare.request_count() {
            0 => Err("none yet".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    let seen: Vec<String> = spare.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(seen, ["/control"], "percent 0 never mirrored");
    assert_eq!(mirror.request_count(), 2, "one copy per mirrored request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_timeouts_answer_504() {
    let (redis, proxy) = setup(json!({})).await;
    let one = Backend::start("t-request").await;
    let two = Backend::start("t-backend").await;
    let flaky = Backend::start("t-retried").await;
    redis
        .set_routes(
            "t-request.test",
            &document(
                "t-request",
                json!([{"backends": [{"url": one.url()}], "timeouts": {"request": "200ms"}}]),
            ),
        )
        .await;
    redis
        .set_routes(
            "t-backend.test",
            &document(
                "t-backend",
                json!([{"backends": [{"url": two.url()}], "timeouts": {"backendRequest": "200ms"}}]),
            ),
        )
        .await;
    // `request` bounds the whole, retries and their backoff included: 100
    // ms, then 200 ms of backoff put the third attempt past 250 ms.
    redis
        .set_routes(
            "t-retries.test",
            &document(
                "t-retries",
                json!([{
                    "backends": [{"url": flaky.url()}],
                    "timeouts": {"request": "250ms"},
                    "retry": {"attempts": 3, "codes": [503], "backoff": "100ms"}
                }]),
            ),
        )
        .await;

    for (host, backend) in [("t-request.test", &one), ("t-backend.test", &two)] {
        let started = Instant::now();
        let resp = send(
            &proxy,
            &format!("slow GET {host}"),
            req("GET", host, "/", &[("x-test-delay-ms", "1000")]),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(
            resp.status,
            504,
            "{host}: a backend 1 s late under a 200 ms timeout: {}",
            resp.served_by()
        );
        assert!(
            took >= Duration::from_millis(180) && took < Duration::from_millis(900),
            "{host}: the 504 came after {took:?}, not at the 200 ms timeout"
        );
        assert_eq!(backend.request_count(), 1, "{host}: one attempt");

        let resp = get(&proxy, host, "/fast").await;
        assert_eq!(
            resp.status, 200,
            "{host}: a fast answer under the same rule"
        );
        assert_eq!(resp.served_by(), backend.name());
    }

    let started = Instant::now();
    let resp = send(
        &proxy,
        "GET t-retries.test answered 503",
        req("GET", "t-retries.test", "/", &[("x-test-status", "503")]),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(
        resp.status,
        504,
        "retries past the request timeout: {}",
        resp.served_by()
    );
    assert!(
        took < Duration::from_millis(600),
        "the request timeout (250 ms) ended the retries only after {took:?}"
    );
    assert_eq!(
        flaky.request_count(),
        2,
        "two attempts fit in 250 ms (at 0 and 100 ms)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_rules_policy() {
    let (redis, proxy) = setup(json!({})).await;
    let retry = json!({"attempts": 2, "codes": [503]});

    // A 503 (with Retry-After, so that passive health leaves it alive) is
    // retried on the other backend: every client gets the 200.
    let good = Backend::start("good").await;
    let flaky = Backend::builder("flaky")
        .status(503)
        .header("retry-after", "1")
        .start()
        .await;
    redis
        .set_routes(
            "retry.test",
            &document(
                "retry",
                json!([{"backends": [{"url": good.url()}, {"url": flaky.url()}], "retry": retry}]),
            ),
        )
        .await;
    for i in 0..30 {
        let resp = get(&proxy, "retry.test", &format!("/{i}")).await;
        assert_eq!(resp.status, 200, "request {i}: {}", resp.served_by());
        assert_eq!(resp.served_by(), "good");
    }
    assert!(
        flaky.request_count() >= 1,
        "the 503 backend was never drawn in 30 requests: the retry went untested"
    );
    assert_eq!(good.request_count(), 30);

    // A status the policy does not list is answered as is.
    let c1 = Backend::start("c1").await;
    let c2 = Backend::start("c2").await;
    redis
        .set_routes(
            "retry-500.test",
            &document(
                "retry-500",
                json!([{"backends": [{"url": c1.url()}, {"url": c2.url()}], "retry": retry}]),
            ),
        )
        .await;
    let resp = send(
        &proxy,
        "GET answered 500",
        req("GET", "retry-500.test", "/", &[("x-test-status", "500")]),
    )
    .await;
    assert_eq!(resp.status, 500);
    assert_eq!(total(&[&c1, &c2]), 1, "a 500 is not retried");

    // A POST with a body is not sent again.
    let p1 = Backend::start("p1").await;
    let p2 = Backend::start("p2").await;
    redis
        .set_routes(
            "retry-post.test",
            &document(
                "retry-post",
                json!([{"backends": [{"url": p1.url()}, {"url": p2.url()}], "retry": retry}]),
            ),
        )
        .await;
    let resp = send(
        &proxy,
        "POST answered 503",
        req("POST", "retry-post.test", "/", &[("x-test-status", "503")]).body("once only"),
    )
    .await;
    assert_eq!(resp.status, 503);
    assert_eq!(total(&[&p1, &p2]), 1, "a POST with a body is not retried");

    // One backend answering 503: the first attempt and two retries, with
    // the backoff between them (100 ms, then 200 ms).
    let only = Backend::builder("only").status(503).start().await;
    redis
        .set_routes(
            "retry-one.test",
            &document(
                "retry-one",
                json!([{
                    "backends": [{"url": only.url()}],
                    "retry": {"attempts": 2, "codes": [503], "backoff": "100ms"}
                }]),
            ),
        )
        .await;
    let started = Instant::now();
    let resp = get(&proxy, "retry-one.test", "/").await;
    let took = started.elapsed();
    assert_eq!(resp.status, 503, "the last answer: {}", resp.served_by());
    assert_eq!(only.request_count(), 3, "one attempt and two retries");
    assert!(
        took >= Duration::from_millis(280),
        "three attempts with 100 ms and 200 ms of backoff took {took:?}"
    );
    // DELETE is idempotent: retried too. PUT with a body is not.
    let resp = send(&proxy, "DELETE", Req::new("DELETE", "retry-one.test", "/")).await;
    assert_eq!(resp.status, 503);
    assert_eq!(only.request_count(), 6, "DELETE retried twice");
    let resp = send(
        &proxy,
        "PUT with a body",
        Req::new("PUT", "retry-one.test", "/").body("body"),
    )
    .await;
    assert_eq!(resp.status, 503);
    assert_eq!(only.request_count(), 7, "a PUT with a body is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_body_limits_replace_the_global_one() {
    let body20 = vec![b'x'; 20];

    // No global limit: only the rule's.
    let (redis, proxy) = setup(json!({})).await;
    let limited = Backend::start("limited").await;
    let open = Backend::start("open").await;
    redis
        .set_routes(
            "body.test",
            &document(
                "body",
                json!([
                    {"matches": [{"path": {"value": "/small"}}], "backends": [{"url": limited.url()}], "maxBodySize": 10},
                    {"backends": [{"url": open.url()}]}
                ]),
            ),
        )
        .await;
    let resp = send(
        &proxy,
        "POST /small 20 bytes",
        Req::new("POST", "body.test", "/small").body(body20.clone()),
    )
    .await;
    assert_eq!(resp.status, 413, "20 bytes over a 10-byte rule limit");
    assert_eq!(limited.request_count(), 0, "the body was refused up front");
    let resp = send(
        &proxy,
        "POST /small 10 bytes",
        Req::new("POST", "body.test", "/small").body(vec![b'y'; 10]),
    )
    .await;
    assert_eq!(resp.status, 200, "10 bytes fit: {}", resp.served_by());
    assert_eq!(limited.last_request().body_len, 10);
    let resp = send(
        &proxy,
        "POST /other 20 bytes",
        Req::new("POST", "body.test", "/other").body(body20.clone()),
    )
    .await;
    assert_eq!(
        resp.served_by(),
        "open",
        "a rule without a limit accepts it"
    );
    assert_eq!(open.last_request().body.as_deref(), Some(&body20[..]));
    // A chunked body, with no length to check up front.
    let resp = send(
        &proxy,
        "chunked POST /small 20 bytes",
        Req::new("POST", "body.test", "/small").stream(GeneratedBody::new(20, 1).chunked()),
    )
    .await;
    assert_eq!(resp.status, 413, "a chunked body over the rule's limit");
    assert!(
        limited.requests().iter().all(|r| r.body_len <= 10),
        "more than 10 bytes reached the backend: {:?}",
        limited.requests()
    );

    // A global limit of 5 bytes: a rule's larger limit replaces it.
    let (redis, proxy) = setup(json!({"maxBodySize": 5})).await;
    let big = Backend::start("big").await;
    let global = Backend::start("global").await;
    redis
        .set_routes(
            "body5.test",
            &document(
                "body5",
                json!([
                    {"matches": [{"path": {"value": "/big"}}], "backends": [{"url": big.url()}], "maxBodySize": 100},
                    {"backends": [{"url": global.url()}]}
                ]),
            ),
        )
        .await;
    let resp = send(
        &proxy,
        "POST /big 20 bytes",
        Req::new("POST", "body5.test", "/big").body(body20.clone()),
    )
    .await;
    assert_eq!(
        resp.served_by(),
        "big",
        "the rule's 100 replaces the global 5"
    );
    assert_eq!(big.last_request().body.as_deref(), Some(&body20[..]));
    let resp = send(
        &proxy,
        "POST /other 20 bytes",
        Req::new("POST", "body5.test", "/other").body(body20.clone()),
    )
    .await;
    assert_eq!(resp.status, 413, "no rule limit: the global 5 bytes apply");
    let resp = send(
        &proxy,
        "POST /other 5 bytes",
        Req::new("POST", "body5.test", "/other").body("12345"),
    )
    .await;
    assert_eq!(resp.served_by(), "global");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_documents_fail_closed_until_fixed() {
    let (redis, proxy) = setup_admin(json!({})).await;
    let admin = proxy.admin_addr();
    let served = Backend::start("doc").await;
    let catch_all = Backend::start("catch-all").await;
    redis
        .rpush_frontend("*", "everything", &[catch_all.url()])
        .await;
    let good = document("bad", json!([{"backends": [{"url": served.url()}]}]));
    redis.set_routes("bad.test", &good).await;
    assert_eq!(get(&proxy, "bad.test", "/").await.served_by(), "doc");
    let errors = |s: &Scrape| s.value(DOCUMENT_ERRORS, &[]);
    let start = errors(&scrape(admin).await);

    let debug_get = |path: &'static str| {
        let proxy = &proxy;
        async move {
            send(
                proxy,
                &format!("GET bad.test{path}"),
                req("GET", "bad.test", path, &[("x-debug", "1")]),
            )
            .await
        }
    };

    // Not JSON: 503, the problem named, the `*` list not used.
    let _: () = redis.query(&["SET", "routes:bad.test", "{not json"]).await;
    for i in 0..20 {
        let resp = debug_get("/").await;
        assert_eq!(
            resp.status,
            503,
            "request {i} to a refused document: {}",
            resp.served_by()
        );
        let why = resp.header("x-debug-error").unwrap_or_default();
        assert!(
            why.contains("route document refused") && why.contains("not a JSON document"),
            "x-debug-error names the problem: {why:?}"
        );
    }
    let plain = get(&proxy, "bad.test", "/").await;
    assert_eq!(plain.status, 503);
    assert_eq!(catch_all.request_count(), 0, "the `*` list was not used");
    let s = scrape(admin).await;
    assert_eq!(
        errors(&s) - start,
        1.0,
        "one refusal counted for 21 requests to the same document"
    );

    // Another refused version (a protocol the model does not know):
    // counted once more, its own problem named.
    let h2 = document(
        "bad",
        json!([{"backends": [{"url": served.url()}], "protocol": "spdy"}]),
    );
    redis.set_routes("bad.test", &h2).await;
    for _ in 0..10 {
        let resp = debug_get("/").await;
        assert_eq!(resp.status, 503, "{}", resp.served_by());
        let why = resp.header("x-debug-error").unwrap_or_default();
        assert!(
            why.contains("/rules/0/protocol"),
            "x-debug-error points at the field: {why:?}"
        );
    }
    // And a validation error deeper in.
    let bad_path = document(
        "bad",
        json!([{"matches": [{"path": {"type": "Exact", "value": "no-slash"}}], "backends": [{"url": served.url()}]}]),
    );
    redis.set_routes("bad.test", &bad_path).await;
    let resp = debug_get("/").await;
    assert_eq!(resp.status, 503);
    let why = resp.header("x-debug-error").unwrap_or_default();
    assert!(
        why.contains("/rules/0/matches/0/path"),
        "x-debug-error points at the field: {why:?}"
    );
    assert_eq!(catch_all.request_count(), 0, "the `*` list was never used");
    let s = scrape(admin).await;
    assert_eq!(errors(&s) - start, 3.0, "one count per refused version");

    // Fixed: served on the next request.
    redis.set_routes("bad.test", &good).await;
    let resp = get(&proxy, "bad.test", "/").await;
    assert_eq!(resp.served_by(), "doc", "the fixed document serves at once");
    // Broken again: the last valid version is not kept.
    let _: () = redis.query(&["SET", "routes:bad.test", "[]"]).await;
    assert_eq!(get(&proxy, "bad.test", "/").await.status, 503);
    // Another host is not affected, and the `*` list serves it.
    assert_eq!(get(&proxy, "fine.test", "/").await.served_by(), "catch-all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_not_covered_are_404_unknown_hosts_400() {
    for (extra, unknown) in [(json!({}), 400), (json!({"unknownHostStatus": 404}), 404)] {
        let (redis, proxy) = setup(extra.clone()).await;
        let backend = Backend::start("api").await;
        redis
            .set_routes(
                "doc.test",
                &document(
                    "doc",
                    json!([{"matches": [{"path": {"value": "/api"}}], "backends": [{"url": backend.url()}]}]),
                ),
            )
            .await;
        redis
            .rpush_frontend("list.test", "list", &[format!("/api {}", backend.url())])
            .await;
        redis
            .set_routes("empty.test", &document("empty", json!([])))
            .await;

        let what = format!("with {extra}");
        assert_eq!(get(&proxy, "doc.test", "/api/x").await.served_by(), "api");
        assert_eq!(get(&proxy, "list.test", "/api").await.served_by(), "api");
        for (host, path) in [
            ("doc.test", "/other"),
            ("doc.test", "/apiary"),
            ("list.test", "/other"),
            ("empty.test", "/"),
        ] {
            let resp = get(&proxy, host, path).await;
            assert_eq!(
                resp.status,
                404,
                "{what}: a known host whose rules do not cover {host}{path}: {}",
                resp.served_by()
            );
        }
        let resp = get(&proxy, "unknown.test", "/api").await;
        assert_eq!(resp.status, unknown, "{what}: an unknown host");
        assert_eq!(backend.request_count(), 2, "{what}: only covered requests");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_and_lists_side_by_side() {
    let (redis, proxy) = setup(json!({})).await;
    let doc = Backend::start("doc").await;
    let list = Backend::start("list").await;
    let catch_all = Backend::start("catch-all").await;
    let wildcard = Backend::start("wildcard").await;

    // Both under one host: the document is the host's routes.
    redis
        .rpush_frontend("both.test", "both-list", &[list.url()])
        .await;
    redis
        .set_routes(
            "both.test",
            &document("both-doc", json!([{"backends": [{"url": doc.url()}]}])),
        )
        .await;
    for _ in 0..10 {
        assert_eq!(get(&proxy, "both.test", "/").await.served_by(), "doc");
    }
    assert_eq!(
        list.request_count(),
        0,
        "the list beside a document is not read"
    );
    // Without the document the list serves again.
    let _: i64 = redis.query(&["DEL", "routes:both.test"]).await;
    assert_eq!(get(&proxy, "both.test", "/").await.served_by(), "list");

    // A document's rules not covering a path: the wildcard, then `*`.
    redis
        .rpush_frontend("*", "everything", &[catch_all.url()])
        .await;
    redis
        .set_routes(
            "fall.test",
            &document(
                "fall",
                json!([{"matches": [{"path": {"value": "/api"}}], "backends": [{"url": doc.url()}]}]),
            ),
        )
        .await;
    assert_eq!(get(&proxy, "fall.test", "/api/x").await.served_by(), "doc");
    assert_eq!(
        get(&proxy, "fall.test", "/web").await.served_by(),
        "catch-all",
        "an uncovered path falls through to the `*` list"
    );
    redis
        .rpush_frontend("*.wild.test", "wild", &[wildcard.url()])
        .await;
    redis
        .set_routes(
            "a.wild.test",
            &document(
                "a-wild",
                json!([{"matches": [{"path": {"value": "/api"}}], "backends": [{"url": doc.url()}]}]),
            ),
        )
        .await;
    assert_eq!(get(&proxy, "a.wild.test", "/api").await.served_by(), "doc");
    assert_eq!(
        get(&proxy, "a.wild.test", "/web").await.served_by(),
        "wildcard",
        "an uncovered path falls through to the wildcard list first"
    );

    // The other way round: a list at the host, a document at its wildcard.
    redis
        .rpush_frontend("x.mix.test", "mix", &[format!("/api {}", list.url())])
        .await;
    redis
        .set_routes(
            "*.mix.test",
            &document("mix-doc", json!([{"backends": [{"url": wildcard.url()}]}])),
        )
        .await;
    assert_eq!(get(&proxy, "x.mix.test", "/api").await.served_by(), "list");
    assert_eq!(
        get(&proxy, "x.mix.test", "/web").await.served_by(),
        "wildcard",
        "the list's uncovered path falls through to the wildcard's document"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_file_serves_documents_without_redis() {
    let api = Backend::start("file-api").await;
    let web = Backend::start("file-web").await;
    let listed = Backend::start("file-list").await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("routes.yaml");
    let yaml = |api_url: &str| {
        [
            "frontends:".to_owned(),
            format!("  list.file.test: [listed, \"{}\"]", listed.url()),
            "routes:".to_owned(),
            "  doc.file.test:".to_owned(),
            "    id: from-file".to_owned(),
            "    rules:".to_owned(),
            "      - matches:".to_owned(),
            "          - path: { type: PathPrefix, value: /api }".to_owned(),
            format!("        backends: [{{ url: \"{api_url}\" }}]"),
            "        filters:".to_owned(),
            "          - type: ResponseHeaderModifier".to_owned(),
            "            set: [{ name: x-from, value: file }]".to_owned(),
            format!("      - backends: [{{ url: \"{}\" }}]", web.url()),
            "  broken.file.test:".to_owned(),
            "    id: broken".to_owned(),
        ]
        .join("\n")
    };
    std::fs::write(&path, yaml(&api.url())).expect("write the routes file");
    let proxy = TestProxy::start(&format!("file://{}", path.display()), json!({})).await;

    let resp = get(&proxy, "doc.file.test", "/api/x").await;
    assert_eq!(resp.served_by(), "file-api");
    assert_eq!(
        resp.header("x-from"),
        Some("file"),
        "the rule's filter applies"
    );
    assert_eq!(
        get(&proxy, "doc.file.test", "/").await.served_by(),
        "file-web"
    );
    assert_eq!(
        get(&proxy, "list.file.test", "/").await.served_by(),
        "file-list"
    );
    let resp = get(&proxy, "broken.file.test", "/").await;
    assert_eq!(
        resp.status,
        503,
        "a document without rules is refused: {}",
        resp.served_by()
    );
    assert_eq!(get(&proxy, "nobody.file.test", "/").await.status, 400);

    // The file is watched: an edit is served after the reload.
    // The watcher compares modification times: make sure this one moves.
    let modified = || {
        std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("modification time of the routes file")
    };
    let before = modified();
    std::fs::write(&path, yaml(&web.url())).expect("rewrite the routes file");
    until("a new modification time", DEADLINE, || async {
        if modified() == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
            std::fs::write(&path, yaml(&web.url())).expect("rewrite the routes file");
            return Err("unchanged".to_owned());
        }
        Ok(())
    })
    .await;
    until("the edited routes file served", DEADLINE, || async {
        match get(&proxy, "doc.file.test", "/api/x").await.served_by() {
            b if b == "file-web" => Ok(()),
            b => Err(b),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_cache_sees_document_edits_promptly() {
    let (redis, proxy) = setup_admin(json!({"routeCache": "tracking"})).await;
    let first = Backend::start("first").await;
    let second = Backend::start("second").await;
    let listed = Backend::start("listed").await;
    let to = |b: &Backend| document("tracked", json!([{"backends": [{"url": b.url()}]}]));
    redis.set_routes("tracked.test", &to(&first)).await;
    redis
        .rpush_frontend("tracked.test", "tracked-list", &[listed.url()])
        .await;
    let hits = |s: &Scrape| s.value(CACHE, &[("result", "hit")]);
    let cold = hits(&scrape(proxy.admin_addr()).await);
    for _ in 0..5 {
        assert_eq!(get(&proxy, "tracked.test", "/").await.served_by(), "first");
    }
    assert_eq!(
        hits(&scrape(proxy.admin_addr()).await) - cold,
        4.0,
        "the document is cached (else the edit below proves nothing)"
    );

    let served = |want: &'static str| {
        let proxy = &proxy;
        async move {
            until(
                &format!("{want} served after the edit"),
                Duration::from_secs(2),
                || async {
                    match get(proxy, "tracked.test", "/").await.served_by() {
                        b if b == want => Ok(()),
                        b => Err(b),
                    }
                },
            )
            .await;
        }
    };
    redis.set_routes("tracked.test", &to(&second)).await;
    served("second").await;
    for _ in 0..5 {
        assert_eq!(
            get(&proxy, "tracked.test", "/").await.served_by(),
            "second",
            "the edit stays seen"
        );
    }
    // A refused edit is seen too (503), and so is the document's removal
    // (the list under the same host serves).
    let _: () = redis
        .query(&["SET", "routes:tracked.test", "{not json"])
        .await;
    until(
        "the refused document seen",
        Duration::from_secs(2),
        || async {
            match get(&proxy, "tracked.test", "/").await.status.as_u16() {
                503 => Ok(()),
                s => Err(s.to_string()),
            }
        },
    )
    .await;
    let _: i64 = redis.query(&["DEL", "routes:tracked.test"]).await;
    served("listed").await;
}
