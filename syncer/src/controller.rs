//! Watches and the reconcile loop.
//!
//! Four reflectors (IngressClass, Ingress, Service, EndpointSlice) keep
//! in-memory stores; kube-runtime's watcher re-lists after a `410 Gone` or
//! a dropped connection (with a backoff capped at a few seconds) and swaps the store atomically when
//! the list is complete. Every change wakes the reconcile loop, which
//! (after a short debounce that folds bursts into one pass) recomputes the
//! whole desired state purely ([`crate::desired::compute`]) and lets the
//! [`Store`] write what differs. A periodic full resync, a Redis error, and
//! winning the Lease all force a [`Store::resync`] that re-reads Redis.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;
use kube::runtime::reflector::{self, Store as Reader};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PublishStatus};
use crate::desired::{self, Desired, ObjectKey, Report, ReportKind, Settings, TlsPair, World};
use crate::metrics::{Metrics, Readiness};
use crate::status;
use crate::store::{self, ApplyReport, Store};

/// How often the leader checks that Redis still holds its marker
/// ([`Store::marker_present`]): a Redis that comes back empty is rewritten
/// within this and one pass, instead of at the next periodic resync.
const MARKER_PROBE: Duration = Duration::from_millis(500);

/// Backoff after a failed Redis pass: first retry, and the ceiling.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// A watch's first pause after an error, and its ceiling before jitter.
/// Each pause is lengthened by a random 0-100% (watchers of one syncer, and
/// syncers of several clusters, do not retry in step), so no pause exceeds
/// twice [`WATCH_RETRY_MAX`]. kube-runtime's default grows to 30 s (60 s
/// with its jitter): after an API server restart, changes reached Redis
/// 20-30 s after the server was back. The API server is this controller's one source, and a
/// watch is one request per resource: a few seconds of ceiling is kind
/// enough to it and keeps the routes current.
const WATCH_RETRY_MIN: Duration = Duration::from_millis(250);
const WATCH_RETRY_MAX: Duration = Duration::from_secs(2);
/// A watch that ran this long without error starts again from the first
/// pause (kube-runtime's default).
const WATCH_RETRY_RESET: Duration = Duration::from_secs(120);

/// The backoff of every watch: see [`WATCH_RETRY_MAX`].
fn watch_backoff() -> ResetTimerBackoff<watcher::ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(WATCH_RETRY_MIN)
        .with_max_delay(WATCH_RETRY_MAX)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), WATCH_RETRY_RESET)
}

/// The stores the reflectors fill.
#[derive(Clone)]
pub struct Stores {
    pub classes: Reader<IngressClass>,
    pub ingresses: Reader<Ingress>,
    pub services: Reader<Service>,
    pub slices: Reader<EndpointSlice>,
}

/// What every reflector shares: the task set it runs in, the metrics it
/// counts into and the shutdown it stops on.
struct Reflectors<'t> {
    tasks: &'t mut JoinSet<()>,
    metrics: Metrics,
    shutdown: CancellationToken,
}

/// A started reflector: its store, and a flag that turns true after its
/// first full list.
struct Reflected<K: Resource<DynamicType = ()> + 'static> {
    reader: Reader<K>,
    synced: Arc<AtomicBool>,
}

impl Reflectors<'_> {
    /// Starts one reflector, counted under `resource`; every change wakes
    /// `changed`.
    fn start<K>(
        &mut self,
        resource: &'static str,
        api: Api<K>,
        cfg: watcher::Config,
        changed: &Arc<Notify>,
    ) -> Reflected<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (reader, writer) = reflector::store::<K>();
        let stream = watcher(api, cfg)
            .backoff(watch_backoff())
            // Managed fields are never read: do not keep them in memory.
            .modify(|o: &mut K| o.meta_mut().managed_fields = None)
            .reflect(writer);
        let synced = Arc::new(AtomicBool::new(false));
        self.tasks.spawn(follow(
            stream,
            resource,
            changed.clone(),
            synced.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        ));
        Reflected { reader, synced }
    }

    /// The reflectors of the objects the translation reads, all waking
    /// `changed`, with their `synced` flags.
    fn world(
        &mut self,
        client: &Client,
        ns: Option<&str>,
        changed: &Arc<Notify>,
    ) -> (Stores, Vec<Arc<AtomicBool>>) {
        let unfiltered = watcher::Config::default;
        let classes = self.start(
            "ingressclasses",
            Api::all(client.clone()),
            unfiltered(),
            changed,
        );
        let ingresses = self.start("ingresses", api(client, ns), unfiltered(), changed);
        let services = self.start("services", api(client, ns), unfiltered(), changed);
        let slices = self.start("endpointslices", api(client, ns), unfiltered(), changed);
        let synced = vec![
            classes.synced,
            ingresses.synced,
            services.synced,
            slices.synced,
        ];
        let stores = Stores {
            classes: classes.reader,
            ingresses: ingresses.reader,
            services: services.reader,
            slices: slices.reader,
        };
        (stores, synced)
    }
}

/// Drives one reflector's stream until `shutdown`: counts events and
/// errors, wakes `changed` on every change, sets `synced` after each full
/// list.
async fn follow<K, S>(
    stream: S,
    resource: &'static str,
    changed: Arc<Notify>,
    synced: Arc<AtomicBool>,
    metrics: Metrics,
    shutdown: CancellationToken,
) where
    S: futures_util::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = stream.next() => ev,
        };
        match ev {
            None => return,
            Some(Ok(ev)) => {
                metrics.watch_events.with_label_values(&[resource]).inc();
                match ev {
                    watcher::Event::InitDone => {
                        synced.store(true, Ordering::Relaxed);
                        changed.notify_one();
                    }
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) => changed.notify_one(),
                    watcher::Event::Init | watcher::Event::InitApply(_) => {}
                }
            }
            Some(Err(e)) => {
                metrics.watch_errors.with_label_values(&[resource]).inc();
                tracing::warn!(resource, error = %e, "watch error; retrying");
            }
        }
    }
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown`. Background tasks go to `tasks`:
/// dropping it (an aborted `run`) stops them all, like a crash. Each
/// written pass's outcome goes to `outcome` (the Events and statuses, the
/// status page).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    tasks: &mut JoinSet<()>,
    config: Config,
    client: Client,
    metrics: Metrics,
    ready: Arc<Readiness>,
    leader: watch::Receiver<bool>,
    outcome: watch::Sender<status::Outcome>,
    shutdown: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let mut reflectors = Reflectors {
        tasks,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let (stores, synced) = reflectors.world(&client, config.namespace.as_deref(), &changed);
    start_status(
        &mut reflectors,
        &config,
        &client,
        &stores,
        &leader,
        &outcome,
    );
    let config_redis = config.redis.clone();
    Reconciler {
        settings: Settings {
            controller: config.controller.clone(),
            class: config.ingress_class.clone(),
            backend_mode: config.backend_mode,
            nginx_class: config.nginx_class,
            serve_unsupported_protections: config.serve_unsupported_protections,
        },
        config,
        client,
        stores,
        synced,
        metrics,
        ready,
        redis: store::Redis::new(&config_redis),
        store: None,
        secrets: BTreeMap::new(),
        outcome,
    }
    .run(changed, leader, shutdown)
    .await;
}

/// Starts the status task (and the reflector of the `--publish-service`
/// Service), reading each pass's outcome from `outcome`.
fn start_status(
    reflectors: &mut Reflectors<'_>,
    config: &Config,
    client: &Client,
    stores: &Stores,
    leader: &watch::Receiver<bool>,
    outcome: &watch::Sender<status::Outcome>,
) {
    let outcome_rx = outcome.subscribe();
    let svc_changed = Arc::new(Notify::new());
    let publish_svc = match &config.publish {
        PublishStatus::Service { namespace, name } => Some(
            reflectors
                .start(
                    "publishservice",
                    Api::<Service>::namespaced(client.clone(), namespace),
                    watcher::Config::default().fields(&format!("metadata.name={name}")),
                    &svc_changed,
                )
                .reader,
        ),
        _ => None,
    };
    let identity = match &config.lease {
        Some(l) => l.identity.clone(),
        None => "hipache-syncer".to_owned(),
    };
    reflectors.tasks.spawn(status::run(status::Inputs {
        client: client.clone(),
        publish: config.publish.clone(),
        ingresses: stores.ingresses.clone(),
        publish_svc,
        svc_changed,
        outcome: outcome_rx,
        leader: leader.clone(),
        identity,
        metrics: reflectors.metrics.clone(),
        shutdown: reflectors.shutdown.clone(),
    }));
}

struct Reconciler {
    config: Config,
    settings: Settings,
    client: Client,
    stores: Stores,
    synced: Vec<Arc<AtomicBool>>,
    metrics: Metrics,
    ready: Arc<Readiness>,
    /// Where the store's connection goes (one server, or the master the
    /// Sentinels name).
    redis: store::Redis,
    store: Option<Store>,
    /// TLS Secrets fetched (one GET each), refreshed at every resync.
    secrets: BTreeMap<ObjectKey, Option<TlsPair>>,
    outcome: watch::Sender<status::Outcome>,
}

impl Reconciler {
    async fn run(
        mut self,
        changed: Arc<Notify>,
        mut leader: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        let mut resync = tokio::time::interval(self.config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe = tokio::time::interval(MARKER_PROBE);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut switches = self.redis.switches();
        let mut need_resync = true;
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut backoff = RETRY_MIN;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = changed.notified() => {
                    // Fold a burst of events (a re-list) into one pass.
                    tokio::time::sleep(self.config.debounce).await;
                }
                _ = resync.tick() => {
                    need_resync = true;
                    self.secrets.clear();
                }
                r = leader.changed() => {
                    if r.is_err() { return }
                    need_resync = true;
                }
                () = next_switch(&mut switches) => {
                    // A new master: what was written to the old one in the
                    // last moments may be lost, and the connection must go.
                    tracing::info!("Sentinel switched the Redis master: reconnecting and resyncing");
                    self.store = None;
                    need_resync = true;
                }
                _ = probe.tick(), if !need_resync && *leader.borrow() => {
                    if !self.redis_lost().await {
                        continue;
                    }
                    need_resync = true;
                }
                _ = async { if let Some(at) = retry_at { tokio::time::sleep_until(at).await } }, if retry_at.is_some() => {}
            }
            let synced = self.synced.iter().all(|f| f.load(Ordering::Relaxed));
            self.ready.synced.store(synced, Ordering::Relaxed);
            if !synced {
                continue;
            }
            let is_leader = *leader.borrow();
            self.metrics.leader.set(i64::from(is_leader));
            if !is_leader {
                // A follower never talks to Redis; it resyncs when it leads.
                self.ready.redis_ok.store(true, Ordering::Relaxed);
                need_resync = true;
                retry_at = None;
                continue;
            }
            let started = Instant::now();
            let desired = self.compute().await;
            match self.write(&desired, need_resync).await {
                Ok(report) => {
                    need_resync = false;
                    retry_at = None;
                    backoff = RETRY_MIN;
                    self.ready.redis_ok.store(true, Ordering::Relaxed);
                    self.metrics.reconciles.inc();
                    self.publish(desired, &report);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "redis write failed");
                    if self.redis.is_sentinel() {
                        // The master may have moved: ask the Sentinels again.
                        self.store = None;
                    }
                    self.metrics.reconcile_errors.inc();
                    self.ready.redis_ok.store(false, Ordering::Relaxed);
                    need_resync = true;
                    retry_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
            self.metrics
                .sync_duration
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// Whether Redis lost what this leader wrote (its marker is gone). An
    /// error says nothing: the next write finds out.
    async fn redis_lost(&mut self) -> bool {
        let Some(store) = &mut self.store else {
            return false;
        };
        match store.marker_present().await {
            Ok(true) | Err(_) => false,
            Ok(false) => {
                tracing::warn!(
                    "Redis lost the syncer's keys (restarted empty, flushed or replaced): rewriting everything"
                );
                self.metrics.redis_resets.inc();
                true
            }
        }
    }

    fn world(&self) -> World {
        World {
            classes: self.stores.classes.state(),
            ingresses: self.stores.ingresses.state(),
            services: self.stores.services.state(),
            slices: self.stores.slices.state(),
            secrets: BTreeMap::new(),
        }
    }

    async fn compute(&mut self) -> Desired {
        let mut world = self.world();
        for key in desired::secret_refs(&world, &self.settings) {
            if !self.secrets.contains_key(&key) {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
                match api.get_opt(&key.name).await {
                    Ok(s) => {
                        self.secrets
                            .insert(key.clone(), s.as_ref().and_then(tls_pair));
                    }
                    Err(e) => tracing::warn!(secret = %key, error = %e, "cannot read TLS secret"),
                }
            }
            if let Some(Some(pair)) = self.secrets.get(&key) {
                world.secrets.insert(key, pair.clone());
            }
        }
        let d = desired::compute(&world, &self.settings);
        self.metrics
            .frontends
            .set(i64::try_from(d.frontends.len()).unwrap_or(i64::MAX));
        for (effect, kind) in [
            ("ignored", ReportKind::UnsupportedAnnotation),
            ("refused", ReportKind::UnsupportedProtection),
            ("unprotected", ReportKind::ServedUnprotected),
        ] {
            let n = d.reports.iter().filter(|r| r.kind == kind).count();
            self.metrics
                .unsupported_annotations
                .with_label_values(&[effect])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.metrics.invalid_ingresses.set(
            i64::try_from(
                d.reports
                    .iter()
                    .filter(|r| r.kind == ReportKind::Invalid)
                    .count(),
            )
            .unwrap_or(0),
        );
        d
    }

    async fn write(
        &mut self,
        desired: &Desired,
        resync: bool,
    ) -> Result<ApplyReport, store::StoreError> {
        let store = match &mut self.store {
            Some(s) => s,
            None => {
                let con = self.redis.connect().await?;
                self.store.insert(Store::new(
                    con,
                    hipache_schema::Keys::new(self.config.redis_prefix.clone()),
                    self.config.namespace.as_deref(),
                ))
            }
        };
        let report = if resync {
            store.resync(desired).await?
        } else {
            store.apply(desired).await?
        };
        self.metrics.redis_writes.inc_by(report.written as u64);
        self.metrics.redis_deletes.inc_by(report.deleted as u64);
        self.metrics.foreign_hosts.set(
            i64::try_from(report.foreign.len() + report.foreign_tls.len()).unwrap_or(i64::MAX),
        );
        if report.written + report.deleted > 0 {
            tracing::debug!(
                written = report.written,
                deleted = report.deleted,
                resync,
                "redis updated"
            );
        }
        Ok(report)
    }

    fn publish(&self, desired: Desired, report: &ApplyReport) {
        let mut reports = desired.reports;
        for (host, owner) in report.foreign.iter().chain(&report.foreign_tls) {
            if let Some(ingress) = ObjectKey::from_identifier(owner) {
                reports.push(Report {
                    ingress,
                    kind: ReportKind::ForeignKey,
                    message: format!(
                        "host {host} is owned by someone else in Redis (not k8s:); left alone"
                    ),
                });
            }
        }
        self.metrics
            .reports
            .set(i64::try_from(reports.len()).unwrap_or(i64::MAX));
        let _ = self.outcome.send(status::Outcome {
            ingresses: desired.ingresses,
            reports,
            sources: desired.sources,
            written_at: Some(std::time::SystemTime::now()),
        });
    }
}

fn tls_pair(s: &Secret) -> Option<TlsPair> {
    let data = s.data.as_ref()?;
    let get = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(TlsPair {
        cert: get("tls.crt")?,
        key: get("tls.key")?,
    })
}

/// The next master switch, or never without Sentinel.
async fn next_switch(switches: &mut Option<watch::Receiver<u64>>) {
    if let Some(rx) = switches {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}
