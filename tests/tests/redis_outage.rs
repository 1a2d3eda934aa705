//! Route caching modes and Redis outages: what clients see when Redis
//! stops, restarts empty, or comes back.

use std::time::{Duration, Instant};

use hipache_tests::backend::Backend;
use hipache_tests::client::{get, Req};
use hipache_tests::redis::RedisServer;
use hipache_tests::{proxy::TestProxy, setup};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_survive_a_redis_outage_and_unknown_hosts_fail_fast() {
    let (mut redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("known").await;
    redis
        .rpush_frontend("known.test", "known", &[backend.url()])
        .await;
    assert_eq!(
        get(proxy.addr(), "known.test", "/").await.backend(),
        Some("known")
    );

    redis.stop();
    for _ in 0..20 {
        let resp = get(proxy.addr(), "known.test", "/").await;
        assert_eq!(
            resp.backend(),
            Some("known"),
            "known host served from memory: {}",
            resp.served_by()
        );
    }
    for _ in 0..5 {
        let started = Instant::now();
        let resp = Req::get("unknown.test", "/")
            .timeout(Duration::from_secs(2))
            .send(proxy.addr())
            .await;
        let resp = resp.expect("an answer, not a hang");
        assert_eq!(
            resp.status,
            503,
            "unknown host while Redis is down: {}",
            resp.served_by()
        );
        assert!(resp.text().contains("503"), "the 503 error page is served");
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "unknown host answered in {:?}",
            started.elapsed()
        );
    }

    // Redis comes back (empty: it was restarted without persistence).
    redis.restart();
    let other = Backend::start("after").await;
    redis
        .rpush_frontend("known.test", "known", &[other.url()])
        .await;
    eventually(
        "the edit made after Redis returned applies",
        Duration::from_secs(10),
        || async { get(proxy.addr(), "known.test", "/").await.backend() == Some("after") },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_leaves_no_stale_route() {
    let (mut redis, proxy) = setup(json!({"routeCache": "tracking"})).await;
    let backend = Backend::start("old").await;
    redis
        .rpush_frontend("gone.test", "gone", &[backend.url()])
        .await;
    assert_eq!(
        get(proxy.addr(), "gone.test", "/").await.backend(),
        Some("old")
    );
    redis.stop();
    redis.restart();
    eventually(
        "the route vanished with Redis's data",
        Duration::from_secs(10),
        || async { get(proxy.addr(), "gone.test", "/").await.status == 400 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_cache_sees_writes_within_milliseconds() {
    let (redis, proxy) = setup(json!({"routeCache": "tracking"})).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    redis
        .rpush_frontend("fresh.test", "fresh", &[a.url()])
        .await;
    // Warm the cache: these are served from memory after the first.
    assert_eq!(
        get(proxy.addr(), "fresh.test", "/").await.backend(),
        Some("a")
    );
    let reads_before = lrange_calls(&redis).await;
    for _ in 0..10 {
        assert_eq!(
            get(proxy.addr(), "fresh.test", "/").await.backend(),
            Some("a")
        );
    }
    assert_eq!(
        lrange_calls(&redis).await,
        reads_before,
        "cached requests do not read Redis"
    );
    for round in 0..20 {
        let (to, name) = if round % 2 == 0 { (&b, "b") } else { (&a, "a") };
        let _: () = redis
            .query(&["LSET", "frontend:fresh.test", "1", &to.url()])
            .await;
        let written = Instant::now();
        eventually("the write is seen", Duration::from_secs(2), || async {
            get(proxy.addr(), "fresh.test", "/").await.backend() == Some(name)
        })
        .await;
        assert!(
            written.elapsed() < Duration::from_millis(200),
            "write seen after {:?}",
            written.elapsed()
        );
    }
    // Wildcards and dead sets invalidate too.
    let w = Backend::start("w").await;
    redis
        .rpush_frontend("*.wild.test", "wild", &[w.url()])
        .await;
    assert_eq!(
        get(proxy.addr(), "x.wild.test", "/").await.backend(),
        Some("w")
    );
    let w2 = Backend::start("w2").await;
    redis
        .rpush_frontend("*.wild.test", "wild", &[w.url(), w2.url()])
        .await;
    let _: i64 = redis.query(&["SADD", "dead:*.wild.test", "0"]).await;
    for _ in 0..10 {
        assert_eq!(
            get(proxy.addr(), "x.wild.test", "/").await.backend(),
            Some("w2")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_reads_every_request() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&redis.url(), json!({"routeCache": "strict"})).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    redis.rpush_frontend("strict.test", "s", &[a.url()]).await;
    for round in 0..20 {
        let (to, name) = if round % 2 == 0 { (&b, "b") } else { (&a, "a") };
        let _: () = redis
            .query(&["LSET", "frontend:strict.test", "1", &to.url()])
            .await;
        assert_eq!(
            get(proxy.addr(), "strict.test", "/").await.backend(),
            Some(name),
            "the very next request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hipache_lru_cache_keeps_its_ttl_meaning() {
    let (redis, proxy) = setup(json!({"lruCache": {"size": 100, "ttl": 1}})).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    redis.rpush_frontend("ttl.test", "t", &[a.url()]).await;
    assert_eq!(
        get(proxy.addr(), "ttl.test", "/").await.backend(),
        Some("a")
    );
    let _: () = redis
        .query(&["LSET", "frontend:ttl.test", "1", &b.url()])
        .await;
    assert_eq!(
        get(proxy.addr(), "ttl.test", "/").await.backend(),
        Some("a"),
        "cached for ttl seconds"
    );
    eventually("the TTL expires", Duration::from_secs(5), || async {
        get(proxy.addr(), "ttl.test", "/").await.backend() == Some("b")
    })
    .await;
}

/// Polls `check` until it holds, failing the test after `deadline`.
async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    hipache_tests::wait::until(what, deadline, || {
        let fut = check();
        async move {
            if fut.await {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        }
    })
    .await
}

/// How many LRANGE commands Redis has run.
async fn lrange_calls(redis: &RedisServer) -> u64 {
    let info: String = redis.query(&["INFO", "commandstats"]).await;
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_lrange:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Hipache's `redisMasterHost`: reads from a replica, dead marks to the
/// primary. With the primary down, routing goes on and the marks are
/// dropped (counted, logged), never blocking a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_the_write_primary_being_down() {
    let replica = RedisServer::start();
    let mut primary = RedisServer::start();
    let good = Backend::start("good").await;
    replica
        .rpush_frontend(
            "split.test",
            "split",
            &[hipache_tests::refused_url(), good.url()],
        )
        .await;
    let config = json!({
        "http": {"port": 0, "bind": ["127.0.0.1"]},
        "driver": [replica.url(), primary.url()],
        "server": {"adminAddress": "127.0.0.1:0", "accessLog": null},
    });
    let proxy = TestProxy::start_with(config).await;
    primary.stop();
    for _ in 0..20 {
        let started = Instant::now();
        let resp = get(proxy.addr(), "split.test", "/").await;
        assert_eq!(resp.backend(), Some("good"), "{}", resp.served_by());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a dead primary never delays a request"
        );
    }
    let admin = proxy.admin_addr();
    hipache_tests::metrics::scrape_until(
        admin,
        "dead marks dropped",
        Duration::from_secs(10),
        |s| {
            let dropped = s.value("hipache_dead_marks_total", &[("result", "dropped")]);
            if dropped >= 1.0 {
                Ok(())
            } else {
                Err(format!("dropped = {dropped}"))
            }
        },
    )
    .await;
    let written: Vec<String> = replica.query(&["SMEMBERS", "dead:split.test"]).await;
    assert!(
        written.is_empty(),
        "marks never go to the read replica: {written:?}"
    );
}
