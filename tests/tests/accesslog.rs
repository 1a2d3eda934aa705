//! The access log: Hipache's line format parsed field by field, bytes per
//! response, empty referer/agent, and reopening on SIGUSR1 (binary).

use std::path::Path;

use hipache_tests::backend::Backend;
use hipache_tests::client::{get, Req};
use hipache_tests::proxy::ProxyProcess;
use hipache_tests::redis::RedisServer;
use hipache_tests::setup;
use hipache_tests::wait::{until, DEFAULT_DEADLINE};
use serde_json::json;

/// One access-log line, split into its fields.
#[derive(Debug)]
struct Line {
    client: String,
    time: String,
    request: String,
    status: u16,
    bytes: u64,
    referer: String,
    agent: String,
    identifier: String,
    total: f64,
    backend: f64,
}

/// Parses `<ip> - - [time] "request" status bytes "referer" "agent" "id" total backend`.
fn parse_line(line: &str) -> Line {
    let fail = |why: &str| -> ! { panic!("access-log line {line:?}: {why}") };
    let (client, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| fail("no client field"));
    let rest = rest
        .strip_prefix("- - [")
        .unwrap_or_else(|| fail("expected `- - [` after the client"));
    let (time, rest) = rest
        .split_once("] ")
        .unwrap_or_else(|| fail("unterminated [time]"));
    let (request, rest) = quoted(rest).unwrap_or_else(|| fail("request is not quoted"));
    let mut words = rest.trim_start().splitn(3, ' ');
    let status = words
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail("status"));
    let bytes = words
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail("bytes"));
    let rest = words.next().unwrap_or_else(|| fail("nothing after bytes"));
    let (referer, rest) = quoted(rest).unwrap_or_else(|| fail("referer is not quoted"));
    let (agent, rest) =
        quoted(rest.trim_start()).unwrap_or_else(|| fail("user agent is not quoted"));
    let (identifier, rest) =
        quoted(rest.trim_start()).unwrap_or_else(|| fail("identifier is not quoted"));
    let mut times = rest.split_whitespace();
    let total = times
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail("total seconds"));
    let backend = times
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail("backend seconds"));
    assert!(
        times.next().is_none(),
        "access-log line {line:?}: extra fields at the end"
    );
    Line {
        client: client.to_owned(),
        time: time.to_owned(),
        request,
        status,
        bytes,
        referer,
        agent,
        identifier,
        total,
        backend,
    }
}

/// `"text" rest` into `(text, rest)`.
fn quoted(text: &str) -> Option<(String, &str)> {
    let inner = text.strip_prefix('"')?;
    let end = inner.find('"')?;
    Some((inner[..end].to_owned(), &inner[end + 1..]))
}

/// `dd/Mon/yyyy:hh:mm:ss +0000`.
fn assert_time_format(time: &str) {
    let bytes = time.as_bytes();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let ok = time.len() == 26
        && bytes[..2].iter().all(u8::is_ascii_digit)
        && bytes[2] == b'/'
        && months.contains(&&time[3..6])
        && bytes[6] == b'/'
        && bytes[7..11].iter().all(u8::is_ascii_digit)
        && bytes[11] == b':'
        && bytes[12..14].iter().all(u8::is_ascii_digit)
        && bytes[14] == b':'
        && bytes[15..17].iter().all(u8::is_ascii_digit)
        && bytes[17] == b':'
        && bytes[18..20].iter().all(u8::is_ascii_digit)
        && &time[20..] == " +0000";
    assert!(
        ok,
        "access-log time {time:?} is not dd/Mon/yyyy:hh:mm:ss +0000"
    );
}

/// Waits until `path` holds at least `count` complete lines; returns them.
async fn wait_lines(path: &Path, count: usize) -> Vec<String> {
    until(
        &format!("{count} line(s) in {}", path.display()),
        DEFAULT_DEADLINE,
        || async {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= count && text.ends_with('\n') {
                Ok(lines)
            } else {
                Err(format!("{text:?}"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_request_in_hipache_format() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = dir.path().join("access.log");
    let (redis, proxy) = setup(json!({"accessLog": log.to_str().expect("utf-8 path")})).await;
    let backend = Backend::start("logged-backend").await;
    redis
        .rpush_frontend("log.test", "log-identifier", &[backend.url()])
        .await;

    let resp = Req::get("log.test", "/some/path?x=1")
        .header("referer", "http://ref.example/page")
        .header("user-agent", "test-agent/1.0 (e2e)")
        .send(proxy.addr())
        .await
        .expect("request through the proxy");
    assert_eq!(resp.status, 200);

    let lines = wait_lines(&log, 1).await;
    assert_eq!(lines.len(), 1, "exactly one line per request: {lines:?}");
    let line = parse_line(&lines[0]);
    assert_eq!(line.client, "127.0.0.1", "client ip (plain IPv4)");
    assert_time_format(&line.time);
    assert_eq!(line.request, "GET /some/path?x=1 HTTP/1.1");
    assert_eq!(line.status, 200);
    assert_eq!(
        line.bytes,
        resp.body.len() as u64,
        "bytes are this response's body bytes"
    );
    assert_eq!(line.referer, "http://ref.example/page");
    assert_eq!(line.agent, "test-agent/1.0 (e2e)");
    assert_eq!(line.identifier, "log-identifier");
    assert!(
        line.total >= 0.0 && line.total < 10.0,
        "total seconds {}",
        line.total
    );
    assert!(
        line.backend >= 0.0 && line.backend <= line.total + 0.001,
        "backend seconds {} must not exceed total {}",
        line.backend,
        line.total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_referer_and_agent_print_empty() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = dir.path().join("access.log");
    let (redis, proxy) = setup(json!({"accessLog": log.to_str().expect("utf-8 path")})).await;
    let backend = Backend::start("b").await;
    redis
        .rpush_frontend("bare.test", "bare", &[backend.url()])
        .await;

    let resp = get(proxy.addr(), "bare.test", "/").await;
    assert_eq!(resp.status, 200);
    let lines = wait_lines(&log, 1).await;
    let line = parse_line(&lines[0]);
    assert!(
        lines[0].contains(r#" "" "" "bare" "#),
        "empty referer and agent print as \"\": {:?}",
        lines[0]
    );
    assert_eq!(line.referer, "");
    assert_eq!(line.agent, "");
    assert_eq!(line.bytes, 1, "body \"b\" is one byte");

    // A second request: a second line, with its own byte count.
    let second = get(proxy.addr(), "bare.test", "/again").await;
    let lines = wait_lines(&log, 2).await;
    assert_eq!(lines.len(), 2);
    let line = parse_line(&lines[1]);
    assert_eq!(line.request, "GET /again HTTP/1.1");
    assert_eq!(
        line.bytes,
        second.body.len() as u64,
        "bytes are per response, not per connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_log_file() {
    let redis = RedisServer::start();
    let backend = Backend::start("rot").await;
    redis
        .rpush_frontend("rot.test", "rot", &[backend.url()])
        .await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let proxy = ProxyProcess::start(
        &redis.url(),
        json!({"accessLog": log.to_str().expect("utf-8 path")}),
    )
    .await;

    assert_eq!(get(proxy.addr(), "rot.test", "/before").await.status, 200);
    wait_lines(&log, 1).await;
    std::fs::rename(&log, &rotated).expect("rotate the log");
    proxy.signal("USR1");

    // The reopen is asynchronous: requests may still land in the old file
    // until it happens, then must land in the new one.
    until(
        "a line in the reopened access.log",
        DEFAULT_DEADLINE,
        || async {
            let resp = get(proxy.addr(), "rot.test", "/after").await;
            assert_eq!(resp.status, 200);
            match std::fs::read_to_string(&log) {
                Ok(text) if text.contains("/after") => Ok(()),
                other => Err(format!("{other:?}; proxy output: {}", proxy.output())),
            }
        },
    )
    .await;
    let old = std::fs::read_to_string(&rotated).expect("read the rotated log");
    assert!(
        old.contains("GET /before HTTP/1.1"),
        "the rotated file keeps the old line: {old:?}"
    );
}
