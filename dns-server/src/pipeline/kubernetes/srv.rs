//! SRV records of a Service: for its name, one per port; for `_<port>._<proto>.<svc>.<ns>.
//! svc.<zone>`, one per matching named port. A ClusterIP Service's records point at the
//! Service name, a headless Service's at each ready endpoint's name, with the addresses as
//! additional records.

use std::collections::HashSet;

use hickory_proto::rr::RecordType;

use super::zone::{Ctx, Found, Zone, srv_weight};
use crate::cluster::objects::{self, EndpointEntry, PortEntry, ServiceEntry, ServiceKind};
use crate::wire::answer::{Answer, Label, OutName, Rdata};

impl Zone {
    /// SRV records of a Service: for `_<port>._<proto>` names (`port` given), the matching
    /// named ports; for the Service name itself, every port.
    pub(super) fn srv<'a>(
        &'a self,
        ctx: Ctx<'a>,
        namespace: &str,
        service: &str,
        port: Option<(&[u8], objects::Protocol)>,
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> Found {
        if !self.exposed(ctx.cluster, namespace) {
            return Found::NxDomain;
        }
        let Some((ns, svc, entry)) = ctx.cluster.services.entry(namespace, service) else {
            return Found::NxDomain;
        };
        let wanted = |p: &PortEntry| match port {
            Some((name, protocol)) => p.matches(name, protocol),
            None => true,
        };
        match &entry.kind {
            ServiceKind::ExternalName(_) | ServiceKind::InvalidExternalName => Found::NxDomain,
            ServiceKind::ClusterIp { .. } => {
                if self.ignore_empty_service && self.without_endpoints(ctx, ns, svc) {
                    return Found::NxDomain;
                }
                let ports = entry.ports.iter().filter(|p| wanted(p));
                let target = self.service_name(ns, svc);
                match self.cluster_ip_srv(ctx.qtype, target, entry, ports, owner, out) {
                    Some(found) => found,
                    // No such port: a `_<port>._<proto>` name does not exist.
                    None if port.is_some() => Found::NxDomain,
                    None => Found::NoData,
                }
            }
            ServiceKind::Headless => {
                let Some(endpoints) = ctx.cluster.endpoints.get(ns, svc) else {
                    return Found::NxDomain;
                };
                let pairs = || {
                    endpoints.endpoints().flat_map(move |(slice, endpoint)| {
                        slice
                            .ports
                            .iter()
                            .filter(move |p| wanted(p))
                            .map(move |p| (endpoint, p.port))
                    })
                };
                if pairs().next().is_none() {
                    return if port.is_none() && !endpoints.no_ready_endpoints() {
                        Found::NoData
                    } else {
                        Found::NxDomain
                    };
                }
                if ctx.qtype != RecordType::SRV {
                    return Found::NoData;
                }
                self.headless_srv(ns, svc, pairs, owner, out);
                Found::Records
            }
        }
    }

    /// The SRV records of a ClusterIP Service, one per port in `ports`, pointing at the
    /// Service name `target`, with its cluster IPs as additional records; `None` without
    /// a port.
    fn cluster_ip_srv<'a, 'p>(
        &self,
        qtype: RecordType,
        target: OutName<'a>,
        entry: &ServiceEntry,
        ports: impl Iterator<Item = &'p PortEntry> + Clone,
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> Option<Found> {
        let count = ports.clone().count();
        if count == 0 {
            return None;
        }
        if qtype != RecordType::SRV {
            return Some(Found::NoData);
        }
        let weight = srv_weight(count);
        for p in ports {
            out.answers.push(self.rr(
                owner,
                Rdata::Srv {
                    priority: 0,
                    weight,
                    port: p.port,
                    target,
                },
            ));
        }
        for ip in entry.cluster_ips() {
            out.additionals.push(self.address(target, ip));
        }
        Some(Found::Records)
    }

    /// The SRV records of a headless Service, one per endpoint name and port in `pairs`,
    /// and each endpoint's address once as an additional record.
    fn headless_srv<'a, P>(
        &'a self,
        ns: &'a str,
        svc: &'a str,
        pairs: impl Fn() -> P,
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) where
        P: Iterator<Item = (&'a EndpointEntry, u16)>,
    {
        // One record per endpoint name and port: the same Pod appears in an IPv4
        // and an IPv6 slice under one hostname.
        let mut seen: HashSet<(Label<'a>, u16)> = HashSet::new();
        let distinct: Vec<_> = pairs()
            .filter(|(e, p)| seen.insert((e.label(self.endpoint_pod_names), *p)))
            .collect();
        let weight = srv_weight(distinct.len());
        for (endpoint, port) in &distinct {
            out.answers.push(self.rr(
                owner,
                Rdata::Srv {
                    priority: 0,
                    weight,
                    port: *port,
                    target: self.endpoint_name(endpoint, ns, svc),
                },
            ));
        }
        let mut addressed = HashSet::new();
        for (endpoint, _) in pairs() {
            if addressed.insert(endpoint.ip) {
                out.additionals
                    .push(self.address(self.endpoint_name(endpoint, ns, svc), endpoint.ip));
            }
        }
    }
}
