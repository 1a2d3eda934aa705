//! Where a Redis server is and how to open a connection to it.
//!
//! A [`Target`] is what the configuration says (a driver URL and the CA to
//! trust for `rediss://`); a [`Dialer`] is built from it once, at start, so
//! that a missing CA file or a bad URL is a start error, and then makes
//! every connection to that server. For a `redis+sentinel://` URL the
//! server is asked of the Sentinels at every connection
//! ([`hipache_redis::Discovery`]), each new connection must pass a `ROLE`
//! check (a master for writers, a linked replica or the master for
//! readers), and so must every probe of it ([`Dialer::probe`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hipache_redis::Discovery;
use hipache_schema::ReadFrom;
use redis::aio::{MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, PushInfo, PushKind, RedisResult};
use tokio::sync::{mpsc, watch};

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
    #[error(transparent)]
    Client(#[from] hipache_redis::ClientError),
}

impl Target {
    /// The CA's PEM, read only for TLS.
    fn ca_pem(&self) -> Result<Option<Vec<u8>>, TargetError> {
        match (&self.ca, self.url.tls) {
            (Some(ca), true) => std::fs::read(ca)
                .map(Some)
                .map_err(|source| TargetError::Ca {
                    path: ca.clone(),
                    source,
                }),
            _ => Ok(None),
        }
    }
}

/// The clients of one server: RESP3 when tracking, and a RESP2 one for
/// when tracking is only preferred and the server refuses it (Redis
/// before 6, or an ACL without `HELLO` or `CLIENT TRACKING`).
#[derive(Clone)]
struct Clients {
    client: redis::Client,
    untracked: Option<redis::Client>,
}

/// Where the server is.
#[derive(Clone)]
enum Servers {
    /// One server, its clients made at start.
    Fixed(Box<Clients>),
    /// The server the Sentinels name at each connection.
    Sentinel {
        discovery: Arc<Discovery>,
        ca: Option<Vec<u8>>,
        need: ReadFrom,
    },
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
    servers: Servers,
    redis: String,
    tracking: bool,
    /// Whether a server that refuses tracking gets a RESP2 connection.
    fallback: bool,
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
        Self::build(target, tracking, false)
    }

    fn build(target: &Target, tracking: bool, fallback: bool) -> Result<Self, TargetError> {
        let ca = target.ca_pem()?;
        let url = &target.url;
        let clients = |url: &RedisUrl| Clients::new(url, ca.as_deref(), tracking, fallback);
        let servers = match Discovery::shared(url, ca.clone(), CONNECT_TIMEOUT, RESPONSE_TIMEOUT) {
            Some(discovery) => {
                // A client for the first Sentinel's address: what is wrong
                // with the URL shows at start, not at the first connection.
                clients(url)?;
                let need = url
                    .sentinel
                    .as_ref()
                    .map_or(ReadFrom::Master, |s| s.read_from);
                Servers::Sentinel {
                    discovery,
                    ca,
                    need,
                }
            }
            None => Servers::Fixed(Box::new(clients(url)?)),
        };
        Ok(Self {
            servers,
            redis: url.censored(),
            tracking,
            fallback,
            inline: None,
            broadcast: Vec::new(),
            refusal_logged: Arc::new(AtomicBool::new(false)),
            response_timeout: RESPONSE_TIMEOUT,
        })
    }

    /// A dialer whose connections track when the server allows it, and
    /// are plain RESP2 connections (no pushes) when it refuses.
    pub fn preferring_tracking(target: &Target) -> Result<Self, TargetError> {
        Self::build(target, true, true)
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

    /// One multiplexed connection, within [`CONNECT_TIMEOUT`]; with
    /// tracking, `CLIENT TRACKING ON` was answered and the pushes come
    /// with it. Pushes are `None` for a connection that does not track
    /// (tracking off, or only preferred and refused).
    pub async fn multiplexed(&self) -> RedisResult<(MultiplexedConnection, Option<Pushes>)> {
        let (discovery, ca, need) = match &self.servers {
            Servers::Fixed(clients) => return self.connect(clients).await,
            Servers::Sentinel {
                discovery,
                ca,
                need,
            } => (discovery, ca, *need),
        };
        let mut last = None;
        for url in discovery.servers(need).await.map_err(io_error)? {
            let clients = Clients::new(&url, ca.as_deref(), self.tracking, self.fallback)
                .map_err(|e| io_error(e.to_string()))?;
            match self.connect(&clients).await {
                Ok((mut conn, pushes)) => match self.check_role(&mut conn, need).await {
                    Ok(()) => return Ok((conn, pushes)),
                    Err(e) => last = Some(io_error(format!("{}: {e}", url.censored()))),
                },
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io_error("the Sentinels named no server")))
    }

    /// `ROLE` on `conn`, within the reply timeout.
    async fn check_role(
        &self,
        conn: &mut MultiplexedConnection,
        need: ReadFrom,
    ) -> Result<(), String> {
        match tokio::time::timeout(self.response_timeout, hipache_redis::check_role(conn, need))
            .await
        {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("no ROLE reply within the response timeout".to_owned()),
        }
    }

    /// Whether the connection still reaches what it was opened for, within
    /// the reply timeout: Redis answers `PING`; for a Sentinel URL, `ROLE`
    /// says the server still is the master (writers) or a replica linked
    /// to its master or the master (readers).
    pub async fn probe(&self, conn: &mut MultiplexedConnection) -> bool {
        match &self.servers {
            Servers::Fixed(_) => {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(conn);
                matches!(
                    tokio::time::timeout(self.response_timeout, ping).await,
                    Ok(Ok(_))
                )
            }
            Servers::Sentinel { need, .. } => match self.check_role(conn, *need).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(redis = %self.redis, error = %e, "the Redis connection no longer reaches the server it was opened for; reconnecting");
                    false
                }
            },
        }
    }

    /// For a Sentinel URL, the count of master switches the Sentinels
    /// announced ([`Discovery::switches`]); `None` for one server.
    pub fn switches(&self) -> Option<watch::Receiver<u64>> {
        match &self.servers {
            Servers::Fixed(_) => None,
            Servers::Sentinel { discovery, .. } => Some(discovery.switches()),
        }
    }

    /// One connection to one server, tracking as asked.
    async fn connect(
        &self,
        clients: &Clients,
    ) -> RedisResult<(MultiplexedConnection, Option<Pushes>)> {
        let base = || {
            AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(self.response_timeout))
        };
        if !self.tracking {
            let conn = clients
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
            let mut conn = clients
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
        match (tracked.await, &clients.untracked) {
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
            let client = match &self.servers {
                Servers::Fixed(clients) => clients.client.clone(),
                Servers::Sentinel {
                    discovery,
                    ca,
                    need,
                } => {
                    let servers = discovery.servers(*need).await.map_err(io_error)?;
                    let url = servers
                        .first()
                        .ok_or_else(|| io_error("the Sentinels named no server"))?;
                    hipache_redis::client(url, ca.as_deref(), false)
                        .map_err(|e| io_error(e.to_string()))?
                }
            };
            let mut pubsub = client.get_async_pubsub().await?;
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

impl Clients {
    fn new(
        url: &RedisUrl,
        ca: Option<&[u8]>,
        tracking: bool,
        fallback: bool,
    ) -> Result<Self, hipache_redis::ClientError> {
        Ok(Self {
            client: hipache_redis::client(url, ca, tracking)?,
            untracked: if fallback {
                Some(hipache_redis::client(url, ca, false)?)
            } else {
                None
            },
        })
    }
}

/// A failure to find or keep the right server, as the I/O error the redis
/// crate reports for a server that is down: the link retries it alike.
fn io_error(e: impl ToString) -> redis::RedisError {
    std::io::Error::other(e.to_string()).into()
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
            sentinel: None,
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
        assert_eq!(dialer.response_timeout, RESPONSE_TIMEOUT);
        assert!(!dialer.redis().contains("s3cret"), "{}", dialer.redis());
    }
}
