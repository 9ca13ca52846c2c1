//! DNS name rules shared by the operator (to reject bad input early, with a reason) and the
//! server (to never load a config with a name it cannot serve).

/// Longest presentation-form name, without the trailing dot (RFC 1035 §2.3.4: 255 octets on
/// the wire).
pub const MAX_NAME_LEN: usize = 253;

/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Lower-cases `name`, drops one trailing dot and checks it is a host-style domain name:
/// labels of letters, digits and hyphens, 1 to 63 characters, not starting or ending with a
/// hyphen, at most 253 characters in all. Returns the reason in words when it is not.
pub fn normalize_domain(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    if trimmed.len() > MAX_NAME_LEN {
        return Err(format!(
            "{:?} is {} characters long, the maximum is {MAX_NAME_LEN}",
            name,
            trimmed.len()
        ));
    }
    for label in trimmed.split('.') {
        check_label(label).map_err(|why| format!("{name:?} is not a DNS name: {why}"))?;
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// Like [`normalize_domain`], for record owner names and targets: labels may also contain
/// `_` (as in `_sip._tcp`), and the first label may be the wildcard `*`.
pub fn normalize_owner(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let rest = trimmed
        .strip_prefix("*.")
        .unwrap_or(if trimmed == "*" { "" } else { trimmed });
    if rest.is_empty() {
        return Err(format!("{name:?} has no name below the wildcard"));
    }
    if trimmed.len() > MAX_NAME_LEN {
        return Err(format!("{name:?} is longer than {MAX_NAME_LEN} characters"));
    }
    for label in rest.split('.') {
        check_label(&label.replace('_', "a"))
            .map_err(|why| format!("{name:?} is not a DNS name: {why}"))?;
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// Checks one label of a host-style name (letters, digits, inner hyphens, 1 to 63
/// characters); also the form of a namespace name once lower-case.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("it has an empty label (two dots in a row?)".into());
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "label {label:?} is longer than {MAX_LABEL_LEN} characters"
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "label {label:?} contains {c:?}; only letters, digits and '-' are allowed"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label {label:?} starts or ends with '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(
            normalize_domain("Cluster.Local.").as_deref(),
            Ok("cluster.local")
        );
        assert_eq!(normalize_domain("a-1.b2").as_deref(), Ok("a-1.b2"));
    }

    #[test]
    fn owners_allow_underscores_and_a_leading_wildcard() {
        assert_eq!(
            normalize_owner("_SIP._tcp.Example.org").as_deref(),
            Ok("_sip._tcp.example.org")
        );
        assert_eq!(
            normalize_owner("*.apps.example.org").as_deref(),
            Ok("*.apps.example.org")
        );
        assert!(normalize_owner("a.*.example.org").is_err());
        assert!(normalize_owner("*").is_err());
    }

    #[test]
    fn rejects_with_reasons() {
        for (bad, why) in [
            ("", "empty"),
            (".", "empty"),
            ("a..b", "empty label"),
            ("under_score.local", "contains '_'"),
            ("-lead.local", "starts or ends"),
            ("tail-.local", "starts or ends"),
            (&"a".repeat(64), "longer than 63"),
            (&format!("{}.b", "a.".repeat(126)), "maximum is 253"),
        ] {
            let err = normalize_domain(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
