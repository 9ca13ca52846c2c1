//! The names the zone itself holds: the apex (SOA, NS `ns.dns.<zone>`), `ns.dns.<zone>`'s
//! addresses and `dns-version.<zone>`.

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use super::zone::{Ctx, DNS_SCHEMA_VERSION, DNS_VERSION_TTL, Found, Zone, found};
use crate::wire::answer::{Answer, OutName, Rdata, Rr};

impl Zone {
    /// `<zone>`: its SOA, or its NS with the name server's addresses as additional records.
    pub(super) fn apex<'a>(
        &'a self,
        ctx: Ctx<'a>,
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> Found {
        match ctx.qtype {
            RecordType::SOA => {
                let mut soa = self.soa(ctx.cluster);
                soa.owner = owner;
                out.answers.push(soa);
                Found::Records
            }
            RecordType::NS => {
                let ns = OutName::wire(self.mname());
                out.answers.push(self.rr(owner, Rdata::Ns(ns)));
                for ip in self.dns_addresses(ctx) {
                    out.additionals.push(self.address(ns, ip));
                }
                Found::Records
            }
            _ => Found::NoData,
        }
    }

    /// `ns.dns.<zone>`: A/AAAA of this server ([`Zone::dns_addresses`]).
    pub(super) fn ns_name<'a>(
        &self,
        ctx: Ctx<'a>,
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> Found {
        let ips = self.dns_addresses(ctx);
        found(self.addresses(ctx.qtype, owner, ips.into_iter(), true, &mut out.answers))
    }

    /// The addresses of `ns.dns.<zone>`: the cluster IPs of the Services whose endpoints are
    /// this server's own addresses, else those addresses themselves (CoreDNS `nsAddrs`).
    fn dns_addresses(&self, ctx: Ctx<'_>) -> Vec<IpAddr> {
        let mut ips = Vec::new();
        let mut found_endpoint = false;
        for own in ctx.dns_ips {
            for endpoint in ctx.cluster.endpoints.by_ip(own) {
                found_endpoint = true;
                if let Some(service) = ctx
                    .cluster
                    .services
                    .get(&endpoint.namespace, &endpoint.service)
                {
                    ips.extend(service.cluster_ips());
                }
            }
        }
        if !found_endpoint {
            ips.extend_from_slice(ctx.dns_ips);
        }
        let mut seen = HashSet::new();
        ips.retain(|ip| seen.insert(*ip));
        ips
    }
}

/// `dns-version.<zone>`: the TXT record of the schema version.
pub(super) fn dns_version<'a>(
    qtype: RecordType,
    owner: OutName<'a>,
    out: &mut Answer<'a>,
) -> Found {
    if qtype != RecordType::TXT {
        return Found::NoData;
    }
    out.answers.push(Rr {
        owner,
        ttl: DNS_VERSION_TTL,
        data: Rdata::Txt(DNS_SCHEMA_VERSION),
    });
    Found::Records
}
