//! The proxy's listeners and its life: bind, serve, drain.
//!
//! Plain and TLS listeners share one accept loop: a TLS listener carries a
//! `TlsAcceptor`, and each of its connections is handshaken in its own
//! task (bounded by `tlsHandshakeTimeout`) before it is served exactly as a
//! plain one, by hyper-util's auto builder (HTTP/2 when the client speaks
//! it: ALPN `h2` or prior knowledge, HTTP/1.1 otherwise).
//!
//! # Layout
//! - this file: [`Proxy`] (bind, build, serve until shutdown, then the
//!   drain of [`crate::shutdown`]) and [`Listeners`] (sockets bound before
//!   serving, as a master passes them to its workers).
//! - [`conn`]: the accept loop, TLS handshakes, and each client
//!   connection served by hyper-util's auto builder with its HTTP/1 and
//!   HTTP/2 settings (the HTTP/2 hardening limits).
//! - [`tls_listeners`]: HTTPS listeners: default certificates, the SNI
//!   certificate sources, TLS acceptors.

mod conn;
mod proxy_protocol;
mod tls_listeners;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::config::Config;
use crate::error::StartError;
use crate::shared::Shared;
use crate::status::StatusPage;
use crate::{shutdown, tls};

/// Pending connections the kernel queues per listener.
pub const BACKLOG: i32 = 4096;

/// A proxy with its listeners bound and its route store open.
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    http_addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
    admin: Option<TcpListener>,
    admin_addr: Option<SocketAddr>,
    /// The SNI store, kept alive here (its reload tasks stop when dropped);
    /// the admin listener reads when its certificates expire.
    certs: Option<Arc<tls::CertStore>>,
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
        let (certs, https_addrs) = tls_listeners::bind(&mut config, bound.https, &mut listeners)?;
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
            certs,
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
        let builder = Arc::new(conn::builder(&self.shared.config));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let draining = Arc::new(AtomicBool::new(false));
        let admin_task = self.admin.map(|l| {
            tracing::info!(address = %self.admin_addr.map(|a| a.to_string()).unwrap_or_default(), "listening (admin)");
            let status = StatusPage::new(
                &self.shared.config,
                self.shared.store.clone(),
                self.shared.metrics.clone(),
                self.certs.clone(),
                self.shared.backend_stats.clone(),
            );
            if status.is_some() {
                tracing::info!("status page on at /status of the admin listener");
            }
            tokio::spawn(admin::serve(
                l,
                self.shared.metrics.clone(),
                self.shared.store.clone(),
                self.certs.clone(),
                draining.clone(),
                status.map(Arc::new),
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
            accepts.push(tokio::spawn(conn::accept_loop(
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
        shutdown::drain(
            graceful,
            &self.shared.tunnel_close,
            self.shared.config.drain_timeout,
        )
        .await;
        if let Some(t) = admin_task {
            t.abort();
        }
        Ok(())
    }
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
