//! Writes an object only when it differs: `GET`, compare, and server-side apply (one field
//! manager, forced) only if something the operator sets is missing or different. A
//! reconcile with nothing to change therefore makes reads and no writes.

use crate::metrics::Metrics;
use crate::{Error, FIELD_MANAGER, Result};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt::Debug;

/// Makes sure `desired` is in place; returns whether a write was needed.
pub async fn ensure<K>(api: &Api<K>, desired: &K, metrics: &Metrics) -> Result<bool>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let name = desired
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let current = api.get_opt(&name).await?;
    if let Some(current) = current
        && is_subset(
            &serde_json::to_value(desired)?,
            &serde_json::to_value(&current)?,
        )
    {
        return Ok(false);
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await?;
    metrics.wrote(&K::kind(&K::DynamicType::default()));
    Ok(true)
}

/// Whether every field set in `desired` has the same value in `current`. Fields the API
/// server adds (defaults, status, metadata) are ignored; lists must match item by item.
pub fn is_subset(desired: &Value, current: &Value) -> bool {
    match (desired, current) {
        (Value::Null, _) => true,
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(k, v)| v.is_null() || have.get(k).is_some_and(|h| is_subset(v, h))),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        _ => desired == current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_do_not_count_as_differences() {
        let desired = json!({"spec": {"ports": [{"port": 53, "protocol": "UDP"}]}, "metadata": {"labels": {"a": "1"}}});
        let current = json!({"spec": {"ports": [{"port": 53, "protocol": "UDP", "targetPort": 53}], "type": "ClusterIP"},
                             "metadata": {"labels": {"a": "1", "b": "2"}, "resourceVersion": "7"}});
        assert!(is_subset(&desired, &current));
    }

    #[test]
    fn changed_missing_or_extra_items_are_differences() {
        let desired = json!({"spec": {"replicas": 3, "ports": [{"port": 53}]}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 2, "ports": [{"port": 53}]}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"ports": [{"port": 53}]}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 3, "ports": [{"port": 53}, {"port": 54}]}})
        ));
    }
}
