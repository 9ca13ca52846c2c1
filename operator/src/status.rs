//! kstatus conditions for every nameplane object: `Ready`, plus the abnormal-true
//! `Reconciling` and `Stalled`, with `observedGeneration`.
//!
//! | outcome | `Ready` | `Reconciling` | `Stalled` | kstatus |
//! |---|---|---|---|---|
//! | [`Outcome::Ready`] | True | False | False | Current |
//! | [`Outcome::Reconciling`] | False | True | False | InProgress |
//! | [`Outcome::Stalled`] | False | False | True | Failed |
//! | [`Outcome::Waiting`] | False | True | False | InProgress |
//!
//! Waiting for something outside the object (a Service it refers to) is `Reconciling`, as
//! Flux's own controllers report a dependency that is not ready yet: a GitOps tool then keeps
//! waiting instead of calling a half-served object healthy (kstatus reads only
//! `Reconciling`, `Stalled` and `observedGeneration`). `config/argocd/health.lua` maps the
//! same conditions for Argo CD.
//!
//! Conditions are computed, compared with what is stored, and only written when something a
//! reader can see changed: a reconcile with nothing to change makes no write, and a condition
//! keeps its `lastTransitionTime` until its status flips.

use crate::api::{ObjectStatus, condition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The outcome of one reconcile, as a person would say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything is in effect.
    Ready {
        /// CamelCase reason, e.g. `ConfigPublished`.
        reason: &'static str,
        /// What is in effect.
        message: String,
    },
    /// The spec cannot be applied until someone changes it.
    Stalled {
        /// CamelCase reason, e.g. `InvalidSpec`.
        reason: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// On its way: the operator (or the Pods it runs) is still making it so, e.g. a new
    /// config or Pod template is rolling out. `Ready` is False until it is done.
    Reconciling {
        /// CamelCase reason, e.g. `ConfigRollingOut`.
        reason: &'static str,
        /// What is still under way.
        message: String,
    },
    /// Not (wholly) in effect until something outside the object changes, e.g. a Service it
    /// refers to appears; the operator watches for that. `Ready` is False and `Reconciling`
    /// True, but not `Stalled`: the spec itself needs no change.
    Waiting {
        /// CamelCase reason, e.g. `ServiceNotFound`.
        reason: &'static str,
        /// What is missing.
        message: String,
    },
}

/// The status an object should have after `outcome`, keeping `lastTransitionTime` of
/// conditions whose status did not change.
pub fn desired(
    previous: &ObjectStatus,
    generation: Option<i64>,
    outcome: &Outcome,
    now: Timestamp,
) -> ObjectStatus {
    let (ready, reconciling, stalled, reason, message) = match outcome {
        Outcome::Ready { reason, message } => ("True", "False", "False", *reason, message.as_str()),
        Outcome::Reconciling { reason, message } => {
            ("False", "True", "False", *reason, message.as_str())
        }
        Outcome::Stalled { reason, message } => {
            ("False", "False", "True", *reason, message.as_str())
        }
        Outcome::Waiting { reason, message } => {
            ("False", "True", "False", *reason, message.as_str())
        }
    };
    let make = |type_: &str, status: &str| {
        let since = previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: since,
        }
    };
    ObjectStatus {
        observed_generation: generation,
        conditions: vec![
            make(condition::READY, ready),
            make(condition::RECONCILING, reconciling),
            make(condition::STALLED, stalled),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    fn ready() -> Outcome {
        Outcome::Ready {
            reason: "ConfigPublished",
            message: "ok".into(),
        }
    }

    #[test]
    fn same_outcome_twice_is_identical() {
        let first = desired(&ObjectStatus::default(), Some(1), &ready(), at(100));
        let second = desired(&first, Some(1), &ready(), at(200));
        assert_eq!(first, second, "nothing changed, so nothing to write");
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = desired(&ObjectStatus::default(), Some(1), &ready(), at(100));
        let stalled = Outcome::Stalled {
            reason: "InvalidSpec",
            message: "bad".into(),
        };
        let second = desired(&first, Some(2), &stalled, at(200));
        let get = |s: &ObjectStatus, t: &str| {
            s.conditions
                .iter()
                .find(|c| c.type_ == t)
                .cloned()
                .expect(t)
        };
        assert_eq!(get(&second, "Ready").status, "False");
        assert_eq!(get(&second, "Ready").last_transition_time, Time(at(200)));
        assert_eq!(get(&second, "Stalled").status, "True");
        assert_eq!(
            get(&second, "Reconciling").last_transition_time,
            Time(at(100)),
            "Reconciling stayed False"
        );
        assert_eq!(second.observed_generation, Some(2));
    }

    #[test]
    fn reconciling_sets_only_reconciling_true() {
        let rolling = Outcome::Reconciling {
            reason: "ConfigRollingOut",
            message: "1 of 2 Pods serve it".into(),
        };
        let status = desired(&ObjectStatus::default(), Some(3), &rolling, at(100));
        let by_type: Vec<(&str, &str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            by_type,
            [
                ("Ready", "False", "ConfigRollingOut"),
                ("Reconciling", "True", "ConfigRollingOut"),
                ("Stalled", "False", "ConfigRollingOut"),
            ]
        );
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
    }

    #[test]
    fn waiting_for_a_service_is_reconciling_not_stalled() {
        let waiting = Outcome::Waiting {
            reason: "ServiceNotFound",
            message: "Service dns/upstream not found".into(),
        };
        let status = desired(&ObjectStatus::default(), Some(1), &waiting, at(100));
        let get = |t: &str| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.status.clone())
        };
        assert_eq!(get("Ready").as_deref(), Some("False"));
        assert_eq!(get("Reconciling").as_deref(), Some("True"));
        assert_eq!(get("Stalled").as_deref(), Some("False"));
    }
}
