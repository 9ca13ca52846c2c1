//! Reconciles one `DNSServer`: render its server config, publish it in the ConfigMap
//! `<name>-config` (server-side apply, owned by the `DNSServer`), and report the outcome in
//! its status. Each write happens only when its content differs from what is stored, so a
//! reconcile with nothing to change makes zero writes.

use super::{Context, MANAGED_BY_LABEL};
use crate::api::dnsserver::{DNSServer, DNSServerStatus};
use crate::status::{self, Outcome};
use crate::{Error, FIELD_MANAGER, Result, render};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use nameplane_config::{CONFIG_KEY, HASH_ANNOTATION};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Label on a published ConfigMap naming the `DNSServer` it belongs to.
pub const SERVER_LABEL: &str = "nameplane.io/dnsserver";

/// The name of the ConfigMap that carries a server's config.
pub fn config_map_name(server: &str) -> String {
    format!("{server}-config")
}

/// Reconciles one `DNSServer`.
pub async fn reconcile(server: Arc<DNSServer>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = server
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = server.name_any();
    let servers: Api<DNSServer> = Api::namespaced(ctx.client.clone(), &namespace);
    let previous = server.status.clone().unwrap_or_default();

    let mut next = DNSServerStatus {
        config_hash: previous.config_hash.clone(),
        config_map: previous.config_map.clone(),
        ..Default::default()
    };
    let outcome = match render::server_config(&server) {
        Ok(config) => {
            let cm_name = config_map_name(&name);
            let hash = config.content_hash();
            let desired = config_map(&server, &cm_name, config.to_json(), &hash)?;
            let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
            let current = config_maps.get_opt(&cm_name).await?;
            if !publishes_same(current.as_ref(), &desired) {
                config_maps
                    .patch(
                        &cm_name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&desired),
                    )
                    .await?;
                tracing::info!(server = %format!("{namespace}/{name}"), %hash, "published server config");
            }
            next.config_hash = Some(hash.clone());
            next.config_map = Some(cm_name.clone());
            Outcome::Ready {
                reason: "ConfigPublished",
                message: format!(
                    "server config {} published in ConfigMap {cm_name}",
                    &hash[..12]
                ),
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
    next.object = status::desired(
        &previous.object,
        server.meta().generation,
        &outcome,
        k8s_openapi::jiff::Timestamp::now(),
    );

    if next != previous {
        let patch = serde_json::json!({
            "apiVersion": "nameplane.io/v1alpha1",
            "kind": "DNSServer",
            "status": next,
        });
        servers
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// The ConfigMap that publishes `json` for `server`.
fn config_map(server: &DNSServer, name: &str, json: String, hash: &str) -> Result<ConfigMap> {
    let owner = server
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: server.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), FIELD_MANAGER.to_string()),
                (SERVER_LABEL.to_string(), server.name_any()),
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

/// Whether `current` already carries everything `desired` sets (so applying would be a no-op).
fn publishes_same(current: Option<&ConfigMap>, desired: &ConfigMap) -> bool {
    let Some(current) = current else { return false };
    let contains = |have: &Option<BTreeMap<String, String>>,
                    want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    current.data == desired.data
        && contains(&current.metadata.labels, &desired.metadata.labels)
        && contains(&current.metadata.annotations, &desired.metadata.annotations)
        && current.metadata.owner_references == desired.metadata.owner_references
}
