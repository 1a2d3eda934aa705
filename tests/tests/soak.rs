//! A bounded soak, run on demand (see docs/operations.md):
//!
//! ```sh
//! cargo build --release -p hipache --bin hipache   # or a debug build
//! HIPACHE_SOAK_SECS=600 cargo test -p hipache-tests --test soak -- --ignored --nocapture
//! ```
//!
//! It runs the real binary against a real redis-server and mixes, for the
//! whole duration: keep-alive load over many hosts, route edits every
//! 100 ms, a backend that fails (dead marks), and a Redis restart every
//! minute (routes rewritten right after). It prints requests, errors by
//! status and the proxy's RSS over time, and fails if memory grew by more
//! than a quarter between the first fifth of the run and the end, or if
//! any request failed other than during a Redis restart window.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hipache_tests::backend::Backend;
use hipache_tests::client::{Conn, Req};
use hipache_tests::proxy::ProxyProcess;
use hipache_tests::redis::RedisServer;
use hipache_tests::refused_url;
use serde_json::json;
use std::sync::Mutex;

const HOSTS: usize = 50;
const CLIENTS: usize = 8;

fn rss_kib(pid: u32) -> u64 {
    hipache_tests::proxy::proc_status_field(pid, "VmRSS:")
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn write_routes(redis: &RedisServer, good: &[String], bad: &str) {
    for h in 0..HOSTS {
        let host = format!("soak{h}.test");
        // Every fifth host also lists a refusing backend: retried, marked dead.
        let mut backends = vec![
            good[h % good.len()].clone(),
            good[(h + 1) % good.len()].clone(),
        ];
        if h % 5 == 0 {
            backends.push(bad.to_owned());
        }
        redis
            .rpush_frontend(&host, &format!("app{h}"), &backends)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run on demand with HIPACHE_SOAK_SECS (see docs/operations.md)"]
async fn soak() {
    let secs: u64 = std::env::var("HIPACHE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let duration = Duration::from_secs(secs);
    let mut redis = RedisServer::start();
    let mut backends = Vec::new();
    for i in 0..4 {
        backends.push(Backend::start(&format!("b{i}")).await);
    }
    let good: Vec<String> = backends.iter().map(Backend::url).collect();
    let bad = refused_url();
    write_routes(&redis, &good, &bad).await;
    let proxy = ProxyProcess::start(&redis.url(), json!({"routeCache": "tracking"})).await;
    let addr = proxy.addr();
    let pid = proxy.pid();

    let stop = Arc::new(AtomicBool::new(false));
    let restarting = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (stop, restarting, ok, errors) =
            (stop.clone(), restarting.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                i += CLIENTS;
                let host = format!("soak{}.test", i % HOSTS);
                if conn.is_none() {
                    conn = Conn::open(addr).await.ok();
                }
                let Some(c) = conn.as_mut() else { continue };
                let tag = if restarting.load(Ordering::Relaxed) {
                    " (redis restart)"
                } else {
                    ""
                };
                let result = c
                    .send(Req::get(&host, "/").timeout(Duration::from_secs(5)))
                    .await;
                let drop_conn = result.is_err() || c.is_closed();
                match result {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        let key = format!("{}{tag}", r.status.as_u16());
                        *errors.lock().expect("errors").entry(key).or_default() += 1;
                    }
                    Err(e) => {
                        let key = format!("client error{tag}: {e}");
                        *errors.lock().expect("errors").entry(key).or_default() += 1;
                    }
                }
                if drop_conn {
                    conn = None;
                }
            }
        }));
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut last_restart = Instant::now();
    let mut edits = 0u64;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A route edit: swap one host's first backend.
        let h = (edits as usize) % HOSTS;
        let to = &good[(edits as usize) % good.len()];
        let _: () = redis
            .query(&["LSET", &format!("frontend:soak{h}.test"), "1", to])
            .await;
        edits += 1;
        if last_restart.elapsed() > Duration::from_secs(60) {
            restarting.store(true, Ordering::Relaxed);
            redis.restart();
            write_routes(&redis, &good, &bad).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            restarting.store(false, Ordering::Relaxed);
            last_restart = Instant::now();
        }
        if samples
            .last()
            .is_none_or(|(t, _): &(Duration, u64)| started.elapsed() - *t > Duration::from_secs(10))
        {
            samples.push((started.elapsed(), rss_kib(pid)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    samples.push((started.elapsed(), rss_kib(pid)));

    let errors = errors.lock().expect("errors").clone();
    println!(
        "soak: {secs} s, {} ok requests, {edits} route edits",
        ok.load(Ordering::Relaxed)
    );
    println!("soak: errors: {errors:?}");
    for (t, kib) in &samples {
        println!("soak: t={:>5.0}s rss={} KiB", t.as_secs_f64(), kib);
    }
    let early = samples
        .iter()
        .find(|(t, _)| *t >= duration / 5)
        .map(|s| s.1)
        .unwrap_or(samples[0].1);
    let end = samples.last().map(|s| s.1).unwrap_or(0);
    assert!(
        end <= early + early / 4,
        "memory grew from {early} KiB to {end} KiB"
    );
    let outside_restarts: u64 = errors
        .iter()
        .filter(|(k, _)| !k.contains("redis restart"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        outside_restarts, 0,
        "requests failed outside Redis restarts: {errors:?}"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
}
