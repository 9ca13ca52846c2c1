//! The upstreams of `forward . /etc/resolv.conf`: the `nameserver` lines of a resolv.conf
//! file, for the forwarders whose config says `serversFromResolvConf`.
//!
//! The file is read when a config is loaded ([`crate::reload::load`]): at start, at each
//! change of the config's ConfigMap, and each time the ConfigMap watch lists it again. A
//! DNS Pod runs with `dnsPolicy: Default`, so its `/etc/resolv.conf` is the node's resolver
//! list as the kubelet hands it out, fixed for the Pod's life; a process outside a Pod
//! (`make run`) reads the host's. A file that cannot be read, or lists no usable address,
//! adds no server (logged at warn); a forwarder left with no server at all answers SERVFAIL.
//!
//! Parsing follows glibc's `resolv.conf(5)`: `nameserver <address>` lines, `#` and `;`
//! comments; an IPv6 address with a zone (`fe80::1%eth0`) is skipped (a zone cannot be
//! expressed as an upstream here). Port 53 always.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The default path, as CoreDNS's `forward . /etc/resolv.conf`.
pub const DEFAULT_PATH: &str = "/etc/resolv.conf";

/// The nameservers listed in `text`, in order, each once, port 53.
pub fn parse(text: &str) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        let server = SocketAddr::new(ip, 53);
        if !servers.contains(&server) {
            servers.push(server);
        }
    }
    servers
}

/// The nameservers of the file at `path`, or why there are none.
pub fn read(path: &Path) -> Result<Vec<SocketAddr>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let servers = parse(&text);
    if servers.is_empty() {
        return Err(format!("{}: no nameserver line", path.display()));
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_lines_in_order_without_repeats() {
        let text = "# written by the kubelet\nsearch default.svc.cluster.local svc.cluster.local\n\
                    nameserver 127.0.0.53\nnameserver  ::1 # local\n;nameserver 192.0.2.1\n\
                    nameserver fe80::1%eth0\nnameserver 127.0.0.53\nnameserver not-an-ip\n\
                    options edns0 trust-ad\nnameserverx 192.0.2.2\n";
        assert_eq!(
            parse(text),
            [
                "127.0.0.53:53".parse::<SocketAddr>().expect("addr"),
                "[::1]:53".parse().expect("addr"),
            ]
        );
    }

    #[test]
    fn a_missing_or_empty_file_is_an_error() {
        let missing = read(Path::new("/nonexistent/resolv.conf")).expect_err("missing");
        assert!(
            missing.starts_with("/nonexistent/resolv.conf:"),
            "{missing}"
        );
        let dir = std::env::temp_dir().join(format!("np-resolv-{}", std::process::id()));
        std::fs::write(&dir, "search example\n").expect("write");
        let empty = read(&dir).expect_err("no nameserver");
        assert!(empty.ends_with("no nameserver line"), "{empty}");
        std::fs::write(&dir, "nameserver 127.0.0.9\n").expect("write");
        assert_eq!(read(&dir), Ok(vec!["127.0.0.9:53".parse().expect("addr")]));
        let _ = std::fs::remove_file(&dir);
    }
}
