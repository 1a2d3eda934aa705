//! The tools' Redis: one connection to the write URL of the configured
//! driver (the master: what a tool reads is what it just wrote), the state
//! of one frontend host, and the one way to change it: a MULTI/EXEC
//! transaction under WATCH, decided on the state read under that WATCH, so
//! that an edit made meanwhile (by redis-cli, the syncer, another tool) is
//! never overwritten unseen.

use hipache_schema::entry::SYNCER_IDENTIFIER_PREFIX;
use hipache_schema::{normalize_host, BackendEntry, Keys};
use redis::aio::MultiplexedConnection;

use super::ToolError;
use crate::config::{Config, Driver};
use crate::redis_conn::timeouts::BULK_RESPONSE_TIMEOUT;
use crate::redis_conn::{Dialer, Target};

/// Keys asked for per `SCAN` step.
const SCAN_COUNT: usize = 1000;
/// How often a transaction is tried again when a watched key changed.
const ATTEMPTS: usize = 3;

pub struct Store {
    dialer: Dialer,
    con: MultiplexedConnection,
    pub keys: Keys,
    /// The censored URL, for messages.
    pub url: String,
}

/// What Redis holds for one frontend host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// `frontend:<host>`: identifier first, then backend elements.
    pub list: Option<Vec<String>>,
    /// `routes:<host>`, as stored (JSON text).
    pub document: Option<String>,
    /// `dead:<host>` members (backend positions).
    pub dead: Vec<String>,
    /// Seconds before `dead:<host>` expires (`None`: no set, or no TTL).
    pub dead_ttl: Option<i64>,
}

impl HostState {
    pub fn exists(&self) -> bool {
        self.list.is_some() || self.document.is_some()
    }

    /// Who owns the host: its list's identifier, else its document's `id`.
    pub fn owner(&self) -> Option<String> {
        if let Some(id) = self.list.as_ref().and_then(|l| l.first()) {
            return Some(id.clone());
        }
        let doc: serde_json::Value = serde_json::from_str(self.document.as_deref()?).ok()?;
        doc.get("id")?.as_str().map(str::to_owned)
    }
}

/// A change to one host; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// `Some(None)` deletes the list.
    pub list: Option<Option<Vec<String>>>,
    /// `Some(None)` deletes the document.
    pub document: Option<Option<String>>,
    pub clear_dead: bool,
}

/// A host as a frontend key names it: normalised as the proxy normalises
/// request hosts (lower case, no port), wildcards (`*.example.com`, `*`)
/// kept.
pub fn host(raw: &str) -> Result<String, ToolError> {
    normalize_host(raw).map_err(|e| ToolError::Refused(format!("host {raw:?}: {e}")))
}

/// Refuses a write to a host owned by someone else: the syncer's `k8s:`
/// identifiers, or (when `identifier` is given) any other identifier.
pub fn check_owner(
    host: &str,
    state: &HostState,
    identifier: Option<&str>,
    force: bool,
) -> Result<(), ToolError> {
    let Some(owner) = state.owner() else {
        return Ok(());
    };
    if force {
        return Ok(());
    }
    if owner.starts_with(SYNCER_IDENTIFIER_PREFIX) {
        return Err(ToolError::Refused(format!(
            "{host} is owned by the syncer ({owner}): change its Ingress, or --force"
        )));
    }
    match identifier {
        Some(id) if id != owner => Err(ToolError::Refused(format!(
            "{host} belongs to {owner:?}, not {id:?}: --force to replace it"
        ))),
        _ => Ok(()),
    }
}

/// Refuses a backend element the proxy would not route to.
pub fn check_backend(element: &str) -> Result<(), ToolError> {
    let entry = BackendEntry::decode(0, element);
    match &entry.url {
        Err(e) if entry.is_invalid() => Err(ToolError::Refused(format!(
            "backend {element:?}: {e} (expected http://host[:port] or https://..., optionally after a path rule such as `/api `)"
        ))),
        _ => Ok(()),
    }
}

/// Refuses an identifier a list cannot start with.
pub fn check_identifier(identifier: &str) -> Result<(), ToolError> {
    if identifier.trim().is_empty() {
        return Err(ToolError::Refused("empty identifier".to_owned()));
    }
    Ok(())
}

fn failed(url: &str, e: redis::RedisError) -> ToolError {
    ToolError::Failed(format!("Redis {url}: {e}"))
}

impl Store {
    /// Connects to the configured driver's write URL (one attempt, within
    /// the proxy's connect timeout).
    pub async fn connect(config: &Config) -> Result<Store, ToolError> {
        let url = match &config.driver {
            Driver::Redis { write, .. } => write.clone(),
            Driver::File(path) => {
                return Err(ToolError::Failed(format!(
                    "the driver is the routes file {}: these commands edit Redis (edit the file, or give --driver redis://...)",
                    path.display()
                )))
            }
        };
        let target = Target {
            url: url.clone(),
            ca: config.redis_ca.clone(),
        };
        let censored = url.censored();
        let dialer = Dialer::new(&target, false)
            .map_err(|e| ToolError::Failed(format!("Redis {censored}: {e}")))?
            .with_response_timeout(BULK_RESPONSE_TIMEOUT);
        let (con, _) = dialer
            .multiplexed()
            .await
            .map_err(|e| ToolError::Failed(format!("cannot reach Redis at {censored}: {e}")))?;
        Ok(Store {
            dialer,
            con,
            keys: Keys::new(url.prefix.clone()),
            url: censored,
        })
    }

    /// Every key matching `pattern` (a glob, prefix included), by SCAN.
    pub async fn scan(&mut self, pattern: &str) -> Result<Vec<String>, ToolError> {
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut self.con)
                .await
                .map_err(|e| failed(&self.url, e))?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Hosts with a `frontend:` list or a `routes:` document whose host
    /// matches `glob`, sorted.
    pub async fn hosts(&mut self, glob: &str) -> Result<Vec<String>, ToolError> {
        // The prefix is literal (keys of another prefix that its glob
        // characters would match are filtered out below anyway, but need
        // not be scanned); `glob` is the caller's pattern.
        let prefix = hipache_schema::keys::glob_escape(self.keys.prefix());
        let frontends = self.scan(&format!("{prefix}frontend:{glob}")).await?;
        let documents = self.scan(&format!("{prefix}routes:{glob}")).await?;
        let mut hosts: Vec<String> = frontends
            .iter()
            .filter_map(|k| self.keys.frontend_host(k))
            .chain(documents.iter().filter_map(|k| self.keys.routes_host(k)))
            .map(str::to_owned)
            .collect();
        hosts.sort();
        hosts.dedup();
        Ok(hosts)
    }

    /// The state of each host, in one pipeline per host batch.
    pub async fn states(&mut self, hosts: &[String]) -> Result<Vec<HostState>, ToolError> {
        let mut out = Vec::with_capacity(hosts.len());
        for chunk in hosts.chunks(500) {
            let mut pipe = redis::pipe();
            for h in chunk {
                pipe.cmd("LRANGE").arg(self.keys.frontend(h)).arg(0).arg(-1);
                pipe.cmd("GET").arg(self.keys.routes(h));
                pipe.cmd("SMEMBERS").arg(self.keys.dead(h));
                pipe.cmd("TTL").arg(self.keys.dead(h));
            }
            let replies: Vec<redis::Value> = pipe
                .query_async(&mut self.con)
                .await
                .map_err(|e| failed(&self.url, e))?;
            for (h, r) in chunk.iter().zip(replies.chunks(4)) {
                out.push(decode_state(h, r)?);
            }
        }
        Ok(out)
    }

    pub async fn state(&mut self, host: &str) -> Result<HostState, ToolError> {
        let mut states = self.states(&[host.to_owned()]).await?;
        Ok(states.pop().unwrap_or_default())
    }

    /// Reads the host under WATCH and applies what `decide` makes of it in
    /// one transaction; tried again (with a fresh read) when a watched key
    /// changed in between. `Ok(None)`: `decide` found nothing to do.
    pub async fn update<F>(&mut self, host: &str, decide: F) -> Result<Option<Change>, ToolError>
    where
        F: Fn(&HostState) -> Result<Option<Change>, ToolError>,
    {
        let (frontend, routes, dead) = (
            self.keys.frontend(host),
            self.keys.routes(host),
            self.keys.dead(host),
        );
        for _ in 0..ATTEMPTS {
            let _: () = redis::cmd("WATCH")
                .arg(&frontend)
                .arg(&routes)
                .query_async(&mut self.con)
                .await
                .map_err(|e| failed(&self.url, e))?;
            let state = self.state(host).await?;
            let change = match decide(&state) {
                Ok(Some(change)) => change,
                other => {
                    let _: () = redis::cmd("UNWATCH")
                        .query_async(&mut self.con)
                        .await
                        .map_err(|e| failed(&self.url, e))?;
                    return other;
                }
            };
            let mut pipe = redis::pipe();
            pipe.atomic();
            if let Some(list) = &change.list {
                pipe.del(&frontend).ignore();
                if let Some(list) = list {
                    pipe.rpush(&frontend, list).ignore();
                }
            }
            if let Some(document) = &change.document {
                match document {
                    Some(json) => pipe.set(&routes, json).ignore(),
                    None => pipe.del(&routes).ignore(),
                };
            }
            if change.clear_dead {
                pipe.del(&dead).ignore();
            }
            let done: Option<()> = pipe
                .query_async(&mut self.con)
                .await
                .map_err(|e| failed(&self.url, e))?;
            if done.is_some() {
                return Ok(Some(change));
            }
        }
        Err(ToolError::Failed(format!(
            "{host} kept changing while it was written ({ATTEMPTS} attempts): try again"
        )))
    }

    /// A new connection in place of this one (after Redis went away).
    pub async fn reconnect(&mut self) -> Result<(), ToolError> {
        let (con, _) =
            self.dialer.multiplexed().await.map_err(|e| {
                ToolError::Failed(format!("cannot reach Redis at {}: {e}", self.url))
            })?;
        self.con = con;
        Ok(())
    }
}

fn decode_state(host: &str, replies: &[redis::Value]) -> Result<HostState, ToolError> {
    let wrong = |key: &str, e: redis::ParsingError| {
        ToolError::Failed(format!("{key}:{host} is not what the schema says: {e}"))
    };
    let [list, doc, dead, ttl] = replies else {
        return Err(ToolError::Failed(format!(
            "short reply from Redis for {host}"
        )));
    };
    let list: Vec<String> =
        redis::from_redis_value(list.clone()).map_err(|e| wrong("frontend", e))?;
    let document: Option<String> =
        redis::from_redis_value(doc.clone()).map_err(|e| wrong("routes", e))?;
    let dead: Vec<String> = redis::from_redis_value(dead.clone()).map_err(|e| wrong("dead", e))?;
    let ttl: i64 = redis::from_redis_value(ttl.clone()).map_err(|e| wrong("dead", e))?;
    Ok(HostState {
        list: (!list.is_empty()).then_some(list),
        document,
        dead,
        dead_ttl: (ttl >= 0).then_some(ttl),
    })
}
