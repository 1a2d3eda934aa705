//! `hipache-syncer`: a Kubernetes controller that turns Ingress objects of
//! its class into Hipache's Redis schema, so Kubernetes and redis-cli edits
//! feed one router; it also runs Hipache-style active health checks.
//!
//! # Layout
//! - [`config`]: flags (`HIPACHE_SYNCER_…` env) and the validated `Config`.
//! - [`desired`]: pure translation: Kubernetes objects → frontends and TLS.
//! - [`store`]: Redis diff and atomic apply with ownership marks.
//! - [`controller`]: watches (reflectors), the reconcile loop, resync.
//! - [`status`]: Ingress `status.loadBalancer` and Kubernetes Events.
//! - [`lease`]: leader election on a `coordination.k8s.io/v1` Lease.
//! - [`health`]: active health checks (`dead:` sets, `hchecker_ping`).
//! - [`metrics`]: Prometheus counters and the admin listener.
//! - [`status_page`]: the status page on the admin listener: hosts
//!   written, the Ingresses behind them, their Events.
//! - [`rbac`]: the Kubernetes API calls the syncer makes (for RBAC).
//! - [`fixtures`]: object builders for tests and the benchmark.

pub mod config;
pub mod controller;
pub mod desired;
#[doc(hidden)]
pub mod fixtures;
pub mod health;
pub mod lease;
pub mod metrics;
pub mod rbac;
pub mod status;
pub mod status_page;
pub mod store;

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::Config;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("admin listener: {0}")]
    Admin(#[from] std::io::Error),
}

/// Runs the syncer with the in-cluster (or kubeconfig) client until
/// `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = kube::Client::try_default().await?;
    run_with_client(config, client, shutdown).await
}

/// Runs the syncer with a given client (tests point it at a fake API
/// server) until `shutdown` is cancelled.
pub async fn run_with_client(
    config: Config,
    client: kube::Client,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    tracing::info!(
        redis = %config.redis.censored(),
        prefix = ?config.redis_prefix,
        "redis target"
    );
    let mut tasks = tokio::task::JoinSet::new();
    let metrics = metrics::Metrics::new();
    let ready = Arc::new(metrics::Readiness::default());
    let (leader_tx, leader_rx) = watch::channel(config.lease.is_none());
    let (outcome_tx, outcome_rx) = watch::channel(status::Outcome::default());
    if let Some(addr) = config.admin_address {
        let page = config.status_page.as_ref().map(|p| {
            let identity = config
                .lease
                .as_ref()
                .map_or_else(|| "hipache-syncer".to_owned(), |l| l.identity.clone());
            Arc::new(status_page::StatusPage::new(
                p.token.clone(),
                outcome_rx.clone(),
                leader_rx.clone(),
                identity,
            ))
        });
        if page.is_some() {
            tracing::info!("status page on at /status of the admin listener");
        }
        let local =
            metrics::serve_admin(addr, metrics.clone(), ready.clone(), page, shutdown.clone())
                .await?;
        tracing::info!(%local, "admin listener");
    }
    drop(outcome_rx);
    // Without a Lease the sender stays here so `leader` never closes.
    let mut _always_leader = None;
    let lease_task = match config.lease.clone() {
        Some(cfg) => Some(tokio::spawn(lease::run(
            client.clone(),
            cfg,
            leader_tx,
            shutdown.clone(),
        ))),
        None => {
            _always_leader = Some(leader_tx);
            None
        }
    };
    // Dropping this future (an aborted task) aborts the Lease task too,
    // without releasing the Lease: a crash, as tests simulate it.
    let lease_guard = lease_task.as_ref().map(|t| AbortOnDrop(t.abort_handle()));
    if let Some(h) = config.health.clone() {
        tasks.spawn(health::run(
            config.redis.clone(),
            hipache_schema::Keys::new(config.redis_prefix.clone()),
            h,
            leader_rx.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    controller::run(
        &mut tasks, config, client, metrics, ready, leader_rx, outcome_tx, shutdown,
    )
    .await;
    tasks.shutdown().await;
    if let Some(t) = lease_task {
        // Let the Lease be released before returning.
        let _ = t.await;
    }
    drop(lease_guard);
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
