//! Encoding a zone transfer (RFC 5936): the records in order over as many TCP messages as
//! they need.
//!
//! Every message has the query's id, AA set and NOERROR; the first one echoes the question
//! and the client's EDNS (RFC 5936 §2.2.1 lets later ones leave the question out). Messages
//! hold at most [`RECORDS_PER_MESSAGE`] records and are split further if one would not fit
//! the 64 KiB a TCP length prefix can carry.

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};

use super::edns::hickory_opt;
use super::writer::encode_error;
use crate::reply::Transfer;
use crate::request::{ErrorReply, Request};

/// Records packed into one message before starting the next.
pub(crate) const RECORDS_PER_MESSAGE: usize = 100;

fn message(request: &Request<'_>, records: &[Record], first: bool, payload: u16) -> Message {
    let mut message = Message::response(request.id, OpCode::Query);
    message.metadata.authoritative = true;
    message.metadata.recursion_desired = request.recursion_desired;
    message.metadata.response_code = ResponseCode::NoError;
    if first {
        if let Ok(query) = Query::read(&mut BinDecoder::new(request.question)) {
            message.queries.push(query);
        }
        message.edns = request.edns.map(|edns| hickory_opt(edns, payload));
    }
    message.answers = records.to_vec();
    message
}

/// Encodes `records` starting at message number `first`; halves the batch when a message
/// would exceed 65535 bytes.
fn encode_batch(
    request: &Request<'_>,
    records: &[Record],
    first: bool,
    payload: u16,
    out: &mut Vec<Vec<u8>>,
) {
    match message(request, records, first, payload).to_vec() {
        Ok(bytes) if bytes.len() <= usize::from(u16::MAX) => out.push(bytes),
        _ if records.len() > 1 => {
            let (head, tail) = records.split_at(records.len() / 2);
            encode_batch(request, head, first, payload, out);
            encode_batch(request, tail, false, payload, out);
        }
        _ => out.push(
            encode_error(&ErrorReply {
                id: request.id,
                opcode: 0,
                recursion_desired: request.recursion_desired,
                rcode: 2,
            })
            .to_vec(),
        ),
    }
}

/// The messages of `transfer`, in order; never empty. The first one's OPT record (when
/// the query had one) advertises `payload` (`--max-udp-payload`).
pub(crate) fn encode(request: &Request<'_>, transfer: Transfer, payload: u16) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, batch) in transfer.records.chunks(RECORDS_PER_MESSAGE).enumerate() {
        encode_batch(request, batch, i == 0, payload, &mut out);
    }
    if out.is_empty() {
        encode_batch(request, &[], true, payload, &mut out);
    }
    out
}
