//! Authoritative zones: a zone apex and its records, in presentation form, with owner names
//! already made absolute by the renderer.

use crate::{ConfigError, names};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Largest record TTL a zone may ask for (one week).
pub const MAX_RECORD_TTL_SECONDS: u32 = 604_800;

/// One authoritative zone.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZoneConfig {
    /// The apex, lower case, no trailing dot, e.g. `example.internal`.
    pub name: String,
    /// `namespace/name` of the object this zone came from (logs and metrics).
    pub source: String,
    /// TTL of the generated SOA and NS records, and of negative answers.
    pub ttl_seconds: u32,
    /// Record sets; owner names are absolute (lower case, no trailing dot) and inside the zone.
    #[serde(default)]
    pub records: Vec<RecordConfig>,
    /// Clients allowed to transfer the zone (AXFR, and IXFR answered as AXFR), as IP addresses
    /// or CIDR prefixes (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`). Empty: every transfer is
    /// REFUSED.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_transfer: Vec<String>,
}

/// One record set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RecordConfig {
    /// Absolute owner name, e.g. `www.example.internal` or `*.apps.example.internal`.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub record_type: RecordKind,
    /// TTL in seconds.
    pub ttl_seconds: u32,
    /// Values in presentation form; names in values are absolute and end with a dot.
    pub values: Vec<String>,
}

/// Record types a zone can hold.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[allow(clippy::upper_case_acronyms)]
pub enum RecordKind {
    /// IPv4 address.
    A,
    /// IPv6 address.
    AAAA,
    /// Alias.
    CNAME,
    /// Mail exchanger: `preference exchange.`.
    MX,
    /// Name server.
    NS,
    /// Pointer.
    PTR,
    /// Service: `priority weight port target.`.
    SRV,
    /// Text.
    TXT,
    /// Certification authority authorization: `flags tag "value"`, e.g. `0 issue "letsencrypt.org"`.
    CAA,
}

impl ZoneConfig {
    /// Checks names, values and CNAME exclusivity; `at` is the JSON path of this zone.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let name = names::normalize_domain(&self.name)
            .map_err(|r| ConfigError::invalid(format!("{at}.name"), r))?;
        if name != self.name {
            return Err(ConfigError::invalid(
                format!("{at}.name"),
                format!(
                    "{:?} is not in normal form (lower case, no trailing dot)",
                    self.name
                ),
            ));
        }
        if self.ttl_seconds > MAX_RECORD_TTL_SECONDS {
            return Err(ConfigError::invalid(
                format!("{at}.ttlSeconds"),
                format!("{} is above {MAX_RECORD_TTL_SECONDS}", self.ttl_seconds),
            ));
        }
        for (i, prefix) in self.allow_transfer.iter().enumerate() {
            parse_prefix(prefix)
                .map_err(|r| ConfigError::invalid(format!("{at}.allowTransfer[{i}]"), r))?;
        }
        for (i, record) in self.records.iter().enumerate() {
            let at = format!("{at}.records[{i}]");
            record.validate(&self.name, &at)?;
            if record.record_type == RecordKind::CNAME
                && self.records.iter().any(|other| {
                    other.name == record.name && other.record_type != RecordKind::CNAME
                })
            {
                return Err(ConfigError::invalid(
                    at,
                    format!(
                        "{} has a CNAME and other records; a CNAME must stand alone",
                        record.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl RecordConfig {
    fn validate(&self, zone: &str, at: &str) -> Result<(), ConfigError> {
        names::normalize_owner(&self.name)
            .map_err(|r| ConfigError::invalid(format!("{at}.name"), r))?;
        if !(self.name == zone || self.name.ends_with(&format!(".{zone}"))) {
            return Err(ConfigError::invalid(
                format!("{at}.name"),
                format!("{} is not inside zone {zone}", self.name),
            ));
        }
        if self.ttl_seconds > MAX_RECORD_TTL_SECONDS {
            return Err(ConfigError::invalid(
                format!("{at}.ttlSeconds"),
                format!("{} is above {MAX_RECORD_TTL_SECONDS}", self.ttl_seconds),
            ));
        }
        if self.values.is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.values"),
                "a record set needs at least one value".into(),
            ));
        }
        if self.record_type == RecordKind::CNAME && self.values.len() != 1 {
            return Err(ConfigError::invalid(
                format!("{at}.values"),
                "a CNAME has exactly one value".into(),
            ));
        }
        for (i, value) in self.values.iter().enumerate() {
            check_value(self.record_type, value)
                .map_err(|r| ConfigError::invalid(format!("{at}.values[{i}]"), r))?;
        }
        Ok(())
    }
}

/// Checks one value of `kind` in presentation form.
pub fn check_value(kind: RecordKind, value: &str) -> Result<(), String> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let target = |name: &str| -> Result<(), String> {
        if name == "." {
            return Ok(());
        }
        let Some(bare) = name.strip_suffix('.') else {
            return Err(format!("{name:?} must be an absolute name ending with '.'"));
        };
        // `normalize_owner` accepts one trailing dot of its own: a second one here would be
        // an empty label that no DNS name has.
        if bare.ends_with('.') {
            return Err(format!("{name:?} has an empty label (two dots at the end)"));
        }
        names::normalize_owner(bare).map(|_| ())
    };
    let number = |text: &str, what: &str| {
        text.parse::<u16>()
            .map(|_| ())
            .map_err(|_| format!("{what} {text:?} is not a number from 0 to 65535"))
    };
    match kind {
        RecordKind::A => value
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| format!("{value:?} is not an IPv4 address")),
        RecordKind::AAAA => value
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("{value:?} is not an IPv6 address")),
        RecordKind::CNAME | RecordKind::NS | RecordKind::PTR => match fields.as_slice() {
            [name] => target(name),
            _ => Err(format!("{value:?} must be one name")),
        },
        RecordKind::MX => match fields.as_slice() {
            [preference, exchange] => {
                number(preference, "preference").and_then(|_| target(exchange))
            }
            _ => Err(format!(
                "{value:?} must be `preference exchange.`, e.g. `10 mail.example.org.`"
            )),
        },
        RecordKind::SRV => match fields.as_slice() {
            [priority, weight, port, name] => number(priority, "priority")
                .and_then(|_| number(weight, "weight"))
                .and_then(|_| number(port, "port"))
                .and_then(|_| target(name)),
            _ => Err(format!(
                "{value:?} must be `priority weight port target.`, e.g. `10 5 443 svc.example.org.`"
            )),
        },
        RecordKind::CAA => parse_caa(value).map(|_| ()),
        RecordKind::TXT => {
            if value.len() > 255 {
                Err(format!(
                    "TXT value is {} bytes; one string holds at most 255",
                    value.len()
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// A CAA value split into its parts (RFC 8659 §4.1.1 presentation form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaaValue {
    /// The flags octet (128 = issuer critical).
    pub flags: u8,
    /// The property tag, e.g. `issue`, `issuewild`, `iodef`.
    pub tag: String,
    /// The property value, without the surrounding quotes.
    pub value: String,
}

/// Parses `flags tag value` (the value may be quoted), e.g. `0 issue "letsencrypt.org"`.
pub fn parse_caa(text: &str) -> Result<CaaValue, String> {
    let shape =
        || format!("{text:?} must be `flags tag \"value\"`, e.g. `0 issue \"letsencrypt.org\"`");
    let mut parts = text.trim().splitn(3, char::is_whitespace);
    let (Some(flags), Some(tag), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(shape());
    };
    let flags = flags
        .parse::<u8>()
        .map_err(|_| format!("CAA flags {flags:?} is not a number from 0 to 255"))?;
    if tag.is_empty() || tag.len() > 15 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "CAA tag {tag:?} must be 1 to 15 letters or digits (issue, issuewild, iodef)"
        ));
    }
    let value = value.trim();
    let value = match value.strip_prefix('"') {
        Some(inner) => inner.strip_suffix('"').ok_or_else(|| {
            format!("CAA value {value:?} has an opening quote but no closing one")
        })?,
        None => value,
    };
    if value.contains('"') {
        return Err(format!("CAA value {value:?} contains a quote"));
    }
    Ok(CaaValue {
        flags,
        tag: tag.to_ascii_lowercase(),
        value: value.to_owned(),
    })
}

/// Parses an IP address or a CIDR prefix (`10.0.0.0/8`, `fd00::/8`); a bare address is a
/// prefix of its full length. Returns the network address and the prefix length.
pub fn parse_prefix(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address or a CIDR prefix like 10.0.0.0/8"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) => len
            .parse::<u8>()
            .ok()
            .filter(|len| *len <= max)
            .ok_or_else(|| format!("{text:?}: prefix length must be 0 to {max}"))?,
    };
    Ok((addr, len))
}

/// Whether `ip` is inside the prefix `(network, len)` from [`parse_prefix`]. An IPv4-mapped
/// IPv6 client address (`::ffff:10.0.0.1`, from a dual-stack socket) matches IPv4 prefixes.
pub fn prefix_contains((network, len): (IpAddr, u8), ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    match (network, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_per_type() {
        for (kind, good) in [
            (RecordKind::A, "192.0.2.1"),
            (RecordKind::AAAA, "2001:db8::1"),
            (RecordKind::CNAME, "www.example.org."),
            (RecordKind::MX, "10 mail.example.org."),
            (RecordKind::SRV, "10 5 443 _x.example.org."),
            (RecordKind::TXT, "anything at all"),
            (RecordKind::NS, "ns1.example.org."),
            (RecordKind::CAA, "0 issue \"letsencrypt.org\""),
            (RecordKind::CAA, "128 iodef mailto:security@example.org"),
        ] {
            assert_eq!(check_value(kind, good), Ok(()), "{kind:?} {good}");
        }
        for (kind, bad) in [
            (RecordKind::A, "2001:db8::1"),
            (RecordKind::AAAA, "192.0.2.1"),
            (RecordKind::CNAME, "relative.name"),
            (RecordKind::MX, "mail.example.org."),
            (RecordKind::SRV, "10 5 99999 x.example.org."),
            (RecordKind::CAA, "issue letsencrypt.org"),
            (RecordKind::CAA, "256 issue \"x\""),
            (RecordKind::CAA, "0 is-sue \"x\""),
            (RecordKind::CAA, "0 issue \"x"),
        ] {
            assert!(check_value(kind, bad).is_err(), "{kind:?} {bad}");
        }
    }

    /// Found by the `config` fuzz target: one trailing dot was stripped twice, so a target
    /// ending in two dots validated and the DNS server then failed to build the zone (the
    /// operator would have published a config the server refuses).
    #[test]
    fn target_names_ending_in_two_dots_are_refused() {
        for (kind, bad) in [
            (RecordKind::CNAME, "example.internal.."),
            (RecordKind::NS, "ns1.example.org.."),
            (RecordKind::PTR, "host.example.org.."),
            (RecordKind::MX, "10 mail.example.org.."),
            (RecordKind::SRV, "10 5 443 x.example.org.."),
            (RecordKind::CNAME, ".."),
        ] {
            let refused = check_value(kind, bad);
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|why| why.contains("empty label")),
                "{kind:?} {bad}: {refused:?}"
            );
        }
    }

    #[test]
    fn records_must_be_inside_the_zone_and_cnames_alone() {
        let record = |name: &str, kind, value: &str| RecordConfig {
            name: name.into(),
            record_type: kind,
            ttl_seconds: 60,
            values: vec![value.into()],
        };
        let zone = |records| ZoneConfig {
            name: "example.internal".into(),
            source: "ns/z".into(),
            ttl_seconds: 300,
            records,
            allow_transfer: vec![],
        };
        assert_eq!(
            zone(vec![record(
                "www.example.internal",
                RecordKind::A,
                "192.0.2.1"
            )])
            .validate("zones[0]"),
            Ok(())
        );
        let err = zone(vec![record("www.example.org", RecordKind::A, "192.0.2.1")])
            .validate("zones[0]")
            .expect_err("outside");
        assert!(err.to_string().contains("not inside zone"), "{err}");
        let err = zone(vec![
            record(
                "www.example.internal",
                RecordKind::CNAME,
                "a.example.internal.",
            ),
            record("www.example.internal", RecordKind::TXT, "x"),
        ])
        .validate("zones[0]")
        .expect_err("cname and more");
        assert!(err.to_string().contains("must stand alone"), "{err}");
    }

    #[test]
    fn transfer_prefixes_parse_and_match() {
        let p = |t: &str| parse_prefix(t).expect(t);
        let ip = |t: &str| t.parse::<IpAddr>().expect(t);
        assert!(prefix_contains(p("10.0.0.0/8"), ip("10.200.3.4")));
        assert!(!prefix_contains(p("10.0.0.0/8"), ip("11.0.0.1")));
        assert!(prefix_contains(p("127.0.0.1"), ip("127.0.0.1")));
        assert!(!prefix_contains(p("127.0.0.1"), ip("127.0.0.2")));
        assert!(prefix_contains(p("0.0.0.0/0"), ip("192.0.2.1")));
        assert!(prefix_contains(p("fd00::/8"), ip("fd12::1")));
        assert!(!prefix_contains(p("fd00::/8"), ip("fe80::1")));
        assert!(prefix_contains(p("10.0.0.0/8"), ip("::ffff:10.1.2.3")));
        assert!(!prefix_contains(p("10.0.0.0/8"), ip("fd00::1")));
        for bad in ["10.0.0.0/33", "fd00::/129", "example.org", "10.0.0.0/x", ""] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn caa_values_split_into_parts() {
        assert_eq!(
            parse_caa("128 issuewild \"ca.example.net; account=1\""),
            Ok(CaaValue {
                flags: 128,
                tag: "issuewild".into(),
                value: "ca.example.net; account=1".into()
            })
        );
    }
}
