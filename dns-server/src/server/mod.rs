//! The DNS transports: UDP sockets and a TCP listener on one address.
//!
//! [`Listeners::bind`] opens every socket up front, so a port conflict is a startup error,
//! not a task dying later. [`serve`] runs one task per UDP socket ([`udp`]) and one accept
//! loop for TCP ([`tcp`]) under a [`Supervisor`], and returns when all have stopped after the
//! shutdown signal. A transport task that stops before the signal (a panic) would leave a
//! socket that answers nothing behind a healthy-looking process: it is logged, counted
//! (`nameplane_task_failures_total{task}`) and fails `/health` ([`State::fail_health`]),
//! so the kubelet restarts the container.
//!
//! UDP uses several sockets bound to the same address with `SO_REUSEPORT`: the kernel
//! spreads datagrams across them by flow hash, so each core can run its own receive loop
//! without a shared queue. All transports hand bytes to [`State::handle`] and write back
//! what it returns.

pub mod tcp;
pub(crate) mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tracing::info;

use crate::shutdown::{Shutdown, Supervisor};
use crate::state::State;

/// Pending TCP connections the kernel queues before `accept`.
const TCP_BACKLOG: i32 = 1024;

/// Attempts at finding a port free for both UDP and TCP when binding port 0.
const PORT_ZERO_ATTEMPTS: usize = 8;

/// The bound sockets of one DNS server.
#[derive(Debug)]
pub struct Listeners {
    /// UDP sockets, all bound to the same address with `SO_REUSEPORT`.
    pub udp: Vec<UdpSocket>,
    /// The TCP listener, on the same address as the UDP sockets.
    pub tcp: TcpListener,
}

impl Listeners {
    /// Binds `udp_sockets` UDP sockets (at least one) and a TCP listener to `addr`. With
    /// port 0, one free port is chosen for all of them. Must run inside a Tokio runtime.
    pub fn bind(addr: SocketAddr, udp_sockets: usize) -> io::Result<Self> {
        let attempts = if addr.port() == 0 {
            PORT_ZERO_ATTEMPTS
        } else {
            1
        };
        let mut last_error = None;
        for _ in 0..attempts {
            match Self::bind_once(addr, udp_sockets.max(1)) {
                Ok(listeners) => return Ok(listeners),
                // With port 0 the UDP port chosen may be taken for TCP: try another.
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
    }

    fn bind_once(addr: SocketAddr, udp_sockets: usize) -> io::Result<Self> {
        let first = bind_udp(addr)?;
        let addr = first.local_addr()?;
        let mut udp = vec![first];
        for _ in 1..udp_sockets {
            udp.push(bind_udp(addr)?);
        }
        let tcp = bind_tcp(addr)?;
        Ok(Self { udp, tcp })
    }

    /// The address the sockets are bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Serves DNS on every listener until `shutdown` fires, with the default TCP limits; see
/// [`serve_with`].
pub async fn serve(listeners: Listeners, state: Arc<State>, shutdown: Shutdown) {
    serve_with(listeners, state, tcp::Limits::default(), shutdown).await;
}

/// Serves DNS on every listener until `shutdown` fires; returns when every transport task
/// has stopped (TCP connections answer the queries they have in flight first).
pub async fn serve_with(
    listeners: Listeners,
    state: Arc<State>,
    tcp_limits: tcp::Limits,
    shutdown: Shutdown,
) {
    let Listeners { udp, tcp } = listeners;
    let mut tasks = Supervisor::default();
    if let Ok(addr) = tcp.local_addr() {
        info!(%addr, udp_sockets = udp.len(), "serving DNS over UDP and TCP");
    }
    for socket in udp {
        tasks.spawn(
            "udp",
            udp::serve(socket, Arc::clone(&state), shutdown.clone()),
        );
    }
    tasks.spawn(
        "tcp",
        tcp::serve(tcp, Arc::clone(&state), tcp_limits, shutdown.clone()),
    );
    tasks
        .wait(&shutdown, |task, why| state.fail_health(task, why))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_every_socket_to_one_port() {
        let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), 3).expect("binds");
        let addr = listeners.local_addr().expect("addr");
        assert_ne!(addr.port(), 0);
        assert_eq!(listeners.udp.len(), 3);
        for socket in &listeners.udp {
            assert_eq!(socket.local_addr().expect("addr"), addr);
        }
    }

    #[tokio::test]
    async fn zero_sockets_means_one() {
        let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), 0).expect("binds");
        assert_eq!(listeners.udp.len(), 1);
    }
}
