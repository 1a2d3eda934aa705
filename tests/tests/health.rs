//! Passive health: dead marks in Redis (`dead:<host>` set with a TTL, and a
//! message on channel `dead`), avoiding dead backends, the 5xx rules, the
//! `hchecker_ping` hand-over and the union of request-host and frontend-key
//! dead sets.

use std::time::Duration;

use hipache_tests::backend::Backend;
use hipache_tests::client::{get, Req, Resp};
use hipache_tests::redis::RedisServer;
use hipache_tests::wait::{until, DEFAULT_DEADLINE};
use hipache_tests::{refused_url, setup};
use serde_json::json;

/// How long to listen for a message that must not come.
const QUIET_WINDOW: Duration = Duration::from_millis(500);

/// Sends GETs until one answers with `status` (bounded), and returns it.
async fn get_until_status(addr: std::net::SocketAddr, host: &str, status: u16, max: usize) -> Resp {
    for _ in 0..max {
        let resp = get(addr, host, "/").await;
        if resp.status == status {
            return resp;
        }
    }
    panic!("no {status} answer for {host} in {max} requests");
}

/// Waits until `dead:<host>` holds exactly `members`.
async fn wait_dead_members(redis: &RedisServer, host: &str, members: &[&str]) {
    until(
        &format!("dead:{host} to be {members:?}"),
        DEFAULT_DEADLINE,
        || async {
            let got = redis.dead_members(host).await;
            if got == members {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_backend_is_retried_and_marked_dead() {
    let (redis, proxy) = setup(json!({"deadBackendTTL": 30})).await;
    let mut events = redis.subscribe("dead").await;
    let live = Backend::start("live").await;
    let refused = refused_url();
    redis
        .rpush_frontend("refuse.test", "refuse", &[refused.clone(), live.url()])
        .await;

    for i in 0..20 {
        let resp = get(proxy.addr(), "refuse.test", "/").await;
        assert_eq!(
            resp.status, 200,
            "request {i}: a refused connect must be retried on the live backend"
        );
        assert_eq!(resp.served_by(), "live");
    }
    wait_dead_members(&redis, "refuse.test", &["0"]).await;
    let ttl = redis.ttl("dead:refuse.test").await;
    assert!(
        ttl > 0 && ttl <= 30,
        "dead:refuse.test must expire within deadBackendTTL=30, TTL is {ttl}"
    );

    let message = events
        .next_within(DEFAULT_DEADLINE)
        .await
        .expect("a message on channel `dead` for the refused backend");
    assert_eq!(
        message,
        format!("refuse.test;{refused};0;2"),
        "dead event format: <host>;<url>;<position>;<count>"
    );

    // Late duplicates of marks raced by earlier requests may still arrive;
    // once quiet, no request may try the dead backend again.
    events.drain_for(QUIET_WINDOW).await;
    for _ in 0..20 {
        assert_eq!(get(proxy.addr(), "refuse.test", "/").await.status, 200);
    }
    let late = events.drain_for(QUIET_WINDOW).await;
    assert!(
        late.is_empty(),
        "a backend marked dead was tried again: {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answering_502_is_marked_then_avoided() {
    let (redis, proxy) = setup(json!({})).await;
    let mut events = redis.subscribe("dead").await;
    let bad = Backend::builder("bad").status(502).start().await;
    let good = Backend::start("good").await;
    redis
        .rpush_frontend("five02.test", "five02", &[bad.url(), good.url()])
        .await;

    let resp = get_until_status(proxy.addr(), "five02.test", 502, 60).await;
    assert_eq!(
        resp.served_by(),
        "bad",
        "the backend's own 502 must reach the client"
    );

    wait_dead_members(&redis, "five02.test", &["0"]).await;
    let message = events
        .next_within(DEFAULT_DEADLINE)
        .await
        .expect("a dead event");
    assert_eq!(message, format!("five02.test;{};0;2", bad.url()));

    let before = bad.request_count();
    for i in 0..30 {
        let resp = get(proxy.addr(), "five02.test", "/").await;
        assert_eq!(resp.status, 200, "request {i} after the mark");
        assert_eq!(resp.served_by(), "good");
    }
    assert_eq!(
        bad.request_count(),
        before,
        "the dead backend got requests after its mark"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answering_503_without_retry_after_is_marked() {
    let (redis, proxy) = setup(json!({})).await;
    let bad = Backend::builder("bad").status(503).start().await;
    let good = Backend::start("good").await;
    redis
        .rpush_frontend("five03.test", "five03", &[bad.url(), good.url()])
        .await;

    get_until_status(proxy.addr(), "five03.test", 503, 60).await;
    wait_dead_members(&redis, "five03.test", &["0"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answering_503_with_retry_after_is_not_marked() {
    let (redis, proxy) = setup(json!({})).await;
    let mut events = redis.subscribe("dead").await;
    let maintenance = Backend::builder("maintenance")
        .status(503)
        .header("retry-after", "120")
        .start()
        .await;
    let good = Backend::start("good").await;
    redis
        .rpush_frontend(
            "retryafter.test",
            "retryafter",
            &[maintenance.url(), good.url()],
        )
        .await;

    let mut seen_503 = 0;
    for _ in 0..40 {
        let resp = get(proxy.addr(), "retryafter.test", "/").await;
        if resp.status == 503 {
            assert_eq!(
                resp.header("retry-after"),
                Some("120"),
                "Retry-After must reach the client"
            );
            seen_503 += 1;
        }
    }
    assert!(
        maintenance.request_count() >= 5 && seen_503 == maintenance.request_count(),
        "a 503 with Retry-After is maintenance, not death: the backend must keep getting its share \
         (got {} of 40, {seen_503} answered 503)",
        maintenance.request_count()
    );
    let events = events.drain_for(QUIET_WINDOW).await;
    assert!(events.is_empty(), "no dead event expected, got {events:?}");
    assert!(redis.dead_members("retryafter.test").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answering_500_is_marked_by_default() {
    let (redis, proxy) = setup(json!({})).await;
    let bad = Backend::builder("bad").status(500).start().await;
    let good = Backend::start("good").await;
    redis
        .rpush_frontend("five00.test", "five00", &[bad.url(), good.url()])
        .await;

    let resp = get_until_status(proxy.addr(), "five00.test", 500, 60).await;
    assert_eq!(resp.served_by(), "bad");
    wait_dead_members(&redis, "five00.test", &["0"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answering_500_is_not_marked_when_dead_backend_on_500_is_false() {
    let (redis, proxy) = setup(json!({"deadBackendOn500": false})).await;
    let mut events = redis.subscribe("dead").await;
    let bad = Backend::builder("bad").status(500).start().await;
    let good = Backend::start("good").await;
    redis
        .rpush_frontend("no500.test", "no500", &[bad.url(), good.url()])
        .await;

    for _ in 0..40 {
        let resp = get(proxy.addr(), "no500.test", "/").await;
        assert!(
            resp.status == 200 || resp.status == 500,
            "unexpected status {}",
            resp.status
        );
    }
    assert!(
        bad.request_count() >= 5,
        "with deadBackendOn500=false a 500 must not mark: the backend got only {} of 40",
        bad.request_count()
    );
    let events = events.drain_for(QUIET_WINDOW).await;
    assert!(events.is_empty(), "no dead event expected, got {events:?}");
    assert!(redis.dead_members("no500.test").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_backend_frontend_is_never_marked() {
    let (redis, proxy) = setup(json!({})).await;
    let mut events = redis.subscribe("dead").await;
    let bad = Backend::builder("bad").status(502).start().await;
    redis
        .rpush_frontend("alone.test", "alone", &[bad.url()])
        .await;
    redis
        .rpush_frontend("alone-refused.test", "alone", &[refused_url()])
        .await;

    for i in 0..5 {
        assert_eq!(get(proxy.addr(), "alone.test", "/").await.status, 502);
        assert_eq!(
            get(proxy.addr(), "alone-refused.test", "/").await.status,
            502,
            "request {i}: a refused connection is a 502"
        );
    }
    assert_eq!(bad.request_count(), 5, "a lone backend keeps being tried");
    let events = events.drain_for(QUIET_WINDOW).await;
    assert!(
        events.is_empty(),
        "a lone backend must never be marked, got {events:?}"
    );
    let exists: i64 = redis
        .query(&["EXISTS", "dead:alone.test", "dead:alone-refused.test"])
        .await;
    assert_eq!(exists, 0, "no dead: key for single-backend frontends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_hchecker_ping_leaves_dead_sets_to_the_checker() {
    let (redis, proxy) = setup(json!({})).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let _: () = redis
        .query(&["SET", "hchecker_ping", &now.to_string()])
        .await;
    let mut events = redis.subscribe("dead").await;
    let bad = Backend::builder("bad").status(502).start().await;
    let good = Backend::start("good").await;
    redis
        .rpush_frontend("checked.test", "checked", &[bad.url(), good.url()])
        .await;

    get_until_status(proxy.addr(), "checked.test", 502, 60).await;
    let message = events
        .next_within(DEFAULT_DEADLINE)
        .await
        .expect("the dead event is still published while a checker runs");
    assert_eq!(message, format!("checked.test;{};0;2", bad.url()));
    let exists: i64 = redis.query(&["EXISTS", "dead:checked.test"]).await;
    assert_eq!(
        exists, 0,
        "with a fresh hchecker_ping the proxy must not write dead: sets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_set_is_union_of_request_host_and_frontend_key() {
    let (redis, proxy) = setup(json!({})).await;
    let zero = Backend::start("zero").await;
    let one = Backend::start("one").await;
    redis
        .rpush_frontend("*.union.test", "union", &[zero.url(), one.url()])
        .await;

    let _: i64 = redis.query(&["SADD", "dead:*.union.test", "0"]).await;
    for _ in 0..20 {
        assert_eq!(
            get(proxy.addr(), "a.union.test", "/").await.served_by(),
            "one",
            "dead:*.union.test (frontend key) holds 0"
        );
    }
    let _: i64 = redis.query(&["DEL", "dead:*.union.test"]).await;
    let _: i64 = redis.query(&["SADD", "dead:a.union.test", "1"]).await;
    for _ in 0..20 {
        assert_eq!(
            get(proxy.addr(), "a.union.test", "/").await.served_by(),
            "zero",
            "dead:a.union.test (request host) holds 1"
        );
    }
    let _: i64 = redis.query(&["SADD", "dead:*.union.test", "0"]).await;
    let resp = get(proxy.addr(), "a.union.test", "/").await;
    assert_eq!(
        resp.status, 502,
        "both backends dead by the union: no live backend"
    );
    let any = get(proxy.addr(), "b.union.test", "/").await;
    assert_eq!(
        any.served_by(),
        "one",
        "b.union.test only sees dead:*.union.test"
    );
}

/// A backend that dies under load: only requests in flight on it may fail;
/// once it is marked dead nothing more goes to it, and refused connections
/// are retried on the other backend, so the failures stop at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_under_load_only_fails_requests_in_flight() {
    let (redis, proxy) = setup(json!({})).await;
    let victim = Backend::builder("victim")
        .delay(Duration::from_millis(20))
        .start()
        .await;
    let survivor = Backend::builder("survivor")
        .delay(Duration::from_millis(20))
        .start()
        .await;
    redis
        .rpush_frontend("kill.test", "kill", &[victim.url(), survivor.url()])
        .await;
    let addr = proxy.addr();
    const CLIENTS: usize = 6;
    let killed_at = std::sync::Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let killed_at = killed_at.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed_late) = (0usize, 0usize);
            let mut failed_early = 0usize;
            let end = std::time::Instant::now() + Duration::from_secs(3);
            while std::time::Instant::now() < end {
                let sent = std::time::Instant::now();
                let resp = Req::get("kill.test", "/")
                    .timeout(Duration::from_secs(5))
                    .send(addr)
                    .await;
                match resp {
                    Ok(r) if r.status == 200 => ok += 1,
                    _ => {
                        // Sent before the kill (in flight on the victim) or
                        // long after it.
                        let kill = *killed_at.lock().expect("lock");
                        match kill {
                            Some(k) if sent > k + Duration::from_millis(200) => failed_late += 1,
                            _ => failed_early += 1,
                        }
                    }
                }
            }
            (ok, failed_early, failed_late)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    *killed_at.lock().expect("lock") = Some(std::time::Instant::now());
    victim.kill();
    let mut totals = (0, 0, 0);
    for t in tasks {
        let (ok, early, late) = t.await.expect("client task");
        totals = (totals.0 + ok, totals.1 + early, totals.2 + late);
    }
    let (ok, early, late) = totals;
    assert!(ok > 100, "load ran: {ok} answered");
    assert!(
        early <= CLIENTS,
        "only requests in flight on the victim failed: {early}"
    );
    assert_eq!(late, 0, "no request sent after the kill failed");
    let dead: Vec<String> = redis.query(&["SMEMBERS", "dead:kill.test"]).await;
    assert_eq!(dead, ["0"], "the victim is marked dead");
}
