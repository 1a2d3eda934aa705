//! Every metric family moves when its event happens, as an operator sees it:
//! a real `redis-server`, real backends and clients, and `/metrics` scraped
//! over HTTP from the proxy's admin listener. Also `/healthz` and `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hipache::metrics::names;
use hipache_tests::backend::Backend;
use hipache_tests::client::{get, Conn, Req};
use hipache_tests::metrics::{admin_get, scrape, scrape_until, Scrape};
use hipache_tests::proxy::{config_with_admin, TestProxy};
use hipache_tests::redis::RedisServer;
use hipache_tests::ws::WsBackend;
use hipache_tests::{refused_addr, refused_url};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Bound on a metric reaching a value after its event (dead marks are
/// written off the request path; a Redis outage takes a probe to notice).
const DEADLINE: Duration = Duration::from_secs(10);

async fn start(server_extra: serde_json::Value) -> (RedisServer, TestProxy) {
    let redis = RedisServer::start();
    let proxy = TestProxy::start_with_admin(&redis.url(), server_extra).await;
    (redis, proxy)
}

/// `after - before` of one series (summed over matching label sets).
fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

/// A check for [`scrape_until`]: `name{labels}` satisfies `ok`.
fn series<'a>(
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
    ok: impl Fn(f64) -> bool + 'a,
) -> impl Fn(&Scrape) -> Result<(), String> + 'a {
    move |s: &Scrape| {
        let v = s.value(name, labels);
        if ok(v) {
            Ok(())
        } else {
            Err(format!("{name}{labels:?} = {v}"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_moves_counts_durations_and_bytes() {
    let (redis, proxy) = start(json!({})).await;
    let backend = Backend::builder("app").echo_body().start().await;
    redis
        .rpush_frontend("app.test", "app", &[backend.url()])
        .await;
    let admin = proxy.admin_addr();
    let before = scrape(admin).await;

    let body = vec![b'x'; 1500];
    let resp = Req::new("POST", "app.test", "/upload")
        .body(body.clone())
        .send(proxy.addr())
        .await
        .expect("POST through the proxy");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), body.len(), "echoed");
    assert_eq!(get(proxy.addr(), "app.test", "/").await.status, 200);
    let head = Req::new("HEAD", "app.test", "/")
        .send(proxy.addr())
        .await
        .expect("HEAD through the proxy");
    assert_eq!(head.status, 200);

    let after = scrape(admin).await;
    let requests = names::REQUESTS;
    for method in ["POST", "GET", "HEAD"] {
        assert_eq!(
            delta(
                &before,
                &after,
                requests,
                &[("class", "2xx"), ("method", method)]
            ),
            1.0,
            "{requests}{{class=2xx,method={method}}}"
        );
    }
    assert_eq!(
        delta(&before, &after, requests, &[]),
        3.0,
        "nothing else counted"
    );
    assert_eq!(
        after.histogram_count(names::REQUEST_DURATION, &[("class", "2xx")])
            - before.histogram_count(names::REQUEST_DURATION, &[("class", "2xx")]),
        3.0
    );
    assert!(after.value(&format!("{}_sum", names::REQUEST_DURATION), &[]) > 0.0);
    assert_eq!(
        after.histogram_count(names::UPSTREAM_DURATION, &[])
            - before.histogram_count(names::UPSTREAM_DURATION, &[]),
        3.0
    );
    assert!(
        delta(&before, &after, names::REQUEST_BYTES, &[]) >= body.len() as f64,
        "request body bytes counted"
    );
    assert!(
        delta(&before, &after, names::RESPONSE_BYTES, &[]) >= body.len() as f64,
        "response body bytes counted"
    );
    assert_eq!(after.value(names::IN_FLIGHT, &[]), 0.0, "nothing in flight");
    assert_eq!(
        delta(
            &before,
            &after,
            names::ROUTE_LOOKUPS,
            &[("outcome", "exact")]
        ),
        3.0
    );
    assert!(
        after.histogram_count(names::REDIS_DURATION, &[])
            >= before.histogram_count(names::REDIS_DURATION, &[]) + 3.0,
        "strict mode: each request read Redis once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_rises_during_a_slow_request_and_returns_to_zero() {
    let (redis, proxy) = start(json!({})).await;
    let slow = Backend::builder("slow")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    redis
        .rpush_frontend("slow.test", "slow", &[slow.url()])
        .await;
    let addr = proxy.addr();
    let request = tokio::spawn(async move { get(addr, "slow.test", "/").await.status });
    let admin = proxy.admin_addr();
    scrape_until(
        admin,
        "one request in flight",
        DEADLINE,
        series(names::IN_FLIGHT, &[], |v| v == 1.0),
    )
    .await;
    assert_eq!(request.await.expect("request task"), 200);
    scrape_until(
        admin,
        "nothing in flight",
        DEADLINE,
        series(names::IN_FLIGHT, &[], |v| v == 0.0),
    )
    .await;
    let s = scrape(admin).await;
    assert!(
        s.value(&format!("{}_sum", names::UPSTREAM_DURATION), &[]) >= 1.5,
        "the backend's 1.5 s are in the upstream duration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_are_counted_by_class_and_kind() {
    let (redis, proxy) = start(json!({})).await;
    let failing = Backend::builder("failing").status(502).start().await;
    redis
        .rpush_frontend("fail.test", "fail", &[failing.url()])
        .await;
    let admin = proxy.admin_addr();
    let before = scrape(admin).await;

    assert_eq!(get(proxy.addr(), "fail.test", "/").await.status, 502);
    assert_eq!(get(proxy.addr(), "nowhere.test", "/").await.status, 400);
    let no_host = Req::get("x", "/").no_host().send(proxy.addr()).await;
    assert_eq!(no_host.expect("an answer").status, 400);

    let after = scrape(admin).await;
    assert_eq!(
        delta(&before, &after, names::REQUESTS, &[("class", "5xx")]),
        1.0
    );
    assert_eq!(
        delta(&before, &after, names::REQUESTS, &[("class", "4xx")]),
        2.0
    );
    assert_eq!(
        delta(&before, &after, names::UPSTREAM_ERRORS, &[("kind", "5xx")]),
        1.0,
        "a backend 5xx is an upstream error of kind 5xx"
    );
    assert_eq!(
        after.histogram_count(names::REQUEST_DURATION, &[("class", "5xx")])
            - before.histogram_count(names::REQUEST_DURATION, &[("class", "5xx")]),
        1.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            names::ROUTE_LOOKUPS,
            &[("outcome", "not_found")]
        ),
        1.0
    );
    // One backend: no dead mark for the 502 (Hipache's rule).
    assert_eq!(delta(&before, &after, names::DEAD_MARKS, &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_counts_error_retry_dead_mark_then_skips() {
    let (redis, proxy) = start(json!({"deadBackendTTL": 30})).await;
    let live = Backend::start("live").await;
    redis
        .rpush_frontend("refuse.test", "refuse", &[refused_url(), live.url()])
        .await;
    let admin = proxy.admin_addr();

    // The choice is random: send until the refusing backend was tried.
    let mut tried = false;
    for _ in 0..40 {
        let resp = get(proxy.addr(), "refuse.test", "/").await;
        assert_eq!(
            resp.status,
            200,
            "retried on the live backend: {}",
            resp.served_by()
        );
        if scrape(admin)
            .await
            .value(names::UPSTREAM_ERRORS, &[("kind", "refused")])
            > 0.0
        {
            tried = true;
            break;
        }
    }
    assert!(
        tried,
        "the refusing backend was never chosen in 40 requests"
    );
    let s = scrape_until(
        admin,
        "the dead mark written",
        DEADLINE,
        series(names::DEAD_MARKS, &[("result", "written")], |v| v >= 1.0),
    )
    .await;
    assert_eq!(s.value(names::UPSTREAM_ERRORS, &[("kind", "refused")]), 1.0);
    assert_eq!(
        s.value(names::RETRIES, &[]),
        1.0,
        "one retry on the live backend"
    );
    assert_eq!(redis.dead_members("refuse.test").await, ["0"]);

    let before = scrape(admin).await;
    for _ in 0..5 {
        assert_eq!(
            get(proxy.addr(), "refuse.test", "/").await.served_by(),
            "live"
        );
    }
    let after = scrape(admin).await;
    assert_eq!(
        delta(&before, &after, names::DEAD_SKIPPED, &[]),
        5.0,
        "each request skipped the dead backend"
    );
    assert_eq!(
        delta(
            &before,
            &after,
            names::UPSTREAM_ERRORS,
            &[("kind", "refused")]
        ),
        0.0,
        "the dead backend is no longer tried"
    );
    assert_eq!(delta(&before, &after, names::RETRIES, &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnel_moves_the_gauge_up_then_down() {
    let (redis, proxy) = start(json!({})).await;
    let backend = WsBackend::start().await;
    redis
        .rpush_frontend("ws.test", "ws", &[backend.url()])
        .await;
    let admin = proxy.admin_addr();
    let before = scrape(admin).await;

    let mut req = format!("ws://{}/chat", proxy.addr())
        .into_client_request()
        .expect("ws request");
    req.headers_mut()
        .insert("host", "ws.test".parse().expect("host header"));
    let (mut ws, resp) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake within the deadline")
        .expect("WebSocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    let s = scrape_until(
        admin,
        "one tunnel open",
        DEADLINE,
        series(names::TUNNELS_OPEN, &[], |v| v == 1.0),
    )
    .await;
    assert_eq!(delta(&before, &s, names::TUNNELS, &[]), 1.0);
    assert_eq!(
        delta(
            &before,
            &s,
            names::REQUESTS,
            &[("class", "1xx"), ("method", "GET")]
        ),
        1.0,
        "the 101 is counted as 1xx"
    );

    let message = "x".repeat(1000);
    ws.send(Message::text(message.clone())).await.expect("send");
    let echo = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("echo within the deadline")
        .expect("stream open")
        .expect("a frame");
    assert_eq!(echo, Message::text(message));
    ws.close(None).await.expect("close");
    drop(ws);

    let after = scrape_until(
        admin,
        "the tunnel closed",
        DEADLINE,
        series(names::TUNNELS_OPEN, &[], |v| v == 0.0),
    )
    .await;
    assert_eq!(delta(&before, &after, names::TUNNELS, &[]), 1.0);
    assert!(delta(&before, &after, names::REQUEST_BYTES, &[]) >= 1000.0);
    assert!(delta(&before, &after, names::RESPONSE_BYTES, &[]) >= 1000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_lookups_are_counted_by_outcome() {
    let (redis, proxy) = start(json!({})).await;
    let backend = Backend::start("b").await;
    redis
        .rpush_frontend("exact.test", "exact", &[backend.url()])
        .await;
    redis
        .rpush_frontend("*.wild.test", "wild", &[backend.url()])
        .await;
    let admin = proxy.admin_addr();
    let lookups =
        |s: &Scrape, outcome: &str| s.value(names::ROUTE_LOOKUPS, &[("outcome", outcome)]);

    let before = scrape(admin).await;
    assert_eq!(get(proxy.addr(), "exact.test", "/").await.status, 200);
    assert_eq!(get(proxy.addr(), "a.wild.test", "/").await.status, 200);
    assert_eq!(get(proxy.addr(), "b.c.wild.test", "/").await.status, 200);
    assert_eq!(get(proxy.addr(), "unknown.test", "/").await.status, 400);
    let s = scrape(admin).await;
    assert_eq!(lookups(&s, "exact") - lookups(&before, "exact"), 1.0);
    assert_eq!(lookups(&s, "wildcard") - lookups(&before, "wildcard"), 2.0);
    assert_eq!(
        lookups(&s, "not_found") - lookups(&before, "not_found"),
        1.0
    );
    assert_eq!(lookups(&s, "catch_all"), lookups(&before, "catch_all"));

    redis
        .rpush_frontend("*", "catch-all", &[backend.url()])
        .await;
    assert_eq!(get(proxy.addr(), "unknown.test", "/").await.status, 200);
    let after = scrape(admin).await;
    assert_eq!(lookups(&after, "catch_all") - lookups(&s, "catch_all"), 1.0);
    assert_eq!(lookups(&after, "not_found"), lookups(&s, "not_found"));
    // A ping is answered before any lookup.
    assert_eq!(get(proxy.addr(), "__ping__", "/").await.status, 200);
    let ping = scrape(admin).await;
    assert_eq!(delta(&after, &ping, names::ROUTE_LOOKUPS, &[]), 0.0);
    assert_eq!(
        delta(&after, &ping, names::REQUESTS, &[("class", "2xx")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_cache_counts_hits_misses_entries_and_invalidations() {
    let (redis, proxy) = start(json!({"routeCache": "tracking"})).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    redis
        .rpush_frontend("cached.test", "cached", &[a.url()])
        .await;
    let admin = proxy.admin_addr();
    let before = scrape(admin).await;

    for _ in 0..5 {
        assert_eq!(get(proxy.addr(), "cached.test", "/").await.served_by(), "a");
    }
    let warm = scrape(admin).await;
    assert_eq!(
        delta(&before, &warm, names::CACHE, &[("result", "miss")]),
        1.0
    );
    assert_eq!(
        delta(&before, &warm, names::CACHE, &[("result", "hit")]),
        4.0
    );
    assert_eq!(warm.value(names::CACHE_ENTRIES, &[]), 1.0);

    // A redis-cli edit: Redis pushes an invalidation, the next request reads
    // Redis again and sees the edit.
    redis
        .rpush_frontend("cached.test", "cached", &[b.url()])
        .await;
    let invalidated = scrape_until(
        admin,
        "an invalidation from Redis",
        DEADLINE,
        series(names::CACHE_INVALIDATIONS, &[], |v| {
            v > warm.value(names::CACHE_INVALIDATIONS, &[])
        }),
    )
    .await;
    assert_eq!(get(proxy.addr(), "cached.test", "/").await.served_by(), "b");
    let after = scrape(admin).await;
    assert_eq!(
        delta(&invalidated, &after, names::CACHE, &[("result", "miss")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_moves_connected_stale_hits_and_staleness() {
    let (mut redis, proxy) = start(json!({})).await;
    let backend = Backend::start("known").await;
    redis
        .rpush_frontend("known.test", "known", &[backend.url()])
        .await;
    let admin = proxy.admin_addr();
    assert_eq!(
        get(proxy.addr(), "known.test", "/").await.served_by(),
        "known"
    );
    let before = scrape(admin).await;
    assert_eq!(before.value(names::REDIS_CONNECTED, &[]), 1.0);
    assert_eq!(before.value(names::STALENESS, &[]), 0.0);

    redis.stop();
    let addr = proxy.addr();
    // Known host served from memory; the staleness gauge grows past 1 s.
    let down = hipache_tests::wait::until(
        "Redis disconnected and staleness >= 1 s",
        DEADLINE,
        || async move {
            let resp = get(addr, "known.test", "/").await;
            if resp.backend() != Some("known") {
                return Err(format!("known host not served: {}", resp.served_by()));
            }
            let s = scrape(admin).await;
            let (connected, staleness) = (
                s.value(names::REDIS_CONNECTED, &[]),
                s.value(names::STALENESS, &[]),
            );
            if connected == 0.0 && staleness >= 1.0 {
                Ok(s)
            } else {
                Err(format!("connected {connected}, staleness {staleness}"))
            }
        },
    )
    .await;
    assert!(delta(&before, &down, names::CACHE, &[("result", "stale")]) >= 1.0);
    // The read connection tracks (strict mode confirms routes on it), so
    // the client library reports the closed connection at once and the
    // first lookups may already know Redis is down (served stale, counted
    // above); a lookup that met the dead connection is a Redis error.
    let errors = delta(&before, &down, names::REDIS_ERRORS, &[]);
    let lookups_on_dead = down.histogram_count(names::REDIS_DURATION, &[])
        - before.histogram_count(names::REDIS_DURATION, &[]);
    assert!(
        errors >= 1.0 || lookups_on_dead == 0.0,
        "{lookups_on_dead} lookups met the dead connection, {errors} Redis errors"
    );
    assert_eq!(
        admin_get(admin, "/readyz").await.status,
        200,
        "known routes are cached: still ready"
    );
    // An unknown host fails fast, counted as a lookup error.
    let resp = get(proxy.addr(), "unknown.test", "/").await;
    assert_eq!(resp.status, 503);
    let s = scrape(admin).await;
    assert_eq!(
        delta(&down, &s, names::ROUTE_LOOKUPS, &[("outcome", "error")]),
        1.0
    );
    assert_eq!(delta(&down, &s, names::REQUESTS, &[("class", "5xx")]), 1.0);

    redis.restart();
    let back = scrape_until(
        admin,
        "Redis connected again",
        DEADLINE,
        series(names::REDIS_CONNECTED, &[], |v| v == 1.0),
    )
    .await;
    assert_eq!(
        back.value(names::STALENESS, &[]),
        0.0,
        "no staleness once Redis is back"
    );
}

/// An idle proxy (no request to meet the dead connection) still reports a
/// Redis outage: `hipache_redis_connected` 0. `/readyz` stays 200: the
/// outage is not the proxy's to report by leaving the Service.
async fn idle_outage_is_reported(route_cache: &str) {
    let (mut redis, proxy) = start(json!({"routeCache": route_cache})).await;
    let admin = proxy.admin_addr();
    scrape_until(
        admin,
        "Redis connected",
        DEADLINE,
        series(names::REDIS_CONNECTED, &[], |v| v == 1.0),
    )
    .await;
    redis.stop();
    scrape_until(
        admin,
        "Redis disconnected",
        DEADLINE,
        series(names::REDIS_CONNECTED, &[], |v| v == 0.0),
    )
    .await;
    let ready = admin_get(admin, "/readyz").await;
    assert_eq!(
        ready.status,
        200,
        "Redis down, still ready: {}",
        ready.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_outage_is_reported_with_tracking_cache() {
    idle_outage_is_reported("tracking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_outage_is_reported_in_strict_mode() {
    idle_outage_is_reported("strict").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_info_healthz_and_readyz() {
    let (_redis, proxy) = start(json!({})).await;
    let admin = proxy.admin_addr();
    let s = scrape(admin).await;
    assert_eq!(
        s.value(names::BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0,
        "build info carries the version"
    );
    let health = admin_get(admin, "/healthz").await;
    assert_eq!(health.status, 200);
    let ready = admin_get(admin, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(admin_get(admin, "/nothing").await.status, 404);
    // The admin listener is not the traffic listener: no request counted.
    assert_eq!(s.value(names::REQUESTS, &[]), 0.0);
}

/// A replica started during a Redis outage (an autoscaler's, a rollout's)
/// becomes ready and answers fast 503s, as the running ones do for hosts
/// they have not seen; it does not wait for Redis to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_without_redis_is_ready_and_answers_fast_503s() {
    // Nothing listens on this port: the proxy starts anyway (after its
    // bounded startup wait).
    let driver = format!("redis://{}", refused_addr());
    let proxy = hipache_tests::wait::within(
        "the proxy to start without Redis",
        Duration::from_secs(20),
        TestProxy::start_with(config_with_admin(&driver, json!({}))),
    )
    .await;
    let admin = proxy.admin_addr();
    assert_eq!(admin_get(admin, "/healthz").await.status, 200);
    let ready = admin_get(admin, "/readyz").await;
    assert_eq!(ready.status, 200, "ready without Redis: {}", ready.text());
    let s = scrape(admin).await;
    assert_eq!(s.value(names::REDIS_CONNECTED, &[]), 0.0);
    let asked = std::time::Instant::now();
    assert_eq!(get(proxy.addr(), "any.test", "/").await.status, 503);
    // Fast: a lookup does not wait for a reconnect to the dead Redis.
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "503 after {:?}",
        asked.elapsed()
    );
    let after = scrape(admin).await;
    assert_eq!(
        delta(&s, &after, names::ROUTE_LOOKUPS, &[("outcome", "error")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_are_counted_open_and_total() {
    let (redis, proxy) = start(json!({})).await;
    let backend = Backend::start("b").await;
    redis.rpush_frontend("c.test", "c", &[backend.url()]).await;
    let admin = proxy.admin_addr();
    let open = [("listener", "http")];
    let before = scrape(admin).await;
    assert_eq!(before.value(names::CONNECTIONS_OPEN, &open), 0.0);

    let mut conn = Conn::open(proxy.addr()).await.expect("connect");
    for _ in 0..3 {
        let resp = conn.send(Req::get("c.test", "/")).await.expect("request");
        assert_eq!(resp.status, 200);
    }
    let s = scrape_until(
        admin,
        "one client connection open",
        DEADLINE,
        series(names::CONNECTIONS_OPEN, &open, |v| v == 1.0),
    )
    .await;
    assert_eq!(
        delta(&before, &s, names::CONNECTIONS, &open),
        1.0,
        "three keep-alive requests on one connection"
    );
    drop(conn);
    scrape_until(
        admin,
        "the connection closed",
        DEADLINE,
        series(names::CONNECTIONS_OPEN, &open, |v| v == 0.0),
    )
    .await;
}

/// A proxy with an HTTPS listener on a self-signed certificate for
/// `tls.test`, and a client trusting that certificate.
async fn tls_proxy(
    redis: &RedisServer,
) -> (TestProxy, tempfile::TempDir, Arc<rustls::ClientConfig>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let key = rcgen::generate_simple_self_signed(vec!["tls.test".to_owned()]).expect("certificate");
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, key.cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.signing_key.serialize_pem()).expect("write key");
    let mut config = config_with_admin(&redis.url(), json!({}));
    config["https"] = json!({
        "bind": ["127.0.0.1"], "port": 0,
        "cert": cert_path.display().to_string(), "key": key_path.display().to_string(),
    });
    let proxy = TestProxy::start_with(config).await;
    (proxy, dir, hipache_tests::https::trusting(key.cert.der()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_and_failures_are_counted() {
    let redis = RedisServer::start();
    let backend = Backend::start("b").await;
    redis
        .rpush_frontend("tls.test", "tls", &[backend.url()])
        .await;
    let (proxy, _dir, client) = tls_proxy(&redis).await;
    let admin = proxy.admin_addr();
    let https = proxy.https_addr();
    let before = scrape(admin).await;

    // One good handshake and a request over it.
    let answer = hipache_tests::client::https_get(https, client, "tls.test").await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "HTTPS request answered: {answer:?}"
    );
    // One failed handshake: plain HTTP on the HTTPS port.
    hipache_tests::client::plain_http_to_tls_port(https).await;

    let after = scrape_until(
        admin,
        "one TLS handshake failure",
        DEADLINE,
        series(names::TLS_HANDSHAKE_FAILURES, &[], |v| v >= 1.0),
    )
    .await;
    assert_eq!(delta(&before, &after, names::TLS_HANDSHAKES, &[]), 1.0);
    assert_eq!(
        delta(&before, &after, names::TLS_HANDSHAKE_FAILURES, &[]),
        1.0
    );
    assert!(
        delta(
            &before,
            &after,
            names::CONNECTIONS,
            &[("listener", "https")]
        ) >= 1.0
    );
}
