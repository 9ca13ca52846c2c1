//! Turning an [`Answer`] into response bytes.
//!
//! A stage only says *what* to answer (rcode, records, who answered); this module owns the
//! wire rules that are the same for every stage:
//!
//! - id, opcode, RD and CD are copied from the query, the question is echoed as received;
//! - if the query had an OPT record, the response has one too: version 0, payload
//!   [`MAX_UDP_PAYLOAD`], DO copied (RFC 6891 §6.1.1, RFC 3225 §3); no options are echoed;
//! - a response larger than [`Request::max_response_len`] is replaced by the same header with
//!   TC set, the question and the OPT record, and no records, so the client retries over
//!   TCP (RFC 7766 §5);
//! - a response larger than the limit first loses its additional section (RFC 2181 §9: no TC
//!   for that), and only then is truncated;
//! - RA is set only on answers that came through a forwarder ([`Answer::recursion_available`]).

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::Record;

use crate::request::{ErrorReply, HEADER_LEN, MAX_UDP_PAYLOAD, Request};

/// Which part of the server produced a response: the `plugin` label of
/// `coredns_dns_responses_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The server itself (malformed queries, no config yet, names no stage owns).
    Server,
    /// The Kubernetes stage.
    Kubernetes,
    /// The cache stage (a cached forwarded answer, fresh or stale).
    Cache,
    /// The zones stage (authoritative zones and their transfers).
    Zones,
    /// The forward stage (an upstream's answer, or its failure).
    Forward,
}

impl Origin {
    /// Every origin, in a fixed order (index = [`Origin::index`]).
    pub const ALL: [Self; 5] = [
        Self::Server,
        Self::Kubernetes,
        Self::Cache,
        Self::Zones,
        Self::Forward,
    ];

    /// The `plugin` label value, as CoreDNS would name the plugin (empty for the server).
    pub fn label(self) -> &'static str {
        match self {
            Self::Server => "",
            Self::Kubernetes => "kubernetes",
            Self::Cache => "cache",
            // CoreDNS serves zones with its `file` plugin.
            Self::Zones => "file",
            Self::Forward => "forward",
        }
    }

    /// Position in [`Origin::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Server => 0,
            Self::Kubernetes => 1,
            Self::Cache => 2,
            Self::Zones => 3,
            Self::Forward => 4,
        }
    }
}

/// What a stage decided to answer. Encoded by [`encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: ResponseCode,
    /// AA bit: set when the answering stage is the authority for the name.
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of NXDOMAIN and NODATA responses).
    pub authorities: Vec<Record>,
    /// Additional section (glue, addresses of MX/SRV/NS targets); the first thing dropped
    /// when the response does not fit.
    pub additionals: Vec<Record>,
    /// RA bit: set on answers that came through a forwarder.
    pub recursion_available: bool,
    /// Who answered.
    pub origin: Origin,
}

impl Answer {
    /// An answer with only a response code (no records, AA clear).
    pub fn rcode(rcode: ResponseCode, origin: Origin) -> Self {
        Self {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            recursion_available: false,
            origin,
        }
    }
}

/// The EDNS record of a response to a query that had one.
fn response_edns(dnssec_ok: bool) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD)
        .set_version(0)
        .set_dnssec_ok(dnssec_ok);
    edns
}

/// Encodes `answer` as the response to `request`, truncated if it does not fit the
/// transport. Consumes the request so the question is moved, not copied.
pub fn encode(request: Request, answer: Answer) -> Vec<u8> {
    let max_len = request.max_response_len();
    let mut message = Message::response(request.id, OpCode::Query);
    message.metadata.authoritative = answer.authoritative;
    message.metadata.recursion_desired = request.recursion_desired;
    message.metadata.checking_disabled = request.checking_disabled;
    message.metadata.recursion_available = answer.recursion_available;
    message.metadata.response_code = answer.rcode;
    message.queries.push(request.query);
    message.answers = answer.answers;
    message.authorities = answer.authorities;
    message.additionals = answer.additionals;
    message.edns = request.edns.map(|edns| response_edns(edns.dnssec_ok));

    let fallback = ErrorReply {
        id: request.id,
        opcode: 0,
        recursion_desired: request.recursion_desired,
        rcode: ResponseCode::ServFail,
    };
    let mut encoded = message.to_vec();
    if matches!(&encoded, Ok(bytes) if bytes.len() > max_len) && !message.additionals.is_empty() {
        message.additionals.clear();
        encoded = message.to_vec();
    }
    match encoded {
        Ok(bytes) if bytes.len() <= max_len => bytes,
        Ok(_) => {
            message.answers.clear();
            message.authorities.clear();
            message.metadata.truncation = true;
            // Header, one question (at most 259 bytes) and an 11-byte OPT always fit in 512.
            message
                .to_vec()
                .unwrap_or_else(|_| encode_error(&fallback).to_vec())
        }
        Err(_) => encode_error(&fallback).to_vec(),
    }
}

/// Encodes a header-only error response (no question, no records).
pub fn encode_error(reply: &ErrorReply) -> [u8; HEADER_LEN] {
    let [id_hi, id_lo] = reply.id.to_be_bytes();
    let flags = 0x80 | ((reply.opcode & 0x0f) << 3) | u8::from(reply.recursion_desired);
    let rcode = reply.rcode.low() & 0x0f;
    [id_hi, id_lo, flags, rcode, 0, 0, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::query_bytes;
    use crate::request::{Transport, parse};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, RecordType};
    use std::net::Ipv4Addr;

    fn request(edns: Option<u16>, transport: Transport) -> Request {
        parse(&query_bytes("Web.example.", RecordType::A, edns), transport).expect("valid")
    }

    fn many_a_records(request: &Request, count: u8) -> Answer {
        let mut answer = Answer::rcode(ResponseCode::NoError, Origin::Kubernetes);
        answer.authoritative = true;
        answer.answers = (0..count)
            .map(|i| {
                Record::from_rdata(
                    request.query.name().clone(),
                    30,
                    RData::A(A(Ipv4Addr::new(10, 0, 0, i))),
                )
            })
            .collect();
        answer
    }

    #[test]
    fn copies_header_fields_and_echoes_question_and_edns() {
        let req = request(Some(4096), Transport::Udp);
        let answer = many_a_records(&req, 2);
        let bytes = encode(req, answer);
        let message = Message::from_vec(&bytes).expect("decodes");
        assert_eq!(message.metadata.id, 0x1234);
        assert!(message.metadata.recursion_desired);
        assert!(message.metadata.authoritative);
        assert!(!message.metadata.truncation);
        assert_eq!(message.queries[0].name().to_ascii(), "Web.example.");
        assert_eq!(message.answers.len(), 2);
        let edns = message.edns.expect("OPT echoed");
        assert_eq!(edns.max_payload(), MAX_UDP_PAYLOAD);
        assert_eq!(edns.version(), 0);
    }

    #[test]
    fn no_edns_in_response_without_edns_in_query() {
        let req = request(None, Transport::Udp);
        let bytes = encode(req, Answer::rcode(ResponseCode::Refused, Origin::Server));
        let message = Message::from_vec(&bytes).expect("decodes");
        assert!(message.edns.is_none());
        assert_eq!(message.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn truncates_oversized_udp_but_not_tcp() {
        // 40 A records of 16 bytes each do not fit in 512 bytes.
        let req = request(None, Transport::Udp);
        let answer = many_a_records(&req, 40);
        let bytes = encode(req, answer);
        assert!(bytes.len() <= 512);
        let message = Message::from_vec(&bytes).expect("decodes");
        assert!(message.metadata.truncation);
        assert!(message.answers.is_empty());
        assert_eq!(message.queries.len(), 1);

        let req = request(None, Transport::Tcp);
        let answer = many_a_records(&req, 40);
        let message = Message::from_vec(&encode(req, answer)).expect("decodes");
        assert!(!message.metadata.truncation);
        assert_eq!(message.answers.len(), 40);
    }

    #[test]
    fn additionals_go_first_without_tc() {
        let req = request(None, Transport::Udp);
        let mut answer = many_a_records(&req, 2);
        answer.additionals = many_a_records(&req, 40).answers;
        answer.recursion_available = true;
        let message = Message::from_vec(&encode(req, answer)).expect("decodes");
        assert!(!message.metadata.truncation);
        assert!(message.metadata.recursion_available);
        assert_eq!(message.answers.len(), 2);
        assert!(message.additionals.is_empty());
    }

    #[test]
    fn edns_raises_the_udp_limit() {
        let req = request(Some(1232), Transport::Udp);
        let answer = many_a_records(&req, 40);
        let message = Message::from_vec(&encode(req, answer)).expect("decodes");
        assert!(!message.metadata.truncation);
        assert_eq!(message.answers.len(), 40);
    }

    #[test]
    fn error_header_layout() {
        let bytes = encode_error(&ErrorReply {
            id: 0xbeef,
            opcode: 2,
            recursion_desired: true,
            rcode: ResponseCode::NotImp,
        });
        assert_eq!(
            bytes,
            [0xbe, 0xef, 0x80 | (2 << 3) | 1, 4, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
