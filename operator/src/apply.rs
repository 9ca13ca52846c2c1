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

/// Makes sure `desired` is in place; returns whether a write was needed, and the object as
/// stored.
pub async fn ensure<K>(api: &Api<K>, desired: &K, metrics: &Metrics) -> Result<(bool, K)>
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
        return Ok((false, current));
    }
    let stored = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await?;
    metrics.wrote(&K::kind(&K::DynamicType::default()));
    Ok((true, stored))
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
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::client::Body;
    use serde_json::json;
    use std::time::Duration;

    type Handle = tower_test::mock::Handle<http::Request<Body>, http::Response<Body>>;

    fn config_map(data: &str, extra: serde_json::Value) -> ConfigMap {
        let mut value = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "dns-config", "namespace": "ns", "labels": {"app": "dns"}},
            "data": {"config.json": data},
        });
        if let (Some(meta), Some(extra)) = (value["metadata"].as_object_mut(), extra.as_object()) {
            meta.extend(extra.clone());
        }
        serde_json::from_value(value).expect("ConfigMap")
    }

    /// Runs `ensure` against a mock API that answers the GET with `current` (or 404) and
    /// returns the methods of every request the operator made.
    async fn calls(
        desired: ConfigMap,
        current: Option<ConfigMap>,
    ) -> (bool, Vec<http::Method>, f64) {
        let (service, mut handle): (_, Handle) = tower_test::mock::pair();
        let api: Api<ConfigMap> = Api::namespaced(kube::Client::new(service, "ns"), "ns");
        let metrics = Metrics::default();
        let server = tokio::spawn(async move {
            let mut methods = Vec::new();
            while let Ok(Some((request, respond))) =
                tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
            {
                methods.push(request.method().clone());
                let response = match (request.method(), &current) {
                    (&http::Method::GET, Some(object)) => http::Response::builder()
                        .body(Body::from(serde_json::to_vec(object).expect("json"))),
                    (&http::Method::GET, None) => http::Response::builder().status(404).body(Body::from(
                        br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.to_vec(),
                    )),
                    _ => {
                        let body = http_body_bytes(request).await;
                        http::Response::builder().body(Body::from(body))
                    }
                };
                respond.send_response(response.expect("response"));
            }
            methods
        });
        let (wrote, _) = ensure(&api, &desired, &metrics).await.expect("ensure");
        let methods = server.await.expect("mock server");
        let writes = metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("nameplane_operator_writes_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (wrote, methods, writes)
    }

    async fn http_body_bytes(request: http::Request<Body>) -> Vec<u8> {
        use http_body_util::BodyExt;
        request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn nothing_to_change_means_one_read_and_zero_writes() {
        let desired = config_map("{}", json!({}));
        let current = config_map("{}", json!({"resourceVersion": "42", "uid": "u1"}));
        let (wrote, methods, writes) = calls(desired, Some(current)).await;
        assert!(!wrote);
        assert_eq!(methods, [http::Method::GET]);
        assert_eq!(writes, 0.0);
    }

    #[tokio::test]
    async fn a_difference_or_a_missing_object_is_one_apply() {
        for current in [
            Some(config_map(
                "{\"old\": true}",
                json!({"resourceVersion": "42"}),
            )),
            None,
        ] {
            let (wrote, methods, writes) = calls(config_map("{}", json!({})), current).await;
            assert!(wrote);
            assert_eq!(methods, [http::Method::GET, http::Method::PATCH]);
            assert_eq!(writes, 1.0);
        }
    }

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
