//! Upgraded connections (WebSocket): the request is routed, forwarded,
//! dead-marked and retried like any other; after the backend's `101` both
//! directions are piped until one side closes.
//!
//! A tunnel holds no backend connection slot (`maxSockets` counts HTTP
//! exchanges, as Hipache's agent did), never reads Redis again, and is not
//! subject to the request timeout: only to the optional tunnel idle
//! timeout, which counts silence in both directions.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The `Upgrade` value of a request asking for one (`Connection: upgrade`
/// and an `Upgrade` header), to be forwarded after hop-by-hop removal.
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_says_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_says_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Puts the upgrade headers back on a request after hop-by-hop removal.
pub fn restore(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

/// What a finished tunnel reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct TunnelStats {
    pub to_client: u64,
    pub to_backend: u64,
}

/// Pipes the two upgraded connections until either side closes, or until
/// `idle_timeout` passes with no byte in either direction.
pub async fn tunnel(
    client: OnUpgrade,
    backend: OnUpgrade,
    idle_timeout: Option<Duration>,
) -> TunnelStats {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return TunnelStats::default();
        }
    };
    let start = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let mut client = Activity {
        io: TokioIo::new(client),
        start,
        last: activity.clone(),
    };
    let mut backend = Activity {
        io: TokioIo::new(backend),
        start,
        last: activity.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    let result = match idle_timeout {
        None => copy.await,
        Some(limit) => {
            tokio::pin!(copy);
            loop {
                let idle_since = start + Duration::from_millis(activity.load(Ordering::Relaxed));
                tokio::select! {
                    r = &mut copy => break r,
                    _ = tokio::time::sleep_until((idle_since + limit).into()) => {
                        let last = start + Duration::from_millis(activity.load(Ordering::Relaxed));
                        if last.elapsed() >= limit {
                            tracing::debug!(idle = ?limit, "tunnel idle timeout");
                            return TunnelStats::default();
                        }
                    }
                }
            }
        }
    };
    match result {
        Ok((to_backend, to_client)) => TunnelStats {
            to_client,
            to_backend,
        },
        Err(e) => {
            tracing::debug!(error = %e, "tunnel ended with an error");
            TunnelStats::default()
        }
    }
}

/// An I/O wrapper recording the time of the last byte moved, in
/// milliseconds since the tunnel started.
struct Activity<T> {
    io: T,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Activity<T> {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_upgrade_requests() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(requested(&h).expect("upgrade"), "websocket");
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(requested(&h).is_none());
    }
}
