//! Pooled HTTP/1.1 connections to backends, at most `maxSockets` in use
//! per backend.
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hipache_schema::BackendUrl;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
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

pub struct Pool {
    config: PoolConfig,
    hosts: Mutex<HashMap<BackendUrl, Arc<HostPool>>>,
}

struct HostPool {
    /// Oldest first: the connection idle longest is the surest to be ready.
    idle: Mutex<std::collections::VecDeque<(SendRequest<UpstreamBody>, Instant)>>,
    permits: Arc<Semaphore>,
}

/// A connection in use; it goes back to the pool with [`Conn::release`].
pub(crate) struct Conn {
    pub(crate) sender: SendRequest<UpstreamBody>,
    /// Came from the pool (so it may turn out to be closed).
    pub(crate) reused: bool,
    host: Arc<HostPool>,
    keep_alive: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(config: PoolConfig) -> Self {
        Self {
            config,
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
        });
        hosts.insert(backend.clone(), h.clone());
        h
    }

    /// A connection to `backend`: an idle pooled one, or a new one.
    pub async fn acquire(&self, backend: &BackendUrl) -> Result<Conn, ProxyError> {
        let host = self.host(backend);
        // A free slot is the common case: take it without arming a timer.
        let permit = match host.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(
                self.config.queue_timeout,
                host.permits.clone().acquire_owned(),
            )
            .await
            .map_err(|_| ProxyError::PoolTimeout)?
            .map_err(|_| ProxyError::PoolTimeout)?,
        };
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
                sender,
                reused: true,
                host,
                keep_alive: self.config.keep_alive,
                _permit: permit,
            });
        }
        let sender = self.connect(backend).await?;
        Ok(Conn {
            sender,
            reused: false,
            host,
            keep_alive: self.config.keep_alive,
            _permit: permit,
        })
    }

    /// A fresh connection, bypassing the idle list (after a pooled one
    /// turned out to be closed).
    pub async fn reconnect(&self, backend: &BackendUrl, conn: Conn) -> Result<Conn, ProxyError> {
        let sender = self.connect(backend).await?;
        Ok(Conn {
            sender,
            reused: false,
            ..conn
        })
    }

    async fn connect(&self, backend: &BackendUrl) -> Result<SendRequest<UpstreamBody>, ProxyError> {
        let stream = self.connect_tcp(backend).await?;
        match backend.scheme {
            hipache_schema::Scheme::Http => handshake(stream).await,
            hipache_schema::Scheme::Https => {
                let name = crate::tls::client::server_name(&backend.host).ok_or_else(|| {
                    ProxyError::Upstream(format!(
                        "{:?} is not a valid TLS server name",
                        backend.host
                    ))
                })?;
                let connect = TlsConnector::from(self.config.tls.clone()).connect(name, stream);
                let tls = match self.config.connect_timeout {
                    Some(t) => tokio::time::timeout(t, connect).await.map_err(|_| {
                        ProxyError::Upstream("TLS handshake with the backend timed out".into())
                    })?,
                    None => connect.await,
                }
                .map_err(|e| {
                    ProxyError::Upstream(format!("TLS handshake with the backend: {e}"))
                })?;
                handshake(tls).await
            }
        }
    }

    async fn connect_tcp(&self, backend: &BackendUrl) -> Result<TcpStream, ProxyError> {
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
        let Conn { sender, host, .. } = self;
        host.put_idle(sender, max);
    }
}
