//! A DNS query, parsed once, without allocating.
//!
//! Every later step (the pipeline stages, the response encoder, the metrics) works from the
//! [`Request`] built here and never decodes the raw bytes again. The checks run cheapest
//! first, so junk is rejected before any name is read:
//!
//! 1. shorter than a header, or a response (QR set): dropped, nothing is sent back (answering
//!    responses could start a loop between two servers);
//! 2. opcode other than QUERY: NOTIMP;
//! 3. QDCOUNT other than 1: FORMERR;
//! 4. the question name: plain labels only (a compression pointer in the question can only
//!    point into the header), each at most 63 octets, 255 octets in all, inside the packet;
//!    then type and class; anything else is FORMERR;
//! 5. the remaining sections are walked record by record (names skipped, RDLENGTH checked
//!    against the packet); the additional section may hold one OPT record (RFC 6891) owned
//!    by the root; a second OPT, an OPT with another owner, or a record running past the end
//!    is FORMERR. Bytes after the last record are ignored.
//!
//! The question name is copied once, lower-cased, into a fixed buffer ([`QName`]); stages
//! compare names byte for byte. The question as received (with the client's case, for
//! clients using 0x20 randomisation) is echoed from the packet itself.

use std::fmt;

use hickory_proto::rr::{DNSClass, RecordType};

/// Length of the fixed DNS header (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;

/// Default largest UDP response this server sends and advertises in EDNS (the DNS Flag Day
/// 2020 value: avoids IP fragmentation on common paths). `--max-udp-payload` changes it.
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;

/// Largest UDP response to a client that did not use EDNS (RFC 1035 §4.2.1), and the
/// smallest payload size EDNS may announce (RFC 6891 §6.2.3).
pub const MIN_UDP_PAYLOAD: u16 = 512;

/// Longest name on the wire, root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_WIRE_LEN: usize = 255;

/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Record type of the EDNS OPT pseudo-record.
const OPT: u16 = 41;

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
    /// The largest UDP payload the client can receive, as announced.
    pub max_payload: u16,
    /// The DO bit; RFC 3225 §3 asks for it to be copied into the response.
    pub dnssec_ok: bool,
}

/// A question name in wire form, lower-cased, in a fixed buffer (no allocation).
#[derive(Clone)]
pub struct QName {
    wire: [u8; MAX_NAME_WIRE_LEN],
    len: u8,
    starts: [u8; 128],
    count: u8,
}

impl QName {
    /// The root name.
    pub fn root() -> Self {
        Self {
            wire: [0; MAX_NAME_WIRE_LEN],
            len: 1,
            starts: [0; 128],
            count: 0,
        }
    }

    /// Builds a name from presentation text such as `web.default.svc.cluster.local.` (no
    /// escapes; for tests and configuration, not for the query path).
    pub fn from_ascii(text: &str) -> Option<Self> {
        let mut name = Self::root();
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Some(name);
        }
        for label in trimmed.split('.') {
            name.push_label(label.as_bytes())?;
        }
        Some(name)
    }

    /// A name made of `labels` (leftmost first, lower-cased); `None` when one is empty or
    /// too long, or the name would be.
    pub fn from_labels<'l>(labels: impl IntoIterator<Item = &'l [u8]>) -> Option<Self> {
        let mut name = Self::root();
        for label in labels {
            name.push_label(label)?;
        }
        Some(name)
    }

    /// Reads an uncompressed name in wire form (lower-casing it); `None` when malformed.
    pub fn from_wire(wire: &[u8]) -> Option<Self> {
        let mut name = Self::root();
        let mut rest = wire;
        loop {
            let (&len, tail) = rest.split_first()?;
            if len == 0 {
                return Some(name);
            }
            let label = tail.get(..usize::from(len))?;
            name.push_label(label)?;
            rest = &tail[usize::from(len)..];
        }
    }

    /// Appends a label (lower-cased) before the root; `None` when it does not fit.
    fn push_label(&mut self, label: &[u8]) -> Option<()> {
        let at = usize::from(self.len) - 1;
        if label.is_empty()
            || label.len() > MAX_LABEL_LEN
            || at + 1 + label.len() + 1 > MAX_NAME_WIRE_LEN
        {
            return None;
        }
        self.wire[at] = label.len() as u8;
        for (slot, byte) in self.wire[at + 1..].iter_mut().zip(label) {
            *slot = byte.to_ascii_lowercase();
        }
        self.wire[at + 1 + label.len()] = 0;
        self.starts[usize::from(self.count)] = at as u8;
        self.count += 1;
        self.len = (at + 1 + label.len() + 1) as u8;
        Some(())
    }

    /// The name in wire form (length-prefixed labels, ending with the root's zero octet).
    pub fn wire(&self) -> &[u8] {
        &self.wire[..usize::from(self.len)]
    }

    /// Number of labels, the root not counted.
    pub fn label_count(&self) -> usize {
        usize::from(self.count)
    }

    /// Label `i` (0 = leftmost), without its length octet.
    pub fn label(&self, i: usize) -> Option<&[u8]> {
        let start = usize::from(*self.starts.get(..usize::from(self.count))?.get(i)?);
        let len = usize::from(self.wire[start]);
        self.wire.get(start + 1..start + 1 + len)
    }

    /// The labels, leftmost first.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.label_count()).map(|i| self.label(i).unwrap_or_default())
    }

    /// Whether this name equals `zone` or lies below it (`zone` in wire form, lower case).
    pub fn is_in(&self, zone: &[u8]) -> bool {
        let wire = self.wire();
        if zone.len() > wire.len() {
            return false;
        }
        let offset = wire.len() - zone.len();
        // The suffix must start on a label boundary (the root's is the last octet).
        (offset == 0
            || offset == wire.len() - 1
            || self.starts[..self.label_count()].contains(&(offset as u8)))
            && &wire[offset..] == zone
    }
}

impl PartialEq for QName {
    fn eq(&self, other: &Self) -> bool {
        self.wire() == other.wire()
    }
}

impl Eq for QName {}

impl fmt::Display for QName {
    /// Presentation form with a trailing dot; bytes outside printable ASCII, dots and
    /// backslashes inside labels are escaped (`\DDD`, `\.`), as in zone files.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return f.write_str(".");
        }
        for label in self.labels() {
            for &byte in label {
                match byte {
                    b'.' | b'\\' => write!(f, "\\{}", char::from(byte))?,
                    0x21..=0x7e => write!(f, "{}", char::from(byte))?,
                    _ => write!(f, "\\{byte:03}")?,
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for QName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QName({self})")
    }
}

/// A query that passed every header and format check. Borrows the packet for the question
/// it echoes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'p> {
    /// Message id, copied into the response.
    pub id: u16,
    /// RD bit, copied into the response.
    pub recursion_desired: bool,
    /// CD bit, copied into the response.
    pub checking_disabled: bool,
    /// The question name, lower-cased: what every stage matches on.
    pub name: QName,
    /// The question section exactly as received (name in the client's case, type, class).
    pub question: &'p [u8],
    /// Question type.
    pub qtype: RecordType,
    /// Question class.
    pub qclass: DNSClass,
    /// The client's EDNS parameters, if it sent an OPT record.
    pub edns: Option<RequestEdns>,
    /// The transport the query arrived on.
    pub transport: Transport,
    /// Size of the query in bytes (for the request size metric).
    pub size: usize,
}

impl Request<'_> {
    /// The question type.
    pub fn qtype(&self) -> RecordType {
        self.qtype
    }

    /// The largest response, in bytes, this request may receive. On UDP that is the client's
    /// EDNS payload size (512 without EDNS, and never below 512), capped at `max_udp`; on TCP
    /// it is the largest message the length prefix can carry.
    pub fn max_response_len(&self, max_udp: u16) -> usize {
        match self.transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => {
                let asked = self.edns.map_or(MIN_UDP_PAYLOAD, |edns| edns.max_payload);
                usize::from(asked.min(max_udp).max(MIN_UDP_PAYLOAD))
            }
        }
    }
}

/// How large a response may be, and the UDP payload size its OPT record advertises: one
/// explicit bound for every encoder ([`crate::wire`]), instead of a transport that stands
/// for "no limit".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeLimit {
    /// The largest response, in bytes.
    pub max_len: usize,
    /// The payload size advertised in an OPT record (the server's `--max-udp-payload`).
    pub payload: u16,
}

impl SizeLimit {
    /// What `request` may receive ([`Request::max_response_len`]), advertising `max_udp`.
    pub fn of(request: &Request<'_>, max_udp: u16) -> Self {
        Self {
            max_len: request.max_response_len(max_udp),
            payload: max_udp,
        }
    }

    /// The largest message a TCP length prefix can carry, advertising `max_udp`: for an
    /// answer that is shaped (and bounded) afterwards, and for answers read back internally.
    pub fn whole(max_udp: u16) -> Self {
        Self {
            max_len: usize::from(u16::MAX),
            payload: max_udp,
        }
    }
}

/// A request kept beyond the buffer it arrived in (a query waiting on an upstream): the
/// packet copied once, with what [`parse`] found in it, so it is never parsed again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRequest {
    packet: Vec<u8>,
    /// Where the question section starts in `packet`, and its length.
    question: (usize, usize),
    id: u16,
    recursion_desired: bool,
    checking_disabled: bool,
    name: QName,
    qtype: RecordType,
    qclass: DNSClass,
    edns: Option<RequestEdns>,
    transport: Transport,
}

impl OwnedRequest {
    /// Copies `packet`, which `request` was parsed from. `None` if `request.question` does
    /// not lie inside `packet` (it always does for a request [`parse`] returned for it).
    pub fn new(packet: &[u8], request: &Request<'_>) -> Option<Self> {
        let start = (request.question.as_ptr() as usize).checked_sub(packet.as_ptr() as usize)?;
        packet.get(start..start.checked_add(request.question.len())?)?;
        Some(Self {
            packet: packet.to_vec(),
            question: (start, request.question.len()),
            id: request.id,
            recursion_desired: request.recursion_desired,
            checking_disabled: request.checking_disabled,
            name: request.name.clone(),
            qtype: request.qtype,
            qclass: request.qclass,
            edns: request.edns,
            transport: request.transport,
        })
    }

    /// The request, borrowing the kept packet.
    pub fn request(&self) -> Request<'_> {
        let (start, len) = self.question;
        Request {
            id: self.id,
            recursion_desired: self.recursion_desired,
            checking_disabled: self.checking_disabled,
            name: self.name.clone(),
            question: self.packet.get(start..start + len).unwrap_or_default(),
            qtype: self.qtype,
            qclass: self.qclass,
            edns: self.edns,
            transport: self.transport,
            size: self.packet.len(),
        }
    }

    /// The question name, lower-cased.
    pub fn name(&self) -> &QName {
        &self.name
    }

    /// The question type.
    pub fn qtype(&self) -> RecordType {
        self.qtype
    }

    /// The transport the query arrived on.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether the query had the DO bit.
    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|edns| edns.dnssec_ok)
    }

    /// The packet as received.
    pub fn packet(&self) -> &[u8] {
        &self.packet
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
    /// The 4-bit response code.
    pub rcode: u8,
}

/// RCODE FORMERR.
pub const FORMERR: u8 = 1;
/// RCODE NOTIMP.
pub const NOTIMP: u8 = 4;

/// Why a packet did not become a [`Request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Not worth an answer: shorter than a header, or itself a response.
    Drop,
    /// Answer with a header-only error (FORMERR, NOTIMP).
    Reply(ErrorReply),
}

/// A cursor over the packet; every read is bounds-checked.
struct Cursor<'p> {
    packet: &'p [u8],
    pos: usize,
}

impl<'p> Cursor<'p> {
    fn u8(&mut self) -> Option<u8> {
        let byte = *self.packet.get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes = self.packet.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let bytes = self.packet.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        if end > self.packet.len() {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// Reads the question name: plain labels only.
    fn question_name(&mut self) -> Option<QName> {
        let mut name = QName::root();
        loop {
            let len = usize::from(self.u8()?);
            if len == 0 {
                return Some(name);
            }
            if len > MAX_LABEL_LEN {
                // A compression pointer (0xC0) or a reserved label type.
                return None;
            }
            let label = self.packet.get(self.pos..self.pos + len)?;
            name.push_label(label)?;
            self.pos += len;
        }
    }

    /// Skips a record owner name: labels, ending with the root or a compression pointer.
    /// Returns whether the name was the root alone.
    fn skip_name(&mut self) -> Option<bool> {
        let mut total = 0usize;
        let mut first = true;
        loop {
            let len = self.u8()?;
            match len {
                0 => return Some(first),
                1..=63 => {
                    total += usize::from(len) + 1;
                    if total >= MAX_NAME_WIRE_LEN {
                        return None;
                    }
                    self.skip(usize::from(len))?;
                }
                0xc0..=0xff => {
                    self.u8()?;
                    return Some(false);
                }
                _ => return None,
            }
            first = false;
        }
    }
}

/// Parses the bytes of one DNS message into a [`Request`]. Never panics, whatever the input.
pub fn parse(packet: &[u8], transport: Transport) -> Result<Request<'_>, Rejected> {
    let Some(
        &[
            id_hi,
            id_lo,
            flags,
            flags_lo,
            qd_hi,
            qd_lo,
            an_hi,
            an_lo,
            ns_hi,
            ns_lo,
            ar_hi,
            ar_lo,
        ],
    ) = packet.get(..HEADER_LEN)
    else {
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
        return reply(NOTIMP);
    }
    if u16::from_be_bytes([qd_hi, qd_lo]) != 1 {
        return reply(FORMERR);
    }
    let mut cursor = Cursor {
        packet,
        pos: HEADER_LEN,
    };
    let Some(name) = cursor.question_name() else {
        return reply(FORMERR);
    };
    let (Some(qtype), Some(qclass)) = (cursor.u16(), cursor.u16()) else {
        return reply(FORMERR);
    };
    let question = &packet[HEADER_LEN..cursor.pos];

    let other = usize::from(u16::from_be_bytes([an_hi, an_lo]))
        + usize::from(u16::from_be_bytes([ns_hi, ns_lo]));
    let additional = usize::from(u16::from_be_bytes([ar_hi, ar_lo]));
    let mut edns = None;
    for i in 0..other + additional {
        let Some(record) = skip_record(&mut cursor) else {
            return reply(FORMERR);
        };
        if record.rtype != OPT {
            continue;
        }
        if i < other || !record.root_owner || edns.is_some() {
            // OPT only in the additional section, owned by the root, at most once.
            return reply(FORMERR);
        }
        let [_extended_rcode, version, do_flags, _] = record.ttl.to_be_bytes();
        edns = Some(RequestEdns {
            version,
            max_payload: record.class,
            dnssec_ok: do_flags & 0x80 != 0,
        });
    }

    Ok(Request {
        id,
        recursion_desired,
        checking_disabled: flags_lo & 0x10 != 0,
        name,
        question,
        qtype: RecordType::from(qtype),
        qclass: DNSClass::from(qclass),
        edns,
        transport,
        size: packet.len(),
    })
}

/// The fields of a skipped record that parsing needs.
struct Skipped {
    root_owner: bool,
    rtype: u16,
    class: u16,
    ttl: u32,
}

fn skip_record(cursor: &mut Cursor<'_>) -> Option<Skipped> {
    let root_owner = cursor.skip_name()?;
    let rtype = cursor.u16()?;
    let class = cursor.u16()?;
    let ttl = cursor.u32()?;
    let rdlength = cursor.u16()?;
    cursor.skip(usize::from(rdlength))?;
    Some(Skipped {
        root_owner,
        rtype,
        class,
        ttl,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::Name;

    /// Encodes a query for `name`/`qtype` with id 0x1234 and RD set, with EDNS if
    /// `edns_payload` is given (hickory's encoder: independent of the parser under test).
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

    fn formerr(bytes: &[u8]) -> bool {
        matches!(parse(bytes, Transport::Udp), Err(Rejected::Reply(reply)) if reply.rcode == FORMERR)
    }

    /// The `proto` label values are CoreDNS's, so its dashboards and alerts keep working.
    #[test]
    fn transports_are_labelled_as_coredns_labels_them() {
        assert_eq!(Transport::Udp.label(), "udp");
        assert_eq!(Transport::Tcp.label(), "tcp");
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
        assert_eq!(request.qclass, DNSClass::IN);
        assert_eq!(request.name.to_string(), "web.default.svc.cluster.local.");
        assert_eq!(request.name.label_count(), 5);
        assert_eq!(request.name.label(1), Some(&b"default"[..]));
        assert_eq!(request.name.label(5), None);
        assert_eq!(
            &request.question[1..4],
            b"WeB",
            "question echoed as received"
        );
        assert_eq!(request.question.len(), bytes.len() - HEADER_LEN - 11);
        assert_eq!(
            request.edns,
            Some(RequestEdns {
                version: 0,
                max_payload: 4096,
                dnssec_ok: false
            })
        );
        assert_eq!(request.max_response_len(1232), 1232);
        assert_eq!(request.max_response_len(4096), 4096);
        assert_eq!(request.size, bytes.len());
    }

    #[test]
    fn response_size_follows_transport_and_edns() {
        let limit = |edns: Option<u16>, transport| {
            let bytes = query_bytes("a.", RecordType::A, edns);
            parse(&bytes, transport)
                .expect("valid")
                .max_response_len(1232)
        };
        assert_eq!(limit(None, Transport::Udp), 512);
        assert_eq!(limit(Some(100), Transport::Udp), 512);
        assert_eq!(limit(Some(800), Transport::Udp), 800);
        assert_eq!(limit(Some(4096), Transport::Udp), 1232);
        assert_eq!(limit(None, Transport::Tcp), 65535);
    }

    #[test]
    fn names_compare_and_print() {
        let name = QName::from_ascii("A.b.Cluster.local").expect("name");
        assert_eq!(name.to_string(), "a.b.cluster.local.");
        let zone = QName::from_ascii("cluster.local.").expect("zone");
        assert!(name.is_in(zone.wire()));
        assert!(zone.is_in(zone.wire()));
        assert!(QName::from_ascii("xcluster.local.").is_some_and(|n| !n.is_in(zone.wire())));
        assert!(!zone.is_in(name.wire()));
        assert!(name.is_in(QName::root().wire()));
        assert_eq!(QName::root().to_string(), ".");
        assert!(QName::from_ascii(&"a".repeat(64)).is_none());
        assert!(QName::from_ascii(&"abc.".repeat(64)).is_none(), "over 255");
        assert!(QName::from_ascii(&"abc.".repeat(63)).is_some());
        // The limits themselves are allowed: a 63-octet label, a 255-octet name.
        assert!(
            QName::from_ascii(&"a".repeat(63)).is_some(),
            "63-octet label"
        );
        let longest = format!(
            "{}{}",
            format!("{}.", "a".repeat(63)).repeat(3),
            "b".repeat(61)
        );
        assert_eq!(
            QName::from_ascii(&longest).map(|n| n.wire().len()),
            Some(MAX_NAME_WIRE_LEN)
        );
        let over = format!(
            "{}{}",
            format!("{}.", "a".repeat(63)).repeat(3),
            "b".repeat(62)
        );
        assert!(QName::from_ascii(&over).is_none(), "256 octets");
        assert_eq!(QName::from_wire(name.wire()), Some(name.clone()));
        assert_eq!(QName::from_wire(b"\x03abc"), None, "no root");
        assert_eq!(QName::from_wire(b"\x05ab\x00"), None, "short label");
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
        assert_eq!(reply.rcode, NOTIMP);
        assert_eq!(reply.opcode, 2);
        assert_eq!(reply.id, 0x1234);
        assert!(reply.recursion_desired);
    }

    /// The malformed-packet table (RFC 9267 classes and header-count lies): every row is a
    /// query edited one way, and the outcome it must get.
    #[test]
    fn malformed_packet_table() {
        let base = query_bytes("web.default.svc.cluster.local.", RecordType::A, None);
        let with_opt = query_bytes("web.default.svc.cluster.local.", RecordType::A, Some(1232));
        let qend = base.len(); // no OPT: the question ends the packet
        let edit = |bytes: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = bytes.to_vec();
            f(&mut out);
            out
        };
        let opt_rr = |owner: &[u8]| {
            let mut rr = owner.to_vec();
            rr.extend_from_slice(&[0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
            rr
        };
        #[derive(Debug, PartialEq)]
        enum Want {
            Ok,
            FormErr,
            NotImp,
            Drop,
        }
        let rows: Vec<(&str, Vec<u8>, Want)> = vec![
            ("well formed", base.clone(), Want::Ok),
            ("well formed with OPT", with_opt.clone(), Want::Ok),
            ("empty", vec![], Want::Drop),
            ("11-byte header", base[..11].to_vec(), Want::Drop),
            ("QR set", edit(&base, &|p| p[2] |= 0x80), Want::Drop),
            (
                "opcode UPDATE",
                edit(&base, &|p| p[2] |= 5 << 3),
                Want::NotImp,
            ),
            (
                "opcode NOTIFY",
                edit(&base, &|p| p[2] |= 4 << 3),
                Want::NotImp,
            ),
            ("opcode 15", edit(&base, &|p| p[2] |= 15 << 3), Want::NotImp),
            ("QDCOUNT 0", edit(&base, &|p| p[5] = 0), Want::FormErr),
            ("QDCOUNT 2", edit(&base, &|p| p[5] = 2), Want::FormErr),
            (
                "QDCOUNT 65535",
                edit(&base, &|p| {
                    p[4] = 0xff;
                    p[5] = 0xff
                }),
                Want::FormErr,
            ),
            ("header only", base[..HEADER_LEN].to_vec(), Want::FormErr),
            (
                "name cut inside a label",
                base[..15].to_vec(),
                Want::FormErr,
            ),
            (
                "name without its root",
                base[..qend - 5].to_vec(),
                Want::FormErr,
            ),
            ("no class", base[..qend - 2].to_vec(), Want::FormErr),
            ("label of 64", edit(&base, &|p| p[12] = 64), Want::FormErr),
            (
                "label type 0x40",
                edit(&base, &|p| p[12] = 0x41),
                Want::FormErr,
            ),
            (
                "pointer in the question",
                edit(&base, &|p| {
                    p[12] = 0xc0;
                    p[13] = 12
                }),
                Want::FormErr,
            ),
            (
                "pointer to itself",
                edit(&base, &|p| {
                    p[12] = 0xc0;
                    p[13] = 12;
                    p.truncate(14)
                }),
                Want::FormErr,
            ),
            (
                "name over 255 octets",
                {
                    let mut p = base[..HEADER_LEN].to_vec();
                    for _ in 0..5 {
                        p.push(63);
                        p.extend_from_slice(&[b'a'; 63]);
                    }
                    p.extend_from_slice(&[0, 0, 1, 0, 1]);
                    p
                },
                Want::FormErr,
            ),
            (
                "ARCOUNT 1, nothing there",
                edit(&base, &|p| p[11] = 1),
                Want::FormErr,
            ),
            (
                "ANCOUNT 1, nothing there",
                edit(&base, &|p| p[7] = 1),
                Want::FormErr,
            ),
            (
                "OPT RDLENGTH past the end",
                edit(&with_opt, &|p| {
                    let n = p.len();
                    p[n - 1] = 10
                }),
                Want::FormErr,
            ),
            (
                "two OPT records",
                edit(&base, &|p| {
                    p[11] = 2;
                    p.extend(opt_rr(&[0]));
                    p.extend(opt_rr(&[0]))
                }),
                Want::FormErr,
            ),
            (
                "OPT not owned by the root",
                edit(&base, &|p| {
                    p[11] = 1;
                    p.extend(opt_rr(&[1, b'a', 0]))
                }),
                Want::FormErr,
            ),
            (
                "OPT in the answer section",
                edit(&base, &|p| {
                    p[7] = 1;
                    p.extend(opt_rr(&[0]))
                }),
                Want::FormErr,
            ),
            (
                "compressed owner in additional (allowed)",
                edit(&base, &|p| {
                    p[11] = 1;
                    p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 10, 0, 0, 1]);
                }),
                Want::Ok,
            ),
            (
                "trailing bytes (ignored)",
                edit(&base, &|p| p.extend_from_slice(&[1, 2, 3])),
                Want::Ok,
            ),
            (
                "binary label (allowed, compared as bytes)",
                edit(&base, &|p| p[13] = 0xff),
                Want::Ok,
            ),
        ];
        for (what, packet, want) in rows {
            let got = match parse(&packet, Transport::Udp) {
                Ok(_) => Want::Ok,
                Err(Rejected::Drop) => Want::Drop,
                Err(Rejected::Reply(reply)) if reply.rcode == FORMERR => Want::FormErr,
                Err(Rejected::Reply(reply)) if reply.rcode == NOTIMP => Want::NotImp,
                Err(other) => panic!("{what}: unexpected {other:?}"),
            };
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn reads_edns_version_and_do() {
        let mut bytes = query_bytes("a.", RecordType::A, Some(4096));
        let n = bytes.len();
        // OPT TTL: extended rcode, version, DO|Z, Z.
        bytes[n - 5] = 1;
        bytes[n - 4] = 0x80;
        let request = parse(&bytes, Transport::Udp).expect("valid");
        assert_eq!(
            request.edns,
            Some(RequestEdns {
                version: 1,
                max_payload: 4096,
                dnssec_ok: true
            })
        );
        assert!(formerr(&bytes[..n - 1]), "cut OPT");
    }
}
