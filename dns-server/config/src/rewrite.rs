//! Name rewrites, applied in order before a query is answered; answers can be rewritten back
//! so the client sees the name it asked for.

use crate::{ConfigError, names};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One rewrite.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RewriteConfig {
    /// `namespace/name` of the object this came from (logs and metrics).
    pub source: String,
    /// How `from` matches the query name.
    #[serde(rename = "match")]
    pub match_kind: MatchKind,
    /// What to look for: a lower-case name (or name part, for prefix/suffix) without a
    /// trailing dot, or a regular expression over the name without its trailing dot.
    pub from: String,
    /// The replacement; for `regex`, `{1}`, `{2}`… insert capture groups.
    pub to: String,
    /// Rewrite names in the answer back to the name the client asked for: owner names equal
    /// to the rewritten name, and (for exact, prefix and suffix rules) CNAME, SRV, PTR and
    /// MX targets that match `to`, which get `from` back in its place.
    pub rewrite_answers: bool,
    /// TTL of every record in a rewritten answer, in seconds; the answer's own TTLs when
    /// left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
    /// Only queries from Pods of this namespace are rewritten (rules a tenant wrote for
    /// itself); every client when left out (rules from the DNS server's own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_namespace: Option<String>,
}

/// How a rewrite's `from` matches.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum MatchKind {
    /// The whole name.
    Exact,
    /// The start of the name.
    Prefix,
    /// The end of the name.
    Suffix,
    /// A regular expression over the whole name.
    Regex,
}

impl RewriteConfig {
    /// Checks the rule; `at` is the JSON path of this entry.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.from.is_empty() || self.to.is_empty() {
            return Err(ConfigError::invalid(
                at.into(),
                "from and to must not be empty".into(),
            ));
        }
        match self.match_kind {
            MatchKind::Exact => {
                for (field, value) in [("from", &self.from), ("to", &self.to)] {
                    names::normalize_domain(value)
                        .map_err(|r| ConfigError::invalid(format!("{at}.{field}"), r))?;
                }
            }
            MatchKind::Prefix | MatchKind::Suffix => {
                for (field, value) in [("from", &self.from), ("to", &self.to)] {
                    let trimmed = value.trim_matches('.');
                    names::normalize_owner(trimmed)
                        .map_err(|r| ConfigError::invalid(format!("{at}.{field}"), r))?;
                }
            }
            MatchKind::Regex => {
                let regex = compile_regex(&self.from)
                    .map_err(|reason| ConfigError::invalid(format!("{at}.from"), reason))?;
                let groups = regex.captures_len() - 1;
                for n in placeholders(&self.to) {
                    if n == 0 || n > groups {
                        return Err(ConfigError::invalid(
                            format!("{at}.to"),
                            format!(
                                "{{{n}}} refers to a capture group that `from` does not have (it has {groups})"
                            ),
                        ));
                    }
                }
            }
        }
        if let Some(ttl) = self.ttl_seconds
            && ttl > crate::MAX_TTL_SECONDS
        {
            return Err(ConfigError::invalid(
                format!("{at}.ttlSeconds"),
                format!("{ttl} is above the maximum of {}", crate::MAX_TTL_SECONDS),
            ));
        }
        if self.from == self.to {
            return Err(ConfigError::invalid(
                at.into(),
                "from equals to; the rewrite does nothing".into(),
            ));
        }
        Ok(())
    }
}

/// Largest compiled size of a rewrite's regular expression, in bytes (the `regex` crate's
/// `size_limit`). Bounds the memory and the compile time one rule can cost every DNS server
/// replica on a reload; the crate's default (10 MiB) would let one tenant rule take tens of
/// milliseconds and megabytes per replica. Ordinary name patterns compile to a few KiB.
pub const MAX_REGEX_BYTES: usize = 256 * 1024;

/// Longest `from` of a regex rewrite the server accepts, in characters (the RewriteRule CRD
/// admits at most 253, so this only bounds hand-written configs).
pub const MAX_REGEX_LEN: usize = 1024;

/// The form in which a regex rewrite's `from` is matched: anchored at both ends, so that it
/// matches the whole name. Every check of a regex (validation, the operator's tenancy checks)
/// and the DNS server use this form and nothing else, so a pattern that only compiles, or
/// only looks harmless, unanchored (e.g. `(?x)…#`, where the comment would swallow the
/// closing anchor) is judged as what is served.
pub fn anchored_regex(from: &str) -> String {
    format!("^(?:{from})$")
}

/// Compiles a regex rewrite's `from` exactly as the DNS server matches it
/// ([`anchored_regex`], at most [`MAX_REGEX_BYTES`] compiled), or says why it cannot be.
pub fn compile_regex(from: &str) -> Result<regex::Regex, String> {
    if from.chars().count() > MAX_REGEX_LEN {
        return Err(format!(
            "the regular expression is longer than {MAX_REGEX_LEN} characters"
        ));
    }
    regex::RegexBuilder::new(&anchored_regex(from))
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "the regular expression compiles to more than {limit} bytes; simplify it (e.g. fewer counted repetitions)"
            ),
            e => format!("not a regular expression: {e}"),
        })
}

/// The `{n}` placeholders in a regex rewrite's replacement.
pub fn placeholders(to: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut rest = to;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find('}')
            && let Ok(n) = rest[..close].parse::<usize>()
        {
            found.push(n);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(match_kind: MatchKind, from: &str, to: &str) -> RewriteConfig {
        RewriteConfig {
            source: "ns/r".into(),
            match_kind,
            from: from.into(),
            to: to.into(),
            rewrite_answers: true,
            ttl_seconds: None,
            client_namespace: None,
        }
    }

    #[test]
    fn checks_names_regexes_and_groups() {
        assert_eq!(
            rule(
                MatchKind::Exact,
                "db.example.com",
                "db.prod.svc.cluster.local"
            )
            .validate("rewrites[0]"),
            Ok(())
        );
        assert_eq!(
            rule(MatchKind::Regex, r"^(.+)\.old\.example$", "{1}.new.example")
                .validate("rewrites[0]"),
            Ok(())
        );
        assert!(rule(MatchKind::Regex, "(", "x").validate("r").is_err());
        // Valid on its own, but the served (anchored) form leaves its group open: the
        // comment swallows the closing `)$`.
        assert!(regex::Regex::new(r"(?x)^(.+)\.old\.example$#").is_ok());
        let err = rule(MatchKind::Regex, r"(?x)^(.+)\.old\.example$#", "{1}.new")
            .validate("r")
            .expect_err("anchored form does not compile");
        assert!(
            err.to_string().contains("not a regular expression"),
            "{err}"
        );
        // Over the compiled-size budget.
        let err = rule(MatchKind::Regex, r"(\w{1000}){50}", "x.example")
            .validate("r")
            .expect_err("too big");
        assert!(err.to_string().contains("compiles to more than"), "{err}");
        let long = "a".repeat(MAX_REGEX_LEN + 1);
        assert!(
            rule(MatchKind::Regex, &long, "x.example")
                .validate("r")
                .is_err()
        );
        let err = rule(MatchKind::Regex, r"^(.+)\.old$", "{2}.new")
            .validate("r")
            .expect_err("group 2");
        assert!(err.to_string().contains("capture group"), "{err}");
        assert!(
            rule(MatchKind::Exact, "a.example", "a.example")
                .validate("r")
                .is_err()
        );
        assert!(
            rule(MatchKind::Exact, "bad_name..x", "y.example")
                .validate("r")
                .is_err()
        );
    }
}
