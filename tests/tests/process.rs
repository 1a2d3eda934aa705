//! The process model with the real binary: a master and its workers
//! (restart after SIGKILL, memory recycling, SIGTERM, SIGUSR1, privilege
//! drop) under load. Loopback only; every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hipache_tests::backend::Backend;
use hipache_tests::client::Req;
use hipache_tests::metrics::{admin_get, scrape};
use hipache_tests::proxy::{proc_status_field, ProxyProcess};
use hipache_tests::redis::RedisServer;
use hipache_tests::wait::{until, DEFAULT_DEADLINE};
use serde_json::json;
use tokio::time::Instant;

/// Concurrent clients of the load loop, each opening a new connection per
/// request (so requests spread over the workers).
const CLIENTS: usize = 4;
/// How long one request of the load may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The drain timeout these tests configure.
const DRAIN_SECS: u64 = 2;
/// Beyond the drain timeout, how long the processes may take to exit.
const EXIT_SLACK: Duration = Duration::from_secs(6);

/// One request of the load loop.
#[derive(Debug)]
struct Outcome {
    start: Instant,
    end: Instant,
    result: Result<u16, String>,
}

/// Runs [`CLIENTS`] request loops against `addr` for `duration`.
async fn load(addr: SocketAddr, host: &'static str, duration: Duration) -> Vec<Outcome> {
    let stop = Instant::now() + duration;
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let results = results.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let start = Instant::now();
                let r = Req::get(host, "/")
                    .timeout(REQUEST_TIMEOUT)
                    .send(addr)
                    .await;
                let result = match r {
                    Ok(resp) => Ok(resp.status.as_u16()),
                    Err(e) => Err(format!("{e:#}")),
                };
                let end = Instant::now();
                results
                    .lock()
                    .expect("results")
                    .push(Outcome { start, end, result });
            }
        }));
    }
    for t in tasks {
        t.await.expect("load client");
    }
    let mut all = std::mem::take(&mut *results.lock().expect("results"));
    all.sort_by_key(|o| o.start);
    all
}

fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| o.result != Ok(200)).collect()
}

async fn backend_and_routes(host: &str) -> (RedisServer, Backend) {
    let redis = RedisServer::start();
    let backend = Backend::start("b1").await;
    redis.rpush_frontend(host, "app", &[backend.url()]).await;
    (redis, backend)
}

/// Waits until the master has `n` workers and `/readyz` says ready;
/// returns the worker pids.
async fn ready_workers(proxy: &ProxyProcess, n: usize) -> Vec<u32> {
    let admin = proxy.admin_addr();
    until("every worker ready", DEFAULT_DEADLINE, || async {
        let pids = proxy.children();
        let ready = admin_get(admin, "/readyz").await;
        if pids.len() == n && ready.status == 200 {
            Ok(pids)
        } else {
            Err(format!(
                "workers {pids:?}, /readyz {} {}",
                ready.status,
                ready.text()
            ))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_worker_is_replaced_and_the_others_keep_serving() {
    let (redis, _backend) = backend_and_routes("app.test").await;
    let proxy = ProxyProcess::start_workers(
        &redis.url(),
        2,
        json!({"drainTimeout": DRAIN_SECS}),
        json!({}),
    )
    .await;
    let before = ready_workers(&proxy, 2).await;
    assert_eq!(
        Req::get("app.test", "/")
            .send(proxy.addr())
            .await
            .expect("request")
            .status,
        200
    );

    let addr = proxy.addr();
    let load = tokio::spawn(load(addr, "app.test", Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim = before[0];
    let kill_sent = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -KILL {victim}");
    // kill(1) returned: the worker is dead (SIGKILL is delivered before
    // kill(2) returns). Requests sent from now on must all succeed.
    let killed_at = Instant::now();
    let outcomes = load.await.expect("load");

    // Only requests that the killed worker held when it died may fail:
    // anything sent after the kill is served by the other worker or the
    // replacement (they accept from the same listening socket).
    let failed = failures(&outcomes);
    eprintln!(
        "{} requests, {} failed (in flight on the killed worker)",
        outcomes.len(),
        failed.len()
    );
    assert!(
        outcomes.len() > 50,
        "the load ran: {} requests",
        outcomes.len()
    );
    assert!(
        failed.len() <= CLIENTS,
        "at most one in-flight request per client may fail: {failed:#?}"
    );
    for f in &failed {
        assert!(
            f.start <= killed_at && f.end >= kill_sent,
            "a request not in flight at the kill failed: {f:?} (kill at {killed_at:?})"
        );
    }
    let after_kill = outcomes.iter().filter(|o| o.start > killed_at).count();
    assert!(
        after_kill > 20,
        "requests kept flowing after the kill: {after_kill}"
    );

    let now = ready_workers(&proxy, 2).await;
    assert!(!now.contains(&victim), "the killed worker is gone: {now:?}");
    assert!(
        now.contains(&before[1]),
        "the other worker was left alone: {before:?} -> {now:?}"
    );
    let m = scrape(proxy.admin_addr()).await;
    assert_eq!(
        m.value("hipache_worker_restarts_total", &[]),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(m.value("hipache_memory_recycles_total", &[]), 0.0);
    assert_eq!(m.value("hipache_workers", &[]), 2.0);
    // The workers' own metrics, merged with their slot as a label.
    assert!(
        m.has(
            "hipache_requests_total",
            &[("worker", "1"), ("class", "2xx"), ("method", "GET")]
        ),
        "{}",
        m.text
    );
    assert_eq!(
        m.text.matches("# TYPE hipache_requests_total ").count(),
        1,
        "one TYPE line per family"
    );
    assert!(
        proxy.output().contains("worker exited unexpectedly"),
        "{}",
        proxy.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_above_the_memory_limit_are_recycled_without_failed_requests() {
    let (redis, _backend) = backend_and_routes("mem.test").await;
    // 1 byte: every worker is above it as soon as it is ready, so each slot
    // is recycled once per RECYCLE_MIN_INTERVAL (5 s), no faster.
    let proxy = ProxyProcess::start_workers(
        &redis.url(),
        2,
        json!({"drainTimeout": DRAIN_SECS, "memoryLimit": 1}),
        json!({}),
    )
    .await;
    let first = ready_workers(&proxy, 2).await;
    let outcomes = load(proxy.addr(), "mem.test", Duration::from_secs(7)).await;
    let failed = failures(&outcomes);
    assert!(
        outcomes.len() > 50,
        "the load ran: {} requests",
        outcomes.len()
    );
    assert!(
        failed.is_empty(),
        "no request fails during recycles: {failed:#?}"
    );

    let m = scrape(proxy.admin_addr()).await;
    let recycles = m.value("hipache_memory_recycles_total", &[]);
    // 7 s of load after the first workers were ready: each slot recycled
    // at least once, and at most once per 5 s (plus the one in progress).
    assert!(
        (2.0..=6.0).contains(&recycles),
        "recycles: {recycles}\n{}",
        proxy.output()
    );
    assert_eq!(
        m.value("hipache_worker_restarts_total", &[]),
        0.0,
        "a recycle is not a crash"
    );
    let now = proxy.children();
    assert!(
        first.iter().all(|p| !now.contains(p)),
        "the first workers were replaced: {first:?} -> {now:?}"
    );
    let log = proxy.output();
    assert!(
        log.contains("worker above server.memoryLimit: recycling it"),
        "{log}"
    );
    assert!(log.contains("recycled worker exited"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_to_the_master_drains_every_worker_and_exits_0() {
    let (redis, _backend) = backend_and_routes("term.test").await;
    let mut proxy = ProxyProcess::start_workers(
        &redis.url(),
        2,
        json!({"drainTimeout": DRAIN_SECS}),
        json!({}),
    )
    .await;
    let workers = ready_workers(&proxy, 2).await;
    let load = tokio::spawn(load(proxy.addr(), "term.test", Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("TERM");
    let start = Instant::now();
    let code = proxy
        .wait_exit(Duration::from_secs(DRAIN_SECS) + EXIT_SLACK)
        .await;
    assert_eq!(code, Some(0), "{}", proxy.output());
    assert!(start.elapsed() < Duration::from_secs(DRAIN_SECS) + EXIT_SLACK);
    for pid in workers {
        assert!(
            proc_status_field(pid, "State:").is_none(),
            "worker {pid} exited"
        );
    }
    let log = proxy.output();
    assert_eq!(log.matches("worker stopped").count(), 2, "{log}");
    assert_eq!(
        log.matches("exit status: 0").count(),
        2,
        "each worker exited 0: {log}"
    );
    let outcomes = load.await.expect("load");
    let before_term: Vec<_> = outcomes
        .iter()
        .filter(|o| o.end < start && o.result != Ok(200))
        .collect();
    assert!(before_term.is_empty(), "{before_term:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr1_to_the_master_reopens_the_workers_access_logs() {
    let (redis, _backend) = backend_and_routes("rot.test").await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let proxy = ProxyProcess::start_workers(
        &redis.url(),
        2,
        json!({"accessLog": log.to_str().expect("utf-8 path")}),
        json!({}),
    )
    .await;
    ready_workers(&proxy, 2).await;
    let lines = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // Enough requests (new connections) that both workers have written.
    for _ in 0..20 {
        let r = Req::get("rot.test", "/before")
            .send(proxy.addr())
            .await
            .expect("request");
        assert_eq!(r.status, 200);
    }
    until("20 lines in the access log", DEFAULT_DEADLINE, || async {
        let n = lines(&log);
        if n >= 20 {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    })
    .await;
    std::fs::rename(&log, &rotated).expect("rotate the log");
    proxy.signal("USR1");
    // The reopen is asynchronous: keep sending until new lines land in the
    // new file from both workers' requests.
    until(
        "requests logged in the new file",
        DEFAULT_DEADLINE,
        || async {
            for _ in 0..10 {
                let _ = Req::get("rot.test", "/after").send(proxy.addr()).await;
            }
            let n = lines(&log);
            if n >= 10 {
                Ok(())
            } else {
                Err(format!("{n} lines in the new file"))
            }
        },
    )
    .await;
    let text = std::fs::read_to_string(&log).expect("read the new log");
    assert!(text.lines().all(|l| l.contains("/after")), "{text}");
    assert!(
        proxy.output().contains("forwarding to the workers"),
        "{}",
        proxy.output()
    );
    assert!(proxy.children().len() == 2, "no worker died of SIGUSR1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_drop_privileges_after_the_master_binds() {
    if !nix_is_root() {
        eprintln!("skipped: privilege drop needs root");
        return;
    }
    let (redis, _backend) = backend_and_routes("priv.test").await;
    // A high port here; in production the master binds port 80 as root.
    let proxy = ProxyProcess::start_workers(
        &redis.url(),
        1,
        json!({}),
        json!({"user": "nobody", "group": "nogroup"}),
    )
    .await;
    let workers = ready_workers(&proxy, 1).await;
    let uid = id_of("-u", "nobody");
    let gid = group_id("nogroup");
    let worker = workers[0];
    let uids = proc_status_field(worker, "Uid:").expect("worker status");
    let gids = proc_status_field(worker, "Gid:").expect("worker status");
    assert!(
        uids.split_whitespace().all(|u| u == uid),
        "worker Uid: {uids}"
    );
    assert!(
        gids.split_whitespace().all(|g| g == gid),
        "worker Gid: {gids}"
    );
    let groups = proc_status_field(worker, "Groups:").expect("worker status");
    assert!(
        groups.split_whitespace().all(|g| g == gid),
        "worker Groups: {groups}"
    );
    // The master keeps root (it serves nothing but the admin listener).
    let master_uid = proc_status_field(proxy.pid(), "Uid:").expect("master status");
    assert!(master_uid.starts_with('0'), "master Uid: {master_uid}");
    let r = Req::get("priv.test", "/")
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(r.status, 200, "the worker serves on the master's socket");
}

fn nix_is_root() -> bool {
    proc_status_field(std::process::id(), "Uid:").is_some_and(|u| u.starts_with("0\t") || u == "0")
}

fn id_of(flag: &str, user: &str) -> String {
    let out = std::process::Command::new("id")
        .args([flag, user])
        .output()
        .expect("run id(1)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn group_id(group: &str) -> String {
    let out = std::process::Command::new("getent")
        .args(["group", group])
        .output()
        .expect("run getent(1)");
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_process_above_the_memory_limit_drains_and_exits_0() {
    let (redis, _backend) = backend_and_routes("one.test").await;
    // workers 0: no master; the process watches itself (first check after
    // one CHECK_INTERVAL) and, above the limit, drains and exits 0 for its
    // supervisor to start it again.
    let mut proxy = ProxyProcess::start(
        &redis.url(),
        json!({"drainTimeout": DRAIN_SECS, "memoryLimit": 1}),
    )
    .await;
    let code = proxy
        .wait_exit(Duration::from_secs(1 + DRAIN_SECS) + EXIT_SLACK)
        .await;
    assert_eq!(code, Some(0), "{}", proxy.output());
    assert!(
        proxy.output().contains("memory above server.memoryLimit"),
        "{}",
        proxy.output()
    );
}

/// The admin listener's default port is one no common tool takes: a
/// Prometheus (or anything else) on 9090, the earlier default, does not keep
/// the proxy from starting, and `/healthz` answers on 127.0.0.1:10264.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_defaults_to_port_10264_beside_a_server_on_9090() {
    // Taken here unless something on this machine already holds it; either
    // way the port is busy while the proxy starts.
    let _prometheus_port = std::net::TcpListener::bind("127.0.0.1:9090");
    let (redis, _backend) = backend_and_routes("app.test").await;
    let proxy = ProxyProcess::start_with_defaults(&redis.url(), &["adminAddress"]).await;
    let admin = SocketAddr::from(([127, 0, 0, 1], 10264));
    let health = admin_get(admin, "/healthz").await;
    assert_eq!(health.status, 200, "{}", proxy.output());
    let metrics = admin_get(admin, "/metrics").await;
    assert!(
        metrics.text().contains("hipache_build_info"),
        "{}",
        metrics.text()
    );
}
