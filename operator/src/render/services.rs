//! Service references: the Services config objects name (a record's `service`, a
//! `StubDomain`'s `serviceRefs`, a `DNSServer`'s `upstreamServiceRefs`), the renderer's
//! snapshot of them ([`ServiceIndex`]), and how a reference becomes addresses.
//!
//! The renderer stays pure: the controller looks the referenced Services up in its cache
//! and hands over only what rendering reads (addresses and ports), so the same snapshot
//! always renders the same config.

use crate::api::UpstreamServiceRef;
use crate::api::dnsserver::DNSServer;
use crate::api::dnszone::{DNSZone, RecordServiceRef, ServiceAddressKind};
use crate::api::stubdomain::StubDomain;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// A Service, as `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port a Service lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name (`dns`, `dns-tcp`, ...); empty when the Service has only one port.
    pub name: String,
    /// The port number on the ClusterIP.
    pub port: u16,
}

/// What the renderer reads of one Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceAddresses {
    /// `spec.clusterIPs` (or `spec.clusterIP`); empty for a headless Service.
    pub cluster_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`, for a Service of type LoadBalancer.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.type`, e.g. `ClusterIP` or `LoadBalancer` (for messages).
    pub service_type: String,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `metadata.labels` (what a DNSPolicy's service selector matches).
    pub labels: BTreeMap<String, String>,
}

impl ServiceAddresses {
    /// What the renderer reads of `service`. Addresses that do not parse (never the case for
    /// a Service the API server stored) and `None` (headless) are left out.
    pub fn of(service: &Service) -> Self {
        let spec = service.spec.clone().unwrap_or_default();
        let parse = |ips: &[String]| -> Vec<IpAddr> {
            ips.iter().filter_map(|ip| ip.parse().ok()).collect()
        };
        let cluster_ips = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => parse(ips),
            _ => parse(spec.cluster_ip.as_slice()),
        };
        let load_balancer_ips = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|ingress| {
                ingress
                    .iter()
                    .filter_map(|i| i.ip.as_ref()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            cluster_ips,
            load_balancer_ips,
            service_type: spec.type_.unwrap_or_else(|| "ClusterIP".into()),
            ports: spec
                .ports
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| {
                    Some(ServicePort {
                        name: p.name.unwrap_or_default(),
                        port: u16::try_from(p.port).ok()?,
                    })
                })
                .collect(),
            labels: service.metadata.labels.clone().unwrap_or_default(),
        }
    }
}

/// The renderer's snapshot of the Services config objects refer to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceIndex(BTreeMap<ServiceKey, ServiceAddresses>);

/// The index with no Services, for rendering without any.
pub static NO_SERVICES: ServiceIndex = ServiceIndex(BTreeMap::new());

impl ServiceIndex {
    /// Indexes `services`.
    pub fn from_services<'a>(services: impl IntoIterator<Item = &'a Service>) -> Self {
        Self(
            services
                .into_iter()
                .map(|s| {
                    let key = ServiceKey {
                        namespace: s.namespace().unwrap_or_default(),
                        name: s.name_any(),
                    };
                    (key, ServiceAddresses::of(s))
                })
                .collect(),
        )
    }

    /// The Service `key`, if it exists.
    pub fn get(&self, key: &ServiceKey) -> Option<&ServiceAddresses> {
        self.0.get(key)
    }

    /// The Services of `namespace` (those the snapshot holds), by name.
    pub fn in_namespace<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a ServiceAddresses)> + 'a {
        self.0
            .range(
                ServiceKey {
                    namespace: namespace.to_owned(),
                    name: String::new(),
                }..,
            )
            .take_while(move |(key, _)| key.namespace == namespace)
            .map(|(key, service)| (key.name.as_str(), service))
    }
}

/// Why a Service reference gives no address: the reason for the `Ready` condition and a
/// message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefProblem {
    /// `OutsideNamespace`, `ServiceNotFound`, `NoAddresses` or `PortNotFound`.
    pub reason: &'static str,
    /// What is wrong, naming the Service.
    pub message: String,
}

fn problem(reason: &'static str, message: String) -> RefProblem {
    RefProblem { reason, message }
}

/// Reasons that the object's spec does not cause, so the object waits (rather than stalls)
/// until the Service appears or gets addresses; the watch re-renders it then.
pub fn waits_for_a_service(reason: &str) -> bool {
    matches!(reason, "ServiceNotFound" | "NoAddresses" | "PortNotFound")
}

/// Where a reference in an object of `object_namespace` points, checking the tenancy rule:
/// an object from another namespace than the server's (`trusted` false) may only name
/// Services of its own namespace, because the Service's address is what its names will
/// resolve to, and another namespace's Services are not its to publish.
fn resolve_key(
    name: &str,
    namespace: Option<&str>,
    object_namespace: &str,
    trusted: bool,
) -> Result<ServiceKey, RefProblem> {
    let namespace = namespace.unwrap_or(object_namespace);
    if !trusted && namespace != object_namespace {
        return Err(problem(
            "OutsideNamespace",
            format!(
                "Service {namespace}/{name}: objects in namespace {object_namespace} may only refer to Services of that namespace"
            ),
        ));
    }
    Ok(ServiceKey {
        namespace: namespace.into(),
        name: name.into(),
    })
}

fn lookup<'a>(
    services: &'a ServiceIndex,
    key: &ServiceKey,
) -> Result<&'a ServiceAddresses, RefProblem> {
    services.get(key).ok_or_else(|| {
        problem(
            "ServiceNotFound",
            format!("Service {key} does not exist; the records or servers it would give are left out until it does"),
        )
    })
}

/// The addresses of one family (`ipv4`) a record's `service` gives.
pub fn record_addresses(
    reference: &RecordServiceRef,
    object_namespace: &str,
    trusted: bool,
    ipv4: bool,
    services: &ServiceIndex,
) -> Result<Vec<IpAddr>, RefProblem> {
    let key = resolve_key(
        reference.name.as_str(),
        reference.namespace.as_ref().map(|n| n.as_str()),
        object_namespace,
        trusted,
    )?;
    let service = lookup(services, &key)?;
    let (pool, which) = match reference.addresses {
        ServiceAddressKind::ClusterIP => (&service.cluster_ips, "ClusterIP"),
        ServiceAddressKind::LoadBalancer => (&service.load_balancer_ips, "load-balancer"),
    };
    let family = if ipv4 { "IPv4" } else { "IPv6" };
    let addresses: Vec<IpAddr> = pool
        .iter()
        .copied()
        .filter(|ip| ip.is_ipv4() == ipv4)
        .collect();
    if addresses.is_empty() {
        let hint = match reference.addresses {
            ServiceAddressKind::LoadBalancer if service.service_type != "LoadBalancer" => {
                format!(
                    " (it is of type {}, not LoadBalancer)",
                    service.service_type
                )
            }
            ServiceAddressKind::LoadBalancer => " (yet)".to_string(),
            ServiceAddressKind::ClusterIP if service.cluster_ips.is_empty() => {
                " (it is headless)".to_string()
            }
            ServiceAddressKind::ClusterIP => String::new(),
        };
        return Err(problem(
            "NoAddresses",
            format!(
                "Service {key} has no {family} {which} address{hint}; the record set is left out"
            ),
        ));
    }
    Ok(addresses)
}

/// The forwarding targets (`ClusterIP:port`) an upstream reference gives.
pub fn upstream_addresses(
    reference: &UpstreamServiceRef,
    object_namespace: &str,
    trusted: bool,
    services: &ServiceIndex,
) -> Result<Vec<SocketAddr>, RefProblem> {
    let key = resolve_key(
        reference.name.as_str(),
        reference.namespace.as_ref().map(|n| n.as_str()),
        object_namespace,
        trusted,
    )?;
    let service = lookup(services, &key)?;
    if service.cluster_ips.is_empty() {
        return Err(problem(
            "NoAddresses",
            format!("Service {key} has no ClusterIP (it is headless); nothing to forward to"),
        ));
    }
    let named = |name: &str| {
        service
            .ports
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.port)
    };
    let port = reference
        .port
        .or_else(|| named("dns"))
        .or_else(|| named("dns-udp"))
        .unwrap_or(53);
    if !service.ports.iter().any(|p| p.port == port) {
        return Err(problem(
            "PortNotFound",
            format!(
                "Service {key} has no port {port}{}; set the reference's port to one it lists",
                if reference.port.is_none() {
                    " (the default: no port is named dns or dns-udp)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(service
        .cluster_ips
        .iter()
        .map(|ip| SocketAddr::new(*ip, port))
        .collect())
}

/// The namespaces whose Services a DNSPolicy selects by label: the snapshot holds all of
/// their Services, and a change to any of them re-renders.
pub fn selected_namespaces<'a>(
    policies: impl IntoIterator<Item = &'a crate::api::dnspolicy::DNSPolicy>,
) -> BTreeSet<String> {
    policies
        .into_iter()
        .flat_map(|policy| {
            let own = policy.namespace().unwrap_or_default();
            policy
                .spec
                .rules
                .iter()
                .flat_map(|rule| rule.services.iter())
                .filter(|service| service.selector.is_some())
                .map(move |service| {
                    service
                        .namespace
                        .as_ref()
                        .map_or_else(|| own.clone(), |n| n.as_str().to_owned())
                })
        })
        .collect()
}

/// Every Service the given objects refer to (wherever the tenancy rule would let them), so
/// the controller indexes just those and re-renders when one of them changes.
pub fn referenced<'a>(
    servers: impl IntoIterator<Item = &'a DNSServer>,
    zones: impl IntoIterator<Item = &'a DNSZone>,
    stubs: impl IntoIterator<Item = &'a StubDomain>,
) -> BTreeSet<ServiceKey> {
    let mut keys = BTreeSet::new();
    let mut add = |name: &str, namespace: Option<&str>, own: String| {
        keys.insert(ServiceKey {
            namespace: namespace.map_or(own, str::to_string),
            name: name.into(),
        });
    };
    for server in servers {
        for r in &server.spec.upstream_service_refs {
            let namespace = r.namespace.as_ref().map(|n| n.as_str());
            add(
                r.name.as_str(),
                namespace,
                server.namespace().unwrap_or_default(),
            );
        }
    }
    for zone in zones {
        for r in zone.spec.records.iter().filter_map(|r| r.service.as_ref()) {
            let namespace = r.namespace.as_ref().map(|n| n.as_str());
            add(
                r.name.as_str(),
                namespace,
                zone.namespace().unwrap_or_default(),
            );
        }
    }
    for stub in stubs {
        for r in &stub.spec.service_refs {
            let namespace = r.namespace.as_ref().map(|n| n.as_str());
            add(
                r.name.as_str(),
                namespace,
                stub.namespace().unwrap_or_default(),
            );
        }
    }
    keys
}
