//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Every replica watches and translates; only the holder writes Redis,
//! status and Events, and runs health checks. The algorithm is client-go's:
//! a Lease is expired when its record (holder, renew time) has not changed
//! for `leaseDurationSeconds` as observed on *our* clock (no trust in clock
//! sync); updates use the object's resourceVersion, so two candidates can
//! never both win. The holder renews every duration/3 and steps down when it
//! could not renew for 2/3 of the duration, before anyone may take over. On
//! a clean shutdown it releases the Lease so a successor takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::LeaseConfig;

#[derive(Debug, Error)]
pub enum LeaseError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// One candidate's state.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The last record seen (holder, renew time, resourceVersion) and when.
    observed: Option<(String, Instant)>,
    /// When we last renewed successfully, while leader.
    renewed: Option<Instant>,
}

impl Elector {
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            renewed: None,
        }
    }

    fn spec_now(&self, transitions: i32, acquire: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.cfg.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquire.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One round: acquire, renew or observe. Returns whether we lead.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaseError> {
        let now = Instant::now();
        let current = self.api.get_opt(&self.cfg.name).await?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec_now(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.renewed = Some(now);
                    Ok(true)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = format!(
            "{:?}/{:?}/{:?}",
            holder,
            spec.renew_time.as_ref().map(|t| t.0),
            lease.metadata.resource_version
        );
        match &self.observed {
            Some((r, _)) if *r == record => {}
            _ => self.observed = Some((record, now)),
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.cfg.duration);
        let ours = holder.as_deref() == Some(self.cfg.identity.as_str());
        let expired = holder.is_none()
            || self
                .observed
                .as_ref()
                .is_some_and(|(_, at)| now.duration_since(*at) >= duration);
        if !ours && !expired {
            self.renewed = None;
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquire = if ours {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec_now(transitions, acquire));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.renewed = Some(now);
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                self.renewed = None;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the Lease up (clean shutdown) so a successor need not wait.
    pub async fn release(&mut self) -> Result<(), LeaseError> {
        if let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.cfg.identity.as_str()) {
                spec.holder_identity = None;
                self.api
                    .replace(&self.cfg.name, &PostParams::default(), &lease)
                    .await?;
            }
        }
        self.renewed = None;
        Ok(())
    }

    /// Whether a leader that failed to renew must step down now.
    fn renew_deadline_passed(&self) -> bool {
        self.renewed
            .is_none_or(|at| at.elapsed() >= self.cfg.duration.mul_f64(2.0 / 3.0))
    }
}

/// Runs the election until `shutdown`, publishing leadership on `leader`.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    leader: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let retry = (cfg.duration / 3).max(Duration::from_millis(100));
    let mut e = Elector::new(client, cfg);
    loop {
        let lead = match e.try_acquire_or_renew().await {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(error = %err, "lease: cannot reach the API server");
                *leader.borrow() && !e.renew_deadline_passed()
            }
        };
        if *leader.borrow() != lead {
            tracing::info!(leader = lead, "lease: leadership changed");
            let _ = leader.send(lead);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(retry) => {}
        }
    }
    if *leader.borrow() {
        let _ = leader.send(false);
        if let Err(err) = e.release().await {
            tracing::warn!(error = %err, "lease: release failed");
        }
    }
}
