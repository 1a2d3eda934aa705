//! Redis Sentinel: which servers a `redis+sentinel://` URL names now.
//!
//! [`Discovery::servers`] asks the Sentinels, one after the other starting
//! with the last one that answered, for the master's address (writers, and
//! readers with `read_from=master`) or for its replicas (readers): the
//! replicas Sentinel does not flag as down or disconnected and sees linked
//! to the master, in random order so that a fleet of readers spreads over
//! them, then the master as the fallback. The caller connects to the first
//! that answers and passes [`crate::check_role`].
//!
//! [`Discovery::switches`] counts the master switches the Sentinels
//! announce (`+switch-master` for this master): a task subscribed to one
//! Sentinel at a time, started with the first receiver. A link watches it
//! to leave an old master at once, instead of at its next failed probe,
//! and to cut a reconnect pause short when the new master is known. When
//! the subscription is re-made (its Sentinel went away) the master's
//! address is asked again, and a change is counted as a switch too: one
//! announced while nobody listened is not missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use hipache_schema::{ReadFrom, RedisUrl, Sentinel};
use rand::seq::SliceRandom;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use tokio::sync::watch;

/// The pause before the switch watcher tries the next Sentinel.
const WATCH_RETRY: Duration = Duration::from_millis(500);

/// Why no server could be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// No Sentinel answered; each one's error, in order.
    #[error("no Sentinel answered: {}", .0.join("; "))]
    NoSentinel(Vec<String>),
    /// The Sentinels that answered do not monitor this master name.
    #[error("the Sentinels ({0}) do not know a master named {1:?}: check the name after the addresses in the URL")]
    UnknownMaster(String, String),
}

/// The Sentinels of one driver URL.
pub struct Discovery {
    url: RedisUrl,
    sentinel: Sentinel,
    ca: Option<Vec<u8>>,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// The Sentinel to ask first: the last one that answered.
    first: AtomicUsize,
    switches: watch::Sender<u64>,
    watcher: OnceLock<()>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// The discovery of `url`'s servers, or `None` for a plain URL. `ca`
    /// (PEM) is trusted for `rediss+sentinel://`, for the Sentinels and the
    /// servers alike; the timeouts bound each Sentinel's connection and
    /// each of its replies.
    pub fn new(
        url: &RedisUrl,
        ca: Option<Vec<u8>>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Option<Arc<Self>> {
        let sentinel = *url.sentinel.clone()?;
        Some(Arc::new(Self {
            url: url.clone(),
            sentinel,
            ca,
            connect_timeout,
            response_timeout,
            first: AtomicUsize::new(0),
            switches: watch::Sender::new(0),
            watcher: OnceLock::new(),
        }))
    }

    /// [`Discovery::new`], shared: every caller in the process with the
    /// same Sentinels, master, credentials and CA gets the same discovery
    /// while one is alive, so that a process keeps one switch subscription
    /// per Sentinel deployment, however many connections it makes (with
    /// the first caller's timeouts).
    pub fn shared(
        url: &RedisUrl,
        ca: Option<Vec<u8>>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Option<Arc<Self>> {
        static LIVE: Mutex<Vec<Weak<Discovery>>> = Mutex::new(Vec::new());
        let key = same_deployment(url);
        let mut live = LIVE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.retain(|d| d.strong_count() > 0);
        if let Some(found) = live
            .iter()
            .filter_map(Weak::upgrade)
            .find(|d| d.ca == ca && same_deployment(&d.url) == key)
        {
            return Some(found);
        }
        let made = Self::new(url, ca, connect_timeout, response_timeout)?;
        live.push(Arc::downgrade(&made));
        Some(made)
    }

    /// The URL, censored: what logs may show.
    pub fn censored(&self) -> String {
        self.url.censored()
    }

    /// The servers to try for `need`, best first: the master alone for
    /// [`ReadFrom::Master`], else the linked replicas in random order and
    /// then the master. Each is a plain URL with this URL's credentials,
    /// database and prefix.
    pub async fn servers(&self, need: ReadFrom) -> Result<Vec<RedisUrl>, DiscoveryError> {
        let (mut conn, _) = self.sentinel_connection().await?;
        let master = self.ask_master(&mut conn).await;
        let master = match master {
            Ok(Some(addr)) => addr,
            Ok(None) => {
                return Err(DiscoveryError::UnknownMaster(
                    self.nodes(),
                    self.sentinel.master.clone(),
                ))
            }
            Err(e) => return Err(DiscoveryError::NoSentinel(vec![e])),
        };
        let mut servers = Vec::new();
        if need == ReadFrom::Replica {
            // Without an answer about replicas, the master serves.
            let mut replicas = self.ask_replicas(&mut conn).await.unwrap_or_default();
            replicas.shuffle(&mut rand::rng());
            servers.extend(replicas.iter().map(|(h, p)| self.url.at(h, *p)));
        }
        servers.push(self.url.at(&master.0, master.1));
        Ok(servers)
    }

    /// A counter of the master switches announced (or noticed) since the
    /// discovery was made: `changed()` on it wakes at the next one. The
    /// first call starts the watcher, so it must be made inside a tokio
    /// runtime.
    pub fn switches(self: &Arc<Self>) -> watch::Receiver<u64> {
        self.watcher.get_or_init(|| {
            let me = Arc::downgrade(self);
            tokio::spawn(async move { watch_switches(me).await });
        });
        self.switches.subscribe()
    }

    fn nodes(&self) -> String {
        self.sentinel
            .nodes
            .iter()
            .map(|(h, p)| host_port(h, *p))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A connection to the first Sentinel that takes one, starting with
    /// the last that answered; and its index.
    async fn sentinel_connection(&self) -> Result<(MultiplexedConnection, usize), DiscoveryError> {
        let n = self.sentinel.nodes.len();
        let start = self.first.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for i in (0..n).map(|k| (start + k) % n) {
            match self.connect_sentinel(i).await {
                Ok(conn) => {
                    self.first.store(i, Ordering::Relaxed);
                    return Ok((conn, i));
                }
                Err(e) => {
                    let (h, p) = &self.sentinel.nodes[i];
                    errors.push(format!("{}: {e}", host_port(h, *p)));
                }
            }
        }
        Err(DiscoveryError::NoSentinel(errors))
    }

    fn sentinel_client(&self, i: usize) -> redis::RedisResult<redis::Client> {
        let (host, port) = self.sentinel.nodes[i].clone();
        let addr = if self.url.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let mut settings = RedisConnectionInfo::default();
        if let Some(user) = &self.sentinel.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.sentinel.password {
            settings = settings.set_password(password);
        }
        let info = addr.into_connection_info()?.set_redis_settings(settings);
        match (&self.ca, self.url.tls) {
            (Some(pem), true) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            _ => redis::Client::open(info),
        }
    }

    async fn connect_sentinel(&self, i: usize) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        self.sentinel_client(i)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME`: `None` when this Sentinel does
    /// not monitor the master.
    async fn ask_master(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Option<(String, u16)>, String> {
        let reply: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.sentinel.master)
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(reply)
    }

    /// `SENTINEL REPLICAS`: those not flagged down or disconnected and
    /// linked to the master, as Sentinel last saw them.
    async fn ask_replicas(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Vec<(String, u16)>, String> {
        let replicas: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(&self.sentinel.master)
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(replicas.iter().filter_map(usable_replica).collect())
    }
}

/// `url` without what does not change the deployment it names (where its
/// reads go, which each caller passes to [`Discovery::servers`]).
fn same_deployment(url: &RedisUrl) -> RedisUrl {
    let mut key = url.clone();
    if let Some(s) = &mut key.sentinel {
        s.read_from = ReadFrom::Master;
    }
    key
}

/// A replica's address when Sentinel's view of it says it can serve.
fn usable_replica(fields: &HashMap<String, String>) -> Option<(String, u16)> {
    let flags = fields.get("flags")?;
    let down = flags
        .split(',')
        .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
    let linked = fields.get("master-link-status").is_some_and(|s| s == "ok");
    if down || !linked {
        return None;
    }
    let port = fields.get("port")?.parse().ok()?;
    Some((fields.get("ip")?.clone(), port))
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Subscribes to `+switch-master` on one Sentinel after another, for as
/// long as the discovery lives, counting this master's switches.
async fn watch_switches(discovery: std::sync::Weak<Discovery>) {
    let mut known: Option<(String, u16)> = None;
    loop {
        let Some(me) = discovery.upgrade() else {
            return;
        };
        let subscribed = async {
            let (mut conn, i) = me.sentinel_connection().await.ok()?;
            let client = me.sentinel_client(i).ok()?;
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe("+switch-master").await.ok()?;
            // Asked after subscribing: a switch between the two is seen.
            let now = me.ask_master(&mut conn).await.ok().flatten();
            Some((pubsub, now))
        };
        let Ok(Some((pubsub, now))) =
            tokio::time::timeout(me.connect_timeout + me.response_timeout * 2, subscribed).await
        else {
            drop(me);
            tokio::time::sleep(WATCH_RETRY).await;
            continue;
        };
        if known.is_some() && now.is_some() && known != now {
            tracing::info!(redis = %me.censored(), "the Sentinels name another master than before their subscription was lost");
            me.switches.send_modify(|n| *n += 1);
        }
        if now.is_some() {
            known = now;
        }
        let master = me.sentinel.master.clone();
        let weak = Arc::downgrade(&me);
        drop(me);
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Some(me) = weak.upgrade() else {
                return;
            };
            let Ok(text) = msg.get_payload::<String>() else {
                continue;
            };
            // `<name> <old-ip> <old-port> <new-ip> <new-port>`
            let parts: Vec<&str> = text.split(' ').collect();
            if let [name, _, _, ip, port] = parts[..] {
                if name == master {
                    tracing::info!(redis = %me.censored(), master = %host_port(ip, port.parse().unwrap_or(0)), "Sentinel switched the master");
                    known = port.parse().ok().map(|p| (ip.to_owned(), p));
                    me.switches.send_modify(|n| *n += 1);
                }
            }
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(flags: &str, link: &str) -> HashMap<String, String> {
        [
            ("ip", "10.0.0.2"),
            ("port", "6379"),
            ("flags", flags),
            ("master-link-status", link),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn only_linked_replicas_that_are_up_serve() {
        let addr = Some(("10.0.0.2".to_owned(), 6379));
        assert_eq!(usable_replica(&replica("slave", "ok")), addr);
        assert_eq!(usable_replica(&replica("slave", "err")), None);
        assert_eq!(usable_replica(&replica("s_down,slave", "ok")), None);
        assert_eq!(usable_replica(&replica("slave,disconnected", "ok")), None);
        assert_eq!(usable_replica(&HashMap::new()), None);
    }

    #[test]
    fn one_discovery_per_deployment() {
        let t = Duration::from_secs(1);
        let url = |text: &str| RedisUrl::parse(text).expect("url");
        let a = Discovery::shared(
            &url("redis+sentinel://s1,s2/m?read_from=replica"),
            None,
            t,
            t,
        );
        let b = Discovery::shared(
            &url("redis+sentinel://s1,s2/m?read_from=master"),
            None,
            t,
            t,
        );
        let c = Discovery::shared(&url("redis+sentinel://s1,s2/other"), None, t, t);
        let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
        assert!(Arc::ptr_eq(&a, &b), "reads and writes share one");
        assert!(!Arc::ptr_eq(&a, &c), "another master is another deployment");
    }

    #[test]
    fn a_plain_url_has_no_discovery() {
        let plain = RedisUrl::parse("redis://127.0.0.1").expect("url");
        let t = Duration::from_secs(1);
        assert!(Discovery::new(&plain, None, t, t).is_none());
        let url = RedisUrl::parse("redis+sentinel://a,b:1/m").expect("url");
        let d = Discovery::new(&url, None, t, t).expect("discovery");
        assert_eq!(d.nodes(), "a:26379, b:1");
    }
}
