//! Listeners, the accept loop and client connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::accesslog::AccessLog;
use crate::config::Config;
use crate::error::ErrorPages;
use crate::forward::{self, ConnInfo, Shared};
use crate::routing::RouteStore;
use crate::upstream::{Pool, PoolConfig};

/// Pending connections the kernel queues per listener.
pub const BACKLOG: i32 = 4096;

/// How long a request waits for a free backend connection (when
/// `maxSockets` are all in use) before a 503.
pub const POOL_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// A proxy with its listeners bound and its route store open.
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    http_addrs: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("route store: {0}")]
    Routes(String),
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
}

impl Proxy {
    /// Binds every configured listener and opens the route store. Must be
    /// called inside a tokio runtime.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let mut listeners = Vec::new();
        let mut http_addrs = Vec::new();
        for &addr in &config.http {
            let l = listen(addr).map_err(|source| StartError::Bind { addr, source })?;
            http_addrs.push(
                l.local_addr()
                    .map_err(|source| StartError::Bind { addr, source })?,
            );
            listeners.push(l);
        }
        let store = RouteStore::open(&config)
            .await
            .map_err(StartError::Routes)?;
        let access_log = match &config.access_log {
            Some(target) => Some(AccessLog::open(target).map_err(StartError::AccessLog)?),
            None => None,
        };
        let pool = Pool::new(PoolConfig {
            max_sockets: config.max_sockets,
            connect_timeout: config.connect_timeout,
            queue_timeout: POOL_QUEUE_TIMEOUT,
            keep_alive: config.http_keep_alive,
        });
        let pages = ErrorPages::new(config.static_dir.clone());
        let shared = Arc::new(Shared {
            config,
            store,
            pool,
            pages,
            access_log,
        });
        Ok(Self {
            shared,
            listeners,
            http_addrs,
        })
    }

    /// The bound plain-HTTP addresses (with real ports when 0 was asked).
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    /// Serves until `shutdown` completes, then stops accepting and lets
    /// connections finish, for at most the drain timeout.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let graceful = Arc::new(GracefulShutdown::new());
        let builder = Arc::new(connection_builder(&self.shared.config));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut accepts = Vec::new();
        for listener in self.listeners {
            tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening (http)");
            accepts.push(tokio::spawn(accept_loop(
                listener,
                self.shared.clone(),
                builder.clone(),
                graceful.clone(),
                stop_rx.clone(),
            )));
        }
        shutdown.await;
        tracing::info!("shutting down: no longer accepting; draining connections");
        let _ = stop_tx.send(true);
        for a in accepts {
            let _ = a.await;
        }
        let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
        let drain = self.shared.config.drain_timeout;
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?drain, "drain timeout reached; closing remaining connections");
        }
        Ok(())
    }
}

fn connection_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    {
        let mut h1 = b.http1();
        h1.timer(TokioTimer::new())
            .keep_alive(true)
            .max_buf_size(config.max_header_size.max(8192))
            .max_headers(config.max_headers);
        if let Some(t) = config.tcp_timeout {
            h1.header_read_timeout(t);
        }
    }
    b.http2().timer(TokioTimer::new());
    b
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let info = ConnInfo {
            peer,
            local,
            tls: false,
        };
        let shared = shared.clone();
        let service = service_fn(move |req| forward::handle(shared.clone(), info, req));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "client connection ended with an error");
            }
        });
    }
}

/// A listening socket with `SO_REUSEADDR`, IPv6 sockets IPv6-only (so
/// `0.0.0.0` and `::` can both be bound on one port).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}
