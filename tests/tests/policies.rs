//! Access policies of route documents (docs/policies.md) end to end: a real
//! `redis-server`, real backends, the proxy in-process, and what a client
//! and a backend see: IP allow- and deny-lists (host-wide and per rule,
//! behind a trusted proxy), CORS preflights and actual requests, HSTS over
//! HTTPS only, security headers on every answer (the proxy's own included)
//! and a host's own error pages.
//!
//! The harness's client connects from 127.0.0.1.

use hipache_tests::backend::Backend;
use hipache_tests::client::{Req, Resp};
use hipache_tests::https::HttpsProxy;
use hipache_tests::proxy::TestProxy;
use hipache_tests::redis::RedisServer;
use hipache_tests::routes::{document, get, req, send};
use hipache_tests::setup;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

/// A route document with host-wide policies and these rules.
fn document_with(id: &str, policies: Value, rules: Value) -> Value {
    json!({"version": 1, "id": id, "policies": policies, "rules": rules})
}

/// One rule for every path, to `backend`, with these policies.
fn rule(backend: &Backend, policies: Value) -> Value {
    json!({"backends": [{"url": backend.url()}], "policies": policies})
}

/// `host`'s document (named by its first label): one rule for every path,
/// to `backend`, with these policies.
async fn one_rule(redis: &RedisServer, host: &str, backend: &Backend, policies: Value) {
    let id = host.split('.').next().unwrap_or(host);
    redis
        .set_routes(host, &document(id, json!([rule(backend, policies)])))
        .await;
}

/// `GET path` on `host` from the (trusted) peer, with `X-Forwarded-For`
/// lines as a proxy in front would send them.
async fn get_forwarded_for(proxy: &TestProxy, host: &str, path: &str, xff: &[&str]) -> Resp {
    let headers: Vec<(&str, &str)> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
    send(
        proxy,
        &format!("GET http://{host}{path} with X-Forwarded-For {xff:?}"),
        req("GET", host, path, &headers),
    )
    .await
}

/// Every value of a header, in order.
fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// A 403 refusal by an IP list: the proxy's error page, not a backend's
/// answer.
fn assert_refused(resp: &Resp, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::FORBIDDEN,
        "{what}: expected 403, got {}",
        resp.served_by()
    );
    assert_eq!(resp.backend(), None, "{what}: no backend answered");
    assert!(
        resp.header("content-type")
            .is_some_and(|v| v.starts_with("text/html")),
        "{what}: the refusal is an error page: content-type {:?}",
        resp.header("content-type")
    );
    assert!(
        resp.text().contains("403"),
        "{what}: the error page names its status: {:?}",
        resp.text()
    );
    assert_eq!(resp.header("cache-control"), Some("no-cache"), "{what}");
}

fn assert_served(resp: &Resp, by: &str, what: &str) {
    assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.served_by());
    assert_eq!(resp.served_by(), by, "{what}");
}

// --- IP lists --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_allow_and_deny_lists_judge_the_client_address() {
    let (redis, proxy) = setup(json!({})).await;
    let closed = Backend::start("closed").await;
    let open = Backend::start("open").await;
    let single = Backend::start("single").await;
    let nobody = Backend::start("nobody").await;
    let denied = Backend::start("denied").await;
    let elsewhere = Backend::start("elsewhere").await;
    let everyone = Backend::start("everyone").await;

    // An allow-list without loopback: 403 with the error page, whatever the
    // method, and the backend is never asked.
    one_rule(
        &redis,
        "closed.test",
        &closed,
        json!({"ipAllowList": ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]}),
    )
    .await;
    assert_refused(
        &get(&proxy, "closed.test", "/").await,
        "outside the allow-list",
    );
    let post = send(
        &proxy,
        "POST http://closed.test/form",
        Req::new("POST", "closed.test", "/form").body("a=1"),
    )
    .await;
    assert_refused(&post, "a POST outside the allow-list");
    let head = send(
        &proxy,
        "HEAD http://closed.test/",
        Req::new("HEAD", "closed.test", "/"),
    )
    .await;
    assert_eq!(
        head.status,
        StatusCode::FORBIDDEN,
        "HEAD: {}",
        head.served_by()
    );
    assert_eq!(
        closed.request_count(),
        0,
        "a refused request never reaches the backend"
    );

    // Loopback as a network, and as a bare address.
    one_rule(
        &redis,
        "open.test",
        &open,
        json!({"ipAllowList": ["10.0.0.0/8", "127.0.0.0/8"]}),
    )
    .await;
    assert_served(
        &get(&proxy, "open.test", "/").await,
        "open",
        "127.0.0.0/8 allowed",
    );
    one_rule(
        &redis,
        "single.test",
        &single,
        json!({"ipAllowList": ["127.0.0.1"]}),
    )
    .await;
    assert_served(
        &get(&proxy, "single.test", "/").await,
        "single",
        "127.0.0.1 allowed",
    );

    // An empty allow-list lets nobody pass.
    one_rule(&redis, "nobody.test", &nobody, json!({"ipAllowList": []})).await;
    assert_refused(
        &get(&proxy, "nobody.test", "/").await,
        "an empty allow-list",
    );
    assert_eq!(nobody.request_count(), 0);

    // The deny-list wins over the allow-list.
    one_rule(
        &redis,
        "denied.test",
        &denied,
        json!({"ipAllowList": ["127.0.0.0/8"], "ipDenyList": ["127.0.0.1/32"]}),
    )
    .await;
    assert_refused(
        &get(&proxy, "denied.test", "/").await,
        "allowed, then denied",
    );
    assert_eq!(denied.request_count(), 0);

    // A deny-list alone: others pass, a listed network does not.
    one_rule(
        &redis,
        "elsewhere.test",
        &elsewhere,
        json!({"ipDenyList": ["10.0.0.0/8", "::1/128"]}),
    )
    .await;
    assert_served(
        &get(&proxy, "elsewhere.test", "/").await,
        "elsewhere",
        "not in the deny-list",
    );
    one_rule(
        &redis,
        "everyone.test",
        &everyone,
        json!({"ipDenyList": ["0.0.0.0/0"]}),
    )
    .await;
    assert_refused(&get(&proxy, "everyone.test", "/").await, "0.0.0.0/0 denied");
    assert_eq!(everyone.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_lists_run_before_the_rules_redirect() {
    let (redis, proxy) = setup(json!({})).await;
    redis
        .set_routes(
            "moved.test",
            &document(
                "moved",
                json!([
                    {
                        "matches": [{"path": {"value": "/old"}}],
                        "filters": [{"type": "RequestRedirect", "path": {"type": "ReplaceFullPath", "value": "/new"}}],
                        "policies": {"ipAllowList": ["10.0.0.0/8"]}
                    },
                    {
                        "matches": [{"path": {"value": "/free"}}],
                        "filters": [{"type": "RequestRedirect", "path": {"type": "ReplaceFullPath", "value": "/new"}}]
                    }
                ]),
            ),
        )
        .await;
    let resp = get(&proxy, "moved.test", "/old").await;
    assert_refused(&resp, "a redirect rule with an allow-list");
    assert_eq!(
        resp.header("location"),
        None,
        "no redirect for a refused client"
    );
    let resp = get(&proxy, "moved.test", "/free").await;
    assert_eq!(
        resp.status,
        StatusCode::FOUND,
        "the rule without a list redirects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_wide_ip_lists_apply_to_every_rule_and_a_rules_own_replace_them() {
    let (redis, proxy) = setup(json!({})).await;
    let b = Backend::start("shop").await;
    let path = |p: &str| json!([{"path": {"value": p}}]);
    redis
        .set_routes(
            "shop.test",
            &document_with(
                "shop",
                json!({"ipAllowList": ["10.0.0.0/8"]}),
                json!([
                    {"name": "open", "matches": path("/open"), "backends": [{"url": b.url()}],
                     "policies": {"ipAllowList": ["127.0.0.0/8"]}},
                    {"name": "own-deny", "matches": path("/own-deny"), "backends": [{"url": b.url()}],
                     "policies": {"ipDenyList": ["192.0.2.0/24"]}},
                    {"name": "inherits", "backends": [{"url": b.url()}]}
                ]),
            ),
        )
        .await;
    assert_refused(
        &get(&proxy, "shop.test", "/").await,
        "a rule without policies gets the host's allow-list",
    );
    assert_refused(
        &get(&proxy, "shop.test", "/anything/else").await,
        "the host's allow-list",
    );
    assert_refused(
        &get(&proxy, "shop.test", "/own-deny").await,
        "a rule's own deny-list keeps the host's allow-list (kind by kind)",
    );
    assert_eq!(b.request_count(), 0);
    assert_served(
        &get(&proxy, "shop.test", "/open").await,
        "shop",
        "the rule's own allow-list replaces the host's",
    );
    assert_eq!(b.request_count(), 1);

    // A host-wide deny-list, replaced by a rule's empty one.
    redis
        .set_routes(
            "deny.test",
            &document_with(
                "deny",
                json!({"ipDenyList": ["127.0.0.1"]}),
                json!([
                    {"matches": path("/replaced"), "backends": [{"url": b.url()}], "policies": {"ipDenyList": []}},
                    {"backends": [{"url": b.url()}]}
                ]),
            ),
        )
        .await;
    assert_refused(&get(&proxy, "deny.test", "/").await, "the host's deny-list");
    assert_served(
        &get(&proxy, "deny.test", "/replaced").await,
        "shop",
        "the rule's own (empty) deny-list replaces the host's",
    );
    assert_eq!(b.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_rightmost_untrusted_forwarded_address_is_judged() {
    let (redis, proxy) = setup(json!({"trustedProxies": ["127.0.0.1/32"]})).await;
    let b = Backend::start("office").await;
    one_rule(
        &redis,
        "office.test",
        &b,
        json!({"ipAllowList": ["203.0.113.0/24"], "ipDenyList": ["203.0.113.66"]}),
    )
    .await;

    let named = |xff: &[&str]| format!("X-Forwarded-For {xff:?}");
    for xff in [
        &["203.0.113.9"][..],
        // A trusted hop (the peer itself) appended after the client.
        &["198.51.100.1, 203.0.113.9, 127.0.0.1"],
        &["198.51.100.1", "203.0.113.9"],
    ] {
        let resp = get_forwarded_for(&proxy, "office.test", "/", xff).await;
        assert_served(
            &resp,
            "office",
            &format!("{}: 203.0.113.9 is judged", named(xff)),
        );
    }
    let passed = b.request_count();
    assert_eq!(passed, 3);
    for (xff, why) in [
        (
            &[][..],
            "no X-Forwarded-For: the peer (127.0.0.1) is judged",
        ),
        (
            &["198.51.100.1"],
            "a forwarded address outside the allow-list",
        ),
        (
            &["203.0.113.9, 198.51.100.1"],
            "an allowed address prepended by the client does not count",
        ),
        (
            &["203.0.113.9", "198.51.100.1"],
            "the last header line holds the rightmost address",
        ),
        (&["203.0.113.66"], "an allowed network's denied address"),
        (
            &["127.0.0.1"],
            "only trusted proxies forwarded: the peer (127.0.0.1) is judged",
        ),
    ] {
        let resp = get_forwarded_for(&proxy, "office.test", "/", xff).await;
        assert_refused(&resp, &format!("{}: {why}", named(xff)));
    }
    assert_eq!(
        b.request_count(),
        passed,
        "refused requests never reach the backend"
    );

    // Without trustedProxies, a client's own X-Forwarded-For is ignored.
    let (redis, untrusting) = setup(json!({})).await;
    one_rule(
        &redis,
        "office.test",
        &b,
        json!({"ipAllowList": ["203.0.113.0/24"]}),
    )
    .await;
    let resp = get_forwarded_for(&untrusting, "office.test", "/", &["203.0.113.9"]).await;
    assert_refused(
        &resp,
        "X-Forwarded-For from an untrusted peer is not believed",
    );
    assert_eq!(b.request_count(), passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_entry_that_is_not_an_address_is_not_skipped() {
    // The trusted proxy in front appended something that is not a bare
    // address (`unknown`, an address with a port): the client's own
    // entries to its left must not be judged instead, or a client picks
    // its address by sending an allowed one.
    let (redis, proxy) = setup(json!({"trustedProxies": ["127.0.0.1/32"]})).await;
    let b = Backend::start("office").await;
    one_rule(
        &redis,
        "office.test",
        &b,
        json!({"ipAllowList": ["203.0.113.0/24"]}),
    )
    .await;
    let mut let_through = Vec::new();
    for xff in [
        "203.0.113.9, unknown",
        "203.0.113.9, 198.51.100.1:5555",
        "203.0.113.9, [2001:db8::1]:443",
    ] {
        let resp = get_forwarded_for(&proxy, "office.test", "/", &[xff]).await;
        if resp.status != StatusCode::FORBIDDEN {
            let_through.push(format!("{xff:?} -> {}", resp.served_by()));
        }
    }
    assert!(
        let_through.is_empty(),
        "the client-supplied 203.0.113.9 was judged instead of the rightmost entry: {let_through:#?}"
    );
    assert_eq!(b.request_count(), 0);
}

// --- CORS --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_by_the_proxy() {
    let (redis, proxy) = setup(json!({})).await;
    let b = Backend::start("api").await;
    one_rule(
        &redis,
        "api.test",
        &b,
        json!({"cors": {
            "allowOrigins": ["https://app.example.com", "https://*.shop.example"],
            "allowMethods": ["GET", "PUT", "DELETE"],
            "allowHeaders": ["content-type", "x-requested-with"],
            "exposeHeaders": ["x-total-count"],
            "maxAge": 600
        }}),
    )
    .await;
    let preflight = |origin: &str| {
        req(
            "OPTIONS",
            "api.test",
            "/items/1",
            &[
                ("origin", origin),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "content-type"),
            ],
        )
    };

    for origin in [
        "https://app.example.com",
        "https://eu.shop.example",
        "https://a.b.shop.example",
    ] {
        let resp = send(
            &proxy,
            &format!("preflight from {origin}"),
            preflight(origin),
        )
        .await;
        assert_eq!(
            resp.status,
            StatusCode::NO_CONTENT,
            "{origin}: {}",
            resp.served_by()
        );
        let h = &resp.headers;
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some(origin),
            "{origin}: {h:?}"
        );
        assert_eq!(
            resp.header("access-control-allow-methods"),
            Some("GET, PUT, DELETE"),
            "{origin}"
        );
        assert_eq!(
            resp.header("access-control-allow-headers"),
            Some("content-type, x-requested-with"),
            "{origin}"
        );
        assert_eq!(
            resp.header("access-control-max-age"),
            Some("600"),
            "{origin}"
        );
        assert_eq!(
            resp.header("access-control-allow-credentials"),
            None,
            "{origin}: no credentials unless allowed"
        );
        assert!(
            values(h, "vary").iter().any(|v| v.contains("Origin")),
            "{origin}: Vary: Origin: {h:?}"
        );
        assert!(resp.body.is_empty(), "{origin}: a 204 has no body");
    }
    assert_eq!(b.request_count(), 0, "preflights are answered by the proxy");

    // From an origin not allowed (the bare domain of a wildcard, another
    // scheme, a look-alike): 204 without any allow header, so the browser
    // refuses; still no backend request.
    for origin in [
        "https://shop.example",
        "http://app.example.com",
        "https://app.example.com.evil.net",
        "null",
    ] {
        let resp = send(
            &proxy,
            &format!("preflight from {origin}"),
            preflight(origin),
        )
        .await;
        assert_eq!(
            resp.status,
            StatusCode::NO_CONTENT,
            "{origin}: {}",
            resp.served_by()
        );
        let cors: Vec<_> = resp
            .headers
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .collect();
        assert!(
            cors.is_empty(),
            "{origin}: no CORS header for a refused origin: {cors:?}"
        );
    }
    assert_eq!(b.request_count(), 0);

    // OPTIONS without Access-Control-Request-Method is not a preflight: it
    // goes to the backend.
    let resp = send(
        &proxy,
        "OPTIONS without a requested method",
        req(
            "OPTIONS",
            "api.test",
            "/items/1",
            &[("origin", "https://app.example.com")],
        ),
    )
    .await;
    assert_served(&resp, "api", "a plain OPTIONS");
    assert_eq!(b.request_count(), 1);

    // Default methods when the filter names none.
    one_rule(
        &redis,
        "plain.test",
        &b,
        json!({"cors": {"allowOrigins": ["https://app.example.com"]}}),
    )
    .await;
    let resp = send(
        &proxy,
        "preflight with default methods",
        req(
            "OPTIONS",
            "plain.test",
            "/",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
            ],
        ),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    assert_eq!(
        resp.header("access-control-allow-methods"),
        Some("GET, HEAD, POST")
    );
    assert_eq!(
        resp.header("access-control-max-age"),
        None,
        "no maxAge, no Max-Age"
    );
    assert_eq!(b.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_actual_requests_get_the_allow_origin_on_the_backends_answer() {
    let (redis, proxy) = setup(json!({})).await;
    let b = Backend::builder("api")
        .header("vary", "Accept-Encoding")
        .start()
        .await;
    one_rule(
        &redis,
        "api.test",
        &b,
        json!({"cors": {
            "allowOrigins": ["https://app.example.com"],
            "exposeHeaders": ["x-total-count", "x-page"]
        }}),
    )
    .await;
    let resp = send(
        &proxy,
        "GET from an allowed origin",
        req(
            "GET",
            "api.test",
            "/items",
            &[("origin", "https://app.example.com")],
        ),
    )
    .await;
    assert_served(&resp, "api", "an actual request from an allowed origin");
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        resp.header("access-control-expose-headers"),
        Some("x-total-count, x-page")
    );
    assert_eq!(resp.header("access-control-allow-credentials"), None);
    let vary = values(&resp.headers, "vary");
    assert!(
        vary.iter().any(|v| v.contains("Origin")),
        "Vary: Origin: {vary:?}"
    );
    assert!(
        vary.iter().any(|v| v.contains("Accept-Encoding")),
        "the backend's own Vary is kept: {vary:?}"
    );
    assert_eq!(
        b.last_request().header("origin"),
        Some("https://app.example.com"),
        "the backend sees the Origin"
    );

    // Another origin, or none: the backend's answer without CORS headers.
    for (what, headers) in [
        ("another origin", &[("origin", "https://evil.example")][..]),
        ("no Origin", &[][..]),
    ] {
        let resp = send(&proxy, what, req("GET", "api.test", "/items", headers)).await;
        assert_served(&resp, "api", what);
        let cors: Vec<_> = resp
            .headers
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{what}: no CORS header: {cors:?}");
    }
    assert_eq!(b.request_count(), 3);

    // Any origin, without credentials: `*`.
    one_rule(
        &redis,
        "any.test",
        &b,
        json!({"cors": {"allowOrigins": ["*"]}}),
    )
    .await;
    let resp = send(
        &proxy,
        "GET from any origin",
        req(
            "GET",
            "any.test",
            "/",
            &[("origin", "https://whoever.example")],
        ),
    )
    .await;
    assert_served(&resp, "api", "any origin");
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_with_credentials_echoes_the_origin() {
    let (redis, proxy) = setup(json!({})).await;
    let b = Backend::start("api").await;
    one_rule(
        &redis,
        "creds.test",
        &b,
        json!({"cors": {
            "allowOrigins": ["*"],
            "allowHeaders": ["*"],
            "allowCredentials": true
        }}),
    )
    .await;
    let origin = "https://app.example.com";
    let resp = send(
        &proxy,
        "credentialed GET",
        req(
            "GET",
            "creds.test",
            "/me",
            &[("origin", origin), ("cookie", "session=1")],
        ),
    )
    .await;
    assert_served(&resp, "api", "a credentialed request");
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some(origin),
        "with credentials the origin is echoed, never *"
    );
    assert_eq!(
        resp.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(values(&resp.headers, "vary")
        .iter()
        .any(|v| v.contains("Origin")));

    let resp = send(
        &proxy,
        "credentialed preflight",
        req(
            "OPTIONS",
            "creds.test",
            "/me",
            &[
                ("origin", origin),
                ("access-control-request-method", "PATCH"),
                (
                    "access-control-request-headers",
                    "x-csrf-token, content-type",
                ),
            ],
        ),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{}", resp.served_by());
    assert_eq!(resp.header("access-control-allow-origin"), Some(origin));
    assert_eq!(
        resp.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        resp.header("access-control-allow-headers"),
        Some("x-csrf-token, content-type"),
        "`*` with credentials: the requested headers are echoed"
    );
    assert_eq!(
        b.request_count(),
        1,
        "the preflight did not reach the backend"
    );
}

// --- HSTS ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_sent_over_https_only() {
    let rig = HttpsProxy::start(&["secure.test", "plain-host.test"]).await;
    let b = Backend::builder("secure")
        .header("x-from", "backend")
        .start()
        .await;
    let hsts = json!({"maxAge": 31536000, "includeSubDomains": true, "preload": true});
    let want = "max-age=31536000; includeSubDomains; preload";
    rig.redis
        .set_routes(
            "secure.test",
            &document_with(
                "secure",
                json!({"hsts": hsts}),
                json!([
                    {"matches": [{"path": {"value": "/admin"}}], "backends": [{"url": b.url()}],
                     "policies": {"ipAllowList": ["10.0.0.0/8"]}},
                    {"matches": [{"path": {"value": "/gone"}}], "backends": [{"url": hipache_tests::refused_url()}]},
                    {"backends": [{"url": b.url()}]}
                ]),
            ),
        )
        .await;

    // Over HTTPS: on the backend's answer and on the proxy's own.
    let resp = rig.get("secure.test", "/").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("x-from"), Some("backend"));
    assert_eq!(
        resp.header("strict-transport-security"),
        Some(want),
        "on a backend's answer"
    );
    let resp = rig.get("secure.test", "/admin").await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert_eq!(
        resp.header("strict-transport-security"),
        Some(want),
        "on a refusal"
    );
    let resp = rig.get("secure.test", "/gone").await;
    assert_eq!(resp.status, 502, "{}", resp.body);
    assert_eq!(
        resp.header("strict-transport-security"),
        Some(want),
        "on a 502"
    );

    // Over plain HTTP: never (RFC 6797 §7.2), the proxy's own answers
    // included.
    for path in ["/", "/admin", "/gone"] {
        let resp = get(&rig.proxy, "secure.test", path).await;
        assert_eq!(
            resp.header("strict-transport-security"),
            None,
            "{path} over plain HTTP ({}) carries no HSTS",
            resp.status
        );
    }

    // A host without the policy: none over HTTPS either. With only maxAge:
    // max-age alone.
    one_rule(&rig.redis, "plain-host.test", &b, json!({})).await;
    let resp = rig.get("plain-host.test", "/").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("strict-transport-security"),
        None,
        "a host without hsts"
    );
    one_rule(
        &rig.redis,
        "plain-host.test",
        &b,
        json!({"hsts": {"maxAge": 600}}),
    )
    .await;
    let resp = rig.get("plain-host.test", "/").await;
    assert_eq!(
        resp.header("strict-transport-security"),
        Some("max-age=600")
    );
}

// --- Security headers ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_set_on_every_answer_the_proxys_own_included() {
    let (redis, proxy) = setup(json!({})).await;
    let b = Backend::builder("app")
        .header("x-frame-options", "ALLOWALL")
        .header("x-app", "1")
        .start()
        .await;
    let security = json!([
        {"name": "X-Frame-Options", "value": "DENY"},
        {"name": "X-Content-Type-Options", "value": "nosniff"},
        {"name": "Content-Security-Policy", "value": "default-src 'self'"}
    ]);
    let path = |p: &str| json!([{"path": {"value": p}}]);
    redis
        .set_routes(
            "app.test",
            &document_with(
                "app",
                json!({"securityHeaders": security, "cors": {"allowOrigins": ["https://app.example.com"]}}),
                json!([
                    {"matches": path("/admin"), "backends": [{"url": b.url()}], "policies": {"ipAllowList": ["10.0.0.0/8"]}},
                    {"matches": path("/dead"), "backends": [{"url": b.url()}]},
                    {"matches": path("/gone"), "backends": [{"url": hipache_tests::refused_url()}]},
                    {"matches": path("/old"), "filters": [{"type": "RequestRedirect", "path": {"type": "ReplaceFullPath", "value": "/new"}}]},
                    {"matches": path("/invalid"), "backends": [{"invalid": "Service shop/missing does not exist"}]},
                    {"backends": [{"url": b.url()}]}
                ]),
            ),
        )
        .await;
    // Position 1 (the /dead rule's backend) is marked dead: 502, no live
    // backend.
    let _: i64 = redis.query(&["SADD", "dead:app.test", "1"]).await;

    let check = |resp: &Resp, what: &str| {
        for (name, value) in [
            ("x-frame-options", "DENY"),
            ("x-content-type-options", "nosniff"),
            ("content-security-policy", "default-src 'self'"),
        ] {
            assert_eq!(
                values(&resp.headers, name),
                [value],
                "{what} ({}): {name} set (once) by the policy",
                resp.status
            );
        }
    };
    let resp = get(&proxy, "app.test", "/").await;
    assert_served(&resp, "app", "the backend's answer");
    assert_eq!(
        resp.header("x-app"),
        Some("1"),
        "the backend's other headers are kept"
    );
    check(
        &resp,
        "the backend's answer (its own X-Frame-Options replaced)",
    );

    let resp = get(&proxy, "app.test", "/admin").await;
    assert_refused(&resp, "an IP refusal");
    check(&resp, "a 403 by the proxy");

    let resp = get(&proxy, "app.test", "/dead").await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.served_by());
    check(&resp, "a 502 with no live backend");

    let resp = get(&proxy, "app.test", "/gone").await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.served_by());
    check(&resp, "a 502 from a refused connection");

    let resp = get(&proxy, "app.test", "/old").await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.served_by());
    check(&resp, "a redirect by the proxy");

    let resp = get(&proxy, "app.test", "/invalid").await;
    assert_eq!(
        resp.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        resp.served_by()
    );
    check(&resp, "a 500 for an invalid backend");

    let resp = send(
        &proxy,
        "a CORS preflight",
        req(
            "OPTIONS",
            "app.test",
            "/",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "GET"),
            ],
        ),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{}", resp.served_by());
    check(&resp, "a preflight answered by the proxy");

    let resp = send(
        &proxy,
        "HEAD on a refusal",
        Req::new("HEAD", "app.test", "/admin"),
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    check(&resp, "a HEAD refused");
    assert_eq!(
        b.request_count(),
        1,
        "only the first request reached the backend"
    );

    // Another host keeps its answers as they are.
    one_rule(&redis, "other.test", &b, json!({})).await;
    let resp = get(&proxy, "other.test", "/").await;
    assert_served(&resp, "app", "a host without the policy");
    assert_eq!(values(&resp.headers, "x-frame-options"), ["ALLOWALL"]);
    assert_eq!(resp.header("content-security-policy"), None);
}

// --- Error pages -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosts_error_pages_replace_the_global_ones_for_that_host_only() {
    let dir = tempfile::tempdir().expect("temporary static dir");
    std::fs::write(dir.path().join("error_502.html"), "global 502 page")
        .expect("write error_502.html");
    std::fs::write(dir.path().join("error_403.html"), "global 403 page")
        .expect("write error_403.html");
    let static_dir = dir.path().to_str().expect("utf-8 temp path");
    let (redis, proxy) = setup(json!({"staticDir": static_dir})).await;
    let b = Backend::start("shop").await;
    let path = |p: &str| json!([{"path": {"value": p}}]);
    let shop_502 = "<html><body><h1>The shop is closed for a moment</h1></body></html>";
    let shop_403 = "<html><body><h1>Not from your network</h1></body></html>";
    let shop_504 = "<html><body><h1>The shop is too slow today</h1></body></html>";
    redis
        .set_routes(
            "shop.test",
            &document_with(
                "shop",
                json!({"errorPages": {"502": shop_502, "403": shop_403, "504": shop_504}}),
                json!([
                    {"matches": path("/admin"), "backends": [{"url": b.url()}], "policies": {"ipAllowList": ["10.0.0.0/8"]}},
                    {"matches": path("/own"), "backends": [{"url": hipache_tests::refused_url()}],
                     "policies": {"errorPages": {"503": "<p>rule 503</p>"}}},
                    {"matches": path("/gone"), "backends": [{"url": hipache_tests::refused_url()}]},
                    {"backends": [{"url": b.url()}]},
                    {"matches": path("/slow"), "backends": [{"url": b.url()}], "timeouts": {"request": "200ms"}}
                ]),
            ),
        )
        .await;
    // Position 3 (the catch-all rule's backend) is dead: no live backend.
    let _: i64 = redis.query(&["SADD", "dead:shop.test", "3"]).await;

    let resp = get(&proxy, "shop.test", "/").await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.served_by());
    assert_eq!(
        resp.text(),
        shop_502,
        "no live backend: the host's 502 page"
    );
    assert!(
        resp.header("content-type")
            .is_some_and(|v| v.starts_with("text/html")),
        "{:?}",
        resp.header("content-type")
    );
    assert_eq!(resp.header("cache-control"), Some("no-cache"));
    assert_eq!(
        resp.header("content-length"),
        Some(shop_502.len().to_string().as_str())
    );

    let resp = get(&proxy, "shop.test", "/gone").await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.served_by());
    assert_eq!(
        resp.text(),
        shop_502,
        "a refused connection: the host's 502 page"
    );

    let resp = get(&proxy, "shop.test", "/admin").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.served_by());
    assert_eq!(resp.text(), shop_403, "a refusal: the host's 403 page");

    // A rule's own errorPages replace the host's whole (kind by kind): its
    // 502 is the global page.
    let resp = get(&proxy, "shop.test", "/own").await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.served_by());
    assert_eq!(
        resp.text(),
        "global 502 page",
        "the rule's pages have no 502"
    );

    // HEAD: the status and headers, no body.
    let resp = send(&proxy, "HEAD on a 502", Req::new("HEAD", "shop.test", "/")).await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    assert!(resp.body.is_empty());
    assert_eq!(b.request_count(), 0);

    // A timeout: the host's 504 page.
    let resp = send(
        &proxy,
        "GET /slow",
        req("GET", "shop.test", "/slow", &[("x-test-delay-ms", "5000")]),
    )
    .await;
    assert_eq!(
        resp.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        resp.served_by()
    );
    assert_eq!(resp.text(), shop_504, "a rule timeout: the host's 504 page");
    assert_eq!(b.request_count(), 1);

    // Another host keeps the global pages: a document without errorPages,
    // and a plain list.
    redis
        .set_routes(
            "other.test",
            &document(
                "other",
                json!([
                    {"matches": path("/admin"), "backends": [{"url": b.url()}], "policies": {"ipAllowList": ["10.0.0.0/8"]}},
                    {"backends": [{"url": hipache_tests::refused_url()}]}
                ]),
            ),
        )
        .await;
    let resp = get(&proxy, "other.test", "/").await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.served_by());
    assert_eq!(resp.text(), "global 502 page", "another host's 502");
    let resp = get(&proxy, "other.test", "/admin").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.served_by());
    assert_eq!(resp.text(), "global 403 page", "another host's 403");
    redis.rpush_frontend::<&str>("list.test", "list", &[]).await;
    let resp = get(&proxy, "list.test", "/").await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.served_by());
    assert_eq!(resp.text(), "global 502 page", "a plain list's 502");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_policy() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({})).await;
    let backend = Backend::start("counted").await;
    redis
        .set_routes(
            "counted.test",
            &json!({
                "id": "counted",
                "rules": [
                    {"matches": [{"path": {"value": "/ip"}}], "policies": {"ipAllowList": ["192.0.2.0/24"]}, "backends": [{"url": backend.url()}]},
                    {"backends": [{"url": backend.url()}]}
                ]
            }),
        )
        .await;
    let refused = || async {
        hipache_tests::metrics::scrape(proxy.admin_addr())
            .await
            .value("hipache_policy_refusals_total", &[("policy", "ip_list")])
    };
    let before = refused().await;
    for _ in 0..3 {
        let r = Req::get("counted.test", "/ip")
            .send(proxy.addr())
            .await
            .expect("answer");
        assert_eq!(r.status, 403);
    }
    let r = Req::get("counted.test", "/")
        .send(proxy.addr())
        .await
        .expect("answer");
    assert_eq!(r.status, 200, "an open rule is not refused");
    assert_eq!(
        refused().await - before,
        3.0,
        "one count per refused request"
    );
}
