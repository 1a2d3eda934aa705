//! WebSocket through the proxy: routed like any request, forwarded headers,
//! frames both ways, errors answered with HTTP, tunnels surviving route
//! edits.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hipache_tests::backend::Backend;
use hipache_tests::client::get;
use hipache_tests::ws::WsBackend;
use hipache_tests::{refused_url, setup};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const STEP: Duration = Duration::from_secs(5);

async fn connect(
    addr: std::net::SocketAddr,
    host: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    WsError,
> {
    let mut req = format!("ws://{addr}/chat?room=1")
        .into_client_request()
        .expect("ws request");
    req.headers_mut()
        .insert("host", host.parse().expect("host header"));
    let (ws, resp) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req))
        .await
        .expect("WebSocket handshake within the deadline")?;
    assert_eq!(resp.status(), 101);
    Ok(ws)
}

async fn next(ws: &mut (impl StreamExt<Item = Result<Message, WsError>> + Unpin)) -> Message {
    tokio::time::timeout(STEP, ws.next())
        .await
        .expect("a frame within the deadline")
        .expect("stream still open")
        .expect("a valid frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_text_binary_ping_and_close() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = WsBackend::start().await;
    redis
        .rpush_frontend("ws.test", "chat", &[backend.url()])
        .await;

    let mut ws = connect(proxy.addr(), "ws.test")
        .await
        .expect("handshake through the proxy");
    ws.send(Message::text("hello")).await.expect("send text");
    assert_eq!(next(&mut ws).await, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));
    ws.send(Message::Ping(b"p".to_vec().into()))
        .await
        .expect("send ping");
    assert_eq!(next(&mut ws).await, Message::Pong(b"p".to_vec().into()));
    ws.close(None).await.expect("send close");
    let end = tokio::time::timeout(STEP, async {
        while let Some(m) = ws.next().await {
            if matches!(m, Ok(Message::Close(_)) | Err(_)) {
                return true;
            }
        }
        true
    })
    .await;
    assert!(end.is_ok(), "the close handshake completes");

    let hs = backend.handshakes();
    assert_eq!(hs.len(), 1);
    let header = |name: &str| {
        hs[0]
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("host").as_deref(),
        Some("ws.test"),
        "Host passed unchanged"
    );
    assert_eq!(header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(header("upgrade").as_deref(), Some("websocket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_survives_a_route_change() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = WsBackend::start().await;
    let other = Backend::start("other").await;
    redis
        .rpush_frontend("stay.test", "stay", &[backend.url()])
        .await;

    let mut ws = connect(proxy.addr(), "stay.test").await.expect("handshake");
    ws.send(Message::text("before")).await.expect("send");
    assert_eq!(next(&mut ws).await, Message::text("before"));

    // The route now points elsewhere, and then disappears altogether.
    redis
        .rpush_frontend("stay.test", "stay", &[other.url()])
        .await;
    assert_eq!(
        get(proxy.addr(), "stay.test", "/").await.backend(),
        Some("other")
    );
    let _: i64 = redis.query(&["DEL", "frontend:stay.test"]).await;

    ws.send(Message::text("after"))
        .await
        .expect("send after the edit");
    assert_eq!(
        next(&mut ws).await,
        Message::text("after"),
        "the established tunnel is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_is_502_and_proxy_keeps_serving() {
    let (redis, proxy) = setup(json!({})).await;
    redis
        .rpush_frontend("down.test", "down", &[refused_url()])
        .await;
    let backend = WsBackend::start().await;
    redis
        .rpush_frontend("up.test", "up", &[backend.url()])
        .await;

    match connect(proxy.addr(), "down.test").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 502),
        other => panic!("expected an HTTP 502 answer, got {other:?}"),
    }
    let mut ws = connect(proxy.addr(), "up.test")
        .await
        .expect("other WebSockets still work");
    ws.send(Message::text("x")).await.expect("send");
    assert_eq!(next(&mut ws).await, Message::text("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_is_retried_on_another() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = WsBackend::start().await;
    redis
        .rpush_frontend(
            "retry-ws.test",
            "retry",
            &[refused_url(), refused_url(), backend.url()],
        )
        .await;
    for _ in 0..5 {
        let mut ws = connect(proxy.addr(), "retry-ws.test")
            .await
            .expect("retried handshake");
        ws.send(Message::text("ok")).await.expect("send");
        assert_eq!(next(&mut ws).await, Message::text("ok"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_and_non_101_answers_are_http_responses() {
    let (redis, proxy) = setup(json!({})).await;
    match connect(proxy.addr(), "nowhere.test").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("expected an HTTP 400 answer, got {other:?}"),
    }
    let plain = Backend::builder("plain").status(404).start().await;
    redis
        .rpush_frontend("plain.test", "plain", &[plain.url()])
        .await;
    match connect(proxy.addr(), "plain.test").await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 404, "the backend's answer is relayed")
        }
        other => panic!("expected the backend's 404, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnel_outlives_the_request_timeout() {
    let (redis, proxy) = setup(json!({"tcpTimeout": 1})).await;
    let backend = WsBackend::start().await;
    redis
        .rpush_frontend("idle.test", "idle", &[backend.url()])
        .await;
    let mut ws = connect(proxy.addr(), "idle.test").await.expect("handshake");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ws.send(Message::text("still here"))
        .await
        .expect("send after idling");
    assert_eq!(next(&mut ws).await, Message::text("still here"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_idle_timeout_closes_silent_tunnels() {
    let (redis, proxy) = setup(json!({"tunnelIdleTimeout": 1})).await;
    let backend = WsBackend::start().await;
    redis
        .rpush_frontend("silent.test", "silent", &[backend.url()])
        .await;
    let mut ws = connect(proxy.addr(), "silent.test")
        .await
        .expect("handshake");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a silent tunnel is closed after tunnelIdleTimeout"
    );
}

/// An HTTP/2 client's WebSocket (RFC 8441): with `http2WebSocket` the
/// proxy advertises extended CONNECT; a `CONNECT` with `:protocol
/// websocket` reaches an HTTP/1.1 WebSocket backend as its opening
/// handshake, the client gets `200`, and messages flow both ways on the
/// HTTP/2 stream. Without the setting nothing is advertised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_reaches_an_http1_backend() {
    use tokio_tungstenite::tungstenite::protocol::Role;

    let backend = WsBackend::start().await;
    for enabled in [true, false] {
        let (redis, proxy) = setup(json!({"http2WebSocket": enabled})).await;
        redis
            .rpush_frontend("ws.test", "ws", &[backend.url()])
            .await;
        let tcp = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("connect");
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .expect("h2 handshake");
        // The server's SETTINGS come right after the handshake: the
        // connection is driven here until they did (or 500 ms passed).
        let mut conn = Box::pin(conn);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while !conn.is_extended_connect_protocol_enabled() {
            tokio::select! {
                _ = &mut conn => panic!("the connection ended"),
                () = tokio::time::sleep_until(deadline) => break,
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
        assert_eq!(conn.is_extended_connect_protocol_enabled(), enabled);
        tokio::spawn(conn);
        if !enabled {
            continue;
        }
        let mut req = http::Request::connect("http://ws.test/chat")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "chat")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let mut resp = send.send_request(req).await.expect("an answer");
        assert_eq!(resp.status(), 200);
        let stream = hyper::upgrade::on(&mut resp).await.expect("the stream");
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(stream),
            Role::Client,
            None,
        )
        .await;
        for i in 0..10 {
            ws.send(Message::text(format!("hello {i}")))
                .await
                .expect("send");
            assert_eq!(next(&mut ws).await, Message::text(format!("hello {i}")));
        }
        ws.close(None).await.expect("close");
        let handshake = backend
            .handshakes()
            .pop()
            .expect("the backend saw a handshake");
        let get = |name: &str| {
            handshake
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("upgrade").as_deref(), Some("websocket"));
        assert_eq!(get("sec-websocket-protocol").as_deref(), Some("chat"));
        assert!(get("sec-websocket-key").is_some(), "{handshake:?}");
    }
}
