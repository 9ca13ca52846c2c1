//! The whole answer function over UDP and TCP against the rich fixture: see
//! `nameplane_dns::test_support::AnswerFixture::check` for the properties and the input
//! layout (a flags byte, then the query).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nameplane_dns::test_support::{AnswerCase, AnswerFixture};

static FIXTURE: LazyLock<AnswerFixture> =
    LazyLock::new(|| AnswerFixture::new().expect("the fixture builds"));

fuzz_target!(|data: &[u8]| {
    let case = AnswerCase::from_bytes(data);
    if let Err(violation) = FIXTURE.check(&case) {
        panic!("{violation}\n{case:?}");
    }
});
