//! `loadBalance: roundRobin` (CoreDNS `loadbalance`): the A, AAAA and MX records of each
//! response's answer section in a random order, so that clients taking the first address
//! spread over all of them.
//!
//! It works on the encoded response, the one place every answer passes through (local,
//! cached, forwarded, shaped by policy or rewrite): [`shuffle`] decodes it, permutes the
//! address records among the places address records hold (and the MX records among the
//! MX places), and encodes it again. CNAMEs and every other record keep their place, so a
//! chain still reads in order. A response with fewer than two records of a kind, a zone
//! transfer, or one whose new encoding would be longer (it never exceeds what the client
//! may receive) is left as it is. Off (the default), nothing here runs: the plain path
//! reads one `bool` of the pipeline.

use hickory_proto::op::Message;
use hickory_proto::rr::{Record, RecordType};
use rand::RngExt as _;

/// Shuffles the address and MX records of the response in `out[start..]`, in place.
pub(crate) fn shuffle(out: &mut Vec<u8>, start: usize) {
    let Some(encoded) = out.get(start..) else {
        return;
    };
    let Ok(mut message) = Message::from_vec(encoded) else {
        return;
    };
    let addresses = permute(&mut message.answers, |t| {
        matches!(t, RecordType::A | RecordType::AAAA)
    });
    let mx = permute(&mut message.answers, |t| t == RecordType::MX);
    if !addresses && !mx {
        return;
    }
    if let Ok(bytes) = message.to_vec()
        && bytes.len() <= encoded.len()
    {
        out.truncate(start);
        out.extend_from_slice(&bytes);
    }
}

/// Shuffles the records whose type `kind` picks among their own positions; whether there
/// were at least two.
fn permute(records: &mut [Record], kind: impl Fn(RecordType) -> bool) -> bool {
    let places: Vec<usize> = (0..records.len())
        .filter(|&i| kind(records[i].record_type()))
        .collect();
    if places.len() < 2 {
        return false;
    }
    let mut rng = rand::rng();
    for i in (1..places.len()).rev() {
        let j = rng.random_range(0..=i);
        records.swap(places[i], places[j]);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, CNAME, MX};
    use hickory_proto::rr::{Name, RData};
    use std::collections::BTreeSet;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("name")
    }

    fn response() -> Vec<u8> {
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(name("www.example.org."), RecordType::A));
        message.add_answer(Record::from_rdata(
            name("www.example.org."),
            60,
            RData::CNAME(CNAME(name("web.example.org."))),
        ));
        for i in 1..=6 {
            message.add_answer(Record::from_rdata(
                name("web.example.org."),
                60,
                RData::A(A::new(192, 0, 2, i)),
            ));
        }
        message.to_vec().expect("encodes")
    }

    fn order(bytes: &[u8]) -> Vec<String> {
        Message::from_vec(bytes)
            .expect("decodes")
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect()
    }

    #[test]
    fn addresses_change_places_the_cname_stays_first() {
        let original = response();
        let mut seen = BTreeSet::new();
        for _ in 0..50 {
            let mut out = b"prefix".to_vec();
            out.extend_from_slice(&original);
            shuffle(&mut out, 6);
            assert_eq!(&out[..6], b"prefix");
            let answers = order(&out[6..]);
            assert_eq!(answers[0], "web.example.org.");
            let mut sorted = answers.clone();
            sorted.sort();
            let mut want = order(&original);
            want.sort();
            assert_eq!(sorted, want, "the same records");
            seen.insert(answers);
        }
        assert!(seen.len() > 5, "{} orders in 50 shuffles", seen.len());
    }

    #[test]
    fn mx_records_are_shuffled_and_single_records_left_alone() {
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(name("example.org."), RecordType::MX));
        for (i, host) in ["a", "b", "c", "d"].iter().enumerate() {
            message.add_answer(Record::from_rdata(
                name("example.org."),
                60,
                RData::MX(MX::new(
                    10 + i as u16,
                    name(&format!("{host}.example.org.")),
                )),
            ));
        }
        let original = message.to_vec().expect("encodes");
        let orders: BTreeSet<Vec<String>> = (0..40)
            .map(|_| {
                let mut out = original.clone();
                shuffle(&mut out, 0);
                order(&out)
            })
            .collect();
        assert!(orders.len() > 3, "{orders:?}");

        let mut one = Message::new(7, MessageType::Response, OpCode::Query);
        one.add_answer(Record::from_rdata(
            name("a.example."),
            5,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let bytes = one.to_vec().expect("encodes");
        let mut out = bytes.clone();
        shuffle(&mut out, 0);
        assert_eq!(out, bytes, "untouched, not even re-encoded");
        let mut garbage = vec![1, 2, 3];
        shuffle(&mut garbage, 0);
        assert_eq!(garbage, [1, 2, 3]);
    }
}
