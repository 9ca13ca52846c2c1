//! The query types the issue lists: their dnsperf query files, the probes that decide whether
//! a server supports a type (correct answers, not just any answer), and the Knot zones that
//! hold the same names.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use hickory_proto::rr::RecordType;

use crate::objects::{HEADLESS_NAMESPACE, Layout, dashed, headless_pod_ip, pod_ip};
use crate::probe;
use crate::servers::{Zone, zone_head};
use crate::settings::ObjectSet;

/// External names the upstream serves (all fit the 9984-entry caches).
pub const EXTERNAL_NAMES: usize = 1000;

/// Apex of the upstream's zone (external names).
pub const EXTERNAL_ZONE: &str = "bench.example.";

/// Address of external name `e<i>` (198.18.0.0/15: benchmarking range, never routed here).
pub fn external_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i as u32)
}

/// The measured query types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `s<i>.<ns>.svc.cluster.local A` → the ClusterIP.
    ClusterIpA,
    /// `h100.bench-headless.svc.cluster.local A` → 100 endpoint addresses.
    HeadlessA,
    /// `missing-<i>.<ns>.svc.cluster.local A` → NXDOMAIN.
    Nxdomain,
    /// `_http._tcp.s<i>.<ns>.svc.cluster.local SRV` → port 80 on the Service name.
    Srv,
    /// The reverse name of a ClusterIP → the Service name.
    Ptr,
    /// `e<i>.bench.example A` through forward + cache (cache hits after warm-up).
    External,
}

impl Kind {
    /// Every type, in report order.
    pub const ALL: [Kind; 6] = [
        Kind::ClusterIpA,
        Kind::HeadlessA,
        Kind::Nxdomain,
        Kind::Srv,
        Kind::Ptr,
        Kind::External,
    ];

    /// Short key (file names, JSON).
    pub fn key(self) -> &'static str {
        match self {
            Kind::ClusterIpA => "clusterip_a",
            Kind::HeadlessA => "headless_a",
            Kind::Nxdomain => "nxdomain",
            Kind::Srv => "srv",
            Kind::Ptr => "ptr",
            Kind::External => "external_a",
        }
    }

    /// For people.
    pub fn label(self, set: &ObjectSet) -> String {
        match self {
            Kind::ClusterIpA => "ClusterIP A".into(),
            Kind::HeadlessA => format!("headless A ({} endpoints)", set.measured_headless()),
            Kind::Nxdomain => "NXDOMAIN in cluster zone".into(),
            Kind::Srv => "SRV (ClusterIP, named port)".into(),
            Kind::Ptr => "PTR (ClusterIP)".into(),
            Kind::External => "external A (forward + cache hit)".into(),
        }
    }

    /// The rcode every answer of this type must carry.
    pub fn rcode(self) -> &'static str {
        if self == Kind::Nxdomain {
            "NXDOMAIN"
        } else {
            "NOERROR"
        }
    }
}

/// One probe: a question and the answer that counts as correct.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The name asked.
    pub name: String,
    /// The type asked.
    pub rtype: RecordType,
    /// Expected rcode.
    pub rcode: &'static str,
    /// Expected answer data of type `rtype`, as a set (empty for NXDOMAIN).
    pub data: Vec<String>,
}

impl Probe {
    /// `None` when `reply` is correct, else why not (starting with what was seen).
    pub fn check(&self, reply: Option<&probe::Reply>) -> Option<String> {
        let Some(reply) = reply else {
            return Some("no answer (timeout)".into());
        };
        if reply.rcode != self.rcode {
            return Some(format!("{} (expected {})", reply.rcode, self.rcode));
        }
        if reply.truncated {
            return Some(format!("{} but truncated (TC)", reply.rcode));
        }
        let mut got = reply.data(self.rtype);
        got.sort();
        got.dedup();
        let mut want = self.data.clone();
        want.sort();
        if got != want {
            let shown: Vec<&String> = got.iter().take(3).collect();
            return Some(format!(
                "{} with {} {:?} records (expected {}){}",
                reply.rcode,
                got.len(),
                self.rtype,
                want.len(),
                if shown.is_empty() {
                    String::new()
                } else {
                    format!(", e.g. {shown:?}")
                }
            ));
        }
        None
    }
}

/// Reverse name of an IPv4 address.
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
}

/// Deterministic shuffle (so every run sends the same order, and cache sets are realistic).
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

/// Query files and probes of one object set.
#[derive(Clone, Debug)]
pub struct Queries {
    /// Per kind: query file path.
    pub files: Vec<(Kind, PathBuf)>,
    /// Per kind: probes.
    pub probes: Vec<(Kind, Vec<Probe>)>,
    /// Pod record probes (`pods verified`), reported as a feature, not measured for QPS.
    pub pod_probes: Vec<Probe>,
}

impl Queries {
    /// The query file of `kind`.
    pub fn file(&self, kind: Kind) -> &Path {
        &self
            .files
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("every kind")
            .1
    }

    /// The probes of `kind`.
    pub fn probes(&self, kind: Kind) -> &[Probe] {
        &self
            .probes
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("every kind")
            .1
    }
}

/// Writes the query files of `set` under `dir` and builds its probes.
pub fn build(set: &ObjectSet, cluster_ips: &[Ipv4Addr], dir: &Path) -> Result<Queries> {
    std::fs::create_dir_all(dir)?;
    let layout = Layout::for_set(set);
    let services = set.cluster_ip_services().min(cluster_ips.len());
    let h_index = set.headless.len() / 2;
    let h_n = set.measured_headless();
    let headless_name = format!("h{h_n}.{HEADLESS_NAMESPACE}.svc.cluster.local.");
    let sample: Vec<usize> = (0..10).map(|k| k * services / 10).collect();

    let mut order: Vec<usize> = (0..services).collect();
    shuffle(&mut order, 0x5eed);
    let mut lines: Vec<(Kind, Vec<String>)> = Vec::new();
    lines.push((
        Kind::ClusterIpA,
        order
            .iter()
            .map(|&i| format!("{} A", layout.service_fqdn(i)))
            .collect(),
    ));
    lines.push((Kind::HeadlessA, vec![format!("{headless_name} A")]));
    lines.push((
        Kind::Nxdomain,
        order
            .iter()
            .map(|&i| {
                format!(
                    "missing-{i}.{}.svc.cluster.local. A",
                    layout.namespace_of(i)
                )
            })
            .collect(),
    ));
    lines.push((
        Kind::Srv,
        order
            .iter()
            .map(|&i| format!("_http._tcp.{} SRV", layout.service_fqdn(i)))
            .collect(),
    ));
    lines.push((
        Kind::Ptr,
        order
            .iter()
            .map(|&i| format!("{} PTR", reverse_name(cluster_ips[i])))
            .collect(),
    ));
    let mut ext: Vec<usize> = (0..EXTERNAL_NAMES).collect();
    shuffle(&mut ext, 0xe7);
    lines.push((
        Kind::External,
        ext.iter()
            .map(|i| format!("e{i}.{EXTERNAL_ZONE} A"))
            .collect(),
    ));
    let mut files = Vec::new();
    for (kind, l) in lines {
        let path = dir.join(format!("{}.txt", kind.key()));
        std::fs::write(&path, l.join("\n") + "\n")?;
        files.push((kind, path));
    }

    let probes = vec![
        (
            Kind::ClusterIpA,
            sample
                .iter()
                .map(|&i| Probe {
                    name: layout.service_fqdn(i),
                    rtype: RecordType::A,
                    rcode: "NOERROR",
                    data: vec![cluster_ips[i].to_string()],
                })
                .collect(),
        ),
        (
            Kind::HeadlessA,
            vec![Probe {
                name: headless_name,
                rtype: RecordType::A,
                rcode: "NOERROR",
                data: (0..h_n)
                    .map(|k| headless_pod_ip(h_index, k).to_string())
                    .collect(),
            }],
        ),
        (
            Kind::Nxdomain,
            sample
                .iter()
                .map(|&i| Probe {
                    name: format!("missing-{i}.{}.svc.cluster.local.", layout.namespace_of(i)),
                    rtype: RecordType::A,
                    rcode: "NXDOMAIN",
                    data: vec![],
                })
                .collect(),
        ),
        (
            Kind::Srv,
            sample
                .iter()
                .map(|&i| Probe {
                    name: format!("_http._tcp.{}", layout.service_fqdn(i)),
                    rtype: RecordType::SRV,
                    rcode: "NOERROR",
                    // CoreDNS: priority 0, weight 100 for a single target.
                    data: vec![format!("0 100 80 {}", layout.service_fqdn(i))],
                })
                .collect(),
        ),
        (
            Kind::Ptr,
            sample
                .iter()
                .map(|&i| Probe {
                    name: reverse_name(cluster_ips[i]),
                    rtype: RecordType::PTR,
                    rcode: "NOERROR",
                    data: vec![layout.service_fqdn(i)],
                })
                .collect(),
        ),
        (
            Kind::External,
            (0..10)
                .map(|k| k * EXTERNAL_NAMES / 10)
                .map(|i| Probe {
                    name: format!("e{i}.{EXTERNAL_ZONE}"),
                    rtype: RecordType::A,
                    rcode: "NOERROR",
                    data: vec![external_ip(i).to_string()],
                })
                .collect(),
        ),
    ];
    let pod_probes = (0..3)
        .map(|k| k * set.cluster_ip_pods() / 3)
        .map(|j| {
            let ns = layout.namespace_of(layout.service_of_pod(j));
            Probe {
                name: format!("{}.{ns}.pod.cluster.local.", dashed(pod_ip(j))),
                rtype: RecordType::A,
                rcode: "NOERROR",
                data: vec![pod_ip(j).to_string()],
            }
        })
        .collect();
    Ok(Queries {
        files,
        probes,
        pod_probes,
    })
}

/// Asks every probe of `probes` at `port`: `Ok(())` when all are right, else the first
/// problem (`"<rcode or what was wrong> for <name>"`).
pub async fn check(port: u16, probes: &[Probe]) -> Result<(), String> {
    check_from(Ipv4Addr::LOCALHOST, port, probes).await
}

/// Like [`check`], asking from `source` (a loopback address).
pub async fn check_from(source: Ipv4Addr, port: u16, probes: &[Probe]) -> Result<(), String> {
    for p in probes {
        let reply = probe::query_from(source, port, &p.name, p.rtype, Duration::from_secs(2)).await;
        if let Some(problem) = p.check(reply.as_ref()) {
            return Err(format!("{problem} for {}", p.name));
        }
    }
    Ok(())
}

/// Zones holding the same names for Knot: the cluster zone, the ClusterIPs' reverse zone and
/// the external zone.
pub fn knot_zones(set: &ObjectSet, cluster_ips: &[Ipv4Addr]) -> Vec<Zone> {
    use std::fmt::Write as _;
    let layout = Layout::for_set(set);
    let mut cluster = zone_head("cluster.local.");
    let mut reverse = zone_head("96.10.in-addr.arpa.");
    for (i, ip) in cluster_ips
        .iter()
        .enumerate()
        .take(set.cluster_ip_services())
    {
        let fqdn = layout.service_fqdn(i);
        let _ = writeln!(cluster, "{fqdn} 5 A {ip}");
        let _ = writeln!(cluster, "_http._tcp.{fqdn} 5 SRV 0 100 80 {fqdn}");
        let _ = writeln!(reverse, "{} 5 PTR {fqdn}", reverse_name(*ip));
    }
    for (h, &n) in set.headless.iter().enumerate() {
        for k in 0..n {
            let _ = writeln!(
                cluster,
                "h{n}.{HEADLESS_NAMESPACE}.svc.cluster.local. 5 A {}",
                headless_pod_ip(h, k)
            );
        }
    }
    vec![
        Zone {
            apex: "cluster.local.".into(),
            text: cluster,
        },
        Zone {
            apex: "96.10.in-addr.arpa.".into(),
            text: reverse,
        },
        external_zone(),
    ]
}

/// The upstream's zone: `e<i>.bench.example A`.
pub fn external_zone() -> Zone {
    use std::fmt::Write as _;
    let mut text = zone_head(EXTERNAL_ZONE);
    for i in 0..EXTERNAL_NAMES {
        let _ = writeln!(text, "e{i} 300 A {}", external_ip(i));
    }
    Zone {
        apex: EXTERNAL_ZONE.into(),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(rcode: &str, data: &[&str]) -> probe::Reply {
        probe::Reply {
            rcode: rcode.into(),
            truncated: false,
            answers: data
                .iter()
                .map(|d| (RecordType::A, 5, d.to_string()))
                .collect(),
        }
    }

    #[test]
    fn probes_need_the_right_rcode_and_data() {
        let p = Probe {
            name: "s1.bench-01.svc.cluster.local.".into(),
            rtype: RecordType::A,
            rcode: "NOERROR",
            data: vec!["10.96.0.10".into()],
        };
        assert_eq!(p.check(Some(&reply("NOERROR", &["10.96.0.10"]))), None);
        assert_eq!(
            p.check(Some(&reply("REFUSED", &[]))).as_deref(),
            Some("REFUSED (expected NOERROR)")
        );
        assert!(
            p.check(Some(&reply("NOERROR", &[])))
                .is_some_and(|w| w.contains("0 A records"))
        );
        assert!(p.check(None).is_some());
        let mut r = reply("NOERROR", &["10.96.0.10"]);
        r.truncated = true;
        assert!(p.check(Some(&r)).is_some_and(|w| w.contains("TC")));
    }

    #[test]
    fn files_and_zones_hold_the_same_names() {
        let set = ObjectSet::smoke();
        let ips: Vec<Ipv4Addr> = (0..set.cluster_ip_services())
            .map(|i| Ipv4Addr::new(10, 96, 1, i as u8))
            .collect();
        let dir = std::env::temp_dir().join(format!("nameplane-bench-q-{}", std::process::id()));
        let q = build(&set, &ips, &dir).expect("builds");
        let a = std::fs::read_to_string(q.file(Kind::ClusterIpA)).expect("file");
        assert_eq!(a.lines().count(), set.cluster_ip_services());
        assert!(a.lines().all(|l| l.ends_with(".svc.cluster.local. A")));
        let ptr = std::fs::read_to_string(q.file(Kind::Ptr)).expect("file");
        assert!(ptr.contains("0.1.96.10.in-addr.arpa. PTR"));
        assert_eq!(
            q.probes(Kind::HeadlessA)[0].data.len(),
            set.measured_headless()
        );
        let zones = knot_zones(&set, &ips);
        assert!(
            zones[0]
                .text
                .contains("s0.bench-00.svc.cluster.local. 5 A 10.96.1.0")
        );
        assert!(zones[0].text.contains("_http._tcp.s0.bench-00.svc.cluster.local. 5 SRV 0 100 80 s0.bench-00.svc.cluster.local."));
        assert!(
            zones[1]
                .text
                .contains("0.1.96.10.in-addr.arpa. 5 PTR s0.bench-00.svc.cluster.local.")
        );
        assert!(zones[2].text.contains("e999 300 A"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name(Ipv4Addr::new(10, 96, 3, 7)),
            "7.3.96.10.in-addr.arpa."
        );
        assert_eq!(external_ip(0), Ipv4Addr::new(198, 18, 0, 1));
    }
}
