//! Requests through a proxy, as a client sends them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::wait::until;

/// One request through the proxy: (status, body).
pub async fn get(proxy: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(proxy).await.ok()?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .body(Empty::new())
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Waits (bounded by `deadline`) until `host` `path` answers 200 with
/// `want`; how long that took.
pub async fn routes_to(
    proxy: SocketAddr,
    host: &str,
    path: &str,
    want: &str,
    deadline: Duration,
) -> Duration {
    let t0 = Instant::now();
    until(&format!("{host}{path} -> {want}"), deadline, || async {
        let (status, body) = get(proxy, host, path).await?;
        (status == 200 && body == want).then_some(())
    })
    .await;
    t0.elapsed()
}
