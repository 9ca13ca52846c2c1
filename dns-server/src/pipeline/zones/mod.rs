//! The zones stage: authoritative answers for the zones of the config (from `DNSZone`
//! objects), after CoreDNS's *file* and *transfer* plugins.
//!
//! Owns every class-IN name at or below a configured apex (the longest apex wins when zones
//! nest); anything else is [`Flow::Skip`]. The lookup follows RFC 1034 §4.3.2:
//!
//! | the name…                                   | answer                                            |
//! |---------------------------------------------|---------------------------------------------------|
//! | is at or below a delegation (NS below apex) | referral: NOERROR, AA clear, NS in authority, glue in additional |
//! | has records of the type                     | those records, AA                                 |
//! | is asked `ANY`                              | one record set of the name, AA (RFC 8482 §4.1: the SOA at the apex, else the first type listed) |
//! | has a CNAME (type not CNAME)                | the CNAME, then the target's answer while the target is in the zone (at most [`MAX_CNAME_CHAIN`] hops, loops stop) |
//! | exists with other types only, or is an empty non-terminal | NODATA: NOERROR, SOA in authority |
//! | does not exist, `*.<closest encloser>` does | the wildcard's records, owned by the query name (RFC 4592) |
//! | does not exist                              | NXDOMAIN, SOA in authority                        |
//!
//! Names compare case-insensitively (the request name is lower-cased once); records owned
//! by the query name carry the query's own spelling. Answers of MX, SRV and NS records
//! bring the A/AAAA records of targets inside the zone in the additional section.
//!
//! **SOA and NS.** Generated: the apex NS is the zone's own NS records, or else the DNS
//! Service of the server serving it (`<name>.<namespace>.svc.<cluster domain>.`, answered by
//! the Kubernetes stage); the SOA is `<first NS> hostmaster.<zone>. serial 7200 1800 86400
//! <zone TTL>`, with the zone TTL also its own TTL (so negative answers are cached that
//! long, RFC 2308). The serial is the unix time at which this server first served the
//! zone's current content, carried over unchanged by reloads that leave the zone as it was,
//! and at least one above the previous serial after a change ([`ZonesStage::adopt`]).
//!
//! **Transfers** ([`crate::wire::transfer`]). AXFR, and IXFR answered with the whole zone (RFC 1995
//! allows it), over TCP to clients in the zone's `allowTransfer` prefixes: SOA, every
//! record, SOA, split over as many messages as needed. Everything else is REFUSED: a client
//! outside the list, a transfer over UDP, a zone without a list, or a name that is not an
//! apex.

mod build;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nameplane_config::ValidatedConfig;
use nameplane_config::zone::ZoneConfig;

use super::flow::{BuildError, Flow, Sources};
use crate::reply::Transfer;
use crate::request::{Request, Transport};
use crate::wire::answer::{Answer, Origin, OutName, Rdata, Rr};

/// SOA refresh, in seconds.
pub(crate) const SOA_REFRESH: i32 = 7200;
/// SOA retry, in seconds.
pub(crate) const SOA_RETRY: i32 = 1800;
/// SOA expire, in seconds.
pub(crate) const SOA_EXPIRE: i32 = 86400;
/// Most CNAMEs followed inside a zone for one answer.
pub(crate) const MAX_CNAME_CHAIN: usize = 8;

/// Seconds since the epoch, as a SOA serial (RFC 1982 arithmetic makes the 2106 wrap
/// harmless).
pub(crate) fn unix_now() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Truncation is the serial arithmetic's wrap-around.
    #[allow(clippy::cast_possible_truncation)]
    let serial = secs as u32;
    serial
}

/// The records of one type at one name, with their wire forms (what answers borrow).
#[derive(Clone, Debug, PartialEq, Eq)]
struct RRset {
    rtype: RecordType,
    /// The owner name in wire form.
    owner: Vec<u8>,
    records: Vec<Record>,
    /// Each record's data in wire form, names uncompressed.
    rdata: Vec<Vec<u8>>,
}

impl RRset {
    /// The records as borrowed answer records owned by `owner`.
    fn rrs<'a>(&'a self, owner: OutName<'a>, out: &mut Vec<Rr<'a>>) {
        for (record, data) in self.records.iter().zip(&self.rdata) {
            out.push(Rr {
                owner,
                ttl: record.ttl,
                data: Rdata::Raw {
                    rtype: self.rtype,
                    data,
                },
            });
        }
    }
}

/// Every record set at one name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    rrsets: Vec<RRset>,
}

impl Node {
    fn get(&self, rtype: RecordType) -> Option<&RRset> {
        self.rrsets.iter().find(|set| set.rtype == rtype)
    }
}

/// One zone, ready to answer from.
#[derive(Clone, Debug)]
pub(crate) struct Zone {
    apex: Name,
    config: ZoneConfig,
    mname: Name,
    rname: Name,
    serial: u32,
    soa: Record,
    soa_rdata: Vec<u8>,
    apex_wire: Vec<u8>,
    nodes: HashMap<Name, Node>,
    empty_non_terminals: HashSet<Name>,
    cuts: HashSet<Name>,
    allow_transfer: Vec<(IpAddr, u8)>,
}

impl Zone {
    /// The SOA serial being served.
    #[cfg(test)]
    pub(crate) fn serial(&self) -> u32 {
        self.serial
    }

    fn exists(&self, name: &Name) -> bool {
        self.nodes.contains_key(name) || self.empty_non_terminals.contains(name)
    }

    /// The highest delegation point at or above `name` (below the apex), if any.
    fn cut_above(&self, name: &Name) -> Option<&Name> {
        if self.cuts.is_empty() {
            return None;
        }
        let apex_labels = self.apex.num_labels();
        (apex_labels + 1..=name.num_labels())
            .map(|labels| name.trim_to(usize::from(labels)))
            .find_map(|candidate| self.cuts.get(&candidate))
    }

    /// The SOA as an authority record.
    fn soa_rr(&self) -> Rr<'_> {
        Rr {
            owner: OutName::wire(&self.apex_wire),
            ttl: self.soa.ttl,
            data: Rdata::Raw {
                rtype: RecordType::SOA,
                data: &self.soa_rdata,
            },
        }
    }

    /// NODATA/NXDOMAIN after the `answers` collected so far, with the SOA.
    fn negative<'a>(&'a self, rcode: ResponseCode, answers: Vec<Rr<'a>>) -> Answer<'a> {
        Answer {
            rcode,
            authoritative: true,
            answers,
            authorities: vec![self.soa_rr()],
            additionals: Vec::new(),
            origin: Origin::Zones,
        }
    }

    /// A/AAAA records of the in-zone targets of NS, MX and SRV records.
    fn additionals_for<'a>(&'a self, sets: &[&'a RRset]) -> Vec<Rr<'a>> {
        let mut out: Vec<Rr<'a>> = Vec::new();
        let mut seen: Vec<&Name> = Vec::new();
        for set in sets {
            for record in &set.records {
                let target = match &record.data {
                    RData::NS(ns) => &ns.0,
                    RData::MX(mx) => &mx.exchange,
                    RData::SRV(srv) => &srv.target,
                    _ => continue,
                };
                if seen.contains(&target) {
                    continue;
                }
                seen.push(target);
                let Some(node) = self.nodes.get(target) else {
                    continue;
                };
                for rtype in [RecordType::A, RecordType::AAAA] {
                    if let Some(glue) = node.get(rtype) {
                        glue.rrs(OutName::wire(&glue.owner), &mut out);
                    }
                }
            }
        }
        out
    }

    /// A referral to the delegation at `cut`, after the `answers` collected so far.
    fn referral<'a>(&'a self, cut: &Name, answers: Vec<Rr<'a>>) -> Answer<'a> {
        let mut authorities = Vec::new();
        let mut additionals = Vec::new();
        if let Some(ns) = self
            .nodes
            .get(cut)
            .and_then(|node| node.get(RecordType::NS))
        {
            ns.rrs(OutName::wire(&ns.owner), &mut authorities);
            additionals = self.additionals_for(&[ns]);
        }
        Answer {
            rcode: ResponseCode::NoError,
            // Authoritative for the CNAMEs that led here, not for the delegated data.
            authoritative: !answers.is_empty(),
            answers,
            authorities,
            additionals,
            origin: Origin::Zones,
        }
    }

    fn positive<'a>(&'a self, answers: Vec<Rr<'a>>, additionals: Vec<Rr<'a>>) -> Answer<'a> {
        Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            authorities: Vec::new(),
            additionals,
            origin: Origin::Zones,
        }
    }

    /// Answers `qtype` for `qname` (lower case). Records owned by the query name carry the
    /// client's spelling; later names of a CNAME chain are written as the CNAME gave them.
    fn lookup<'a>(&'a self, qname: &Name, qtype: RecordType) -> Answer<'a> {
        let mut answers: Vec<Rr<'a>> = Vec::new();
        let mut name = qname.clone();
        // The owner to write for records at `name`: the question, or the CNAME's target.
        let mut owner = OutName::Query;
        let mut seen: Vec<Name> = Vec::new();
        loop {
            if let Some(cut) = self.cut_above(&name) {
                // DS lives in the parent, but this server keeps none: NODATA, not a referral.
                if qtype == RecordType::DS && *cut == name {
                    return self.negative(ResponseCode::NoError, answers);
                }
                let cut = cut.clone();
                return self.referral(&cut, answers);
            }
            let node = match self.nodes.get(&name) {
                Some(node) => node,
                None if self.empty_non_terminals.contains(&name) => {
                    return self.negative(ResponseCode::NoError, answers);
                }
                None => match self.wildcard_for(&name) {
                    Some(node) => node,
                    None => return self.negative(ResponseCode::NXDomain, answers),
                },
            };
            if qtype == RecordType::ANY {
                // RFC 8482 §4.1: one set, not all of them (an ANY query is no longer a
                // way to get a large answer for a small question). The first set of the
                // node: the SOA at the apex, else the first type the config lists.
                let sets: Vec<&RRset> = node.rrsets.iter().take(1).collect();
                for set in &sets {
                    set.rrs(owner, &mut answers);
                }
                let additionals = self.additionals_for(&sets);
                return self.positive(answers, additionals);
            }
            if let Some(set) = node.get(qtype) {
                set.rrs(owner, &mut answers);
                let additionals = self.additionals_for(&[set]);
                return self.positive(answers, additionals);
            }
            let Some(cname) = node.get(RecordType::CNAME) else {
                return self.negative(ResponseCode::NoError, answers);
            };
            cname.rrs(owner, &mut answers);
            seen.push(name.clone());
            let (Some(RData::CNAME(target)), Some(target_wire)) =
                (cname.records.first().map(|r| &r.data), cname.rdata.first())
            else {
                return self.positive(answers, Vec::new());
            };
            let target = target.0.to_lowercase();
            if !self.apex.zone_of(&target)
                || seen.contains(&target)
                || seen.len() >= MAX_CNAME_CHAIN
            {
                // Out of the zone (the client's resolver follows it), a loop, or too long.
                return self.positive(answers, Vec::new());
            }
            name = target;
            owner = OutName::wire(target_wire);
        }
    }

    /// The records of `*.<closest encloser>` for a name that does not exist.
    fn wildcard_for(&self, name: &Name) -> Option<&Node> {
        let mut encloser = name.base_name();
        while !self.exists(&encloser) && encloser != self.apex {
            encloser = encloser.base_name();
        }
        let wildcard = encloser.prepend_label("*").ok()?;
        self.nodes.get(&wildcard)
    }

    /// Every record of the zone for a transfer: SOA first and last (RFC 5936 §2.2).
    fn transfer_records(&self) -> Vec<Record> {
        let mut names: Vec<&Name> = self.nodes.keys().collect();
        // Apex first, then canonical order, so transfers are stable.
        names.sort_by(|a, b| {
            (*a != &self.apex)
                .cmp(&(*b != &self.apex))
                .then_with(|| a.cmp(b))
        });
        let mut records = vec![self.soa.clone()];
        for name in names {
            if let Some(node) = self.nodes.get(name) {
                for set in node.rrsets.iter().filter(|s| s.rtype != RecordType::SOA) {
                    records.extend(set.records.iter().cloned());
                }
            }
        }
        records.push(self.soa.clone());
        records
    }
}

/// The zones stage, built from one config.
#[derive(Debug)]
pub(crate) struct ZonesStage {
    zones: HashMap<Name, Zone>,
}

impl ZonesStage {
    /// Builds every zone of `config`, each starting at serial `now` (see [`ZonesStage::adopt`]).
    pub(crate) fn new(config: &ValidatedConfig, now: u32) -> Result<Self, BuildError> {
        let mut zones = HashMap::new();
        for settings in &config.raw().zones {
            let zone = build::zone(settings, now, &config.raw().server, config.cluster_domain())
                .map_err(|e| BuildError::Zones(format!("{}: {e}", settings.name)))?;
            zones.insert(zone.apex.clone(), zone);
        }
        Ok(Self { zones })
    }

    /// Carries serials over from the stage serving until now: a zone whose config did not
    /// change keeps its serial; a changed one gets at least the old serial plus one, so a
    /// secondary polling the SOA always sees the change.
    pub(crate) fn adopt(&mut self, previous: &ZonesStage) {
        for (apex, zone) in &mut self.zones {
            let Some(old) = previous.zones.get(apex) else {
                continue;
            };
            let serial = if old.config == zone.config {
                old.serial
            } else {
                zone.serial.max(old.serial.wrapping_add(1))
            };
            zone.set_serial(serial);
        }
    }

    /// The zone with this apex.
    #[cfg(test)]
    pub(crate) fn zone(&self, apex: &Name) -> Option<&Zone> {
        self.zones.get(apex)
    }

    /// The zone that owns `name`: the longest apex at or above it.
    fn find(&self, name: &Name) -> Option<&Zone> {
        (0..=name.num_labels())
            .rev()
            .find_map(|labels| self.zones.get(&name.trim_to(usize::from(labels))))
    }

    /// Answers `request` if its name is in one of the zones.
    pub(crate) fn handle<'a>(&'a self, request: &Request<'_>, sources: &Sources<'_>) -> Flow<'a> {
        if request.qclass != DNSClass::IN {
            return Flow::Skip;
        }
        let Some(name) = crate::reply::question_name(request) else {
            return Flow::Skip;
        };
        let Some(zone) = self.find(&name) else {
            return Flow::Skip;
        };
        let qtype = request.qtype;
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            let allowed = request.transport == Transport::Tcp
                && name == zone.apex
                && zone.transfer_allowed(sources.client.ip());
            if !allowed {
                return Flow::Answer(Answer::rcode(ResponseCode::Refused, Origin::Zones));
            }
            return Flow::Transfer(Transfer {
                records: zone.transfer_records(),
            });
        }
        Flow::Answer(zone.lookup(&name, qtype))
    }
}
