//! Owned replies: what comes back from an upstream (or the cache, or a zone transfer), and
//! the question it answers.
//!
//! Part of the floor every stage shares (with [`crate::request`] and [`crate::wire`]): the
//! forward stage fills a [`Reply`], the answer cache keeps it under its [`Key`], the wire
//! encoders write it, and the client-aware path shapes it. Nothing here imports a stage.
//! Local answers (cluster names, zones) are borrowed records instead
//! ([`crate::wire::answer::Answer`]): they never need to be owned.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};

use crate::request::Request;

/// A forwarded reply, after the forward stage's bailiwick checks: what is cached and
/// answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The upstream's response code.
    pub rcode: ResponseCode,
    /// The reply had TC set (a UDP reply that could not be retried over TCP).
    pub truncated: bool,
    /// Kept answer records.
    pub answers: Vec<Record>,
    /// Kept authority records.
    pub authorities: Vec<Record>,
    /// Kept additional records.
    pub additionals: Vec<Record>,
}

impl Reply {
    /// A SERVFAIL with no records.
    pub fn servfail() -> Self {
        Self {
            rcode: ResponseCode::ServFail,
            truncated: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// The records of an encoded response.
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        let message = hickory_proto::op::Message::from_vec(bytes).ok()?;
        Some(Self {
            rcode: message.metadata.response_code,
            truncated: message.metadata.truncation,
            answers: message.answers,
            authorities: message.authorities,
            additionals: message.additionals,
        })
    }
}

/// The question name of a request as a hickory [`Name`] (lower case, absolute).
pub(crate) fn question_name(request: &Request<'_>) -> Option<Name> {
    Name::read(&mut BinDecoder::new(request.name.wire())).ok()
}

/// What an owned reply answers: the question, and everything else that changes the answer
/// (the DO and CD bits: a DNSSEC-aware client must not get an answer fetched without
/// them). The answer cache's key and the identity of an upstream query (identical keys in
/// flight share one upstream exchange).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// The question name, lower case.
    pub name: Name,
    /// The question type.
    pub qtype: RecordType,
    /// The question class.
    pub qclass: DNSClass,
    /// The client's DO bit.
    pub dnssec_ok: bool,
    /// The client's CD bit.
    pub checking_disabled: bool,
    /// Reserved for stages that answer differently per client (policies, views): the
    /// decision that applied. 0 for everyone today.
    pub partition: u32,
}

impl Key {
    /// The key of `request`.
    pub fn of(request: &Request<'_>) -> Option<Self> {
        Some(Self {
            name: question_name(request)?,
            qtype: request.qtype,
            qclass: request.qclass,
            dnssec_ok: request.edns.is_some_and(|edns| edns.dnssec_ok),
            checking_disabled: request.checking_disabled,
            partition: 0,
        })
    }
}

/// A zone transfer to send: the records, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// SOA, every record, SOA.
    pub records: Vec<Record>,
}
