//! `nameplane import`: see `nameplane_operator::import::fuzz_check` for the property (no
//! panic; whatever is written parses back as the CRD types). The input is a Corefile, or a
//! kube-dns ConfigMap when it starts with `apiVersion`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = nameplane_operator::import::fuzz_check(data) {
        panic!("{violation}\n{}", String::from_utf8_lossy(data));
    }
});
