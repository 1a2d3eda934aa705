//! Listeners, the accept loop and client connections.
//!
//! Plain and TLS listeners share one accept loop: a TLS listener carries a
//! `TlsAcceptor`, and each of its connections is handshaken in its own
//! task (bounded by `tlsHandshakeTimeout`) before it is served exactly as a
//! plain one, by hyper-util's auto builder (HTTP/2 when the client speaks
//! it: ALPN `h2` or prior knowledge, HTTP/1.1 otherwise).
//!
//! Drain ([`Proxy::serve`] once its shutdown future completes): `/readyz`
//! answers 503 at once, the accept loops stop (in a worker, the shared
//! listening sockets stay open in the master and the other workers, so no
//! queued connection is lost), then, after [`FIRST_REQUEST_GRACE`] for
//! connections accepted at the last moment, hyper-util's `GracefulShutdown` sends
//! HTTP/2 GOAWAY, closes idle keep-alive connections and closes busy ones
//! after their in-flight request, all bounded by `drainTimeout`. Upgraded
//! tunnels (WebSocket) are not HTTP connections any more: they stay open
//! until the drain timeout ends, even when they are all that is left (a
//! WebSocket application gets the whole drain to finish its exchange, as
//! its HTTP neighbours do), then get a close frame (1001 "going away") and
//! are closed. A tunnel that ends on its own ends the wait early.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use tracing::Instrument;

use crate::admin;
use crate::config::{Config, Driver};
use crate::error::StartError;
use crate::forward::{self, ConnInfo};
use crate::shared::Shared;
use crate::tls;

/// Pending connections the kernel queues per listener.
pub const BACKLOG: i32 = 4096;

/// After the drain timeout, how long tunnels get to send their close frames
/// and see the other side's answer (each lingers for at most twice
/// [`forward::upgrade::CLOSE_LINGER`]).
pub const TUNNEL_CLOSE_GRACE: Duration = Duration::from_secs(3);

/// At the start of a drain, once accepting stopped, how long before idle
/// connections are closed: a connection accepted just before has had no
/// time to send its first request, and a client does not retry a request
/// on a new connection that the server closed unused. Busy and keep-alive
/// connections keep being served meanwhile; readiness is already false.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// A proxy with its listeners bound and its route store open.
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    http_addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
    admin: Option<TcpListener>,
    admin_addr: Option<SocketAddr>,
    /// The SNI store, kept alive here (its reload tasks stop when dropped).
    _certs: Option<Arc<tls::CertStore>>,
}

/// A bound socket; TLS ones carry their acceptor.
struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

/// Listening sockets, bound but not yet served: what the master of a
/// multi-process proxy passes to its workers (see [`crate::process`]).
#[derive(Debug)]
pub struct Listeners {
    /// One per `config.http` address, in order.
    pub http: Vec<std::net::TcpListener>,
    /// One per `config.https` listener, in order.
    pub https: Vec<std::net::TcpListener>,
    /// The admin listener, when there is one.
    pub admin: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds every listener of `config`: plain HTTP, HTTPS and admin.
    pub fn bind(config: &Config) -> Result<Self, StartError> {
        let bind =
            |addr: SocketAddr| listen(addr).map_err(|source| StartError::Bind { addr, source });
        let http = config
            .http
            .iter()
            .map(|&a| bind(a))
            .collect::<Result<_, _>>()?;
        let https = config
            .https
            .iter()
            .map(|l| bind(l.address))
            .collect::<Result<_, _>>()?;
        let admin = config.admin.map(bind).transpose()?;
        Ok(Self { http, https, admin })
    }
}

impl Proxy {
    /// Binds every configured listener and opens the route store. Must be
    /// called inside a tokio runtime.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let listeners = Listeners::bind(&config)?;
        Self::from_listeners(config, listeners).await
    }

    /// Builds the proxy around sockets that are already bound (by
    /// [`Listeners::bind`] in this process, or by a master): loads TLS
    /// certificates, opens the route store and the access log. Must be
    /// called inside a tokio runtime.
    pub async fn from_listeners(mut config: Config, bound: Listeners) -> Result<Self, StartError> {
        let mut listeners = Vec::new();
        let mut http_addrs = Vec::new();
        for (i, l) in bound.http.into_iter().enumerate() {
            let addr = config.http.get(i).copied().unwrap_or(UNSPECIFIED);
            let l = tokio_listener(l, addr)?;
            http_addrs.push(
                l.local_addr()
                    .map_err(|source| StartError::Bind { addr, source })?,
            );
            listeners.push(Listener { tcp: l, tls: None });
        }
        let (certs, https_addrs) = bind_https(&mut config, bound.https, &mut listeners)?;
        let (admin, admin_addr) = match bound.admin {
            Some(l) => {
                let addr = config.admin.unwrap_or(UNSPECIFIED);
                let l = tokio_listener(l, addr)?;
                let bound = l
                    .local_addr()
                    .map_err(|source| StartError::Bind { addr, source })?;
                (Some(l), Some(bound))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared::build(config).await?);
        Ok(Self {
            shared,
            listeners,
            http_addrs,
            https_addrs,
            admin,
            admin_addr,
            _certs: certs,
        })
    }

    /// The bound admin address (`/metrics`, `/healthz`, `/readyz`).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The bound plain-HTTP addresses (with real ports when 0 was asked).
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    /// The bound HTTPS addresses (with real ports when 0 was asked), in
    /// the order of the configuration.
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.https_addrs
    }

    /// Serves until `shutdown` completes, then drains (see the module
    /// documentation): returns once every connection and tunnel is done,
    /// at most the drain timeout plus [`TUNNEL_CLOSE_GRACE`] later.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let graceful = Arc::new(GracefulShutdown::new());
        let builder = Arc::new(connection_builder(&self.shared.config));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let draining = Arc::new(AtomicBool::new(false));
        let admin_task = self.admin.map(|l| {
            tracing::info!(address = %self.admin_addr.map(|a| a.to_string()).unwrap_or_default(), "listening (admin)");
            tokio::spawn(admin::serve(
                l,
                self.shared.metrics.clone(),
                self.shared.store.clone(),
                draining.clone(),
            ))
        });
        let mut accepts = Vec::new();
        for listener in self.listeners {
            let kind = if listener.tls.is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!(address = %listener.tcp.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening ({kind})");
            accepts.push(tokio::spawn(accept_loop(
                listener,
                self.shared.clone(),
                builder.clone(),
                graceful.clone(),
                stop_rx.clone(),
            )));
        }
        shutdown.await;
        draining.store(true, Ordering::Release);
        tracing::info!("shutting down: no longer accepting; draining connections");
        let _ = stop_tx.send(true);
        for a in accepts {
            let _ = a.await;
        }
        let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
        let drain = self.shared.config.drain_timeout;
        let deadline = tokio::time::Instant::now() + drain;
        // Connections accepted just before the accept loops stopped have
        // not sent their request yet: closing them now as idle would fail
        // a request that a client never retries on a fresh connection.
        tokio::time::sleep(FIRST_REQUEST_GRACE.min(drain)).await;
        // HTTP/2 connections get GOAWAY, idle HTTP/1 ones close, busy ones
        // close after their in-flight request.
        if tokio::time::timeout_at(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?drain, "drain timeout reached; closing remaining connections");
        }
        close_tunnels(&self.shared.tunnel_close, deadline).await;
        if let Some(t) = admin_task {
            t.abort();
        }
        Ok(())
    }
}

/// Once the drain's HTTP connections are done: upgraded tunnels stay open
/// until the drain deadline (they may end on their own), then get their
/// close frames (see [`forward::upgrade`]) and at most
/// [`TUNNEL_CLOSE_GRACE`] to finish.
async fn close_tunnels(close: &tokio::sync::watch::Sender<bool>, deadline: tokio::time::Instant) {
    let open = close.receiver_count();
    if open == 0 {
        return;
    }
    tracing::info!(
        tunnels = open,
        "waiting for upgraded tunnels until the drain timeout"
    );
    if tokio::time::timeout_at(deadline, close.closed())
        .await
        .is_ok()
    {
        return;
    }
    tracing::info!(
        tunnels = close.receiver_count(),
        "drain timeout: closing upgraded tunnels (WebSocket 1001 going away)"
    );
    let _ = close.send(true);
    if tokio::time::timeout(TUNNEL_CLOSE_GRACE, close.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            tunnels = close.receiver_count(),
            "tunnels did not close in time"
        );
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
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        // Rapid reset (CVE-2023-44487): streams a client opens and resets
        // before we answer count here; past the limit the connection is
        // closed with GOAWAY instead of the proxy doing unbounded work.
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        // CONTINUATION floods: a header block (HEADERS plus CONTINUATION
        // frames) larger than the HTTP/1 head limit is refused.
        .max_header_list_size(u32::try_from(config.max_header_size).unwrap_or(u32::MAX))
        .max_send_buf_size(H2_MAX_SEND_BUF);
    b
}

/// Concurrent streams per HTTP/2 connection (nginx's default is 128,
/// hyper's 200): enough for browsers, bounded for the proxy.
pub const H2_MAX_STREAMS: u32 = 128;
/// Streams reset by the client before being answered, tolerated at once.
pub const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the proxy had to reset because of client errors.
pub const H2_MAX_LOCAL_RESETS: usize = 1024;
/// Response bytes buffered per stream for a slow HTTP/2 client.
pub const H2_MAX_SEND_BUF: usize = 400 * 1024;

/// Binds every HTTPS listener and builds its TLS configuration; starts the
/// SNI certificate sources (directory, Redis) when there is one. Each
/// listener's address in `config` becomes the bound one, so that the rest
/// of the proxy (the HTTPS redirect) sees real ports.
fn bind_https(
    config: &mut Config,
    sockets: Vec<std::net::TcpListener>,
    listeners: &mut Vec<Listener>,
) -> Result<(Option<Arc<tls::CertStore>>, Vec<SocketAddr>), StartError> {
    if config.https.is_empty() {
        return Ok((None, Vec::new()));
    }
    let store = tls::CertStore::new();
    if let Some(dir) = &config.tls_dir {
        tls::dir::DirSource::new(dir.clone(), tls::provider()).spawn(&store);
    }
    if let Driver::Redis { read, .. } = &config.driver {
        let target = crate::redis_conn::Target {
            url: read.clone(),
            ca: config.redis_ca.clone(),
        };
        tls::redis::spawn(&target, &store, tls::provider()).map_err(StartError::Tls)?;
    }
    let mut addrs = Vec::new();
    for (l, tcp) in config.https.iter_mut().zip(sockets) {
        let addr = l.address;
        let default = tls::load_default(&l.cert, &l.key, &l.ca).map_err(|e| {
            StartError::Tls(format!(
                "listener {addr} ({}, {}): {e}",
                l.cert.display(),
                l.key.display()
            ))
        })?;
        let tcp = tokio_listener(tcp, addr)?;
        let bound = tcp
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let resolver = tls::Resolver::new(store.clone(), Some(default), bound.to_string());
        let server = tls::server_config(Arc::new(resolver))
            .map_err(|e| StartError::Tls(format!("listener {addr}: {e}")))?;
        l.address = bound;
        addrs.push(bound);
        listeners.push(Listener {
            tcp,
            tls: Some(TlsAcceptor::from(server)),
        });
    }
    Ok((Some(store), addrs))
}

async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Listener { tcp: listener, tls } = listener;
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
        let info = ConnInfo::new(peer, local, tls.is_some(), &shared.config);
        // Taken before a TLS handshake, so that a drain waits for it too.
        let watcher = graceful.watcher();
        match &tls {
            None => serve_connection(stream, info, shared.clone(), &builder, watcher),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let timeout = shared.config.tls_handshake_timeout;
                    match tls_handshake(&acceptor, stream, peer, timeout).await {
                        Some(stream) => {
                            shared.metrics.tls_handshakes.inc();
                            serve_connection(stream, info, shared, &builder, watcher);
                        }
                        None => shared.metrics.tls_handshake_failures.inc(),
                    }
                });
            }
        }
    }
}

/// The server side of a TLS handshake, bounded by `timeout`; failures
/// (scanners, old clients, timeouts) are expected, hence debug.
async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Option<Duration>,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let accept = acceptor.accept(stream);
    let result = match timeout {
        Some(t) => match tokio::time::timeout(t, accept).await {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!(peer = %peer, timeout = ?t, "TLS handshake timed out");
                return None;
            }
        },
        None => accept.await,
    };
    match result {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            None
        }
    }
}

/// Serves one client connection (plain or TLS) in its own task.
fn serve_connection<S>(
    stream: S,
    info: ConnInfo,
    shared: Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let metrics = shared.metrics.clone();
    let span = tracing::debug_span!("conn", peer = %info.peer, local = %info.local, tls = info.tls);
    let service = service_fn(move |req| forward::handle(shared.clone(), info, req));
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    let conn = watcher.watch(conn);
    metrics.connection_opened(info.tls);
    tokio::spawn(
        async move {
            if let Err(e) = conn.await {
                // Clients hang up, time out and send garbage all the time.
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            metrics.connection_closed(info.tls);
        }
        .instrument(span),
    );
}

/// Stands for a listener's configured address in errors when the config
/// has fewer addresses than sockets were passed (never in practice).
const UNSPECIFIED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// A bound socket handed to tokio (non-blocking, as tokio needs).
fn tokio_listener(l: std::net::TcpListener, addr: SocketAddr) -> Result<TcpListener, StartError> {
    l.set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(l))
        .map_err(|source| StartError::Bind { addr, source })
}

/// A listening socket with `SO_REUSEADDR`, IPv6 sockets IPv6-only (so
/// `0.0.0.0` and `::` can both be bound on one port).
pub fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
