//! Service names, `<svc>.<ns>.svc.<zone>`: the cluster IPs of a ClusterIP Service, the ready
//! endpoints of a headless one, the CNAME of an ExternalName.

use hickory_proto::rr::RecordType;

use super::zone::{Ctx, Found, Zone, found};
use crate::cluster::objects::ServiceKind;
use crate::request::QName;
use crate::wire::answer::{Answer, OutName, Rdata};

/// What a Service name's lookup found.
#[derive(Clone, Copy, Debug)]
pub(super) enum ServiceFound<'a> {
    /// The lookup is done.
    Done(Found),
    /// A CNAME to this name inside the zone was added: the caller follows it.
    Follow(&'a [u8]),
}

impl Zone {
    /// `<svc>.<ns>.svc.<zone>`.
    pub(super) fn service<'a>(
        &'a self,
        ctx: Ctx<'a>,
        namespace: &str,
        service: &str,
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> ServiceFound<'a> {
        if !self.exposed(ctx.cluster, namespace) {
            return ServiceFound::Done(Found::NxDomain);
        }
        let Some((ns, svc, entry)) = ctx.cluster.services.entry(namespace, service) else {
            return ServiceFound::Done(Found::NxDomain);
        };
        let found = match &entry.kind {
            ServiceKind::InvalidExternalName => Found::NxDomain,
            ServiceKind::ExternalName(target) => {
                out.answers
                    .push(self.rr(owner, Rdata::Cname(OutName::wire(target))));
                if ctx.qtype != RecordType::CNAME
                    && QName::from_wire(target).is_some_and(|name| self.contains(&name))
                {
                    return ServiceFound::Follow(target);
                }
                // Outside the cluster domain: the CNAME alone (the alias path, if enabled,
                // resolves the target).
                Found::Records
            }
            ServiceKind::ClusterIp { .. } => {
                if self.ignore_empty_service && self.without_endpoints(ctx, ns, svc) {
                    return ServiceFound::Done(Found::NxDomain);
                }
                match ctx.qtype {
                    RecordType::A | RecordType::AAAA => found(self.addresses(
                        ctx.qtype,
                        owner,
                        entry.cluster_ips(),
                        false,
                        &mut out.answers,
                    )),
                    RecordType::SRV => self.srv(ctx, namespace, service, None, owner, out),
                    _ => Found::NoData,
                }
            }
            ServiceKind::Headless => {
                let Some(endpoints) = ctx.cluster.endpoints.get(ns, svc) else {
                    return ServiceFound::Done(Found::NxDomain);
                };
                if endpoints.no_ready_endpoints() {
                    return ServiceFound::Done(Found::NxDomain);
                }
                match ctx.qtype {
                    RecordType::A | RecordType::AAAA => found(self.addresses(
                        ctx.qtype,
                        owner,
                        endpoints.endpoints().map(|(_, e)| e.ip),
                        endpoints.repeats(),
                        &mut out.answers,
                    )),
                    RecordType::SRV => self.srv(ctx, namespace, service, None, owner, out),
                    _ => Found::NoData,
                }
            }
        };
        ServiceFound::Done(found)
    }
}
