//! The policy stage: which names a client may resolve (`DNSPolicy`).
//!
//! A [`PolicySet`] is built once per config. For each query, [`PolicySet::restriction`]
//! finds what restricts the client: nothing (no policy selects its Pod, or no policy
//! exists at all), the policies of its namespace whose pod labels match, or — for a client
//! the server cannot tie to exactly one Pod while policies exist — the configured default
//! for unidentified clients, which fails closed.
//!
//! A [`Restriction`] is checked against the question after rewriting (before any stage
//! answers) and against every owner and target name of the answer section (after), so a
//! CNAME, SRV, PTR, MX or NS record cannot lead an allowed name to a denied one, whatever
//! answered: the Kubernetes stage, a zone, the cache or an upstream. How several policies
//! combine is in [`nameplane_config::policy`]: an explicit denial wins, then an explicit
//! allowance, then the defaults (all must allow).
//!
//! A denied query is answered NXDOMAIN (with the cluster zone's SOA for cluster names, as a
//! name that does not exist is) or REFUSED, as the deciding policy says; an unidentified
//! client that is denied gets REFUSED, so a misconfigured source NAT shows as such. Every
//! policy counts its decisions (`nameplane_dns_policy_decisions_total{policy, decision}`),
//! and a policy with `audit` logs what it denies (target `nameplane_dns::audit`).
//!
//! Only restricted clients pay for any of this: an unrestricted client's query takes the
//! plain path, without a copy of its answer.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use hickory_proto::rr::{Name, RData, Record};
use nameplane_config::ValidatedConfig;
use nameplane_config::policy::{DeniedResponse, PolicyAction, PolicyConfig};
use prometheus_client::metrics::counter::Counter;

use crate::kubernetes::index::PodClient;
use crate::metrics::Metrics;
use crate::request::QName;

/// The policies of one config, ready to be matched.
#[derive(Debug)]
pub struct PolicySet {
    policies: Box<[Compiled]>,
    unidentified: PolicyAction,
    unidentified_counters: OnceLock<Decisions>,
}

#[derive(Debug)]
struct Compiled {
    source: Arc<str>,
    namespace: Box<str>,
    pods: nameplane_config::LabelSelector,
    rules: Box<[Rule]>,
    default: PolicyAction,
    denied: DeniedResponse,
    audit: bool,
    counters: OnceLock<Decisions>,
}

#[derive(Debug)]
struct Rule {
    action: PolicyAction,
    /// Domains in wire form, lower case.
    domains: Box<[Box<[u8]>]>,
}

/// Handles of one policy's two counters, taken from the metrics family on first use so
/// that later queries count without a lock.
#[derive(Clone, Debug)]
struct Decisions {
    allowed: Counter,
    denied: Counter,
}

/// The label of the decisions of unidentified clients.
pub const UNIDENTIFIED: &str = "(unidentified)";

impl PolicySet {
    /// Compiles the config's policies; `None` when there are none (nobody is restricted).
    pub fn new(config: &ValidatedConfig) -> Option<Arc<Self>> {
        let raw = config.raw();
        if raw.policies.is_empty() {
            return None;
        }
        Some(Arc::new(Self {
            policies: raw.policies.iter().map(compile).collect(),
            unidentified: raw.unidentified_clients,
            unidentified_counters: OnceLock::new(),
        }))
    }

    /// What restricts `client` (the Pod its address identifies, if any); `None` when it may
    /// resolve anything.
    pub fn restriction(self: &Arc<Self>, client: Option<&Arc<PodClient>>) -> Option<Restriction> {
        let Some(pod) = client else {
            return Some(Restriction {
                set: Arc::clone(self),
                client: None,
                selecting: Vec::new(),
            });
        };
        let selecting: Vec<u16> = self
            .policies
            .iter()
            .enumerate()
            .filter(|(_, p)| *p.namespace == *pod.namespace && p.pods.matches(&pod.labels))
            .map(|(i, _)| i as u16)
            .collect();
        (!selecting.is_empty()).then(|| Restriction {
            set: Arc::clone(self),
            client: Some(Arc::clone(pod)),
            selecting,
        })
    }
}

fn compile(config: &PolicyConfig) -> Compiled {
    Compiled {
        source: Arc::from(config.source.as_str()),
        namespace: config.namespace.as_str().into(),
        pods: config.pod_selector.clone(),
        rules: config
            .rules
            .iter()
            .map(|rule| Rule {
                action: rule.action,
                domains: rule
                    .domains
                    .iter()
                    .filter_map(|d| QName::from_ascii(d))
                    .map(|name| Box::from(name.wire()))
                    .collect(),
            })
            .collect(),
        default: config.default_action,
        denied: config.denied_response,
        audit: config.audit,
        counters: OnceLock::new(),
    }
}

/// What restricts one client: owned, so a forwarded query carries it to its answer.
#[derive(Clone, Debug)]
pub struct Restriction {
    set: Arc<PolicySet>,
    /// `None`: the client is not identified.
    client: Option<Arc<PodClient>>,
    /// Indexes of the policies that select the client.
    selecting: Vec<u16>,
}

/// A denied query: how to answer it and which policy decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial {
    /// NXDOMAIN or REFUSED.
    pub response: DeniedResponse,
    /// The deciding policy (index into the set); `None` for an unidentified client.
    policy: Option<u16>,
}

/// How one policy met a name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Rule(PolicyAction),
    Default(PolicyAction),
}

impl Restriction {
    /// Whether `name` may be resolved.
    pub fn check(&self, name: &QName) -> Result<(), Denial> {
        if self.client.is_none() {
            return match self.set.unidentified {
                PolicyAction::Allow => Ok(()),
                PolicyAction::Deny => Err(Denial {
                    response: DeniedResponse::Refused,
                    policy: None,
                }),
            };
        }
        let verdicts = self.selecting.iter().map(|&i| {
            let policy = &self.set.policies[usize::from(i)];
            let verdict = policy
                .rules
                .iter()
                .find(|rule| rule.domains.iter().any(|d| name.is_in(d)))
                .map_or(Verdict::Default(policy.default), |rule| {
                    Verdict::Rule(rule.action)
                });
            (i, verdict)
        });
        let mut explicit_allow = false;
        let mut default_deny = None;
        for (i, verdict) in verdicts {
            match verdict {
                Verdict::Rule(PolicyAction::Deny) => return Err(self.denial(i)),
                Verdict::Rule(PolicyAction::Allow) => explicit_allow = true,
                Verdict::Default(PolicyAction::Deny) => {
                    default_deny.get_or_insert(i);
                }
                Verdict::Default(PolicyAction::Allow) => {}
            }
        }
        match default_deny {
            Some(i) if !explicit_allow => Err(self.denial(i)),
            _ => Ok(()),
        }
    }

    /// A denial that refuses, decided by no policy in particular (a zone transfer that
    /// would show a denied name).
    pub fn refusal(&self) -> Denial {
        Denial {
            response: DeniedResponse::Refused,
            policy: None,
        }
    }

    fn denial(&self, policy: u16) -> Denial {
        Denial {
            response: self.set.policies[usize::from(policy)].denied,
            policy: Some(policy),
        }
    }

    /// Checks every owner and target name in `answers` (a response's answer section).
    pub fn check_records(&self, answers: &[Record]) -> Result<(), Denial> {
        for record in answers {
            self.check_name(&record.name)?;
            let target = match &record.data {
                RData::CNAME(name) => Some(&name.0),
                RData::PTR(name) => Some(&name.0),
                RData::NS(name) => Some(&name.0),
                RData::SRV(srv) => Some(&srv.target),
                RData::MX(mx) => Some(&mx.exchange),
                _ => None,
            };
            if let Some(target) = target {
                self.check_name(target)?;
            }
        }
        Ok(())
    }

    fn check_name(&self, name: &Name) -> Result<(), Denial> {
        use hickory_proto::serialize::binary::BinEncodable as _;
        let wire = name.to_lowercase().to_bytes().unwrap_or_default();
        match QName::from_wire(&wire) {
            Some(name) => self.check(&name),
            // A name this server could not even parse is not one a policy allowed.
            None => Err(self.refusal()),
        }
    }

    /// Counts the query's final decision for every policy that selected the client, and
    /// logs a denial for the policies that audit.
    pub fn record(
        &self,
        result: Result<(), Denial>,
        metrics: &Metrics,
        client: IpAddr,
        name: &QName,
    ) {
        let counters = |cell: &OnceLock<Decisions>, source: &str| {
            cell.get_or_init(|| {
                let (allowed, denied) = metrics.clients().policy(source);
                Decisions { allowed, denied }
            })
            .clone()
        };
        let count = |decisions: Decisions| match result {
            Ok(()) => decisions.allowed.inc(),
            Err(_) => decisions.denied.inc(),
        };
        let Some(pod) = &self.client else {
            count(counters(&self.set.unidentified_counters, UNIDENTIFIED));
            if result.is_err() {
                tracing::info!(
                    target: "nameplane_dns::audit",
                    client = %client,
                    name = %name,
                    "denied: unidentified client"
                );
            }
            return;
        };
        for &i in &self.selecting {
            let policy = &self.set.policies[usize::from(i)];
            count(counters(&policy.counters, &policy.source));
        }
        if let Err(Denial {
            policy: Some(i), ..
        }) = result
        {
            let policy = &self.set.policies[usize::from(i)];
            if policy.audit {
                tracing::info!(
                    target: "nameplane_dns::audit",
                    policy = %policy.source,
                    client = %client,
                    namespace = %pod.namespace,
                    pod = %pod.name,
                    name = %name,
                    "denied"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nameplane_config::ServerConfig;
    use nameplane_config::policy::PolicyRuleConfig;
    use std::collections::BTreeMap;

    fn policy(
        name: &str,
        namespace: &str,
        labels: &[(&str, &str)],
        rules: &[(PolicyAction, &[&str])],
        default: PolicyAction,
    ) -> PolicyConfig {
        PolicyConfig {
            source: format!("{namespace}/{name}"),
            namespace: namespace.into(),
            pod_selector: nameplane_config::LabelSelector {
                match_labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                ..Default::default()
            },
            rules: rules
                .iter()
                .map(|(action, domains)| PolicyRuleConfig {
                    action: *action,
                    domains: domains.iter().map(|d| (*d).into()).collect(),
                })
                .collect(),
            default_action: default,
            denied_response: DeniedResponse::Nxdomain,
            audit: false,
        }
    }

    fn set(policies: Vec<PolicyConfig>, unidentified: PolicyAction) -> Arc<PolicySet> {
        let config = ServerConfig {
            policies,
            unidentified_clients: unidentified,
            ..ServerConfig::default()
        };
        PolicySet::new(&config.validate().expect("valid")).expect("has policies")
    }

    fn pod(namespace: &str, labels: &[(&str, &str)]) -> Arc<PodClient> {
        Arc::new(PodClient {
            namespace: namespace.into(),
            name: "p".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect::<BTreeMap<_, _>>(),
            host_network: false,
            running: true,
        })
    }

    fn name(text: &str) -> QName {
        QName::from_ascii(text).expect("name")
    }

    use PolicyAction::{Allow, Deny};

    #[test]
    fn only_selected_pods_of_the_policys_namespace_are_restricted() {
        let set = set(
            vec![policy(
                "p",
                "a",
                &[("app", "web")],
                &[(Allow, &["a.svc.cluster.local"])],
                Deny,
            )],
            Deny,
        );
        assert!(
            set.restriction(Some(&pod("b", &[("app", "web")])))
                .is_none()
        );
        assert!(set.restriction(Some(&pod("a", &[("app", "db")]))).is_none());
        let web = set
            .restriction(Some(&pod("a", &[("app", "web"), ("x", "y")])))
            .expect("selected");
        assert_eq!(web.check(&name("db.a.svc.cluster.local")), Ok(()));
        assert_eq!(web.check(&name("a.svc.cluster.local")), Ok(()));
        assert!(web.check(&name("db.b.svc.cluster.local")).is_err());
        assert!(
            web.check(&name("xa.svc.cluster.local")).is_err(),
            "labels, not text"
        );
        assert!(web.check(&name("example.com")).is_err());
    }

    #[test]
    fn deny_wins_then_allow_then_all_defaults() {
        let blocklist = policy("blocklist", "a", &[], &[(Deny, &["ads.example"])], Allow);
        let allowlist = policy("allowlist", "a", &[], &[(Allow, &["example"])], Deny);
        let open = policy("open", "a", &[], &[], Allow);
        let both = set(vec![blocklist.clone(), allowlist.clone()], Deny);
        let r = both.restriction(Some(&pod("a", &[]))).expect("selected");
        assert!(
            r.check(&name("x.ads.example")).is_err(),
            "explicit deny wins"
        );
        assert_eq!(r.check(&name("shop.example")), Ok(()), "explicit allow");
        assert!(
            r.check(&name("other.org")).is_err(),
            "allowlist's default denies"
        );
        let lenient = set(vec![blocklist, open], Deny);
        let r = lenient.restriction(Some(&pod("a", &[]))).expect("selected");
        assert_eq!(r.check(&name("other.org")), Ok(()), "every default allows");
        assert!(r.check(&name("ads.example")).is_err());
    }

    #[test]
    fn unidentified_clients_fail_closed_unless_allowed() {
        let closed = set(vec![policy("p", "a", &[], &[], Deny)], Deny);
        let r = closed.restriction(None).expect("restricted");
        assert_eq!(
            r.check(&name("anything.example")),
            Err(Denial {
                response: DeniedResponse::Refused,
                policy: None
            })
        );
        let open = set(vec![policy("p", "a", &[], &[], Deny)], Allow);
        let r = open.restriction(None).expect("restricted");
        assert_eq!(r.check(&name("anything.example")), Ok(()));
    }

    #[test]
    fn answer_targets_are_checked() {
        use hickory_proto::rr::rdata::{CNAME, PTR, SRV};
        let set = set(
            vec![policy(
                "p",
                "a",
                &[],
                &[(Allow, &["a.svc.cluster.local", "in-addr.arpa"])],
                Deny,
            )],
            Deny,
        );
        let r = set.restriction(Some(&pod("a", &[]))).expect("selected");
        let n = |s: &str| Name::from_ascii(s).expect("name");
        let ptr = Record::from_rdata(
            n("1.0.96.10.in-addr.arpa."),
            5,
            RData::PTR(PTR(n("db.b.svc.cluster.local."))),
        );
        assert!(r.check_records(&[ptr]).is_err(), "PTR into namespace b");
        let cname = Record::from_rdata(
            n("alias.a.svc.cluster.local."),
            5,
            RData::CNAME(CNAME(n("Tracker.Ads.Example."))),
        );
        assert!(r.check_records(&[cname]).is_err(), "CNAME out");
        let srv = Record::from_rdata(
            n("_http._tcp.web.a.svc.cluster.local."),
            5,
            RData::SRV(SRV::new(0, 50, 80, n("web.a.svc.cluster.local."))),
        );
        assert_eq!(r.check_records(&[srv]), Ok(()));
    }
}
