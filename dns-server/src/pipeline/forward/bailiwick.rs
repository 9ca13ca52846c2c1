//! What is kept of an upstream's reply before it is cached and answered.
//!
//! A forwarder for domain `D` (`.` for the upstreams) trusts its servers only for names in
//! `D`, and only for what the question asked:
//!
//! - **answer**: records owned by the question name, then by each CNAME target in turn
//!   (the chain), of the asked type, CNAME, or RRSIG; every owner inside `D`;
//! - **authority**: SOA and NS records (and RRSIG/NSEC/NSEC3 for DNSSEC clients) whose owner is inside `D` and at or
//!   above the last name of the chain (the zone that answered);
//! - **additional**: A and AAAA records inside `D` for targets of kept NS, MX and SRV
//!   records.
//!
//! Everything else is dropped and counted (`nameplane_forward_dropped_records_total`):
//! `out_of_chain` for records that do not belong to the question, `out_of_bailiwick` for
//! records of the chain outside `D`. A chain that leaves `D` therefore ends at the CNAME
//! that leaves it.

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::metrics::forward::ForwardMetrics;
use crate::reply::Key;
use crate::reply::Reply;

/// Longest CNAME chain followed inside one reply.
const MAX_CHAIN: usize = 16;

fn wanted_type(record: &Record, qtype: RecordType) -> bool {
    let rtype = record.record_type();
    qtype == RecordType::ANY
        || rtype == qtype
        || rtype == RecordType::CNAME
        || rtype == RecordType::RRSIG
}

/// Keeps the part of `message` the forwarder for `domain` may vouch for.
pub(crate) fn sanitize(
    message: Message,
    key: &Key,
    domain: &Name,
    metrics: &ForwardMetrics,
) -> Reply {
    let Message {
        metadata,
        answers,
        authorities,
        additionals,
        ..
    } = message;
    let mut dropped = Dropped::default();
    let (answers, last) = answer_chain(answers, key, domain, &mut dropped);
    let authorities = covering_authorities(authorities, &last, domain, &mut dropped);
    // A set, not a list: a hostile reply of thousands of MX records and thousands of
    // additionals would otherwise cost their product in comparisons (`Name` hashes and
    // compares without case).
    let targets: std::collections::HashSet<&Name> = answers
        .iter()
        .chain(&authorities)
        .filter_map(|record| match &record.data {
            RData::NS(ns) => Some(&ns.0),
            RData::MX(mx) => Some(&mx.exchange),
            RData::SRV(srv) => Some(&srv.target),
            _ => None,
        })
        .collect();
    let mut kept_additionals = Vec::new();
    for record in additionals {
        let address = matches!(record.record_type(), RecordType::A | RecordType::AAAA);
        if !address || !targets.contains(&record.name) {
            dropped.out_of_chain += 1;
        } else if !domain.zone_of(&record.name) {
            dropped.out_of_bailiwick += 1;
        } else {
            kept_additionals.push(record);
        }
    }
    metrics.dropped_records("out_of_chain", dropped.out_of_chain);
    metrics.dropped_records("out_of_bailiwick", dropped.out_of_bailiwick);
    Reply {
        rcode: metadata.response_code,
        truncated: metadata.truncation,
        answers,
        authorities,
        additionals: kept_additionals,
    }
}

/// Records left out of a reply, by why.
#[derive(Default)]
struct Dropped {
    out_of_chain: usize,
    out_of_bailiwick: usize,
}

/// The answer records on the CNAME chain from the question (names reachable from it
/// through kept CNAMEs) and inside `domain`, and the chain's last name.
fn answer_chain(
    answers: Vec<Record>,
    key: &Key,
    domain: &Name,
    dropped: &mut Dropped,
) -> (Vec<Record>, Name) {
    let mut chain: Vec<Name> = vec![key.name.clone()];
    let mut kept: Vec<Record> = Vec::new();
    let mut rest: Vec<Record> = answers;
    loop {
        let mut progressed = false;
        let mut unplaced = Vec::new();
        for record in rest {
            if !chain.contains(&record.name) || !wanted_type(&record, key.qtype) {
                unplaced.push(record);
                continue;
            }
            if !domain.zone_of(&record.name) {
                dropped.out_of_bailiwick += 1;
                continue;
            }
            if let RData::CNAME(target) = &record.data
                && key.qtype != RecordType::CNAME
                && !chain.contains(&target.0)
                && chain.len() < MAX_CHAIN
            {
                chain.push(target.0.clone());
                progressed = true;
            }
            kept.push(record);
        }
        rest = unplaced;
        if !progressed || rest.is_empty() {
            break;
        }
    }
    dropped.out_of_chain += rest.len();
    let last = chain.pop().unwrap_or_else(|| key.name.clone());
    (kept, last)
}

/// The authority records (SOA, NS and their DNSSEC records) of zones at or above `last`,
/// inside `domain`.
fn covering_authorities(
    authorities: Vec<Record>,
    last: &Name,
    domain: &Name,
    dropped: &mut Dropped,
) -> Vec<Record> {
    let mut kept = Vec::new();
    for record in authorities {
        let covered = matches!(
            record.record_type(),
            RecordType::SOA
                | RecordType::NS
                | RecordType::RRSIG
                | RecordType::NSEC
                | RecordType::NSEC3
        );
        if !covered || !record.name.zone_of(last) {
            dropped.out_of_chain += 1;
        } else if !domain.zone_of(&record.name) {
            dropped.out_of_bailiwick += 1;
        } else {
            kept.push(record);
        }
    }
    kept
}
