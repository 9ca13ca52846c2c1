//! DNS over UDP: one receive loop per socket.
//!
//! Each loop owns a receive buffer sized for the largest datagram, answers in place
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

/// Answers queries on `socket` until `shutdown` fires.
pub async fn serve(socket: UdpSocket, state: Arc<State>, mut shutdown: Shutdown) {
    let mut buf = vec![0; MAX_DATAGRAM];
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
        if let Some(response) = state.handle(packet, Transport::Udp, peer)
            && let Err(error) = socket.send_to(&response, peer).await
        {
            debug!(%error, %peer, "UDP send failed");
        }
    }
}
