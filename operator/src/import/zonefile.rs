//! A small RFC 1035 zone-file reader for the `file` plugin: `$ORIGIN`, `$TTL`, comments
//! (`;`), parentheses spanning lines, owners left blank (the previous one), `@`, relative and
//! absolute names, optional TTL and class in either order. Records come back relative to the
//! zone with their targets made absolute; what a `DNSZone` cannot hold (the SOA, which
//! nameplane generates, other types, names outside the zone) comes back as skipped lines.

use super::duration::duration_seconds;

/// One record of a zone file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// 1-based line of the record.
    pub line: usize,
    /// Owner relative to the zone (`@` for the apex).
    pub name: String,
    /// TTL, when the record or `$TTL` gives one.
    pub ttl: Option<u32>,
    /// Type, upper case.
    pub record_type: String,
    /// Value in presentation form, names absolute.
    pub value: String,
}

/// A line that is not carried over, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// Reads `text` as the zone `zone` (lower case, no trailing dot).
pub fn parse(zone: &str, text: &str) -> (Vec<Record>, Vec<Skipped>) {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let mut origin = zone.to_string();
    let mut default_ttl: Option<u32> = None;
    let mut previous_owner = zone.to_string();
    for (line, entry) in logical_lines(text) {
        let starts_blank = entry.starts_with([' ', '\t']);
        let mut fields: Vec<String> = tokens(&entry);
        if fields.is_empty() {
            continue;
        }
        match fields[0].to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                match fields.get(1) {
                    Some(o) => origin = absolute(o, &origin),
                    None => skipped.push(Skipped {
                        line,
                        reason: "$ORIGIN without a name".into(),
                    }),
                }
                continue;
            }
            "$TTL" => {
                default_ttl = fields
                    .get(1)
                    .and_then(|t| duration_seconds(&t.to_ascii_lowercase()));
                continue;
            }
            d if d.starts_with('$') => {
                skipped.push(Skipped {
                    line,
                    reason: format!("{d} is not supported"),
                });
                continue;
            }
            _ => {}
        }
        let owner = if starts_blank {
            previous_owner.clone()
        } else {
            let owner = fields.remove(0);
            let owner = absolute(&owner, &origin);
            previous_owner = owner.clone();
            owner
        };
        let mut ttl = default_ttl;
        while let Some(first) = fields.first() {
            let upper = first.to_ascii_uppercase();
            if upper == "IN" || upper == "CH" || upper == "HS" {
                fields.remove(0);
            } else if first.starts_with(|c: char| c.is_ascii_digit()) {
                ttl = duration_seconds(&first.to_ascii_lowercase());
                fields.remove(0);
            } else {
                break;
            }
        }
        if fields.is_empty() {
            skipped.push(Skipped {
                line,
                reason: "no record type".into(),
            });
            continue;
        }
        let record_type = fields.remove(0).to_ascii_uppercase();
        let relative = match relative_to(&owner, zone) {
            Some(r) => r,
            None => {
                skipped.push(Skipped {
                    line,
                    reason: format!("{owner} is outside the zone {zone}"),
                });
                continue;
            }
        };
        let target = |name: &str| format!("{}.", absolute(name, &origin));
        let value = match (record_type.as_str(), fields.as_slice()) {
            ("SOA", _) => {
                skipped.push(Skipped {
                    line,
                    reason: "SOA: nameplane generates the zone's SOA (its own serial and timers)"
                        .into(),
                });
                continue;
            }
            ("A" | "AAAA", [address]) => address.clone(),
            ("CNAME" | "NS" | "PTR", [name]) => target(name),
            ("MX", [preference, name]) => format!("{preference} {}", target(name)),
            ("SRV", [priority, weight, port, name]) => {
                format!("{priority} {weight} {port} {}", target(name))
            }
            ("TXT", parts) if !parts.is_empty() => parts.join(""),
            ("CAA", [flags, tag, value]) => format!("{flags} {tag} \"{value}\""),
            _ => {
                skipped.push(Skipped {
                    line,
                    reason: format!("{record_type} record with {} value field(s): not a type or form a DNSZone holds", fields.len()),
                });
                continue;
            }
        };
        records.push(Record {
            line,
            name: relative,
            ttl,
            record_type,
            value,
        });
    }
    (records, skipped)
}

/// Lines joined across parentheses, comments removed, with the line each starts on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    let mut depth = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let mut line = String::new();
        let mut quoted = false;
        for c in raw.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    line.push(c);
                }
                ';' if !quoted => break,
                '(' if !quoted => {
                    depth += 1;
                    line.push(' ');
                }
                ')' if !quoted => {
                    depth = depth.saturating_sub(1);
                    line.push(' ');
                }
                _ => line.push(c),
            }
        }
        if current.is_empty() {
            start = i + 1;
            current = line;
        } else {
            current.push(' ');
            current.push_str(&line);
        }
        if depth == 0 {
            if !current.trim().is_empty() {
                out.push((start, std::mem::take(&mut current)));
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push((start, current));
    }
    out
}

/// Whitespace-separated fields; a quoted string is one field without its quotes.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut value = String::new();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                value.push(c);
            }
            out.push(value);
        } else {
            let mut value = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
            out.push(value);
        }
    }
    out
}

/// `name` made absolute against `origin` (lower case, no trailing dot).
fn absolute(name: &str, origin: &str) -> String {
    if name == "@" {
        origin.to_string()
    } else if let Some(abs) = name.strip_suffix('.') {
        abs.to_ascii_lowercase()
    } else {
        format!("{}.{origin}", name.to_ascii_lowercase())
    }
}

/// `name` relative to `zone` (`@` for the apex), or `None` outside it.
fn relative_to(name: &str, zone: &str) -> Option<String> {
    if name == zone {
        Some("@".into())
    } else {
        name.strip_suffix(zone)
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|rest| !rest.is_empty())
            .map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_file_with_soa_origin_ttl_and_blank_owners() {
        let text = "$ORIGIN example.org.\n$TTL 1h\n@ IN SOA ns.example.org. admin.example.org. (\n  2024010101 ; serial\n  7200 3600 1209600 3600 )\n  IN NS ns\nns IN A 192.0.2.1\nwww 300 IN A 192.0.2.2\n    IN AAAA 2001:db8::2\nmail IN MX 10 mx.example.net.\n_sip._tcp IN SRV 10 5 5060 sip\ntxt IN TXT \"v=spf1 -all\"\nother.example.com. IN A 192.0.2.9\nx IN HINFO a b\n";
        let (records, skipped) = parse("example.org", text);
        let got: Vec<_> = records
            .iter()
            .map(|r| format!("{} {} {:?} {}", r.line, r.name, r.ttl, r.value))
            .collect();
        assert_eq!(
            got,
            [
                "6 @ Some(3600) ns.example.org.",
                "7 ns Some(3600) 192.0.2.1",
                "8 www Some(300) 192.0.2.2",
                "9 www Some(3600) 2001:db8::2",
                "10 mail Some(3600) 10 mx.example.net.",
                "11 _sip._tcp Some(3600) 10 5 5060 sip.example.org.",
                "12 txt Some(3600) v=spf1 -all",
            ]
        );
        let lines: Vec<_> = skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [3, 13, 14]);
    }
}
