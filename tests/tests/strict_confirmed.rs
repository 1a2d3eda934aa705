//! Strict mode's promise kept by confirmation (`docs/configuration.md`,
//! "routeCache"): a cached route is served only after a `PING` on the
//! tracking connection, sent after the request arrived, was answered, so
//! every write acknowledged before the request is seen by it. Checked
//! under load (many requests sharing one `PING`), with Redis counting the
//! commands it ran, and with a Redis user that may not track (every lookup
//! reads, as before).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hipache_tests::backend::Backend;
use hipache_tests::client::{get, Conn, Req};
use hipache_tests::proxy::TestProxy;
use hipache_tests::redis::RedisServer;
use hipache_tests::wait::within;
use serde_json::json;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls of `command` Redis has run (`INFO commandstats`).
async fn calls(redis: &RedisServer, command: &str) -> u64 {
    let info: String = redis.query(&["INFO", "commandstats"]).await;
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Background clients on `host` until `stop`: the route stays cached and
/// confirmed, and the writes below race with their `PING`s.
fn load(
    addr: std::net::SocketAddr,
    host: &'static str,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..4)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut conn = Conn::open(addr).await.expect("a connection to the proxy");
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let resp = conn
                        .send(Req::get(host, "/").timeout(REQUEST_TIMEOUT))
                        .await
                        .expect("a request under load");
                    assert_eq!(resp.status, 200, "{}", resp.served_by());
                    n += 1;
                }
                n
            })
        })
        .collect()
}

/// `trials` writes pointing `host`'s backend at `backends` in turn (`b`
/// first), each followed at once by a request on one keep-alive
/// connection: every such request is served by the backend just written.
async fn writes_seen_at_once(
    redis: &RedisServer,
    addr: std::net::SocketAddr,
    host: &str,
    [a, b]: [&Backend; 2],
    trials: usize,
) {
    let mut conn = Conn::open(addr).await.expect("a connection");
    for i in 0..trials {
        let next = if i % 2 == 0 { b } else { a };
        let _: () = redis
            .query(&["LSET", &format!("frontend:{host}"), "1", &next.url()])
            .await;
        let resp = conn
            .send(Req::get(host, "/").timeout(REQUEST_TIMEOUT))
            .await
            .expect("the request after the write");
        assert_eq!(
            resp.backend(),
            Some(next.name()),
            "trial {i}: the first request after LSET was served by {}",
            resp.served_by()
        );
    }
}

/// Under load on the same host, 200 writes in a row, each followed at once
/// by a request on a keep-alive connection: every first request after a
/// write's acknowledgement is served by the backend it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_seen_by_the_next_request_under_load() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&redis.url(), json!({})).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let host = "confirmed.test";
    redis.rpush_frontend(host, "confirmed", &[a.url()]).await;
    assert_eq!(get(proxy.addr(), host, "/").await.served_by(), "a");

    let stop = Arc::new(AtomicBool::new(false));
    let loaders = load(proxy.addr(), host, stop.clone());
    let lrange_before = calls(&redis, "lrange").await;
    let trials = 200;
    writes_seen_at_once(&redis, proxy.addr(), host, [&a, &b], trials).await;
    stop.store(true, Ordering::Relaxed);
    let mut loaded = 0;
    for l in loaders {
        loaded += within("a load client", REQUEST_TIMEOUT * 2, l)
            .await
            .expect("a load client");
    }
    let reads = calls(&redis, "lrange").await - lrange_before;
    let pings = calls(&redis, "ping").await;
    let requests = loaded + trials;
    eprintln!(
        "{requests} requests ({loaded} of them load) during {trials} writes: {reads} LRANGE, {pings} PING in all"
    );
    // Each write makes the next lookup read (3 candidates); the load's
    // lookups are confirmed by PINGs, several to one.
    assert!(
        reads < (requests as u64) * 3,
        "{reads} LRANGE for {requests} requests: confirmed routes are not read again"
    );
}

/// With nothing written, requests are confirmed rather than read: Redis
/// runs about one PING per batch of requests instead of seven commands per
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_routes_cost_a_ping_per_batch_not_a_read_per_request() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&redis.url(), json!({})).await;
    let a = Backend::start("a").await;
    let host = "quiet.test";
    redis.rpush_frontend(host, "quiet", &[a.url()]).await;
    assert_eq!(get(proxy.addr(), host, "/").await.served_by(), "a");
    let (lrange_before, ping_before) = (calls(&redis, "lrange").await, calls(&redis, "ping").await);
    let stop = Arc::new(AtomicBool::new(false));
    let loaders = load(proxy.addr(), host, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut requests = 0;
    for l in loaders {
        requests += within("a load client", REQUEST_TIMEOUT * 2, l)
            .await
            .expect("a load client");
    }
    let reads = calls(&redis, "lrange").await - lrange_before;
    let pings = calls(&redis, "ping").await - ping_before;
    eprintln!("{requests} requests: {reads} LRANGE, {pings} PING");
    assert!(requests > 100, "the load ran: {requests} requests");
    // Reads only when the confirmed route's age limit (a second) passes:
    // at most one per load client each time (they may all find it old at
    // once), three candidates each, over 1.5 s.
    assert!(reads <= 3 * 4 * 3, "{reads} LRANGE for {requests} requests");
    assert!(
        pings <= requests as u64,
        "{pings} PING for {requests} requests: never more than one each"
    );
}

/// A Redis user that may not track (no `CLIENT TRACKING`): strict mode
/// reads Redis for every request, as before, and still sees every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracking_every_lookup_reads() {
    let redis = RedisServer::start();
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let host = "untracked.test";
    redis.rpush_frontend(host, "untracked", &[a.url()]).await;
    let _: () = redis
        .query(&[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">pw",
            "~*",
            "&*",
            "+@all",
            "-client|tracking",
        ])
        .await;
    let url = format!("redis://reader:pw@127.0.0.1:{}", redis.port());
    let proxy = TestProxy::start(&url, json!({})).await;
    assert_eq!(get(proxy.addr(), host, "/").await.served_by(), "a");
    let before = calls(&redis, "lrange").await;
    writes_seen_at_once(&redis, proxy.addr(), host, [&a, &b], 20).await;
    let reads = calls(&redis, "lrange").await - before;
    assert!(reads >= 20, "{reads} LRANGE for 20 requests: each one read");
}
