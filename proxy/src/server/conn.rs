//! Client connections: the accept loop shared by plain and TLS listeners,
//! the PROXY protocol header of load balancers in `proxyProtocolFrom` (see
//! [`super::proxy_protocol`]), the TLS handshake (in its own task, bounded
//! by `tlsHandshakeTimeout`),
//! and each connection served by hyper-util's auto builder: HTTP/2 when the
//! client speaks it (ALPN `h2` or prior knowledge), HTTP/1.1 otherwise,
//! with the HTTP/2 limits that keep a client from making the proxy do
//! unbounded work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::{proxy_protocol, Listener};
use crate::config::Config;
use crate::forward::{self, ConnInfo};
use crate::shared::Shared;

/// The connection builder every client connection is served by.
pub fn builder(config: &Config) -> auto::Builder<TokioExecutor> {
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
    if config.http2_websocket {
        b.http2().enable_connect_protocol();
    }
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

pub(super) async fn accept_loop(
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
        let proxied = proxy_protocol::required(&shared.config.proxy_protocol_from, peer);
        // Taken before a header or a TLS handshake, so that a drain waits
        // for them too.
        let watcher = graceful.watcher();
        if tls.is_none() && !proxied {
            let info = ConnInfo::new(peer, local, false, &shared.config);
            serve_connection(stream, info, shared.clone(), &builder, watcher);
            continue;
        }
        let (tls, shared, builder) = (tls.clone(), shared.clone(), builder.clone());
        tokio::spawn(async move {
            let secure = tls.is_some();
            if !proxied {
                let info = ConnInfo::new(peer, local, secure, &shared.config);
                return start(stream, info, tls, shared, &builder, watcher).await;
            }
            let timeout = shared
                .config
                .tls_handshake_timeout
                .unwrap_or(proxy_protocol::DEFAULT_TIMEOUT);
            match proxy_protocol::accept(stream, peer, timeout).await {
                Ok((client, stream)) => {
                    let info = ConnInfo::new(client, local, secure, &shared.config);
                    start(stream, info, tls, shared, &builder, watcher).await
                }
                Err(e) => {
                    shared.metrics.proxy_protocol_refusals.inc();
                    tracing::debug!(peer = %peer, error = %e, "connection closed");
                }
            }
        });
    }
}

/// Serves a connection whose peer is known: after the TLS handshake on an
/// HTTPS listener.
async fn start<S>(
    stream: S,
    info: ConnInfo,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(acceptor) = tls else {
        return serve_connection(stream, info, shared, builder, watcher);
    };
    let timeout = shared.config.tls_handshake_timeout;
    match tls_handshake(&acceptor, stream, info.peer, timeout).await {
        Some(stream) => {
            shared.metrics.tls_handshakes.inc();
            serve_connection(stream, info, shared, builder, watcher);
        }
        None => shared.metrics.tls_handshake_failures.inc(),
    }
}

/// The server side of a TLS handshake, bounded by `timeout`; failures
/// (scanners, old clients, timeouts) are expected, hence debug.
async fn tls_handshake<S>(
    acceptor: &TlsAcceptor,
    stream: S,
    peer: SocketAddr,
    timeout: Option<Duration>,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
