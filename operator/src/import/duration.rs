//! Go durations as CoreDNS's Corefile and zone-file options write them (`30s`, `5m`,
//! `1h30m`, `500ms`), read as whole seconds by the importer's mapper and zone-file reader.

/// A Go duration (`30s`, `5m`, `1h30m`, `500ms`) in whole seconds.
pub(crate) fn duration_seconds(text: &str) -> Option<u32> {
    if let Ok(n) = text.parse::<u32>() {
        return Some(n);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        let unit_ms = match c {
            'h' => 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            's' => 1000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
        any = true;
    }
    if !number.is_empty() || !any {
        return None;
    }
    u32::try_from(total / 1000).ok()
}
