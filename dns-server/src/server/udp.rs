//! DNS over UDP: one receive loop per socket.
//!
//! Each loop owns a receive buffer sized for the largest datagram. Local answers (cluster
//! names, zones, cache hits) are CPU only (no I/O, no lock): the loop answers them in place
//! and sends the response back. Parallelism comes from the number of sockets
//! (`--udp-sockets`, `SO_REUSEPORT`), not from spawning a task per datagram.
//!
//! A query that must wait on an upstream ([`Reply::Later`]) gets a task of its own, which
//! sends its response on the same socket when it is done; the loop goes straight back to
//! receiving. Those tasks are bounded: each holds a slot of its forwarder's in-flight limit
//! (taken before the task exists; above the limit the query is REFUSED at once), so memory
//! does not grow with a slow or dead upstream.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tracing::debug;

use crate::request::Transport;
use crate::shutdown::Shutdown;
use crate::state::{Reply, State};

/// Largest datagram read (anything longer is truncated by the kernel and fails to parse).
const MAX_DATAGRAM: usize = 65535;

/// Answers queries on `socket` until `shutdown` fires.
pub async fn serve(socket: UdpSocket, state: Arc<State>, mut shutdown: Shutdown) {
    let socket = Arc::new(socket);
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
        match state.handle(packet, Transport::Udp, peer) {
            Reply::Now(Some(response)) => {
                if let Err(error) = socket.send_to(&response, peer).await {
                    debug!(%error, %peer, "UDP send failed");
                }
            }
            // Zone transfers are refused over UDP; nothing streams here.
            Reply::Now(None) | Reply::Stream(_) => {}
            Reply::Later(later) => {
                let socket = Arc::clone(&socket);
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let response = state.finish(later).await;
                    if let Err(error) = socket.send_to(&response, peer).await {
                        debug!(%error, %peer, "UDP send failed");
                    }
                });
            }
        }
    }
}
