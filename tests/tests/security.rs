//! Security: a request cannot route by one host while its backend is told
//! another, cannot hand a backend forwarding headers it forged, cannot
//! tunnel past the route table with an upgrade, and cannot read backend
//! addresses from debug headers unless its peer is allowed to.

use std::time::Duration;

use bytes::Bytes;
use hipache_tests::backend::{Backend, SwitchingBackend};
use hipache_tests::client::{raw, raw_status, Req};
use hipache_tests::setup;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_are_refused_and_reach_no_backend() {
    let (redis, proxy) = setup(json!({})).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    redis.rpush_frontend("a.sec.test", "a", &[a.url()]).await;
    redis.rpush_frontend("b.sec.test", "b", &[b.url()]).await;
    for hosts in [
        "Host: a.sec.test\r\nHost: b.sec.test\r\n",
        "Host: a.sec.test\r\nHost: a.sec.test\r\n",
        "Host: a.sec.test\r\nX-Other: 1\r\nhost: b.sec.test\r\n",
    ] {
        let answer = raw(
            proxy.addr(),
            format!("GET / HTTP/1.1\r\n{hosts}\r\n").as_bytes(),
        )
        .await;
        assert_eq!(raw_status(&answer), Some(400), "{hosts:?}: {answer:?}");
    }
    assert_eq!(
        a.request_count() + b.request_count(),
        0,
        "no backend reached"
    );
}

/// An HTTP/2 request over h2c (prior knowledge) with `:authority` from
/// `uri` and, when given, a `host` header.
async fn h2_get(proxy: std::net::SocketAddr, uri: &str, host: Option<&str>) -> http::StatusCode {
    let tcp = TcpStream::connect(proxy).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .expect("h2c handshake");
    tokio::spawn(conn);
    let mut req = http::Request::get(uri);
    if let Some(h) = host {
        req = req.header(http::header::HOST, h);
    }
    let resp = sender
        .send_request(req.body(Empty::new()).expect("request"))
        .await
        .expect("h2 response");
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_authority_and_host_must_agree() {
    let (redis, proxy) = setup(json!({})).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    redis.rpush_frontend("a.sec.test", "a", &[a.url()]).await;
    redis.rpush_frontend("b.sec.test", "b", &[b.url()]).await;
    let status = h2_get(proxy.addr(), "http://a.sec.test/", Some("b.sec.test")).await;
    assert_eq!(status, 400, ":authority a, host b");
    assert_eq!(
        a.request_count() + b.request_count(),
        0,
        "no backend reached"
    );

    let status = h2_get(proxy.addr(), "http://a.sec.test/", Some("A.sec.test")).await;
    assert_eq!(status, 200, "the same host in another case agrees");
    let status = h2_get(proxy.addr(), "http://a.sec.test/", None).await;
    assert_eq!(status, 200, ":authority alone");
    let seen = a.requests();
    assert_eq!(seen.len(), 2);
    for r in seen {
        assert_eq!(
            r.header_all("host"),
            vec!["a.sec.test"],
            "the backend is told the :authority that routed the request"
        );
    }
    assert_eq!(b.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_authority_is_the_host_the_backend_sees() {
    let (redis, proxy) = setup(json!({})).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    redis.rpush_frontend("a.sec.test", "a", &[a.url()]).await;
    redis.rpush_frontend("b.sec.test", "b", &[b.url()]).await;
    let answer = raw(
        proxy.addr(),
        b"GET http://b.sec.test/p?q=1 HTTP/1.1\r\nHost: a.sec.test\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), Some(200), "{answer:?}");
    assert_eq!(a.request_count(), 0, "a.sec.test's backend is not reached");
    let seen = b.last_request();
    assert_eq!(seen.uri, "/p?q=1", "origin form upstream");
    assert_eq!(seen.header_all("host"), vec!["b.sec.test"]);
    assert_eq!(seen.header("x-forwarded-host"), Some("b.sec.test"));
}

/// Forwarding headers that frameworks build URLs and client identities
/// from; none of them may come from an untrusted client.
const FORGED: &[(&str, &str)] = &[
    ("forwarded", "for=6.6.6.6;host=evil.example;proto=https"),
    ("x-forwarded-for", "6.6.6.6"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-server", "evil.example"),
    ("x-forwarded-prefix", "/evil"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-port", "443"),
    ("x-forwarded-ssl", "on"),
    ("x-forwarded-scheme", "https"),
    ("x-real-ip", "6.6.6.6"),
    ("x-original-url", "/admin"),
    ("x-rewrite-url", "/admin"),
    ("x-original-host", "evil.example"),
    ("true-client-ip", "6.6.6.6"),
    ("x-client-ip", "6.6.6.6"),
    ("x-forwarded-client-cert", "Hash=evil"),
    ("ssl-client-subject-dn", "CN=admin"),
];

fn forged(mut req: Req) -> Req {
    for (name, value) in FORGED {
        req = req.header(name, value);
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_untrusted_clients_are_ours_alone() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("fwd").await;
    redis
        .rpush_frontend("fwd.sec.test", "fwd", &[backend.url()])
        .await;
    let resp = forged(Req::get("Fwd.sec.test:8080", "/"))
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(resp.status, 200);
    let seen = backend.last_request();
    for (name, value) in FORGED {
        assert!(
            !seen.header_all(name).iter().any(|v| v == value),
            "{name}: {value} reached the backend: {:?}",
            seen.header_all(name)
        );
    }
    let port = proxy.addr().port().to_string();
    for (name, want) in [
        ("x-forwarded-for", "127.0.0.1"),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-protocol", "http"),
        ("x-forwarded-port", port.as_str()),
        ("x-forwarded-host", "Fwd.sec.test:8080"),
    ] {
        assert_eq!(seen.header_all(name), vec![want], "{name}");
    }
    for gone in [
        "forwarded",
        "x-forwarded-server",
        "x-forwarded-prefix",
        "x-forwarded-ssl",
        "x-forwarded-scheme",
        "x-original-url",
        "x-rewrite-url",
        "x-original-host",
        "true-client-ip",
        "x-client-ip",
        "x-forwarded-client-cert",
        "ssl-client-subject-dn",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} is removed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_header_of_our_own_when_configured() {
    let (redis, proxy) = setup(json!({"forwardedHeader": true})).await;
    let backend = Backend::start("fwd").await;
    redis
        .rpush_frontend("fwd.sec.test", "fwd", &[backend.url()])
        .await;
    let resp = forged(Req::get("fwd.sec.test:8080", "/"))
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(resp.status, 200);
    assert_eq!(
        backend.last_request().header_all("forwarded"),
        vec!["for=127.0.0.1;host=\"fwd.sec.test:8080\";proto=http"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_trusted_proxies_are_kept_and_appended() {
    let (redis, proxy) = setup(json!({
        "trustedProxies": ["127.0.0.1"],
        "forwardedHeader": true,
    }))
    .await;
    let backend = Backend::start("fwd").await;
    redis
        .rpush_frontend("fwd.sec.test", "fwd", &[backend.url()])
        .await;
    let resp = Req::get("fwd.sec.test", "/")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-host", "www.example.com")
        .header("x-forwarded-prefix", "/app")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=203.0.113.7;proto=https")
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(resp.status, 200);
    let seen = backend.last_request();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        vec!["203.0.113.7, 127.0.0.1"]
    );
    assert_eq!(seen.header("x-forwarded-host"), Some("www.example.com"));
    assert_eq!(seen.header("x-forwarded-prefix"), Some("/app"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        seen.header_all("forwarded"),
        vec!["for=203.0.113.7;proto=https, for=127.0.0.1;host=fwd.sec.test;proto=http"]
    );
}

/// What an h2c smuggling tool sends: an HTTP/1.1 request asking to
/// upgrade the connection to cleartext HTTP/2.
const H2C_UPGRADE: &str = "GET / HTTP/1.1\r\nHost: h2c.sec.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";

fn upgrade_headers(head: &str) -> Vec<String> {
    head.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("upgrade:")
                || l.starts_with("http2-settings:")
                || (l.starts_with("connection:") && l.contains("upgrade"))
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrades_are_never_relayed() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = SwitchingBackend::start().await;
    redis
        .rpush_frontend("h2c.sec.test", "h2c", &[backend.url()])
        .await;
    let answer = raw(proxy.addr(), H2C_UPGRADE.as_bytes()).await;
    assert_eq!(
        raw_status(&answer),
        Some(200),
        "answered as a plain request: {answer:?}"
    );
    assert!(answer.ends_with("plain"), "{answer:?}");
    let heads = backend.heads();
    assert_eq!(heads.len(), 1);
    assert_eq!(
        upgrade_headers(&heads[0]),
        Vec::<String>::new(),
        "the backend was not asked to upgrade"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_upgrades_only_when_listed() {
    let request =
        "GET / HTTP/1.1\r\nHost: up.sec.test\r\nConnection: Upgrade\r\nUpgrade: foo/1\r\n\r\n";
    // Not listed: a plain request.
    let (redis, proxy) = setup(json!({})).await;
    let backend = SwitchingBackend::start().await;
    redis
        .rpush_frontend("up.sec.test", "up", &[backend.url()])
        .await;
    let answer = raw(proxy.addr(), request.as_bytes()).await;
    assert_eq!(raw_status(&answer), Some(200), "{answer:?}");
    assert_eq!(upgrade_headers(&backend.heads()[0]), Vec::<String>::new());

    // Listed: relayed, and the tunnel carries bytes both ways.
    let (redis, proxy) = setup(json!({"upgradeProtocols": ["websocket", "foo"]})).await;
    let backend = SwitchingBackend::start().await;
    redis
        .rpush_frontend("up.sec.test", "up", &[backend.url()])
        .await;
    let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let echoed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let head = String::from_utf8_lossy(&seen).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head:?}");
        s.write_all(b"ping")
            .await
            .expect("write through the tunnel");
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).await.expect("echo");
        echo
    })
    .await
    .expect("tunnel within 10 s");
    assert_eq!(&echoed, b"ping");
    let head = &backend.heads()[0];
    assert!(
        upgrade_headers(head)
            .iter()
            .any(|l| l.eq_ignore_ascii_case("upgrade: foo/1")),
        "{head:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_nobody_asked_for_is_a_502() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = SwitchingBackend::always("h2c").await;
    redis
        .rpush_frontend("sw.sec.test", "sw", &[backend.url()])
        .await;
    // A plain request answered with a 101.
    let answer = raw(proxy.addr(), b"GET / HTTP/1.1\r\nHost: sw.sec.test\r\n\r\n").await;
    assert_eq!(raw_status(&answer), Some(502), "{answer:?}");
    // A WebSocket request switched to another protocol.
    let answer = raw(
        proxy.addr(),
        b"GET / HTTP/1.1\r\nHost: sw.sec.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), Some(502), "{answer:?}");
}

/// The `x-debug-*` headers of one answer.
fn debug_headers(resp: &hipache_tests::client::Resp) -> Vec<String> {
    resp.headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("x-debug-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_debug_is_honoured_only_from_allowed_peers() {
    // 192.0.2.0/24 (TEST-NET-1) is nobody here: the loopback client is
    // outside the allowed networks.
    let cases = [
        (json!({}), true, "loopback by default"),
        (
            json!({"debugFrom": ["192.0.2.0/24"]}),
            false,
            "outside debugFrom",
        ),
        (
            json!({"debugFrom": ["192.0.2.0/24"], "trustedProxies": ["127.0.0.1"]}),
            true,
            "a trusted proxy",
        ),
        (
            json!({"debugFrom": "any", "trustedProxies": []}),
            true,
            "Hipache's any",
        ),
    ];
    for (extra, allowed, what) in cases {
        let (redis, proxy) = setup(extra).await;
        let backend = Backend::start("dbg").await;
        redis
            .rpush_frontend("dbg.sec.test", "dbg", &[backend.url()])
            .await;
        let ok = Req::get("dbg.sec.test", "/")
            .header("x-debug", "1")
            .send(proxy.addr())
            .await
            .expect("request");
        assert_eq!(ok.status, 200, "{what}");
        let failed = Req::get("nobody.sec.test", "/")
            .header("x-debug", "1")
            .send(proxy.addr())
            .await
            .expect("request");
        assert_eq!(failed.status, 400, "{what}");
        if allowed {
            assert_eq!(
                ok.header("x-debug-backend-url"),
                Some(backend.url().as_str()),
                "{what}"
            );
            assert_eq!(
                failed.header("x-debug-error"),
                Some("no frontend"),
                "{what}"
            );
        } else {
            assert_eq!(debug_headers(&ok), Vec::<String>::new(), "{what}");
            assert_eq!(debug_headers(&failed), Vec::<String>::new(), "{what}");
        }
    }
}
