//! The drain (what SIGTERM starts), in-process: readiness turns false at
//! once, in-flight requests complete, idle keep-alive connections close,
//! HTTP/2 clients get GOAWAY, WebSockets get a 1001 close frame when the
//! drain timeout ends, and `serve` returns within the drain timeout plus
//! slack.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hipache_tests::backend::Backend;
use hipache_tests::client::{Conn, Req};
use hipache_tests::metrics::admin_get;
use hipache_tests::proxy::TestProxy;
use hipache_tests::redis::RedisServer;
use hipache_tests::wait::{until, within};
use hipache_tests::ws::WsBackend;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// The backend's delay: requests are surely in flight when the drain starts.
const SLOW: Duration = Duration::from_millis(1000);
/// The drain timeout of these tests, in seconds.
const DRAIN_SECS: u64 = 2;
/// Beyond the drain timeout, how long `serve` may take to return (the
/// tunnels' close grace is 3 s).
const STOP_SLACK: Duration = Duration::from_secs(5);
/// Bound for one step of a test.
const STEP: Duration = Duration::from_secs(5);

async fn proxy_with(routes: &[(&str, String)]) -> (RedisServer, TestProxy) {
    let redis = RedisServer::start();
    for (host, url) in routes {
        redis
            .rpush_frontend(host, "app", std::slice::from_ref(url))
            .await;
    }
    let proxy =
        TestProxy::start_with_admin(&redis.url(), json!({"drainTimeout": DRAIN_SECS})).await;
    (redis, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_under_keep_alive_load_fails_no_request_started_before_it() {
    let slow = Backend::builder("slow").delay(SLOW).start().await;
    let fast = Backend::builder("fast")
        .delay(Duration::from_millis(50))
        .start()
        .await;
    let (_redis, mut proxy) =
        proxy_with(&[("slow.test", slow.url()), ("fast.test", fast.url())]).await;
    let addr = proxy.addr();
    let admin = proxy.admin_addr();
    assert_eq!(admin_get(admin, "/readyz").await.status, 200);

    // An idle keep-alive connection.
    let mut idle = Conn::open(addr).await.expect("connect");
    assert_eq!(
        idle.send(Req::get("fast.test", "/"))
            .await
            .expect("request")
            .status,
        200
    );

    // Slow requests in flight when the drain starts.
    let mut slow_tasks = Vec::new();
    for _ in 0..3 {
        slow_tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await.expect("connect");
            c.send(Req::get("slow.test", "/").timeout(STEP)).await
        }));
    }
    // Keep-alive load: each client reuses its connection until the proxy
    // closes it.
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for _ in 0..4 {
        let results = results.clone();
        load.push(tokio::spawn(async move {
            let Ok(mut c) = Conn::open(addr).await else {
                return;
            };
            loop {
                let start = Instant::now();
                let r = c.send(Req::get("fast.test", "/").timeout(STEP)).await;
                let ok = r.as_ref().is_ok_and(|r| r.status == 200);
                results.lock().expect("results").push((start, ok));
                if !ok || c.is_closed() {
                    return;
                }
            }
        }));
    }
    until("the slow requests reached the backend", STEP, || async {
        let n = slow.request_count();
        if n >= 3 {
            Ok(())
        } else {
            Err(format!("{n} slow requests"))
        }
    })
    .await;
    until("keep-alive load running", STEP, || async {
        let n = results.lock().expect("results").len();
        if n >= 12 {
            Ok(())
        } else {
            Err(format!("{n} requests done"))
        }
    })
    .await;

    let drain_start = Instant::now();
    proxy.begin_shutdown();
    until(
        "/readyz answers 503",
        Duration::from_millis(500),
        || async {
            let r = admin_get(admin, "/readyz").await;
            if r.status == 503 {
                Ok(())
            } else {
                Err(format!("{} {}", r.status, r.text()))
            }
        },
    )
    .await;
    for t in slow_tasks {
        let r = within("a slow request", STEP, t).await.expect("task");
        assert_eq!(r.expect("the in-flight request completes").status, 200);
    }
    within("the idle connection closes", STEP, async {
        while !idle.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for t in load {
        within("a load client", STEP, t).await.expect("load client");
    }
    let took = proxy
        .wait_stopped(Duration::from_secs(DRAIN_SECS) + STOP_SLACK)
        .await;
    assert!(
        took < Duration::from_secs(DRAIN_SECS),
        "no tunnel: the drain ends with its last request ({took:?})"
    );

    let results = results.lock().expect("results");
    assert!(results.len() >= 12, "the load ran: {}", results.len());
    // A request already sent when the drain began completes: hyper closes
    // a busy keep-alive connection after its response.
    let lost: Vec<_> = results
        .iter()
        .filter(|(start, ok)| *start + Duration::from_millis(20) < drain_start && !ok)
        .collect();
    assert!(
        lost.is_empty(),
        "requests started before the drain failed: {lost:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_client_gets_goaway_and_its_stream_completes() {
    let slow = Backend::builder("slow").delay(SLOW).start().await;
    let (_redis, mut proxy) = proxy_with(&[("h2.test", slow.url())]).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .expect("h2c handshake (prior knowledge)");
    let conn_task = tokio::spawn(conn);
    let req = || {
        http::Request::get("http://h2.test/")
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    let in_flight = sender.send_request(req());
    let in_flight = tokio::spawn(async move {
        let resp = in_flight.await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        Ok::<_, hyper::Error>(status)
    });
    until("the request reached the backend", STEP, || async {
        let n = slow.request_count();
        if n >= 1 {
            Ok(())
        } else {
            Err(format!("{n} requests"))
        }
    })
    .await;

    proxy.begin_shutdown();
    let status = within("the in-flight stream", STEP, in_flight)
        .await
        .expect("task")
        .expect("the stream opened before GOAWAY completes");
    assert_eq!(status, 200);
    // GOAWAY then close: the client's connection ends cleanly, and the
    // client refuses new streams.
    let ended = within("the HTTP/2 connection ends", STEP, conn_task)
        .await
        .expect("task");
    assert!(
        ended.is_ok(),
        "graceful close (GOAWAY), not an error: {ended:?}"
    );
    assert!(
        sender.is_closed() || sender.ready().await.is_err(),
        "no new stream after GOAWAY"
    );
    proxy
        .wait_stopped(Duration::from_secs(DRAIN_SECS) + STOP_SLACK)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_stays_open_then_gets_1001_when_the_drain_timeout_ends() {
    let backend = WsBackend::start().await;
    let (_redis, mut proxy) = proxy_with(&[("ws.test", backend.url())]).await;
    let mut req = format!("ws://{}/live", proxy.addr())
        .into_client_request()
        .expect("ws request");
    req.headers_mut()
        .insert("host", "ws.test".parse().expect("host"));
    let (mut ws, resp) = within(
        "WebSocket handshake",
        STEP,
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("handshake through the proxy");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("one")).await.expect("send");
    let echo = within("echo", STEP, ws.next()).await;
    assert_eq!(echo.expect("open").expect("frame"), Message::text("one"));

    let drain_start = Instant::now();
    proxy.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.send(Message::text("during the drain"))
        .await
        .expect("send");
    let echo = within("echo during the drain", STEP, ws.next()).await;
    assert_eq!(
        echo.expect("open").expect("frame"),
        Message::text("during the drain")
    );

    let frame = within(
        "a close frame",
        Duration::from_secs(DRAIN_SECS) + STEP,
        ws.next(),
    )
    .await
    .expect("a frame before the end of the stream")
    .expect("a valid frame");
    let at = drain_start.elapsed();
    match frame {
        Message::Close(Some(close)) => assert_eq!(close.code, CloseCode::Away),
        other => panic!("expected a close frame with 1001, got {other:?}"),
    }
    assert!(
        at >= Duration::from_secs(DRAIN_SECS) - Duration::from_millis(100),
        "the tunnel stayed open for the whole drain timeout: closed after {at:?}"
    );
    let stopped = proxy
        .wait_stopped(Duration::from_secs(DRAIN_SECS) + STOP_SLACK)
        .await;
    assert!(
        drain_start.elapsed() < Duration::from_secs(DRAIN_SECS) + STOP_SLACK,
        "{stopped:?}"
    );
}
