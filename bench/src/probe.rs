//! One DNS query over UDP with EDNS (4096-byte buffer, as dnsperf `-e` sends), for the
//! correctness probes, the programming latency and the config-change timing; from 127.0.0.1,
//! or from another loopback address (a Pod's, for the client-aware probes).

use std::net::Ipv4Addr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

/// What a server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, `SERVFAIL`, ...
    pub rcode: String,
    /// The TC bit.
    pub truncated: bool,
    /// Answer records: (type, TTL, data in presentation form).
    pub answers: Vec<(RecordType, u32, String)>,
}

impl Reply {
    /// Data of the answers of type `rtype`.
    pub fn data(&self, rtype: RecordType) -> Vec<String> {
        self.answers
            .iter()
            .filter(|a| a.0 == rtype)
            .map(|a| a.2.clone())
            .collect()
    }

    /// TTL of the first answer of type `rtype`.
    pub fn ttl(&self, rtype: RecordType) -> Option<u32> {
        self.answers.iter().find(|a| a.0 == rtype).map(|a| a.1)
    }
}

/// Asks 127.0.0.1:`port` for `name`/`rtype`; `None` when nothing (matching) came back in time.
pub async fn query(port: u16, name: &str, rtype: RecordType, timeout: Duration) -> Option<Reply> {
    query_from(Ipv4Addr::LOCALHOST, port, name, rtype, timeout).await
}

/// Like [`query`], sent from `source` (a loopback address).
pub async fn query_from(
    source: Ipv4Addr,
    port: u16,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Option<Reply> {
    let mut message = Message::query();
    message.metadata.id = rand_id();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).ok()?, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    message.set_edns(edns);
    let bytes = message.to_vec().ok()?;
    let socket = UdpSocket::bind((source, 0)).await.ok()?;
    socket.send_to(&bytes, ("127.0.0.1", port)).await.ok()?;
    let mut buf = vec![0u8; 65535];
    tokio::time::timeout(timeout, async {
        loop {
            let (len, _) = socket.recv_from(&mut buf).await.ok()?;
            let Ok(response) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            if response.metadata.id != message.metadata.id {
                continue;
            }
            return Some(Reply {
                rcode: format!("{:?}", response.metadata.response_code).to_uppercase(),
                truncated: response.metadata.truncation,
                answers: response
                    .answers
                    .iter()
                    .map(|r| (r.record_type(), r.ttl, r.data.to_string()))
                    .collect(),
            });
        }
    })
    .await
    .ok()
    .flatten()
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u16
}
