//! Routing: methods, host lookup order (exact, wildcards, catch-all),
//! host normalisation, blocking entries, freshness of Redis edits, prefixes.

use hipache_tests::backend::Backend;
use hipache_tests::client::{get, raw, raw_status, Req};
use hipache_tests::proxy::TestProxy;
use hipache_tests::redis::RedisServer;
use hipache_tests::setup;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_is_proxied() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("m").await;
    redis
        .rpush_frontend("methods.test", "methods", &[backend.url()])
        .await;

    for method in ["GET", "HEAD", "OPTIONS", "DELETE", "POST", "PUT", "PATCH"] {
        let payload = format!("payload of {method}");
        let mut req = Req::new(method, "methods.test", &format!("/m/{method}?q=1"));
        if matches!(method, "POST" | "PUT" | "PATCH") {
            req = req.body(payload.clone());
        }
        let resp = req
            .send(proxy.addr())
            .await
            .unwrap_or_else(|e| panic!("{method} through the proxy failed: {e:#}"));
        assert_eq!(resp.status, 200, "{method}: status");
        if method == "HEAD" {
            assert!(
                resp.body.is_empty(),
                "HEAD: the client got a body: {:?}",
                resp.text()
            );
        } else {
            assert_eq!(resp.text(), "m", "{method}: body from the backend");
        }
        let seen = backend.last_request();
        assert_eq!(
            seen.method.as_str(),
            method,
            "the backend saw another method"
        );
        assert_eq!(
            seen.uri,
            format!("/m/{method}?q=1"),
            "{method}: path and query forwarded unchanged"
        );
        if matches!(method, "POST" | "PUT" | "PATCH") {
            assert_eq!(
                seen.body.as_deref(),
                Some(payload.as_bytes()),
                "{method}: the backend got another body"
            );
        }
    }
    assert_eq!(
        backend.request_count(),
        7,
        "one backend request per client request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_of_a_frontend_are_used() {
    let (redis, proxy) = setup(json!({})).await;
    let backends = [
        Backend::start("b0").await,
        Backend::start("b1").await,
        Backend::start("b2").await,
    ];
    let urls: Vec<String> = backends.iter().map(Backend::url).collect();
    redis.rpush_frontend("spread.test", "spread", &urls).await;

    for i in 0..60 {
        let resp = get(proxy.addr(), "spread.test", "/").await;
        assert_eq!(resp.status, 200, "request {i}: status");
    }
    for backend in &backends {
        assert!(
            backend.request_count() >= 1,
            "backend {} got no request out of 60: the choice is not spread",
            backend.name()
        );
    }
    let total: usize = backends.iter().map(Backend::request_count).sum();
    assert_eq!(total, 60, "each request reaches exactly one backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_400() {
    let (_redis, proxy) = setup(json!({})).await;
    let resp = get(proxy.addr(), "nobody.test", "/").await;
    assert_eq!(resp.status, 400, "a host with no frontend must get 400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_host_header_is_400() {
    let (_redis, proxy) = setup(json!({})).await;
    let answer = raw(proxy.addr(), b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        raw_status(&answer),
        Some(400),
        "HTTP/1.0 request without Host: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answers_without_redis() {
    let (mut redis, proxy) = setup(json!({})).await;
    redis.stop();
    let resp = Req::get("__ping__", "/")
        .timeout(std::time::Duration::from_secs(5))
        .send(proxy.addr())
        .await
        .expect("__ping__ must answer even with Redis down");
    assert_eq!(resp.status, 200, "__ping__ status");
    assert_eq!(resp.text(), "ok", "__ping__ body");
    assert!(
        resp.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "__ping__ content-type: {:?}",
        resp.header("content-type")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_host_beats_wildcard() {
    let (redis, proxy) = setup(json!({})).await;
    let exact = Backend::start("exact").await;
    let wild = Backend::start("wild").await;
    redis
        .rpush_frontend("www.example.com", "exact", &[exact.url()])
        .await;
    redis
        .rpush_frontend("*.example.com", "wild", &[wild.url()])
        .await;

    assert_eq!(
        get(proxy.addr(), "www.example.com", "/").await.served_by(),
        "exact"
    );
    assert_eq!(
        get(proxy.addr(), "other.example.com", "/")
            .await
            .served_by(),
        "wild"
    );
    assert_eq!(
        get(proxy.addr(), "deep.www.example.com", "/")
            .await
            .served_by(),
        "wild",
        "a wildcard covers every depth below its domain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeper_wildcard_beats_shallower() {
    let (redis, proxy) = setup(json!({})).await;
    let deep = Backend::start("deep").await;
    let shallow = Backend::start("shallow").await;
    redis
        .rpush_frontend("*.b.example.com", "deep", &[deep.url()])
        .await;
    redis
        .rpush_frontend("*.example.com", "shallow", &[shallow.url()])
        .await;

    assert_eq!(
        get(proxy.addr(), "x.b.example.com", "/").await.served_by(),
        "deep"
    );
    assert_eq!(
        get(proxy.addr(), "y.x.b.example.com", "/")
            .await
            .served_by(),
        "deep"
    );
    assert_eq!(
        get(proxy.addr(), "x.c.example.com", "/").await.served_by(),
        "shallow"
    );
    assert_eq!(
        get(proxy.addr(), "b.example.com", "/").await.served_by(),
        "shallow",
        "b.example.com is not covered by *.b.example.com, only by *.example.com"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_only_cover_the_last_six_labels() {
    let (redis, proxy) = setup(json!({})).await;
    let too_deep = Backend::start("too-deep").await;
    let five = Backend::start("five").await;
    redis
        .rpush_frontend("*.a.b.c.d.e.com", "too-deep", &[too_deep.url()])
        .await;

    let resp = get(proxy.addr(), "x.a.b.c.d.e.com", "/").await;
    assert_eq!(
        resp.status,
        400,
        "x.a.b.c.d.e.com must not match *.a.b.c.d.e.com (beyond the last 6 labels); got {:?}",
        resp.backend()
    );

    redis
        .rpush_frontend("*.b.c.d.e.com", "five", &[five.url()])
        .await;
    let resp = get(proxy.addr(), "x.a.b.c.d.e.com", "/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.served_by(),
        "five",
        "x.a.b.c.d.e.com matches *.b.c.d.e.com"
    );
    assert_eq!(too_deep.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_all_serves_unknown_hosts() {
    let (redis, proxy) = setup(json!({})).await;
    let named = Backend::start("named").await;
    let any = Backend::start("any").await;
    redis
        .rpush_frontend("named.test", "named", &[named.url()])
        .await;
    redis.rpush_frontend("*", "any", &[any.url()]).await;

    assert_eq!(
        get(proxy.addr(), "named.test", "/").await.served_by(),
        "named"
    );
    assert_eq!(
        get(proxy.addr(), "whatever.example.org", "/")
            .await
            .served_by(),
        "any"
    );
    assert_eq!(get(proxy.addr(), "localhost", "/").await.served_by(), "any");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_does_not_match_its_bare_domain() {
    let (redis, proxy) = setup(json!({})).await;
    let wild = Backend::start("wild").await;
    redis
        .rpush_frontend("*.example.com", "wild", &[wild.url()])
        .await;

    let resp = get(proxy.addr(), "example.com", "/").await;
    assert_eq!(
        resp.status, 400,
        "*.example.com must not match example.com itself"
    );
    assert_eq!(wild.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_normalised_before_lookup() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("norm").await;
    redis
        .rpush_frontend("norm.example.com", "norm", &[backend.url()])
        .await;

    for host in [
        "norm.example.com",
        "NORM.Example.COM",
        "norm.example.com.",
        "norm.example.com:8080",
        "Norm.Example.Com.:80",
    ] {
        let resp = get(proxy.addr(), host, "/").await;
        assert_eq!(
            resp.status, 200,
            "Host {host:?} must route to frontend:norm.example.com"
        );
        assert_eq!(resp.served_by(), "norm", "Host {host:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifier_only_list_blocks_a_subdomain_with_502() {
    let (redis, proxy) = setup(json!({})).await;
    let wild = Backend::start("wild").await;
    redis
        .rpush_frontend("*.example.com", "wild", &[wild.url()])
        .await;
    redis
        .rpush_frontend::<&str>("blocked.example.com", "blocked", &[])
        .await;

    let resp = get(proxy.addr(), "blocked.example.com", "/").await;
    assert_eq!(
        resp.status, 502,
        "a list holding only the identifier is a match with no backend"
    );
    assert_eq!(
        wild.request_count(),
        0,
        "the blocked host must not fall through to the wildcard"
    );
    assert_eq!(
        get(proxy.addr(), "open.example.com", "/").await.served_by(),
        "wild"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_or_emptied_key_falls_through() {
    let (redis, proxy) = setup(json!({})).await;
    let exact = Backend::start("exact").await;
    let wild = Backend::start("wild").await;
    redis
        .rpush_frontend("*.example.com", "wild", &[wild.url()])
        .await;
    assert_eq!(
        get(proxy.addr(), "gone.example.com", "/").await.served_by(),
        "wild"
    );

    redis
        .rpush_frontend("gone.example.com", "exact", &[exact.url()])
        .await;
    assert_eq!(
        get(proxy.addr(), "gone.example.com", "/").await.served_by(),
        "exact"
    );

    // Popping every element leaves an empty list, which Redis deletes.
    let () = redis
        .query(&["LTRIM", "frontend:gone.example.com", "1", "0"])
        .await;
    assert_eq!(
        get(proxy.addr(), "gone.example.com", "/").await.served_by(),
        "wild",
        "an emptied frontend falls through to the wildcard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_edits_apply_to_the_very_next_request() {
    let (redis, proxy) = setup(json!({})).await;
    let first = Backend::start("first").await;
    let second = Backend::start("second").await;

    assert_eq!(get(proxy.addr(), "fresh.test", "/").await.status, 400);

    redis
        .rpush_frontend("fresh.test", "fresh", &[first.url()])
        .await;
    let resp = get(proxy.addr(), "fresh.test", "/").await;
    assert_eq!(
        resp.status, 200,
        "a new frontend must serve the very next request"
    );
    assert_eq!(resp.served_by(), "first");

    let _: () = redis
        .query(&["LSET", "frontend:fresh.test", "1", &second.url()])
        .await;
    assert_eq!(
        get(proxy.addr(), "fresh.test", "/").await.served_by(),
        "second",
        "LSET of a backend must apply to the very next request"
    );

    let _: i64 = redis.query(&["DEL", "frontend:fresh.test"]).await;
    assert_eq!(
        get(proxy.addr(), "fresh.test", "/").await.status,
        400,
        "a deleted frontend must stop serving at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_prefix_is_glued_to_frontend_keys() {
    let redis = RedisServer::start();
    let tenant = Backend::start("tenant").await;
    let plain = Backend::start("plain").await;
    redis
        .rpush_frontend_key("tenant1frontend:pre.test", "tenant", &[tenant.url()])
        .await;
    redis
        .rpush_frontend("pre.test", "plain", &[plain.url()])
        .await;
    redis
        .rpush_frontend("only-plain.test", "plain", &[plain.url()])
        .await;
    let proxy = TestProxy::start(&redis.url_with_prefix("tenant1"), json!({})).await;

    let resp = get(proxy.addr(), "pre.test", "/").await;
    assert_eq!(
        resp.served_by(),
        "tenant",
        "the prefix must be read: tenant1frontend:pre.test"
    );
    assert_eq!(
        get(proxy.addr(), "only-plain.test", "/").await.status,
        400,
        "with a prefix, unprefixed keys are not read"
    );
    assert_eq!(plain.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backend_url_is_skipped() {
    let (redis, proxy) = setup(json!({})).await;
    let live = Backend::start("live").await;
    redis
        .rpush_frontend(
            "badurl.test",
            "badurl",
            &["not a url".to_owned(), live.url()],
        )
        .await;
    for i in 0..10 {
        let resp = get(proxy.addr(), "badurl.test", "/").await;
        assert_eq!(
            resp.status, 200,
            "request {i}: an unparsable backend URL must be skipped"
        );
        assert_eq!(resp.served_by(), "live");
    }
    assert_eq!(live.request_count(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_wildcards_cover_one_label_like_kubernetes() {
    let (redis, proxy) = setup(json!({})).await;
    let k8s = Backend::start("k8s").await;
    let tenant = Backend::start("tenant").await;
    let all = Backend::start("all").await;
    redis
        .rpush_frontend("*.kube.test", "k8s:ns/web", &[k8s.url()])
        .await;
    redis
        .rpush_frontend("*.tenant.test", "tenant", &[tenant.url()])
        .await;
    redis.rpush_frontend("*", "catch-all", &[all.url()]).await;
    assert_eq!(
        get(proxy.addr(), "a.kube.test", "/").await.backend(),
        Some("k8s")
    );
    assert_eq!(
        get(proxy.addr(), "b.a.kube.test", "/").await.backend(),
        Some("all"),
        "an Ingress wildcard covers one label; deeper hosts fall through"
    );
    assert_eq!(
        get(proxy.addr(), "b.a.tenant.test", "/").await.backend(),
        Some("tenant"),
        "Hipache wildcards cover any depth"
    );
}
