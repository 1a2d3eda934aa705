//! HTTPS listeners: each with its default certificate and a TLS acceptor
//! whose resolver picks SNI certificates from the store, fed by the
//! directory and Redis sources started here.

use std::sync::Arc;

use super::{tokio_listener, Listener};
use crate::config::{Config, Driver};
use crate::error::StartError;
use crate::tls;
use std::net::SocketAddr;
use tokio_rustls::TlsAcceptor;

/// Binds every HTTPS listener and builds its TLS configuration; starts the
/// SNI certificate sources (directory, Redis) when there is one. Each
/// listener's address in `config` becomes the bound one, so that the rest
/// of the proxy (the HTTPS redirect) sees real ports.
pub(super) fn bind(
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
        store.add_default(default.clone());
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
