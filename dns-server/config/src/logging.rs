//! Query logging: which answers the server writes one log line for.
//!
//! [`LoggingConfig::queries`] picks the answers ([`QueryLogMode`]); [`LoggingConfig::sample_one_in`]
//! keeps one in N of those. Without the setting (the default, `None`) no query is logged and
//! the query path does one branch for it. The server's `--query-log` flag overrides it for the
//! whole process (every query, unsampled).

use crate::ConfigError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest [`LoggingConfig::sample_one_in`].
pub const MAX_SAMPLE_ONE_IN: u32 = 1_000_000;

/// Which queries are logged, and how many of them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoggingConfig {
    /// Which answers get a line (default `None`).
    #[serde(default)]
    pub queries: QueryLogMode,
    /// Log one in this many of the selected answers (1 to [`MAX_SAMPLE_ONE_IN`]; absent: all).
    /// Counted per server process: with N, the 1st, (N+1)th, (2N+1)th… selected answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_one_in: Option<u32>,
}

/// The answers that get a query log line.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueryLogMode {
    /// None (the default).
    #[default]
    None,
    /// Answers a policy or a client class denied (REFUSED or NXDOMAIN by policy).
    Denied,
    /// SERVFAIL, REFUSED, FORMERR and NOTIMP answers, and the denied ones.
    Errors,
    /// Every answer.
    All,
}

impl LoggingConfig {
    /// Checks the bounds the schema does not state.
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if let Some(n) = self.sample_one_in
            && !(1..=MAX_SAMPLE_ONE_IN).contains(&n)
        {
            return Err(ConfigError::invalid(
                format!("{path}.sampleOneIn"),
                format!("{n} is outside 1 to {MAX_SAMPLE_ONE_IN}"),
            ));
        }
        Ok(())
    }
}
