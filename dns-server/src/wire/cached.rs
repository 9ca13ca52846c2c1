//! Cached replies kept encoded, so that a cache hit is a copy with a few bytes patched.
//!
//! When a reply is stored, its records are encoded once, as they follow the question in a
//! response (names compressed against a question at offset 12, which is where every
//! response has it). A hit then writes the header, the client's question as received (the
//! same length as the lower-cased name the template was built with, so every compression
//! pointer still lands), the template with each record's TTL set to what is left, and an
//! OPT record when the query had one: no record is cloned and nothing is allocated.
//!
//! The result is the message [`super::reply::encode`] builds (a test
//! holds them equal), except that names sharing a suffix with the question carry the
//! client's spelling of it (compression points into the question, as in CoreDNS's
//! answers; names compare case-insensitively); whatever the fast path does not cover — an answer larger than the
//! client may receive, which loses records or gets TC — takes that slower path.

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::DNSClass;

use super::edns::{OPT_LEN, write_opt};
use crate::reply::{Key, Reply};
use crate::request::{Request, SizeLimit};

/// The records of a reply in wire form, and where their TTLs are.
#[derive(Debug)]
pub struct WireReply {
    rcode: u8,
    counts: [u16; 3],
    /// Length of the question section the template was built after.
    question_len: usize,
    body: Box<[u8]>,
    /// Offset in `body` of each record's TTL, and the TTL the upstream gave it.
    ttls: Box<[(usize, u32)]>,
}

impl WireReply {
    /// Encodes `reply` as the answer to `key`; `None` if it cannot be (it is then answered
    /// the slow way).
    pub fn build(key: &Key, reply: &Reply) -> Option<Self> {
        let rcode = u8::try_from(u16::from(reply.rcode))
            .ok()
            .filter(|r| *r < 16)?;
        let mut message = Message::new(0, MessageType::Response, OpCode::Query);
        let mut query = Query::query(key.name.clone(), key.qtype);
        query.set_query_class(DNSClass::IN);
        message.queries.push(query);
        message.answers = reply.answers.clone();
        message.authorities = reply.authorities.clone();
        message.additionals = reply.additionals.clone();
        let bytes = message.to_vec().ok()?;
        let question_len = question_len(&bytes)?;
        let body: Box<[u8]> = bytes.get(12 + question_len..)?.into();
        let count = |i: usize| u16::try_from(i).ok();
        let counts = [
            count(reply.answers.len())?,
            count(reply.authorities.len())?,
            count(reply.additionals.len())?,
        ];
        let total = counts.iter().map(|c| usize::from(*c)).sum();
        let ttls = ttl_offsets(&body, total)?.into_boxed_slice();
        Some(Self {
            rcode,
            counts,
            question_len,
            body,
            ttls,
        })
    }

    /// Bytes of the encoded records and of their TTL table.
    pub fn encoded_len(&self) -> usize {
        self.body.len() + self.ttls.len() * std::mem::size_of::<(usize, u32)>()
    }

    /// Writes the response to `request` at the end of `out`, each TTL at most `ttl`
    /// (exactly `ttl` when `stale`); `false` (and nothing written) when it does not fit
    /// what the client may receive or the question does not match the template.
    pub fn write(
        &self,
        request: &Request<'_>,
        ttl: u32,
        stale: bool,
        limit: SizeLimit,
        out: &mut Vec<u8>,
    ) -> bool {
        if request.question.len() != self.question_len {
            return false;
        }
        let opt_len = if request.edns.is_some() { OPT_LEN } else { 0 };
        let size = 12 + self.question_len + self.body.len() + opt_len;
        if size > limit.max_len {
            return false;
        }
        let start = out.len();
        out.reserve(size);
        out.extend_from_slice(&request.id.to_be_bytes());
        // QR, opcode QUERY, RD copied; RA set, CD copied, the reply's rcode.
        out.push(0x80 | u8::from(request.recursion_desired));
        out.push(0x80 | (u8::from(request.checking_disabled) << 4) | self.rcode);
        let additional = self.counts[2] + u16::from(request.edns.is_some());
        for count in [1, self.counts[0], self.counts[1], additional] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        out.extend_from_slice(request.question);
        let body_at = out.len();
        out.extend_from_slice(&self.body);
        for &(offset, original) in self.ttls.iter() {
            let value = if stale { ttl } else { original.min(ttl) };
            out[body_at + offset..body_at + offset + 4].copy_from_slice(&value.to_be_bytes());
        }
        if let Some(edns) = request.edns {
            write_opt(out, limit.payload, 0, edns.dnssec_ok);
        }
        debug_assert_eq!(out.len() - start, size);
        true
    }
}

/// Length of the (single, uncompressed) question section of `message`.
fn question_len(message: &[u8]) -> Option<usize> {
    let end = skip_name(message, 12)?;
    Some(end + 4 - 12).filter(|_| message.len() >= end + 4)
}

/// The offset after the name at `at` (labels, ending with the root or a pointer).
fn skip_name(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *bytes.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// The offsets of the TTLs of the `count` records in `body`.
fn ttl_offsets(body: &[u8], count: usize) -> Option<Vec<(usize, u32)>> {
    let mut offsets = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        at = skip_name(body, at)?;
        let ttl_at = at + 4;
        let ttl = u32::from_be_bytes(body.get(ttl_at..ttl_at + 4)?.try_into().ok()?);
        let rdlen = u16::from_be_bytes(body.get(ttl_at + 4..ttl_at + 6)?.try_into().ok()?);
        offsets.push((ttl_at, ttl));
        at = ttl_at + 6 + usize::from(rdlen);
    }
    (at == body.len()).then_some(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::request::{Transport, parse, tests::query_bytes};
    use crate::wire::answer::Origin;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::{A, CNAME, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn n(text: &str) -> Name {
        Name::from_ascii(text).expect("name")
    }

    fn replies() -> Vec<(&'static str, RecordType, Reply)> {
        let answer = Reply {
            rcode: ResponseCode::NoError,
            truncated: false,
            answers: vec![
                Record::from_rdata(
                    n("www.example.com."),
                    300,
                    RData::CNAME(CNAME(n("edge.example.com."))),
                ),
                Record::from_rdata(n("edge.example.com."), 60, RData::A(A::new(192, 0, 2, 1))),
                Record::from_rdata(n("edge.example.com."), 60, RData::A(A::new(192, 0, 2, 2))),
            ],
            authorities: vec![],
            additionals: vec![],
        };
        let denial = Reply {
            rcode: ResponseCode::NXDomain,
            truncated: false,
            answers: vec![],
            authorities: vec![Record::from_rdata(
                n("example.com."),
                900,
                RData::SOA(SOA::new(
                    n("ns.example.com."),
                    n("hostmaster.example.com."),
                    7,
                    7200,
                    1800,
                    86400,
                    300,
                )),
            )],
            additionals: vec![],
        };
        vec![
            ("www.example.com.", RecordType::A, answer),
            ("nope.example.com.", RecordType::AAAA, denial),
        ]
    }

    #[test]
    fn a_hit_encodes_like_the_slow_path() {
        for (name, qtype, reply) in replies() {
            let key_packet = query_bytes(name, qtype, None);
            let key = Key::of(&parse(&key_packet, Transport::Udp).expect("parses")).expect("key");
            let wire = WireReply::build(&key, &reply).expect("encodes");
            let spelled = name.to_uppercase();
            for (edns, transport) in [
                (None, Transport::Udp),
                (Some(1232), Transport::Udp),
                (Some(4096), Transport::Tcp),
            ] {
                let packet = query_bytes(&spelled, qtype, edns);
                let request = parse(&packet, transport).expect("parses");
                for (ttl, stale) in [(40, false), (30, true), (1000, false)] {
                    let mut fast = Vec::new();
                    assert!(wire.write(
                        &request,
                        ttl,
                        stale,
                        SizeLimit::of(&request, 1232),
                        &mut fast
                    ));
                    let hit = crate::answer_cache::Hit {
                        reply: std::sync::Arc::new(reply.clone()),
                        kind: crate::answer_cache::Kind::Success,
                        ttl,
                        stale,
                        wire: None,
                        refresh: false,
                    };
                    let mut slow = Vec::new();
                    super::super::reply::encode(
                        &request,
                        &hit.reply_for(),
                        Origin::Cache,
                        SizeLimit::of(&request, 1232),
                        &mut slow,
                    );
                    let (fast, slow) = (
                        Message::from_vec(&fast).expect("fast decodes"),
                        Message::from_vec(&slow).expect("slow decodes"),
                    );
                    // Names compressed against the question take the client's spelling of
                    // the shared suffix (as with CoreDNS); names compare case-insensitively.
                    assert_eq!(
                        fast.to_string().to_lowercase(),
                        slow.to_string().to_lowercase(),
                        "{name} {edns:?} {ttl}"
                    );
                    assert_eq!(fast.metadata.id, request.id);
                    assert_eq!(fast.queries[0].name().to_ascii(), spelled);
                }
            }
        }
    }

    #[test]
    fn too_large_for_the_client_takes_the_slow_path() {
        let (name, qtype, mut reply) = replies().remove(0);
        for i in 0..60u8 {
            reply.answers.push(Record::from_rdata(
                n("edge.example.com."),
                60,
                RData::A(A::new(198, 51, 100, i)),
            ));
        }
        let packet = query_bytes(name, qtype, None);
        let request = parse(&packet, Transport::Udp).expect("parses");
        let wire = WireReply::build(&Key::of(&request).expect("key"), &reply).expect("encodes");
        let mut out = Vec::new();
        assert!(
            !wire.write(&request, 60, false, SizeLimit::of(&request, 1232), &mut out),
            "over 512"
        );
        assert!(out.is_empty());
    }
}
