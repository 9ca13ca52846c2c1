//! The server config's field paths ([`ConfigError::Invalid`]'s `field`, e.g.
//! `kubernetes.clusterDomain`, `forward[0].servers[1]`) said as the custom resource fields a
//! person edits (`spec.clusterDomain`, `spec.upstreams[1]`): a `Stalled` message must point
//! at the YAML the reader wrote, not at the contract between operator and server, which they
//! never see.
//!
//! Parts that come from another object (a `DNSZone`'s zone, a `StubDomain`'s forwarder…) are
//! named with that object: `DNSZone team-a/apps spec.records[2]`.

use nameplane_config::{ConfigError, ServerConfig};

/// `error` with its field path said as a custom resource field of the `DNSServer` that
/// rendered `config` (or of the config object the part came from).
pub(crate) fn to_crd(error: ConfigError, config: &ServerConfig) -> ConfigError {
    match error {
        ConfigError::Invalid { field, reason } => ConfigError::Invalid {
            field: crd_path(&field, config),
            reason,
        },
        other => other,
    }
}

/// The custom resource field for the server config path `field`.
pub(crate) fn crd_path(field: &str, config: &ServerConfig) -> String {
    if let Some(rest) = field.strip_prefix("kubernetes.") {
        // The DNSServer's own top-level fields; the rest lives under spec.kubernetes.
        return match rest {
            "clusterDomain" | "ttlSeconds" | "autopath" => format!("spec.{rest}"),
            "labelSelector" => "spec.kubernetes.serviceSelector".into(),
            other => format!("spec.kubernetes.{other}"),
        };
    }
    if field.starts_with("cache") || field.starts_with("clients") {
        return format!("spec.{field}");
    }
    let Some((list, index, rest)) = indexed(field) else {
        return format!("spec.{field}");
    };
    let part = |kind: &str, source: Option<&String>| match source {
        Some(source) if *source != config.server => {
            format!("{kind} {source} spec{rest}")
        }
        _ => format!("spec{rest}"),
    };
    match list {
        "zones" => part("DNSZone", config.zones.get(index).map(|z| &z.source)),
        "rewrites" => part("RewriteRule", config.rewrites.get(index).map(|r| &r.source)),
        "policies" => part("DNSPolicy", config.policies.get(index).map(|p| &p.source)),
        "forward" => match config.forward.get(index) {
            // The DNSServer's own upstreams (spec.upstreams and the addresses of
            // spec.upstreamServiceRefs) are its "." forwarder.
            Some(f) if f.source == config.server => match rest.strip_prefix(".servers") {
                Some(servers) => format!("spec.upstreams{servers}"),
                None if rest == ".policy" => "spec.upstreamPolicy".into(),
                None => format!("spec.upstreams{rest}"),
            },
            Some(f) => format!("StubDomain {} spec{rest}", f.source),
            None => format!("spec{rest}"),
        },
        _ => format!("spec.{field}"),
    }
}

/// `"zones[3].records[1]"` -> `("zones", 3, ".records[1]")`.
fn indexed(field: &str) -> Option<(&str, usize, &str)> {
    let open = field.find('[')?;
    let close = open + field[open..].find(']')?;
    let index = field[open + 1..close].parse().ok()?;
    Some((&field[..open], index, &field[close + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nameplane_config::forward::ForwardConfig;
    use nameplane_config::zone::ZoneConfig;

    fn config() -> ServerConfig {
        let mut config = ServerConfig {
            server: "dns/edge".into(),
            ..Default::default()
        };
        let forward = |domain: &str, source: &str| -> ForwardConfig {
            serde_json::from_value(serde_json::json!({
                "domain": domain, "source": source, "servers": ["192.0.2.1"],
            }))
            .expect("forward config")
        };
        config.forward.push(forward(".", "dns/edge"));
        config.forward.push(forward("corp.example", "team-a/corp"));
        config.zones.push(
            serde_json::from_value::<ZoneConfig>(serde_json::json!({
                "name": "apps.example", "source": "team-a/apps", "ttlSeconds": 30,
            }))
            .expect("zone config"),
        );
        config
    }

    #[test]
    fn config_paths_become_the_fields_people_write() {
        let c = config();
        for (config_path, crd) in [
            ("kubernetes.clusterDomain", "spec.clusterDomain"),
            ("kubernetes.ttlSeconds", "spec.ttlSeconds"),
            ("kubernetes.namespaces", "spec.kubernetes.namespaces"),
            (
                "kubernetes.labelSelector",
                "spec.kubernetes.serviceSelector",
            ),
            ("cache.minTtlSeconds", "spec.cache.minTtlSeconds"),
            ("clients.nodes.cidrs[0]", "spec.clients.nodes.cidrs[0]"),
            ("forward[0].servers[0]", "spec.upstreams[0]"),
            (
                "forward[1].servers[0]",
                "StubDomain team-a/corp spec.servers[0]",
            ),
            ("zones[0].records[2]", "DNSZone team-a/apps spec.records[2]"),
        ] {
            assert_eq!(crd_path(config_path, &c), crd, "{config_path}");
        }
    }

    #[test]
    fn only_invalid_errors_are_rewritten() {
        let c = config();
        let e = to_crd(
            ConfigError::invalid("kubernetes.clusterDomain".into(), "bad".into()),
            &c,
        );
        assert_eq!(e.to_string(), "spec.clusterDomain: bad");
        assert_eq!(
            to_crd(ConfigError::Parse("x".into()), &c),
            ConfigError::Parse("x".into())
        );
    }
}
