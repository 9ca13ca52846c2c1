//! Pod names, `<a-b-c-d>.<ns>.pod.<zone>`, per the `pods` mode (CoreDNS `pods disabled |
//! insecure | verified`).

use nameplane_config::PodsMode;

use super::zone::{Ctx, Found, Zone, found};
use crate::cluster::objects;
use crate::wire::answer::{Answer, OutName};

impl Zone {
    /// `<ns>.pod.<zone>`: an empty non-terminal when Pod names are answered there.
    pub(super) fn pod_namespace(&self, ctx: Ctx<'_>, namespace: &str) -> Found {
        if self.pods != PodsMode::Disabled && self.exposed(ctx.cluster, namespace) {
            Found::NoData
        } else {
            Found::NxDomain
        }
    }

    /// `<a-b-c-d>.<ns>.pod.<zone>`: NXDOMAIN (disabled), the address in the name
    /// (insecure), or that address only if such a Pod exists (verified).
    pub(super) fn pod<'a>(
        &'a self,
        ctx: Ctx<'a>,
        namespace: &str,
        address: &[u8],
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> Found {
        if self.pods == PodsMode::Disabled || !self.exposed(ctx.cluster, namespace) {
            return Found::NxDomain;
        }
        let Some(ip) = objects::parse_dashed(address) else {
            return Found::NxDomain;
        };
        if self.pods == PodsMode::Verified {
            match &ctx.cluster.pods {
                Some(pods) if ctx.cluster.sync_state().pods == Some(true) => {
                    if !pods.contains(namespace, &ip) {
                        return Found::NxDomain;
                    }
                }
                // The Pod watch has not listed yet (just enabled by a reload).
                _ => return Found::ServFail,
            }
        }
        found(self.addresses(
            ctx.qtype,
            owner,
            std::iter::once(ip),
            false,
            &mut out.answers,
        ))
    }
}
