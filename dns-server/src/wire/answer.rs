//! What a local stage answers with: records that borrow from the snapshots ([`Rr`], with
//! names as [`OutName`]s and data as [`Rdata`]), gathered in an [`Answer`] with who gave it
//! ([`Origin`]). Nothing here allocates beyond the answer's record lists; the writer
//! ([`super::writer`]) turns an [`Answer`] into response bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::request::QName;

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

/// Most labels [`OutName::Parts`] puts before its tail.
pub(crate) const MAX_HEAD_LABELS: usize = 4;

/// One label of an [`OutName`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Label<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// An IP address written as a dashed label ([`DashedIp`]), formatted when written.
    Dashed(IpAddr),
}

impl<'a> From<&'a [u8]> for Label<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self::Bytes(bytes)
    }
}

impl<'a> From<&'a str> for Label<'a> {
    fn from(text: &'a str) -> Self {
        Self::Bytes(text.as_bytes())
    }
}

/// A name to write: the question's, or a few labels in front of a name in wire form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutName<'a> {
    /// The question name, as the client wrote it.
    Query,
    /// `head` labels (leftmost first) followed by `tail`, a name in wire form ending with
    /// the root (e.g. the cluster zone).
    Parts {
        /// The leading labels; only the first `len` are used.
        head: [Label<'a>; MAX_HEAD_LABELS],
        /// How many of `head` are used.
        len: u8,
        /// The rest of the name, in wire form.
        tail: &'a [u8],
    },
}

impl<'a> OutName<'a> {
    /// `labels` (leftmost first, at most [`MAX_HEAD_LABELS`]; extra ones are dropped) in
    /// front of `tail` (wire form).
    pub fn new(tail: &'a [u8], labels: &[Label<'a>]) -> Self {
        let mut head = [Label::Bytes(&[]); MAX_HEAD_LABELS];
        let len = labels.len().min(MAX_HEAD_LABELS);
        head[..len].copy_from_slice(&labels[..len]);
        Self::Parts {
            head,
            len: len as u8,
            tail,
        }
    }

    /// Byte-string `labels` in front of `tail` (wire form).
    pub fn under(tail: &'a [u8], labels: &[&'a [u8]]) -> Self {
        let mut head = [Label::Bytes(&[]); MAX_HEAD_LABELS];
        let len = labels.len().min(MAX_HEAD_LABELS);
        for (slot, label) in head.iter_mut().zip(labels) {
            *slot = Label::Bytes(label);
        }
        Self::Parts {
            head,
            len: len as u8,
            tail,
        }
    }

    /// A name in wire form.
    pub fn wire(tail: &'a [u8]) -> Self {
        Self::under(tail, &[])
    }

    /// The name in presentation form (for tests and logs; allocates).
    pub fn to_text(self, query: &str) -> String {
        match self {
            Self::Query => query.to_owned(),
            Self::Parts { head, len, tail } => {
                let mut out = String::new();
                for label in &head[..usize::from(len)] {
                    match label {
                        Label::Bytes(bytes) => out.push_str(&String::from_utf8_lossy(bytes)),
                        Label::Dashed(ip) => {
                            out.push_str(&String::from_utf8_lossy(DashedIp::new(*ip).as_bytes()))
                        }
                    }
                    out.push('.');
                }
                for label in WireLabels(tail) {
                    out.push_str(&String::from_utf8_lossy(label));
                    out.push('.');
                }
                if out.is_empty() {
                    out.push('.');
                }
                out
            }
        }
    }
}

impl OutName<'_> {
    /// The name as a [`QName`] (lower case, no allocation); [`OutName::Query`] is `query`.
    /// `None` if it is not a valid name.
    pub fn to_qname(self, query: &QName) -> Option<QName> {
        match self {
            Self::Query => Some(query.clone()),
            Self::Parts { head, len, tail } => {
                let mut dashed =
                    [DashedIp::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED)); MAX_HEAD_LABELS];
                for (slot, label) in dashed.iter_mut().zip(&head[..usize::from(len)]) {
                    if let Label::Dashed(ip) = label {
                        *slot = DashedIp::new(*ip);
                    }
                }
                let heads = head[..usize::from(len)]
                    .iter()
                    .zip(&dashed)
                    .map(|(label, dashed)| match label {
                        Label::Bytes(bytes) => *bytes,
                        Label::Dashed(_) => dashed.as_bytes(),
                    });
                QName::from_labels(heads.chain(WireLabels(tail)))
            }
        }
    }
}

/// An IP address with `.` or `:` replaced by `-` (`10-244-0-5`, `fd00--5`); an IPv6
/// address ending in `-` gets a `0` appended (as CoreDNS names endpoints). Fixed size, no
/// allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DashedIp {
    buf: [u8; 48],
    len: u8,
}

impl DashedIp {
    /// The dashed form of `ip`.
    pub fn new(ip: IpAddr) -> Self {
        use std::io::Write as _;
        let mut buf = [0u8; 48];
        let written = {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // 45 characters at most (an IPv6 address with an embedded IPv4 one).
            let _ = write!(cursor, "{ip}");
            cursor.position() as usize
        };
        let mut len = written.clamp(1, 46);
        for byte in &mut buf[..len] {
            if matches!(*byte, b'.' | b':') {
                *byte = b'-';
            }
        }
        if buf[len - 1] == b'-' {
            buf[len] = b'0';
            len += 1;
        }
        Self {
            buf,
            len: len as u8,
        }
    }

    /// The label's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// Iterates the labels of an uncompressed name in wire form (stops at the root, or at
/// anything malformed).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WireLabels<'a>(pub &'a [u8]);

impl<'a> Iterator for WireLabels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, rest) = self.0.split_first()?;
        let len = usize::from(len);
        if len == 0 || len > 63 || rest.len() < len {
            self.0 = &[];
            return None;
        }
        let (label, rest) = rest.split_at(len);
        self.0 = rest;
        Some(label)
    }
}

/// Fields of a SOA record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Soa<'a> {
    /// Primary name server, in wire form.
    pub mname: &'a [u8],
    /// Mailbox of the person responsible, in wire form.
    pub rname: &'a [u8],
    /// Serial.
    pub serial: u32,
    /// Refresh, seconds.
    pub refresh: u32,
    /// Retry, seconds.
    pub retry: u32,
    /// Expire, seconds.
    pub expire: u32,
    /// Minimum: the TTL of negative answers (RFC 2308).
    pub minimum: u32,
}

/// Record data this server produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rdata<'a> {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Service location (RFC 2782).
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host.
        target: OutName<'a>,
    },
    /// Pointer (reverse lookups).
    Ptr(OutName<'a>),
    /// Canonical name.
    Cname(OutName<'a>),
    /// Name server.
    Ns(OutName<'a>),
    /// One text string (at most 255 bytes; longer text is cut).
    Txt(&'a str),
    /// Start of authority.
    Soa(Soa<'a>),
    /// Any other type, its data already in wire form with names written out in full (no
    /// compression pointers): MX, CAA, … from zones.
    Raw {
        /// The record type.
        rtype: RecordType,
        /// The record data.
        data: &'a [u8],
    },
}

impl Rdata<'_> {
    /// The record type.
    pub fn record_type(&self) -> RecordType {
        match self {
            Self::A(_) => RecordType::A,
            Self::Aaaa(_) => RecordType::AAAA,
            Self::Srv { .. } => RecordType::SRV,
            Self::Ptr(_) => RecordType::PTR,
            Self::Cname(_) => RecordType::CNAME,
            Self::Ns(_) => RecordType::NS,
            Self::Txt(_) => RecordType::TXT,
            Self::Soa(_) => RecordType::SOA,
            Self::Raw { rtype, .. } => *rtype,
        }
    }
}

/// One resource record, class IN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rr<'a> {
    /// Owner name.
    pub owner: OutName<'a>,
    /// TTL, seconds.
    pub ttl: u32,
    /// Data.
    pub data: Rdata<'a>,
}

impl<'a> Rr<'a> {
    /// The names of the record: its owner, then the name its data points to, if any.
    pub fn names(&self) -> impl Iterator<Item = &OutName<'a>> {
        std::iter::once(&self.owner).chain(self.data.target())
    }

    /// [`Rr::names`], to replace them.
    pub fn names_mut(&mut self) -> impl Iterator<Item = &mut OutName<'a>> {
        let target = match &mut self.data {
            Rdata::Srv { target, .. }
            | Rdata::Ptr(target)
            | Rdata::Cname(target)
            | Rdata::Ns(target) => Some(target),
            _ => None,
        };
        std::iter::once(&mut self.owner).chain(target)
    }
}

impl<'a> Rdata<'a> {
    /// The name that [`Rdata::Raw`] data of a type that points to a name (CNAME, PTR, NS,
    /// MX, SRV) holds, read from its uncompressed wire form; `None` for other data,
    /// or when it does not parse (then `Some(None)`).
    pub fn raw_target(&self) -> Option<Option<QName>> {
        let Self::Raw { rtype, data } = self else {
            return None;
        };
        let at = match rtype {
            RecordType::CNAME | RecordType::PTR | RecordType::NS => 0,
            RecordType::MX => 2,
            RecordType::SRV => 6,
            _ => return None,
        };
        Some(data.get(at..).and_then(QName::from_wire))
    }

    /// The name this data points to (SRV, PTR, CNAME, NS), if any.
    pub fn target(&self) -> Option<&OutName<'a>> {
        match self {
            Self::Srv { target, .. }
            | Self::Ptr(target)
            | Self::Cname(target)
            | Self::Ns(target) => Some(target),
            _ => None,
        }
    }
}

/// What a stage decided to answer. Encoded by [`encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    /// Response code.
    pub rcode: ResponseCode,
    /// AA bit: set when the answering stage is the authority for the name.
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Rr<'a>>,
    /// Authority section (the SOA of NXDOMAIN and NODATA responses).
    pub authorities: Vec<Rr<'a>>,
    /// Additional section (addresses of SRV targets and NS names).
    pub additionals: Vec<Rr<'a>>,
    /// Who answered.
    pub origin: Origin,
}

impl Answer<'_> {
    /// An answer with only a response code (no records, AA clear).
    pub fn rcode(rcode: ResponseCode, origin: Origin) -> Self {
        Self {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            origin,
        }
    }
}
