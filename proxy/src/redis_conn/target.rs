//! Where a Redis server is and how to open a connection to it.
//!
//! A [`Target`] is what the configuration says (a driver URL and the CA to
//! trust for `rediss://`); a [`Dialer`] is built from it once, at start, so
//! that a missing CA file or a bad URL is a start error, and then makes
//! every connection to that server. Redis Sentinel, or any other way of
//! finding the server, would change the [`Dialer`] alone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind,
    RedisConnectionInfo, RedisResult,
};
use tokio::sync::mpsc;

use super::timeouts::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::config::RedisUrl;

/// How to reach one Redis server: its URL, and for `rediss://` the CA to
/// trust (else the bundled web roots).
#[derive(Debug, Clone)]
pub struct Target {
    pub url: RedisUrl,
    pub ca: Option<PathBuf>,
}

/// A target that cannot be dialed at all (as opposed to one that is down).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The CA file (`server.redisCa`) cannot be read.
    #[error("{}: {source}", .path.display())]
    Ca {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The URL and CA do not make a Redis client.
    #[error("{redis}: {source}")]
    Client {
        /// The censored URL.
        redis: String,
        source: redis::RedisError,
    },
}

impl Target {
    /// A client for this target (RESP3 when `resp3`, for client tracking).
    fn client(&self, resp3: bool) -> Result<redis::Client, TargetError> {
        let client_error = |source| TargetError::Client {
            redis: self.url.censored(),
            source,
        };
        let info = connection_info(&self.url, resp3).map_err(client_error)?;
        let client = match (&self.ca, self.url.tls) {
            (Some(ca), true) => {
                let pem = std::fs::read(ca).map_err(|source| TargetError::Ca {
                    path: ca.clone(),
                    source,
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(info, certs)
            }
            _ => redis::Client::open(info),
        };
        client.map_err(client_error)
    }
}

/// Plain TCP or TLS, then AUTH (user and password) and SELECT, and the
/// protocol: RESP3 only when asked, since it needs Redis 6.
fn connection_info(url: &RedisUrl, resp3: bool) -> RedisResult<redis::ConnectionInfo> {
    let addr = if url.tls {
        ConnectionAddr::TcpTls {
            host: url.host.clone(),
            port: url.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(url.host.clone(), url.port)
    };
    let mut redis = RedisConnectionInfo::default().set_db(url.db);
    if let Some(user) = &url.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &url.password {
        redis = redis.set_password(password);
    }
    if resp3 {
        redis = redis.set_protocol(ProtocolVersion::RESP3);
    }
    Ok(addr.into_connection_info()?.set_redis_settings(redis))
}

/// RESP3 pushes of a tracking connection (invalidations, and the client
/// library's own `Disconnection` when the connection closes).
pub type Pushes = mpsc::UnboundedReceiver<PushInfo>;

/// Applies an invalidation push where the connection reads it, before any
/// reply that follows it on the connection is handed to its caller.
pub type InlinePushes = Arc<dyn Fn(&PushInfo) + Send + Sync>;

/// Makes the connections to one target, every one of them through
/// [`Dialer::multiplexed`] or [`Dialer::subscribe`].
#[derive(Clone)]
pub struct Dialer {
    client: redis::Client,
    /// A RESP2 client for when tracking is only preferred and the server
    /// refuses it (Redis before 6, or an ACL without `HELLO` or `CLIENT
    /// TRACKING`).
    untracked: Option<redis::Client>,
    redis: String,
    tracking: bool,
    inline: Option<InlinePushes>,
    /// Tracking in broadcast mode for keys with these prefixes (empty:
    /// the default mode, keys this connection read).
    broadcast: Vec<String>,
    /// Whether the refusal of tracking was logged.
    refusal_logged: Arc<AtomicBool>,
    response_timeout: Duration,
}

impl Dialer {
    /// The dialer of `target`. With `tracking`, connections speak RESP3 and
    /// turn on client tracking before they are handed out, so that no read
    /// made on them can miss its invalidation.
    pub fn new(target: &Target, tracking: bool) -> Result<Self, TargetError> {
        Ok(Self {
            client: target.client(tracking)?,
            untracked: None,
            redis: target.url.censored(),
            tracking,
            inline: None,
            broadcast: Vec::new(),
            refusal_logged: Arc::new(AtomicBool::new(false)),
            response_timeout: RESPONSE_TIMEOUT,
        })
    }

    /// A dialer whose connections track when the server allows it, and
    /// are plain RESP2 connections (no pushes) when it refuses.
    pub fn preferring_tracking(target: &Target) -> Result<Self, TargetError> {
        Ok(Self {
            untracked: Some(target.client(false)?),
            ..Self::new(target, true)?
        })
    }

    /// The same dialer with invalidation pushes applied by `inline` as the
    /// connection reads them (instead of being handed to the link's
    /// events): a reply read after an invalidation is never seen before
    /// the invalidation is applied.
    pub fn with_inline_pushes(self, inline: InlinePushes) -> Self {
        Self {
            inline: Some(inline),
            ..self
        }
    }

    /// The same dialer tracking in broadcast mode (`BCAST`): every write
    /// to a key under one of `prefixes` is pushed, whether this connection
    /// read it or not. Redis then keeps no table of the keys each
    /// connection read, so reads cost it nothing more than without
    /// tracking, and a restarted proxy leaves nothing behind in it.
    pub fn with_broadcast_prefixes(self, prefixes: Vec<String>) -> Self {
        Self {
            broadcast: prefixes,
            ..self
        }
    }

    /// The same dialer with another reply timeout than
    /// [`RESPONSE_TIMEOUT`] on its connections (and their probes).
    pub fn with_response_timeout(self, response_timeout: Duration) -> Self {
        Self {
            response_timeout,
            ..self
        }
    }

    /// The target's URL, censored: what logs may show.
    pub fn redis(&self) -> &str {
        &self.redis
    }

    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// One multiplexed connection, within [`CONNECT_TIMEOUT`]; with
    /// tracking, `CLIENT TRACKING ON` was answered and the pushes come
    /// with it. Pushes are `None` for a connection that does not track
    /// (tracking off, or only preferred and refused).
    pub async fn multiplexed(&self) -> RedisResult<(MultiplexedConnection, Option<Pushes>)> {
        let base = || {
            AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(self.response_timeout))
        };
        if !self.tracking {
            let conn = self
                .client
                .get_multiplexed_async_connection_with_config(&base())
                .await?;
            return Ok((conn, None));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let config = match &self.inline {
            Some(inline) => {
                let inline = inline.clone();
                base().set_push_sender(move |info: PushInfo| {
                    if info.kind == PushKind::Invalidate {
                        inline(&info);
                        Ok(())
                    } else {
                        tx.send(info).map_err(|_| ())
                    }
                })
            }
            None => base().set_push_sender(tx),
        };
        let tracked = async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let mut tracking = redis::cmd("CLIENT");
            tracking.arg("TRACKING").arg("ON");
            if !self.broadcast.is_empty() {
                tracking.arg("BCAST");
                for prefix in &self.broadcast {
                    tracking.arg("PREFIX").arg(prefix);
                }
            }
            tracking.query_async::<()>(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        match (tracked.await, &self.untracked) {
            (Ok(conn), _) => Ok((conn, Some(rx))),
            // Redis answered, and refused: a server that cannot track.
            (Err(e), Some(untracked)) if !is_transport(&e) => {
                if !self.refusal_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(redis = %self.redis, error = %e, "Redis refuses client tracking (RESP3 needs Redis 6, and an ACL user needs +hello and +client|tracking): every lookup reads Redis");
                }
                let conn = untracked
                    .get_multiplexed_async_connection_with_config(&base())
                    .await?;
                Ok((conn, None))
            }
            (Err(e), _) => Err(e),
        }
    }

    /// A pub/sub connection subscribed to `channel`, within
    /// [`CONNECT_TIMEOUT`] for the connection plus the reply timeout for
    /// the subscription.
    pub async fn subscribe(&self, channel: &str) -> RedisResult<PubSub> {
        let work = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok(pubsub)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT + self.response_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no subscription within the connect and response timeouts",
            )
            .into()),
        }
    }
}

/// An error of the way to the server (down, unreachable, cut, silent), as
/// opposed to an answer from it.
fn is_transport(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(tls: bool) -> RedisUrl {
        RedisUrl {
            tls,
            host: "127.0.0.1".into(),
            port: 6379,
            db: 2,
            username: Some("proxy".into()),
            password: Some("s3cret".into()),
            prefix: String::new(),
        }
    }

    #[test]
    fn a_missing_ca_is_a_start_error_naming_the_file() {
        let target = Target {
            url: url(true),
            ca: Some("/nonexistent/ca.pem".into()),
        };
        let e = Dialer::new(&target, false).err().expect("an error");
        assert!(matches!(e, TargetError::Ca { .. }), "{e:?}");
        assert!(e.to_string().starts_with("/nonexistent/ca.pem: "), "{e}");
    }

    #[test]
    fn the_ca_is_only_read_for_tls() {
        let target = Target {
            url: url(false),
            ca: Some("/nonexistent/ca.pem".into()),
        };
        let dialer = Dialer::new(&target, true).expect("plain Redis needs no CA");
        assert!(dialer.tracking);
        assert_eq!(dialer.response_timeout(), RESPONSE_TIMEOUT);
        assert!(!dialer.redis().contains("s3cret"), "{}", dialer.redis());
    }

    #[test]
    fn connection_info_carries_auth_db_and_protocol() {
        let info = connection_info(&url(false), true).expect("info");
        let redis = info.redis_settings();
        assert_eq!(redis.db(), 2);
        assert_eq!(redis.username(), Some("proxy"));
        assert_eq!(redis.password(), Some("s3cret"));
        assert_eq!(redis.protocol(), ProtocolVersion::RESP3);
        let plain = connection_info(&url(false), false).expect("info");
        assert_eq!(plain.redis_settings().protocol(), ProtocolVersion::RESP2);
    }
}
