//! Encoding a forwarded or cached [`Reply`] as the response to a request.
//!
//! Forwarded records are of any type and owned (they come from an upstream's message, or
//! from the cache), so they go through hickory's encoder rather than the borrowed-record
//! writer of [`super::answer`]; the wire rules are the same:
//!
//! - id, RD and CD are copied from the query and the question is echoed as received; RA
//!   is set, AA clear;
//! - records owned by the question name carry the client's spelling of it;
//! - if the query had an OPT record, the response has one too (payload = the server's
//!   maximum, DO copied); no options are echoed;
//! - a response larger than the client may receive first loses its additional section
//!   (no TC, RFC 2181 §9), then keeps only the question with TC set (RFC 7766 §5).

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};

use super::answer::Origin;
use super::edns::hickory_opt;
use super::writer::encode_error;
use crate::reply::Reply;
use crate::request::{Request, SizeLimit};

/// Writes the response to `request` made of `reply` at the end of `out`, within `limit`.
/// Returns whether TC was set.
pub(crate) fn encode(
    request: &Request<'_>,
    reply: &Reply,
    origin: Origin,
    limit: SizeLimit,
    out: &mut Vec<u8>,
) -> bool {
    let fallback = |out: &mut Vec<u8>| {
        out.extend_from_slice(&encode_error(&crate::request::ErrorReply {
            id: request.id,
            opcode: 0,
            recursion_desired: request.recursion_desired,
            rcode: 2,
        }));
        false
    };
    let Ok(query) = Query::read(&mut BinDecoder::new(request.question)) else {
        return fallback(out);
    };
    let spelled = query.name().clone();
    let respell = |records: &[Record]| -> Vec<Record> {
        records
            .iter()
            .map(|record| {
                let mut record = record.clone();
                if record.name == spelled {
                    record.name = spelled.clone();
                }
                record
            })
            .collect()
    };
    let mut message = Message::new(request.id, MessageType::Response, OpCode::Query);
    message.metadata.recursion_desired = request.recursion_desired;
    message.metadata.checking_disabled = request.checking_disabled;
    message.metadata.recursion_available = matches!(origin, Origin::Cache | Origin::Forward);
    message.metadata.response_code = reply.rcode;
    message.queries.push(query);
    message.answers = respell(&reply.answers);
    message.authorities = respell(&reply.authorities);
    message.additionals = respell(&reply.additionals);
    message.edns = request.edns.map(|edns| hickory_opt(edns, limit.payload));
    let limit = limit.max_len;
    let mut encoded = message.to_vec();
    if matches!(&encoded, Ok(bytes) if bytes.len() > limit) && !message.additionals.is_empty() {
        message.additionals.clear();
        encoded = message.to_vec();
    }
    match encoded {
        Ok(bytes) if bytes.len() <= limit => {
            out.extend_from_slice(&bytes);
            false
        }
        Ok(_) => {
            message.answers.clear();
            message.authorities.clear();
            message.metadata.truncation = true;
            match message.to_vec() {
                Ok(bytes) => {
                    out.extend_from_slice(&bytes);
                    true
                }
                Err(_) => fallback(out),
            }
        }
        Err(_) => fallback(out),
    }
}
