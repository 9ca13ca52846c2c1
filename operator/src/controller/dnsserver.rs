//! Reconciles one `DNSServer`: render its server config, publish it in the ConfigMap
//! `<name>-config`, apply the objects that run it ([`crate::workload`]), and report the
//! outcome in its status (and as an Event when `Ready` changes). Every write happens only when
//! its content differs from what is stored ([`crate::apply::ensure`]), so a reconcile with
//! nothing to change makes zero writes.
//!
//! `Ready=True` (reason `ConfigPublished`) only once every wanted Pod is ready and serves the
//! published config hash ([`crate::serving`] asks each Pod's `/ready`); until then
//! `Reconciling=True` (`PodsRollingOut`, followed through the Deployment's status;
//! `ConfigRollingOut`, asked again every 2 s), and
//! `Stalled=True` when the Pods cannot get there (`ImagePullFailed`, `CrashLoopBackOff`,
//! `Unschedulable`, `ConfigRejected`, `ForwardingLoop`) or the spec renders no valid config
//! (`InvalidSpec`, naming the field: `spec.clusterDomain`).
//!
//! The Deployment's replica count is [`crate::scaling::replicas`] (written to `status.replicas`,
//! with the Pods' selector in `status.selector`, for the `/scale` subresource); a
//! `podTemplate` that is not a Pod spec leaves the config and workload alone with `Stalled=True`,
//! reason `InvalidPodTemplate`; an object the API server refuses as invalid (422, e.g. a
//! `podTemplate` sidecar without an image, a taken cluster IP) makes it `Stalled` with reason
//! `WorkloadRefused` and the API server's message.
//!
//! Deleting a `DNSServer` deletes its namespaced objects through owner references; its
//! cluster-scoped bindings are removed by the [`FINALIZER`].
//!
//! A `DNSServer` in a namespace outside `--dns-server-namespaces`
//! ([`crate::namespaces::NamespaceAllowList`]) gets nothing: no finalizer, no object, no
//! binding (one left from when the namespace was allowed is removed), only `Stalled=True`
//! with reason `NamespaceNotAllowed` in its status.

use super::Context;
use crate::api::dnsserver::{DNSServer, DNSServerStatus};
use crate::apply::ensure;
use crate::namespaces::NOT_ALLOWED_REASON;
use crate::pods::{self, Shape};
use crate::serving;
use crate::status::{self, Outcome};
use crate::workload::{self, SERVER_LABEL, Workload};
use crate::{Error, FIELD_MANAGER, Result, render};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use nameplane_config::{CONFIG_KEY, HASH_ANNOTATION};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Finalizer that removes the cluster-scoped RBAC of a deleted `DNSServer`.
pub const FINALIZER: &str = "nameplane.io/cleanup";

/// Next look at a server whose Pods all serve its config (changes trigger one sooner).
const SETTLED_REQUEUE: Duration = Duration::from_secs(600);
/// Next look while ready Pods have not loaded the new config yet: the Pods' `/ready` is not
/// watched, so the operator asks again this soon until they all serve it.
const CONFIG_ROLLOUT_REQUEUE: Duration = Duration::from_secs(2);
/// Next look while Pods of a new template come up: the Deployment's status changes (watched)
/// trigger a reconcile as they do; this is only the fallback.
const PODS_ROLLOUT_REQUEUE: Duration = Duration::from_secs(10);
/// Next look at a server whose Pods cannot progress (image, scheduling, rejected config).
const STALLED_REQUEUE: Duration = Duration::from_secs(15);
/// Reason of `Stalled=True` when the API server refuses (422) an object built from the spec.
pub const WORKLOAD_REFUSED: &str = "WorkloadRefused";

/// The name of the ConfigMap that carries a server's config.
pub fn config_map_name(server: &str) -> String {
    format!("{server}-config")
}

/// Reconciles one `DNSServer`.
pub async fn reconcile(server: Arc<DNSServer>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let namespace = server
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let servers: Api<DNSServer> = Api::namespaced(ctx.client.clone(), &namespace);
    if !ctx.settings.dns_server_namespaces.allows(&namespace) {
        let result = refuse(&server, &ctx).await;
        let label = match &result {
            Ok(_) => "success",
            Err(e) => e.metric_label(),
        };
        ctx.metrics
            .reconciled("DNSServer", label, started.elapsed());
        return result;
    }
    let result = finalizer(&servers, FINALIZER, server, |event| async {
        match event {
            Finalizer::Apply(server) => apply(&server, &ctx).await,
            Finalizer::Cleanup(server) => cleanup(&server, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let label = match &result {
        Ok(_) => "success",
        Err(e) => e.metric_label(),
    };
    ctx.metrics
        .reconciled("DNSServer", label, started.elapsed());
    result
}

async fn apply(server: &DNSServer, ctx: &Context) -> Result<Action> {
    let namespace = server
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = server.name_any();
    let client = &ctx.client;
    let previous = server.status.clone().unwrap_or_default();
    let mut next = previous.clone();
    let mut requeue = SETTLED_REQUEUE;

    let snapshot = ctx.stores.snapshot();
    let rendered = render::render(server, &snapshot.inputs());
    let rejected = rendered.rejected();
    let partial = rendered.partial();
    let own_verdict = rendered
        .verdicts
        .get(&render::ObjectKey::of(server))
        .cloned();
    let outcome = match rendered.config {
        Ok(config) => {
            let cm_name = config_map_name(&name);
            let hash = config.content_hash();
            let desired = config_map(server, &cm_name, config.to_json(), &hash)?;
            let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            let publish = || async {
                if ensure(&config_maps, &desired, &ctx.metrics).await?.0 {
                    tracing::info!(server = %format!("{namespace}/{name}"), %hash, "published server config");
                }
                Ok::<_, Error>(())
            };
            let shape = match Shape::of(server, &ctx.stores.node_capacity()) {
                Ok(shape) => shape,
                Err(why) => {
                    // Nothing is applied: the published config and the running Pods stay
                    // as they are until the podTemplate is fixed.
                    let outcome = Outcome::Stalled {
                        reason: pods::INVALID_POD_TEMPLATE,
                        message: format!(
                            "spec.{why}; nothing is applied, the last published config and the DNS Deployment stay as they are"
                        ),
                    };
                    write_status(server, ctx, &previous, next, &outcome).await?;
                    return Ok(Action::requeue(Duration::from_secs(600)));
                }
            };
            let w = workload::build(server, &config, &cm_name, &ctx.settings, &shape)?;
            // The RBAC follows the config (Pods only when it needs them): grant before
            // publishing a config that needs more, revoke only after publishing one that needs
            // less, so a server never holds a config it may not serve.
            let applied = async {
                if config.needs_pods() {
                    let deployment = apply_workload(ctx, &namespace, &name, &w).await?;
                    publish().await?;
                    Ok(deployment)
                } else {
                    publish().await?;
                    apply_workload(ctx, &namespace, &name, &w).await
                }
            }
            .await;
            let deployment = match applied {
                Ok(deployment) => deployment,
                // The API server refused an object built from the spec (a podTemplate
                // sidecar without an image, a cluster IP outside the Service range or
                // taken): retrying cannot help until the spec changes.
                Err(Error::Kube(kube::Error::Api(refused))) if refused.code == 422 => {
                    tracing::warn!(server = %format!("{namespace}/{name}"), error = %refused.message, "workload refused");
                    let outcome = Outcome::Stalled {
                        reason: WORKLOAD_REFUSED,
                        message: format!(
                            "the API server refused an object this DNSServer's spec makes: {}",
                            refused.message
                        ),
                    };
                    write_status(server, ctx, &previous, next, &outcome).await?;
                    return Ok(Action::requeue(Duration::from_secs(600)));
                }
                Err(e) => return Err(e),
            };
            // What the Deployment wants as stored (whoever scaled it), not only the spec.
            let wanted = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(shape.replicas);
            next.replicas = Some(wanted);
            next.selector = w
                .deployment
                .spec
                .as_ref()
                .and_then(|d| d.selector.match_labels.as_ref())
                .map(|labels| {
                    labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                });
            next.ready_replicas = Some(
                deployment
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
            );
            next.config_hash = Some(hash.clone());
            next.config_map = Some(cm_name.clone());
            let c = &config;
            let mut message = format!(
                "server config {} published in ConfigMap {cm_name}: {} zones, {} forwarders, {} rewrites, {} policies",
                &hash[..12],
                c.zones.len(),
                c.forward.len(),
                c.rewrites.len(),
                c.policies.len()
            );
            if rejected > 0 {
                message.push_str(&format!(
                    "; {rejected} selected objects rejected (see their status)"
                ));
            }
            if partial > 0 {
                message.push_str(&format!(
                    "; {partial} selected objects served in part (see their status)"
                ));
            }
            match own_verdict {
                // The server's own upstreamServiceRefs: published without what they could
                // not give, and not Ready until they do.
                Some(render::Verdict::Partial {
                    reason,
                    message: why,
                }) => {
                    let message = format!("{message}; but {why}");
                    if render::services::waits_for_a_service(reason) {
                        Outcome::Waiting { reason, message }
                    } else {
                        Outcome::Stalled { reason, message }
                    }
                }
                // Published: Ready once every wanted Pod serves it.
                _ => {
                    let verdict = serving::observe(
                        client,
                        &ctx.serving,
                        (&namespace, &name),
                        &hash,
                        wanted,
                        &deployment,
                    )
                    .await?;
                    requeue = match verdict {
                        serving::Verdict::Serving { .. } => requeue,
                        serving::Verdict::RollingOut { reason, .. }
                            if reason == serving::PODS_ROLLING_OUT =>
                        {
                            PODS_ROLLOUT_REQUEUE
                        }
                        serving::Verdict::RollingOut { .. } => CONFIG_ROLLOUT_REQUEUE,
                        serving::Verdict::Stalled { .. } => STALLED_REQUEUE,
                    };
                    verdict.outcome(message)
                }
            }
        }
        Err(e) => {
            tracing::warn!(server = %format!("{namespace}/{name}"), error = %e, "not publishing");
            Outcome::Stalled {
                reason: e.reason(),
                message: format!("{e}; the last published config (if any) stays in effect"),
            }
        }
    };
    write_status(server, ctx, &previous, next, &outcome).await?;
    Ok(Action::requeue(requeue))
}

/// Writes `next` (with the conditions of `outcome`) as the server's status when it differs
/// from `previous`, and an Event when `Ready` changed.
async fn write_status(
    server: &DNSServer,
    ctx: &Context,
    previous: &DNSServerStatus,
    mut next: DNSServerStatus,
    outcome: &Outcome,
) -> Result<()> {
    let namespace = server
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    next.object = status::desired(
        &previous.object,
        server.meta().generation,
        outcome,
        k8s_openapi::jiff::Timestamp::now(),
    );
    if next != *previous {
        let servers: Api<DNSServer> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": "nameplane.io/v1alpha1",
            "kind": "DNSServer",
            "status": next,
        });
        servers
            .patch_status(
                &server.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        ctx.metrics.wrote("DNSServer");
        // Events go to the server's namespace, where the operator may write only when the
        // namespace is allowed.
        if ready_status(previous) != ready_status(&next)
            && ctx.settings.dns_server_namespaces.allows(&namespace)
        {
            publish_event(server, outcome, ctx).await;
        }
    }
    Ok(())
}

/// A `DNSServer` outside the allow-list: remove what it may hold from when its namespace was
/// allowed (cluster bindings, the finalizer) and say why in its status. Its namespaced
/// objects, if any, are left to the garbage collector (they are owned by it) or the admin: the
/// operator may no longer write in that namespace.
async fn refuse(server: &DNSServer, ctx: &Context) -> Result<Action> {
    let namespace = server
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = server.name_any();
    delete_cluster_bindings(server, ctx).await?;
    let finalizers = server.finalizers();
    if let Some(index) = finalizers.iter().position(|f| f == FINALIZER) {
        // Guarded by the resourceVersion: a list changed since it was read is a 409 Conflict,
        // and the reconcile is retried on the newer object.
        let mut remaining = finalizers.to_vec();
        remaining.remove(index);
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": server.resource_version(),
            "finalizers": remaining,
        }});
        Api::<DNSServer>::namespaced(ctx.client.clone(), &namespace)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        ctx.metrics.wrote("DNSServer");
    }
    if server.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let previous = server.status.clone().unwrap_or_default();
    let outcome = Outcome::Stalled {
        reason: NOT_ALLOWED_REASON,
        message: format!(
            "namespace {namespace} may not hold DNSServers (the operator serves {}); nothing is created for it. Ask the cluster admin to add the namespace to the operator's --dns-server-namespaces (chart value dnsServerNamespaces)",
            ctx.settings.dns_server_namespaces
        ),
    };
    tracing::warn!(server = %format!("{namespace}/{name}"), "namespace not allowed; not serving");
    write_status(server, ctx, &previous, previous.clone(), &outcome).await?;
    Ok(Action::await_change())
}

/// Applies every object that runs the server; returns its Deployment as stored.
async fn apply_workload(
    ctx: &Context,
    namespace: &str,
    server: &str,
    w: &Workload,
) -> Result<Deployment> {
    let client = || ctx.client.clone();
    let metrics = &ctx.metrics;
    ensure(
        &Api::namespaced(client(), namespace),
        &w.service_account,
        metrics,
    )
    .await?;
    ensure_cluster_binding(ctx, &w.cluster_role_binding).await?;
    match &w.clients_binding {
        Some(binding) => ensure_cluster_binding(ctx, binding).await?,
        None => {
            delete_cluster_binding(ctx, &workload::clients_binding_name(namespace, server)).await?;
        }
    }
    ensure(&Api::namespaced(client(), namespace), &w.role, metrics).await?;
    ensure(
        &Api::namespaced(client(), namespace),
        &w.role_binding,
        metrics,
    )
    .await?;
    let (_, deployment) = ensure(
        &Api::namespaced(client(), namespace),
        &w.deployment,
        metrics,
    )
    .await?;
    ensure(&Api::namespaced(client(), namespace), &w.service, metrics).await?;
    ensure(&Api::namespaced(client(), namespace), &w.pdb, metrics).await?;
    Ok(deployment)
}

/// [`ensure`] for a ClusterRoleBinding, whose `roleRef` cannot change: a binding of that
/// name to another role (e.g. the per-server ClusterRole of earlier versions) is deleted and
/// made again.
async fn ensure_cluster_binding(ctx: &Context, desired: &ClusterRoleBinding) -> Result<()> {
    let api: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    let name = desired.name_any();
    if let Some(current) = api.get_opt(&name).await?
        && current.role_ref != desired.role_ref
    {
        tracing::info!(binding = %name, from = %current.role_ref.name, to = %desired.role_ref.name, "re-binding");
        delete_cluster_binding(ctx, &name).await?;
    }
    ensure(&api, desired, &ctx.metrics).await?;
    Ok(())
}

/// Deletes the ClusterRoleBinding `name` if it exists. Looks first, so a reconcile with
/// nothing to remove sends no write.
async fn delete_cluster_binding(ctx: &Context, name: &str) -> Result<()> {
    let api: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    if api.get_opt(name).await?.is_none() {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.metrics.wrote("ClusterRoleBinding");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes both cluster bindings a server may have.
async fn delete_cluster_bindings(server: &DNSServer, ctx: &Context) -> Result<()> {
    let namespace = server
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = server.name_any();
    for binding in [
        workload::cluster_rbac_name(&namespace, &name),
        workload::clients_binding_name(&namespace, &name),
    ] {
        delete_cluster_binding(ctx, &binding).await?;
    }
    Ok(())
}

/// Removes what owner references cannot: the cluster-scoped bindings.
async fn cleanup(server: &DNSServer, ctx: &Context) -> Result<Action> {
    delete_cluster_bindings(server, ctx).await?;
    serving::forget(
        &ctx.serving,
        &server.namespace().unwrap_or_default(),
        &server.name_any(),
    );
    tracing::info!(server = %format!("{}/{}", server.namespace().unwrap_or_default(), server.name_any()), "removed cluster bindings");
    Ok(Action::await_change())
}

fn ready_status(status: &DNSServerStatus) -> Option<&str> {
    status
        .object
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::condition::READY)
        .map(|c| c.status.as_str())
}

async fn publish_event(server: &DNSServer, outcome: &Outcome, ctx: &Context) {
    let (type_, reason, note) = match outcome {
        Outcome::Ready { reason, message } => (EventType::Normal, *reason, message.clone()),
        Outcome::Reconciling { reason, message } => (EventType::Normal, *reason, message.clone()),
        Outcome::Stalled { reason, message } | Outcome::Waiting { reason, message } => {
            (EventType::Warning, *reason, message.clone())
        }
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    // An Event is a courtesy: failing to record one must not fail the reconcile.
    match ctx.recorder.publish(&event, &server.object_ref(&())).await {
        Ok(()) => ctx.metrics.wrote("Event"),
        Err(e) => tracing::debug!(error = %e, "could not publish event"),
    }
}

/// The ConfigMap that publishes `json` for `server`.
fn config_map(server: &DNSServer, name: &str, json: String, hash: &str) -> Result<ConfigMap> {
    let owner = server
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let namespace = server
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.clone()),
            labels: Some(BTreeMap::from([
                (
                    super::MANAGED_BY_LABEL.to_string(),
                    FIELD_MANAGER.to_string(),
                ),
                (
                    SERVER_LABEL.to_string(),
                    workload::server_label_value(&namespace, &server.name_any()),
                ),
            ])),
            annotations: Some(BTreeMap::from([(
                HASH_ANNOTATION.to_string(),
                hash.to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), json)])),
        ..Default::default()
    })
}
