//! Every process stops within its grace period on SIGTERM, also while the API server is
//! unreachable: the API server is stopped first, then the operator and the DNS server get
//! SIGTERM at the same moment, and their exits are timed against the Pods' termination
//! grace periods (the operator's Deployment: 30 s; a DNS server's: lameduck 5 s + 10 s).
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both. Stops and
//! restarts kube-apiserver, so it runs alone (`--test-threads=1`, as every e2e file).

use std::time::{Duration, Instant};

use nameplane_config::ServerConfig;
use nameplane_e2e::{
    DnsServer, Operator, component, ensure_namespace, install_crds, publish_config, wait_for,
};

/// The operator's `--shutdown-grace-seconds` default, plus what the process needs to exit.
const OPERATOR_BUDGET: Duration = Duration::from_secs(12);

/// A DNS server's lameduck (5 s) and grace period (5 s), plus what the process needs to exit.
const DNS_BUDGET: Duration = Duration::from_secs(12);

/// Starts kube-apiserver again when dropped, whatever the test did.
struct ApiServerDown;

impl ApiServerDown {
    fn stop() -> Self {
        component("kube-apiserver", "stop");
        Self
    }
}

impl Drop for ApiServerDown {
    fn drop(&mut self) {
        component("kube-apiserver", "start");
    }
}

#[test]
fn operator_and_dns_server_exit_within_their_grace_period_while_the_api_server_is_down() {
    install_crds();
    let ns = "e2e-shutdown";
    ensure_namespace(ns, &[]);
    publish_config(
        ns,
        "dns",
        &ServerConfig {
            server: format!("{ns}/dns"),
            ..Default::default()
        },
    );
    let mut dns = DnsServer::start("shutdown-dns", &format!("{ns}/dns"), &[]);
    dns.wait_ready(Duration::from_secs(30));
    let mut operator = Operator::start(
        "shutdown-operator",
        &[
            "--lease-name",
            "e2e-shutdown",
            "--lease-duration-seconds",
            "4",
        ],
    );
    wait_for("the operator leads", Duration::from_secs(40), || {
        operator.is_leader().then_some(())
    });

    let api = ApiServerDown::stop();
    // Let both notice: watches fail and retry, the lease renewal fails.
    std::thread::sleep(Duration::from_secs(3));
    operator.process.assert_running();
    dns.process.assert_running();

    let signalled = Instant::now();
    operator.process.terminate();
    dns.process.terminate();
    let (mut operator_exit, mut dns_exit) = (None, None);
    let give_up = OPERATOR_BUDGET.max(DNS_BUDGET) + Duration::from_secs(10);
    while (operator_exit.is_none() || dns_exit.is_none()) && signalled.elapsed() < give_up {
        if operator_exit.is_none() && operator.process.wait_exit(Duration::ZERO).is_some() {
            operator_exit = Some(signalled.elapsed());
        }
        if dns_exit.is_none() && dns.process.wait_exit(Duration::ZERO).is_some() {
            dns_exit = Some(signalled.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "after SIGTERM with the API server down: operator exited after {operator_exit:?}, DNS server after {dns_exit:?}"
    );
    drop(api);
    let operator_exit = operator_exit.unwrap_or_else(|| {
        panic!(
            "the operator did not exit within {give_up:?}; its log:\n{}",
            operator.process.log()
        )
    });
    let dns_exit = dns_exit.unwrap_or_else(|| {
        panic!(
            "the DNS server did not exit within {give_up:?}; its log:\n{}",
            dns.process.log()
        )
    });
    assert!(
        operator_exit <= OPERATOR_BUDGET,
        "operator: {operator_exit:?}"
    );
    assert!(dns_exit <= DNS_BUDGET, "DNS server: {dns_exit:?}");
    // The DNS server keeps answering through its lameduck period: it does not exit early.
    assert!(
        dns_exit >= Duration::from_secs(4),
        "DNS server: {dns_exit:?}"
    );
}
