//! Error answers: malformed requests, broken backend responses, upstream
//! timeouts and error pages (custom and built-in).

use std::time::{Duration, Instant};

use hipache_tests::backend::{Backend, RawBackend};
use hipache_tests::client::{get, raw, raw_status, Req};
use hipache_tests::setup;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_line_is_400_and_proxy_keeps_serving() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("after").await;
    redis
        .rpush_frontend("after.test", "after", &[backend.url()])
        .await;

    let answer = raw(proxy.addr(), b"GARBAGE\r\n\r\n").await;
    assert_eq!(
        raw_status(&answer),
        Some(400),
        "malformed request line: {answer:?}"
    );

    let answer = raw(
        proxy.addr(),
        b"GET / HTTP/1.1\r\nHost: after.test\r\nBad Header Without Colon\r\n\r\n",
    )
    .await;
    assert_eq!(
        raw_status(&answer),
        Some(400),
        "malformed header line: {answer:?}"
    );

    let resp = get(proxy.addr(), "after.test", "/").await;
    assert_eq!(
        resp.status, 200,
        "the proxy must keep serving after malformed requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_body_shorter_than_content_length_is_an_error_not_a_hang() {
    let (redis, proxy) = setup(json!({"tcpTimeout": 5})).await;
    let short = RawBackend::short_body().await;
    let fine = Backend::start("fine").await;
    redis
        .rpush_frontend("short.test", "short", &[short.url()])
        .await;
    redis
        .rpush_frontend("fine.test", "fine", &[fine.url()])
        .await;

    let started = Instant::now();
    let result = Req::get("short.test", "/")
        .timeout(Duration::from_secs(15))
        .send(proxy.addr())
        .await;
    match result {
        Err(e) => assert!(
            !format!("{e:#}").contains("no complete response within"),
            "the client hung instead of seeing the truncation: {e:#}"
        ),
        Ok(resp) => assert!(
            resp.status.is_server_error(),
            "a truncated backend body must not look like a complete 200 of {} bytes: {:?}",
            resp.body.len(),
            resp.text()
        ),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "truncation took {:?} to surface",
        started.elapsed()
    );
    assert!(
        short.connections_accepted() >= 1,
        "the raw backend was never reached"
    );

    let resp = get(proxy.addr(), "fine.test", "/").await;
    assert_eq!(
        resp.status, 200,
        "the proxy must keep serving after a truncated response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_body_longer_than_content_length_is_cut() {
    let (redis, proxy) = setup(json!({})).await;
    let long = RawBackend::long_body().await;
    redis
        .rpush_frontend("long.test", "long", &[long.url()])
        .await;

    let resp = get(proxy.addr(), "long.test", "/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.text(),
        "hello",
        "exactly Content-Length bytes must reach the client"
    );
    assert_eq!(resp.header("content-length"), Some("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_gives_504() {
    let (redis, proxy) = setup(json!({"tcpTimeout": 1})).await;
    let slow = Backend::builder("slow")
        .delay(Duration::from_secs(3))
        .start()
        .await;
    redis
        .rpush_frontend("slow.test", "slow", &[slow.url()])
        .await;

    let started = Instant::now();
    let resp = Req::get("slow.test", "/")
        .timeout(Duration::from_secs(10))
        .send(proxy.addr())
        .await
        .expect("a 504 answer, not a closed socket");
    assert_eq!(resp.status, 504, "upstream response timeout");
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "the 504 came after {:?}: the 1 s tcpTimeout was not applied",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_error_pages_from_static_dir() {
    let dir = tempfile::tempdir().expect("temporary static dir");
    std::fs::write(dir.path().join("error_502.html"), "custom 502").expect("write error_502.html");
    std::fs::write(dir.path().join("error_default.html"), "default page")
        .expect("write error_default.html");
    let static_dir = dir.path().to_str().expect("utf-8 temp path");
    let (redis, proxy) = setup(json!({"staticDir": static_dir})).await;
    redis
        .rpush_frontend::<&str>("blocked.test", "blocked", &[])
        .await;

    let resp = get(proxy.addr(), "blocked.test", "/").await;
    assert_eq!(resp.status, 502);
    assert_eq!(
        resp.text(),
        "custom 502",
        "error_502.html must be served for a 502"
    );
    assert_eq!(resp.header("cache-control"), Some("no-cache"));

    let resp = get(proxy.addr(), "unknown.test", "/").await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.text(),
        "default page",
        "error_default.html must be served when no error_400.html"
    );
    assert_eq!(resp.header("cache-control"), Some("no-cache"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_error_pages_without_static_dir() {
    let (redis, proxy) = setup(json!({})).await;
    redis
        .rpush_frontend::<&str>("blocked.test", "blocked", &[])
        .await;

    for (host, status) in [("blocked.test", 502), ("unknown.test", 400)] {
        let resp = get(proxy.addr(), host, "/").await;
        assert_eq!(resp.status, status);
        assert!(
            resp.header("content-type")
                .is_some_and(|v| v.starts_with("text/html")),
            "{status}: built-in page content-type {:?}",
            resp.header("content-type")
        );
        assert!(
            resp.text().contains("<html") || resp.text().contains("<!DOCTYPE"),
            "{status}: not HTML: {:?}",
            resp.text()
        );
        assert!(
            resp.text().contains(&status.to_string()),
            "{status}: the page should name its status"
        );
        assert_eq!(resp.header("cache-control"), Some("no-cache"));
    }
}
