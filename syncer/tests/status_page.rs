//! The syncer's status page (`--status-page`, docs/syncer.md) against a fake
//! API server and a real Redis: the hosts it writes with the Ingress behind
//! each path, the problems it reports as Events, the token, and off by
//! default; rendered in headless Chromium by the end-to-end tests' harness
//! (screenshots under `test-artifacts/syncer-status-page/`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../../tests/src/browser.rs"]
mod browser;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/wait.rs"]
mod wait;

use std::net::SocketAddr;
use std::time::Duration;

use fake_apiserver::FakeApi;
use hipache_syncer::fixtures::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use redis_server::RedisServer;
use tokio_util::sync::CancellationToken;
use wait::until;

const CTRL: &str = "hipache.io/ingress-controller";
const DEADLINE: Duration = Duration::from_secs(20);

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// `GET uri` on the admin listener with `headers`: (status, set-cookie,
/// body).
async fn get(
    admin: SocketAddr,
    uri: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, Option<String>, String)> {
    let stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let mut req = http::Request::get(uri).header("host", admin.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        send.send_request(req.body(Empty::new()).ok()?),
    )
    .await
    .ok()?
    .ok()?;
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, cookie, String::from_utf8_lossy(&body).into_owned()))
}

fn start_syncer(
    api: &FakeApi,
    redis: &RedisServer,
    admin: SocketAddr,
    extra: &[&str],
) -> tokio::task::JoinHandle<()> {
    let admin = admin.to_string();
    let url = redis.url();
    let mut args = vec![
        "hipache-syncer",
        "--redis-url",
        &url,
        "--admin-address",
        &admin,
        "--no-leader-election",
        "--no-health-checks",
    ];
    args.extend_from_slice(extra);
    let config = hipache_syncer::config::parse_from(args).unwrap();
    let client = api.client();
    tokio::spawn(async move {
        let _ = hipache_syncer::run_with_client(config, client, CancellationToken::new()).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_ingresses_and_events_behind_a_token() {
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    let admin = free_addr();
    let syncer = start_syncer(
        &api,
        &redis,
        admin,
        &["--status-page", "--status-token", "s-token"],
    );
    api.apply(ingress_class("hipache", CTRL).build());
    api.apply(service("ns", "web").port("http", 80).build());
    api.apply(
        slice("ns", "web", "web-1")
            .port("http", 8080)
            .ready("10.0.0.7")
            .build(),
    );
    api.apply(
        ingress("ns", "site")
            .created(100)
            .host("a.example.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    // A younger Ingress claiming the same host and path, and one naming a
    // Service that does not exist.
    api.apply(
        ingress("ns", "copy")
            .created(200)
            .host("a.example.com")
            .path("/", "Prefix", "web", 80)
            .build(),
    );
    api.apply(
        ingress("other", "lost")
            .created(300)
            .host("b.example.com")
            .path("/", "Prefix", "nowhere", 80)
            .build(),
    );
    let page = until("the page lists both hosts", DEADLINE, || async {
        let (status, _, body) =
            get(admin, "/status", &[("authorization", "Bearer s-token")]).await?;
        (status == 200 && body.contains("b.example.com") && body.contains("HostConflict"))
            .then_some(body)
    })
    .await;
    assert!(page.contains("data-host=\"a.example.com\""), "{page}");
    assert!(page.contains("<td>ns/site</td>"), "{page}");
    assert!(page.contains("other/lost"), "{page}");
    assert!(page.contains("ServiceNotFound"), "{page}");
    assert!(
        page.contains("already served by the older Ingress ns/site"),
        "{page}"
    );
    assert!(page.contains("Gateway API routes"), "{page}");
    assert!(page.contains("This replica leads"), "{page}");

    let (status, _, json) = get(
        admin,
        "/status/api/hosts?q=A.EXAMPLE",
        &[("cookie", "hipache_status_token=s-token")],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["hosts"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["hosts"][0]["routes"][0]["ingress"], "ns/site", "{v}");
    assert_eq!(v["hosts"][0]["routes"][0]["backends"], 1, "{v}");

    for (uri, headers) in [
        ("/status", vec![]),
        ("/status/api/hosts", vec![]),
        ("/status", vec![("authorization", "Bearer wrong")]),
    ] {
        let (status, cookie, body) = get(admin, uri, &headers).await.unwrap();
        assert_eq!((status, body.as_str()), (401, "unauthorized\n"), "{uri}");
        assert_eq!(cookie, None);
    }
    let (status, cookie, _) = get(admin, "/status?token=s-token", &[]).await.unwrap();
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();

    // In a browser, with the token in the address: the script reloads the
    // content every 2 s ("updated" changes only when a reload brought a
    // new `#main`).
    let url = format!("http://{admin}/status?token=s-token&q=b.example");
    let dom = browser::dump_dom(&url, 4_500).await;
    let updated = browser::element_text(&dom, &["id=\"updated\""]).unwrap_or_default();
    assert!(updated.starts_with("updated "), "no reload: {updated:?}");
    let hosts = browser::element_text(&dom, &["id=\"hosts\""]).unwrap_or_default();
    assert!(
        hosts.contains("b.example.com") && !hosts.contains("a.example.com"),
        "{dom}"
    );
    assert!(
        browser::has_element(&dom, &["id=\"events\""], "HostConflict"),
        "{dom}"
    );
    assert!(
        browser::has_element(&dom, &["id=\"gateway-api\""], "not read by this syncer yet"),
        "{dom}"
    );
    browser::screenshot("syncer-status-page", "hosts-and-events", &url, 4_500).await;
    assert!(
        cookie.starts_with("hipache_status_token=s-token;") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    syncer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default() {
    let redis = RedisServer::start();
    let api = FakeApi::start().await;
    let admin = free_addr();
    let syncer = start_syncer(&api, &redis, admin, &[]);
    until("the admin listener", DEADLINE, || async {
        let (status, _, _) = get(admin, "/healthz", &[]).await?;
        (status == 200).then_some(())
    })
    .await;
    let (status, _, _) = get(admin, "/status", &[]).await.unwrap();
    assert_eq!(status, 404);
    syncer.abort();
}
