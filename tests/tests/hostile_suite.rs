//! The hostile-input suite, by class: HTTP/1 framing, header names and
//! values, request targets, HTTP/2 frames and headers, WebSocket
//! handshakes. Every case asserts what the client gets and what the
//! backend received, or that it received nothing; after each class the
//! proxy still serves.
//!
//! HTTP/2 cases are written frame by frame (HPACK literals without Huffman
//! coding), since a real HTTP/2 client refuses to send malformed requests.

use std::net::SocketAddr;
use std::time::Duration;

use hipache_tests::backend::{Backend, RecordedRequest, SwitchingBackend};
use hipache_tests::client::{get, raw_and_closed, raw_status};
use hipache_tests::setup;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "hostile.test";

/// What the backend must have received for one case.
enum Reaches {
    /// Nothing at all.
    Nothing,
    /// Exactly one request, passing this check.
    One(fn(&RecordedRequest) -> Result<(), String>),
    /// Nothing, or one request whose body was cut off: the proxy found a
    /// bad body after the head had left, and aborted it.
    NothingComplete,
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    /// The status the client gets.
    status: u16,
    reaches: Reaches,
}

fn case(name: &'static str, request: impl Into<Vec<u8>>, status: u16, reaches: Reaches) -> Case {
    Case {
        name,
        request: request.into(),
        status,
        reaches,
    }
}

/// A request to [`HOST`] with these extra head lines and body.
fn req(method: &str, target: &str, lines: &str, body: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: {HOST}\r\n{lines}\r\n{body}").into_bytes()
}

fn body_is(r: &RecordedRequest, want: &[u8]) -> Result<(), String> {
    match &r.body {
        Some(b) if b.as_ref() == want && r.complete => Ok(()),
        other => Err(format!(
            "body {other:?} (complete: {}), want {:?}",
            r.complete,
            String::from_utf8_lossy(want)
        )),
    }
}

fn no_framing_headers(r: &RecordedRequest) -> Result<(), String> {
    match (r.header("content-length"), r.header("transfer-encoding")) {
        (Some(cl), _) if cl != "5" => Err(format!("content-length {cl}")),
        (_, Some(te)) if te != "chunked" => Err(format!("transfer-encoding {te}")),
        _ => Ok(()),
    }
}

async fn run_cases(cases: Vec<Case>) {
    let (redis, proxy) = setup(json!({"maxHeaderSize": "16KiB", "maxHeaders": 50})).await;
    let backend = Backend::builder("b").echo_body().start().await;
    redis.rpush_frontend(HOST, "h", &[backend.url()]).await;
    let mut failures = Vec::new();
    for c in cases {
        let before = backend.request_count();
        let (answer, _closed) = raw_and_closed(proxy.addr(), &c.request).await;
        let status = raw_status(&answer);
        if status != Some(c.status) {
            failures.push(format!(
                "{}: status {status:?}, want {}: {:?}",
                c.name,
                c.status,
                answer.chars().take(300).collect::<String>()
            ));
        }
        if answer.matches("HTTP/1.1 ").count() > 1 {
            failures.push(format!("{}: more than one answer: {answer:?}", c.name));
        }
        let seen: Vec<_> = backend.requests().into_iter().skip(before).collect();
        match (&c.reaches, seen.as_slice()) {
            (Reaches::Nothing, []) => {}
            (Reaches::Nothing, got) => failures.push(format!(
                "{}: the backend received {:?}",
                c.name,
                got.iter().map(|r| r.uri.clone()).collect::<Vec<_>>()
            )),
            (Reaches::One(check), [one]) => {
                if one.uri.contains("smuggled") {
                    failures.push(format!("{}: smuggled request reached the backend", c.name));
                }
                if let Err(e) = check(one) {
                    failures.push(format!("{}: {e}", c.name));
                }
            }
            (Reaches::NothingComplete, []) => {}
            (Reaches::NothingComplete, [one]) if !one.complete => {}
            (Reaches::NothingComplete, got) => failures.push(format!(
                "{}: the backend received {} requests, complete: {:?}",
                c.name,
                got.len(),
                got.iter().map(|r| r.complete).collect::<Vec<_>>()
            )),
            (Reaches::One(_), got) => failures.push(format!(
                "{}: the backend received {} requests: {:?}",
                c.name,
                got.len(),
                got.iter().map(|r| r.uri.clone()).collect::<Vec<_>>()
            )),
        }
    }
    assert_eq!(
        get(proxy.addr(), HOST, "/").await.status,
        200,
        "still serving"
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: hostile.test\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_framing() {
    use Reaches::*;
    let s = SMUGGLED;
    run_cases(vec![
        case("CL", req("POST", "/", "Content-Length: 5\r\n", "hello"), 200, One(|r| body_is(r, b"hello"))),
        case("CL+CL different", req("POST", "/", "Content-Length: 5\r\nContent-Length: 40\r\n", &format!("hello{s}")), 400, Nothing),
        case("CL list different", req("POST", "/", "Content-Length: 5, 40\r\n", &format!("hello{s}")), 400, Nothing),
        case("CL with sign", req("POST", "/", "Content-Length: +5\r\n", "hello"), 400, Nothing),
        case("CL negative", req("POST", "/", "Content-Length: -1\r\n", "hello"), 400, Nothing),
        case("CL overflow", req("POST", "/", "Content-Length: 99999999999999999999999\r\n", "hello"), 400, Nothing),
        case("CL not a number", req("POST", "/", "Content-Length: 5a\r\n", "hello"), 400, Nothing),
        case(
            "CL then TE chunked",
            req("POST", "/", "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", &format!("0\r\n\r\n{s}")),
            200,
            One(|r| {
                no_framing_headers(r)?;
                body_is(r, b"")
            }),
        ),
        case(
            "TE chunked then CL",
            req("POST", "/", "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", &format!("0\r\n\r\n{s}")),
            200,
            One(|r| body_is(r, b"")),
        ),
        case(
            "TE chunked",
            req("POST", "/", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            200,
            One(|r| body_is(r, b"hello")),
        ),
        case(
            "TE Chunked (case)",
            req("POST", "/", "Transfer-Encoding: Chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            200,
            One(|r| body_is(r, b"hello")),
        ),
        case("TE gzip (unknown, not chunked)", req("POST", "/", "Transfer-Encoding: gzip\r\n", s), 400, Nothing),
        case("TE chunked, gzip (chunked not last)", req("POST", "/", "Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"), 400, Nothing),
        case("TE gzip, chunked (unknown coding)", req("POST", "/", "Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501, Nothing),
        case("TE chunked, chunked", req("POST", "/", "Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n0\r\n\r\n"), 501, Nothing),
        case("TE chunked twice", req("POST", "/", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 501, Nothing),
        case("TE identity", req("POST", "/", "Transfer-Encoding: identity\r\n", s), 400, Nothing),
        case("TE xchunked", req("POST", "/", "Transfer-Encoding: xchunked\r\n", &format!("0\r\n\r\n{s}")), 400, Nothing),
        case("TE in HTTP/1.0", format!("POST / HTTP/1.0\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}").into_bytes(), 400, Nothing),
        case("obs-fold", req("GET", "/", "X-Folded: a\r\n b\r\n", ""), 400, Nothing),
        case("obs-fold of TE", req("POST", "/", "Transfer-Encoding:\r\n chunked\r\n", &format!("0\r\n\r\n{s}")), 400, Nothing),
        case("bare CR in a value", req("GET", "/", "X-A: a\rb\r\n", ""), 400, Nothing),
        case("bare CR line ending", format!("GET / HTTP/1.1\rHost: {HOST}\r\r").into_bytes(), 400, Nothing),
        case(
            "bare LF line endings",
            format!("GET /lf HTTP/1.1\nHost: {HOST}\nX-A: 1\n\n").into_bytes(),
            200,
            One(|r| match r.header("x-a") {
                Some("1") => Ok(()),
                other => Err(format!("x-a {other:?}")),
            }),
        ),
        case("chunk size overflow", req("POST", "/", "Transfer-Encoding: chunked\r\n", &format!("ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n{s}")), 400, NothingComplete),
        case("chunk size not hex", req("POST", "/", "Transfer-Encoding: chunked\r\n", &format!("zz\r\nhello\r\n0\r\n\r\n{s}")), 400, NothingComplete),
        case(
            "chunk extensions",
            req("POST", "/", "Transfer-Encoding: chunked\r\n", "5;name=value;x\r\nhello\r\n0;last\r\n\r\n"),
            200,
            One(|r| body_is(r, b"hello")),
        ),
        case(
            "forbidden trailers",
            req(
                "POST",
                "/",
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\nHost: evil.example\r\nContent-Length: 40\r\nTransfer-Encoding: gzip\r\n\r\n",
            ),
            200,
            One(|r| {
                body_is(r, b"hello")?;
                match r.header_all("host").as_slice() {
                    [h] if h == HOST => Ok(()),
                    other => Err(format!("host {other:?}")),
                }
            }),
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_and_values() {
    use Reaches::*;
    let big = "a".repeat(20 * 1024);
    let many: String = (0..60).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    run_cases(vec![
        case(
            "NUL in a value",
            req("GET", "/", "X-A: a\0b\r\n", ""),
            400,
            Nothing,
        ),
        case(
            "NUL in a name",
            req("GET", "/", "X-\0A: a\r\n", ""),
            400,
            Nothing,
        ),
        case(
            "CR in a name",
            req("GET", "/", "X-\rA: a\r\n", ""),
            400,
            Nothing,
        ),
        case(
            "non-ASCII in a name",
            req("GET", "/", "X-\u{e9}: a\r\n", ""),
            400,
            Nothing,
        ),
        case(
            "non-ASCII in a value (obs-text, relayed as sent)",
            req("GET", "/", "X-A: caf\u{e9}\r\n", ""),
            200,
            One(|r| match r.headers.get("x-a").map(|v| v.as_bytes()) {
                Some(b) if b == "caf\u{e9}".as_bytes() => Ok(()),
                other => Err(format!("x-a {other:?}")),
            }),
        ),
        case(
            "space before the colon",
            req("GET", "/", "X-A : a\r\n", ""),
            400,
            Nothing,
        ),
        case(
            "space before the colon of Host",
            format!("GET / HTTP/1.1\r\nHost : {HOST}\r\n\r\n").into_bytes(),
            400,
            Nothing,
        ),
        case("empty name", req("GET", "/", ": a\r\n", ""), 400, Nothing),
        case("no colon", req("GET", "/", "X-A a\r\n", ""), 400, Nothing),
        case(
            "oversize value",
            req("GET", "/", &format!("X-Big: {big}\r\n"), ""),
            431,
            Nothing,
        ),
        case("too many headers", req("GET", "/", &many, ""), 431, Nothing),
        case(
            "Host with a path",
            format!("GET / HTTP/1.1\r\nHost: {HOST}/x\r\n\r\n").into_bytes(),
            400,
            Nothing,
        ),
        case(
            "Host with userinfo",
            format!("GET / HTTP/1.1\r\nHost: evil@{HOST}\r\n\r\n").into_bytes(),
            400,
            Nothing,
        ),
        case(
            "Host with a space",
            format!("GET / HTTP/1.1\r\nHost: {HOST} x\r\n\r\n").into_bytes(),
            400,
            Nothing,
        ),
        case(
            "empty Host",
            b"GET / HTTP/1.1\r\nHost:\r\n\r\n".to_vec(),
            400,
            Nothing,
        ),
        case("no Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400, Nothing),
        case(
            "two Hosts",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nHost: {HOST}\r\n\r\n").into_bytes(),
            400,
            Nothing,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_targets() {
    use Reaches::*;
    run_cases(vec![
        case(
            "absolute form",
            format!("GET http://{HOST}/abs?x=1 HTTP/1.1\r\nHost: other.test\r\n\r\n").into_bytes(),
            200,
            One(|r| match (r.uri.as_str(), r.header("host")) {
                ("/abs?x=1", Some(HOST)) => Ok(()),
                other => Err(format!("{other:?}")),
            }),
        ),
        case(
            "absolute form without a path",
            format!("GET http://{HOST}?q HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes(),
            200,
            One(|r| match r.uri.as_str() {
                "/?q" => Ok(()),
                other => Err(format!("uri {other}")),
            }),
        ),
        case(
            "absolute form with userinfo",
            format!("GET http://evil@{HOST}/ HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes(),
            400,
            Nothing,
        ),
        case(
            "authority form",
            format!("GET {HOST}:80 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes(),
            400,
            Nothing,
        ),
        case(
            "CONNECT",
            format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n").into_bytes(),
            400,
            Nothing,
        ),
        case("asterisk form", req("OPTIONS", "*", "", ""), 400, Nothing),
        case(
            "no leading slash",
            req("GET", "admin", "", ""),
            400,
            Nothing,
        ),
        case("bad escape", req("GET", "/a%zz", "", ""), 400, Nothing),
        case("lone percent", req("GET", "/a%", "", ""), 400, Nothing),
        case("encoded NUL", req("GET", "/a%00b", "", ""), 400, Nothing),
        case(
            "dot segments",
            req("GET", "/a/./b/../c?q=/../x", "", ""),
            200,
            One(|r| match r.uri.as_str() {
                "/a/c?q=/../x" => Ok(()),
                other => Err(format!("uri {other}")),
            }),
        ),
        case(
            "space in the target",
            req("GET", "/a b", "", ""),
            400,
            Nothing,
        ),
        case(
            // Dropped by the parser: routed and forwarded as `/a`, the
            // same path for both.
            "fragment in the target",
            req("GET", "/a#frag", "", ""),
            200,
            One(|r| match r.uri.as_str() {
                "/a" => Ok(()),
                other => Err(format!("uri {other}")),
            }),
        ),
    ])
    .await;
}

/// `..`, escapes and doubled slashes cannot reach a path rule's backend
/// other than the one the backend itself resolves the path to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_against_path_routes() {
    let (redis, proxy) = setup(json!({})).await;
    let public = Backend::start("public").await;
    let admin = Backend::start("admin").await;
    let rest = Backend::start("rest").await;
    redis
        .rpush_frontend(
            "paths.test",
            "paths",
            &[
                format!("/public {}", public.url()),
                format!("=/admin {}", admin.url()),
                rest.url(),
            ],
        )
        .await;
    for (path, want_backend, want_path) in [
        ("/public/x", "public", "/public/x"),
        ("/public/../admin", "admin", "/admin"),
        ("/public/%2e%2e/admin", "admin", "/admin"),
        ("/public/%2E%2E/%2e/admin", "admin", "/admin"),
        ("/%61dmin", "admin", "/admin"),
        ("//admin", "admin", "/admin"),
        ("/admin/", "rest", "/admin/"),
        ("/admin/.", "rest", "/admin/"),
        ("/public/..%2fadmin", "public", "/public/..%2Fadmin"),
        ("/x/../../public", "public", "/public"),
        ("/publicity", "rest", "/publicity"),
    ] {
        let resp = get(proxy.addr(), "paths.test", path).await;
        assert_eq!(resp.served_by(), want_backend, "{path}");
        let seen = match want_backend {
            "public" => public.last_request(),
            "admin" => admin.last_request(),
            _ => rest.last_request(),
        };
        assert_eq!(seen.uri, want_path, "{path}: the path the backend sees");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshakes() {
    use Reaches::*;
    let ws = |lines: &str| {
        req(
            "GET",
            "/ws",
            &format!("Connection: Upgrade\r\nUpgrade: websocket\r\n{lines}"),
            "",
        )
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    run_cases(vec![
        case("no key", ws("Sec-WebSocket-Version: 13\r\n"), 400, Nothing),
        case("short key", ws("Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n"), 400, Nothing),
        case("key not base64", ws("Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\nSec-WebSocket-Version: 13\r\n"), 400, Nothing),
        case("two keys", ws(&format!("{key}{key}Sec-WebSocket-Version: 13\r\n")), 400, Nothing),
        case("no version", ws(key), 400, Nothing),
        case("version 8", ws(&format!("{key}Sec-WebSocket-Version: 8\r\n")), 426, Nothing),
        case(
            "POST",
            format!("POST /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{key}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n").into_bytes(),
            400,
            Nothing,
        ),
        case(
            "HTTP/1.0",
            format!("GET /ws HTTP/1.0\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n").into_bytes(),
            400,
            Nothing,
        ),
        // A valid handshake the (plain HTTP) backend does not switch: its
        // answer is relayed, and no tunnel opens.
        case(
            "not switched by the backend",
            ws(&format!("{key}Sec-WebSocket-Version: 13\r\n")),
            200,
            One(|r| match r.header("sec-websocket-key") {
                Some("dGhlIHNhbXBsZSBub25jZQ==") => Ok(()),
                other => Err(format!("key {other:?}")),
            }),
        ),
    ])
    .await;

    // The 426 names the version the handshake needs.
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("b").await;
    redis.rpush_frontend(HOST, "h", &[backend.url()]).await;
    let (answer, _) = raw_and_closed(
        proxy.addr(),
        &ws(&format!("{key}Sec-WebSocket-Version: 8\r\n")),
    )
    .await;
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{answer:?}"
    );

    // A backend that switches without answering the key is not tunnelled to.
    let switching = SwitchingBackend::start().await;
    redis
        .rpush_frontend("sw.hostile.test", "sw", &[switching.url()])
        .await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: sw.hostile.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"
    );
    let (answer, _) = raw_and_closed(proxy.addr(), request.as_bytes()).await;
    assert_eq!(raw_status(&answer), Some(502), "{answer:?}");
    assert_eq!(
        switching.heads().len(),
        1,
        "the handshake reached the backend once"
    );
}

/// HTTP/2 written by hand: frames and HPACK literal fields.
mod h2raw {
    use super::*;

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("frame length");
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn integer(out: &mut Vec<u8>, mut n: usize) {
        if n < 127 {
            out.push(n as u8);
            return;
        }
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128 + 128) as u8);
            n /= 128;
        }
        out.push(n as u8);
    }

    /// A header block of literal fields without indexing, names as given
    /// (upper case included).
    pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0);
            integer(&mut out, name.len());
            out.extend_from_slice(name.as_bytes());
            integer(&mut out, value.len());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// What became of stream 1.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Outcome {
        /// A response; its `:status` when the proxy sent it as an indexed
        /// field (200, 400, 404, 500), else 0.
        Answered(u16),
        /// RST_STREAM with this error code.
        Reset(u32),
        /// GOAWAY with this error code.
        GoAway(u32),
        /// The connection closed, or nothing came within the deadline.
        Closed,
    }

    /// A connection with the preface and an empty SETTINGS already sent.
    pub async fn open(addr: SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(PREFACE).await.expect("preface");
        s.write_all(&frame(SETTINGS, 0, 0, &[]))
            .await
            .expect("settings");
        s
    }

    /// Reads frames until stream 1 is answered or reset, or the
    /// connection goes away; bounded by `deadline`.
    pub async fn outcome(s: &mut TcpStream, deadline: Duration) -> Outcome {
        let read = async {
            loop {
                let mut head = [0u8; 9];
                if s.read_exact(&mut head).await.is_err() {
                    return Outcome::Closed;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; len];
                if s.read_exact(&mut payload).await.is_err() {
                    return Outcome::Closed;
                }
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let code = |at: usize| {
                    payload
                        .get(at..at + 4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                };
                match head[3] {
                    HEADERS if stream == 1 => {
                        let status = match payload.first() {
                            Some(0x88) => 200,
                            Some(0x8c) => 400,
                            Some(0x8d) => 404,
                            Some(0x8e) => 500,
                            _ => 0,
                        };
                        return Outcome::Answered(status);
                    }
                    RST_STREAM if stream == 1 => return Outcome::Reset(code(0)),
                    GOAWAY => return Outcome::GoAway(code(4)),
                    SETTINGS if head[4] & 1 == 0 => {
                        let _ = s.write_all(&frame(SETTINGS, 1, 0, &[])).await;
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(deadline, read)
            .await
            .unwrap_or(Outcome::Closed)
    }
}

/// HTTP/2 header fields, pseudo-headers included, in order.
type Fields<'a> = Vec<(&'a str, &'a str)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests() {
    use h2raw::*;
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("b").await;
    redis.rpush_frontend(HOST, "h", &[backend.url()]).await;
    let base = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", HOST),
        (":path", "/"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut f: Vec<(&str, &str)> = base.to_vec();
        f.extend_from_slice(extra);
        f
    };
    const PROTOCOL_ERROR: u32 = 0x1;
    let cases: Vec<(&str, Fields, Outcome)> = vec![
        ("valid", with(&[]), Outcome::Answered(200)),
        (
            "host agrees",
            with(&[("host", HOST)]),
            Outcome::Answered(200),
        ),
        (
            "host disagrees",
            with(&[("host", "other.test")]),
            Outcome::Answered(400),
        ),
        (
            "two host headers",
            with(&[("host", HOST), ("host", HOST)]),
            Outcome::Answered(400),
        ),
        (
            "userinfo in :authority",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "evil@hostile.test"),
                (":path", "/"),
            ],
            Outcome::Answered(400),
        ),
        (
            "connection header",
            with(&[("connection", "keep-alive")]),
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "upgrade header",
            with(&[("upgrade", "h2c")]),
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "transfer-encoding",
            with(&[("transfer-encoding", "chunked")]),
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "te other than trailers",
            with(&[("te", "gzip")]),
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "keep-alive",
            with(&[("keep-alive", "5")]),
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "uppercase name",
            with(&[("X-Upper", "1")]),
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "no :path",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", HOST),
            ],
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "no :method",
            vec![(":scheme", "http"), (":authority", HOST), (":path", "/")],
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "two :path",
            with(&[(":path", "/again")]),
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "pseudo-header after a regular one",
            vec![
                (":method", "GET"),
                ("x-a", "1"),
                (":scheme", "http"),
                (":authority", HOST),
                (":path", "/"),
            ],
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "unknown pseudo-header",
            with(&[(":evil", "1")]),
            Outcome::Reset(PROTOCOL_ERROR),
        ),
        (
            "empty :path",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", HOST),
                (":path", ""),
            ],
            Outcome::Reset(PROTOCOL_ERROR),
        ),
    ];
    let mut failures = Vec::new();
    for (name, fields, want) in cases {
        let before = backend.request_count();
        let mut s = open(proxy.addr()).await;
        let headers = frame(HEADERS, END_STREAM | END_HEADERS, 1, &block(&fields));
        s.write_all(&headers).await.expect("headers");
        let got = outcome(&mut s, Duration::from_secs(5)).await;
        // A malformed request may also end the whole connection.
        let acceptable = got == want
            || (matches!(want, Outcome::Reset(_))
                && matches!(got, Outcome::GoAway(PROTOCOL_ERROR)));
        if !acceptable {
            failures.push(format!("{name}: {got:?}, want {want:?}"));
        }
        let reached = backend.request_count() - before;
        let want_reached = usize::from(want == Outcome::Answered(200));
        if reached != want_reached {
            failures.push(format!("{name}: {reached} requests reached the backend"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    for r in backend.requests() {
        assert_eq!(r.header_all("host"), vec![HOST], "the routed host upstream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_is_cut_short() {
    use h2raw::*;
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::start("b").await;
    redis.rpush_frontend(HOST, "h", &[backend.url()]).await;
    let mut s = open(proxy.addr()).await;
    let first = block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", HOST),
        (":path", "/"),
    ]);
    let _ = s.write_all(&frame(HEADERS, END_STREAM, 1, &first)).await;
    let filler = "x".repeat(1000);
    let piece = block(&[("x-flood", filler.as_str())]);
    // Up to 50 MB of header block, never ended: the proxy must stop it long
    // before (its limit is the 64 KiB head limit).
    let mut sent = 0usize;
    let flood = async {
        for _ in 0..50_000 {
            if s.write_all(&frame(CONTINUATION, 0, 1, &piece))
                .await
                .is_err()
            {
                break;
            }
            sent += piece.len();
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), flood).await;
    let got = outcome(&mut s, Duration::from_secs(5)).await;
    assert!(
        matches!(
            got,
            Outcome::GoAway(_) | Outcome::Closed | Outcome::Reset(_) | Outcome::Answered(431)
        ),
        "{got:?}"
    );
    assert!(
        sent < 10_000_000,
        "the proxy read {sent} bytes of one header block"
    );
    assert_eq!(backend.request_count(), 0, "nothing reached the backend");
    assert_eq!(
        get(proxy.addr(), HOST, "/").await.status,
        200,
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_is_cut_short() {
    use h2raw::*;
    let (redis, proxy) = setup(json!({})).await;
    let backend = Backend::builder("slow")
        .delay(Duration::from_millis(200))
        .start()
        .await;
    redis.rpush_frontend(HOST, "h", &[backend.url()]).await;
    let mut s = open(proxy.addr()).await;
    let fields = block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", HOST),
        (":path", "/"),
    ]);
    const CANCEL: u32 = 0x8;
    let mut batch = Vec::new();
    for i in 0..2_000u32 {
        let id = 2 * i + 1;
        batch.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &fields));
        batch.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), s.write_all(&batch)).await;
    // The connection is told to go away (ENHANCE_YOUR_CALM) or closed.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 65536];
        let mut seen = Vec::new();
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was not closed within 10 s");
    let reached = backend.request_count();
    assert!(
        reached < 500,
        "{reached} of 2000 reset streams reached the backend"
    );
    assert_eq!(
        get(proxy.addr(), HOST, "/").await.status,
        200,
        "still serving"
    );
}
