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

/// Runs until `shutdown`: keeps status and Events in line with `outcome`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    publish: PublishStatus,
    ingresses: Store<Ingress>,
    publish_svc: Option<Store<Service>>,
    svc_changed: Arc<Notify>,
    mut outcome: watch::Receiver<Outcome>,
    mut leader: watch::Receiver<bool>,
    identity: String,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(identity),
        },
    );
    let mut reported: BTreeSet<Report> = BTreeSet::new();
    let mut retry = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = outcome.changed() => if r.is_err() { return },
            r = leader.changed() => {
                if r.is_err() { return }
                // A new term reports everything again.
                reported.clear();
            }
            _ = svc_changed.notified() => {}
            _ = tokio::time::sleep(RETRY), if retry => {}
        }
        if !*leader.borrow() {
            continue;
        }
        let current = outcome.borrow().clone();
        retry = false;

        // Events, once per problem per term; a problem that goes away and
        // comes back is reported again.
        let now: BTreeSet<Report> = current.reports.iter().cloned().collect();
        reported.retain(|r| now.contains(r));
        for r in &now {
            if reported.contains(r) {
                continue;
            }
            let Some(ing) =
                ingresses.get(&ObjectRef::new(&r.ingress.name).within(&r.ingress.namespace))
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
            match recorder.publish(&ev, &ing.object_ref(&())).await {
                Ok(()) => {
                    metrics.events.inc();
                    reported.insert(r.clone());
                }
                Err(e) => {
                    tracing::warn!(ingress = %r.ingress, error = %e, "cannot publish event");
                    retry = true;
                }
            }
        }

        if publish == PublishStatus::None {
            continue;
        }
        let svc = publish_svc
            .as_ref()
            .and_then(|s| s.state().into_iter().next());
        let want = addresses(&publish, svc.as_deref());
        for key in &current.ingresses {
            let Some(ing) = ingresses.get(&ObjectRef::new(&key.name).within(&key.namespace)) else {
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
            let api: Api<Ingress> = Api::namespaced(client.clone(), &key.namespace);
            let patch = json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "status": {"loadBalancer": {"ingress": want}},
            });
            match api
                .patch_status(
                    &key.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                Ok(_) => metrics.status_updates.inc(),
                Err(e) => {
                    tracing::warn!(ingress = %key, error = %e, "cannot update status");
                    retry = true;
                }
            }
        }
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
