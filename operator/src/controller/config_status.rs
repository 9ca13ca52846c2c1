//! Status of the config objects (`DNSZone`, `StubDomain`, `RewriteRule`, `DNSPolicy`). One
//! generic reconciler per kind asks the renderer, for every `DNSServer` that selects the
//! object, what it made of it, and writes the merged answer into the object's conditions:
//! `Ready=True` when every selecting server serves it whole, else `Ready=False` with the first
//! server's reason (`Stalled` too, unless the object only waits for a Service it refers to). Every kind re-checks on any change, because a conflict is decided by other
//! objects (the older zone is deleted: the newer one becomes Ready).
//!
//! Each change of the `Ready` verdict (status or reason: accepted, conflict lost, reference
//! missing, over budget…) is also an Event on the object (`kubectl describe`, `kubectl
//! events --for dnszone/apps`): once per change, written with the status, never on a
//! reconcile that changes nothing.

use super::Context;
use crate::api::{ObjectStatus, condition};
use crate::render::{self, ObjectKey, Verdict, select::ServerSelector, services};
use crate::status::{self, Outcome};
use crate::{Error, FIELD_MANAGER, Result};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A config kind whose status this module writes.
pub trait ConfigObject:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The stored status, if any.
    fn object_status(&self) -> Option<&ObjectStatus>;
}

macro_rules! config_object {
    ($($kind:ty),*) => {$(
        impl ConfigObject for $kind {
            fn object_status(&self) -> Option<&ObjectStatus> {
                self.status.as_ref()
            }
        }
    )*};
}
config_object!(
    crate::api::dnszone::DNSZone,
    crate::api::stubdomain::StubDomain,
    crate::api::rewriterule::RewriteRule,
    crate::api::dnspolicy::DNSPolicy
);

/// Runs the status controller of kind `K` until `shutdown` resolves.
pub async fn run<K: ConfigObject>(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let changes = ctx.stores.changes();
    Controller::new(
        Api::<K>::all(ctx.client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .reconcile_all_on(changes)
    .graceful_shutdown_on(shutdown)
    .run(
        reconcile::<K>,
        |_, error: &Error, _| {
            tracing::warn!(error = %error, "config status will be retried");
            Action::requeue(Duration::from_secs(5))
        },
        ctx,
    )
    .for_each(|_| async {})
    .await;
}

async fn reconcile<K: ConfigObject>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let kind = K::kind(&()).to_string();
    let key = ObjectKey::of(object.as_ref());
    let snapshot = ctx.stores.snapshot();
    let inputs = snapshot.inputs();
    let mut served_by = Vec::new();
    let mut rejection = None;
    for server in ctx.stores.servers.state() {
        if !ServerSelector::new(&server, inputs.namespaces).selects(object.as_ref()) {
            continue;
        }
        let server_name = format!(
            "{}/{}",
            server.namespace().unwrap_or_default(),
            server.name_any()
        );
        match render::render(&server, &inputs).verdicts.get(&key) {
            Some(Verdict::Accepted) => served_by.push(server_name),
            Some(Verdict::Rejected { reason, message }) => {
                rejection.get_or_insert((*reason, format!("DNSServer {server_name}: {message}")));
            }
            Some(Verdict::Partial { reason, message }) => {
                rejection.get_or_insert((
                    *reason,
                    format!("DNSServer {server_name} serves it without: {message}"),
                ));
            }
            None => {}
        }
    }
    served_by.sort();
    let outcome = match rejection {
        Some((reason, message)) if services::waits_for_a_service(reason) => {
            Outcome::Waiting { reason, message }
        }
        Some((reason, message)) => Outcome::Stalled { reason, message },
        None if served_by.is_empty() => Outcome::Stalled {
            reason: "NotSelected",
            message: "no DNSServer selects this object; check the DNSServers' spec.configSelector"
                .into(),
        },
        None => Outcome::Ready {
            reason: "Accepted",
            message: format!("served by DNSServer {}", served_by.join(", ")),
        },
    };
    let previous = object.object_status().cloned().unwrap_or_default();
    let next = status::desired(
        &previous,
        object.meta().generation,
        &outcome,
        k8s_openapi::jiff::Timestamp::now(),
    );
    let result = if next != previous {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &key.namespace);
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": kind,
            "status": next,
        });
        let written = api
            .patch_status(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(|_| ctx.metrics.wrote(&kind))
            .map_err(Error::from);
        if written.is_ok() && verdict_changed(&previous, &next) {
            publish_event(object.as_ref(), &outcome, &ctx).await;
        }
        written
    } else {
        Ok(())
    };
    ctx.metrics.reconciled(
        &kind,
        if result.is_ok() { "success" } else { "kube" },
        started.elapsed(),
    );
    result.map(|()| Action::requeue(Duration::from_secs(600)))
}

/// Whether the `Ready` condition's status or reason differs: what an Event reports.
fn verdict_changed(previous: &ObjectStatus, next: &ObjectStatus) -> bool {
    let ready = |s: &ObjectStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == condition::READY)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    ready(previous) != ready(next)
}

/// An Event on `object` saying its new verdict; failing to record one does not fail the
/// reconcile (the status says the same).
async fn publish_event<K: ConfigObject>(object: &K, outcome: &Outcome, ctx: &Context) {
    let (type_, reason, note) = match outcome {
        Outcome::Ready { reason, message } => (EventType::Normal, *reason, message),
        Outcome::Reconciling { reason, message } => (EventType::Normal, *reason, message),
        Outcome::Stalled { reason, message } | Outcome::Waiting { reason, message } => {
            (EventType::Warning, *reason, message)
        }
    };
    let event = Event {
        type_,
        reason: reason.into(),
        // The Events API caps a note at 1 KiB.
        note: Some(note.chars().take(1000).collect()),
        action: "Render".into(),
        secondary: None,
    };
    match ctx.recorder.publish(&event, &object.object_ref(&())).await {
        Ok(()) => ctx.metrics.wrote("Event"),
        Err(e) => tracing::debug!(error = %e, "could not publish event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn status(outcome: &Outcome, previous: &ObjectStatus) -> ObjectStatus {
        status::desired(
            previous,
            Some(1),
            outcome,
            Timestamp::from_second(100).expect("time"),
        )
    }

    #[test]
    fn an_event_only_when_the_verdict_changes() {
        let accepted = Outcome::Ready {
            reason: "Accepted",
            message: "served by DNSServer dns/edge".into(),
        };
        let lost = Outcome::Stalled {
            reason: "Conflict",
            message: "zone apps.example is also defined by DNSZone team-b/apps".into(),
        };
        let first = status(&accepted, &ObjectStatus::default());
        assert!(
            verdict_changed(&ObjectStatus::default(), &first),
            "first verdict"
        );
        let again = status(&accepted, &first);
        assert!(!verdict_changed(&first, &again), "same verdict: no Event");
        let conflict = status(&lost, &again);
        assert!(verdict_changed(&again, &conflict), "conflict lost");
        let other_message = Outcome::Stalled {
            reason: "Conflict",
            message: "zone apps.example is also defined by DNSZone team-c/apps".into(),
        };
        assert!(
            !verdict_changed(&conflict, &status(&other_message, &conflict)),
            "the same verdict with other words is not news"
        );
    }
}
