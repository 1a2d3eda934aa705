//! The body of a response to a client: a page the proxy made, or a
//! backend's body streamed through. The latter returns its connection to
//! the pool and writes the access-log entry when it ends, so both see the
//! real byte count and the real end of the exchange.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::accesslog::{AccessLog, Entry};
use crate::metrics::Metrics;
use crate::upstream::pool::{BoxError, Conn};

pub enum ProxyBody {
    Full(Option<Bytes>),
    Upstream(Box<UpstreamBody>),
}

impl From<Bytes> for ProxyBody {
    fn from(b: Bytes) -> Self {
        ProxyBody::Full(Some(b))
    }
}

impl ProxyBody {
    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }
}

/// A backend's response body on its way to the client.
pub struct UpstreamBody {
    inner: Incoming,
    conn: Option<Conn>,
    log: Option<(AccessLog, Entry)>,
    metrics: std::sync::Arc<Metrics>,
    start: Instant,
    bytes: u64,
    /// A gRPC call whose status is still to come (in the trailers).
    grpc_pending: bool,
}

impl UpstreamBody {
    pub fn new(
        inner: Incoming,
        conn: Option<Conn>,
        log: Option<(AccessLog, Entry)>,
        metrics: std::sync::Arc<Metrics>,
        start: Instant,
    ) -> Self {
        Self {
            inner,
            conn,
            log,
            metrics,
            start,
            bytes: 0,
            grpc_pending: false,
        }
    }

    /// Counts the gRPC call's status when its trailers pass (or as missing
    /// if the body ends without them).
    pub fn with_grpc_status_pending(mut self) -> Self {
        self.grpc_pending = true;
        self
    }

    fn finish(&mut self, complete: bool) {
        if std::mem::take(&mut self.grpc_pending) {
            self.metrics.grpc_call(None);
        }
        if let Some(conn) = self.conn.take() {
            // A body cut short leaves the connection mid-response: drop it.
            if complete {
                conn.release();
            }
        }
        if let Some((log, mut entry)) = self.log.take() {
            entry.bytes = self.bytes;
            entry.total = self.start.elapsed();
            log.log(entry);
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(u) => match Pin::new(&mut u.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        u.bytes += d.len() as u64;
                        u.metrics.response_bytes.inc_by(d.len() as u64);
                    } else if let Some(t) = frame.trailers_ref().filter(|_| u.grpc_pending) {
                        if let Some(code) = super::grpc::status_of(t) {
                            u.grpc_pending = false;
                            u.metrics.grpc_call(Some(code));
                        }
                    }
                    if u.inner.is_end_stream() {
                        u.finish(true);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    u.finish(false);
                    Poll::Ready(Some(Err(e.into())))
                }
                Poll::Ready(None) => {
                    u.finish(true);
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Upstream(u) => u.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(u) => u.inner.size_hint(),
        }
    }
}
