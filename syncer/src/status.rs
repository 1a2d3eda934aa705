//! Ingress `status.loadBalancer` (server-side apply, field manager
//! [`FIELD_MANAGER`]) and Kubernetes Events on reported Ingresses. Runs on
//! the leader only, beside the Redis writes so a slow API server never
//! delays routing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::PublishStatus;
use crate::desired::{ObjectKey, Report};
use crate::metrics::Metrics;

/// Field manager of our status writes and the Events' reporting controller.
pub const FIELD_MANAGER: &str = "hipache-syncer";
/// A failed status patch is retried after this long.
const RETRY: Duration = Duration::from_secs(5);

/// What the reconcile loop hands to this task after each pass.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Ingresses whose status we maintain.
    pub ingresses: BTreeSet<ObjectKey>,
    /// Problems to publish as Events (translation and foreign keys).
    pub reports: Vec<Report>,
    /// Frontend host → the Ingress behind each of its paths.
    pub sources: std::collections::BTreeMap<String, Vec<crate::desired::HostRoute>>,
    /// When this pass was written to Redis.
    pub written_at: Option<std::time::SystemTime>,
}

/// The addresses to publish, from the configured Service or fixed list.
pub fn addresses(
    publish: &PublishStatus,
    svc: Option<&Service>,
) -> Vec<IngressLoadBalancerIngress> {
    let entry = |a: &str| {
        if a.parse::<std::net::IpAddr>().is_ok() {
            IngressLoadBalancerIngress {
                ip: Some(a.to_owned()),
                ..Default::default()
            }
        } else {
            IngressLoadBalancerIngress {
                hostname: Some(a.to_owned()),
                ..Default::default()
            }
        }
    };
    let mut out: Vec<IngressLoadBalancerIngress> = match publish {
        PublishStatus::None => return Vec::new(),
        PublishStatus::Fixed(list) => list.iter().map(|a| entry(a)).collect(),
        PublishStatus::Service { .. } => {
            let Some(svc) = svc else { return Vec::new() };
            let lb: Vec<_> = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref().or(i.hostname.as_deref()))
                .map(entry)
                .collect();
            if lb.is_empty() {
                svc.spec
                    .as_ref()
                    .and_then(|s| s.external_ips.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|a| entry(a))
                    .collect()
            } else {
                lb
            }
        }
    };
    out.sort_by(|a, b| (&a.ip, &a.hostname).cmp(&(&b.ip, &b.hostname)));
    out.dedup();
    out
}

/// What the status task reads and whom it answers to.
pub struct Inputs {
    pub client: Client,
    pub publish: PublishStatus,
    pub ingresses: Store<Ingress>,
    /// The Service whose addresses become the Ingresses' load-balancer
    /// status, when one is published.
    pub publish_svc: Option<Store<Service>>,
    /// Notified when that Service changes.
    pub svc_changed: Arc<Notify>,
    /// The reconciler's latest outcome (problems to report as Events).
    pub outcome: watch::Receiver<Outcome>,
    /// Whether this replica holds the Lease (only the holder writes).
    pub leader: watch::Receiver<bool>,
    /// This replica's name in Events.
    pub identity: String,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
}

/// Runs until `shutdown`: keeps status and Events in line with `outcome`.
pub async fn run(inputs: Inputs) {
    let Inputs {
        client,
        publish,
        ingresses,
        publish_svc,
        svc_changed,
        mut outcome,
        mut leader,
        identity,
        metrics,
        shutdown,
    } = inputs;
    let mut events = Events {
        client: client.clone(),
        reporter: Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(identity),
        },
        ingresses: ingresses.clone(),
        metrics: metrics.clone(),
        reported: BTreeSet::new(),
    };
    let status = LoadBalancerStatus {
        client,
        publish,
        ingresses,
        publish_svc,
        metrics,
    };
    let mut retry = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = outcome.changed() => if r.is_err() { return },
            r = leader.changed() => {
                if r.is_err() { return }
                // A new term reports everything again.
                events.reported.clear();
            }
            _ = svc_changed.notified() => {}
            _ = tokio::time::sleep(RETRY), if retry => {}
        }
        if !*leader.borrow() {
            continue;
        }
        let current = outcome.borrow().clone();
        let events_done = events.publish(&current.reports).await;
        let status_done = status.update(&current.ingresses).await;
        retry = !(events_done && status_done);
    }
}

/// Warning Events on reported Ingresses.
struct Events {
    client: Client,
    reporter: Reporter,
    ingresses: Store<Ingress>,
    metrics: Metrics,
    /// Problems published in this term.
    reported: BTreeSet<Report>,
}

impl Events {
    /// Publishes each problem once per term; a problem that goes away and
    /// comes back is reported again. `false`: one failed (retried later).
    async fn publish(&mut self, reports: &[Report]) -> bool {
        let now: BTreeSet<Report> = reports.iter().cloned().collect();
        self.reported.retain(|r| now.contains(r));
        let mut done = true;
        for r in &now {
            if self.reported.contains(r) {
                continue;
            }
            let Some(ing) = self
                .ingresses
                .get(&ObjectRef::new(&r.ingress.name).within(&r.ingress.namespace))
            else {
                continue;
            };
            let ev = Event {
                type_: EventType::Warning,
                reason: r.kind.reason().to_owned(),
                note: Some(r.message.chars().take(1000).collect()),
                action: "Sync".to_owned(),
                secondary: None,
            };
            // A recorder of its own per Event: kube-runtime's recorder folds
            // Events of one object and reason into one series and keeps the
            // first note, so a second foreign host of an Ingress would only
            // bump the count of the first's Event. Each problem is published
            // once per term here already; a series adds nothing.
            let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
            match recorder.publish(&ev, &ing.object_ref(&())).await {
                Ok(()) => {
                    self.metrics.events.inc();
                    self.reported.insert(r.clone());
                }
                Err(e) => {
                    tracing::warn!(ingress = %r.ingress, error = %e, "cannot publish event");
                    done = false;
                }
            }
        }
        done
    }
}

/// Ingress `status.loadBalancer`, from the configured addresses.
struct LoadBalancerStatus {
    client: Client,
    publish: PublishStatus,
    ingresses: Store<Ingress>,
    /// The `--publish-service` Service, when that is the source.
    publish_svc: Option<Store<Service>>,
    metrics: Metrics,
}

impl LoadBalancerStatus {
    /// Patches each of `keys` whose status differs from the addresses to
    /// publish. `false`: a patch failed (retried later).
    async fn update(&self, keys: &BTreeSet<ObjectKey>) -> bool {
        if self.publish == PublishStatus::None {
            return true;
        }
        let svc = self
            .publish_svc
            .as_ref()
            .and_then(|s| s.state().into_iter().next());
        let want = addresses(&self.publish, svc.as_deref());
        let mut done = true;
        for key in keys {
            let Some(ing) = self
                .ingresses
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
            else {
                continue;
            };
            let have = ing
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.clone())
                .unwrap_or_default();
            if have == want {
                continue;
            }
            match self.patch(key, &want).await {
                Ok(()) => self.metrics.status_updates.inc(),
                Err(e) => {
                    tracing::warn!(ingress = %key, error = %e, "cannot update status");
                    done = false;
                }
            }
        }
        done
    }

    /// Server-side apply of one Ingress's `status.loadBalancer.ingress`.
    async fn patch(
        &self,
        key: &ObjectKey,
        want: &[IngressLoadBalancerIngress],
    ) -> Result<(), kube::Error> {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "status": {"loadBalancer": {"ingress": want}},
        });
        api.patch_status(
            &key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };

    #[test]
    fn addresses_from_service_or_fixed() {
        let fixed = PublishStatus::Fixed(vec!["10.0.0.1".into(), "lb.example.com".into()]);
        let a = addresses(&fixed, None);
        assert_eq!(a[0].hostname.as_deref(), Some("lb.example.com"));
        assert_eq!(a[1].ip.as_deref(), Some("10.0.0.1"));
        let p = PublishStatus::Service {
            namespace: "x".into(),
            name: "y".into(),
        };
        let mut svc = Service {
            spec: Some(ServiceSpec {
                external_ips: Some(vec!["192.0.2.1".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            addresses(&p, Some(&svc))[0].ip.as_deref(),
            Some("192.0.2.1")
        );
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("203.0.113.7".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        assert_eq!(
            addresses(&p, Some(&svc))[0].ip.as_deref(),
            Some("203.0.113.7")
        );
        assert!(addresses(&p, None).is_empty());
        assert!(addresses(&PublishStatus::None, Some(&svc)).is_empty());
    }
}
