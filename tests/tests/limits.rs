//! Request limits: body size (413) and header size (431).

use hipache_tests::backend::Backend;
use hipache_tests::client::{get, Req};
use hipache_tests::setup;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_body_size_is_413() {
    let (redis, proxy) = setup(json!({"maxBodySize": 1000})).await;
    let backend = Backend::start("limited").await;
    redis
        .rpush_frontend("limited.test", "limited", &[backend.url()])
        .await;

    let resp = Req::new("POST", "limited.test", "/")
        .body(vec![b'x'; 2000])
        .send(proxy.addr())
        .await
        .expect("a 413 answer");
    assert_eq!(
        resp.status, 413,
        "a declared Content-Length over maxBodySize"
    );
    assert_eq!(
        backend.request_count(),
        0,
        "an oversized body must not reach the backend"
    );

    let resp = Req::new("POST", "limited.test", "/")
        .body(vec![b'x'; 500])
        .send(proxy.addr())
        .await
        .expect("a small POST");
    assert_eq!(resp.status, 200, "a body under maxBodySize passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_header_is_431() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("hdr").await;
    redis
        .rpush_frontend("hdr.test", "hdr", &[backend.url()])
        .await;

    let big = "a".repeat(100 * 1024);
    let result = Req::get("hdr.test", "/")
        .header("x-big", &big)
        .send(proxy.addr())
        .await;
    match result {
        Ok(resp) => assert_eq!(resp.status, 431, "a 100 KB header"),
        Err(e) => panic!("a 100 KB header must get a 431 answer, not a dropped connection: {e:#}"),
    }
    assert_eq!(backend.request_count(), 0);
    assert_eq!(
        get(proxy.addr(), "hdr.test", "/").await.status,
        200,
        "the proxy keeps serving"
    );
}
