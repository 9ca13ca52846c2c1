//! The operator's Prometheus metrics: reconciles by kind and result, their duration, every
//! write the operator makes to the API (so "a reconcile with nothing to change makes zero
//! writes" can be checked from outside), and whether this replica leads.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Labels of reconcile counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// The kind reconciled, e.g. `DNSServer`.
    pub kind: String,
    /// `success`, or the error's metric label.
    pub result: String,
}

/// Labels of per-kind metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The Kubernetes kind.
    pub kind: String,
}

/// All operator metrics, registered once.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    writes: Family<KindLabels, Counter>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nameplane_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            durations.clone(),
        );
        let writes = Family::<KindLabels, Counter>::default();
        registry.register(
            "writes",
            "Create, patch and delete calls the operator made, by kind of object written",
            writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            durations,
            writes,
            leader,
        }
    }
}

impl Metrics {
    /// Records one finished reconcile.
    pub fn reconciled(&self, kind: &str, result: &str, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
        self.durations
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(took.as_secs_f64());
    }

    /// Records one write to the API of an object of `kind`.
    pub fn wrote(&self, kind: &str) {
        self.writes
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// Sets whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_up_with_names_and_labels() {
        let m = Metrics::default();
        m.reconciled("DNSServer", "success", Duration::from_millis(3));
        m.wrote("ConfigMap");
        m.wrote("ConfigMap");
        m.set_leader(true);
        let text = m.encode();
        assert!(
            text.contains(
                r#"nameplane_operator_reconciles_total{kind="DNSServer",result="success"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"nameplane_operator_writes_total{kind="ConfigMap"} 2"#),
            "{text}"
        );
        assert!(text.contains("nameplane_operator_leader 1"), "{text}");
        assert!(
            text.contains("nameplane_operator_reconcile_duration_seconds_bucket"),
            "{text}"
        );
    }
}
