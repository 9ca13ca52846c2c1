//! Turning an [`Answer`] into response bytes, written straight into a reused buffer.
//!
//! A stage only says *what* to answer (rcode, records, who answered) with records that
//! borrow from the snapshots ([`Rr`]); this module owns the wire rules that are the same for
//! every stage:
//!
//! - id, RD and CD are copied from the query, the question is echoed as received;
//! - names are compressed (RFC 1035 §4.1.4) against the question and every name written
//!   before, case-insensitively; an owner that is the question name is a pointer to it.
//!   SRV targets are written in full (RFC 2782), but later names may point into them;
//! - if the query had an OPT record, the response has one too: version 0, payload = the
//!   server's maximum, DO copied, extended rcode bits set (RFC 6891 §6.1.1, RFC 3225 §3); no
//!   options are echoed;
//! - a response whose answer or authority section does not fit its [`SizeLimit`]
//!   keeps only the header, the question and the OPT record, with TC set, so the client
//!   retries over TCP (RFC 7766 §5); additional records that do not fit are left out without
//!   TC (RFC 2181 §9);
//! - RA is set on answers of the cache and forward stages (recursion is available through
//!   them), clear on the others.

use super::answer::{
    Answer, DashedIp, Label, MAX_HEAD_LABELS, Origin, OutName, Rdata, Rr, WireLabels,
};
use crate::reply::Reply;
use crate::request::{ErrorReply, HEADER_LEN, MAX_NAME_WIRE_LEN, Request, SizeLimit};

/// Most name positions remembered for compression.
const MAX_DICT: usize = 64;

/// Most pointers followed when comparing a name already written.
const MAX_JUMPS: usize = 16;

/// What encoding wrote, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    /// Whether TC was set.
    pub truncated: bool,
}

/// The writer of one message: the output buffer and the compression dictionary.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
    /// Where the message starts in `out` (pointers are relative to it).
    base: usize,
    dict: [u16; MAX_DICT],
    dict_len: usize,
}

impl Writer<'_> {
    fn len(&self) -> usize {
        self.out.len() - self.base
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn remember(&mut self, position: usize) {
        if position < 0x4000 && self.dict_len < MAX_DICT {
            self.dict[self.dict_len] = position as u16;
            self.dict_len += 1;
        }
    }

    /// Whether the name at message offset `at` is exactly `labels` (ASCII case ignored).
    fn matches_at(&self, mut at: usize, labels: &[&[u8]]) -> bool {
        let msg = &self.out[self.base..];
        let (mut i, mut jumps) = (0, 0);
        loop {
            let Some(&len) = msg.get(at) else {
                return false;
            };
            if len & 0xc0 == 0xc0 {
                let Some(&lo) = msg.get(at + 1) else {
                    return false;
                };
                at = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return false;
                }
                continue;
            }
            if len == 0 {
                return i == labels.len();
            }
            let len = usize::from(len);
            let (Some(label), Some(bytes)) = (labels.get(i), msg.get(at + 1..at + 1 + len)) else {
                return false;
            };
            if !bytes.eq_ignore_ascii_case(label) {
                return false;
            }
            i += 1;
            at += 1 + len;
        }
    }

    fn find(&self, labels: &[&[u8]]) -> Option<u16> {
        self.dict[..self.dict_len]
            .iter()
            .copied()
            .find(|&at| self.matches_at(usize::from(at), labels))
    }

    /// Writes `name`; with `compress`, the longest suffix already in the message becomes a
    /// pointer. Either way the positions written are remembered for later names.
    fn name(&mut self, name: &OutName<'_>, compress: bool) {
        let OutName::Parts { head, len, tail } = name else {
            // The question name starts right after the header.
            self.u16(0xc000 | HEADER_LEN as u16);
            return;
        };
        let mut dashed = [None; MAX_HEAD_LABELS];
        for (slot, label) in dashed.iter_mut().zip(&head[..usize::from(*len)]) {
            if let Label::Dashed(ip) = label {
                *slot = Some(DashedIp::new(*ip));
            }
        }
        let head_bytes =
            head[..usize::from(*len)]
                .iter()
                .zip(&dashed)
                .map(|(label, dashed)| match (label, dashed) {
                    (Label::Bytes(bytes), _) => *bytes,
                    (Label::Dashed(_), dashed) => {
                        dashed.as_ref().map_or(&[][..], DashedIp::as_bytes)
                    }
                });
        let mut labels: [&[u8]; MAX_NAME_WIRE_LEN / 2] = [&[]; MAX_NAME_WIRE_LEN / 2];
        let mut count = 0;
        for label in head_bytes.chain(WireLabels(tail)) {
            if count == labels.len() {
                break;
            }
            labels[count] = label;
            count += 1;
        }
        let labels = &labels[..count];
        for i in 0..labels.len() {
            if compress && let Some(at) = self.find(&labels[i..]) {
                self.labels(&labels[..i]);
                self.u16(0xc000 | at);
                return;
            }
        }
        self.labels(labels);
        self.out.push(0);
    }

    fn labels(&mut self, labels: &[&[u8]]) {
        for label in labels {
            let position = self.len();
            self.remember(position);
            let label = &label[..label.len().min(63)];
            self.out.push(label.len() as u8);
            self.out.extend_from_slice(label);
        }
    }

    fn record(&mut self, rr: &Rr<'_>) {
        self.name(&rr.owner, true);
        self.u16(u16::from(rr.data.record_type()));
        self.u16(1); // IN
        self.u32(rr.ttl);
        let rdlength_at = self.out.len();
        self.u16(0);
        match rr.data {
            Rdata::A(ip) => self.out.extend_from_slice(&ip.octets()),
            Rdata::Aaaa(ip) => self.out.extend_from_slice(&ip.octets()),
            Rdata::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                self.u16(priority);
                self.u16(weight);
                self.u16(port);
                self.name(&target, false);
            }
            Rdata::Ptr(name) | Rdata::Cname(name) | Rdata::Ns(name) => self.name(&name, true),
            Rdata::Txt(text) => {
                let text = &text.as_bytes()[..text.len().min(255)];
                self.out.push(text.len() as u8);
                self.out.extend_from_slice(text);
            }
            Rdata::Soa(soa) => {
                self.name(&OutName::wire(soa.mname), true);
                self.name(&OutName::wire(soa.rname), true);
                for v in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
                    self.u32(v);
                }
            }
            Rdata::Raw { data, .. } => self.out.extend_from_slice(data),
        }
        let rdlength = (self.out.len() - rdlength_at - 2) as u16;
        self.out[rdlength_at..rdlength_at + 2].copy_from_slice(&rdlength.to_be_bytes());
    }

    /// Writes `records` while the message stays within `limit`; returns how many fit (the
    /// record that did not fit is removed again, with its compression entries).
    fn section(&mut self, records: &[Rr<'_>], limit: usize) -> usize {
        for (written, rr) in records.iter().enumerate() {
            let (mark, dict_mark) = (self.out.len(), self.dict_len);
            self.record(rr);
            if self.len() > limit {
                self.out.truncate(mark);
                self.dict_len = dict_mark;
                return written;
            }
        }
        records.len()
    }
}

/// Encodes `answer` as the response to `request` at the end of `out` (which may already hold
/// a TCP length prefix), truncated if it does not fit `limit`.
pub(crate) fn encode(
    request: &Request<'_>,
    answer: &Answer<'_>,
    limit: SizeLimit,
    out: &mut Vec<u8>,
) -> Encoded {
    let base = out.len();
    let has_opt = request.edns.is_some();
    let max_udp = limit.payload;
    let limit = limit
        .max_len
        .saturating_sub(if has_opt { super::edns::OPT_LEN } else { 0 });
    let rcode = u16::from(answer.rcode);

    out.extend_from_slice(&[0; HEADER_LEN]);
    out.extend_from_slice(request.question);
    let question_end = out.len();
    let mut writer = Writer {
        out,
        base,
        dict: [0; MAX_DICT],
        dict_len: 0,
    };
    // Every suffix of the question name can be pointed at.
    let mut at = HEADER_LEN;
    for label in request.name.labels() {
        writer.remember(at);
        at += 1 + label.len();
    }

    let mut counts = [0u16; 3];
    let mut truncated = false;
    let answers = writer.section(&answer.answers, limit);
    let authorities = if answers == answer.answers.len() {
        writer.section(&answer.authorities, limit)
    } else {
        0
    };
    if answers < answer.answers.len() || authorities < answer.authorities.len() {
        writer.out.truncate(question_end);
        truncated = true;
    } else {
        counts[0] = answers as u16;
        counts[1] = authorities as u16;
        counts[2] = writer.section(&answer.additionals, limit) as u16;
    }

    let out = writer.out;
    let mut arcount = counts[2];
    if let Some(edns) = request.edns {
        super::edns::write_opt(out, max_udp, (rcode >> 4) as u8, edns.dnssec_ok);
        arcount += 1;
    }

    let flags_hi = 0x80
        | (u8::from(answer.authoritative) << 2)
        | (u8::from(truncated) << 1)
        | u8::from(request.recursion_desired);
    let recursion_available = matches!(answer.origin, Origin::Cache | Origin::Forward);
    let flags_lo = (u8::from(recursion_available) << 7)
        | (u8::from(request.checking_disabled) << 4)
        | (rcode & 0x0f) as u8;
    let header = &mut out[base..base + HEADER_LEN];
    header[..2].copy_from_slice(&request.id.to_be_bytes());
    header[2] = flags_hi;
    header[3] = flags_lo;
    header[4..6].copy_from_slice(&1u16.to_be_bytes());
    header[6..8].copy_from_slice(&counts[0].to_be_bytes());
    header[8..10].copy_from_slice(&counts[1].to_be_bytes());
    header[10..12].copy_from_slice(&arcount.to_be_bytes());
    Encoded { truncated }
}

/// `answer` as an owned [`Reply`], for the few paths that keep a local answer past its
/// snapshot (an alias to resolve, a chased name, an autopath fallback that waits on an
/// upstream). Encoded for a question built from `request.name` (so [`OutName::Query`]
/// is the name asked of the stage, whatever the client's packet says) and read back:
/// never on the query path of a plain or shaped local answer.
pub(crate) fn to_reply(request: &Request<'_>, answer: &Answer<'_>) -> Option<Reply> {
    Reply::from_wire(&encode_for_name(request, answer))
}

/// `answer` encoded whole for a question built from `request.name` (not the client's
/// packet), without EDNS: the form [`to_reply`] reads back.
pub(crate) fn encode_for_name(request: &Request<'_>, answer: &Answer<'_>) -> Vec<u8> {
    let mut question = Vec::with_capacity(request.name.wire().len() + 4);
    question.extend_from_slice(request.name.wire());
    question.extend_from_slice(&u16::from(request.qtype).to_be_bytes());
    question.extend_from_slice(&u16::from(request.qclass).to_be_bytes());
    let asked = Request {
        question: &question,
        edns: None,
        ..request.clone()
    };
    let mut encoded = Vec::new();
    encode(&asked, answer, SizeLimit::whole(u16::MAX), &mut encoded);
    encoded
}

/// Encodes a header-only error response (no question, no records).
pub(crate) fn encode_error(reply: &ErrorReply) -> [u8; HEADER_LEN] {
    let [id_hi, id_lo] = reply.id.to_be_bytes();
    let flags = 0x80 | ((reply.opcode & 0x0f) << 3) | u8::from(reply.recursion_desired);
    [
        id_hi,
        id_lo,
        flags,
        reply.rcode & 0x0f,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::query_bytes;
    use crate::request::{Transport, parse};
    use crate::wire::answer::Soa;
    use hickory_proto::op::Message;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::RecordType;
    use std::net::Ipv4Addr;

    const ZONE: &[u8] = b"\x07cluster\x05local\x00";

    fn encode_for(query: &[u8], transport: Transport, answer: &Answer<'_>) -> (Vec<u8>, Encoded) {
        let request = parse(query, transport).expect("valid");
        let mut out = Vec::new();
        let encoded = encode(&request, answer, SizeLimit::of(&request, 1232), &mut out);
        (out, encoded)
    }

    fn a_records(count: u8) -> Answer<'static> {
        let mut answer = Answer::rcode(ResponseCode::NoError, Origin::Kubernetes);
        answer.authoritative = true;
        answer.answers = (0..count)
            .map(|i| Rr {
                owner: OutName::Query,
                ttl: 30,
                data: Rdata::A(Ipv4Addr::new(10, 0, 0, i)),
            })
            .collect();
        answer
    }

    #[test]
    fn copies_header_fields_and_echoes_question_and_edns() {
        let query = query_bytes("Web.example.", RecordType::A, Some(4096));
        let (bytes, encoded) = encode_for(&query, Transport::Udp, &a_records(2));
        assert!(!encoded.truncated);
        let message = Message::from_vec(&bytes).expect("decodes");
        assert_eq!(message.metadata.id, 0x1234);
        assert!(message.metadata.recursion_desired);
        assert!(message.metadata.authoritative);
        assert!(!message.metadata.recursion_available);
        assert!(!message.metadata.truncation);
        assert_eq!(message.queries[0].name().to_ascii(), "Web.example.");
        assert_eq!(message.answers.len(), 2);
        assert_eq!(message.answers[0].name.to_ascii(), "Web.example.");
        assert_eq!(message.answers[1].ttl, 30);
        let edns = message.edns.expect("OPT echoed");
        assert_eq!(edns.max_payload(), 1232);
        assert_eq!(edns.version(), 0);
    }

    #[test]
    fn encodes_every_record_type_with_compression() {
        let query = query_bytes(
            "_http._tcp.web.ns.svc.cluster.local.",
            RecordType::SRV,
            None,
        );
        let host = OutName::under(ZONE, &[b"host-1", b"web", b"ns", b"svc"]);
        let dashed = OutName::new(
            ZONE,
            &[
                Label::Dashed("fd00::1".parse().expect("ip")),
                Label::from(&b"web"[..]),
                Label::from("ns"),
                Label::from("svc"),
            ],
        );
        let answer = Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: vec![
                Rr {
                    owner: OutName::Query,
                    ttl: 5,
                    data: Rdata::Srv {
                        priority: 0,
                        weight: 100,
                        port: 8080,
                        target: host,
                    },
                },
                Rr {
                    owner: OutName::wire(ZONE),
                    ttl: 5,
                    data: Rdata::Cname(OutName::under(ZONE, &[b"x"])),
                },
                Rr {
                    owner: OutName::under(ZONE, &[b"dns-version"]),
                    ttl: 28800,
                    data: Rdata::Txt("1.1.0"),
                },
                Rr {
                    owner: OutName::under(b"\x07in-addr\x04arpa\x00", &[b"1", b"0", b"96", b"10"]),
                    ttl: 5,
                    data: Rdata::Ptr(OutName::under(ZONE, &[b"web", b"ns", b"svc"])),
                },
                Rr {
                    owner: OutName::wire(ZONE),
                    ttl: 5,
                    data: Rdata::Ns(OutName::under(ZONE, &[b"ns", b"dns"])),
                },
            ],
            authorities: vec![Rr {
                owner: OutName::wire(ZONE),
                ttl: 5,
                data: Rdata::Soa(Soa {
                    mname: b"\x02ns\x03dns\x07cluster\x05local\x00",
                    rname: b"\x0ahostmaster\x07cluster\x05local\x00",
                    serial: 7,
                    refresh: 7200,
                    retry: 1800,
                    expire: 86400,
                    minimum: 5,
                }),
            }],
            additionals: vec![
                Rr {
                    owner: host,
                    ttl: 5,
                    data: Rdata::A(Ipv4Addr::new(10, 244, 0, 1)),
                },
                Rr {
                    owner: dashed,
                    ttl: 5,
                    data: Rdata::Aaaa("fd00::1".parse().expect("ip")),
                },
            ],
            origin: Origin::Kubernetes,
        };
        let (bytes, _) = encode_for(&query, Transport::Udp, &answer);
        let message = Message::from_vec(&bytes).expect("hickory decodes our encoding");
        let text: Vec<String> = message
            .answers
            .iter()
            .chain(&message.authorities)
            .chain(&message.additionals)
            .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
            .collect();
        assert_eq!(
            text,
            [
                "_http._tcp.web.ns.svc.cluster.local. 5 0 100 8080 host-1.web.ns.svc.cluster.local.",
                "cluster.local. 5 x.cluster.local.",
                "dns-version.cluster.local. 28800 1.1.0",
                "1.0.96.10.in-addr.arpa. 5 web.ns.svc.cluster.local.",
                "cluster.local. 5 ns.dns.cluster.local.",
                "cluster.local. 5 ns.dns.cluster.local. hostmaster.cluster.local. 7 7200 1800 86400 5",
                "host-1.web.ns.svc.cluster.local. 5 10.244.0.1",
                "fd00--1.web.ns.svc.cluster.local. 5 fd00::1",
            ]
        );
        // The SRV target is written in full; the additional owners point into it.
        let target = b"\x06host-1\x03web\x02ns\x03svc\x07cluster\x05local\x00";
        assert_eq!(
            bytes.windows(target.len()).filter(|w| w == target).count(),
            1
        );
        // The zone is spelled out twice: in the question and in the SRV target. Every other
        // name ends in a pointer.
        let count = |needle: &[u8]| bytes.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(count(ZONE), 2);
        assert_eq!(
            count(b"\x02ns\x03dns"),
            1,
            "ns.dns written once, then pointed at"
        );
    }

    #[test]
    fn no_edns_in_response_without_edns_in_query() {
        let query = query_bytes("a.", RecordType::A, None);
        let (bytes, _) = encode_for(
            &query,
            Transport::Udp,
            &Answer::rcode(ResponseCode::Refused, Origin::Server),
        );
        let message = Message::from_vec(&bytes).expect("decodes");
        assert!(message.edns.is_none());
        assert_eq!(message.metadata.response_code, ResponseCode::Refused);
        assert!(!message.metadata.authoritative);
    }

    #[test]
    fn truncates_oversized_udp_but_not_tcp() {
        // 40 A records of 16 bytes each do not fit in 512 bytes.
        let query = query_bytes("web.example.", RecordType::A, None);
        let (bytes, encoded) = encode_for(&query, Transport::Udp, &a_records(40));
        assert!(encoded.truncated);
        assert!(bytes.len() <= 512);
        let message = Message::from_vec(&bytes).expect("decodes");
        assert!(message.metadata.truncation);
        assert!(message.answers.is_empty());
        assert_eq!(message.queries.len(), 1);

        let (bytes, encoded) = encode_for(&query, Transport::Tcp, &a_records(40));
        assert!(!encoded.truncated);
        let message = Message::from_vec(&bytes).expect("decodes");
        assert_eq!(message.answers.len(), 40);
    }

    #[test]
    fn edns_raises_the_udp_limit_up_to_the_server_maximum() {
        let query = query_bytes("web.example.", RecordType::A, Some(4096));
        let (bytes, _) = encode_for(&query, Transport::Udp, &a_records(40));
        let message = Message::from_vec(&bytes).expect("decodes");
        assert!(!message.metadata.truncation);
        assert_eq!(message.answers.len(), 40);

        // 100 records (~1.6 KB) exceed the server's 1232 even though the client offers 4096.
        let (bytes, encoded) = encode_for(&query, Transport::Udp, &a_records(100));
        assert!(encoded.truncated);
        assert!(bytes.len() <= 1232);
        // With a larger server maximum they fit.
        let request = parse(&query, Transport::Udp).expect("valid");
        let mut out = Vec::new();
        let encoded = encode(
            &request,
            &a_records(100),
            SizeLimit::of(&request, 4096),
            &mut out,
        );
        assert!(!encoded.truncated);
        assert_eq!(Message::from_vec(&out).expect("decodes").answers.len(), 100);
    }

    #[test]
    fn additional_records_that_do_not_fit_are_dropped_without_tc() {
        let query = query_bytes("web.example.", RecordType::A, None);
        let mut answer = a_records(2);
        answer.additionals = a_records(40).answers;
        let (bytes, encoded) = encode_for(&query, Transport::Udp, &answer);
        assert!(!encoded.truncated);
        assert!(bytes.len() <= 512);
        let message = Message::from_vec(&bytes).expect("decodes");
        assert!(!message.metadata.truncation);
        assert_eq!(message.answers.len(), 2);
        assert!(!message.additionals.is_empty() && message.additionals.len() < 40);
    }

    #[test]
    fn extended_rcode_goes_into_the_opt_record() {
        let query = query_bytes("a.", RecordType::A, Some(1232));
        let (bytes, _) = encode_for(
            &query,
            Transport::Udp,
            &Answer::rcode(ResponseCode::BADVERS, Origin::Server),
        );
        assert_eq!(bytes[3] & 0x0f, 0, "low bits of 16");
        let n = bytes.len();
        assert_eq!(bytes[n - 6], 1, "high bits of 16 in the OPT TTL");
    }

    #[test]
    fn do_bit_is_echoed_and_options_are_not() {
        let mut query = query_bytes("web.example.", RecordType::A, Some(4096));
        let n = query.len();
        query[n - 4] |= 0x80; // DO
        let (bytes, _) = encode_for(&query, Transport::Udp, &a_records(1));
        let edns = Message::from_vec(&bytes)
            .expect("decodes")
            .edns
            .expect("OPT");
        assert!(edns.flags().dnssec_ok);
        assert_eq!(&bytes[bytes.len() - 2..], &[0, 0], "RDLENGTH 0: no options");
        let query = query_bytes("web.example.", RecordType::A, Some(4096));
        let (bytes, _) = encode_for(&query, Transport::Udp, &a_records(1));
        let edns = Message::from_vec(&bytes)
            .expect("decodes")
            .edns
            .expect("OPT");
        assert!(!edns.flags().dnssec_ok);
    }

    #[test]
    fn writes_after_a_tcp_prefix() {
        let query = query_bytes("web.example.", RecordType::A, None);
        let request = parse(&query, Transport::Tcp).expect("valid");
        let mut out = vec![0, 0];
        encode(
            &request,
            &a_records(3),
            SizeLimit::of(&request, 1232),
            &mut out,
        );
        let message = Message::from_vec(&out[2..]).expect("pointers are relative to the message");
        assert_eq!(message.answers.len(), 3);
        assert_eq!(
            message.answers[2].data,
            RData::A(Ipv4Addr::new(10, 0, 0, 2).into())
        );
    }

    #[test]
    fn dashed_ips() {
        let dashed = |ip: &str| {
            String::from_utf8(DashedIp::new(ip.parse().expect("ip")).as_bytes().to_vec())
                .expect("ascii")
        };
        assert_eq!(dashed("10.244.0.1"), "10-244-0-1");
        assert_eq!(dashed("fd00::1"), "fd00--1");
        assert_eq!(dashed("fd00:1::"), "fd00-1--0");
        assert_eq!(dashed("::ffff:1.2.3.4"), "--ffff-1-2-3-4");
        assert_eq!(
            dashed("2001:db8:85a3:1234:5678:8a2e:370:7334"),
            "2001-db8-85a3-1234-5678-8a2e-370-7334"
        );
    }

    #[test]
    fn error_header_layout() {
        let bytes = encode_error(&ErrorReply {
            id: 0xbeef,
            opcode: 2,
            recursion_desired: true,
            rcode: 4,
        });
        assert_eq!(
            bytes,
            [0xbe, 0xef, 0x80 | (2 << 3) | 1, 4, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
