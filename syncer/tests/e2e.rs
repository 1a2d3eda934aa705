//! End to end in one test: fake API server, two syncers sharing one Lease,
//! real Redis, the proxy (its library, as the binary runs it) and real
//! backends, with a redis-cli tenant beside the Kubernetes routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/backend.rs"]
mod backend;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/traffic.rs"]
mod traffic;
#[path = "support/wait.rs"]
mod wait;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use backend::Backend;
use fake_apiserver::FakeApi;
use hipache_syncer::fixtures::*;
use redis_server::RedisServer;
use tokio_util::sync::CancellationToken;
use traffic::get;
use wait::until;

const CTRL: &str = "hipache.io/ingress-controller";
const DEADLINE: Duration = Duration::from_secs(20);

async fn routes_to(proxy: SocketAddr, host: &str, path: &str, want: &str) -> Duration {
    traffic::routes_to(proxy, host, path, want, DEADLINE).await
}

async fn tenant_ok(proxy: SocketAddr) {
    assert_eq!(
        get(proxy, "tenant.com", "/").await,
        Some((200, "tenant".to_owned())),
        "the redis-cli frontend keeps working"
    );
}

fn start_syncer(api: &FakeApi, redis: &RedisServer, id: &str) -> tokio::task::JoinHandle<()> {
    let config = hipache_syncer::config::parse_from([
        "hipache-syncer",
        "--redis-url",
        &redis.url(),
        "--admin-address",
        "",
        "--lease-namespace",
        "hipache",
        "--lease-duration-seconds",
        "2",
        "--identity",
        id,
        "--health-interval-ms",
        "500",
        "--publish-address",
        "192.0.2.80",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_to_traffic_end_to_end() {
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    let (b1, b2, b3, tenant) = (
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("api").await,
        Backend::start("tenant").await,
    );
    let _: i64 = redis
        .cli(&["RPUSH", "frontend:tenant.com", "tenant", &tenant.url()])
        .await;

    let text = serde_json::json!({
        "http": {"port": 0, "bind": ["127.0.0.1"]},
        "driver": redis.url(),
        "server": {"adminAddress": null, "accessLog": null},
    })
    .to_string();
    let config = hipache::config::parse(&text, hipache::config::Format::Json).unwrap();
    let proxy = hipache::Proxy::bind(config).await.unwrap();
    let addr = proxy.http_addrs()[0];
    let (stop_proxy, stopped) = tokio::sync::oneshot::channel::<()>();
    let proxy_task = tokio::spawn(proxy.serve(async move {
        let _ = stopped.await;
    }));
    tenant_ok(addr).await;

    let one = start_syncer(&api, &redis, "one");
    until("syncer one leads", DEADLINE, || async {
        let l = api.get("leases", "hipache", "hipache-syncer")?;
        (l["spec"]["holderIdentity"] == "one").then_some(())
    })
    .await;
    let two = start_syncer(&api, &redis, "two");

    // An Ingress created routes traffic, by host and by path.
    api.apply(ingress_class("hipache", CTRL).build());
    api.apply(service("ns", "web").port("http", 80).build());
    api.apply(service("ns", "api").port("http", 80).build());
    api.apply(endpoints(&b1, "web"));
    api.apply(endpoints(&b3, "api"));
    api.apply(
        ingress("ns", "site")
            .host("a.example.com")
            .path("/", "Prefix", "web", 80)
            .path("/api", "Prefix", "api", "http")
            .build(),
    );
    routes_to(addr, "a.example.com", "/", "b1").await;
    routes_to(addr, "a.example.com", "/api/v1", "api").await;
    routes_to(addr, "a.example.com", "/apix", "b1").await;
    tenant_ok(addr).await;
    until("status published", DEADLINE, || async {
        let i = api.get("ingresses", "ns", "site")?;
        (i["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.0.2.80").then_some(())
    })
    .await;
    until("hchecker_ping written", DEADLINE, || async {
        let v: Option<String> = redis.cli(&["GET", "hchecker_ping"]).await;
        v.map(|_| ())
    })
    .await;

    // An EndpointSlice change moves traffic within a second.
    api.apply(endpoints(&b2, "web"));
    let moved = routes_to(addr, "a.example.com", "/", "b2").await;
    println!("endpoint change to traffic: {moved:?}");
    assert!(
        moved < Duration::from_secs(1),
        "traffic moved after {moved:?}"
    );
    tenant_ok(addr).await;

    // The leader dies (no Lease release); the other takes over within the
    // lease duration and applies the next change.
    one.abort();
    let t0 = Instant::now();
    api.apply(endpoints(&b1, "web"));
    routes_to(addr, "a.example.com", "/", "b1").await;
    let takeover = t0.elapsed();
    println!("leader killed to change applied: {takeover:?}");
    assert!(
        takeover < Duration::from_secs(5),
        "takeover took {takeover:?}"
    );
    assert_eq!(
        api.get("leases", "hipache", "hipache-syncer").unwrap()["spec"]["holderIdentity"],
        "two"
    );
    tenant_ok(addr).await;

    // A deleted Ingress stops routing; the tenant is untouched.
    api.delete("ingresses", "ns", "site");
    until("a.example.com no longer routed", DEADLINE, || async {
        let (status, _) = get(addr, "a.example.com", "/").await?;
        (status != 200).then_some(())
    })
    .await;
    tenant_ok(addr).await;
    assert_eq!(
        redis.list("frontend:tenant.com").await,
        ["tenant", tenant.url().as_str()]
    );

    two.abort();
    let _ = stop_proxy.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), proxy_task).await;
}
