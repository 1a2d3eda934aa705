//! gRPC through the proxy, end to end: a real tonic service behind a route
//! document whose rule says `"protocol": "grpc"` (HTTP/2 to the backend,
//! h2c), a real tonic client over h2c and over TLS (ALPN h2): unary,
//! server, client and bidirectional streaming (1,000 messages), trailers
//! both ways, a deadline that expires, a backend killed mid-stream, an
//! unknown host, and a retry past a backend that refuses connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hipache::metrics::names;
use hipache_tests::grpc::{self, GrpcServer, Msg};
use hipache_tests::https::HttpsProxy;
use hipache_tests::metrics::scrape;
use hipache_tests::proxy::TestProxy;
use hipache_tests::redis::RedisServer;
use hipache_tests::routes::document;
use http_body_util::BodyExt;
use serde_json::json;
use tonic::{Code, Request};

const HOST: &str = "grpc.test";

fn msg(text: &str) -> Msg {
    Msg {
        text: text.into(),
        ..Msg::default()
    }
}

/// A server-streaming `Count` of `n` messages, one every `delay_ms`.
async fn count(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    n: u32,
    delay_ms: u32,
) -> tonic::Streaming<Msg> {
    let req = Msg {
        n,
        delay_ms,
        ..msg("count")
    };
    client
        .server_streaming(Request::new(req), grpc::path(grpc::COUNT), grpc::codec())
        .await
        .expect("server streaming")
        .into_inner()
}

/// A grpc rule on `host` to `backends` (URLs).
async fn route(redis: &RedisServer, host: &str, backends: &[String]) {
    let backends: Vec<_> = backends.iter().map(|u| json!({"url": u})).collect();
    redis
        .set_routes(
            host,
            &document("grpc", json!([{"protocol": "grpc", "backends": backends}])),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_streaming_calls_over_h2c() {
    let redis = RedisServer::start();
    let server = GrpcServer::start("one").await;
    route(&redis, HOST, &[server.url()]).await;
    let proxy = TestProxy::start(&redis.url(), json!({})).await;
    let mut client = grpc::client(proxy.addr(), HOST, None).await;

    // Unary, with the server's trailing metadata relayed.
    let resp = grpc::unary(&mut client, msg("hello")).await.expect("unary");
    assert_eq!(
        resp.metadata()
            .get("x-served-by")
            .map(|v| v.to_str().unwrap()),
        Some("one")
    );
    let m = resp.into_inner();
    assert_eq!((m.text.as_str(), m.from.as_str()), ("hello", "one"));

    // Server streaming: each message as the server sends it.
    client.ready().await.expect("ready");
    let started = Instant::now();
    let mut stream = count(&mut client, 5, 100).await;
    let first = stream.message().await.expect("a message").expect("one");
    assert_eq!(first.n, 0);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "the first message came after {:?}: buffered until the end?",
        started.elapsed()
    );
    let mut n = 1;
    while let Some(m) = stream.message().await.expect("a message") {
        assert_eq!(m.n, n);
        n += 1;
    }
    assert_eq!(n, 5);
    // The status came in the trailers, relayed after the last message.
    assert!(stream.trailers().await.expect("trailers").is_some());

    // Client streaming.
    client.ready().await.expect("ready");
    let outbound = futures_util::stream::iter((1..=100u32).map(|n| Msg { n, ..msg("part") }));
    let sum = client
        .client_streaming(Request::new(outbound), grpc::path(grpc::SUM), grpc::codec())
        .await
        .expect("client streaming")
        .into_inner();
    assert_eq!((sum.text.as_str(), sum.n), ("100 messages", 5050));

    // Bidirectional, 1,000 messages, each answered before the next is sent.
    client.ready().await.expect("ready");
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    tx.send(Msg {
        n: 0,
        ..msg("ping")
    })
    .await
    .expect("send");
    let mut inbound = client
        .streaming(
            Request::new(outbound),
            grpc::path(grpc::CHAT),
            grpc::codec(),
        )
        .await
        .expect("bidirectional")
        .into_inner();
    for i in 0..1000u32 {
        let back = inbound.message().await.expect("an answer").expect("one");
        assert_eq!((back.n, back.from.as_str()), (i, "one"));
        if i < 999 {
            tx.send(Msg {
                n: i + 1,
                ..msg("ping")
            })
            .await
            .expect("send");
        }
    }
    drop(tx);
    assert!(inbound.message().await.expect("the end").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_bidirectional_calls_over_tls() {
    let https = HttpsProxy::start(&[HOST]).await;
    let server = GrpcServer::start("tls").await;
    route(&https.redis, HOST, &[server.url()]).await;
    let mut client = grpc::client(https.proxy.https_addr(), HOST, Some(https.client.clone())).await;
    let m = grpc::unary(&mut client, msg("over tls"))
        .await
        .expect("unary")
        .into_inner();
    assert_eq!((m.text.as_str(), m.from.as_str()), ("over tls", "tls"));
    client.ready().await.expect("ready");
    let outbound = futures_util::stream::iter((0..1000u32).map(|n| Msg { n, ..msg("x") }));
    let inbound = client
        .streaming(
            Request::new(outbound),
            grpc::path(grpc::CHAT),
            grpc::codec(),
        )
        .await
        .expect("bidirectional")
        .into_inner();
    let got: Vec<u32> = inbound.map(|m| m.expect("a message").n).collect().await;
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_errors_are_grpc_statuses() {
    let redis = RedisServer::start();
    let server = GrpcServer::start("slow").await;
    route(&redis, HOST, &[server.url()]).await;
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({})).await;

    // A call that succeeds: its grpc-status is in the trailers (the
    // backend's), not in the head.
    let ok = raw_call(proxy.addr(), HOST, msg("fine"), None).await;
    assert_eq!((ok.0, ok.1.as_deref()), (200, Some("0")), "{ok:?}");

    // An unknown host: NOT_FOUND, not an HTML page.
    let mut nowhere = grpc::client(proxy.addr(), "nowhere.test", None).await;
    let e = grpc::unary(&mut nowhere, msg("?"))
        .await
        .expect_err("no route");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("no frontend"), "{e:?}");

    // The proxy keeps the client's deadline: a backend slower than
    // `grpc-timeout` gets the call answered DEADLINE_EXCEEDED by the proxy.
    // Sent by hand (tonic's client would also time out by itself).
    let status = raw_call(
        proxy.addr(),
        HOST,
        Msg {
            delay_ms: 3000,
            ..msg("slow")
        },
        Some("300m"),
    )
    .await;
    assert_eq!(status.0, 200);
    assert_eq!(
        status.1.as_deref(),
        Some("4"),
        "DEADLINE_EXCEEDED: {status:?}"
    );
    assert!(
        status.2 < Duration::from_secs(2),
        "answered after {:?}",
        status.2
    );

    // No live backend: UNAVAILABLE.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    route(&redis, "gone.test", &[format!("http://{gone}")]).await;
    let mut client = grpc::client(proxy.addr(), "gone.test", None).await;
    let e = grpc::unary(&mut client, msg("?"))
        .await
        .expect_err("no backend");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    // Counted by class: the call that succeeded (its status in the
    // trailers), NOT_FOUND, and the two server-side failures.
    let s = scrape(proxy.admin_addr()).await;
    let calls = |class: &str| s.value(names::GRPC_CALLS, &[("grpc_class", class)]);
    assert_eq!(
        (
            calls("ok"),
            calls("client_error"),
            calls("server_error"),
            calls("missing")
        ),
        (1.0, 1.0, 2.0, 0.0)
    );
}

/// One gRPC unary call sent with hyper's HTTP/2 client, with
/// `grpc-timeout` when given: (HTTP status, grpc-status, elapsed).
async fn raw_call(
    proxy: std::net::SocketAddr,
    host: &str,
    m: Msg,
    timeout: Option<&str>,
) -> (u16, Option<String>, Duration) {
    let mut send = hipache_tests::client::h2c(proxy).await;
    let payload = prost::Message::encode_to_vec(&m);
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let mut req = http::Request::post(format!("http://{host}{}", grpc::UNARY))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = timeout {
        req = req.header("grpc-timeout", t);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .expect("request");
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = resp.status().as_u16();
    let head = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().expect("an ASCII status").to_owned());
    let collected = resp.into_body().collect().await.expect("the body");
    let trailer = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().expect("an ASCII status").to_owned());
    // One or the other: a trailers-only answer (the proxy's errors) or
    // a head, messages and trailers (a backend's answer).
    assert!(head.is_none() || trailer.is_none(), "grpc-status twice");
    (status, head.or(trailer), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_stream_ends_the_call_with_an_error() {
    let redis = RedisServer::start();
    let server = GrpcServer::start("doomed").await;
    route(&redis, HOST, &[server.url()]).await;
    let proxy = TestProxy::start(&redis.url(), json!({})).await;
    let mut client = grpc::client(proxy.addr(), HOST, None).await;
    client.ready().await.expect("ready");
    let mut stream = count(&mut client, 1000, 20).await;
    for i in 0..3 {
        assert_eq!(
            stream.message().await.expect("a message").expect("one").n,
            i
        );
    }
    server.kill();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the call ends within 5 s of the kill");
    let e = end.expect_err("the call fails: it did not end cleanly");
    assert_ne!(e.code(), Code::Ok, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_retried_past_a_backend_that_refuses() {
    let redis = RedisServer::start();
    let server = GrpcServer::start("up").await;
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    route(&redis, HOST, &[format!("http://{refused}"), server.url()]).await;
    let proxy = TestProxy::start(&redis.url(), json!({})).await;
    let mut client = grpc::client(proxy.addr(), HOST, None).await;
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..20 {
        let m = grpc::unary(&mut client, msg(&format!("call {i}")))
            .await
            .unwrap_or_else(|e| panic!("call {i} failed: {e:?}"))
            .into_inner();
        assert_eq!(m.from, "up");
        served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::Relaxed), 20);
}

/// Request trailers reach an HTTP/2 backend (`"protocol": "h2c"`, not
/// gRPC): a hyper backend answers with the trailer it read, in a trailer
/// of its own, which comes back to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_are_relayed_both_ways_over_h2c() {
    let redis = RedisServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let version = format!("{:?}", req.version());
                        let collected = req.into_body().collect().await?;
                        let got = collected
                            .trailers()
                            .and_then(|t| t.get("x-checksum"))
                            .map(|v| v.to_str().unwrap_or_default().to_owned())
                            .unwrap_or_default();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("x-seen", got.parse().unwrap());
                        let body = http_body_util::StreamBody::new(futures_util::stream::iter([
                            Ok::<_, std::convert::Infallible>(http_body::Frame::data(
                                bytes::Bytes::from(version),
                            )),
                            Ok(http_body::Frame::trailers(trailers)),
                        ]));
                        Ok::<_, hyper::Error>(http::Response::new(body))
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
            });
        }
    });
    redis
        .set_routes(
            "h2c.test",
            &document(
                "h2c",
                json!([{"protocol": "h2c", "backends": [{"url": format!("http://{backend}")}]}]),
            ),
        )
        .await;
    let proxy = TestProxy::start(&redis.url(), json!({})).await;
    let mut send = hipache_tests::client::h2c(proxy.addr()).await;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    let body = http_body_util::StreamBody::new(futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from_static(
            b"payload",
        ))),
        Ok(http_body::Frame::trailers(trailers)),
    ]));
    let req = http::Request::post("http://h2c.test/upload")
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("in time")
        .expect("an answer");
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let seen = collected.trailers().and_then(|t| t.get("x-seen")).cloned();
    assert_eq!(
        String::from_utf8(collected.to_bytes().to_vec()).unwrap(),
        "HTTP/2.0",
        "the backend was spoken to in HTTP/2"
    );
    assert_eq!(seen.as_ref().map(|v| v.to_str().unwrap()), Some("abc123"));
}
