//! The query log: one line (target `nameplane_dns::query`, info level) per selected answer.
//!
//! What is logged comes from the config's `logging` ([`nameplane_config::logging`]):
//! `queries: None | Denied | Errors | All` selects answers ([`selects`]), `sampleOneIn: N`
//! keeps every Nth selected one ([`QueryLog::take`], one lock-free counter per pipeline, so a
//! new config starts counting again). The process flag `--query-log` overrides the config:
//! with it every answer is logged, unsampled, whatever the config says.
//!
//! Each line carries the client address, the client Pod's `namespace`/`pod` when the Pod
//! watch identifies it (the watch runs only when the config needs it for something else:
//! policies, client classes, autopath, tenant rewrites, `pods: verified`, `rateLimit`;
//! logging never turns it on, so otherwise a line has the address only), the name, type,
//! rcode, duration, transport, size, and for a denied answer the `policy` that denied it
//! (its source `namespace/name`, or the client class `(nodes)` / `(unidentified)`). With
//! `--log-format json` each line is one JSON object, these being its `fields`.
//!
//! With no `logging` (or `queries: None`) and no flag, the query path pays one branch.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use nameplane_config::logging::{LoggingConfig, QueryLogMode};

use crate::cluster::Cluster;
use crate::metrics::rcode_label;
use crate::request::{QName, Transport};

/// The query log of one pipeline: which answers get a line.
#[derive(Debug)]
pub(crate) struct QueryLog {
    mode: QueryLogMode,
    one_in: u64,
    selected: AtomicU64,
}

impl QueryLog {
    /// `None` when the config logs no query.
    pub(crate) fn new(config: Option<&LoggingConfig>) -> Option<Self> {
        let config = config.filter(|c| c.queries != QueryLogMode::None)?;
        Some(Self {
            mode: config.queries,
            one_in: u64::from(config.sample_one_in.unwrap_or(1).max(1)),
            selected: AtomicU64::new(0),
        })
    }

    /// Whether the answer `rcode` (denied by a policy or client class when `denied`) gets a
    /// line: selected by the mode, then sampled.
    pub(crate) fn take(&self, rcode: ResponseCode, denied: bool) -> bool {
        selects(self.mode, rcode, denied)
            && (self.one_in == 1
                || self
                    .selected
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(self.one_in))
    }
}

/// Whether `mode` selects an answer with `rcode`, denied by a policy or client class when
/// `denied`.
pub(crate) fn selects(mode: QueryLogMode, rcode: ResponseCode, denied: bool) -> bool {
    match mode {
        QueryLogMode::None => false,
        QueryLogMode::Denied => denied,
        QueryLogMode::Errors => {
            denied
                || matches!(
                    rcode,
                    ResponseCode::ServFail
                        | ResponseCode::Refused
                        | ResponseCode::FormErr
                        | ResponseCode::NotImp
                )
        }
        QueryLogMode::All => true,
    }
}

/// One answered query, as logged.
pub(crate) struct Line<'a> {
    pub client: SocketAddr,
    pub transport: Transport,
    pub name: Option<&'a QName>,
    pub qtype: Option<RecordType>,
    pub rcode: ResponseCode,
    pub truncated: bool,
    pub size: usize,
    pub duration: Duration,
    pub denied_by: Option<&'a str>,
}

/// Writes `line`, with the client Pod's namespace and name when `cluster`'s Pod watch (on
/// only when the config needs it) knows the address.
pub(crate) fn write(line: &Line<'_>, cluster: &Cluster) {
    let pod = cluster
        .pods
        .as_ref()
        .and_then(|pods| pods.client(&line.client.ip().to_canonical()));
    tracing::info!(
        target: "nameplane_dns::query",
        client = %line.client,
        namespace = pod.map(|p| &*p.namespace),
        pod = pod.map(|p| &*p.name),
        proto = line.transport.label(),
        name = line.name.map(tracing::field::display),
        r#type = line.qtype.map(tracing::field::display),
        rcode = rcode_label(line.rcode),
        truncated = line.truncated,
        size = line.size,
        duration_us = line.duration.as_micros() as u64,
        policy = line.denied_by,
        "query"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const RCODES: [ResponseCode; 6] = [
        ResponseCode::NoError,
        ResponseCode::NXDomain,
        ResponseCode::ServFail,
        ResponseCode::Refused,
        ResponseCode::FormErr,
        ResponseCode::NotImp,
    ];

    fn logged(mode: QueryLogMode) -> Vec<(ResponseCode, bool)> {
        RCODES
            .iter()
            .flat_map(|&rcode| [(rcode, false), (rcode, true)])
            .filter(|&(rcode, denied)| selects(mode, rcode, denied))
            .collect()
    }

    #[test]
    fn each_mode_selects_its_answers() {
        assert!(logged(QueryLogMode::None).is_empty());
        assert_eq!(logged(QueryLogMode::All).len(), RCODES.len() * 2);
        assert_eq!(
            logged(QueryLogMode::Denied),
            RCODES.iter().map(|&r| (r, true)).collect::<Vec<_>>(),
            "only denials, whatever rcode the policy answers with"
        );
        let errors = logged(QueryLogMode::Errors);
        for (rcode, denied) in [
            (ResponseCode::NoError, false),
            (ResponseCode::NXDomain, false),
        ] {
            assert!(!errors.contains(&(rcode, denied)), "{rcode:?}");
        }
        for rcode in [
            ResponseCode::ServFail,
            ResponseCode::Refused,
            ResponseCode::FormErr,
            ResponseCode::NotImp,
        ] {
            assert!(errors.contains(&(rcode, false)), "{rcode:?}");
        }
        assert!(
            errors.contains(&(ResponseCode::NXDomain, true)),
            "a policy's NXDOMAIN is an error to log"
        );
    }

    #[test]
    fn no_config_or_none_is_no_log() {
        assert!(QueryLog::new(None).is_none());
        assert!(QueryLog::new(Some(&LoggingConfig::default())).is_none());
    }

    #[test]
    fn sampling_keeps_one_in_n_of_the_selected() {
        let log = QueryLog::new(Some(&LoggingConfig {
            queries: QueryLogMode::Errors,
            sample_one_in: Some(7),
        }))
        .expect("on");
        let mut kept = 0;
        for i in 0..700 {
            // Answers the mode does not select do not count towards the sample.
            assert!(!log.take(ResponseCode::NoError, false));
            if log.take(ResponseCode::ServFail, i % 2 == 0) {
                kept += 1;
            }
        }
        assert_eq!(kept, 100);
        let all = QueryLog::new(Some(&LoggingConfig {
            queries: QueryLogMode::All,
            sample_one_in: None,
        }))
        .expect("on");
        assert!((0..50).all(|_| all.take(ResponseCode::NoError, false)));
    }
}
