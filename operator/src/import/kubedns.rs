//! kube-dns's ConfigMap (`kube-system/kube-dns`, as on GKE): `stubDomains` (JSON object of
//! domain -> list of `ip[:port]`) becomes one `StubDomain` per domain; `upstreamNameservers`
//! (JSON list of `ip[:port]`) the `DNSServer`'s `upstreams`, and without it the servers
//! forward to the node's resolv.conf (`upstreamsFromResolvConf`), as kube-dns does.
//! `federations` is not carried over; any other key is reported too.

use super::corefile::Location;
use super::map::is_domain_name;
use super::{Finding, ImportError, Imported, Options, Severity, configmap_data, line_of_key};
use crate::api::dnsserver::{DNSServer, DNSServerSpec};
use crate::api::stubdomain::{StubDomain, StubDomainSpec};
use crate::api::{DomainName, UpstreamAddress};
use std::collections::BTreeMap;

/// Maps a kube-dns ConfigMap named `file` with YAML text `text`.
pub fn map(file: &str, text: &str, options: &Options) -> Result<Imported, ImportError> {
    let data = configmap_data(file, text)?;
    let at = |key: &str| Location {
        file: file.to_string(),
        line: line_of_key(text, key),
    };
    let mut findings = Vec::new();
    let mut spec: DNSServerSpec =
        serde_json::from_value(serde_json::json!({})).expect("an empty DNSServer spec parses");
    let addresses =
        |key: &str, value: &serde_json::Value| -> Result<Vec<UpstreamAddress>, ImportError> {
            let list = value.as_array().ok_or_else(|| ImportError {
                at: at(key),
                message: format!("{key}: a JSON list of addresses expected"),
            })?;
            list.iter()
                .map(|a| {
                    let text = a.as_str().unwrap_or_default();
                    let upstream = UpstreamAddress(text.to_string());
                    upstream
                        .socket_addr()
                        .map(|_| upstream)
                        .map_err(|e| ImportError {
                            at: at(key),
                            message: format!("{key}: {e}"),
                        })
                })
                .collect()
        };
    let parse_json = |key: &str, text: &str| -> Result<serde_json::Value, ImportError> {
        serde_json::from_str(text).map_err(|e| ImportError {
            at: at(key),
            message: format!("{key}: not JSON: {e}"),
        })
    };
    let mut stubs = Vec::new();
    let mut origins = BTreeMap::new();
    for (key, value) in &data {
        match key.as_str() {
            "upstreamNameservers" => {
                let mut upstreams = addresses(key, &parse_json(key, value)?)?;
                if upstreams.len() > 8 {
                    let extra: Vec<_> = upstreams.split_off(8).into_iter().map(|u| u.0).collect();
                    findings.push(Finding {
                        at: at(key),
                        directive: key.clone(),
                        reason: format!("at most 8 upstreams: {} left out", extra.join(" ")),
                        severity: Severity::NotCarried,
                    });
                }
                spec.upstreams = upstreams;
            }
            "stubDomains" => {
                let json = parse_json(key, value)?;
                let domains = json.as_object().ok_or_else(|| ImportError {
                    at: at(key),
                    message: "stubDomains: a JSON object of domain -> addresses expected".into(),
                })?;
                for (domain, servers) in domains {
                    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
                    let mut servers = addresses(key, servers)?;
                    if !is_domain_name(&domain) || servers.is_empty() {
                        findings.push(Finding {
                            at: at(key),
                            directive: format!("stubDomains {domain}"),
                            reason: "needs a domain name and at least one server".into(),
                            severity: Severity::NotCarried,
                        });
                        continue;
                    }
                    servers.truncate(8);
                    let name = domain.clone();
                    origins.insert(("StubDomain", name.clone()), at(key));
                    let mut stub = StubDomain::new(
                        &name,
                        StubDomainSpec {
                            domain: DomainName(domain),
                            servers,
                            service_refs: vec![],
                            policy: Default::default(),
                            transport: Default::default(),
                            max_concurrent: None,
                        },
                    );
                    stub.metadata.namespace = Some(options.namespace.clone());
                    stubs.push(stub);
                }
            }
            "federations" => findings.push(Finding {
                at: at(key),
                directive: key.clone(),
                reason: "Kubernetes federation names have no equivalent".into(),
                severity: Severity::NotCarried,
            }),
            _ => findings.push(Finding {
                at: at(key),
                directive: key.clone(),
                reason: "not a kube-dns setting nameplane knows".into(),
                severity: Severity::NotCarried,
            }),
        }
    }
    if spec.upstreams.is_empty() {
        spec.upstreams_from_resolv_conf = true;
        findings.push(Finding {
            at: Location {
                file: file.to_string(),
                line: 1,
            },
            directive: "upstreamNameservers".into(),
            reason: "not set: names go to the nameservers of the node's resolv.conf, as with kube-dns (upstreamsFromResolvConf)".into(),
            severity: Severity::Note,
        });
    }
    findings.push(Finding {
        at: Location {
            file: file.to_string(),
            line: 1,
        },
        directive: "kube-dns".into(),
        reason: "the cluster domain is not in this ConfigMap: cluster.local assumed (set spec.clusterDomain if yours differs)".into(),
        severity: Severity::Note,
    });
    findings.sort_by(|a, b| a.at.cmp(&b.at));
    let mut server = DNSServer::new(&options.name, spec);
    server.metadata.namespace = Some(options.namespace.clone());
    Ok(Imported {
        server,
        stubs,
        zones: vec![],
        rewrites: vec![],
        findings,
        origins,
    })
}
