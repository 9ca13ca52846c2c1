//! A DNS query, parsed once.
//!
//! Every later step (the pipeline stages, the response encoder, the metrics) works from the
//! [`Request`] built here and never looks at the raw bytes again. The checks that do not need
//! a full decode run first on the 12-byte header, so that junk is rejected cheaply and the
//! decoder never sees a packet that claims thousands of questions:
//!
//! 1. shorter than a header, or a response (QR set): dropped, nothing is sent back;
//! 2. opcode other than QUERY: NOTIMP;
//! 3. not exactly one question, or anything the decoder refuses: FORMERR.
//!
//! The question name is lower-cased here, once; stages compare names byte for byte.

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

/// Length of the fixed DNS header (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;

/// Largest UDP response this server sends, and the payload size it advertises in EDNS
/// (the DNS Flag Day 2020 value: avoids IP fragmentation on common paths).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Largest UDP response to a client that did not use EDNS (RFC 1035 §4.2.1).
pub const MIN_UDP_PAYLOAD: u16 = 512;

/// The transport a query arrived on; it bounds the response size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: responses are limited to the client's payload size and truncated beyond it.
    Udp,
    /// TCP: responses may use the whole 16-bit length prefix.
    Tcp,
}

impl Transport {
    /// The `proto` label value CoreDNS uses for this transport.
    pub fn label(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// What the client said in its OPT record (RFC 6891).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestEdns {
    /// EDNS version; only 0 exists.
    pub version: u8,
    /// The largest UDP payload the client can receive.
    pub max_payload: u16,
    /// The DO bit; RFC 3225 §3 asks for it to be copied into the response.
    pub dnssec_ok: bool,
}

/// A query that passed every header and format check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Message id, copied into the response.
    pub id: u16,
    /// RD bit, copied into the response.
    pub recursion_desired: bool,
    /// CD bit, copied into the response.
    pub checking_disabled: bool,
    /// The question exactly as received (original case, for the response's question section
    /// and for answer owner names, so clients using 0x20 case randomisation see their case).
    pub query: Query,
    /// The question name, lower-cased: what every stage matches on.
    pub name: Name,
    /// The client's EDNS parameters, if it sent an OPT record.
    pub edns: Option<RequestEdns>,
    /// The transport the query arrived on.
    pub transport: Transport,
}

impl Request {
    /// The question type.
    pub fn qtype(&self) -> RecordType {
        self.query.query_type()
    }

    /// The largest response, in bytes, this request may receive. On UDP that is the client's
    /// EDNS payload size (512 without EDNS), capped at [`MAX_UDP_PAYLOAD`]; on TCP it is the
    /// largest message the length prefix can carry.
    pub fn max_response_len(&self) -> usize {
        match self.transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => {
                let asked = self.edns.map_or(MIN_UDP_PAYLOAD, |edns| edns.max_payload);
                usize::from(asked.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD))
            }
        }
    }
}

/// A header-only error reply: enough of the query's header to answer it without the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorReply {
    /// Message id of the query.
    pub id: u16,
    /// The 4-bit opcode of the query, copied back (RFC 1035 §4.1.1).
    pub opcode: u8,
    /// RD bit of the query, copied back.
    pub recursion_desired: bool,
    /// The error to report.
    pub rcode: ResponseCode,
}

/// Why a packet did not become a [`Request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Not worth an answer: shorter than a header, or itself a response (answering those
    /// could start a loop between two servers).
    Drop,
    /// Answer with a header-only error (FORMERR, NOTIMP).
    Reply(ErrorReply),
}

/// Parses the bytes of one DNS message into a [`Request`]. Never panics, whatever the input.
pub fn parse(packet: &[u8], transport: Transport) -> Result<Request, Rejected> {
    let Some(&[id_hi, id_lo, flags, flags_lo, qd_hi, qd_lo, ..]) = packet.get(..HEADER_LEN) else {
        return Err(Rejected::Drop);
    };
    if flags & 0x80 != 0 {
        return Err(Rejected::Drop);
    }
    let id = u16::from_be_bytes([id_hi, id_lo]);
    let opcode = (flags >> 3) & 0x0f;
    let recursion_desired = flags & 0x01 != 0;
    let reply = |rcode| {
        Err(Rejected::Reply(ErrorReply {
            id,
            opcode,
            recursion_desired,
            rcode,
        }))
    };
    if opcode != 0 {
        return reply(ResponseCode::NotImp);
    }
    if u16::from_be_bytes([qd_hi, qd_lo]) != 1 {
        return reply(ResponseCode::FormErr);
    }
    let Ok(message) = Message::from_vec(packet) else {
        return reply(ResponseCode::FormErr);
    };
    let Message {
        mut queries, edns, ..
    } = message;
    let Some(query) = queries.pop() else {
        return reply(ResponseCode::FormErr);
    };
    let name = query.name().to_lowercase();
    Ok(Request {
        id,
        recursion_desired,
        checking_disabled: flags_lo & 0x10 != 0,
        query,
        name,
        edns: edns.map(|edns| RequestEdns {
            version: edns.version(),
            max_payload: edns.max_payload(),
            dnssec_ok: edns.flags().dnssec_ok,
        }),
        transport,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::op::{Edns, MessageType, OpCode};

    /// Encodes a query for `name`/`qtype` with id 0x1234 and RD set, with EDNS if
    /// `edns_payload` is given.
    pub(crate) fn query_bytes(name: &str, qtype: RecordType, edns_payload: Option<u16>) -> Vec<u8> {
        let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        let name = Name::from_ascii(name).expect("test name parses");
        message.add_query(Query::query(name, qtype));
        if let Some(payload) = edns_payload {
            let mut edns = Edns::new();
            edns.set_max_payload(payload);
            message.set_edns(edns);
        }
        message.to_vec().expect("test query encodes")
    }

    #[test]
    fn parses_and_lowercases_once() {
        let bytes = query_bytes(
            "WeB.Default.SVC.cluster.local.",
            RecordType::AAAA,
            Some(4096),
        );
        let request = parse(&bytes, Transport::Udp).expect("valid query");
        assert_eq!(request.id, 0x1234);
        assert!(request.recursion_desired);
        assert_eq!(request.qtype(), RecordType::AAAA);
        assert_eq!(request.name.to_ascii(), "web.default.svc.cluster.local.");
        assert_eq!(
            request.query.name().to_ascii(),
            "WeB.Default.SVC.cluster.local."
        );
        assert_eq!(
            request.edns,
            Some(RequestEdns {
                version: 0,
                max_payload: 4096,
                dnssec_ok: false
            })
        );
        assert_eq!(request.max_response_len(), usize::from(MAX_UDP_PAYLOAD));
    }

    #[test]
    fn response_size_follows_transport_and_edns() {
        let plain = parse(&query_bytes("a.", RecordType::A, None), Transport::Udp).expect("valid");
        assert_eq!(plain.max_response_len(), 512);
        let small =
            parse(&query_bytes("a.", RecordType::A, Some(100)), Transport::Udp).expect("valid");
        assert_eq!(small.max_response_len(), 512);
        let tcp = parse(&query_bytes("a.", RecordType::A, None), Transport::Tcp).expect("valid");
        assert_eq!(tcp.max_response_len(), 65535);
    }

    #[test]
    fn drops_short_packets_and_responses() {
        assert_eq!(parse(&[], Transport::Udp), Err(Rejected::Drop));
        assert_eq!(parse(&[0; 11], Transport::Udp), Err(Rejected::Drop));
        let mut response = query_bytes("a.", RecordType::A, None);
        response[2] |= 0x80;
        assert_eq!(parse(&response, Transport::Udp), Err(Rejected::Drop));
    }

    #[test]
    fn rejects_other_opcodes_with_notimp() {
        let mut bytes = query_bytes("a.", RecordType::A, None);
        bytes[2] |= 2 << 3; // STATUS
        let Err(Rejected::Reply(reply)) = parse(&bytes, Transport::Udp) else {
            panic!("expected an error reply");
        };
        assert_eq!(reply.rcode, ResponseCode::NotImp);
        assert_eq!(reply.opcode, 2);
        assert_eq!(reply.id, 0x1234);
        assert!(reply.recursion_desired);
    }

    #[test]
    fn rejects_wrong_question_counts_and_garbage_with_formerr() {
        let mut header_only = query_bytes("a.", RecordType::A, None);
        header_only.truncate(HEADER_LEN);
        header_only[5] = 0;
        let formerr = |bytes: &[u8]| match parse(bytes, Transport::Udp) {
            Err(Rejected::Reply(reply)) => reply.rcode == ResponseCode::FormErr,
            _ => false,
        };
        assert!(formerr(&header_only), "zero questions");

        let mut two = query_bytes("a.", RecordType::A, None);
        two[5] = 2;
        assert!(formerr(&two), "two questions, one present");

        let mut garbage = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        garbage.extend_from_slice(&[0xff; 20]);
        assert!(formerr(&garbage), "undecodable question");
    }
}
