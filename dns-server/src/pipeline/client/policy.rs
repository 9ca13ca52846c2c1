//! The policy stage: which names a client may resolve (`DNSPolicy`).
//!
//! A [`PolicySet`] is built once per config that may deny anyone (a policy, or a client
//! class set to `deny`). For each query, [`PolicySet::restriction`] finds what restricts
//! the client, in this order:
//!
//! 1. a source address that is exactly one Pod's (not a host-network Pod's): the policies of
//!    its namespace whose pod labels match, or nothing when none does;
//! 2. else an address of the node class (`clients.nodes`: its CIDRs, and with `fromNodes`
//!    the addresses of the Node objects, from the Node watch): the node action;
//! 3. else an unidentified client: `clients.unidentified`.
//!
//! The classes (2, 3) are the platform's choice on the `DNSServer`: no tenant's policy
//! decides what a node, a host-network Pod or a client behind SNAT gets, nor whether it is
//! restricted at all. A Pod comes first so that a CIDR list that also covers Pod addresses
//! (Pods and Nodes on one subnet) never frees a Pod from its namespace's policies; a Pod
//! never has a Node's own address unless it uses the node's network, and then it is not
//! identified.
//!
//! A [`Restriction`] is checked against the question after rewriting (before any stage
//! answers) and against every owner and target name of the answer section (after), so a
//! CNAME, SRV, PTR, MX or NS record cannot lead an allowed name to a denied one, whatever
//! answered: the Kubernetes stage, a zone, the cache or an upstream. How several policies
//! combine is in [`nameplane_config::policy`]: an explicit denial wins, then an explicit
//! allowance, then the defaults (all must allow).
//!
//! A denied query is answered NXDOMAIN (with the cluster zone's SOA for cluster names, as a
//! name that does not exist is) or REFUSED, as the deciding policy says; a denied class
//! gets REFUSED, so a misconfigured source NAT shows as such. Every policy counts its
//! decisions (`nameplane_dns_policy_decisions_total{policy, decision}`), the classes as
//! `policy="(nodes)"` and `policy="(unidentified)"`; a policy with `audit` logs what it
//! denies, and every class denial is logged (target `nameplane_dns::audit`).
//!
//! Only restricted clients pay for any of this: an unrestricted client's query, and that
//! of an allowed class (counted, and known to be allowed whatever it asks), takes the plain
//! path, without a copy of its answer.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use hickory_proto::rr::{Name, RData, Record};
use nameplane_config::ValidatedConfig;
use nameplane_config::policy::{DeniedResponse, PolicyAction, PolicyConfig};
use nameplane_config::zone::{parse_prefix, prefix_contains};
use prometheus_client::metrics::counter::Counter;

use crate::cluster::index::{Cluster, PodClient};
use crate::metrics::Metrics;
use crate::request::QName;
use crate::wire::answer::{OutName, Rdata, Rr};

/// The policies of one config, ready to be matched.
#[derive(Debug)]
pub(crate) struct PolicySet {
    policies: Box<[Compiled]>,
    unidentified: ClientClass,
    nodes: Option<NodeClass>,
}

/// A class of clients that are not one identified Pod, decided by one action.
#[derive(Debug)]
struct ClientClass {
    action: PolicyAction,
    /// The `policy` label of its decisions: [`NODES`] or [`UNIDENTIFIED`].
    label: &'static str,
    counters: OnceLock<Decisions>,
}

/// The node class: which addresses are a Node's.
#[derive(Debug)]
struct NodeClass {
    class: ClientClass,
    cidrs: Box<[(IpAddr, u8)]>,
    /// The addresses of the Node objects too (the Node watch's table in the snapshot).
    from_nodes: bool,
}

impl NodeClass {
    fn contains(&self, ip: IpAddr, cluster: &Cluster) -> bool {
        self.cidrs.iter().any(|&prefix| prefix_contains(prefix, ip))
            || (self.from_nodes
                && cluster
                    .nodes
                    .as_ref()
                    .is_some_and(|nodes| nodes.contains(&ip)))
    }
}

/// Which class a client that is not one identified Pod is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Nodes,
    Unidentified,
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
pub(crate) const UNIDENTIFIED: &str = "(unidentified)";

/// The label of the decisions of node clients.
pub(crate) const NODES: &str = "(nodes)";

impl ClientClass {
    fn new(action: PolicyAction, label: &'static str) -> Self {
        Self {
            action,
            label,
            counters: OnceLock::new(),
        }
    }
}

/// The counters of `source`, taken from the metrics family on first use.
fn counters(cell: &OnceLock<Decisions>, source: &str, metrics: &Metrics) -> Decisions {
    cell.get_or_init(|| {
        let (allowed, denied) = metrics.clients().policy(source);
        Decisions { allowed, denied }
    })
    .clone()
}

impl PolicySet {
    /// Compiles the config's policies and client classes; `None` when nobody can be denied
    /// (no policy, and every class allowed).
    pub(crate) fn new(config: &ValidatedConfig) -> Option<Arc<Self>> {
        let raw = config.raw();
        let clients = &raw.clients;
        let denies_a_class = clients.unidentified == PolicyAction::Deny
            || clients
                .nodes
                .as_ref()
                .is_some_and(|nodes| nodes.action == PolicyAction::Deny);
        if raw.policies.is_empty() && !denies_a_class {
            return None;
        }
        Some(Arc::new(Self {
            policies: raw.policies.iter().map(compile).collect(),
            unidentified: ClientClass::new(clients.unidentified, UNIDENTIFIED),
            nodes: clients.nodes.as_ref().map(|nodes| NodeClass {
                class: ClientClass::new(nodes.action, NODES),
                // Validated: every prefix parses.
                cidrs: nodes
                    .cidrs
                    .iter()
                    .filter_map(|cidr| parse_prefix(cidr).ok())
                    .collect(),
                from_nodes: nodes.from_nodes,
            }),
        }))
    }

    fn class(&self, class: Class) -> &ClientClass {
        match (class, &self.nodes) {
            (Class::Nodes, Some(nodes)) => &nodes.class,
            _ => &self.unidentified,
        }
    }

    /// What restricts the client at `ip` (canonical), `pod` being the Pod its address
    /// identifies, if any; `None` when it may resolve anything. A client of an allowed class
    /// is counted here, since whatever it asks is allowed.
    pub(crate) fn restriction(
        self: &Arc<Self>,
        ip: IpAddr,
        pod: Option<&Arc<PodClient>>,
        cluster: &Cluster,
        metrics: &Metrics,
    ) -> Option<Restriction> {
        let Some(pod) = pod else {
            let class = match &self.nodes {
                Some(nodes) if nodes.contains(ip, cluster) => Class::Nodes,
                _ => Class::Unidentified,
            };
            let decided = self.class(class);
            if decided.action == PolicyAction::Allow {
                counters(&decided.counters, decided.label, metrics)
                    .allowed
                    .inc();
                return None;
            }
            return Some(Restriction {
                set: Arc::clone(self),
                client: Subject::Class(class),
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
            client: Subject::Pod(Arc::clone(pod)),
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
    client: Subject,
    /// Indexes of the policies that select the client (a Pod).
    selecting: Vec<u16>,
}

/// Who a [`Restriction`] restricts.
#[derive(Clone, Debug)]
enum Subject {
    /// An identified Pod, restricted by the policies that select it.
    Pod(Arc<PodClient>),
    /// A client of a class that is not one identified Pod.
    Class(Class),
}

/// A denied query: how to answer it and which policy decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial {
    /// NXDOMAIN or REFUSED.
    pub response: DeniedResponse,
    /// The deciding policy (index into the set); `None` for a client class.
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
        if let Subject::Class(class) = self.client {
            return match self.set.class(class).action {
                PolicyAction::Allow => Ok(()),
                PolicyAction::Deny => Err(self.refusal()),
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

    /// Who decided `denial`, for the query log: the policy's source, the client class's
    /// label (`(nodes)`, `(unidentified)`), or `(answer)` for a refusal no one policy made
    /// (a transfer or an answer name that could not be checked).
    pub(crate) fn denied_by(&self, denial: &Denial) -> Arc<str> {
        match (denial.policy, &self.client) {
            (Some(i), _) => Arc::clone(&self.set.policies[usize::from(i)].source),
            (None, Subject::Class(class)) => Arc::from(self.set.class(*class).label),
            (None, Subject::Pod(_)) => Arc::from("(answer)"),
        }
    }

    fn denial(&self, policy: u16) -> Denial {
        Denial {
            response: self.set.policies[usize::from(policy)].denied,
            policy: Some(policy),
        }
    }

    /// [`Restriction::check_records`] for a local answer's borrowed records, without
    /// decoding or allocating: every owner name and every name a record points to (CNAME,
    /// PTR, NS, SRV targets; MX exchanges) must be allowed. [`OutName::Query`] is `query`.
    pub fn check_answer(&self, records: &[Rr<'_>], query: &QName) -> Result<(), Denial> {
        let check = |name: &OutName<'_>| match name.to_qname(query) {
            Some(name) => self.check(&name),
            None => Err(self.refusal()),
        };
        for record in records {
            check(&record.owner)?;
            match &record.data {
                Rdata::Cname(target)
                | Rdata::Ptr(target)
                | Rdata::Ns(target)
                | Rdata::Srv { target, .. } => check(target)?,
                raw @ Rdata::Raw { .. } => match raw.raw_target() {
                    Some(Some(target)) => self.check(&target)?,
                    Some(None) => return Err(self.refusal()),
                    None => {}
                },
                _ => {}
            }
        }
        Ok(())
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
        let count = |decisions: Decisions| match result {
            Ok(()) => decisions.allowed.inc(),
            Err(_) => decisions.denied.inc(),
        };
        let pod = match &self.client {
            Subject::Pod(pod) => pod,
            Subject::Class(class) => {
                let class = self.set.class(*class);
                count(counters(&class.counters, class.label, metrics));
                if result.is_err() {
                    tracing::info!(
                        target: "nameplane_dns::audit",
                        client = %client,
                        class = class.label,
                        name = %name,
                        "denied: client class"
                    );
                }
                return;
            }
        };
        for &i in &self.selecting {
            let policy = &self.set.policies[usize::from(i)];
            count(counters(&policy.counters, &policy.source, metrics));
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
    use crate::pipeline::tests::test_metrics;
    use nameplane_config::ServerConfig;
    use nameplane_config::policy::{ClientsConfig, NodeClientsConfig, PolicyRuleConfig};
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
        classes(policies, unidentified, None).expect("may deny")
    }

    fn classes(
        policies: Vec<PolicyConfig>,
        unidentified: PolicyAction,
        nodes: Option<NodeClientsConfig>,
    ) -> Option<Arc<PolicySet>> {
        let config = ServerConfig {
            policies,
            clients: ClientsConfig {
                unidentified,
                nodes,
            },
            ..ServerConfig::default()
        };
        PolicySet::new(&config.validate().expect("valid"))
    }

    /// The restriction of a client at an address no Pod and no Node has, or of `pod`.
    fn restrict(set: &Arc<PolicySet>, pod: Option<&Arc<PodClient>>) -> Option<Restriction> {
        let cluster = Cluster::new(1);
        set.restriction(ip("10.9.9.9"), pod, &cluster, &test_metrics())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
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
        assert!(restrict(&set, Some(&pod("b", &[("app", "web")]))).is_none());
        assert!(restrict(&set, Some(&pod("a", &[("app", "db")]))).is_none());
        let web = restrict(&set, Some(&pod("a", &[("app", "web"), ("x", "y")]))).expect("selected");
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
        let r = restrict(&both, Some(&pod("a", &[]))).expect("selected");
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
        let r = restrict(&lenient, Some(&pod("a", &[]))).expect("selected");
        assert_eq!(r.check(&name("other.org")), Ok(()), "every default allows");
        assert!(r.check(&name("ads.example")).is_err());
    }

    #[test]
    fn unidentified_clients_get_the_platforms_choice_whatever_the_policies() {
        // Denied by the DNSServer: refused, with or without policies.
        for policies in [vec![], vec![policy("p", "a", &[], &[], Deny)]] {
            let closed = set(policies, Deny);
            let r = restrict(&closed, None).expect("restricted");
            assert_eq!(
                r.check(&name("anything.example")),
                Err(Denial {
                    response: DeniedResponse::Refused,
                    policy: None
                })
            );
        }
        // Allowed (the default): a tenant's policy that denies everything does not restrict
        // them.
        let open = set(vec![policy("p", "a", &[], &[], Deny)], Allow);
        assert!(restrict(&open, None).is_none(), "not restricted at all");
        // Nobody can be denied: no set, every query takes the plain path.
        assert!(classes(vec![], Allow, None).is_none());
    }

    #[test]
    fn node_addresses_get_the_node_action() {
        let nodes = |action, cidrs: &[&str], from_nodes| NodeClientsConfig {
            action,
            cidrs: cidrs.iter().map(|c| (*c).into()).collect(),
            from_nodes,
        };
        let mut cluster = Cluster::new(1);
        cluster.set_nodes_watched(true);
        cluster
            .nodes
            .as_mut()
            .expect("watched")
            .replace(&[], &[ip("192.0.2.21")]);
        let metrics = test_metrics();
        let ask = |set: &Arc<PolicySet>, at: &str, pod: Option<&Arc<PodClient>>| {
            set.restriction(ip(at), pod, &cluster, &metrics)
        };
        let deny_all = || vec![policy("p", "a", &[], &[], Deny)];
        let set = classes(
            deny_all(),
            Deny,
            Some(nodes(Allow, &["192.0.2.0/28", "2001:db8::/64"], true)),
        )
        .expect("may deny");
        for node in ["192.0.2.1", "192.0.2.15", "2001:db8::1", "192.0.2.21"] {
            assert!(ask(&set, node, None).is_none(), "{node}: a node, allowed");
        }
        for other in ["192.0.2.16", "2001:db8:1::1", "10.9.9.9"] {
            let r = ask(&set, other, None).expect("unidentified: restricted");
            assert!(r.check(&name("x.example")).is_err(), "{other}");
        }
        // A Pod with an address in the CIDRs (Pods and Nodes on one subnet) is still its
        // namespace's, restricted by its policies; no policy selects it: unrestricted.
        let r = ask(&set, "192.0.2.3", Some(&pod("a", &[]))).expect("a's policy");
        assert!(r.check(&name("x.example")).is_err());
        assert!(ask(&set, "192.0.2.3", Some(&pod("b", &[]))).is_none());
        // The Node watch's addresses count only with fromNodes.
        let cidrs_only =
            classes(vec![], Deny, Some(nodes(Allow, &["192.0.2.0/28"], false))).expect("may deny");
        assert!(ask(&cidrs_only, "192.0.2.21", None).is_some());
        // Nodes denied while other unidentified clients are allowed.
        let set = classes(vec![], Allow, Some(nodes(Deny, &[], true))).expect("may deny");
        let r = ask(&set, "192.0.2.21", None).expect("a node: restricted");
        assert_eq!(r.check(&name("x.example")), Err(r.refusal()));
        assert!(ask(&set, "10.9.9.9", None).is_none());
        // Allowed class decisions are counted when the restriction is decided; denied ones
        // when recorded.
        r.record(
            Err(r.refusal()),
            &metrics,
            ip("192.0.2.21"),
            &name("x.example"),
        );
        let text = metrics.encode();
        for line in [
            r#"nameplane_dns_policy_decisions_total{policy="(nodes)",decision="allowed"} 4"#,
            r#"nameplane_dns_policy_decisions_total{policy="(nodes)",decision="denied"} 1"#,
            r#"nameplane_dns_policy_decisions_total{policy="(unidentified)",decision="allowed"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
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
        let r = restrict(&set, Some(&pod("a", &[]))).expect("selected");
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

    #[test]
    fn every_kind_of_target_is_checked_not_only_the_owner() {
        use hickory_proto::rr::rdata::{MX, NS, SRV};
        let set = set(
            vec![policy(
                "p",
                "a",
                &[],
                &[(Allow, &["a.svc.cluster.local"])],
                Deny,
            )],
            Deny,
        );
        let r = restrict(&set, Some(&pod("a", &[]))).expect("selected");
        let n = |s: &str| Name::from_ascii(s).expect("name");
        let owner = n("web.a.svc.cluster.local.");
        let (inside, outside) = (n("db.a.svc.cluster.local."), n("db.b.svc.cluster.local."));
        // Each type whose data names another host: allowed with a target inside the
        // policy's domain, denied with one outside (the owner is allowed either way).
        type MakeData = fn(Name) -> RData;
        let kinds: [(&str, MakeData); 3] = [
            ("SRV", |t| RData::SRV(SRV::new(0, 50, 80, t))),
            ("NS", |t| RData::NS(NS(t))),
            ("MX", |t| RData::MX(MX::new(10, t))),
        ];
        for (kind, data) in kinds {
            let record = |target: &Name| Record::from_rdata(owner.clone(), 5, data(target.clone()));
            assert_eq!(r.check_records(&[record(&inside)]), Ok(()), "{kind} inside");
            assert!(
                r.check_records(&[record(&outside)]).is_err(),
                "{kind} into namespace b"
            );
        }
    }

    /// Properties over generated policies and names: every decision matches a reference
    /// model of the documented rules, whatever the order, overlap and spelling.
    mod properties {
        use super::*;
        use hickory_proto::rr::rdata::CNAME;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::select;

        /// Few labels, so that rule domains and names overlap often.
        const LABELS: [&str; 5] = ["a", "b", "svc", "example", "x-1"];

        type Rules = Vec<(PolicyAction, Vec<Vec<&'static str>>)>;

        fn labels() -> impl Strategy<Value = Vec<&'static str>> {
            vec(select(&LABELS[..]), 1..5)
        }

        fn action() -> impl Strategy<Value = PolicyAction> {
            prop_oneof![Just(Allow), Just(Deny)]
        }

        /// Policies of namespace `a` selecting every Pod: (rules, default).
        fn policies() -> impl Strategy<Value = Vec<(Rules, PolicyAction)>> {
            vec((vec((action(), vec(labels(), 1..3)), 0..4), action()), 1..4)
        }

        fn build(policies: &[(Rules, PolicyAction)]) -> Arc<PolicySet> {
            let configs = policies
                .iter()
                .enumerate()
                .map(|(i, (rules, default))| {
                    let domains: Vec<Vec<String>> = rules
                        .iter()
                        .map(|(_, ds)| ds.iter().map(|d| d.join(".")).collect())
                        .collect();
                    let rules: Vec<(PolicyAction, Vec<&str>)> = rules
                        .iter()
                        .zip(&domains)
                        .map(|((action, _), ds)| (*action, ds.iter().map(String::as_str).collect()))
                        .collect();
                    let rules: Vec<(PolicyAction, &[&str])> =
                        rules.iter().map(|(a, ds)| (*a, ds.as_slice())).collect();
                    policy(&format!("p{i}"), "a", &[], &rules, *default)
                })
                .collect();
            set(configs, Deny)
        }

        /// The documented combination: each policy's first covering rule, else its
        /// default; any rule that denies wins, then any rule that allows, then the
        /// defaults must all allow.
        fn model(policies: &[(Rules, PolicyAction)], name: &[&str]) -> bool {
            let under = |domain: &Vec<&str>| {
                name.len() >= domain.len() && name[name.len() - domain.len()..] == domain[..]
            };
            let verdicts: Vec<(bool, PolicyAction)> = policies
                .iter()
                .map(|(rules, default)| {
                    rules
                        .iter()
                        .find(|(_, domains)| domains.iter().any(under))
                        .map_or((false, *default), |(action, _)| (true, *action))
                })
                .collect();
            if verdicts.contains(&(true, Deny)) {
                return false;
            }
            verdicts.contains(&(true, Allow)) || verdicts.iter().all(|(_, a)| *a == Allow)
        }

        fn spelled(labels: &[&str], upper: bool) -> String {
            let text = labels.join(".");
            if upper { text.to_uppercase() } else { text }
        }

        proptest! {
            #[test]
            fn decisions_follow_the_documented_rules(
                policies in policies(),
                asked in labels(),
                upper in any::<bool>(),
            ) {
                let set = build(&policies);
                let r = restrict(&set, Some(&pod("a", &[]))).expect("every Pod of a is selected");
                let verdict = r.check(&name(&spelled(&asked, upper)));
                prop_assert_eq!(verdict.is_ok(), model(&policies, &asked));
                if let Err(denial) = verdict {
                    prop_assert_eq!(denial.response, DeniedResponse::Nxdomain);
                }
            }

            #[test]
            fn no_policy_reaches_another_namespace_and_denied_classes_refuse_all(
                policies in policies(),
                asked in labels(),
            ) {
                let set = build(&policies);
                prop_assert!(restrict(&set, Some(&pod("b", &[]))).is_none());
                let unidentified = restrict(&set, None).expect("unidentified clients are denied");
                prop_assert_eq!(
                    unidentified.check(&name(&asked.join("."))),
                    Err(unidentified.refusal())
                );
            }

            #[test]
            fn an_answer_passes_only_if_every_name_in_it_does(
                policies in policies(),
                chain in vec(labels(), 1..5),
            ) {
                let set = build(&policies);
                let r = restrict(&set, Some(&pod("a", &[]))).expect("selected");
                let absolute = |labels: &[&str]| {
                    Name::from_ascii(format!("{}.", labels.join("."))).expect("name")
                };
                // A CNAME chain through the generated names.
                let records: Vec<Record> = chain
                    .windows(2)
                    .map(|w| {
                        Record::from_rdata(absolute(&w[0]), 5, RData::CNAME(CNAME(absolute(&w[1]))))
                    })
                    .chain(std::iter::once(Record::from_rdata(
                        absolute(&chain[chain.len() - 1]),
                        5,
                        RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
                    )))
                    .collect();
                let every_name_allowed = chain.iter().all(|labels| model(&policies, labels));
                prop_assert_eq!(r.check_records(&records).is_ok(), every_name_allowed);
            }
        }
    }
}
