//! TLS with rustls (ring): the SNI certificate store and its sources, the
//! server configuration of HTTPS listeners, and the client configuration
//! for `https://` backends.
//!
//! # Layout
//! - [`certs`]: PEM into rustls certificates, with their SAN names.
//! - [`store`]: [`CertStore`] (SNI names from every source, read
//!   lock-free) and [`Resolver`] (one listener's default certificate plus
//!   the store), the `ResolvesServerCert` of a listener.
//! - [`dir`]: the certificate directory (`server.tlsDir`), rescanned.
//! - [`expiry`]: when served certificates expire (for the metrics).
//! - [`redis`]: `tls:<host>` hashes in Redis, the `tls` channel, rescans;
//!   its connections come from `crate::redis_conn`.
//! - [`client`]: TLS toward backends.
//!
//! Reloads swap `Arc`s: a handshake in progress and every established
//! connection keep the certificate they started with.

pub mod certs;
pub mod client;
pub mod dir;
pub mod expiry;
pub mod redis;
pub mod store;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use rustls::{ServerConfig, SupportedProtocolVersion};

pub use certs::CertError;
pub use client::client_config;
pub use store::{CertStore, Resolver};

/// TLS 1.3 and 1.2; 1.1 and older are refused (rustls cannot speak them).
pub const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// TLS 1.2 sessions kept for resumption by session id, per listener
/// (about 100 bytes each). TLS 1.3 and 1.2 tickets need no server memory.
pub const SESSION_CACHE_SIZE: usize = 16 * 1024;

/// The crypto provider: ring (aws-lc-rs would need cmake to build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration of one HTTPS listener: TLS 1.2 and 1.3, ALPN
/// `h2` then `http/1.1`, session resumption by ids and by tickets
/// (stateless, keys rotated by rustls every 6 hours).
pub fn server_config(resolver: Arc<Resolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// A listener's default certificate: its `cert` chain (plus its `ca`
/// files, appended as intermediates as OpenSSL did for Hipache) and `key`.
pub fn load_default(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &[std::path::PathBuf],
) -> Result<Arc<rustls::sign::CertifiedKey>, CertError> {
    let mut chain = certs::read(cert)?;
    for extra in ca {
        chain.push(b'\n');
        chain.extend(certs::read(extra)?);
    }
    let loaded = certs::load(&chain, &certs::read(key)?, &provider())?;
    Ok(loaded.key)
}
