//! A 200 MB upload streamed through the proxy with flat memory. Alone in
//! its test binary, so that no other test's allocations blur the memory
//! measurement (the proxy runs in this process: its buffering counts).

use std::time::Duration;

use hipache_tests::backend::Backend;
use hipache_tests::body::GeneratedBody;
use hipache_tests::client::Req;
use hipache_tests::{peak_rss_bytes, rss_bytes, setup};
use serde_json::json;

const UPLOAD: u64 = 200 * 1024 * 1024;
/// Allowed growth of the process's peak memory: a small fraction of the upload.
const MAX_GROWTH: u64 = 50 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_streams_with_flat_memory() {
    let (redis, proxy) = setup(json!({})).await;
    let sink = Backend::start("sink").await;
    redis
        .rpush_frontend("upload.test", "upload", &[sink.url()])
        .await;

    // Warm up connections, pools and buffers before measuring.
    let warm = Req::new("POST", "upload.test", "/warm")
        .stream(GeneratedBody::new(1024 * 1024, 1))
        .send(proxy.addr())
        .await
        .expect("warm-up upload");
    assert_eq!(warm.status, 200);

    let before = rss_bytes();
    let body = GeneratedBody::new(UPLOAD, 42);
    let sent = body.sent();
    let resp = Req::new("POST", "upload.test", "/big")
        .stream(body)
        .timeout(Duration::from_secs(240))
        .send(proxy.addr())
        .await
        .expect("a 200 MB upload through the proxy");
    let after = rss_bytes();
    let peak = peak_rss_bytes();

    assert_eq!(resp.status, 200);
    let sent = sent.lock().expect("checksum lock").clone();
    assert_eq!(sent.len(), UPLOAD, "the generator produced the whole body");
    let seen = sink.last_request();
    assert!(
        seen.complete,
        "the backend got an incomplete body: {:?}",
        seen.body_error
    );
    assert_eq!(seen.body_len, UPLOAD, "bytes at the backend");
    assert_eq!(
        seen.body_checksum,
        sent.value(),
        "the body was altered on the way"
    );

    let growth = peak.saturating_sub(before);
    assert!(
        growth < MAX_GROWTH,
        "memory grew by {} MiB during a 200 MiB upload (RSS before {} MiB, after {} MiB, peak {} MiB): \
         the body is being buffered",
        growth >> 20,
        before >> 20,
        after >> 20,
        peak >> 20
    );
}
