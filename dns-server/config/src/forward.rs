//! Forwarding: which servers answer which domains (stub domains, and `.` for the upstreams
//! of everything else), and the cache in front of them.

use crate::{ConfigError, names};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Forward one domain (and its subdomains) to `servers`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForwardConfig {
    /// The domain, lower case without a trailing dot, or `.` for every name no other stage or
    /// forwarder owns (the upstreams).
    pub domain: String,
    /// `namespace/name` of the object this came from (logs and metrics).
    pub source: String,
    /// Servers as `ip:port` (IPv6 as `[ip]:port`).
    pub servers: Vec<String>,
    /// How a server is picked for each query.
    #[serde(default)]
    pub policy: ForwardPolicy,
    /// Always use TCP towards the servers.
    #[serde(default)]
    pub force_tcp: bool,
}

/// How a forwarder picks among its servers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ForwardPolicy {
    /// A random healthy server per query.
    #[default]
    Random,
    /// Healthy servers in turn.
    RoundRobin,
    /// The first healthy server in the order given.
    Sequential,
}

/// The answer cache for forwarded names.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CacheConfig {
    /// Largest number of answers kept.
    pub capacity: u32,
    /// Answers are kept at most this long, whatever their TTL.
    pub max_ttl_seconds: u32,
    /// Answers are kept at least this long, whatever their TTL.
    pub min_ttl_seconds: u32,
    /// Negative answers are kept at most this long.
    pub denial_ttl_seconds: u32,
}

impl ForwardConfig {
    /// Checks the domain and every server address; `at` is the JSON path of this entry.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.domain != "." {
            let normal = names::normalize_domain(&self.domain)
                .map_err(|r| ConfigError::invalid(format!("{at}.domain"), r))?;
            if normal != self.domain {
                return Err(ConfigError::invalid(
                    format!("{at}.domain"),
                    format!("{:?} is not in normal form", self.domain),
                ));
            }
        }
        if self.servers.is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.servers"),
                "at least one server is needed".into(),
            ));
        }
        for (i, server) in self.servers.iter().enumerate() {
            server.parse::<SocketAddr>().map_err(|_| {
                ConfigError::invalid(
                    format!("{at}.servers[{i}]"),
                    format!("{server:?} is not ip:port"),
                )
            })?;
        }
        Ok(())
    }

    /// The server addresses (valid after [`ForwardConfig::validate`]).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.servers.iter().filter_map(|s| s.parse().ok()).collect()
    }
}

impl CacheConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::invalid(
                "cache.capacity".into(),
                "must be at least 1".into(),
            ));
        }
        if self.min_ttl_seconds > self.max_ttl_seconds {
            return Err(ConfigError::invalid(
                "cache.minTtlSeconds".into(),
                "must not be above maxTtlSeconds".into(),
            ));
        }
        Ok(())
    }
}
