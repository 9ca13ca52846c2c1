//! An upstream's reply through the forwarder: checks, bailiwick, cache insert, encoding
//! to clients. See `nameplane_dns::test_support::check_upstream` for the properties and
//! the input layout (a flags byte, then the reply).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nameplane_config::ValidatedConfig;
use nameplane_dns::cluster::index::Cluster;
use nameplane_dns::test_support::{UpstreamCase, check_upstream, fixture_cluster, fixture_config};

static FIXTURE: LazyLock<(ValidatedConfig, Cluster)> = LazyLock::new(|| {
    let config =
        ValidatedConfig::from_json(&fixture_config()).expect("the fixture config is valid");
    (config, fixture_cluster())
});

fuzz_target!(|data: &[u8]| {
    let case = UpstreamCase::from_bytes(data);
    if let Err(violation) = check_upstream(&FIXTURE.0, &FIXTURE.1, &case) {
        panic!("{violation}\n{case:?}");
    }
});
