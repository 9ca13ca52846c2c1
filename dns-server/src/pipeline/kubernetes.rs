//! The Kubernetes stage: authoritative answers for names under the cluster domain.
//!
//! Owns every class-IN name under the configured cluster domain (and only those: anything
//! else is [`Flow::Skip`]). Answers, with AA set:
//!
//! | name                                | A / AAAA                         | other types |
//! |-------------------------------------|----------------------------------|-------------|
//! | `<svc>.<ns>.svc.<zone>`, exists     | one record per cluster IP of that family, or NODATA | NODATA |
//! | `<ns>.svc.<zone>`, has Services     | NODATA                           | NODATA      |
//! | `<ns>.svc.<zone>`, no Services      | NXDOMAIN                         | NXDOMAIN    |
//! | `svc.<zone>`                        | NODATA                           | NODATA      |
//! | `<zone>`                            | NODATA                           | SOA: answer; others NODATA |
//! | anything else under the zone        | NXDOMAIN                         | NXDOMAIN    |
//!
//! NODATA and NXDOMAIN carry the zone's SOA in the authority section (RFC 2308). Names that
//! exist only because something lives below them (`svc.<zone>`, a namespace) are NODATA,
//! not NXDOMAIN: resolvers that follow RFC 8020 would otherwise treat the whole subtree as
//! absent. Until the Service index has completed its initial list, every name under the
//! zone is SERVFAIL (as CoreDNS does), so that a starting server never claims a Service
//! does not exist.
//!
//! Zone transfers (AXFR, IXFR) are REFUSED, as CoreDNS does without its *transfer* plugin.
//!
//! The SOA (after CoreDNS's `plugin/backend_lookup.go`): `ns.dns.<zone>. hostmaster.<zone>.`,
//! serial = the unix time of the last index change, refresh 7200, retry 1800, expire 86400,
//! minimum = the config TTL (so negative answers are cached for that long); the SOA record's
//! own TTL is the config TTL capped at [`SOA_MAX_TTL`].

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nameplane_config::ValidatedConfig;

use super::{BuildError, Flow};
use crate::kubernetes::ServiceIndex;
use crate::kubernetes::names::{self, ClusterName};
use crate::request::Request;
use crate::response::{Answer, Origin};

/// SOA refresh, in seconds (CoreDNS's value).
pub const SOA_REFRESH: i32 = 7200;
/// SOA retry, in seconds (CoreDNS's value).
pub const SOA_RETRY: i32 = 1800;
/// SOA expire, in seconds (CoreDNS's value).
pub const SOA_EXPIRE: i32 = 86400;
/// Largest TTL of the SOA record itself, in seconds (CoreDNS's cap).
pub const SOA_MAX_TTL: u32 = 300;

/// The Kubernetes stage, built from one config.
#[derive(Clone, Debug)]
pub struct KubernetesStage {
    zone: Name,
    zone_labels: usize,
    mname: Name,
    rname: Name,
    ttl: u32,
}

impl KubernetesStage {
    /// Builds the stage: the zone and SOA names are parsed once, here.
    pub fn new(config: &ValidatedConfig) -> Result<Self, BuildError> {
        let domain = config.cluster_domain();
        let name = |text: String| {
            Name::from_ascii(&text).map_err(|e| BuildError::Kubernetes(format!("{text:?}: {e}")))
        };
        let zone = name(format!("{domain}."))?;
        Ok(Self {
            zone_labels: zone.iter().len(),
            mname: name(format!("ns.dns.{domain}."))?,
            rname: name(format!("hostmaster.{domain}."))?,
            zone,
            ttl: config.ttl_seconds(),
        })
    }

    /// Answers `request` if its name is under the cluster domain.
    pub fn handle(&self, request: &Request, services: &ServiceIndex) -> Flow {
        if request.query.query_class() != DNSClass::IN || !self.zone.zone_of(&request.name) {
            return Flow::Skip;
        }
        if !services.synced() {
            return Flow::Answer(Answer::rcode(ResponseCode::ServFail, Origin::Kubernetes));
        }
        let qtype = request.qtype();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return Flow::Answer(Answer::rcode(ResponseCode::Refused, Origin::Kubernetes));
        }
        let exists = match names::classify(&request.name, self.zone_labels) {
            ClusterName::Service { namespace, service } => {
                let Some(entry) = services.get(namespace, service) else {
                    return Flow::Answer(self.negative(ResponseCode::NXDomain, services));
                };
                let owner = request.query.name();
                let answers: Vec<Record> = match qtype {
                    RecordType::A => entry
                        .ipv4()
                        .iter()
                        .map(|ip| Record::from_rdata(owner.clone(), self.ttl, RData::A(A(*ip))))
                        .collect(),
                    RecordType::AAAA => entry
                        .ipv6()
                        .iter()
                        .map(|ip| {
                            Record::from_rdata(owner.clone(), self.ttl, RData::AAAA(AAAA(*ip)))
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                if !answers.is_empty() {
                    return Flow::Answer(self.positive(answers));
                }
                true
            }
            ClusterName::Namespace { namespace } => services.has_namespace(namespace),
            ClusterName::ServiceRoot => true,
            ClusterName::Apex => {
                if qtype == RecordType::SOA {
                    return Flow::Answer(self.positive(vec![self.soa(services)]));
                }
                true
            }
            ClusterName::Unknown => false,
        };
        let rcode = if exists {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        Flow::Answer(self.negative(rcode, services))
    }

    fn positive(&self, answers: Vec<Record>) -> Answer {
        Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            authorities: Vec::new(),
            additionals: Vec::new(),
            recursion_available: false,
            origin: Origin::Kubernetes,
        }
    }

    /// NODATA (NOERROR, no answers) or NXDOMAIN, with the SOA in the authority section.
    fn negative(&self, rcode: ResponseCode, services: &ServiceIndex) -> Answer {
        Answer {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authorities: vec![self.soa(services)],
            additionals: Vec::new(),
            recursion_available: false,
            origin: Origin::Kubernetes,
        }
    }

    fn soa(&self, services: &ServiceIndex) -> Record {
        let soa = SOA::new(
            self.mname.clone(),
            self.rname.clone(),
            services.serial(),
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            self.ttl,
        );
        Record::from_rdata(
            self.zone.clone(),
            self.ttl.min(SOA_MAX_TTL),
            RData::SOA(soa),
        )
    }
}
