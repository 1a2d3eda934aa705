//! Redis diff and apply: the syncer's owned part of the Hipache schema.
//!
//! Ownership: a `frontend:` list whose identifier starts with `k8s:` (with
//! a namespace-scoped syncer, `k8s:<namespace>/`) and a `tls:` hash whose
//! `owner` field does, belong to the syncer. Anything else (a redis-cli
//! tenant's list, a key of another type) is never written or deleted: the
//! host is reported as foreign and skipped.
//!
//! Every write is per host and atomic: `WATCH key`, read it, check the
//! owner, then `MULTI … EXEC`; when someone (redis-cli) changed the key in
//! between, `EXEC` aborts and the host is retried, re-reading the new
//! owner. Writes are diff-based against what the store believes Redis
//! holds ([`Store::apply`]); [`Store::resync`] re-reads every owned key
//! first, so drift is repaired and leftovers of deleted Ingresses removed.
//! Frontend lists and `tls:` hashes are two families of owned keys
//! (`Family`) that one diff loop reconciles and one re-read recovers.
//!
//! When a frontend's backends change, its `dead:<host>` set is deleted in
//! the same transaction: dead marks name positions, and the positions of
//! the old list mean nothing in the new one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hipache_redis::Discovery;
use hipache_schema::entry::SYNCER_IDENTIFIER_PREFIX;
use hipache_schema::keys::{TLS_CERT_FIELD, TLS_CHANNEL, TLS_KEY_FIELD, TLS_OWNER_FIELD};
use hipache_schema::{Keys, ReadFrom, RedisUrl};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisError, Value};
use thiserror::Error;

use crate::desired::{Desired, TlsEntry};

/// A host is retried this many times when its WATCH fires (someone wrote
/// it between our read and our EXEC) before we give up until the next pass.
const WATCH_RETRIES: usize = 5;
/// Keys asked per SCAN round trip during a resync.
const SCAN_COUNT: usize = 1000;
/// Redis timeouts: long enough for a big pipeline, short enough that an
/// outage shows quickly in readiness.
pub const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// The Sentinels named no usable master.
    #[error("redis: {0}")]
    Sentinel(String),
}

/// Where the syncer writes: one server, or the master the Sentinels of a
/// `redis+sentinel://` URL name at each connection. Every connection goes
/// through [`Redis::connect`].
#[derive(Debug, Clone)]
pub struct Redis {
    url: RedisUrl,
    discovery: Option<Arc<Discovery>>,
}

impl Redis {
    pub fn new(url: &RedisUrl) -> Self {
        Self {
            url: url.clone(),
            discovery: Discovery::shared(url, None, REDIS_CONNECT_TIMEOUT, REDIS_RESPONSE_TIMEOUT),
        }
    }

    /// Whether the server is found through Sentinel: a connection that
    /// fails is then dropped and made again (the master may have moved),
    /// rather than re-established to the same address.
    pub fn is_sentinel(&self) -> bool {
        self.discovery.is_some()
    }

    /// The master switches the Sentinels announce (`None` without them):
    /// must be called inside a tokio runtime.
    pub fn switches(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.discovery.as_ref().map(Discovery::switches)
    }

    /// The server to write to now: the URL's, or the master the Sentinels
    /// name (without `#prefix`, which the client must not see).
    async fn server(&self) -> Result<String, StoreError> {
        match &self.discovery {
            None => Ok(self.url.server_url()),
            Some(d) => {
                let servers = d
                    .servers(ReadFrom::Master)
                    .await
                    .map_err(|e| StoreError::Sentinel(e.to_string()))?;
                let master = servers
                    .into_iter()
                    .next()
                    .ok_or_else(|| StoreError::Sentinel("the Sentinels named no master".into()))?;
                Ok(master.server_url())
            }
        }
    }

    /// A reconnecting connection to the server (the master, checked with
    /// `ROLE`, for a Sentinel URL).
    pub async fn connect(&self) -> Result<ConnectionManager, StoreError> {
        let client = redis::Client::open(self.server().await?)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
            .set_number_of_retries(2);
        let mut con = ConnectionManager::new_with_config(client, cfg).await?;
        if self.is_sentinel() {
            hipache_redis::check_role(&mut con, ReadFrom::Master)
                .await
                .map_err(|e| StoreError::Sentinel(e.to_string()))?;
        }
        Ok(con)
    }

    /// A pub/sub connection subscribed to `channel` on the server.
    pub async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub, StoreError> {
        let client = redis::Client::open(self.server().await?)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    }
}

/// What one write pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub written: usize,
    pub deleted: usize,
    /// Hosts we want but someone else owns: (host, identifier we wanted).
    pub foreign: Vec<(String, String)>,
    /// TLS hosts we want but someone else owns: (host, owner we wanted).
    pub foreign_tls: Vec<(String, String)>,
    /// Hosts given up on after repeated concurrent writes (next pass retries).
    pub contended: usize,
}

/// What one key's transaction did.
enum Outcome {
    /// Written (or deleted) by our `EXEC`.
    Written,
    /// Already as desired: nothing written.
    Unchanged,
    /// Someone else owns the key: left alone.
    Foreign,
    /// The WATCH fired on every try: given up until the next pass.
    Contended,
}

/// One family of owned keys (frontend lists, TLS hashes) as we believe
/// Redis holds them.
struct Owned<V> {
    /// Host → the value we wrote, or found ours at the last resync.
    applied: BTreeMap<String, V>,
    /// Hosts found owned by someone else (host → the owner we wanted): not
    /// retried until a resync.
    foreign: BTreeMap<String, String>,
}

impl<V> Default for Owned<V> {
    fn default() -> Self {
        Self {
            applied: BTreeMap::new(),
            foreign: BTreeMap::new(),
        }
    }
}

impl<V: PartialEq + Clone> Owned<V> {
    fn clear(&mut self) {
        self.applied.clear();
        self.foreign.clear();
    }

    /// Whether `host` must be written: it differs from what we applied and
    /// is not known to be someone else's.
    fn needs_write(&self, host: &str, value: &V) -> bool {
        self.applied.get(host) != Some(value) && !self.foreign.contains_key(host)
    }

    /// The hosts we applied that nothing wants any more.
    fn stale(&self, desired: &BTreeMap<String, V>) -> Vec<String> {
        self.applied
            .keys()
            .filter(|h| !desired.contains_key(*h))
            .cloned()
            .collect()
    }

    /// Records the outcome of writing `value` (claiming `owner`) to `host`.
    fn wrote(
        &mut self,
        host: &str,
        value: &V,
        owner: Option<&str>,
        outcome: Outcome,
        report: &mut ApplyReport,
    ) {
        match outcome {
            Outcome::Written => {
                report.written += 1;
                self.applied.insert(host.to_owned(), value.clone());
            }
            Outcome::Unchanged => {
                self.applied.insert(host.to_owned(), value.clone());
            }
            Outcome::Foreign => {
                self.applied.remove(host);
                self.foreign
                    .insert(host.to_owned(), owner.unwrap_or_default().to_owned());
            }
            Outcome::Contended => report.contended += 1,
        }
    }

    /// Records the outcome of deleting `host`: a key gone or no longer ours
    /// is forgotten either way.
    fn deleted(&mut self, host: &str, outcome: Outcome, report: &mut ApplyReport) {
        match outcome {
            Outcome::Written => {
                report.deleted += 1;
                self.applied.remove(host);
            }
            Outcome::Contended => report.contended += 1,
            Outcome::Unchanged | Outcome::Foreign => {
                self.applied.remove(host);
            }
        }
    }

    /// (host, owner we wanted) of every foreign host, by host.
    fn foreign_hosts(&self) -> Vec<(String, String)> {
        self.foreign
            .iter()
            .map(|(h, o)| (h.clone(), o.clone()))
            .collect()
    }
}

/// A family of keys the syncer owns: where its keys are, how one is read,
/// written and deleted, and which owner a value names. The diff
/// ([`Store::reconcile`]) and the re-read ([`Store::reread`]) are the same
/// for every family.
trait Family {
    type Value: PartialEq + Clone;
    /// The family's part of the store.
    fn owned(store: &mut Store) -> &mut Owned<Self::Value>;
    /// The owner mark a value carries.
    fn owner(value: &Self::Value) -> Option<&str>;
    /// `SCAN MATCH` pattern for every key of the family.
    fn pattern(keys: &Keys) -> String;
    /// The host part of one of the family's keys.
    fn host<'k>(keys: &Keys, key: &'k str) -> Option<&'k str>;
    /// The value `key` holds (`None`: nothing of this family there).
    async fn read(store: &mut Store, key: &str) -> Result<Option<Self::Value>, StoreError>;
    async fn write(
        store: &mut Store,
        host: &str,
        value: &Self::Value,
    ) -> Result<Outcome, StoreError>;
    async fn delete(store: &mut Store, host: &str) -> Result<Outcome, StoreError>;
}

/// `frontend:<host>` lists; the owner is the identifier (element 0).
struct Frontends;

impl Family for Frontends {
    type Value = Vec<String>;

    fn owned(store: &mut Store) -> &mut Owned<Vec<String>> {
        &mut store.frontends
    }

    fn owner(list: &Vec<String>) -> Option<&str> {
        list.first().map(String::as_str)
    }

    fn pattern(keys: &Keys) -> String {
        keys.frontend_pattern()
    }

    fn host<'k>(keys: &Keys, key: &'k str) -> Option<&'k str> {
        keys.frontend_host(key)
    }

    async fn read(store: &mut Store, key: &str) -> Result<Option<Vec<String>>, StoreError> {
        read_list(&mut store.con, key).await
    }

    async fn write(
        store: &mut Store,
        host: &str,
        list: &Vec<String>,
    ) -> Result<Outcome, StoreError> {
        store.write_frontend(host, list).await
    }

    async fn delete(store: &mut Store, host: &str) -> Result<Outcome, StoreError> {
        store.delete_frontend(host).await
    }
}

/// `tls:<host>` hashes; the owner is the `owner` field.
struct Certificates;

impl Family for Certificates {
    type Value = TlsEntry;

    fn owned(store: &mut Store) -> &mut Owned<TlsEntry> {
        &mut store.tls
    }

    fn owner(entry: &TlsEntry) -> Option<&str> {
        Some(&entry.owner)
    }

    fn pattern(keys: &Keys) -> String {
        keys.tls_pattern()
    }

    fn host<'k>(keys: &Keys, key: &'k str) -> Option<&'k str> {
        keys.tls_host(key)
    }

    async fn read(store: &mut Store, key: &str) -> Result<Option<TlsEntry>, StoreError> {
        store.read_tls(key).await
    }

    async fn write(store: &mut Store, host: &str, entry: &TlsEntry) -> Result<Outcome, StoreError> {
        store.write_tls(host, entry).await
    }

    async fn delete(store: &mut Store, host: &str) -> Result<Outcome, StoreError> {
        store.delete_tls(host).await
    }
}

/// The syncer's view of Redis.
pub struct Store {
    con: ConnectionManager,
    keys: Keys,
    /// Identifiers we own start with this.
    owner_prefix: String,
    frontends: Owned<Vec<String>>,
    tls: Owned<TlsEntry>,
    /// Test hook run between our read and our `EXEC`, with the key.
    before_exec: Option<BeforeExec>,
}

/// See [`Store::set_before_exec`].
pub type BeforeExec = Box<dyn FnMut(&str) + Send>;

impl Store {
    /// `namespace`: a namespace-scoped syncer owns only `k8s:<namespace>/`.
    pub fn new(con: ConnectionManager, keys: Keys, namespace: Option<&str>) -> Self {
        let owner_prefix = match namespace {
            Some(ns) => format!("{SYNCER_IDENTIFIER_PREFIX}{ns}/"),
            None => SYNCER_IDENTIFIER_PREFIX.to_owned(),
        };
        Self {
            con,
            keys,
            owner_prefix,
            frontends: Owned::default(),
            tls: Owned::default(),
            before_exec: None,
        }
    }

    /// Runs `hook` between the read of a key and the `EXEC` that writes it,
    /// so tests can race a redis-cli write against the transaction.
    #[doc(hidden)]
    pub fn set_before_exec(&mut self, hook: Option<BeforeExec>) {
        self.before_exec = hook;
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether an identifier (or TLS owner) marks a key as ours.
    pub fn owns(&self, identifier: &str) -> bool {
        identifier.starts_with(&self.owner_prefix)
    }

    /// The frontends we believe we wrote.
    pub fn applied(&self) -> &BTreeMap<String, Vec<String>> {
        &self.frontends.applied
    }

    /// Forgets what Redis holds, so the next [`apply`](Self::apply) must be
    /// a [`resync`](Self::resync) to be trusted (after a Redis outage or a
    /// change of leader).
    pub fn forget(&mut self) {
        self.frontends.clear();
        self.tls.clear();
    }

    /// Re-reads every owned key from Redis, then applies `desired`: repairs
    /// drift, removes owned keys nothing wants, re-checks foreign hosts.
    pub async fn resync(&mut self, desired: &Desired) -> Result<ApplyReport, StoreError> {
        self.forget();
        self.reread::<Frontends>().await?;
        self.reread::<Certificates>().await?;
        let report = self.apply(desired).await?;
        // After the writes: a marker present means they are in Redis. Not
        // fatal: a Redis user without the right (an ACL written before the
        // marker) only loses the early rewrite, not the routes.
        let marked: Result<(), RedisError> = self
            .con
            .set(self.keys.syncer_marker(), hipache_schema::keys::unix_now())
            .await;
        if let Err(e) = marked {
            tracing::warn!(error = %e, "cannot write the syncer's marker: a Redis that comes back empty is rewritten at the next periodic resync only");
        }
        Ok(report)
    }

    /// Whether Redis still holds the marker of the last [`resync`]: `false`
    /// when it lost what the syncer wrote (restarted empty, flushed,
    /// replaced), and everything must be written again.
    ///
    /// [`resync`]: Self::resync
    pub async fn marker_present(&mut self) -> Result<bool, StoreError> {
        Ok(self.con.exists(self.keys.syncer_marker()).await?)
    }

    /// Writes what changed since the last pass and deletes what is no
    /// longer desired, host by host.
    pub async fn apply(&mut self, desired: &Desired) -> Result<ApplyReport, StoreError> {
        let mut report = ApplyReport::default();
        self.reconcile::<Frontends>(&desired.frontends, &mut report)
            .await?;
        self.reconcile::<Certificates>(&desired.tls, &mut report)
            .await?;
        report.foreign = self.frontends.foreign_hosts();
        report.foreign_tls = self.tls.foreign_hosts();
        Ok(report)
    }

    /// Reads back every key of family `F` that we own.
    async fn reread<F: Family>(&mut self) -> Result<(), StoreError> {
        let pattern = F::pattern(&self.keys);
        for key in scan(&mut self.con, &pattern).await? {
            let Some(host) = F::host(&self.keys, &key).map(str::to_owned) else {
                continue;
            };
            if let Some(value) = F::read(self, &key).await? {
                if F::owner(&value).is_some_and(|o| self.owns(o)) {
                    F::owned(self).applied.insert(host, value);
                }
            }
        }
        Ok(())
    }

    /// Brings family `F` in line with `desired`: writes each host that
    /// differs from what we applied, deletes the owned hosts nothing wants,
    /// and remembers the hosts someone else owns.
    async fn reconcile<F: Family>(
        &mut self,
        desired: &BTreeMap<String, F::Value>,
        report: &mut ApplyReport,
    ) -> Result<(), StoreError> {
        F::owned(self)
            .foreign
            .retain(|h, _| desired.contains_key(h));
        for (host, value) in desired {
            if !F::owned(self).needs_write(host, value) {
                continue;
            }
            let outcome = F::write(self, host, value).await?;
            F::owned(self).wrote(host, value, F::owner(value), outcome, report);
        }
        for host in F::owned(self).stale(desired) {
            let outcome = F::delete(self, &host).await?;
            F::owned(self).deleted(&host, outcome, report);
        }
        Ok(())
    }

    /// A `tls:` hash; `None` when absent, empty or of another type. An entry
    /// without an owner field has an empty owner (not ours).
    async fn read_tls(&mut self, key: &str) -> Result<Option<TlsEntry>, StoreError> {
        match self.con.hgetall::<_, BTreeMap<String, String>>(key).await {
            Ok(mut h) if !h.is_empty() => Ok(Some(TlsEntry {
                owner: h.remove(TLS_OWNER_FIELD).unwrap_or_default(),
                cert: h.remove(TLS_CERT_FIELD).unwrap_or_default(),
                key: h.remove(TLS_KEY_FIELD).unwrap_or_default(),
            })),
            Ok(_) => Ok(None),
            Err(e) if is_wrongtype(&e) => Ok(Some(TlsEntry {
                owner: String::new(),
                cert: String::new(),
                key: String::new(),
            })),
            Err(e) => Err(e.into()),
        }
    }

    async fn watch(&mut self, key: &str) -> Result<(), StoreError> {
        redis::cmd("WATCH")
            .arg(key)
            .exec_async(&mut self.con)
            .await?;
        Ok(())
    }

    async fn unwatch(&mut self) -> Result<(), StoreError> {
        redis::cmd("UNWATCH").exec_async(&mut self.con).await?;
        Ok(())
    }

    /// `EXEC` result: `false` when the transaction aborted (WATCH fired).
    async fn exec(&mut self, key: &str, pipe: &redis::Pipeline) -> Result<bool, StoreError> {
        if let Some(hook) = self.before_exec.as_mut() {
            hook(key);
        }
        let r: Option<Value> = pipe.query_async(&mut self.con).await?;
        Ok(r.is_some())
    }

    async fn write_frontend(&mut self, host: &str, list: &[String]) -> Result<Outcome, StoreError> {
        let key = self.keys.frontend(host);
        let dead = self.keys.dead(host);
        for _ in 0..WATCH_RETRIES {
            self.watch(&key).await?;
            let current = match read_list(&mut self.con, &key).await? {
                Some(c) => c,
                None => {
                    self.unwatch().await?;
                    return Ok(Outcome::Foreign);
                }
            };
            if current.first().is_some_and(|id| !self.owns(id)) {
                self.unwatch().await?;
                return Ok(Outcome::Foreign);
            }
            if current == list {
                self.unwatch().await?;
                return Ok(Outcome::Unchanged);
            }
            let mut pipe = redis::pipe();
            pipe.atomic().del(&key).rpush(&key, list);
            if current.get(1..) != list.get(1..) {
                pipe.del(&dead);
            }
            if self.exec(&key, &pipe).await? {
                return Ok(Outcome::Written);
            }
        }
        Ok(Outcome::Contended)
    }

    async fn delete_frontend(&mut self, host: &str) -> Result<Outcome, StoreError> {
        let key = self.keys.frontend(host);
        let dead = self.keys.dead(host);
        for _ in 0..WATCH_RETRIES {
            self.watch(&key).await?;
            let current = read_list(&mut self.con, &key).await?;
            let ours = current
                .as_ref()
                .and_then(|c| c.first())
                .is_some_and(|id| self.owns(id));
            if !ours {
                self.unwatch().await?;
                return Ok(Outcome::Foreign);
            }
            let mut pipe = redis::pipe();
            pipe.atomic().del(&key).del(&dead);
            if self.exec(&key, &pipe).await? {
                return Ok(Outcome::Written);
            }
        }
        Ok(Outcome::Contended)
    }

    async fn write_tls(&mut self, host: &str, entry: &TlsEntry) -> Result<Outcome, StoreError> {
        let key = self.keys.tls(host);
        for _ in 0..WATCH_RETRIES {
            self.watch(&key).await?;
            let current = self.read_tls(&key).await?;
            if let Some(c) = &current {
                if !self.owns(&c.owner) {
                    self.unwatch().await?;
                    return Ok(Outcome::Foreign);
                }
                if c == entry {
                    self.unwatch().await?;
                    return Ok(Outcome::Unchanged);
                }
            }
            let mut pipe = redis::pipe();
            pipe.atomic()
                .del(&key)
                .hset_multiple(
                    &key,
                    &[
                        (TLS_CERT_FIELD, entry.cert.as_str()),
                        (TLS_KEY_FIELD, entry.key.as_str()),
                        (TLS_OWNER_FIELD, entry.owner.as_str()),
                    ],
                )
                .publish(TLS_CHANNEL, host);
            if self.exec(&key, &pipe).await? {
                return Ok(Outcome::Written);
            }
        }
        Ok(Outcome::Contended)
    }

    async fn delete_tls(&mut self, host: &str) -> Result<Outcome, StoreError> {
        let key = self.keys.tls(host);
        for _ in 0..WATCH_RETRIES {
            self.watch(&key).await?;
            let ours = self
                .read_tls(&key)
                .await?
                .is_some_and(|c| self.owns(&c.owner));
            if !ours {
                self.unwatch().await?;
                return Ok(Outcome::Foreign);
            }
            let mut pipe = redis::pipe();
            pipe.atomic().del(&key).publish(TLS_CHANNEL, host);
            if self.exec(&key, &pipe).await? {
                return Ok(Outcome::Written);
            }
        }
        Ok(Outcome::Contended)
    }
}

/// Every key matching `pattern` (`SCAN`, [`SCAN_COUNT`] keys a round
/// trip), sorted, without the repeats `SCAN` may return.
pub(crate) async fn scan(
    con: &mut ConnectionManager,
    pattern: &str,
) -> Result<Vec<String>, StoreError> {
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(con)
            .await?;
        out.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A list's elements; `None` when the key holds another type.
pub(crate) async fn read_list(
    con: &mut ConnectionManager,
    key: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    match con.lrange::<_, Vec<String>>(key, 0, -1).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_wrongtype(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_wrongtype(e: &RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
}
