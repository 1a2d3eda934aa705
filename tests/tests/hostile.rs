//! Hostile input: request smuggling attempts, open-proxy attempts, odd
//! hosts, malformed Redis entries. Each is answered (or refused) without
//! reaching a backend ambiguously, and the proxy keeps serving.

use std::time::Duration;

use hipache_tests::backend::Backend;
use hipache_tests::client::{get, raw_and_closed, raw_status, raw_within};
use hipache_tests::setup;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn smuggling_case(name: &str, request: &str) {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::builder("b").echo_body().start().await;
    redis
        .rpush_frontend("smuggle.test", "s", &[backend.url()])
        .await;
    let (answer, closed) = raw_and_closed(proxy.addr(), request.as_bytes()).await;
    assert_eq!(
        raw_status(&answer),
        Some(400),
        "{name}: expected 400, got {answer:?}"
    );
    assert!(closed, "{name}: the connection is closed after the 400");
    assert_eq!(
        answer.matches("HTTP/1.1").count(),
        1,
        "{name}: exactly one answer: {answer:?}"
    );
    for r in backend.requests() {
        assert!(
            r.uri != "/smuggled",
            "{name}: a smuggled request reached the backend"
        );
    }
    // Still serving.
    assert_eq!(
        get(proxy.addr(), "smuggle.test", "/").await.status,
        200,
        "{name}"
    );
}

/// Content-Length with Transfer-Encoding: chunked. hyper's parser applies
/// RFC 9112 §6.1 (chunked wins, Content-Length is discarded, the
/// connection is closed after the response), so the framing the backend
/// sees is unambiguous and whatever followed the chunked body is dropped
/// with the connection. The request is answered rather than refused; what
/// matters is that nothing is smuggled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_never_smuggled() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::builder("b").echo_body().start().await;
    redis
        .rpush_frontend("smuggle.test", "s", &[backend.url()])
        .await;
    let request = "POST / HTTP/1.1\r\nHost: smuggle.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: smuggle.test\r\n\r\n";
    let (answer, closed) = raw_and_closed(proxy.addr(), request.as_bytes()).await;
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "exactly one answer: {answer:?}"
    );
    assert!(closed, "the connection is closed after the answer");
    let seen = backend.requests();
    assert_eq!(seen.len(), 1, "one request reached the backend");
    assert_eq!(seen[0].uri, "/");
    assert_eq!(
        seen[0].header("content-length"),
        None,
        "no conflicting length forwarded"
    );
    assert_eq!(
        seen[0].body_len, 0,
        "the chunked body (empty) was forwarded, not 6 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_content_length_is_refused() {
    smuggling_case(
        "CL+CL",
        "POST / HTTP/1.1\r\nHost: smuggle.test\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: smuggle.test\r\n\r\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_fold_is_refused() {
    smuggling_case(
        "obs-fold",
        "GET / HTTP/1.1\r\nHost: smuggle.test\r\nX-Folded: a\r\n b\r\n\r\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunk_size_is_refused() {
    smuggling_case(
        "bad chunk",
        "POST / HTTP/1.1\r\nHost: smuggle.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: smuggle.test\r\n\r\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_other_than_chunked_is_refused() {
    smuggling_case(
        "TE gzip",
        "POST / HTTP/1.1\r\nHost: smuggle.test\r\nTransfer-Encoding: gzip\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: smuggle.test\r\n\r\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_and_absolute_uris_route_by_authority() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("b").await;
    redis
        .rpush_frontend("abs.test", "abs", &[backend.url()])
        .await;

    let answer = raw_within(
        proxy.addr(),
        b"CONNECT abs.test:443 HTTP/1.1\r\nHost: abs.test:443\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let status = raw_status(&answer);
    assert!(
        matches!(status, Some(400) | Some(405)),
        "CONNECT refused: {answer:?}"
    );
    assert_eq!(
        backend.request_count(),
        0,
        "CONNECT never reaches a backend"
    );

    // An absolute-form URI naming a host with no frontend is not an open
    // proxy: the lookup uses that authority, and finds nothing.
    let answer = raw_within(
        proxy.addr(),
        b"GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(raw_status(&answer), Some(400), "{answer:?}");
    // And one naming a configured frontend is routed to it, in origin form.
    let answer = raw_within(
        proxy.addr(),
        b"GET http://abs.test/x?y=1 HTTP/1.1\r\nHost: abs.test\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(raw_status(&answer), Some(200), "{answer:?}");
    assert_eq!(backend.last_request().uri, "/x?y=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_hosts_are_answered_without_panic() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("b").await;
    redis
        .rpush_frontend("odd.test", "odd", &[backend.url()])
        .await;
    redis.rpush_frontend("[::1]", "v6", &[backend.url()]).await;
    let cases: &[(&str, u16)] = &[
        ("ODD.TEST", 200),
        ("odd.test.", 200),
        ("odd.test:8080", 200),
        ("[::1]:80", 200),
        ("[::1", 400),
        ("odd test", 400),
        ("odd.test:99999", 400),
        ("xn--bcher-kva.example", 400),
        ("\u{7f}", 400),
        ("a..b", 400),
    ];
    for (host, want) in cases {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = raw_within(proxy.addr(), req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(
            raw_status(&answer),
            Some(*want),
            "Host {host:?}: {answer:?}"
        );
    }
    let answer = raw_within(
        proxy.addr(),
        b"GET / HTTP/1.1\r\nHost: b\xc3\xbccher.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(raw_status(&answer), Some(400), "non-ASCII host: {answer:?}");
    assert_eq!(get(proxy.addr(), "odd.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_redis_entries_do_not_break_routing() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("b").await;
    // A string where a list belongs: treated as absent, falls to `*`.
    let _: () = redis.query(&["SET", "frontend:string.test", "oops"]).await;
    let _: () = redis.query(&["HSET", "frontend:hash.test", "a", "b"]).await;
    redis
        .rpush_frontend("*", "catch-all", &[backend.url()])
        .await;
    assert_eq!(
        get(proxy.addr(), "string.test", "/").await.backend(),
        Some("b")
    );
    assert_eq!(
        get(proxy.addr(), "hash.test", "/").await.backend(),
        Some("b")
    );

    // A huge list: still routed.
    let mut huge: Vec<String> = (0..20_000)
        .map(|i| format!("http://10.255.{}.{}:1", i / 250, i % 250))
        .collect();
    huge.push(backend.url());
    let _: i64 = redis.query(&["DEL", "dead:huge.test"]).await;
    redis.rpush_frontend("huge.test", "huge", &huge).await;
    let dead: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    let mut sadd = vec!["SADD", "dead:huge.test"];
    sadd.extend(dead.iter().map(String::as_str));
    let _: i64 = redis.query(&sadd).await;
    assert_eq!(
        get(proxy.addr(), "huge.test", "/").await.backend(),
        Some("b")
    );

    // Dead sets of the wrong type, and members that are not numbers.
    redis
        .rpush_frontend("deadtype.test", "d", &[backend.url(), backend.url()])
        .await;
    let _: () = redis.query(&["SET", "dead:deadtype.test", "0"]).await;
    assert_eq!(get(proxy.addr(), "deadtype.test", "/").await.status, 200);
    redis
        .rpush_frontend("deadjunk.test", "d", &[backend.url()])
        .await;
    let _: i64 = redis
        .query(&[
            "SADD",
            "dead:deadjunk.test",
            "x",
            "-1",
            "99999999999999999999",
        ])
        .await;
    assert_eq!(get(proxy.addr(), "deadjunk.test", "/").await.status, 200);

    // Invalid URLs of every kind in one list, one valid.
    redis
        .rpush_frontend(
            "urls.test",
            "u",
            &[
                "ftp://x".to_owned(),
                "http://".to_owned(),
                "http://a:0".to_owned(),
                "http://a b".to_owned(),
                "".to_owned(),
                "\u{0}".to_owned(),
                backend.url(),
            ],
        )
        .await;
    for _ in 0..10 {
        assert_eq!(
            get(proxy.addr(), "urls.test", "/").await.backend(),
            Some("b")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_uri_is_414_and_oversized_head_431() {
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("b").await;
    redis
        .rpush_frontend("long.test", "l", &[backend.url()])
        .await;
    for (len, want) in [(10_000, 414), (100_000, 431)] {
        let path = "/".to_owned() + &"a".repeat(len);
        let req = format!("GET {path} HTTP/1.1\r\nHost: long.test\r\n\r\n");
        let answer = raw_within(proxy.addr(), req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(
            raw_status(&answer),
            Some(want),
            "{len}: {:?}",
            &answer[..answer.len().min(200)]
        );
    }
    assert_eq!(backend.request_count(), 0);
    assert_eq!(get(proxy.addr(), "long.test", "/ok").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_time_out() {
    let (_redis, proxy) = setup(json!({"tcpTimeout": 1})).await;
    let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: slow.test\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    // Keep dribbling a header byte every 300 ms: the head must still time out.
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            tokio::select! {
                r = s.read(&mut buf) => match r { Ok(0) | Err(_) => return true, Ok(_) => return true },
                _ = tokio::time::sleep(Duration::from_millis(300)) => {
                    if s.write_all(b"X").await.is_err() { return true; }
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a slowloris client is cut off");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut off after {:?}",
        started.elapsed()
    );
}
