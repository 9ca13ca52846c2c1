//! The namespaces that may hold `DNSServer`s (`--dns-server-namespaces`).
//!
//! A `DNSServer` makes the operator write a Deployment, ServiceAccount, Role and bindings in
//! its namespace and bind the DNS server's cluster-wide read access (Services,
//! EndpointSlices, Namespaces, and maybe Pods and Nodes) to it. So whoever may create a
//! `DNSServer` may hand that read access to a namespace; the allow-list keeps it to the
//! namespaces the cluster admin chose. A `DNSServer` elsewhere is `Stalled` with reason
//! [`NOT_ALLOWED_REASON`] and gets nothing. The shipped RBAC (namespaced writes only through a
//! Role per listed namespace) and ValidatingAdmissionPolicy enforce the same list on the API
//! server's side; this check only turns a refusal into a readable status.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Status reason of a `DNSServer` outside the allow-list.
pub const NOT_ALLOWED_REASON: &str = "NamespaceNotAllowed";

/// Which namespaces may hold `DNSServer`s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NamespaceAllowList {
    /// Every namespace (`*`): for an operator with cluster-wide write access, e.g. a
    /// cluster-admin kubeconfig in `make run` and the e2e tests.
    #[default]
    All,
    /// Only these namespaces.
    Only(BTreeSet<String>),
}

impl NamespaceAllowList {
    /// Whether a `DNSServer` in `namespace` is served.
    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.contains(namespace),
        }
    }
}

impl FromStr for NamespaceAllowList {
    type Err = String;

    /// `*`, or namespace names separated by commas (spaces around them are ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "*" {
            return Ok(Self::All);
        }
        let mut names = BTreeSet::new();
        for name in s.split(',').map(str::trim) {
            let label = !name.is_empty()
                && name.len() <= 63
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.starts_with('-')
                && !name.ends_with('-');
            if !label {
                return Err(format!(
                    "{name:?} is not a namespace name; give `*` or names separated by commas"
                ));
            }
            names.insert(name.to_owned());
        }
        Ok(Self::Only(names))
    }
}

impl fmt::Display for NamespaceAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Only(names) => f.write_str(&names.iter().cloned().collect::<Vec<_>>().join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_allows_every_namespace_and_a_list_only_its_names() {
        let all: NamespaceAllowList = "*".parse().expect("star");
        assert!(all.allows("anything"));
        let some: NamespaceAllowList = "nameplane-system, dns".parse().expect("list");
        assert!(some.allows("dns") && some.allows("nameplane-system"));
        assert!(!some.allows("team-a"));
        assert!(!some.allows(""), "cluster-scoped is not a namespace");
        assert_eq!(some.to_string(), "dns,nameplane-system");
    }

    #[test]
    fn names_that_cannot_be_namespaces_are_refused() {
        for bad in ["", "a,,b", "Team", "a/b", "-a", "a*", "*,dns"] {
            assert!(
                bad.parse::<NamespaceAllowList>().is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
