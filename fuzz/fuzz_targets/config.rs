//! The config parser and validator: see `nameplane_dns::test_support::check_config` for
//! the properties (the input is a JSON document).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = nameplane_dns::test_support::check_config(data) {
        panic!("{violation}\n{}", String::from_utf8_lossy(data));
    }
});
