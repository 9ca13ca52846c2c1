//! `DNSZone` objects into the config's zones: records with names made absolute, Service
//! references resolved to addresses, one zone per apex (the oldest object wins).

use super::dnsserver::Scope;
use super::rejected;
use crate::api::dnszone::{DNSZone, RecordType};
use crate::render::services::{self, ServiceIndex};
use crate::render::{ObjectKey, Verdict};
use kube::ResourceExt;
use nameplane_config::names;
use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Zones of the selected `DNSZone`s (oldest first), sorted by apex.
///
/// A record whose `service` gives no address is left out; the zone is served without it and
/// its verdict is [`Verdict::Partial`].
pub fn zones(
    objects: &[Arc<DNSZone>],
    scope: &Scope,
    services: &ServiceIndex,
    verdicts: &mut BTreeMap<ObjectKey, Verdict>,
) -> Vec<ZoneConfig> {
    let mut by_apex: BTreeMap<String, (ObjectKey, ZoneConfig)> = BTreeMap::new();
    for object in objects {
        let key = ObjectKey::of(object.as_ref());
        let verdict = zone(object, scope, services).and_then(|(zone, partial)| match by_apex.get(&zone.name) {
            Some((winner, _)) => Err(rejected(
                "Conflict",
                format!(
                    "zone {} is already served from {winner}, which is older; remove one of them",
                    zone.name
                ),
            )),
            None => Ok((zone, partial)),
        });
        match verdict {
            Ok((zone, partial)) => {
                verdicts.insert(key.clone(), partial);
                by_apex.insert(zone.name.clone(), (key, zone));
            }
            Err(v) => {
                verdicts.insert(key, v);
            }
        }
    }
    by_apex.into_values().map(|(_, zone)| zone).collect()
}

/// Translates one zone; the verdict is `Accepted`, or `Partial` when Service references
/// left record sets out.
fn zone(
    object: &DNSZone,
    scope: &Scope,
    services: &ServiceIndex,
) -> Result<(ZoneConfig, Verdict), Verdict> {
    let namespace = object.namespace().unwrap_or_default();
    let apex = names::normalize_domain(object.spec.zone.as_str())
        .map_err(|r| rejected("InvalidSpec", format!("spec.zone: {r}")))?;
    scope.allows(&namespace, &apex)?;
    let trusted = namespace == scope.server_namespace;
    let mut problems = Vec::new();
    let mut sets: BTreeMap<(String, RecordKind), RecordConfig> = BTreeMap::new();
    for (i, record) in object.spec.records.iter().enumerate() {
        let values: Vec<String> = match &record.service {
            None => record.values.iter().map(|v| v.0.clone()).collect(),
            Some(reference) => {
                let ipv4 = record.record_type == RecordType::A;
                match services::record_addresses(reference, &namespace, trusted, ipv4, services) {
                    Ok(addresses) => addresses.iter().map(|ip| ip.to_string()).collect(),
                    Err(p) => {
                        problems.push((format!("spec.records[{i}] ({})", record.name), p));
                        continue;
                    }
                }
            }
        };
        let owner = if record.name == "@" {
            apex.clone()
        } else {
            format!(
                "{}.{apex}",
                record.name.trim_end_matches('.').to_ascii_lowercase()
            )
        };
        let kind = record_kind(record.record_type);
        let ttl = record.ttl_seconds.unwrap_or(object.spec.ttl_seconds);
        let set = sets
            .entry((owner.clone(), kind))
            .or_insert_with(|| RecordConfig {
                name: owner,
                record_type: kind,
                ttl_seconds: ttl,
                values: Vec::new(),
            });
        for value in values.iter().map(|v| absolute_value(kind, v, &apex)) {
            // A Service's address may also be written out by hand; serve it once.
            if !set.values.contains(&value) {
                set.values.push(value);
            }
        }
    }
    let zone = ZoneConfig {
        name: apex,
        source: format!("{namespace}/{}", object.name_any()),
        ttl_seconds: object.spec.ttl_seconds,
        records: sets.into_values().collect(),
        allow_transfer: object
            .spec
            .allow_transfer
            .iter()
            .map(|client| client.0.trim().to_ascii_lowercase())
            .collect(),
    };
    zone.validate("spec")
        .map_err(|e| rejected("InvalidRecord", e.to_string()))?;
    Ok((zone, Verdict::partial(&problems)))
}

fn record_kind(t: RecordType) -> RecordKind {
    match t {
        RecordType::A => RecordKind::A,
        RecordType::AAAA => RecordKind::AAAA,
        RecordType::CNAME => RecordKind::CNAME,
        RecordType::MX => RecordKind::MX,
        RecordType::NS => RecordKind::NS,
        RecordType::PTR => RecordKind::PTR,
        RecordType::SRV => RecordKind::SRV,
        RecordType::TXT => RecordKind::TXT,
        RecordType::CAA => RecordKind::CAA,
    }
}

/// Makes the name inside a value absolute, as a zone file does with its origin: `www` in zone
/// `example.internal` is `www.example.internal.`, `@` is the apex.
fn absolute_value(kind: RecordKind, value: &str, apex: &str) -> String {
    let absolute = |name: &str| {
        if name == "@" {
            format!("{apex}.")
        } else if name.ends_with('.') {
            name.to_ascii_lowercase()
        } else {
            format!("{}.{apex}.", name.to_ascii_lowercase())
        }
    };
    match kind {
        RecordKind::CNAME | RecordKind::NS | RecordKind::PTR => absolute(value.trim()),
        RecordKind::MX | RecordKind::SRV => {
            let mut fields: Vec<String> = value.split_whitespace().map(str::to_string).collect();
            if let Some(last) = fields.last_mut() {
                *last = absolute(last);
            }
            fields.join(" ")
        }
        RecordKind::A | RecordKind::AAAA | RecordKind::TXT | RecordKind::CAA => value.to_string(),
    }
}
