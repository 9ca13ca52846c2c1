//! The one pure renderer: custom resources in, [`ServerConfig`] out. No I/O, no clock, so the
//! same objects always give the same bytes (and the same hash); golden files pin the output.
//!
//! The renderer runs the server's own validation on what it produces, so the operator can
//! never publish a config the DNS server would refuse.

use crate::api::dnsserver::DNSServer;
use kube::ResourceExt;
use nameplane_config::{FORMAT_VERSION, KubernetesConfig, ServerConfig};

/// Why a `DNSServer` could not be rendered; shown in its `Ready` condition.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// The rendered config fails the server's validation.
    #[error("the rendered server config is invalid: {0}")]
    Invalid(#[from] nameplane_config::ConfigError),
}

impl RenderError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::Invalid(_) => "InvalidSpec",
        }
    }
}

/// Renders the server config for one `DNSServer`.
pub fn server_config(server: &DNSServer) -> Result<ServerConfig, RenderError> {
    let mut config = ServerConfig {
        version: FORMAT_VERSION,
        server: format!(
            "{}/{}",
            server.namespace().unwrap_or_default(),
            server.name_any()
        ),
        kubernetes: KubernetesConfig {
            cluster_domain: server.spec.cluster_domain.as_str().to_string(),
            ttl_seconds: server.spec.ttl_seconds,
            // The DNSServer spec has no field for the other Kubernetes settings yet.
            ..KubernetesConfig::default()
        },
    };
    // Publish names in the normalised form the server uses, so equal meaning gives equal hash.
    let validated = config.clone().validate()?;
    config.kubernetes.cluster_domain = validated.cluster_domain().to_string();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn golden_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
    }

    /// Every `<case>.input.yaml` under `tests/golden/` renders to exactly `<case>.output.json`
    /// (or, when rendering fails, to the error text in `<case>.error.txt`).
    /// `UPDATE_GOLDEN=1 cargo test -p nameplane-operator` rewrites the expected files.
    #[test]
    fn golden_files() {
        let update = std::env::var_os("UPDATE_GOLDEN").is_some();
        let mut cases = 0;
        for entry in std::fs::read_dir(golden_dir()).expect("tests/golden exists") {
            let path = entry.expect("dir entry").path();
            let Some(case) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".input.yaml"))
            else {
                continue;
            };
            cases += 1;
            let input = std::fs::read_to_string(&path).expect("read input");
            let server: DNSServer =
                serde_saphyr::from_str(&input).expect("input parses as DNSServer");
            let (expected_path, actual) = match server_config(&server) {
                Ok(cfg) => (
                    golden_dir().join(format!("{case}.output.json")),
                    cfg.to_json() + "\n",
                ),
                Err(e) => (
                    golden_dir().join(format!("{case}.error.txt")),
                    e.to_string() + "\n",
                ),
            };
            if update {
                std::fs::write(&expected_path, &actual).expect("write golden");
            }
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
                panic!(
                    "{} is missing; run UPDATE_GOLDEN=1 cargo test -p nameplane-operator",
                    expected_path.display()
                )
            });
            assert_eq!(
                actual,
                expected,
                "case {case} differs from {}",
                expected_path.display()
            );
        }
        assert!(cases >= 2, "expected golden cases, found {cases}");
    }

    #[test]
    fn rendering_is_deterministic() {
        let server: DNSServer = serde_saphyr::from_str(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: a, namespace: b}\nspec: {}\n",
        )
        .expect("parses");
        let first = server_config(&server).expect("renders");
        assert_eq!(
            first.content_hash(),
            server_config(&server).expect("renders").content_hash()
        );
        assert_eq!(first.kubernetes.cluster_domain, "cluster.local");
        assert_eq!(first.kubernetes.ttl_seconds, 5);
    }
}
