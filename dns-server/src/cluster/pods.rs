//! The Pods table of the snapshot: Pod IPs and the live Pods that have them, for `pods:
//! verified` and for telling which Pod a query comes from ([`Pods::client`]), with the
//! count of addresses several Pods claim ([`SharedIps`]).

use std::net::IpAddr;
use std::sync::Arc;

use super::maps::ShardedMultiMap;
use super::objects::PodClient;

/// How many Pod IPs more than one live Pod claims (host-network Pods aside: their shared
/// IP is the node's), by how [`Pods::client`] decides them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedIps {
    /// Exactly one of the claimants is Running, and it is the client.
    pub running_wins: usize,
    /// None or several are Running: the address identifies nobody.
    pub ambiguous: usize,
}

/// Who an IP's claimants make the client, as [`Pods::client`] decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    /// Nobody claims it, or it is a node's address (a host-network Pod claims it).
    Unclaimed,
    /// One live Pod claims it.
    One,
    /// Several do, and exactly one is Running.
    RunningWins,
    /// Several do, and none or several are Running.
    Ambiguous,
}

impl Claim {
    fn of(pods: &[Arc<PodClient>]) -> Self {
        if pods.is_empty() || pods.iter().any(|pod| pod.host_network) {
            return Self::Unclaimed;
        }
        if pods.len() == 1 {
            return Self::One;
        }
        match pods.iter().filter(|pod| pod.running).count() {
            1 => Self::RunningWins,
            _ => Self::Ambiguous,
        }
    }
}

/// Pod IPs and the live Pods that have them (watched when the config needs Pods: `pods:
/// verified`, policies, autopath, tenant rewrites). Pods in a terminal phase are not here:
/// their IP is free for the next Pod ([`crate::cluster::objects::compact_pod`]).
#[derive(Clone, Debug, Default)]
pub struct Pods {
    by_ip: ShardedMultiMap<Arc<PodClient>>,
    /// Kept up to date by [`Pods::replace`], for `nameplane_kubernetes_shared_pod_ips`.
    shared: SharedIps,
    /// Whether the initial list has completed (`index::Synced`, implemented there with the
    /// other tables').
    pub(super) synced: bool,
}

impl Pods {
    /// Records that a Pod was `old` (its IPs and itself, `None` if new) and is now `new`
    /// (`None` when deleted); returns whether anything changed.
    pub fn replace(
        &mut self,
        old: Option<(&[IpAddr], &Arc<PodClient>)>,
        new: Option<(&[IpAddr], &Arc<PodClient>)>,
    ) -> bool {
        if old == new {
            return false;
        }
        let touched = old
            .into_iter()
            .chain(new)
            .flat_map(|(ips, _)| ips.iter().copied());
        let mut touched: Vec<IpAddr> = touched.collect();
        touched.sort_unstable();
        touched.dedup();
        for ip in &touched {
            self.count_shared(Claim::of(self.by_ip.get(ip)), -1);
        }
        if let Some((ips, pod)) = old {
            for ip in ips {
                self.by_ip.remove_one(ip, pod);
            }
        }
        if let Some((ips, pod)) = new {
            for ip in ips {
                self.by_ip.add(*ip, Arc::clone(pod));
            }
        }
        for ip in &touched {
            self.count_shared(Claim::of(self.by_ip.get(ip)), 1);
        }
        true
    }

    fn count_shared(&mut self, claim: Claim, delta: isize) {
        let count = match claim {
            Claim::RunningWins => &mut self.shared.running_wins,
            Claim::Ambiguous => &mut self.shared.ambiguous,
            Claim::Unclaimed | Claim::One => return,
        };
        *count = count.saturating_add_signed(delta);
    }

    /// How many IPs several live Pods claim.
    pub fn shared(&self) -> SharedIps {
        self.shared
    }

    /// Whether a Pod in `namespace` has `ip`.
    pub fn contains(&self, namespace: &str, ip: &IpAddr) -> bool {
        self.by_ip
            .get(ip)
            .iter()
            .any(|pod| &*pod.namespace == namespace)
    }

    /// The Pod that `ip` identifies: the one live Pod with that IP or, when several claim
    /// it, the one that is Running; never a Pod on the node's network. `None` for an
    /// unknown or ambiguous address.
    pub fn client(&self, ip: &IpAddr) -> Option<&Arc<PodClient>> {
        match self.by_ip.get(ip) {
            [pod] if !pod.host_network => Some(pod),
            [] | [_] => None,
            pods => {
                // Rare (an IP reused before the API saw its last Pod stop): no allocation,
                // two passes over a handful of entries.
                if pods.iter().any(|pod| pod.host_network) {
                    return None;
                }
                let mut running = pods.iter().filter(|pod| pod.running);
                match (running.next(), running.next()) {
                    (Some(pod), None) => Some(pod),
                    _ => None,
                }
            }
        }
    }

    /// Number of distinct Pod IPs.
    pub fn ips(&self) -> usize {
        self.by_ip.keys()
    }
}
