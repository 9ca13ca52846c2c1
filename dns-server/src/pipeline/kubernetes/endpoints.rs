//! Endpoint names, `<ep>.<svc>.<ns>.svc.<zone>`: the addresses of the endpoints of a
//! Service with that name (hostname, Pod name with `endpointPodNames`, or dashed IP).

use hickory_proto::rr::RecordType;

use super::zone::{Ctx, Found, Zone, found};
use crate::cluster::objects::ServiceKind;
use crate::wire::answer::{Answer, OutName};

impl Zone {
    /// `<ep>.<svc>.<ns>.svc.<zone>`, `label` being `<ep>`.
    pub(super) fn endpoint<'a>(
        &'a self,
        ctx: Ctx<'a>,
        namespace: &str,
        service: &str,
        label: &[u8],
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> Found {
        if !self.exposed(ctx.cluster, namespace) {
            return Found::NxDomain;
        }
        let Some((ns, svc, entry)) = ctx.cluster.services.entry(namespace, service) else {
            return Found::NxDomain;
        };
        if !matches!(
            entry.kind,
            ServiceKind::ClusterIp { .. } | ServiceKind::Headless
        ) {
            return Found::NxDomain;
        }
        let Some(endpoints) = ctx.cluster.endpoints.get(ns, svc) else {
            return Found::NxDomain;
        };
        let mut matching = endpoints
            .endpoints()
            .map(|(_, e)| e)
            .filter(|e| e.name(self.endpoint_pod_names).as_bytes() == label)
            .peekable();
        if matching.peek().is_none() {
            return Found::NxDomain;
        }
        match ctx.qtype {
            RecordType::A | RecordType::AAAA => found(self.addresses(
                ctx.qtype,
                owner,
                matching.map(|e| e.ip),
                endpoints.repeats(),
                &mut out.answers,
            )),
            _ => Found::NoData,
        }
    }
}
