//! From a [`ZoneConfig`] (presentation form, validated) to a [`Zone`] (wire-ready records in
//! hash maps), once per reload.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncodable as _, BinEncoder, Restrict};
use nameplane_config::zone::{self, RecordKind, ZoneConfig};

use super::{Node, RRset, SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, Zone};

/// Parses a name as written in the config (no trailing dot needed) into a lower-case FQDN.
pub(super) fn fqdn(text: &str) -> Result<Name, String> {
    let absolute = if text.ends_with('.') {
        text.to_owned()
    } else {
        format!("{text}.")
    };
    Name::from_ascii(&absolute)
        .map(|name| name.to_lowercase())
        .map_err(|e| format!("{text:?}: {e}"))
}

/// The name server name used when a zone lists no NS records at its apex: the DNS
/// Service of the server that serves it, `<name>.<namespace>.svc.<cluster domain>.`,
/// which the Kubernetes stage answers; `ns.dns.<zone>.` when the server name is unusable.
fn default_ns(server: &str, cluster_domain: &str, apex: &Name) -> Name {
    server
        .split_once('/')
        .and_then(|(namespace, name)| {
            fqdn(&format!("{name}.{namespace}.svc.{cluster_domain}")).ok()
        })
        .or_else(|| fqdn(&format!("ns.dns.{}", apex.to_ascii())).ok())
        .unwrap_or_else(|| apex.clone())
}

/// Parses one value of `kind` into record data. The config crate has already checked the
/// value; errors here mean the two disagree and are reported, not ignored.
pub(super) fn rdata(kind: RecordKind, value: &str) -> Result<RData, String> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let number = |text: &str| {
        text.parse::<u16>()
            .map_err(|_| format!("{text:?} is not a number from 0 to 65535"))
    };
    let one_name = || match fields.as_slice() {
        [name] => fqdn(name),
        _ => Err(format!("{value:?} must be one name")),
    };
    Ok(match kind {
        RecordKind::A => RData::A(A(value
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("{value:?} is not an IPv4 address"))?)),
        RecordKind::AAAA => RData::AAAA(AAAA(
            value
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("{value:?} is not an IPv6 address"))?,
        )),
        RecordKind::CNAME => RData::CNAME(CNAME(one_name()?)),
        RecordKind::NS => RData::NS(NS(one_name()?)),
        RecordKind::PTR => RData::PTR(PTR(one_name()?)),
        RecordKind::MX => match fields.as_slice() {
            [preference, exchange] => RData::MX(MX::new(number(preference)?, fqdn(exchange)?)),
            _ => return Err(format!("{value:?} must be `preference exchange.`")),
        },
        RecordKind::SRV => match fields.as_slice() {
            [priority, weight, port, target] => RData::SRV(SRV::new(
                number(priority)?,
                number(weight)?,
                number(port)?,
                fqdn(target)?,
            )),
            _ => return Err(format!("{value:?} must be `priority weight port target.`")),
        },
        RecordKind::TXT => RData::TXT(TXT::new(vec![value.to_owned()])),
        RecordKind::CAA => RData::CAA(caa(value)?),
    })
}

/// Builds CAA data through its wire form (flags, tag length, tag, value): the type's fields
/// are not constructible outside hickory, and this keeps any tag, not only the three known.
fn caa(value: &str) -> Result<CAA, String> {
    let parsed = zone::parse_caa(value)?;
    let tag_len = u8::try_from(parsed.tag.len()).map_err(|_| "CAA tag too long".to_owned())?;
    let mut wire = vec![parsed.flags, tag_len];
    wire.extend_from_slice(parsed.tag.as_bytes());
    wire.extend_from_slice(parsed.value.as_bytes());
    let len = u16::try_from(wire.len()).map_err(|_| "CAA value too long".to_owned())?;
    let mut decoder = BinDecoder::new(&wire);
    match RData::read(&mut decoder, RecordType::CAA, Restrict::new(len)) {
        Ok(RData::CAA(caa)) => Ok(caa),
        Ok(_) => Err(format!("{value:?} did not decode as CAA")),
        Err(e) => Err(format!("{value:?} is not a valid CAA value: {e}")),
    }
}

fn record_kind_type(kind: RecordKind) -> RecordType {
    match kind {
        RecordKind::A => RecordType::A,
        RecordKind::AAAA => RecordType::AAAA,
        RecordKind::CNAME => RecordType::CNAME,
        RecordKind::MX => RecordType::MX,
        RecordKind::NS => RecordType::NS,
        RecordKind::PTR => RecordType::PTR,
        RecordKind::SRV => RecordType::SRV,
        RecordKind::TXT => RecordType::TXT,
        RecordKind::CAA => RecordType::CAA,
    }
}

/// Builds one zone. `serial` is the SOA serial to start with; `server` and `cluster_domain`
/// name the default NS.
pub(super) fn zone(
    config: &ZoneConfig,
    serial: u32,
    server: &str,
    cluster_domain: &str,
) -> Result<Zone, String> {
    let apex = fqdn(&config.name)?;
    let mut nodes = record_nodes(config, &apex)?;
    // The apex always has NS records: the configured ones, or the server's own Service.
    let apex_node = nodes.entry(apex.clone()).or_default();
    if apex_node.get(RecordType::NS).is_none() {
        let mut set = RRset::new(RecordType::NS, &apex);
        set.push(Record::from_rdata(
            apex.clone(),
            config.ttl_seconds,
            RData::NS(NS(default_ns(server, cluster_domain, &apex))),
        ));
        apex_node.rrsets.push(set);
    }
    let mname = apex_node
        .get(RecordType::NS)
        .and_then(|set| set.records.first())
        .and_then(|record| match &record.data {
            RData::NS(ns) => Some(ns.0.clone()),
            _ => None,
        })
        .unwrap_or_else(|| apex.clone());
    let empty_non_terminals = empty_non_terminals(&nodes, &apex);
    let cuts = nodes
        .iter()
        .filter(|(name, node)| **name != apex && node.get(RecordType::NS).is_some())
        .map(|(name, _)| name.clone())
        .collect();
    let allow_transfer = config
        .allow_transfer
        .iter()
        .map(|prefix| zone::parse_prefix(prefix))
        .collect::<Result<Vec<_>, _>>()?;
    let rname = Name::from_ascii("hostmaster")
        .and_then(|label| label.append_domain(&apex))
        .map_err(|e| format!("hostmaster.{}: {e}", config.name))?;
    let mut zone = Zone {
        soa: Record::from_rdata(apex.clone(), 0, RData::A(A(Ipv4Addr::UNSPECIFIED))),
        soa_rdata: Vec::new(),
        apex_wire: wire_name(&apex),
        apex,
        config: config.clone(),
        mname,
        rname,
        serial,
        nodes,
        empty_non_terminals,
        cuts,
        allow_transfer,
    };
    zone.set_serial(serial);
    Ok(zone)
}

/// The configured records of the zone at `apex`, by owner name and type.
fn record_nodes(config: &ZoneConfig, apex: &Name) -> Result<HashMap<Name, Node>, String> {
    let mut nodes: HashMap<Name, Node> = HashMap::new();
    for record in &config.records {
        let owner = fqdn(&record.name)?;
        if !apex.zone_of(&owner) {
            return Err(format!(
                "{} is not inside zone {}",
                record.name, config.name
            ));
        }
        let rtype = record_kind_type(record.record_type);
        let node = nodes.entry(owner.clone()).or_default();
        let set = match node.rrsets.iter_mut().position(|set| set.rtype == rtype) {
            Some(i) => &mut node.rrsets[i],
            None => {
                node.rrsets.push(RRset::new(rtype, &owner));
                let last = node.rrsets.len() - 1;
                &mut node.rrsets[last]
            }
        };
        for value in &record.values {
            let data = rdata(record.record_type, value)
                .map_err(|e| format!("{} {:?}: {e}", record.name, record.record_type))?;
            set.push(Record::from_rdata(owner.clone(), record.ttl_seconds, data));
        }
    }
    Ok(nodes)
}

/// Every name between a record's owner and the apex exists (an empty non-terminal if it
/// has no records of its own): NODATA there, never NXDOMAIN (RFC 8020).
fn empty_non_terminals(nodes: &HashMap<Name, Node>, apex: &Name) -> HashSet<Name> {
    let mut empty = HashSet::new();
    for owner in nodes.keys() {
        let mut name = owner.base_name();
        while apex.zone_of(&name) && name != *apex {
            if !nodes.contains_key(&name) {
                empty.insert(name.clone());
            }
            name = name.base_name();
        }
    }
    empty
}

/// A name in wire form (uncompressed).
pub(super) fn wire_name(name: &Name) -> Vec<u8> {
    name.to_bytes().unwrap_or_else(|_| vec![0])
}

/// Record data in wire form with every name written in full (no compression pointers, so
/// the bytes can be copied into any message).
pub(super) fn wire_rdata(data: &RData) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_canonical_form(true);
    // Record data of the types a zone holds always encodes.
    let _ = data.emit(&mut encoder);
    buf
}

impl RRset {
    fn new(rtype: RecordType, owner: &Name) -> Self {
        Self {
            rtype,
            owner: wire_name(owner),
            records: Vec::new(),
            rdata: Vec::new(),
        }
    }

    /// Adds `record` (once).
    fn push(&mut self, record: Record) {
        if !self.records.contains(&record) {
            self.rdata.push(wire_rdata(&record.data));
            self.records.push(record);
        }
    }
}

impl Zone {
    /// Sets the serial and rebuilds the SOA record around it.
    pub(super) fn set_serial(&mut self, serial: u32) {
        self.serial = serial;
        let ttl = self.config.ttl_seconds;
        let soa = SOA::new(
            self.mname.clone(),
            self.rname.clone(),
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            ttl,
        );
        self.soa = Record::from_rdata(self.apex.clone(), ttl, RData::SOA(soa));
        self.soa_rdata = wire_rdata(&self.soa.data);
        let mut set = RRset::new(RecordType::SOA, &self.apex);
        set.push(self.soa.clone());
        let apex = self.nodes.entry(self.apex.clone()).or_default();
        apex.rrsets.retain(|set| set.rtype != RecordType::SOA);
        apex.rrsets.insert(0, set);
    }

    /// Whether `client` may transfer this zone.
    pub(super) fn transfer_allowed(&self, client: IpAddr) -> bool {
        self.allow_transfer
            .iter()
            .any(|prefix| zone::prefix_contains(*prefix, client))
    }
}
