//! Builders of Kubernetes objects for tests and the benchmark:
//! `ingress("ns", "name").host("a.com").path("/", "Prefix", "web", 80)`.
//!
//! Public (but hidden from the docs) so the integration tests, the fake API
//! server and the benchmark build the same objects as the unit tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::desired::{CLASS_ANNOTATION, DEFAULT_CLASS_ANNOTATION, SERVICE_NAME_LABEL};

/// A Service port named or numbered.
#[derive(Debug, Clone)]
pub enum Port {
    Number(i32),
    Name(String),
}

impl From<i32> for Port {
    fn from(n: i32) -> Self {
        Port::Number(n)
    }
}

impl From<&str> for Port {
    fn from(n: &str) -> Self {
        Port::Name(n.to_owned())
    }
}

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: ns.map(str::to_owned),
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

/// An Ingress backend on a Service port.
pub fn backend(service: &str, port: impl Into<Port>) -> IngressBackend {
    let port = match port.into() {
        Port::Number(n) => ServiceBackendPort {
            number: Some(n),
            name: None,
        },
        Port::Name(n) => ServiceBackendPort {
            name: Some(n),
            number: None,
        },
    };
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.to_owned(),
            port: Some(port),
        }),
        resource: None,
    }
}

/// Starts an Ingress of class `hipache` (by `spec.ingressClassName`),
/// created at Unix time 1000.
pub fn ingress(ns: &str, name: &str) -> IngressBuilder {
    let mut i = Ingress {
        metadata: meta(Some(ns), name),
        spec: Some(IngressSpec {
            ingress_class_name: Some("hipache".to_owned()),
            ..Default::default()
        }),
        status: None,
    };
    i.metadata.creation_timestamp = Timestamp::from_second(1000).ok().map(Time);
    IngressBuilder(i)
}

pub struct IngressBuilder(pub Ingress);

impl IngressBuilder {
    fn spec(&mut self) -> &mut IngressSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }

    /// `spec.ingressClassName` (`None` removes it).
    pub fn class_name(mut self, c: Option<&str>) -> Self {
        self.spec().ingress_class_name = c.map(str::to_owned);
        self
    }

    /// The legacy class annotation.
    pub fn class_annotation(self, c: &str) -> Self {
        self.annotation(CLASS_ANNOTATION, c)
    }

    /// Any annotation.
    pub fn annotation(mut self, name: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(name.to_owned(), value.to_owned());
        self
    }

    /// Creation time in Unix seconds.
    pub fn created(mut self, secs: i64) -> Self {
        self.0.metadata.creation_timestamp = Timestamp::from_second(secs).ok().map(Time);
        self
    }

    /// Starts a new rule for `host`.
    pub fn host(mut self, host: &str) -> Self {
        self.spec()
            .rules
            .get_or_insert_with(Vec::new)
            .push(IngressRule {
                host: Some(host.to_owned()),
                http: None,
            });
        self
    }

    /// Starts a new rule without a host.
    pub fn any_host(mut self) -> Self {
        self.spec()
            .rules
            .get_or_insert_with(Vec::new)
            .push(IngressRule {
                host: None,
                http: None,
            });
        self
    }

    /// Adds a path to the last rule (a host-less rule when there is none).
    pub fn path(
        mut self,
        path: &str,
        path_type: &str,
        service: &str,
        port: impl Into<Port>,
    ) -> Self {
        let b = backend(service, port);
        let rules = self.spec().rules.get_or_insert_with(Vec::new);
        if rules.is_empty() {
            rules.push(IngressRule::default());
        }
        if let Some(rule) = rules.last_mut() {
            rule.http
                .get_or_insert_with(|| HTTPIngressRuleValue { paths: Vec::new() })
                .paths
                .push(HTTPIngressPath {
                    path: (!path.is_empty()).then(|| path.to_owned()),
                    path_type: path_type.to_owned(),
                    backend: b,
                });
        }
        self
    }

    pub fn default_backend(mut self, service: &str, port: impl Into<Port>) -> Self {
        self.spec().default_backend = Some(backend(service, port));
        self
    }

    pub fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        self.spec()
            .tls
            .get_or_insert_with(Vec::new)
            .push(IngressTLS {
                hosts: Some(hosts.iter().map(|h| (*h).to_owned()).collect()),
                secret_name: Some(secret.to_owned()),
            });
        self
    }

    pub fn build(self) -> Ingress {
        self.0
    }
}

/// A ClusterIP Service.
pub fn service(ns: &str, name: &str) -> ServiceBuilder {
    ServiceBuilder(Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            ..Default::default()
        }),
        status: None,
    })
}

pub struct ServiceBuilder(pub Service);

impl ServiceBuilder {
    /// A port (`name` may be empty for an unnamed port).
    pub fn port(mut self, name: &str, port: i32) -> Self {
        if let Some(spec) = self.0.spec.as_mut() {
            spec.ports.get_or_insert_with(Vec::new).push(ServicePort {
                name: (!name.is_empty()).then(|| name.to_owned()),
                port,
                ..Default::default()
            });
        }
        self
    }

    pub fn cluster_ip(mut self, ip: &str) -> Self {
        if let Some(spec) = self.0.spec.as_mut() {
            spec.cluster_ip = Some(ip.to_owned());
        }
        self
    }

    pub fn external_name(mut self, name: &str) -> Self {
        if let Some(spec) = self.0.spec.as_mut() {
            spec.type_ = Some("ExternalName".to_owned());
            spec.external_name = Some(name.to_owned());
        }
        self
    }

    pub fn build(self) -> Service {
        self.0
    }
}

/// An EndpointSlice of Service `service`.
pub fn slice(ns: &str, service: &str, name: &str) -> SliceBuilder {
    let mut m = meta(Some(ns), name);
    m.labels = Some(BTreeMap::from([(
        SERVICE_NAME_LABEL.to_owned(),
        service.to_owned(),
    )]));
    SliceBuilder(EndpointSlice {
        address_type: "IPv4".to_owned(),
        endpoints: Vec::new(),
        metadata: m,
        ports: None,
    })
}

pub struct SliceBuilder(pub EndpointSlice);

impl SliceBuilder {
    pub fn address_type(mut self, t: &str) -> Self {
        self.0.address_type = t.to_owned();
        self
    }

    /// A port (`name` empty for the Service's unnamed port).
    pub fn port(mut self, name: &str, port: i32) -> Self {
        self.0
            .ports
            .get_or_insert_with(Vec::new)
            .push(EndpointPort {
                name: (!name.is_empty()).then(|| name.to_owned()),
                port: Some(port),
                ..Default::default()
            });
        self
    }

    /// A ready endpoint.
    pub fn ready(self, addr: &str) -> Self {
        self.endpoint(addr, Some(true), None)
    }

    pub fn endpoint(mut self, addr: &str, ready: Option<bool>, terminating: Option<bool>) -> Self {
        self.0.endpoints.push(Endpoint {
            addresses: vec![addr.to_owned()],
            conditions: Some(EndpointConditions {
                ready,
                serving: ready,
                terminating,
            }),
            ..Default::default()
        });
        self
    }

    pub fn build(self) -> EndpointSlice {
        self.0
    }
}

/// An IngressClass with a controller string.
pub fn ingress_class(name: &str, controller: &str) -> IngressClassBuilder {
    IngressClassBuilder(IngressClass {
        metadata: meta(None, name),
        spec: Some(IngressClassSpec {
            controller: Some(controller.to_owned()),
            parameters: None,
        }),
    })
}

pub struct IngressClassBuilder(pub IngressClass);

impl IngressClassBuilder {
    /// Marks the class as the cluster default.
    pub fn default_class(mut self) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(DEFAULT_CLASS_ANNOTATION.to_owned(), "true".to_owned());
        self
    }

    pub fn build(self) -> IngressClass {
        self.0
    }
}
