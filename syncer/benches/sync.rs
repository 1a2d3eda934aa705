//! Benchmark (prints numbers): 10,000 Ingresses synced from nothing into a
//! real Redis through the fake API server and the real kube-rs client, then
//! the delay from one EndpointSlice change to its Redis write.
//!
//! `cargo bench -p hipache-syncer --bench sync` (set `SYNC_BENCH_N` to
//! change the number of Ingresses).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "../tests/support/redis.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use fake_apiserver::FakeApi;
use hipache_syncer::fixtures::*;
use redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

const CTRL: &str = "hipache.io/ingress-controller";
const CHANGES: usize = 50;

fn ip(i: usize, gen: usize) -> String {
    format!("10.{}.{}.{}", gen % 250, (i / 250) % 250, i % 250 + 1)
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let n: usize = std::env::var("SYNC_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // The pure translation alone (what every change costs in CPU: the
    // desired state is recomputed whole).
    {
        use std::sync::Arc;
        let settings = hipache_syncer::desired::Settings {
            controller: CTRL.to_owned(),
            class: "hipache".to_owned(),
            backend_mode: hipache_syncer::config::BackendMode::Endpoints,
            nginx_class: false,
            serve_unsupported_protections: false,
        };
        let mut world = hipache_syncer::desired::World {
            classes: vec![Arc::new(ingress_class("hipache", CTRL).build())],
            ..Default::default()
        };
        for i in 0..n {
            let svc = format!("svc-{i}");
            world
                .services
                .push(Arc::new(service("bench", &svc).port("http", 80).build()));
            world.slices.push(Arc::new(
                slice("bench", &svc, &format!("{svc}-1"))
                    .port("http", 8080)
                    .ready(&ip(i, 0))
                    .build(),
            ));
            world.ingresses.push(Arc::new(
                ingress("bench", &format!("ing-{i}"))
                    .host(&format!("h{i}.example.com"))
                    .path("/", "Prefix", &svc, 80)
                    .build(),
            ));
        }
        let runs = 20;
        let t0 = Instant::now();
        let mut frontends = 0;
        for _ in 0..runs {
            frontends = hipache_syncer::desired::compute(&world, &settings)
                .frontends
                .len();
        }
        println!(
            "pure translation: {n} Ingresses -> {frontends} frontends in {:.1} ms",
            t0.elapsed().as_secs_f64() * 1000.0 / f64::from(runs)
        );
    }
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    api.apply(ingress_class("hipache", CTRL).build());
    for i in 0..n {
        let svc = format!("svc-{i}");
        api.apply(service("bench", &svc).port("http", 80).build());
        api.apply(
            slice("bench", &svc, &format!("{svc}-1"))
                .port("http", 8080)
                .ready(&ip(i, 0))
                .build(),
        );
        api.apply(
            ingress("bench", &format!("ing-{i}"))
                .host(&format!("h{i}.example.com"))
                .path("/", "Prefix", &svc, 80)
                .build(),
        );
    }
    let config = hipache_syncer::config::parse_from([
        "hipache-syncer",
        "--redis-url",
        &redis.url(),
        "--no-leader-election",
        "--no-health-checks",
        "--admin-address",
        "",
    ])
    .unwrap();
    let token = CancellationToken::new();
    let client = api.client();
    let t = token.clone();
    let t0 = Instant::now();
    let task = tokio::spawn(async move {
        let _ = hipache_syncer::run_with_client(config, client, t).await;
    });
    let mut con = redis.conn().await;
    loop {
        let size: usize = redis::cmd("DBSIZE")
            .query_async(&mut con)
            .await
            .unwrap_or(0);
        if size >= n {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "initial sync did not finish in 10 min ({size}/{n})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let initial = t0.elapsed();
    println!(
        "initial sync: {n} Ingresses -> {n} frontends in {:.3} s ({:.0} Ingresses/s)",
        initial.as_secs_f64(),
        n as f64 / initial.as_secs_f64()
    );

    let mut delays = Vec::with_capacity(CHANGES);
    for c in 0..CHANGES {
        let i = (c * 7919) % n;
        let svc = format!("svc-{i}");
        let addr = ip(i, c + 1);
        let want = format!("http://{addr}:8080");
        let key = format!("frontend:h{i}.example.com");
        let t0 = Instant::now();
        api.apply(
            slice("bench", &svc, &format!("{svc}-1"))
                .port("http", 8080)
                .ready(&addr)
                .build(),
        );
        loop {
            let list: Vec<String> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut con)
                .await
                .unwrap_or_default();
            if list.get(1) == Some(&want) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "change {c} not written in 60 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        delays.push(t0.elapsed());
    }
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "change to Redis write with {n} Ingresses ({CHANGES} changes): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(delays[CHANGES / 2]),
        ms(delays[CHANGES * 9 / 10]),
        ms(delays[CHANGES - 1])
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
