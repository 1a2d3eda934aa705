//! Pooled HTTP/1.1 connections to backends, at most `maxSockets` in use
//! per backend, and one multiplexed HTTP/2 connection per backend for the
//! rules that ask for it ([`Wire::Http2`]: a rule's `protocol` `h2`, `h2c`
//! or `grpc`): prior knowledge on `http://` backends, ALPN `h2` on
//! `https://` ones (falling back to HTTP/1.1 when the backend does not
//! offer it, remembered for that backend). The same `maxSockets` permits
//! bound the requests in flight on it; the backend's own
//! `SETTINGS_MAX_CONCURRENT_STREAMS` is respected by the HTTP/2 client,
//! which queues a request until a stream is free.
//!
//! We keep our own small pool instead of hyper-util's client because the
//! proxy must know whether a request has left: a connection is obtained
//! first (refusals and connect timeouts can then be retried on another
//! backend with the request and its body untouched), and a pooled
//! connection that turns out to be closed hands the request back
//! (`try_send_request`) so it is sent again on a fresh one.
//!
//! `https://` backends: TCP, then a TLS handshake (SNI and verification by
//! the backend's host name, ALPN `http/1.1`), then HTTP/1.1 as for plain
//! ones. Connections are pooled by backend URL, scheme included. A TLS
//! failure (bad certificate, handshake timeout) is an upstream error: 502,
//! neither retried nor a dead mark, because it is nearly always a
//! configuration problem shared by every backend of the frontend (a CA, a
//! name), and marking them all dead would hide it; refusals and connect
//! timeouts keep their meaning (retried, dead-marked).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hipache_schema::BackendUrl;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::{http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use crate::error::ProxyError;

/// The body of a request sent upstream.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a pooled connection may take to become ready for its next
/// request before another is used (normally it already is).
pub const READY_WAIT: Duration = Duration::from_millis(100);

/// Idle connections kept per backend at least, whatever is in use.
pub const MIN_IDLE: usize = 16;

/// Idle connections older than this are closed rather than reused: many
/// servers close idle keep-alive connections after 60 s or more, and a
/// reused connection that the backend is closing at that instant fails.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_sockets: usize,
    pub connect_timeout: Option<Duration>,
    /// How long a request waits for a free connection slot before 503.
    pub queue_timeout: Duration,
    /// Return connections to the pool after use.
    pub keep_alive: bool,
    /// TLS toward `https://` backends.
    pub tls: Arc<rustls::ClientConfig>,
}

/// How a request goes to its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Http1,
    /// HTTP/2 (prior knowledge, or ALPN `h2` over TLS).
    Http2,
}

pub struct Pool {
    config: PoolConfig,
    /// [`PoolConfig::tls`] offering `h2` before `http/1.1`.
    tls_h2: Arc<rustls::ClientConfig>,
    hosts: Mutex<HashMap<BackendUrl, Arc<HostPool>>>,
}

struct HostPool {
    /// Oldest first: the connection idle longest is the surest to be ready.
    idle: Mutex<std::collections::VecDeque<(SendRequest<UpstreamBody>, Instant)>>,
    permits: Arc<Semaphore>,
    /// The backend's HTTP/2 connection, shared by its requests; made by
    /// the first request that finds none (the others wait for it).
    h2: tokio::sync::Mutex<Option<http2::SendRequest<UpstreamBody>>>,
    /// The backend did not offer `h2` in ALPN: HTTP/1.1 it is.
    no_h2: AtomicBool,
}

/// The sending half of a connection to a backend.
pub(crate) enum Sender {
    Http1(SendRequest<UpstreamBody>),
    Http2(http2::SendRequest<UpstreamBody>),
}

impl Sender {
    /// Sends `req`; when it could not be sent at all, the error hands it
    /// back (see `try_send_request` of hyper's clients).
    pub(crate) async fn try_send(
        &mut self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<UpstreamBody>>> {
        match self {
            Sender::Http1(s) => s.try_send_request(req).await,
            // Boxed, as are the HTTP/2 connects below: their futures are
            // larger than HTTP/1's, and every request's future would carry
            // their size inline (hyper keeps a connection's request future
            // slot for the connection's life).
            Sender::Http2(s) => Box::pin(s.try_send_request(http2_request(req))).await,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }
}

/// The request as HTTP/2 sends it: the `Host` header becomes the
/// `:authority` (with the scheme, an absolute URI), the version HTTP/2.
/// Connection-specific headers are left to hyper, which drops them.
fn http2_request(mut req: Request<UpstreamBody>) -> Request<UpstreamBody> {
    let authority = req
        .headers_mut()
        .remove(http::header::HOST)
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok());
    if let Some(authority) = authority {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.authority = Some(authority);
        if parts.scheme.is_none() {
            parts.scheme = Some(http::uri::Scheme::HTTP);
        }
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    // gRPC servers want `te: trailers`, the one TE HTTP/2 allows (it was
    // removed with the other hop-by-hop headers).
    if crate::forward::grpc::is_grpc(req.headers()) {
        req.headers_mut()
            .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    *req.version_mut() = http::Version::HTTP_2;
    req
}

/// A connection in use; it goes back to the pool with [`Conn::release`].
pub(crate) struct Conn {
    pub(crate) sender: Sender,
    /// Came from the pool (so it may turn out to be closed).
    pub(crate) reused: bool,
    host: Arc<HostPool>,
    keep_alive: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(config: PoolConfig) -> Self {
        let mut h2 = (*config.tls).clone();
        h2.alpn_protocols = vec![
            crate::tls::ALPN_H2.to_vec(),
            crate::tls::ALPN_HTTP1.to_vec(),
        ];
        Self {
            config,
            tls_h2: Arc::new(h2),
            hosts: Mutex::default(),
        }
    }

    fn host(&self, backend: &BackendUrl) -> Arc<HostPool> {
        let mut hosts = self.hosts.lock();
        if let Some(h) = hosts.get(backend) {
            return h.clone();
        }
        let h = Arc::new(HostPool {
            idle: Mutex::default(),
            permits: Arc::new(Semaphore::new(self.config.max_sockets.max(1))),
            h2: tokio::sync::Mutex::new(None),
            no_h2: AtomicBool::new(false),
        });
        hosts.insert(backend.clone(), h.clone());
        h
    }

    /// A slot of `host`'s `maxSockets`, waiting at most the queue timeout.
    async fn permit(&self, host: &HostPool) -> Result<OwnedSemaphorePermit, ProxyError> {
        // A free slot is the common case: take it without arming a timer.
        match host.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(_) => tokio::time::timeout(
                self.config.queue_timeout,
                host.permits.clone().acquire_owned(),
            )
            .await
            .map_err(|_| ProxyError::PoolTimeout)?
            .map_err(|_| ProxyError::PoolTimeout),
        }
    }

    /// An HTTP/1.1 connection to `backend`: an idle pooled one, or a new
    /// one.
    pub async fn acquire(&self, backend: &BackendUrl) -> Result<Conn, ProxyError> {
        self.acquire_for(backend, Wire::Http1).await
    }

    /// A connection to `backend` for `wire`: for HTTP/2 the backend's
    /// shared connection (made when there is none, or it closed), unless
    /// the backend turned out to speak HTTP/1.1 only.
    pub async fn acquire_for(&self, backend: &BackendUrl, wire: Wire) -> Result<Conn, ProxyError> {
        let host = self.host(backend);
        let permit = self.permit(&host).await?;
        if wire == Wire::Http2 && !host.no_h2.load(Ordering::Relaxed) {
            let mut shared = host.h2.lock().await;
            if let Some(sender) = shared.as_ref().filter(|s| !s.is_closed()) {
                return Ok(Conn {
                    sender: Sender::Http2(sender.clone()),
                    reused: true,
                    host: host.clone(),
                    keep_alive: true,
                    _permit: permit,
                });
            }
            let sender = Box::pin(self.connect_h2(backend, &host, None)).await?;
            if let Sender::Http2(s) = &sender {
                *shared = Some(s.clone());
            }
            return Ok(Conn {
                sender,
                reused: false,
                host: host.clone(),
                keep_alive: self.config.keep_alive,
                _permit: permit,
            });
        }
        while let Some(mut sender) = host.take_idle() {
            // Released at the end of its last response, it may need a
            // moment for hyper to mark it ready for the next one.
            if !sender.is_ready()
                && !tokio::time::timeout(READY_WAIT, sender.ready())
                    .await
                    .is_ok_and(|r| r.is_ok())
            {
                continue;
            }
            return Ok(Conn {
                sender: Sender::Http1(sender),
                reused: true,
                host,
                keep_alive: self.config.keep_alive,
                _permit: permit,
            });
        }
        let sender = Sender::Http1(self.connect(backend, None).await?);
        Ok(Conn {
            sender,
            reused: false,
            host,
            keep_alive: self.config.keep_alive,
            _permit: permit,
        })
    }

    /// A connection of its own to `backend` that starts with `preamble` (a
    /// PROXY protocol header about this request's client): never pooled
    /// nor shared, since the header speaks of one client.
    pub async fn acquire_private(
        &self,
        backend: &BackendUrl,
        wire: Wire,
        preamble: &[u8],
    ) -> Result<Conn, ProxyError> {
        let host = self.host(backend);
        let permit = self.permit(&host).await?;
        let sender = match wire {
            Wire::Http2 => Box::pin(self.connect_h2(backend, &host, Some(preamble))).await?,
            Wire::Http1 => Sender::Http1(self.connect(backend, Some(preamble)).await?),
        };
        Ok(Conn {
            sender,
            reused: false,
            host,
            keep_alive: false,
            _permit: permit,
        })
    }

    /// A fresh connection, bypassing the idle list (after a pooled one
    /// turned out to be closed).
    pub async fn reconnect(&self, backend: &BackendUrl, conn: Conn) -> Result<Conn, ProxyError> {
        let sender = match &conn.sender {
            Sender::Http1(_) => Sender::Http1(self.connect(backend, None).await?),
            Sender::Http2(_) => {
                let mut shared = conn.host.h2.lock().await;
                let sender = Box::pin(self.connect_h2(backend, &conn.host, None)).await?;
                if let Sender::Http2(s) = &sender {
                    *shared = Some(s.clone());
                }
                sender
            }
        };
        Ok(Conn {
            sender,
            reused: false,
            ..conn
        })
    }

    /// A new HTTP/2 connection to `backend`: prior knowledge for
    /// `http://`, ALPN for `https://` (HTTP/1.1 when the backend does not
    /// choose `h2`, and from then on for that backend).
    async fn connect_h2(
        &self,
        backend: &BackendUrl,
        host: &HostPool,
        preamble: Option<&[u8]>,
    ) -> Result<Sender, ProxyError> {
        let stream = self.connect_tcp(backend, preamble).await?;
        match backend.scheme {
            hipache_schema::Scheme::Http => handshake_h2(stream).await.map(Sender::Http2),
            hipache_schema::Scheme::Https => {
                let tls = self.tls(backend, stream, self.tls_h2.clone()).await?;
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    handshake_h2(tls).await.map(Sender::Http2)
                } else {
                    host.no_h2.store(true, Ordering::Relaxed);
                    tracing::debug!(backend = %backend, "the backend does not offer h2: HTTP/1.1");
                    handshake(tls).await.map(Sender::Http1)
                }
            }
        }
    }

    async fn connect(
        &self,
        backend: &BackendUrl,
        preamble: Option<&[u8]>,
    ) -> Result<SendRequest<UpstreamBody>, ProxyError> {
        let stream = self.connect_tcp(backend, preamble).await?;
        match backend.scheme {
            hipache_schema::Scheme::Http => handshake(stream).await,
            hipache_schema::Scheme::Https => {
                let tls = self.tls(backend, stream, self.config.tls.clone()).await?;
                handshake(tls).await
            }
        }
    }

    /// The TLS handshake with `backend` on `stream`: SNI and verification
    /// by the backend's host name, within the connect timeout.
    async fn tls(
        &self,
        backend: &BackendUrl,
        stream: TcpStream,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProxyError> {
        let name = crate::tls::client::server_name(&backend.host).ok_or_else(|| {
            ProxyError::Upstream(format!("{:?} is not a valid TLS server name", backend.host))
        })?;
        let connect = TlsConnector::from(config).connect(name, stream);
        match self.config.connect_timeout {
            Some(t) => tokio::time::timeout(t, connect).await.map_err(|_| {
                ProxyError::Upstream("TLS handshake with the backend timed out".into())
            })?,
            None => connect.await,
        }
        .map_err(|e| ProxyError::Upstream(format!("TLS handshake with the backend: {e}")))
    }

    /// A TCP connection to `backend`, `preamble` written first (before
    /// TLS, as the PROXY protocol wants).
    async fn connect_tcp(
        &self,
        backend: &BackendUrl,
        preamble: Option<&[u8]>,
    ) -> Result<TcpStream, ProxyError> {
        let authority = backend.authority();
        let connect = TcpStream::connect(authority.as_str());
        let stream = match self.config.connect_timeout {
            Some(t) => tokio::time::timeout(t, connect)
                .await
                .map_err(|_| ProxyError::ConnectTimeout)?,
            None => connect.await,
        }
        .map_err(ProxyError::Connect)?;
        let _ = stream.set_nodelay(true);
        let mut stream = stream;
        if let Some(bytes) = preamble {
            tokio::io::AsyncWriteExt::write_all(&mut stream, bytes)
                .await
                .map_err(ProxyError::Connect)?;
        }
        Ok(stream)
    }
}

/// The HTTP/1.1 handshake on a connected stream; the connection is driven
/// by its own task.
async fn handshake<S>(stream: S) -> Result<SendRequest<UpstreamBody>, ProxyError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProxyError::Upstream(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "backend connection ended");
        }
    });
    Ok(sender)
}

/// The HTTP/2 handshake on a connected stream; the connection is driven
/// by its own task, and pinged while it has streams open so that a backend
/// gone silent is noticed.
async fn handshake_h2<S>(stream: S) -> Result<http2::SendRequest<UpstreamBody>, ProxyError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(20))
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProxyError::Upstream(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "backend HTTP/2 connection ended");
        }
    });
    Ok(sender)
}

impl HostPool {
    fn take_idle(&self) -> Option<SendRequest<UpstreamBody>> {
        let mut idle = self.idle.lock();
        while let Some((sender, since)) = idle.pop_front() {
            if since.elapsed() < IDLE_TIMEOUT && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<UpstreamBody>, max: usize) {
        let mut idle = self.idle.lock();
        if idle.len() < max {
            idle.push_back((sender, Instant::now()));
        }
    }
}

impl Conn {
    /// Returns the connection to the pool once its response is fully read
    /// (the next user waits, briefly, for hyper to mark it ready).
    pub fn release(self) {
        if !self.keep_alive || self.sender.is_closed() {
            return;
        }
        let max = (self.host.permits.available_permits() + 1).max(MIN_IDLE);
        // An HTTP/2 connection stays shared by the host: nothing to return.
        if let Conn {
            sender: Sender::Http1(sender),
            host,
            ..
        } = self
        {
            host.put_idle(sender, max);
        }
    }
}
