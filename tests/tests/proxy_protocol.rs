//! The PROXY protocol from load balancers (`server.proxyProtocolFrom`):
//! v1 and v2 headers from a trusted peer give the client's address to the
//! backend's forwarding headers and to allow lists, over HTTP and HTTPS; a
//! trusted peer without a header is closed; a header from anyone else is
//! not honoured.

use hipache::metrics::names;
use hipache_tests::backend::Backend;
use hipache_tests::client::{raw, raw_and_closed, raw_status};
use hipache_tests::https::HttpsProxy;
use hipache_tests::metrics::scrape;
use hipache_tests::proxy::TestProxy;
use hipache_tests::redis::RedisServer;
use serde_json::json;

/// A v2 PROXY header for a TCP over IPv4 client.
fn v2(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[10, 0, 0, 2]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

fn v1(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 10.0.0.2 51234 80\r\n").into_bytes()
}

fn get(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

async fn setup(from: &str) -> (RedisServer, TestProxy, Backend) {
    let redis = RedisServer::start();
    let backend = Backend::start("app").await;
    redis
        .rpush_frontend("app.test", "app", &[backend.url()])
        .await;
    let proxy =
        TestProxy::start_with_admin(&redis.url(), json!({"proxyProtocolFrom": [from]})).await;
    (redis, proxy, backend)
}

fn forwarded_for(backend: &Backend) -> String {
    let last = backend
        .requests()
        .pop()
        .expect("a request reached the backend");
    last.headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_peers_hand_over_the_client_address_with_v1_and_v2() {
    let (_redis, proxy, backend) = setup("127.0.0.0/8").await;
    let mut bytes = v1("203.0.113.7");
    bytes.extend(get("app.test"));
    assert_eq!(raw_status(&raw(proxy.addr(), &bytes).await), Some(200));
    assert_eq!(forwarded_for(&backend), "203.0.113.7");

    let mut bytes = v2([198, 51, 100, 9], 40001);
    bytes.extend(get("app.test"));
    assert_eq!(raw_status(&raw(proxy.addr(), &bytes).await), Some(200));
    assert_eq!(forwarded_for(&backend), "198.51.100.9");

    // A trusted peer that sends no header is closed unanswered: it would
    // make every client look like the load balancer.
    let before = backend.request_count();
    let (answer, closed) = raw_and_closed(proxy.addr(), &get("app.test")).await;
    assert!(closed && answer.is_empty(), "{answer:?}");
    assert_eq!(backend.request_count(), before);
    let s = scrape(proxy.admin_addr()).await;
    assert_eq!(s.value(names::PROXY_PROTOCOL_REFUSALS, &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_from_anyone_else_is_not_honoured() {
    // The load balancers are elsewhere: 127.0.0.1 is an ordinary client.
    let (_redis, proxy, backend) = setup("10.9.0.0/16").await;
    let mut bytes = v1("203.0.113.7");
    bytes.extend(get("app.test"));
    assert_eq!(raw_status(&raw(proxy.addr(), &bytes).await), Some(400));
    assert_eq!(backend.request_count(), 0);
    assert_eq!(
        raw_status(&raw(proxy.addr(), &get("app.test")).await),
        Some(200)
    );
    assert_eq!(forwarded_for(&backend), "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_lists_see_the_client_address() {
    let (redis, proxy, _backend) = setup("127.0.0.0/8").await;
    let backend = Backend::start("guarded").await;
    redis
        .set_routes(
            "guarded.test",
            &json!({"id": "guarded", "policies": {"ipAllowList": ["203.0.113.0/24"]},
                    "rules": [{"backends": [{"url": backend.url()}]}]}),
        )
        .await;
    for (client, status) in [("203.0.113.7", 200), ("198.51.100.1", 403)] {
        let mut bytes = v1(client);
        bytes.extend(get("guarded.test"));
        assert_eq!(
            raw_status(&raw(proxy.addr(), &bytes).await),
            Some(status),
            "{client}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_comes_before_the_tls_handshake() {
    let https =
        HttpsProxy::start_with(&["app.test"], json!({"proxyProtocolFrom": ["127.0.0.1"]})).await;
    let backend = Backend::start("app").await;
    https
        .redis
        .rpush_frontend("app.test", "app", &[backend.url()])
        .await;
    let resp = https
        .request_after(
            &v2([192, 0, 2, 44], 5555),
            "app.test",
            "GET",
            "/",
            "app.test",
            &[],
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(forwarded_for(&backend), "192.0.2.44");
}

/// A backend that expects a PROXY header (v1 or v2) at the start of every
/// connection, then answers each request on it with the client address
/// the header named, and counts its connections.
async fn proxy_aware_backend() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The header, by its own framing.
                let client = loop {
                    let Ok(n) = tcp.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.starts_with(b"PROXY ") {
                        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                            let line = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 2);
                            let f: Vec<&str> = line.split(' ').collect();
                            break format!("v1 {} {}", f[2], f[4]);
                        }
                    } else if buf.len() >= 16 && buf.starts_with(b"\r\n\r\n\0\r\nQUIT\n") {
                        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
                        if buf.len() >= 16 + len && len >= 12 {
                            let a = &buf[16..16 + len];
                            let ip = std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                            let port = u16::from_be_bytes([a[8], a[9]]);
                            buf.drain(..16 + len);
                            break format!("v2 {ip} {port}");
                        }
                    } else if buf.len() >= 16 {
                        let _ = tcp
                            .write_all(
                                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 9\r\n\r\nno header",
                            )
                            .await;
                        return;
                    }
                };
                // Then requests, until the connection closes.
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{client}",
                            client.len()
                        );
                        if tcp.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, connections)
}

/// A rule's `proxyProtocol` sends a PROXY header first on each backend
/// connection, naming the client (here the one a trusted load balancer's
/// header gave the proxy); such connections are never reused for another
/// request, since the header speaks of one client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_send_the_client_address_to_backends_with_v1_and_v2() {
    use std::sync::atomic::Ordering;
    let redis = RedisServer::start();
    let (backend, connections) = proxy_aware_backend().await;
    for (host, version) in [("v1.test", "v1"), ("v2.test", "v2")] {
        redis
            .set_routes(
                host,
                &hipache_tests::routes::document(
                    host,
                    json!([{"proxyProtocol": version, "backends": [{"url": format!("http://{backend}")}]}]),
                ),
            )
            .await;
    }
    let proxy = TestProxy::start(&redis.url(), json!({"proxyProtocolFrom": ["127.0.0.0/8"]})).await;
    for (host, version) in [("v1.test", "v1"), ("v2.test", "v2")] {
        let before = connections.load(Ordering::Relaxed);
        for _ in 0..3 {
            let mut bytes = v1("203.0.113.7");
            bytes.extend(get(host));
            let answer = raw(proxy.addr(), &bytes).await;
            assert_eq!(raw_status(&answer), Some(200), "{answer}");
            assert!(
                answer.ends_with(&format!("{version} 203.0.113.7 51234")),
                "the backend read the client from the header: {answer}"
            );
        }
        assert_eq!(
            connections.load(Ordering::Relaxed) - before,
            3,
            "one backend connection per request, none reused"
        );
    }
}
