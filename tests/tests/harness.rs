//! Self-tests of the harness, without the proxy: if these fail, the other
//! end-to-end failures say nothing about the proxy.

use std::time::Duration;

use hipache_tests::backend::{Backend, RawBackend};
use hipache_tests::body::{checksum, GeneratedBody};
use hipache_tests::client::{raw, raw_status, Conn, Req};
use hipache_tests::redis::RedisServer;
use hipache_tests::refused_addr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_server_starts_stops_and_restarts() {
    let mut redis = RedisServer::start();
    redis
        .rpush_frontend("h.test", "id", &["http://127.0.0.1:1"])
        .await;
    let list: Vec<String> = redis.query(&["LRANGE", "frontend:h.test", "0", "-1"]).await;
    assert_eq!(list, ["id", "http://127.0.0.1:1"]);

    let mut sub = redis.subscribe("dead").await;
    let _: i64 = redis.query(&["PUBLISH", "dead", "a;b;0;2"]).await;
    assert_eq!(
        sub.next_within(Duration::from_secs(5)).await.as_deref(),
        Some("a;b;0;2")
    );

    redis.stop();
    assert!(
        redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .is_err(),
        "a stopped redis-server must refuse connections"
    );
    redis.restart();
    let pong: String = redis.query(&["PING"]).await;
    assert_eq!(pong, "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answers_and_records() {
    let backend = Backend::builder("b")
        .status(503)
        .header("retry-after", "7")
        .start()
        .await;
    let resp = Req::new("POST", "whatever", "/p?q")
        .header("x-one", "1")
        .body("hello")
        .send(backend.addr())
        .await
        .expect("direct request to the backend");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.text(), "b");
    assert_eq!(resp.served_by(), "b");
    assert_eq!(resp.header("retry-after"), Some("7"));
    let seen = backend.last_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/p?q");
    assert_eq!(seen.header("x-one"), Some("1"));
    assert_eq!(seen.header("host"), Some("whatever"));
    assert_eq!(seen.body.as_deref(), Some(&b"hello"[..]));
    assert_eq!(seen.body_checksum, checksum(b"hello"));
    assert!(seen.complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_backend_streams_the_body_back() {
    let backend = Backend::builder("echo").echo_body().start().await;
    let body = GeneratedBody::new(3 * 1024 * 1024 + 5, 9).chunked();
    let sent = body.sent();
    let resp = Req::new("PUT", "e", "/")
        .stream(body)
        .send_digest(backend.addr())
        .await
        .expect("echo");
    assert_eq!(resp.status, 200);
    let sent = sent.lock().expect("lock").clone();
    assert_eq!(resp.body.len(), sent.len());
    assert_eq!(resp.body.value(), sent.value());
    let seen = backend.last_request();
    assert!(seen.complete);
    assert_eq!(seen.body_checksum, sent.value());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_and_counters() {
    let backend = Backend::builder("slow")
        .delay(Duration::from_millis(50))
        .start()
        .await;
    let mut conn = Conn::open(backend.addr()).await.expect("connect");
    for _ in 0..3 {
        assert_eq!(
            conn.send(Req::get("x", "/")).await.expect("request").status,
            200
        );
    }
    assert_eq!(backend.connections_accepted(), 1);
    assert_eq!(backend.max_open_connections(), 1);
    assert_eq!(backend.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_backends_and_raw_client() {
    let short = RawBackend::short_body().await;
    let err = Req::get("x", "/").send(short.addr()).await;
    assert!(
        err.is_err(),
        "a body shorter than Content-Length is an error: {err:?}"
    );

    let long = RawBackend::long_body().await;
    let resp = Req::get("x", "/")
        .send(long.addr())
        .await
        .expect("long body");
    assert_eq!(resp.text(), "hello");

    let answer = raw(long.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw_status(&answer), Some(200), "{answer:?}");

    assert!(Req::get("x", "/").send(refused_addr()).await.is_err());
}
