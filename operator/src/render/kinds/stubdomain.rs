//! `StubDomain` objects into the config's forwarders: servers and Service references, held to
//! the forwarder fence for tenants, one forwarder per domain and none on a zone's apex.

use super::dnsserver::Scope;
use super::{forward_policy, rejected};
use crate::api::stubdomain::{ForwardTransport, StubDomain};
use crate::render::services::{self, ServiceIndex};
use crate::render::{ObjectKey, Verdict};
use kube::ResourceExt;
use nameplane_config::forward::ForwardConfig;
use nameplane_config::names;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Forwarders of the selected `StubDomain`s (oldest first), sorted by domain.
///
/// A `serviceRefs` entry that gives no address is left out; the stub domain is served with
/// its other servers (verdict [`Verdict::Partial`]), or rejected when none is left.
pub fn stubs(
    objects: &[Arc<StubDomain>],
    scope: &Scope,
    services: &ServiceIndex,
    zone_apexes: &[String],
    verdicts: &mut BTreeMap<ObjectKey, Verdict>,
) -> Vec<ForwardConfig> {
    let mut by_domain: BTreeMap<String, (ObjectKey, ForwardConfig)> = BTreeMap::new();
    for object in objects {
        let key = ObjectKey::of(object.as_ref());
        let verdict = stub(object, scope, services).and_then(|(fwd, partial)| {
            if zone_apexes.contains(&fwd.domain) {
                Err(rejected("ConflictsWithZone", format!("{} is a zone this server serves itself (a DNSZone); a StubDomain cannot forward it", fwd.domain)))
            } else if let Some((winner, _)) = by_domain.get(&fwd.domain) {
                Err(rejected("Conflict", format!("{} is already forwarded by {winner}, which is older; remove one of them", fwd.domain)))
            } else {
                Ok((fwd, partial))
            }
        });
        match verdict {
            Ok((fwd, partial)) => {
                verdicts.insert(key.clone(), partial);
                by_domain.insert(fwd.domain.clone(), (key, fwd));
            }
            Err(v) => {
                verdicts.insert(key, v);
            }
        }
    }
    by_domain.into_values().map(|(_, fwd)| fwd).collect()
}

/// Translates one stub domain; the verdict is `Accepted`, or `Partial` when some
/// `serviceRefs` gave no server.
fn stub(
    object: &StubDomain,
    scope: &Scope,
    services: &ServiceIndex,
) -> Result<(ForwardConfig, Verdict), Verdict> {
    let namespace = object.namespace().unwrap_or_default();
    let domain = names::normalize_domain(object.spec.domain.as_str())
        .map_err(|r| rejected("InvalidSpec", format!("spec.domain: {r}")))?;
    scope.allows(&namespace, &domain)?;
    let mut servers = Vec::new();
    for (i, server) in object.spec.servers.iter().enumerate() {
        let addr = server
            .socket_addr()
            .map_err(|r| rejected("InvalidSpec", format!("spec.servers[{i}]: {r}")))?;
        scope.allows_forwarder(&namespace, &addr, &format!("spec.servers[{i}]"))?;
        servers.push(addr.to_string());
    }
    let trusted = namespace == scope.server_namespace;
    let mut problems = Vec::new();
    for (i, reference) in object.spec.service_refs.iter().enumerate() {
        match services::upstream_addresses(reference, &namespace, trusted, services) {
            Ok(addresses) => {
                for addr in &addresses {
                    scope.allows_forwarder(&namespace, addr, &format!("spec.serviceRefs[{i}]"))?;
                }
                for addr in addresses.iter().map(|a| a.to_string()) {
                    if !servers.contains(&addr) {
                        servers.push(addr);
                    }
                }
            }
            Err(p) => problems.push((format!("spec.serviceRefs[{i}]"), p)),
        }
    }
    if servers.is_empty() {
        // Nothing to forward to: reject rather than publish a forwarder with no servers.
        // `problems` is not empty here, as the CRD asks for at least one server or reference.
        return Err(match Verdict::partial(&problems) {
            Verdict::Partial { reason, message } => Verdict::Rejected {
                reason,
                message: format!("{message}; no server is left to forward to"),
            },
            _ => rejected(
                "InvalidSpec",
                "spec: give at least one server or serviceRef",
            ),
        });
    }
    let fwd = ForwardConfig {
        servers_from_resolv_conf: false,
        domain,
        source: format!("{namespace}/{}", object.name_any()),
        servers,
        policy: forward_policy(object.spec.policy),
        force_tcp: object.spec.transport == ForwardTransport::Tcp,
        prefer_udp: object.spec.transport == ForwardTransport::PreferUdp,
        max_concurrent: object.spec.max_concurrent,
    };
    fwd.validate("spec")
        .map_err(|e| rejected("InvalidSpec", e.to_string()))?;
    Ok((fwd, Verdict::partial(&problems)))
}
