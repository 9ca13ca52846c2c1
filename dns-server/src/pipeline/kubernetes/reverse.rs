//! Reverse names (`in-addr.arpa`, `ip6.arpa`): PTR records for cluster IPs and ready
//! endpoints, and, when the stage is authoritative for the reverse zones (no
//! `reverseFallthrough`), NXDOMAIN with the reverse zone's SOA for any other address.

use hickory_proto::op::ResponseCode;
use nameplane_config::ValidatedConfig;

use super::zone::Zone;
use crate::cluster::index::Cluster;
use crate::cluster::names;
use crate::request::QName;
use crate::wire::answer::{Answer, Origin, OutName, Rdata};

/// A reverse zone's name (wire form) and its SOA's `ns.dns.` and `hostmaster.` names.
type ReverseSoa = (&'static [u8], Box<[u8]>, Box<[u8]>);

/// The reverse zones (`in-addr.arpa`, `ip6.arpa`) when the stage is authoritative for them
/// (CoreDNS `kubernetes cluster.local in-addr.arpa ip6.arpa` without `fallthrough`).
#[derive(Clone, Debug)]
pub(super) struct ReverseZones {
    /// Per zone, its name, and the `ns.dns.` and `hostmaster.` names of its SOA.
    zones: [ReverseSoa; 2],
    /// Zone apexes and stub domains (not `.`): names at or below them pass on.
    elsewhere: Vec<Box<[u8]>>,
}

impl ReverseZones {
    /// Reads the zones and stub domains of `config`; `name` encodes a name once, here.
    pub(super) fn new<E>(
        config: &ValidatedConfig,
        name: impl Fn(String) -> Result<Box<[u8]>, E>,
    ) -> Result<Self, E> {
        let zone = |wire: &'static [u8], text: &str| {
            Ok::<_, E>((
                wire,
                name(format!("ns.dns.{text}."))?,
                name(format!("hostmaster.{text}."))?,
            ))
        };
        let elsewhere = config
            .raw()
            .zones
            .iter()
            .map(|z| z.name.as_str())
            .chain(
                config
                    .raw()
                    .forward
                    .iter()
                    .map(|f| f.domain.as_str())
                    .filter(|d| *d != "."),
            )
            .map(|domain| name(format!("{domain}.")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            zones: [
                zone(names::IN_ADDR_ARPA, "in-addr.arpa")?,
                zone(names::IP6_ARPA, "ip6.arpa")?,
            ],
            elsewhere,
        })
    }
}

impl Zone {
    /// PTR for a cluster IP (the Service's name) or a ready endpoint (its endpoint names);
    /// anything else passes to the next stage (`None`) with `reverseFallthrough`
    /// (`authoritative` is `None`), and is NXDOMAIN without it ([`Zone::reverse_miss`]).
    pub(super) fn reverse<'a>(
        &'a self,
        authoritative: Option<&'a ReverseZones>,
        name: &QName,
        cluster: &'a Cluster,
    ) -> Option<Answer<'a>> {
        let Some(ip) = names::reverse_address(name) else {
            return self.reverse_miss(authoritative, name, cluster);
        };
        if !cluster.sync_state().ready(self.needs_pods, false) {
            // Authoritative for the reverse zones: not knowing yet is no NXDOMAIN, and
            // cluster addresses are not asked upstream.
            return authoritative
                .map(|_| Answer::rcode(ResponseCode::ServFail, Origin::Kubernetes));
        }
        let mut answer = Answer::rcode(ResponseCode::NoError, Origin::Kubernetes);
        answer.authoritative = true;
        if let Some(service) = cluster
            .services
            .by_ip(&ip)
            .iter()
            .find(|s| self.exposed(cluster, &s.namespace))
        {
            let target = self.service_name(&service.namespace, &service.name);
            answer
                .answers
                .push(self.rr(OutName::Query, Rdata::Ptr(target)));
            return Some(answer);
        }
        for endpoint in cluster.endpoints.by_ip(&ip) {
            if self.exposed(cluster, &endpoint.namespace) {
                let target =
                    self.endpoint_name(&endpoint.endpoint, &endpoint.namespace, &endpoint.service);
                let rr = self.rr(OutName::Query, Rdata::Ptr(target));
                if !answer.answers.contains(&rr) {
                    answer.answers.push(rr);
                }
            }
        }
        if answer.answers.is_empty() {
            self.reverse_miss(authoritative, name, cluster)
        } else {
            Some(answer)
        }
    }

    /// A reverse name that is no cluster address: the next stage's (the forwarders') with
    /// `reverseFallthrough` or when a zone or stub domain owns it, else NXDOMAIN with the
    /// reverse zone's SOA, as CoreDNS's *kubernetes* plugin answers for the reverse zones
    /// it is authoritative for.
    fn reverse_miss<'a>(
        &self,
        authoritative: Option<&'a ReverseZones>,
        name: &QName,
        cluster: &Cluster,
    ) -> Option<Answer<'a>> {
        let reverse = authoritative?;
        if reverse.elsewhere.iter().any(|domain| name.is_in(domain)) {
            return None;
        }
        let (zone, mname, rname) = reverse.zones.iter().find(|(z, _, _)| name.is_in(z))?;
        let mut answer = Answer::rcode(ResponseCode::NXDomain, Origin::Kubernetes);
        answer.authoritative = true;
        answer
            .authorities
            .push(self.soa_of(zone, mname, rname, cluster));
        Some(answer)
    }
}
