//! Active health checks against a real Redis and real backends, including
//! a redis-cli frontend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/backend.rs"]
mod backend;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/wait.rs"]
mod wait;

use std::time::Duration;

use backend::Backend;
use hipache_schema::Keys;
use hipache_syncer::config::HealthConfig;
use hipache_syncer::health;
use hipache_syncer::metrics::Metrics;
use redis_server::RedisServer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wait::until;

fn cfg(interval_ms: u64) -> HealthConfig {
    HealthConfig {
        method: http::Method::GET,
        path: "/health".into(),
        host: None,
        interval: Duration::from_millis(interval_ms),
        connect_timeout: Duration::from_millis(300),
        timeout: Duration::from_millis(500),
        fall: 2,
        rise: 2,
        dead_ttl: Duration::from_secs(30),
        concurrency: 8,
    }
}

fn start(
    r: &RedisServer,
    prefix: &str,
    c: HealthConfig,
    leader: bool,
) -> (CancellationToken, watch::Sender<bool>) {
    let token = CancellationToken::new();
    let (tx, rx) = watch::channel(leader);
    tokio::spawn(health::run(
        hipache_schema::RedisUrl::parse(&r.url()).unwrap(),
        Keys::new(prefix),
        c,
        rx,
        Metrics::new(),
        token.clone(),
    ));
    (token, tx)
}

#[tokio::test]
async fn marks_dead_revives_and_pings() {
    let r = RedisServer::start();
    let good = Backend::start("good").await;
    let bad = Backend::start("bad").await;
    bad.set_status(503);
    // A redis-cli frontend (not ours) and a path-rule element.
    let _: i64 = r
        .cli(&[
            "RPUSH",
            "frontend:www.example.com",
            "mywebsite",
            &good.url(),
            &format!("/api {}", bad.url()),
            "not a url",
        ])
        .await;
    let (token, _leader) = start(&r, "", cfg(100), true);
    until(
        "dead:www.example.com = {1}",
        Duration::from_secs(10),
        || async {
            let m: Vec<String> = r.cli(&["SMEMBERS", "dead:www.example.com"]).await;
            (m == ["1"]).then_some(())
        },
    )
    .await;
    let ttl: i64 = r.cli(&["TTL", "dead:www.example.com"]).await;
    assert!(ttl > 0 && ttl <= 30, "ttl {ttl}");
    let ping: String = r.cli(&["GET", "hchecker_ping"]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ping.parse::<u64>().unwrap()) <= 2);
    // The redis-cli list itself is never touched.
    assert_eq!(r.list("frontend:www.example.com").await.len(), 4);
    // Revived after `rise` good probes.
    bad.set_status(200);
    until("revived", Duration::from_secs(10), || async {
        let m: Vec<String> = r.cli(&["SMEMBERS", "dead:www.example.com"]).await;
        m.is_empty().then_some(())
    })
    .await;
    assert!(good.hits() > 0);
    token.cancel();
}

#[tokio::test]
async fn refused_connections_are_failures_and_prefix_applies() {
    let r = RedisServer::start();
    let gone = Backend::start("gone").await;
    let url = gone.url();
    gone.stop();
    drop(gone);
    let _: i64 = r
        .cli(&["RPUSH", "t1frontend:a.com", "k8s:ns/a", &url])
        .await;
    let (token, _leader) = start(&r, "t1", cfg(100), true);
    until("t1dead:a.com = {0}", Duration::from_secs(10), || async {
        let m: Vec<String> = r.cli(&["SMEMBERS", "t1dead:a.com"]).await;
        (m == ["0"]).then_some(())
    })
    .await;
    token.cancel();
}

#[tokio::test]
async fn dead_channel_triggers_an_immediate_recheck() {
    let r = RedisServer::start();
    let b = Backend::start("b").await;
    let _: i64 = r.cli(&["RPUSH", "frontend:a.com", "x", &b.url()]).await;
    // One round a minute: only the dead channel can cause a second probe soon.
    let (token, _leader) = start(&r, "", cfg(60_000), true);
    until("first probe", Duration::from_secs(10), || async {
        (b.hits() >= 1).then_some(())
    })
    .await;
    // Subscribed? Publish until the checker reacts.
    let msg = hipache_schema::dead::message("a.com", &b.url(), 0, 1);
    until(
        "recheck after a dead message",
        Duration::from_secs(10),
        || async {
            let _: i64 = r.cli(&["PUBLISH", "dead", &msg]).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            (b.hits() >= 2).then_some(())
        },
    )
    .await;
    token.cancel();
}

#[tokio::test]
async fn only_the_leader_checks() {
    let r = RedisServer::start();
    let b = Backend::start("b").await;
    let _: i64 = r.cli(&["RPUSH", "frontend:a.com", "x", &b.url()]).await;
    let (token, leader) = start(&r, "", cfg(50), false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.hits(), 0);
    let exists: i64 = r.cli(&["EXISTS", "hchecker_ping"]).await;
    assert_eq!(exists, 0);
    leader.send(true).unwrap();
    until("probes once leader", Duration::from_secs(10), || async {
        (b.hits() > 0).then_some(())
    })
    .await;
    leader.send(false).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = b.hits();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.hits(), after, "a follower stops probing");
    token.cancel();
}
