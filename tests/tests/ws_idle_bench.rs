//! Benchmark, run on demand: 10,000 concurrent idle WebSockets through the
//! proxy (the real binary), and the proxy's memory per connection.
//!
//! ```sh
//! cargo build --release -p hipache --bin hipache
//! bash -c 'ulimit -n 65536; HIPACHE_TEST_BINARY=$PWD/target/release/hipache \
//!   cargo test -p hipache-tests --test ws_idle_bench -- --ignored --nocapture'
//! ```
//!
//! Each WebSocket holds two proxy sockets (client and backend side), and
//! this process holds both far ends: where the open-files limit cannot be
//! raised that far, the count is lowered to fit it (and printed);
//! `HIPACHE_WS_COUNT` sets it explicitly.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hipache_tests::proxy::ProxyProcess;
use hipache_tests::redis::RedisServer;
use hipache_tests::ws::WsBackend;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn rss_kib(pid: u32) -> u64 {
    hipache_tests::proxy::proc_status_field(pid, "VmRSS:")
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: 10,000 idle WebSockets; needs `ulimit -n 65536` (see the file's docs)"]
async fn ten_thousand_idle_websockets() {
    let limit = open_files_limit();
    let fits = (limit as usize).saturating_sub(1000) / 2;
    let count: usize = std::env::var("HIPACHE_WS_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000.min(fits));
    assert!(
        limit as usize >= count * 2 + 1000,
        "open files limit is {limit}: run under `ulimit -n 65536`"
    );
    println!("open files limit {limit}: {count} WebSockets");
    let redis = RedisServer::start();
    let backend = WsBackend::start().await;
    redis
        .rpush_frontend("ws.bench", "bench", &[backend.url()])
        .await;
    let proxy = ProxyProcess::start(&redis.url(), json!({"tcpTimeout": 30})).await;
    let addr = proxy.addr();
    // Warm up: one WebSocket, so lazily allocated state is counted as idle.
    let mut warm = connect(addr).await;
    warm.send(Message::text("warm")).await.expect("send");
    let _ = warm.next().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(proxy.pid());

    let started = Instant::now();
    let mut sockets = Vec::with_capacity(count);
    while sockets.len() < count {
        let batch = (count - sockets.len()).min(250);
        let opened = futures_util::future::join_all((0..batch).map(|_| connect(addr))).await;
        sockets.extend(opened);
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(proxy.pid());

    // They are all still alive: a sample round-trips.
    for ws in sockets.iter_mut().step_by(count / 20) {
        ws.send(Message::text("ping"))
            .await
            .expect("send on an idle WebSocket");
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        assert!(
            matches!(reply, Ok(Some(Ok(Message::Text(_))))),
            "an idle WebSocket still echoes"
        );
    }
    let per_conn = (after.saturating_sub(before) * 1024) / count as u64;
    println!(
        "{count} idle WebSockets opened in {:.1} s; proxy RSS {before} KiB before, {after} KiB after: {per_conn} bytes per WebSocket (two sockets each)",
        took.as_secs_f64()
    );
}

async fn connect(
    addr: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://{addr}/")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("host", "ws.bench".parse().expect("host"));
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("handshake within 30 s")
    .expect("handshake through the proxy");
    ws
}
