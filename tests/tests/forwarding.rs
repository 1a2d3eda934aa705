//! Forwarding: bodies on retry, forwarded headers, hop-by-hop headers,
//! debug headers, keep-alive, connection reuse and `maxSockets`.

use std::time::Duration;

use hipache_tests::backend::Backend;
use hipache_tests::body::{checksum, random_bytes};
use hipache_tests::client::{get, Conn, Req};
use hipache_tests::wait::within;
use hipache_tests::{refused_url, setup};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_survives_retries_intact() {
    let (redis, proxy) = setup(json!({"retryOnError": 10})).await;
    let live = Backend::start("live").await;
    let backends = vec![refused_url(), refused_url(), refused_url(), live.url()];
    redis
        .rpush_frontend("*.retry.test", "retry", &backends)
        .await;

    const LEN: usize = 1024 * 1024;
    for run in 0..8u64 {
        // A new request host per run: dead marks are keyed by it, so every
        // run starts with all three refusing backends eligible again.
        let host = format!("r{run}.retry.test");
        let body = random_bytes(LEN, 1000 + run);
        let expected = checksum(&body);
        let resp = Req::new("POST", &host, "/upload")
            .body(body)
            .send(proxy.addr())
            .await
            .unwrap_or_else(|e| panic!("run {run}: POST failed: {e:#}"));
        assert_eq!(
            resp.status, 200,
            "run {run}: refused connects must be retried"
        );
        let seen = live.last_request();
        assert!(
            seen.complete,
            "run {run}: the live backend got an incomplete body: {:?}",
            seen.body_error
        );
        assert_eq!(
            seen.body_len, LEN as u64,
            "run {run}: body length at the backend"
        );
        assert_eq!(
            seen.body_checksum, expected,
            "run {run}: body altered on the way"
        );
    }
    assert_eq!(
        live.request_count(),
        8,
        "each POST reached the live backend exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_overwritten_for_untrusted_peers() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("fwd").await;
    redis
        .rpush_frontend("fwd.example.com", "fwd", &[backend.url()])
        .await;

    let resp = Req::get("Fwd.Example.com:1234", "/")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-real-ip", "1.2.3.4")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-protocol", "https")
        .header("x-forwarded-port", "1")
        .send(proxy.addr())
        .await
        .expect("request through the proxy");
    assert_eq!(resp.status, 200);
    let seen = backend.last_request();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        ["127.0.0.1"],
        "a spoofed X-Forwarded-For must be replaced"
    );
    assert_eq!(seen.header_all("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.header_all("x-forwarded-protocol"), ["http"]);
    assert_eq!(
        seen.header_all("x-forwarded-port"),
        [proxy.port().to_string()],
        "X-Forwarded-Port is the proxy's listening port"
    );
    assert_eq!(
        seen.header_all("host"),
        ["Fwd.Example.com:1234"],
        "Host is passed as the client sent it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_appended_for_trusted_peers() {
    let (redis, proxy) = setup(json!({"trustedProxies": ["127.0.0.0/8"]})).await;
    let backend = Backend::start("trusted").await;
    redis
        .rpush_frontend("trusted.test", "trusted", &[backend.url()])
        .await;

    let resp = Req::get("trusted.test", "/")
        .header("x-forwarded-for", "1.2.3.4")
        .send(proxy.addr())
        .await
        .expect("request through the proxy");
    assert_eq!(resp.status, 200);
    let seen = backend.last_request();
    assert_eq!(
        seen.header_all("x-forwarded-for").join(", "),
        "1.2.3.4, 127.0.0.1",
        "a trusted peer's X-Forwarded-For is kept and the peer appended"
    );
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::builder("hop")
        .header("connection", "x-resp-hop")
        .header("x-resp-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("x-resp-kept", "yes")
        .start()
        .await;
    redis
        .rpush_frontend("hop.test", "hop", &[backend.url()])
        .await;

    let resp = Req::get("hop.test", "/")
        .header("connection", "x-custom")
        .header("x-custom", "1")
        .header("keep-alive", "5")
        .header("x-kept", "yes")
        .send(proxy.addr())
        .await
        .expect("request through the proxy");
    assert_eq!(resp.status, 200);
    let seen = backend.last_request();
    assert_eq!(
        seen.header("x-custom"),
        None,
        "a header named in Connection is hop-by-hop"
    );
    assert_eq!(seen.header("keep-alive"), None, "Keep-Alive is hop-by-hop");
    assert!(
        !seen.header_all("connection").join(",").contains("x-custom"),
        "the client's Connection header was forwarded: {:?}",
        seen.header_all("connection")
    );
    assert_eq!(
        seen.header("x-kept"),
        Some("yes"),
        "end-to-end headers are forwarded"
    );

    assert_eq!(
        resp.header("x-resp-hop"),
        None,
        "the backend's Connection-named header was relayed"
    );
    assert_eq!(
        resp.header("keep-alive"),
        None,
        "the backend's Keep-Alive header was relayed"
    );
    assert_eq!(resp.header("x-resp-kept"), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_debug_adds_debug_headers() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("dbg").await;
    redis
        .rpush_frontend("*.dbg.test", "dbg-id", &[backend.url()])
        .await;

    let resp = Req::get("a.dbg.test", "/")
        .header("x-debug", "1")
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("x-debug-backend-url"),
        Some(backend.url().as_str())
    );
    assert_eq!(
        resp.header("x-debug-backend-id"),
        Some("0"),
        "backend position (0-based)"
    );
    assert_eq!(
        resp.header("x-debug-vhost"),
        Some("dbg-id"),
        "the frontend's identifier"
    );
    let key = resp
        .header("x-debug-frontend-key")
        .expect("x-debug-frontend-key");
    assert!(
        key.ends_with("*.dbg.test"),
        "x-debug-frontend-key names the matched key: {key:?}"
    );
    for name in ["x-debug-time-total", "x-debug-time-backend"] {
        let value = resp
            .header(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            value.trim_end_matches('s').parse::<f64>().is_ok(),
            "{name} is not a number: {value:?}"
        );
    }

    let plain = get(proxy.addr(), "a.dbg.test", "/").await;
    let debug: Vec<&str> = plain
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-debug"))
        .collect();
    assert!(debug.is_empty(), "debug headers without X-Debug: {debug:?}");

    let error = Req::get("nowhere.test", "/")
        .header("x-debug", "1")
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(error.status, 400);
    assert!(
        error.header("x-debug-error").is_some_and(|v| !v.is_empty()),
        "an error answer to X-Debug carries x-debug-error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_on_one_client_connection() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("ka").await;
    redis
        .rpush_frontend("ka.test", "ka", &[backend.url()])
        .await;

    let mut conn = Conn::open(proxy.addr()).await.expect("connect");
    for i in 0..2 {
        let resp = conn
            .send(Req::get("ka.test", &format!("/{i}")))
            .await
            .unwrap_or_else(|e| panic!("request {i} on a kept-alive connection: {e:#}"));
        assert_eq!(resp.status, 200, "request {i}");
        assert_eq!(resp.text(), "ka");
    }
    assert_eq!(backend.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_are_reused() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("reuse").await;
    redis
        .rpush_frontend("reuse.test", "reuse", &[backend.url()])
        .await;

    for _ in 0..10 {
        assert_eq!(get(proxy.addr(), "reuse.test", "/").await.status, 200);
    }
    assert!(
        backend.connections_accepted() < 10,
        "10 sequential requests opened {} backend connections: no reuse",
        backend.connections_accepted()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sockets_caps_backend_connections_and_queues() {
    let (redis, proxy) = setup(json!({"maxSockets": 2})).await;
    let backend = Backend::builder("capped")
        .delay(Duration::from_millis(200))
        .start()
        .await;
    redis
        .rpush_frontend("capped.test", "capped", &[backend.url()])
        .await;

    let addr = proxy.addr();
    let requests = (0..20).map(|i| {
        tokio::spawn(async move {
            Req::get("capped.test", &format!("/{i}"))
                .timeout(Duration::from_secs(20))
                .send(addr)
                .await
        })
    });
    let results = within(
        "20 queued requests",
        Duration::from_secs(30),
        futures_util::future::join_all(requests),
    )
    .await;
    for (i, result) in results.into_iter().enumerate() {
        let resp = result
            .expect("request task")
            .unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        assert_eq!(
            resp.status, 200,
            "request {i} must wait for a socket, not fail"
        );
    }
    assert_eq!(backend.request_count(), 20);
    assert!(
        backend.max_open_connections() <= 2,
        "maxSockets=2 but the backend saw {} connections open at once",
        backend.max_open_connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sockets_wait_is_bounded_then_503() {
    let (redis, proxy) = setup(json!({"maxSockets": 1, "maxSocketsWait": 0.3})).await;
    let backend = Backend::builder("slow1")
        .delay(Duration::from_secs(2))
        .start()
        .await;
    redis
        .rpush_frontend("wait.test", "wait", &[backend.url()])
        .await;
    let addr = proxy.addr();
    let first = tokio::spawn(async move {
        Req::get("wait.test", "/first")
            .timeout(Duration::from_secs(10))
            .send(addr)
            .await
    });
    // Let the first request take the only connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let second = Req::get("wait.test", "/second")
        .timeout(Duration::from_secs(10))
        .send(addr)
        .await
        .expect("an answer");
    assert_eq!(second.status, 503, "{}", second.served_by());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered after the bounded wait, not after the backend: {:?}",
        started.elapsed()
    );
    let first = first.await.expect("task").expect("first request");
    assert_eq!(first.status, 200);
}
