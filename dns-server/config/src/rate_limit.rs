//! Response-rate limiting (RRL, as in BIND, Knot and NSD) for the answers to clients the
//! server cannot tie to exactly one Pod: node addresses, host-network Pods, anything from
//! outside the Pod network. Pods are never limited.
//!
//! Answers over UDP to such a client are counted per bucket: the client's network prefix
//! ([`RateLimitConfig::ipv4_prefix_length`], [`RateLimitConfig::ipv6_prefix_length`]) and the
//! class of the answer (a positive answer by its name and type; NXDOMAIN and NODATA by the
//! zone that says so; errors together). A bucket over [`RateLimitConfig::responses_per_second`]
//! drops the answer, except every [`RateLimitConfig::slip`]-th one, which goes out truncated
//! (TC=1, no records) so that a real client retries over TCP. TCP answers are never limited.
//! Without the setting (the default) nothing is limited and the query path does no work for it.

use crate::ConfigError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest [`RateLimitConfig::responses_per_second`].
pub const MAX_RESPONSES_PER_SECOND: u32 = 10_000;
/// Largest [`RateLimitConfig::slip`] (BIND's bound).
pub const MAX_SLIP: u32 = 10;
/// Largest [`RateLimitConfig::window_seconds`].
pub const MAX_WINDOW_SECONDS: u32 = 300;

/// The rate limit of answers to unidentified clients.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitConfig {
    /// Answers per second one bucket (client prefix and answer class) may get (1 to
    /// [`MAX_RESPONSES_PER_SECOND`]).
    #[serde(default = "default_responses_per_second")]
    pub responses_per_second: u32,
    /// Every `slip`-th answer over the rate goes out truncated (TC=1, no records) instead of
    /// being dropped, so a real client whose address an attacker forges retries over TCP:
    /// 0 never, 1 always, 2 (the default) every second one. At most [`MAX_SLIP`].
    #[serde(default = "default_slip")]
    pub slip: u32,
    /// How long, in seconds, a bucket remembers answers over the rate (1 to
    /// [`MAX_WINDOW_SECONDS`]): a bucket flooded until a moment answers again at most this
    /// long after it. 1 is a plain per-second limit.
    #[serde(default = "default_window_seconds")]
    pub window_seconds: u32,
    /// IPv4 clients are grouped by this prefix length (8 to 32).
    #[serde(default = "default_ipv4_prefix_length")]
    pub ipv4_prefix_length: u8,
    /// IPv6 clients are grouped by this prefix length (16 to 128).
    #[serde(default = "default_ipv6_prefix_length")]
    pub ipv6_prefix_length: u8,
}

fn default_responses_per_second() -> u32 {
    20
}
fn default_slip() -> u32 {
    2
}
fn default_window_seconds() -> u32 {
    15
}
fn default_ipv4_prefix_length() -> u8 {
    24
}
fn default_ipv6_prefix_length() -> u8 {
    56
}

impl Default for RateLimitConfig {
    /// BIND's defaults where it has them (slip 2, window 15, /24 and /56), 20 answers per
    /// second.
    fn default() -> Self {
        Self {
            responses_per_second: default_responses_per_second(),
            slip: default_slip(),
            window_seconds: default_window_seconds(),
            ipv4_prefix_length: default_ipv4_prefix_length(),
            ipv6_prefix_length: default_ipv6_prefix_length(),
        }
    }
}

impl RateLimitConfig {
    /// Checks every range; `at` is the JSON path of this entry.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let check = |field: &str, value: u32, min: u32, max: u32| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    format!("{at}.{field}"),
                    format!("{value} is outside {min} to {max}"),
                ))
            }
        };
        check(
            "responsesPerSecond",
            self.responses_per_second,
            1,
            MAX_RESPONSES_PER_SECOND,
        )?;
        check("slip", self.slip, 0, MAX_SLIP)?;
        check("windowSeconds", self.window_seconds, 1, MAX_WINDOW_SECONDS)?;
        check("ipv4PrefixLength", self.ipv4_prefix_length.into(), 8, 32)?;
        check("ipv6PrefixLength", self.ipv6_prefix_length.into(), 16, 128)
    }
}
