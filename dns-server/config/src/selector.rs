//! Label selectors in the config: the Kubernetes `LabelSelector` shape (`matchLabels` and
//! `matchExpressions`), validated here and rendered to the query-string form the API server
//! takes on a list or watch (`?labelSelector=...`), so the server filters objects before they
//! ever reach the DNS server.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest label name, and longest label value (Kubernetes validation).
pub const MAX_LABEL_NAME_LEN: usize = 63;

/// Longest label key prefix (a DNS subdomain).
pub const MAX_LABEL_PREFIX_LEN: usize = 253;

/// Selects objects by their labels; every requirement must hold (an empty selector selects
/// everything).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements on labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One requirement of a [`LabelSelector`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// How the label's value is compared with `values`.
    pub operator: LabelOperator,
    /// Values for `In` and `NotIn` (at least one); must be empty for `Exists` and
    /// `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operator of a [`LabelRequirement`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOperator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present, whatever its value.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// Whether the selector has no requirement (selects everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Checks every key and value; returns the reason in words when one is invalid.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in &self.match_labels {
            check_key(key)?;
            check_value(value).map_err(|why| format!("matchLabels[{key:?}]: {why}"))?;
        }
        for (i, requirement) in self.match_expressions.iter().enumerate() {
            let at = |why: String| format!("matchExpressions[{i}]: {why}");
            check_key(&requirement.key).map_err(at)?;
            match requirement.operator {
                LabelOperator::In | LabelOperator::NotIn => {
                    if requirement.values.is_empty() {
                        return Err(at(format!(
                            "operator {:?} needs at least one value",
                            requirement.operator
                        )));
                    }
                    for value in &requirement.values {
                        check_value(value).map_err(at)?;
                    }
                }
                LabelOperator::Exists | LabelOperator::DoesNotExist => {
                    if !requirement.values.is_empty() {
                        return Err(at(format!(
                            "operator {:?} takes no values",
                            requirement.operator
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether an object with `labels` is selected (the API server's semantics).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    LabelOperator::In => value.is_some_and(|v| r.values.contains(v)),
                    LabelOperator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    LabelOperator::Exists => value.is_some(),
                    LabelOperator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// The selector in the API server's query syntax, e.g. `app=web,tier in (a,b),!legacy`.
    /// Only meaningful for a selector that passed [`LabelSelector::validate`] (whose keys and
    /// values cannot contain the syntax's separators).
    pub fn to_query(&self) -> String {
        let mut out = String::new();
        let sep = |out: &mut String| {
            if !out.is_empty() {
                out.push(',');
            }
        };
        for (key, value) in &self.match_labels {
            sep(&mut out);
            let _ = write!(out, "{key}={value}");
        }
        for requirement in &self.match_expressions {
            sep(&mut out);
            let key = &requirement.key;
            let values = requirement.values.join(",");
            let _ = match requirement.operator {
                LabelOperator::In => write!(out, "{key} in ({values})"),
                LabelOperator::NotIn => write!(out, "{key} notin ({values})"),
                LabelOperator::Exists => write!(out, "{key}"),
                LabelOperator::DoesNotExist => write!(out, "!{key}"),
            };
        }
        out
    }
}

/// A label name or value character in the middle of the string.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Label name: 1 to 63 characters, alphanumeric at both ends, `-_.` allowed inside.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_LABEL_NAME_LEN {
        return Err(format!(
            "label name {name:?} must be 1 to {MAX_LABEL_NAME_LEN} characters"
        ));
    }
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ends_ok || !name.chars().all(name_char) {
        return Err(format!(
            "label name {name:?} must be alphanumeric at both ends, with only '-', '_' or '.' inside"
        ));
    }
    Ok(())
}

/// Label key: `[prefix/]name`, the prefix a lower-case DNS subdomain.
fn check_key(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            let prefix_ok = !prefix.is_empty()
                && prefix.len() <= MAX_LABEL_PREFIX_LEN
                && prefix.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= MAX_LABEL_NAME_LEN
                        && label
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if !prefix_ok {
                return Err(format!(
                    "label key {key:?}: the prefix must be a lower-case DNS subdomain"
                ));
            }
            name
        }
        None => key,
    };
    check_name(name).map_err(|why| format!("label key {key:?}: {why}"))
}

/// Label value: empty, or a valid label name.
fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name(value).map_err(|_| {
        format!(
            "label value {value:?} must be empty or 1 to {MAX_LABEL_NAME_LEN} characters, \
             alphanumeric at both ends, with only '-', '_' or '.' inside"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirement(key: &str, operator: LabelOperator, values: &[&str]) -> LabelRequirement {
        LabelRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn renders_the_api_server_syntax() {
        let selector = LabelSelector {
            match_labels: BTreeMap::from([
                ("app".into(), "web".into()),
                ("example.com/tier".into(), "".into()),
            ]),
            match_expressions: vec![
                requirement("env", LabelOperator::In, &["prod", "staging"]),
                requirement("zone", LabelOperator::NotIn, &["a"]),
                requirement("dns", LabelOperator::Exists, &[]),
                requirement("legacy", LabelOperator::DoesNotExist, &[]),
            ],
        };
        selector.validate().expect("valid");
        assert_eq!(
            selector.to_query(),
            "app=web,example.com/tier=,env in (prod,staging),zone notin (a),dns,!legacy"
        );
        assert!(LabelSelector::default().is_empty());
        assert_eq!(LabelSelector::default().to_query(), "");
    }

    #[test]
    fn rejects_bad_keys_values_and_operators() {
        for (selector, why) in [
            (
                LabelSelector {
                    match_labels: BTreeMap::from([("a b".into(), "x".into())]),
                    ..LabelSelector::default()
                },
                "label key",
            ),
            (
                LabelSelector {
                    match_labels: BTreeMap::from([("a".into(), "x,y".into())]),
                    ..LabelSelector::default()
                },
                "label value",
            ),
            (
                LabelSelector {
                    match_labels: BTreeMap::from([("Bad_Prefix/a".into(), "x".into())]),
                    ..LabelSelector::default()
                },
                "prefix",
            ),
            (
                LabelSelector {
                    match_expressions: vec![requirement("a", LabelOperator::In, &[])],
                    ..LabelSelector::default()
                },
                "at least one value",
            ),
            (
                LabelSelector {
                    match_expressions: vec![requirement("a", LabelOperator::Exists, &["x"])],
                    ..LabelSelector::default()
                },
                "takes no values",
            ),
            (
                LabelSelector {
                    match_expressions: vec![requirement(
                        &"k".repeat(64),
                        LabelOperator::Exists,
                        &[],
                    )],
                    ..LabelSelector::default()
                },
                "1 to 63",
            ),
        ] {
            let err = selector.validate().expect_err(why);
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn parses_the_kubernetes_shape() {
        let selector: LabelSelector = serde_json::from_str(
            r#"{"matchLabels":{"team":"a"},"matchExpressions":[{"key":"env","operator":"NotIn","values":["dev"]}]}"#,
        )
        .expect("parses");
        assert_eq!(selector.to_query(), "team=a,env notin (dev)");
        assert!(
            serde_json::from_str::<LabelSelector>(r#"{"matchLabel":{}}"#).is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn matches_like_the_api_server() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "front")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let req = |key: &str, operator, values: &[&str]| LabelRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        };
        let selector = |expressions: Vec<LabelRequirement>| LabelSelector {
            match_labels: [("app".to_owned(), "web".to_owned())].into(),
            match_expressions: expressions,
        };
        assert!(LabelSelector::default().matches(&labels));
        assert!(selector(vec![]).matches(&labels));
        assert!(
            selector(vec![req("tier", LabelOperator::In, &["front", "back"])]).matches(&labels)
        );
        assert!(!selector(vec![req("tier", LabelOperator::NotIn, &["front"])]).matches(&labels));
        assert!(selector(vec![req("legacy", LabelOperator::NotIn, &["x"])]).matches(&labels));
        assert!(selector(vec![req("tier", LabelOperator::Exists, &[])]).matches(&labels));
        assert!(!selector(vec![req("tier", LabelOperator::DoesNotExist, &[])]).matches(&labels));
        assert!(
            !LabelSelector {
                match_labels: [("app".to_owned(), "db".to_owned())].into(),
                ..LabelSelector::default()
            }
            .matches(&labels)
        );
    }
}
