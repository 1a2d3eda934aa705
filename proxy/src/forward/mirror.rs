//! `RequestMirror`: a copy of a request sent to another backend, its
//! answer discarded.
//!
//! A mirror never slows the client. The copy is sent from a task of its
//! own; its body is fed from the client's as the client's streams to the
//! real backend, through a bounded queue that is never waited on: when the
//! mirror falls behind by more than [`QUEUE_CHUNKS`] chunks, its copy is
//! abandoned (its body ends with an error, so the mirror backend sees an
//! aborted request, never a truncated one passed off as complete).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use hipache_schema::routes::Mirror;
use http::request::Parts;
use http::Request;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use rand::Rng;
use tokio::sync::mpsc;

use crate::shared::Shared;
use crate::upstream::pool::{BoxError, UpstreamBody};

/// Body chunks a mirror may lag behind the client before it is abandoned.
pub const QUEUE_CHUNKS: usize = 64;

/// The longest a mirrored copy may take, answer included, when
/// `server.tcpTimeout` sets no bound.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Feeds the client's body chunks to the mirrors' copies.
pub struct Tee {
    feeds: Vec<Feed>,
}

struct Feed {
    chunks: mpsc::Sender<Bytes>,
    abandoned: Arc<AtomicBool>,
}

impl Tee {
    /// Copies a chunk to every mirror still keeping up; a mirror whose
    /// queue is full is abandoned.
    fn copy(&mut self, chunk: &Bytes) {
        self.feeds
            .retain(|f| match f.chunks.try_send(chunk.clone()) {
                Ok(()) => true,
                Err(_) => {
                    f.abandoned.store(true, Ordering::Release);
                    false
                }
            });
    }

    /// Every copy still fed is abandoned.
    fn abandon(&mut self) {
        for f in self.feeds.drain(..) {
            f.abandoned.store(true, Ordering::Release);
        }
    }

    /// Wraps the client's body: its chunks are copied as they pass; its
    /// end ends the copies; its failure, or being dropped before its end
    /// (the client went away, the backend answered early), abandons them.
    pub fn body<B>(self, inner: B) -> Teed<B> {
        Teed { inner, tee: self }
    }
}

/// The client's body with a [`Tee`] on it.
pub struct Teed<B> {
    inner: B,
    tee: Tee,
}

impl<B> http_body::Body for Teed<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(chunk) = frame.data_ref() {
                    this.tee.copy(chunk);
                }
            }
            std::task::Poll::Ready(Some(Err(_))) => this.tee.abandon(),
            // The end: the copies' queues close with the body complete.
            std::task::Poll::Ready(None) => this.tee.feeds.clear(),
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Starts the copies of a request whose upstream head is `head` for the
/// mirrors that draw it (each by its share). `with_body`: the request has
/// a body, to be fed through the returned [`Tee`].
pub fn start(shared: &Shared, mirrors: &[Mirror], head: &Parts, with_body: bool) -> Option<Tee> {
    let mut feeds = Vec::new();
    for m in mirrors {
        if rand::rng().random_range(0..m.denominator.max(1)) >= m.numerator {
            continue;
        }
        let mut copy = Request::new(UpstreamBody::default());
        *copy.method_mut() = head.method.clone();
        *copy.uri_mut() = head.uri.clone();
        *copy.headers_mut() = head.headers.clone();
        let abandoned = Arc::new(AtomicBool::new(false));
        if with_body {
            let (chunks, rx) = mpsc::channel(QUEUE_CHUNKS);
            *copy.body_mut() = fed_body(rx, abandoned.clone());
            feeds.push(Feed {
                chunks,
                abandoned: abandoned.clone(),
            });
        }
        let pool = shared.pool.clone();
        let metrics = shared.metrics.clone();
        let backend = m.backend.clone();
        let limit = shared.config.tcp_timeout.unwrap_or(DEFAULT_TIMEOUT);
        tokio::spawn(async move {
            let sent = tokio::time::timeout(limit, async {
                let mut conn = pool.acquire(&backend).await.ok()?;
                let resp = conn.sender.try_send(copy).await.ok()?;
                resp.into_body().collect().await.ok()?;
                conn.release();
                Some(())
            });
            let outcome = match sent.await {
                Ok(Some(())) => "answered",
                _ if abandoned.load(Ordering::Acquire) => "abandoned",
                _ => "failed",
            };
            metrics.mirror(outcome);
        });
    }
    (!feeds.is_empty()).then_some(Tee { feeds })
}

/// A body of the chunks fed by a [`Tee`]; it fails when the copy was
/// abandoned, so that it is not taken for a complete body.
fn fed_body(rx: mpsc::Receiver<Bytes>, abandoned: Arc<AtomicBool>) -> UpstreamBody {
    let chunks = stream::unfold((rx, abandoned), |(mut rx, abandoned)| async move {
        match rx.recv().await {
            Some(chunk) => Some((Ok(Frame::data(chunk)), (rx, abandoned))),
            None if abandoned.load(Ordering::Acquire) => {
                let e: BoxError = "mirrored copy abandoned".into();
                Some((Err(e), (rx, abandoned)))
            }
            None => None,
        }
    });
    StreamBody::new(chunks).boxed_unsync()
}
