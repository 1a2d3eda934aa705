//! The watch loop against a fake API server speaking the real list/watch
//! protocol, driven by the real kube-rs client, writing to a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/wait.rs"]
mod wait;

use std::sync::Arc;
use std::time::Duration;

use fake_apiserver::FakeApi;
use hipache_syncer::fixtures::*;
use redis_server::RedisServer;
use tokio_util::sync::CancellationToken;
use wait::until;

const CTRL: &str = "hipache.io/ingress-controller";
const DEADLINE: Duration = Duration::from_secs(15);

struct Syncer {
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.token.cancel();
        self.task.abort();
    }
}

fn start_syncer(api: &FakeApi, redis: &RedisServer, extra: &[&str]) -> Syncer {
    let mut args = vec![
        "hipache-syncer".to_owned(),
        "--redis-url".to_owned(),
        redis.url(),
        "--no-leader-election".to_owned(),
        "--no-health-checks".to_owned(),
    ];
    if !extra.contains(&"--admin-address") {
        args.extend(["--admin-address".to_owned(), String::new()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let config = hipache_syncer::config::parse_from(args).unwrap();
    let token = CancellationToken::new();
    let client = api.client();
    let t = token.clone();
    let task = tokio::spawn(async move {
        hipache_syncer::run_with_client(config, client, t)
            .await
            .unwrap();
    });
    Syncer { token, task }
}

fn seed(api: &FakeApi) {
    api.apply(ingress_class("hipache", CTRL).build());
    api.apply(service("ns", "web").port("http", 80).build());
    api.apply(
        slice("ns", "web", "web-1")
            .port("http", 8080)
            .ready("10.0.0.1")
            .build(),
    );
    api.apply(
        ingress("ns", "site")
            .host("a.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
}

async fn frontend_is(redis: &RedisServer, host: &str, want: &[&str]) {
    let key = format!("frontend:{host}");
    until(&format!("{key} == {want:?}"), DEADLINE, || async {
        (redis.list(&key).await == want).then_some(())
    })
    .await;
}

/// Moves the seeded Service's endpoint to 10.0.0.9 and waits until a.com's
/// frontend has it: how long that took.
async fn endpoint_change_flows(api: &FakeApi, redis: &RedisServer) -> Duration {
    let t0 = std::time::Instant::now();
    api.apply(
        slice("ns", "web", "web-1")
            .port("http", 8080)
            .ready("10.0.0.9")
            .build(),
    );
    frontend_is(redis, "a.com", &["k8s:ns/site", "http://10.0.0.9:8080"]).await;
    t0.elapsed()
}

#[tokio::test]
async fn list_watch_changes_bookmarks_410_and_restart() {
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    seed(&api);
    let _s = start_syncer(&api, &redis, &[]);
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.1:8080"]).await;

    // A watch event: the EndpointSlice changes.
    api.apply(
        slice("ns", "web", "web-1")
            .port("http", 8080)
            .ready("10.0.0.2")
            .build(),
    );
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.2:8080"]).await;

    // Bookmarks are accepted and change nothing.
    api.bookmark();
    api.apply(
        ingress("ns", "site")
            .host("a.com")
            .path("/", "Prefix", "web", 80)
            .path("/api", "Prefix", "web", 80)
            .build(),
    );
    frontend_is(
        &redis,
        "a.com",
        &[
            "k8s:ns/site",
            "http://10.0.0.2:8080",
            "/api http://10.0.0.2:8080",
        ],
    )
    .await;

    // Every watch is closed with 410 Gone: the watchers re-list.
    let lists_before = api.count_requests("GET /apis/networking.k8s.io/v1/ingresses?");
    api.expire_watches();
    api.apply(
        ingress("ns", "two")
            .host("b.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    frontend_is(&redis, "b.com", &["k8s:ns/two", "http://10.0.0.2:8080"]).await;
    assert!(api.count_requests("GET /apis/networking.k8s.io/v1/ingresses?") > lists_before);

    // The API server restarts; what changed while it was down is seen
    // after the watchers reconnect (and the history is gone: 410, re-list).
    api.stop();
    api.delete("ingresses", "ns", "two");
    api.compact();
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.start_again().await;
    frontend_is(&redis, "b.com", &[]).await;
    api.apply(
        slice("ns", "web", "web-1")
            .port("http", 8080)
            .ready("10.0.0.3")
            .build(),
    );
    frontend_is(
        &redis,
        "a.com",
        &[
            "k8s:ns/site",
            "http://10.0.0.3:8080",
            "/api http://10.0.0.3:8080",
        ],
    )
    .await;
}

/// An API server down long enough for an uncapped watch backoff to grow
/// (kube-runtime's default reaches pauses of 12-50 s within 30 s of errors):
/// the first change made once it is back reaches Redis within the capped
/// pause (at most 4 s: 2 s, lengthened by up to 100% of jitter) and a pass.
#[tokio::test]
async fn after_an_api_server_outage_the_first_change_flows_within_seconds() {
    const OUTAGE: Duration = Duration::from_secs(30);
    const BOUND: Duration = Duration::from_secs(6);
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    seed(&api);
    let _s = start_syncer(&api, &redis, &[]);
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.1:8080"]).await;

    api.stop();
    tokio::time::sleep(OUTAGE).await;
    api.start_again().await;
    let took = endpoint_change_flows(&api, &redis).await;
    println!("after a {OUTAGE:?} outage, the first change reached Redis in {took:?}");
    assert!(
        took < BOUND,
        "first change after {took:?} (bound {BOUND:?})"
    );
}

/// A Redis that loses the syncer's keys (flushed; restarted without
/// persistence) is rewritten within a second or two, not at the periodic
/// resync (a minute here): the leader watches for its marker.
#[tokio::test]
async fn a_redis_that_comes_back_empty_is_rewritten_within_two_seconds() {
    const BOUND: Duration = Duration::from_secs(2);
    let mut redis = RedisServer::start();
    let api = FakeApi::start().await;
    seed(&api);
    let _s = start_syncer(&api, &redis, &["--resync-seconds", "60"]);
    let want = ["k8s:ns/site", "http://10.0.0.1:8080"];
    frontend_is(&redis, "a.com", &want).await;

    let _: String = redis.cli(&["FLUSHALL"]).await;
    let flushed = std::time::Instant::now();
    frontend_is(&redis, "a.com", &want).await;
    let took = flushed.elapsed();
    println!("rewritten {took:?} after FLUSHALL");
    assert!(took < BOUND, "rewritten after {took:?}");

    redis.restart();
    let restarted = std::time::Instant::now();
    frontend_is(&redis, "a.com", &want).await;
    let took = restarted.elapsed();
    println!("rewritten {took:?} after a restart without persistence");
    assert!(took < BOUND, "rewritten after {took:?}");
}

/// ingress-nginx's Ingresses with `--nginx-class`: served, with an Event per
/// unsupported annotation; one with an allow list is refused whole (never
/// served open), and its Event says why.
#[tokio::test]
async fn ingress_nginx_annotations_are_reported_and_protections_refused() {
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    seed(&api);
    api.apply(
        ingress("ns", "plain")
            .class_name(Some("nginx"))
            .annotation("nginx.ingress.kubernetes.io/proxy-body-size", "8m")
            .host("plain.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    api.apply(
        ingress("ns", "guarded")
            .class_name(Some("nginx"))
            .annotation(
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/8",
            )
            .host("guarded.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    let _s = start_syncer(&api, &redis, &["--nginx-class"]);
    frontend_is(
        &redis,
        "plain.com",
        &["k8s:ns/plain", "http://10.0.0.1:8080"],
    )
    .await;
    let events = until("two warning events", DEADLINE, || async {
        let mut r: Vec<String> = api
            .list("events")
            .iter()
            .map(|e| {
                format!(
                    "{}:{}:{}",
                    e["regarding"]["name"].as_str().unwrap_or(""),
                    e["reason"].as_str().unwrap_or(""),
                    e["note"].as_str().unwrap_or("")
                )
            })
            .collect();
        r.sort();
        (r.len() >= 2).then_some(r)
    })
    .await;
    assert!(
        events[0].starts_with("guarded:UnsupportedProtection:nginx.ingress.kubernetes.io/whitelist-source-range restricts access"),
        "{events:?}"
    );
    assert!(
        events[1]
            .starts_with("plain:UnsupportedAnnotation:nginx.ingress.kubernetes.io/proxy-body-size"),
        "{events:?}"
    );
    assert!(redis.list("frontend:guarded.com").await.is_empty());
}

#[tokio::test]
async fn invalid_and_foreign_are_reported_and_never_stop_others() {
    let redis = RedisServer::start();
    let _: i64 = redis
        .cli(&[
            "RPUSH",
            "frontend:tenant.com",
            "mywebsite",
            "http://192.168.0.42:80",
        ])
        .await;
    let _: i64 = redis
        .cli(&[
            "RPUSH",
            "frontend:shop.tenant.com",
            "myshop",
            "http://192.168.0.43:80",
        ])
        .await;
    let api = FakeApi::start().await;
    seed(&api);
    api.apply(
        ingress("ns", "bad")
            .host("Bad_Host")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    api.apply(
        ingress("ns", "greedy")
            .host("tenant.com")
            .path("/", "Prefix", "web", 80)
            .host("shop.tenant.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    api.apply(
        ingress("ns", "newer")
            .created(2_000_000_000)
            .host("a.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    api.apply(
        ingress("ns", "nginx")
            .class_name(Some("nginx"))
            .host("n.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    let _s = start_syncer(&api, &redis, &["--publish-address", "203.0.113.10"]);
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.1:8080"]).await;
    assert_eq!(
        redis.list("frontend:tenant.com").await,
        ["mywebsite", "http://192.168.0.42:80"]
    );
    assert!(redis.list("frontend:n.com").await.is_empty());
    let reasons = until("four warning events", DEADLINE, || async {
        let mut r: Vec<String> = api
            .list("events")
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["regarding"]["name"].as_str().unwrap_or(""),
                    e["reason"].as_str().unwrap_or("")
                )
            })
            .collect();
        r.sort();
        (r.len() >= 4).then_some(r)
    })
    .await;
    assert_eq!(
        reasons,
        [
            "bad:InvalidIngress",
            "greedy:HostOwnedElsewhere",
            "greedy:HostOwnedElsewhere",
            "newer:HostConflict"
        ]
    );
    // One Event per foreign host, each naming its host.
    let mut notes: Vec<String> = api
        .list("events")
        .iter()
        .filter(|e| e["reason"] == "HostOwnedElsewhere")
        .map(|e| e["note"].as_str().unwrap_or("").to_owned())
        .collect();
    notes.sort();
    assert!(notes[0].contains("host shop.tenant.com "), "{notes:?}");
    assert!(notes[1].contains("host tenant.com "), "{notes:?}");
    // Status: published on our valid Ingresses, not on others.
    until("status of ns/site", DEADLINE, || async {
        let ing = api.get("ingresses", "ns", "site")?;
        (ing["status"]["loadBalancer"]["ingress"][0]["ip"] == "203.0.113.10").then_some(())
    })
    .await;
    let nginx = api.get("ingresses", "ns", "nginx").unwrap();
    assert!(nginx["status"]["loadBalancer"].is_null());
}

#[tokio::test]
async fn tls_secrets_of_our_ingresses_only() {
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    seed(&api);
    let secret = |name: &str, cert: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"namespace": "ns", "name": name},
            "data": {"tls.crt": b64(cert), "tls.key": b64("KEY")}})
    };
    api.apply(secret("a-tls", "CERT-A"));
    api.apply(secret("other-tls", "CERT-O"));
    api.apply(
        ingress("ns", "site")
            .host("a.com")
            .path("/", "Prefix", "web", 80)
            .tls(&["a.com"], "a-tls")
            .build(),
    );
    api.apply(
        ingress("ns", "nginx")
            .class_name(Some("nginx"))
            .host("n.com")
            .path("/", "Prefix", "web", 80)
            .tls(&["n.com"], "other-tls")
            .build(),
    );
    let _s = start_syncer(&api, &redis, &[]);
    until("tls:a.com", DEADLINE, || async {
        let c: Option<String> = redis.cli(&["HGET", "tls:a.com", "cert"]).await;
        (c.as_deref() == Some("CERT-A")).then_some(())
    })
    .await;
    assert_eq!(
        api.count_requests("/secrets/other-tls"),
        0,
        "never read a Secret of another class"
    );
    api.delete("ingresses", "ns", "site");
    until("tls:a.com removed", DEADLINE, || async {
        let n: i64 = redis.cli(&["EXISTS", "tls:a.com"]).await;
        (n == 0).then_some(())
    })
    .await;
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn redis_outage_then_full_resync() {
    let mut redis = RedisServer::start();
    let api = FakeApi::start().await;
    seed(&api);
    let _s = start_syncer(&api, &redis, &[]);
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.1:8080"]).await;
    redis.stop();
    api.apply(
        ingress("ns", "two")
            .host("b.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Redis comes back empty: everything is rewritten.
    redis.restart();
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.1:8080"]).await;
    frontend_is(&redis, "b.com", &["k8s:ns/two", "http://10.0.0.1:8080"]).await;
}

#[tokio::test]
async fn two_syncers_one_lease_failover() {
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    seed(&api);
    let lease_args = |id: &'static str| -> Vec<String> {
        vec![
            "--redis-url".into(),
            redis.url(),
            "--no-health-checks".into(),
            "--admin-address".into(),
            String::new(),
            "--lease-namespace".into(),
            "hipache".into(),
            "--lease-duration-seconds".into(),
            "2".into(),
            "--identity".into(),
            id.into(),
        ]
    };
    let start = |id: &'static str| {
        let mut args = vec!["hipache-syncer".to_owned()];
        args.extend(lease_args(id));
        let config = hipache_syncer::config::parse_from(args).unwrap();
        let client = api.client();
        tokio::spawn(async move {
            let _ = hipache_syncer::run_with_client(config, client, CancellationToken::new()).await;
        })
    };
    let one = start("one");
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.1:8080"]).await;
    let two = start("two");
    let holder = || {
        api.get("leases", "hipache", "hipache-syncer")
            .map(|l| l["spec"]["holderIdentity"].clone())
    };
    assert_eq!(holder(), Some(serde_json::json!("one")));
    // The leader dies without releasing the Lease.
    one.abort();
    let took = endpoint_change_flows(&api, &redis).await;
    assert_eq!(holder(), Some(serde_json::json!("two")));
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");
    let _ = Arc::new(());
    two.abort();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "admin")
        .body(Empty::new())
        .ok()?;
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn readiness_follows_redis_and_metrics_are_served() {
    let mut redis = RedisServer::start();
    let api = FakeApi::start().await;
    seed(&api);
    let admin = format!("127.0.0.1:{}", free_port());
    let _s = start_syncer(&api, &redis, &["--admin-address", &admin]);
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.1:8080"]).await;
    let status = |path: &'static str| {
        let admin = admin.clone();
        async move { http_get(&admin, path).await.map(|(s, _)| s) }
    };
    until("ready", DEADLINE, || async {
        (status("/readyz").await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(status("/healthz").await, Some(200));
    let (_, metrics) = http_get(&admin, "/metrics").await.unwrap();
    for name in hipache_syncer::metrics::NAMES {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics.contains("hipache_syncer_leader 1"));
    // Redis goes away: the next write fails and readiness drops.
    redis.stop();
    api.apply(
        slice("ns", "web", "web-1")
            .port("http", 8080)
            .ready("10.0.0.2")
            .build(),
    );
    until("not ready while redis is down", DEADLINE, || async {
        (status("/readyz").await == Some(503)).then_some(())
    })
    .await;
    redis.restart();
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.2:8080"]).await;
    until("ready again", DEADLINE, || async {
        (status("/readyz").await == Some(200)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn status_from_the_published_service() {
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    seed(&api);
    api.apply(service("hipache", "proxy").port("http", 80).build());
    let _s = start_syncer(&api, &redis, &["--publish-service", "hipache/proxy"]);
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.1:8080"]).await;
    // The load balancer gets an address later.
    let mut svc = service("hipache", "proxy").port("http", 80).build();
    svc.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
        load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus {
            ingress: Some(vec![k8s_openapi::api::core::v1::LoadBalancerIngress {
                hostname: Some("lb.example.net".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    api.apply(svc);
    until("status from the Service", DEADLINE, || async {
        let ing = api.get("ingresses", "ns", "site")?;
        (ing["status"]["loadBalancer"]["ingress"][0]["hostname"] == "lb.example.net").then_some(())
    })
    .await;
}

#[tokio::test]
async fn namespace_scoping() {
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    seed(&api);
    api.apply(service("other", "web").port("http", 80).build());
    api.apply(
        slice("other", "web", "web-1")
            .port("http", 8080)
            .ready("10.9.0.1")
            .build(),
    );
    api.apply(
        ingress("other", "site")
            .host("other.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    let _s = start_syncer(&api, &redis, &["--namespace", "ns"]);
    frontend_is(&redis, "a.com", &["k8s:ns/site", "http://10.0.0.1:8080"]).await;
    assert!(redis.list("frontend:other.com").await.is_empty());
    assert!(api.count_requests("GET /apis/networking.k8s.io/v1/namespaces/ns/ingresses?") > 0);
    assert_eq!(
        api.count_requests("GET /apis/networking.k8s.io/v1/ingresses?"),
        0
    );
}
