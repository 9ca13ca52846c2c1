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
    /// Servers as `ip:port` (IPv6 as `[ip]:port`). May be empty when
    /// `serversFromResolvConf` is set.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Also forward to the `nameserver`s of the server's resolv.conf (its `--resolv-conf`
    /// flag, default `/etc/resolv.conf`; CoreDNS `forward . /etc/resolv.conf`), port 53,
    /// after `servers`. The server reads the file each time it loads a config; a file with
    /// no usable nameserver leaves only `servers` (none at all: the forwarder answers
    /// SERVFAIL).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub servers_from_resolv_conf: bool,
    /// How a server is picked for each query.
    #[serde(default)]
    pub policy: ForwardPolicy,
    /// Always use TCP towards the servers.
    #[serde(default)]
    pub force_tcp: bool,
    /// Use UDP towards the servers even for clients that asked over TCP (a truncated UDP
    /// reply is still retried over TCP). Without it, and without `forceTcp`, a query goes
    /// upstream over the transport the client used, and a truncated UDP reply is retried
    /// over TCP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prefer_udp: bool,
    /// Most queries of this forwarder waiting on the servers at once; above it, queries are
    /// answered REFUSED at once (CoreDNS `max_concurrent`). Left out: [`DEFAULT_MAX_CONCURRENT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

/// In-flight limit of a forwarder that does not set one (CoreDNS's Kubernetes default).
pub const DEFAULT_MAX_CONCURRENT: u32 = 1000;

/// Largest `maxConcurrent` a config may ask for.
pub const MAX_MAX_CONCURRENT: u32 = 100_000;

/// Most servers one forwarder may list (CoreDNS's limit).
pub const MAX_SERVERS: usize = 15;

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
    /// Largest number of negative answers (NXDOMAIN, NODATA) kept, in a cache of their own
    /// so a flood of random names cannot push out the positive answers. Left out: `capacity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial_capacity: Option<u32>,
    /// How long an expired answer may still be served when every server of its forwarder
    /// fails (RFC 8767 serve-stale), in seconds; stale answers go out with a TTL of 30 s.
    /// 0 (the default) turns serve-stale off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub serve_stale_seconds: u32,
    /// Refresh popular answers before they expire (CoreDNS `prefetch`); off when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<PrefetchConfig>,
}

/// When a cached answer is refreshed ahead of its expiry: it was asked `amount` times
/// within `durationSeconds`, and less than `percentage` % of its TTL is left. The client
/// that notices gets the cached answer at once; the refresh runs in the background.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrefetchConfig {
    /// Queries within the window that make an answer popular (at least 1).
    pub amount: u32,
    /// The window, in seconds (at least 1).
    pub duration_seconds: u32,
    /// Refresh once less than this share of the TTL is left, in percent (1 to 100).
    pub percentage: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Largest `serveStaleSeconds` (RFC 8767 suggests 1 to 3 days).
pub const MAX_SERVE_STALE_SECONDS: u32 = 7 * 86_400;

impl CacheConfig {
    /// Capacity of the denial cache.
    pub fn denial_capacity(&self) -> u32 {
        self.denial_capacity.unwrap_or(self.capacity)
    }
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
        if self.servers.is_empty() && !self.servers_from_resolv_conf {
            return Err(ConfigError::invalid(
                format!("{at}.servers"),
                "at least one server (or serversFromResolvConf) is needed".into(),
            ));
        }
        if self.servers.len() > MAX_SERVERS {
            return Err(ConfigError::invalid(
                format!("{at}.servers"),
                format!(
                    "{} servers; at most {MAX_SERVERS} are allowed",
                    self.servers.len()
                ),
            ));
        }
        if self.force_tcp && self.prefer_udp {
            return Err(ConfigError::invalid(
                format!("{at}.preferUdp"),
                "preferUdp and forceTcp exclude each other".into(),
            ));
        }
        if let Some(limit) = self.max_concurrent
            && !(1..=MAX_MAX_CONCURRENT).contains(&limit)
        {
            return Err(ConfigError::invalid(
                format!("{at}.maxConcurrent"),
                format!("{limit} is not between 1 and {MAX_MAX_CONCURRENT}"),
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

    /// The in-flight limit: `maxConcurrent`, or [`DEFAULT_MAX_CONCURRENT`].
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT)
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
        if let Some(prefetch) = &self.prefetch
            && (prefetch.amount == 0
                || prefetch.duration_seconds == 0
                || !(1..=100).contains(&prefetch.percentage))
        {
            return Err(ConfigError::invalid(
                "cache.prefetch".into(),
                "amount and durationSeconds must be at least 1, percentage 1 to 100".into(),
            ));
        }
        if self.denial_capacity == Some(0) {
            return Err(ConfigError::invalid(
                "cache.denialCapacity".into(),
                "must be at least 1".into(),
            ));
        }
        if self.serve_stale_seconds > MAX_SERVE_STALE_SECONDS {
            return Err(ConfigError::invalid(
                "cache.serveStaleSeconds".into(),
                format!(
                    "{} is above the maximum of {MAX_SERVE_STALE_SECONDS}",
                    self.serve_stale_seconds
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward() -> ForwardConfig {
        ForwardConfig {
            servers_from_resolv_conf: false,
            domain: "corp.example.com".into(),
            source: "ns/stub".into(),
            servers: vec!["10.0.0.53:53".into()],
            policy: ForwardPolicy::Sequential,
            force_tcp: false,
            prefer_udp: false,
            max_concurrent: None,
        }
    }

    #[test]
    fn transport_and_limits_are_checked() {
        assert_eq!(forward().validate("forward[0]"), Ok(()));
        assert_eq!(forward().max_concurrent(), DEFAULT_MAX_CONCURRENT);
        let mut both = forward();
        both.force_tcp = true;
        both.prefer_udp = true;
        let err = both.validate("forward[0]").expect_err("both transports");
        assert!(
            err.to_string().starts_with("forward[0].preferUdp:"),
            "{err}"
        );
        let mut zero = forward();
        zero.max_concurrent = Some(0);
        assert!(zero.validate("forward[0]").is_err());
        let mut none = forward();
        none.servers.clear();
        assert!(none.validate("forward[0]").is_err());
        none.servers_from_resolv_conf = true;
        assert_eq!(none.validate("forward[0]"), Ok(()));
        let mut many = forward();
        many.servers = vec!["10.0.0.53:53".into(); MAX_SERVERS + 1];
        assert!(many.validate("forward[0]").is_err());
    }

    #[test]
    fn cache_bounds_are_checked() {
        let cache = CacheConfig {
            capacity: 100,
            max_ttl_seconds: 3600,
            min_ttl_seconds: 0,
            denial_ttl_seconds: 30,
            denial_capacity: None,
            serve_stale_seconds: 0,
            prefetch: None,
        };
        assert_eq!(cache.validate(), Ok(()));
        assert_eq!(cache.denial_capacity(), 100);
        let mut stale = cache.clone();
        stale.serve_stale_seconds = MAX_SERVE_STALE_SECONDS + 1;
        assert!(stale.validate().is_err());
        let mut denial = cache;
        denial.denial_capacity = Some(0);
        assert!(denial.validate().is_err());
    }

    #[test]
    fn defaults_are_not_serialised() {
        let json = serde_json::to_string(&forward()).expect("json");
        assert!(
            !json.contains("preferUdp")
                && !json.contains("maxConcurrent")
                && !json.contains("serversFromResolvConf"),
            "{json}"
        );
    }
}
