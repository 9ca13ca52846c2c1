//! DNS over UDP: one receive loop per socket.
//!
//! Each loop owns a receive buffer sized for the largest datagram and a response buffer it
//! reuses for every answer (no allocation per datagram once warm), answers in place
//! (answering is CPU only: no I/O, no lock) and sends the response back. Parallelism comes
//! from the number of sockets (`--udp-sockets`, `SO_REUSEPORT`), not from spawning a task per
//! datagram. Stages that wait on the network (forwarding) will need their own concurrency.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tracing::debug;

use crate::request::Transport;
use crate::shutdown::Shutdown;
use crate::state::State;

/// Largest datagram read (anything longer is truncated by the kernel and fails to parse).
const MAX_DATAGRAM: usize = 65535;

/// Initial capacity of the response buffer (the largest UDP answer by default).
const MAX_RESPONSE: usize = 1232;

/// Answers queries on `socket` until `shutdown` fires.
pub async fn serve(socket: UdpSocket, state: Arc<State>, mut shutdown: Shutdown) {
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(MAX_RESPONSE);
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            () = shutdown.wait() => return,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(error) => {
                debug!(%error, "UDP receive failed");
                continue;
            }
        };
        let Some(packet) = buf.get(..len) else {
            continue;
        };
        out.clear();
        if state.handle(packet, Transport::Udp, peer, &mut out)
            && let Err(error) = socket.send_to(&out, peer).await
        {
            debug!(%error, %peer, "UDP send failed");
        }
    }
}
