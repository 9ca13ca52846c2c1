//! Metrics of the client-aware stages: policy decisions, rewrites, autopath.
//!
//! | metric                                    | labels                                         |
//! |-------------------------------------------|------------------------------------------------|
//! | `nameplane_dns_policy_decisions_total`    | `policy` (`namespace/name`, or the class: `(nodes)`, `(unidentified)`), `decision` (`allowed`, `denied`) |
//! | `nameplane_dns_rewrites_total`            | `rule` (`namespace/name` of the RewriteRule)   |
//! | `nameplane_dns_autopath_total`            | `result` (`hit`: answered from a search domain or the bare name, `miss`) |
//!
//! Per-policy and per-rule series are created when first used and their counter handles
//! kept by the compiled policy or rule, so counting takes no lock after that.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The families, registered once per process.
#[derive(Debug, Clone)]
pub struct ClientMetrics {
    decisions: Family<PolicyLabels, Counter>,
    rewrites: Family<RuleLabels, Counter>,
    autopath_hit: Counter,
    autopath_miss: Counter,
}

impl ClientMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let decisions = Family::<PolicyLabels, Counter>::default();
        let rewrites = Family::<RuleLabels, Counter>::default();
        let autopath = Family::<ResultLabels, Counter>::default();
        registry.register(
            "nameplane_dns_policy_decisions",
            "Queries of clients a DNSPolicy selects, or of a client class the DNSServer restricts, by policy (or class) and decision",
            decisions.clone(),
        );
        registry.register(
            "nameplane_dns_rewrites",
            "Queries whose name a RewriteRule rewrote",
            rewrites.clone(),
        );
        registry.register(
            "nameplane_dns_autopath",
            "Autopath lookups: answered from the search path (hit) or not (miss)",
            autopath.clone(),
        );
        // One statement each: the guard `get_or_create` returns must be gone before the
        // next call takes the family's write lock.
        let autopath_hit = autopath
            .get_or_create(&ResultLabels { result: "hit" })
            .clone();
        let autopath_miss = autopath
            .get_or_create(&ResultLabels { result: "miss" })
            .clone();
        Self {
            decisions,
            rewrites,
            autopath_hit,
            autopath_miss,
        }
    }

    /// The `allowed` and `denied` counters of policy `source`.
    pub fn policy(&self, source: &str) -> (Counter, Counter) {
        let counter = |decision| {
            let labels = PolicyLabels {
                policy: source.to_owned(),
                decision,
            };
            self.decisions.get_or_create(&labels).clone()
        };
        let allowed = counter("allowed");
        let denied = counter("denied");
        (allowed, denied)
    }

    /// The counter of rewrite rule `source`.
    pub fn rewrite(&self, source: &str) -> Counter {
        self.rewrites
            .get_or_create(&RuleLabels {
                rule: source.to_owned(),
            })
            .clone()
    }

    /// Counts one autopath lookup.
    pub fn autopath(&self, hit: bool) {
        if hit {
            self.autopath_hit.inc();
        } else {
            self.autopath_miss.inc();
        }
    }
}
