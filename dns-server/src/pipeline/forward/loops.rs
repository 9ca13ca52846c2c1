//! Forwarding-loop detection (CoreDNS `loop`): an upstream that sends this server's queries
//! back to it (the server forwarding to itself, directly or through a node resolver whose
//! upstream is the cluster DNS) would multiply every forwarded query until it times out.
//!
//! When a pipeline is swapped in, every upstream of every forwarder that has not been
//! probed yet (an unchanged forwarder keeps its upstreams, and their verdict, across
//! reloads) is sent [`PROBES`] queries `<random>.<random>.nameplane-loop. HINFO`, one after
//! the other (each waits for its reply, at most [`PROBE_TIMEOUT`]). The forward stage
//! recognises such a name when it arrives as a client query ([`ForwardStage::loop_echo`]):
//! if it is a probe in flight, it is counted and answered SERVFAIL at once, never forwarded
//! again, so a probe goes round once. [`ECHOES`] echoes of one upstream's probes mean a loop:
//! the upstream is marked looping ([`super::loop_state::LoopState::looping`]), logged at warn, counted in
//! `nameplane_forward_loops_detected_total{forwarder,to}` and named on `/ready` as
//! `forwarding-loop: <forwarder domain> <ip:port>` (without making the replica unready: it
//! keeps serving cluster names and zones; the operator reports the loop on the DNSServer).
//! A looping upstream is left out of its forwarder's order; a forwarder whose upstreams
//! all loop answers SERVFAIL at once instead of sending queries round the loop.
//!
//! Unlike CoreDNS, which exits (and crash-loops) on a loop, the server keeps running; a
//! verdict holds until the upstream leaves the config (a new resolv.conf or config gives
//! new upstreams, probed afresh).
//!
//! [`ForwardStage::loop_echo`]: super::ForwardStage::loop_echo

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::upstream::{Mode, Upstream};
use crate::metrics::forward::ForwardMetrics;
use crate::reply::Key;

/// Probe queries sent to each upstream.
pub(crate) const PROBES: u32 = 3;

/// Echoes of an upstream's probes that make a loop.
pub(crate) const ECHOES: u32 = 2;

/// Longest wait for the reply to one probe.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The zone of probe names, in wire form.
pub(crate) const PROBE_ZONE: &[u8] = b"\x0enameplane-loop\x00";

/// A fresh probe name, `<random>.<random>.nameplane-loop.`.
fn probe_name() -> Option<Name> {
    let (a, b): (u64, u64) = (rand::random(), rand::random());
    Name::from_ascii(format!("{a:016x}.{b:016x}.nameplane-loop.")).ok()
}

/// Probes `upstream` of the forwarder for `forwarder` (its domain) once in its life; marks
/// it looping if its probes come back. Must run inside a Tokio runtime.
pub(crate) async fn probe(forwarder: String, upstream: Arc<Upstream>, metrics: ForwardMetrics) {
    let state = upstream.loops();
    if state.probed.swap(true, Ordering::AcqRel) {
        return;
    }
    let Some(name) = probe_name() else {
        return;
    };
    let mut wire = Vec::new();
    {
        use hickory_proto::serialize::binary::{BinEncodable as _, BinEncoder};
        let mut encoder = BinEncoder::new(&mut wire);
        if name.emit(&mut encoder).is_err() {
            return;
        }
    }
    state.probe.store(Some(Arc::new(wire.into_boxed_slice())));
    let key = Key {
        name,
        qtype: RecordType::HINFO,
        qclass: DNSClass::IN,
        dnssec_ok: false,
        checking_disabled: false,
        partition: 0,
    };
    // Probes are no client queries: their exchanges (timeouts, replies rejected) are
    // counted apart, in metrics nobody reads.
    let quiet = ForwardMetrics::register(&mut prometheus_client::registry::Registry::default());
    for _ in 0..PROBES {
        // Any outcome will do: the echo is counted when the probe arrives here.
        let _ = upstream
            .exchange(&key, Mode::Udp, Instant::now() + PROBE_TIMEOUT, &quiet)
            .await;
        if state.echoes.load(Ordering::Relaxed) >= ECHOES {
            break;
        }
    }
    state.probe.store(None);
    let echoes = state.echoes.load(Ordering::Relaxed);
    if echoes >= ECHOES {
        state.looping.store(true, Ordering::Relaxed);
        metrics.loop_detected(&forwarder, upstream.label());
        warn!(
            forwarder,
            upstream = upstream.label(),
            echoes,
            "forwarding loop: this upstream sends queries back to this server; it is left out, and names of this forwarder answer SERVFAIL when no other upstream is left"
        );
    } else {
        debug!(forwarder, upstream = upstream.label(), "no forwarding loop");
    }
}
