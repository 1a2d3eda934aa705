//! Redis Sentinel end to end: real `redis-server` processes (a master, a
//! replica, three Sentinels), the fake API server, the syncer, and two
//! proxies (their library, as the binary runs it) under steady load
//! through failovers: `SENTINEL FAILOVER` ten times, then SIGKILL of the
//! master. Also: a replica cut from its master, Sentinels unreachable at
//! start, a wrong master name, and Valkey as a drop-in (its server and
//! Sentinel, through a failover, with client tracking).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/backend.rs"]
mod backend;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "support/sentinel.rs"]
mod sentinel;
#[path = "support/traffic.rs"]
mod traffic;
#[path = "support/wait.rs"]
mod wait;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::Backend;
use fake_apiserver::FakeApi;
use hipache_syncer::fixtures::*;
use sentinel::Cluster;
use tokio_util::sync::CancellationToken;
use traffic::{get, routes_to};
use wait::until;

const CTRL: &str = "hipache.io/ingress-controller";
/// The bound stated in the docs for a route change made after a failover
/// to show through every proxy (measured: well under a second).
const CHANGE_BOUND: Duration = Duration::from_secs(3);

/// A proxy on a free port with `driver`; stops when the sender is dropped.
async fn start_proxy(driver: &str) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    start_proxy_with(driver, serde_json::json!({})).await
}

/// [`start_proxy`] with more `server` settings.
async fn start_proxy_with(
    driver: &str,
    server: serde_json::Value,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut settings = serde_json::json!({"adminAddress": null, "accessLog": null});
    for (k, v) in server.as_object().unwrap() {
        settings[k] = v.clone();
    }
    let text = serde_json::json!({
        "http": {"port": 0, "bind": ["127.0.0.1"]},
        "driver": driver,
        "server": settings,
    })
    .to_string();
    let config = hipache::config::parse(&text, hipache::config::Format::Json).unwrap();
    let proxy = hipache::Proxy::bind(config).await.unwrap();
    let addr = proxy.http_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(proxy.serve(async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn start_syncer(api: &FakeApi, redis_url: &str) -> tokio::task::JoinHandle<()> {
    let config = hipache_syncer::config::parse_from([
        "hipache-syncer",
        "--redis-url",
        redis_url,
        "--admin-address",
        "",
        "--no-leader-election",
    ])
    .unwrap();
    let client = api.client();
    tokio::spawn(async move {
        let _ = hipache_syncer::run_with_client(config, client, CancellationToken::new()).await;
    })
}

fn endpoints(b: &Backend, svc: &str) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    slice("ns", svc, &format!("{svc}-1"))
        .port("http", i32::from(b.addr.port()))
        .ready("127.0.0.1")
        .build()
}

/// Moves the `web` Service's endpoints to the other of `backends` (the one
/// `now_on` does not name) and waits until both proxies route
/// `a.example.com` to it: how long that took.
async fn move_web(
    api: &FakeApi,
    backends: [&Backend; 2],
    now_on: &mut usize,
    proxies: [SocketAddr; 2],
) -> Duration {
    let t0 = Instant::now();
    *now_on = 1 - *now_on;
    let next = backends[*now_on];
    api.apply(endpoints(next, "web"));
    for p in proxies {
        routes_to(p, "a.example.com", "/", &next.name, Duration::from_secs(20)).await;
    }
    t0.elapsed()
}

/// Requests `host` through `proxies` one after the other until `stop`;
/// counts them and those that did not get a 200.
fn steady_load(
    proxies: Vec<SocketAddr>,
    host: &'static str,
    stop: Arc<AtomicBool>,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<Vec<String>>,
) {
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, f) = (sent.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            for p in &proxies {
                let r = get(*p, host, "/").await;
                s.fetch_add(1, Ordering::Relaxed);
                if !matches!(r, Some((200, _))) {
                    f.fetch_add(1, Ordering::Relaxed);
                    failures.push(format!("{p}: {r:?}"));
                }
            }
        }
        failures
    });
    (sent, failed, task)
}

/// Replaces `frontend:<host>` on the server at `port` by `[host,
/// backend]`, in one command (retried as a whole if a failover cuts it).
async fn replace_frontend(cluster: &Cluster, port: u16, host: &str, backend: &Backend) {
    let key = format!("frontend:{host}");
    let _: i64 = cluster
        .cli(
            port,
            &[
                "EVAL",
                "redis.call('DEL', KEYS[1]) return redis.call('RPUSH', KEYS[1], ARGV[1], ARGV[2])",
                "1",
                &key,
                host,
                &backend.url(),
            ],
        )
        .await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failovers_lose_no_request_and_route_changes_follow() {
    let mut cluster = Cluster::start(1).await;
    let url = cluster.url("");
    let api = FakeApi::start().await;
    let (b1, b2) = (Backend::start("b1").await, Backend::start("b2").await);
    api.apply(ingress_class("hipache", CTRL).build());
    api.apply(service("ns", "web").port("http", 80).build());
    api.apply(endpoints(&b1, "web"));
    api.apply(
        ingress("ns", "site")
            .host("a.example.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    api.apply(
        ingress("ns", "old")
            .host("old.example.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    // A redis-cli frontend whose first backend refuses connections: the
    // proxies mark it dead on whatever master there is.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let _: i64 = cluster
        .cli(
            cluster.master_port().await,
            &[
                "RPUSH",
                "frontend:dead.example.com",
                "tenant",
                &format!("http://{refused}"),
                &b1.url(),
            ],
        )
        .await;
    let syncer = start_syncer(&api, &url);
    let (p1, _stop1) = start_proxy(&url).await;
    let (p2, _stop2) = start_proxy(&url).await;
    for p in [p1, p2] {
        routes_to(p, "a.example.com", "/", "b1", Duration::from_secs(20)).await;
        routes_to(p, "old.example.com", "/", "b1", Duration::from_secs(20)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed, load) = steady_load(vec![p1, p2], "a.example.com", stop.clone());

    // Ten graceful failovers, each followed by a route change.
    let mut visible = Vec::new();
    let mut now_on = 0;
    for i in 0..10 {
        let started = Instant::now();
        cluster.failover().await;
        println!("failover {i}: new master after {:?}", started.elapsed());
        visible.push(move_web(&api, [&b1, &b2], &mut now_on, [p1, p2]).await);
        cluster.wait_replicas_linked().await;
    }
    visible.sort();
    println!(
        "route change after SENTINEL FAILOVER, visible through both proxies: p50 {:?}, max {:?} (10 failovers)",
        percentile(&visible, 0.5),
        visible[visible.len() - 1]
    );

    // SIGKILL of the master. While no master is known, an Ingress is
    // deleted: the syncer cannot write it, and must not leave it behind.
    let old = cluster.settled_master(Duration::from_secs(20)).await;
    let killed_at = Instant::now();
    cluster.kill(old);
    api.delete("ingresses", "ns", "old");
    let new = until(
        "a new master after SIGKILL",
        Duration::from_secs(30),
        || async {
            let port = cluster.master_port().await;
            (port != old).then_some(port)
        },
    )
    .await;
    let promoted = killed_at.elapsed();
    let after_kill = move_web(&api, [&b1, &b2], &mut now_on, [p1, p2]).await;
    println!("SIGKILL of the master: new master named after {promoted:?}; route change visible through both proxies {after_kill:?} later");
    for p in [p1, p2] {
        until(
            "old.example.com no longer routed",
            Duration::from_secs(20),
            || async {
                let (status, _) = get(p, "old.example.com", "/").await?;
                (status != 200).then_some(())
            },
        )
        .await;
    }
    let keys: Vec<String> = cluster.cli(new, &["KEYS", "frontend:*"]).await;
    let mut keys = keys;
    keys.sort();
    assert_eq!(
        keys,
        ["frontend:a.example.com", "frontend:dead.example.com"],
        "the new master holds no stale route"
    );

    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("steady load through both proxies: {sent} requests, {failed} failed");
    assert!(sent > 100, "the load ran ({sent} requests)");
    assert_eq!(failed, 0, "requests for a known host failed: {failures:?}");
    let max = visible[visible.len() - 1];
    assert!(
        max < CHANGE_BOUND,
        "a route change took {max:?} after a failover"
    );
    assert!(
        after_kill < CHANGE_BOUND,
        "a route change took {after_kill:?} after SIGKILL"
    );

    // Dead marks reach the new master.
    for p in [p1, p2] {
        assert_eq!(
            get(p, "dead.example.com", "/").await,
            Some((200, "b1".into()))
        );
    }
    let dead = until(
        "a dead mark on the new master",
        Duration::from_secs(10),
        || async {
            let members: Vec<String> = cluster
                .cli(new, &["SMEMBERS", "dead:dead.example.com"])
                .await;
            (!members.is_empty()).then_some(members)
        },
    )
    .await;
    assert!(dead.iter().any(|m| m.starts_with("0")), "{dead:?}");
    syncer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_from_its_master_is_left_for_the_master() {
    let cluster = Cluster::start(1).await;
    let master = cluster.master_port().await;
    let b1 = Backend::start("b1").await;
    let b2 = Backend::start("b2").await;
    let (proxy, _stop) = start_proxy(&cluster.url("")).await;
    replace_frontend(&cluster, master, "x.example.com", &b1).await;
    routes_to(proxy, "x.example.com", "/", "b1", Duration::from_secs(20)).await;
    // Linked: a write shows after the replication lag.
    replace_frontend(&cluster, master, "x.example.com", &b2).await;
    let linked = routes_to(proxy, "x.example.com", "/", "b2", Duration::from_secs(5)).await;
    println!("write on the master to the proxy reading a linked replica: {linked:?}");

    // The replica loses its master (it now follows a port nobody serves):
    // what it holds goes stale, and the proxy must read elsewhere.
    let replica = until("the replica's port", Duration::from_secs(5), || async {
        let replicas: Vec<std::collections::HashMap<String, String>> = cluster
            .cli(
                cluster.sentinel_ports()[0],
                &["SENTINEL", "REPLICAS", sentinel::MASTER],
            )
            .await;
        replicas
            .first()
            .and_then(|r| r.get("port")?.parse::<u16>().ok())
    })
    .await;
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let _: () = cluster
        .cli(
            replica,
            &["REPLICAOF", "127.0.0.1", &nowhere.port().to_string()],
        )
        .await;
    let cut = Instant::now();
    replace_frontend(&cluster, master, "x.example.com", &b1).await;
    let left = routes_to(proxy, "x.example.com", "/", "b1", Duration::from_secs(10)).await;
    println!(
        "replica cut from its master: the proxy read the write {left:?} later (from the master)"
    );
    assert!(
        cut.elapsed() < Duration::from_secs(3),
        "the proxy kept reading a cut replica for {:?}",
        cut.elapsed()
    );
}

/// The error `hipache routes` prints when it cannot connect.
async fn tool_error(config: &hipache::config::Config) -> String {
    match hipache::tools::redis::Store::connect(config).await {
        Err(hipache::tools::ToolError::Failed(e)) => e,
        Err(e) => panic!("not a failure: {e:?}"),
        Ok(_) => panic!("connected"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_sentinels_and_a_wrong_master_name_are_clear_errors() {
    let mut cluster = Cluster::start(0).await;
    let master = cluster.master_port().await;
    let b1 = Backend::start("b1").await;
    let _: i64 = cluster
        .cli(master, &["RPUSH", "frontend:x.example.com", "x", &b1.url()])
        .await;

    // A master name the Sentinels do not monitor.
    let wrong = cluster.url("").replace("/hipache", "/nosuch");
    let text = serde_json::json!({"driver": wrong}).to_string();
    let config = hipache::config::parse(&text, hipache::config::Format::Json).unwrap();
    let e = tool_error(&config).await;
    assert!(e.contains("do not know a master named \"nosuch\""), "{e}");
    let url = hipache_schema::RedisUrl::parse(&wrong).unwrap();
    let Err(e) = hipache_syncer::store::Redis::new(&url).connect().await else {
        panic!("connected to a master nobody monitors");
    };
    assert!(
        e.to_string()
            .contains("do not know a master named \"nosuch\""),
        "{e}"
    );

    // Sentinels down at start: the proxy starts, answers fast, and routes
    // once they are back.
    cluster.stop_sentinels();
    let (proxy, _stop) = start_proxy(&cluster.url("")).await;
    let t0 = Instant::now();
    let (status, _) = get(proxy, "x.example.com", "/").await.expect("an answer");
    assert_eq!(status, 503);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        t0.elapsed()
    );
    let text = serde_json::json!({"driver": cluster.url("")}).to_string();
    let config = hipache::config::parse(&text, hipache::config::Format::Json).unwrap();
    let e = tool_error(&config).await;
    assert!(e.contains("no Sentinel answered"), "{e}");
    for port in cluster.sentinel_ports() {
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }
    cluster.start_sentinels();
    let back = routes_to(proxy, "x.example.com", "/", "b1", Duration::from_secs(10)).await;
    println!("Sentinels back to the first routed request: {back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_is_a_drop_in_through_a_failover() {
    if std::process::Command::new("valkey-server")
        .arg("--version")
        .output()
        .is_err()
    {
        // scripts/test installs it (Debian 12: from bookworm-backports).
        panic!("valkey-server is not installed");
    }
    let mut cluster = Cluster::start_with("valkey-server", 1).await;
    let (b1, b2) = (Backend::start("b1").await, Backend::start("b2").await);
    replace_frontend(&cluster, cluster.master_port().await, "v.example.com", &b1).await;
    // Tracking mode: RESP3 and CLIENT TRACKING on Valkey's replica.
    let (tracking, _s1) = start_proxy_with(
        &cluster.url(""),
        serde_json::json!({"routeCache": "tracking"}),
    )
    .await;
    let (strict, _s2) = start_proxy(&cluster.url("")).await;
    for p in [tracking, strict] {
        routes_to(p, "v.example.com", "/", "b1", Duration::from_secs(20)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed, load) = steady_load(vec![tracking, strict], "v.example.com", stop.clone());
    let master = cluster.failover().await;
    replace_frontend(&cluster, master, "v.example.com", &b2).await;
    for p in [tracking, strict] {
        routes_to(p, "v.example.com", "/", "b2", Duration::from_secs(5)).await;
    }
    cluster.wait_replicas_linked().await;
    cluster.kill(master);
    let new = until(
        "a new Valkey master after SIGKILL",
        Duration::from_secs(30),
        || async {
            let port = cluster.master_port().await;
            (port != master).then_some(port)
        },
    )
    .await;
    replace_frontend(&cluster, new, "v.example.com", &b1).await;
    for p in [tracking, strict] {
        routes_to(p, "v.example.com", "/", "b1", Duration::from_secs(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("Valkey: {sent} requests through a failover and a SIGKILL, {failed} failed");
    assert!(sent > 100, "the load ran ({sent} requests)");
    assert_eq!(failed, 0, "requests for a known host failed: {failures:?}");
}
