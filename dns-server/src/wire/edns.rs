//! The OPT pseudo-record of a response (RFC 6891), written in one place for every encoder.
//!
//! A response carries one exactly when the query did: version 0, the server's payload
//! size (`--max-udp-payload`, which every encoder is given), the DO bit copied (RFC 3225
//! §3), the upper bits of an extended response code, and no options echoed.

use hickory_proto::op::Edns;

use crate::request::RequestEdns;

/// Size of an OPT record without options.
pub(crate) const OPT_LEN: usize = 11;

/// Record type of the OPT pseudo-record.
const OPT: u16 = 41;

/// Appends an OPT record without options: root owner, `payload` as the class, the
/// extended rcode's upper bits, version 0, the DO bit, RDLENGTH 0.
pub(crate) fn write_opt(out: &mut Vec<u8>, payload: u16, rcode_high: u8, dnssec_ok: bool) {
    out.push(0);
    out.extend_from_slice(&OPT.to_be_bytes());
    out.extend_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&[rcode_high, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
}

/// The same record for an encoder that builds a hickory message.
pub(crate) fn hickory_opt(edns: RequestEdns, payload: u16) -> Edns {
    let mut opt = Edns::new();
    opt.set_max_payload(payload)
        .set_version(0)
        .set_dnssec_ok(edns.dnssec_ok);
    opt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_hickory_opt_records_are_the_same_bytes() {
        use hickory_proto::op::{Message, MessageType, OpCode};
        for (payload, dnssec_ok) in [(1232, false), (4096, true), (512, true)] {
            let mut raw = Vec::new();
            write_opt(&mut raw, payload, 0, dnssec_ok);
            assert_eq!(raw.len(), OPT_LEN);
            let mut message = Message::new(0, MessageType::Response, OpCode::Query);
            message.edns = Some(hickory_opt(
                RequestEdns {
                    version: 0,
                    max_payload: 4096,
                    dnssec_ok,
                },
                payload,
            ));
            let bytes = message.to_vec().expect("encodes");
            assert_eq!(
                &bytes[bytes.len() - OPT_LEN..],
                &raw[..],
                "{payload} {dnssec_ok}"
            );
        }
    }
}
