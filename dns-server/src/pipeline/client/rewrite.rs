//! The rewrite stage: answer one name as another (`RewriteRule`), and show the client the
//! name it asked for.
//!
//! Rules are tried in config order; the first that matches the question decides, once (a
//! rewritten name is not rewritten again, so rules cannot loop at run time; the operator
//! also refuses loops). `exact`, `prefix` and `suffix` compare text, as CoreDNS's
//! `rewrite name` does; `regex` matches the whole name (without its trailing dot) and
//! fills `{1}`, `{2}`… from capture groups.
//!
//! A rule with a client namespace (written by a tenant) applies only to Pods of that
//! namespace, and only if what it produces is a name of that namespace's Services
//! (`*.<namespace>.svc.<zone>`): the operator refuses anything else, and this stage checks
//! again, so one tenant's rule can never change another's answers.
//!
//! With `rewriteAnswers`, the answer is turned back ([`RewriteRule::back`]): records owned
//! by the rewritten name are owned by the asked one, and for exact/prefix/suffix rules every
//! owner and CNAME/SRV/PTR/MX target that matches `to` gets `from` back, so a client
//! checking names (TLS, SRV-based discovery) sees the name it knows. `ttlSeconds` overrides
//! every answer TTL. Each rule counts its rewrites (`nameplane_dns_rewrites_total`).

use std::sync::{Arc, OnceLock};

use hickory_proto::rr::{Name, RData, Record};
use nameplane_config::ValidatedConfig;
use nameplane_config::rewrite::{self, MatchKind, RewriteConfig};
use prometheus_client::metrics::counter::Counter;

use crate::metrics::Metrics;
use crate::request::QName;

/// The rules of one config, in order.
#[derive(Debug)]
pub(crate) struct RewriteSet {
    rules: Box<[Arc<RewriteRule>]>,
}

/// One compiled rule.
#[derive(Debug)]
pub struct RewriteRule {
    source: Box<str>,
    matcher: Matcher,
    to: String,
    rewrite_answers: bool,
    ttl: Option<u32>,
    client_namespace: Option<Box<str>>,
    /// `<namespace>.svc.<zone>` in wire form, for a tenant's rule.
    tenant_zone: Option<QName>,
    counter: OnceLock<Counter>,
}

#[derive(Debug)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(regex::Regex),
}

/// A question a rule rewrote.
#[derive(Clone, Debug)]
pub(crate) struct Rewritten {
    /// The name to resolve instead.
    pub name: QName,
    /// The rule, for turning the answer back.
    pub rule: Arc<RewriteRule>,
}

/// Calls `f` with `name` in presentation form without the trailing dot (lower case, as
/// the question name is). Built on the stack for the usual names (letters, digits, `-`,
/// `_`, `*`), so matching a query against the rules allocates nothing.
fn with_text<R>(name: &QName, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 256];
    let mut len = 0;
    for label in name.labels() {
        let plain = label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'));
        if !plain || len + label.len() + 1 > buf.len() {
            let mut text = name.to_string();
            text.pop();
            return f(&text);
        }
        if len > 0 {
            buf[len] = b'.';
            len += 1;
        }
        buf[len..len + label.len()].copy_from_slice(label);
        len += label.len();
    }
    // Only ASCII was copied.
    f(std::str::from_utf8(&buf[..len]).unwrap_or_default())
}

impl RewriteSet {
    /// Compiles the config's rules; `None` when there are none.
    pub(crate) fn new(config: &ValidatedConfig) -> Option<Self> {
        let rules = &config.raw().rewrites;
        if rules.is_empty() {
            return None;
        }
        let zone = config.cluster_domain();
        Some(Self {
            rules: rules
                .iter()
                .filter_map(|rule| RewriteRule::compile(rule, zone))
                .map(Arc::new)
                .collect(),
        })
    }

    /// The first rule that rewrites `name` for a client in `namespace` (`None`: not a Pod
    /// the server knows), and what it makes of it.
    pub(crate) fn apply(&self, name: &QName, namespace: Option<&str>) -> Option<Rewritten> {
        with_text(name, |asked| self.first_match(asked, namespace))
    }

    fn first_match(&self, asked: &str, namespace: Option<&str>) -> Option<Rewritten> {
        self.rules.iter().find_map(|rule| {
            if let Some(only) = &rule.client_namespace
                && namespace != Some(&**only)
            {
                return None;
            }
            let new = rule.forward(asked)?;
            let new = QName::from_ascii(&new)?;
            if let Some(zone) = &rule.tenant_zone
                && !new.is_in(zone.wire())
            {
                return None;
            }
            Some(Rewritten {
                name: new,
                rule: Arc::clone(rule),
            })
        })
    }
}

impl RewriteRule {
    fn compile(config: &RewriteConfig, zone: &str) -> Option<Self> {
        let matcher = match config.match_kind {
            MatchKind::Exact => Matcher::Exact(config.from.clone()),
            MatchKind::Prefix => Matcher::Prefix(config.from.clone()),
            MatchKind::Suffix => Matcher::Suffix(config.from.clone()),
            // Validated already with this very function (the anchored form, with the size
            // limit), so it compiles here too.
            MatchKind::Regex => Matcher::Regex(rewrite::compile_regex(&config.from).ok()?),
        };
        let tenant_zone = match &config.client_namespace {
            Some(ns) => Some(QName::from_ascii(&format!("{ns}.svc.{zone}"))?),
            None => None,
        };
        Some(Self {
            source: config.source.as_str().into(),
            matcher,
            to: config.to.clone(),
            rewrite_answers: config.rewrite_answers,
            ttl: config.ttl_seconds,
            client_namespace: config.client_namespace.as_deref().map(Box::from),
            tenant_zone,
            counter: OnceLock::new(),
        })
    }

    /// The rewritten form of `name` (presentation, no trailing dot), if the rule matches.
    fn forward(&self, name: &str) -> Option<String> {
        match &self.matcher {
            Matcher::Exact(from) => (name == from).then(|| self.to.clone()),
            Matcher::Prefix(from) => name
                .strip_prefix(from.as_str())
                .map(|rest| format!("{}{rest}", self.to)),
            Matcher::Suffix(from) => name
                .strip_suffix(from.as_str())
                .map(|rest| format!("{rest}{}", self.to)),
            Matcher::Regex(regex) => {
                let captures = regex.captures(name)?;
                let mut out = String::with_capacity(self.to.len() + name.len());
                let mut rest = self.to.as_str();
                while let Some(open) = rest.find('{') {
                    out.push_str(&rest[..open]);
                    let after = &rest[open + 1..];
                    match after.find('}').and_then(|close| {
                        let n: usize = after[..close].parse().ok()?;
                        Some((n, close))
                    }) {
                        Some((n, close)) => {
                            out.push_str(captures.get(n).map_or("", |m| m.as_str()));
                            rest = &after[close + 1..];
                        }
                        None => {
                            out.push('{');
                            rest = after;
                        }
                    }
                }
                out.push_str(rest);
                Some(out)
            }
        }
    }

    /// The name the client would know for `name`, a name in the answer to a rewritten
    /// question (exact/prefix/suffix rules only; a regex cannot be inverted).
    fn backward(&self, name: &str) -> Option<String> {
        match &self.matcher {
            Matcher::Exact(from) => (name == self.to).then(|| from.clone()),
            Matcher::Prefix(from) => name
                .strip_prefix(self.to.as_str())
                .map(|rest| format!("{from}{rest}")),
            Matcher::Suffix(from) => name
                .strip_suffix(self.to.as_str())
                .map(|rest| format!("{rest}{from}")),
            Matcher::Regex(_) => None,
        }
    }

    /// Counts one rewrite.
    pub fn count(&self, metrics: &Metrics) {
        self.counter
            .get_or_init(|| metrics.clients().rewrite(&self.source))
            .inc();
    }

    /// Whether answers come back under the names the client asked (`rewriteAnswers`); else
    /// they keep the names of the rewritten question.
    pub fn rewrites_answers(&self) -> bool {
        self.rewrite_answers
    }

    /// The TTL the rule puts on every record of its answers, if it sets one.
    pub fn ttl(&self) -> Option<u32> {
        self.ttl
    }

    /// What an answer name other than the rewritten question becomes for the client
    /// (`rewriteAnswers`); `None` when the rule leaves it alone.
    pub fn back_name(&self, name: &QName) -> Option<QName> {
        if !self.rewrite_answers {
            return None;
        }
        with_text(name, |text| self.backward(text)).and_then(|back| QName::from_ascii(&back))
    }

    /// Turns the answer records of the rewritten question `inner` back for a client that
    /// asked `asked` (see the module docs).
    pub fn back(&self, records: &mut [Record], inner: &Name, asked: &Name) {
        let map = |name: &Name| -> Option<Name> {
            if name == inner {
                return Some(asked.clone());
            }
            let mut text = name.to_lowercase().to_ascii();
            text.pop();
            let back = self.backward(&text)?;
            Name::from_ascii(format!("{back}.")).ok()
        };
        for record in records.iter_mut() {
            if let Some(ttl) = self.ttl {
                record.ttl = ttl;
            }
            if !self.rewrite_answers {
                continue;
            }
            if let Some(owner) = map(&record.name) {
                record.name = owner;
            }
            match &mut record.data {
                RData::CNAME(target) => {
                    if let Some(new) = map(&target.0) {
                        target.0 = new;
                    }
                }
                RData::PTR(target) => {
                    if let Some(new) = map(&target.0) {
                        target.0 = new;
                    }
                }
                RData::MX(mx) => {
                    if let Some(new) = map(&mx.exchange) {
                        mx.exchange = new;
                    }
                }
                RData::SRV(srv) => {
                    if let Some(new) = map(&srv.target) {
                        srv.target = new;
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nameplane_config::ServerConfig;

    fn set(rules: &[(MatchKind, &str, &str, Option<&str>)]) -> RewriteSet {
        let config = ServerConfig {
            rewrites: rules
                .iter()
                .map(|(kind, from, to, ns)| RewriteConfig {
                    source: "ns/r".into(),
                    match_kind: *kind,
                    from: (*from).into(),
                    to: (*to).into(),
                    rewrite_answers: true,
                    ttl_seconds: Some(30),
                    client_namespace: ns.map(String::from),
                })
                .collect(),
            ..ServerConfig::default()
        };
        RewriteSet::new(&config.validate().expect("valid")).expect("rules")
    }

    fn q(text: &str) -> QName {
        QName::from_ascii(text).expect("name")
    }

    fn applied(set: &RewriteSet, name: &str, ns: Option<&str>) -> Option<String> {
        set.apply(&q(name), ns).map(|r| r.name.to_string())
    }

    #[test]
    fn every_match_kind_rewrites_the_question() {
        let s = set(&[
            (
                MatchKind::Exact,
                "mystore.com",
                "mystore.shop.svc.cluster.local",
                None,
            ),
            (MatchKind::Prefix, "v1.api", "v2.api", None),
            (
                MatchKind::Suffix,
                ".legacy.example",
                ".svc.cluster.local",
                None,
            ),
            (
                MatchKind::Regex,
                r"(\w+)\.(\w+)\.corp",
                "{1}.{2}.svc.cluster.local",
                None,
            ),
        ]);
        assert_eq!(
            applied(&s, "MyStore.com.", None).as_deref(),
            Some("mystore.shop.svc.cluster.local.")
        );
        assert_eq!(applied(&s, "mystore.com.x", None), None, "exact is exact");
        assert_eq!(
            applied(&s, "v1.api.example", None).as_deref(),
            Some("v2.api.example.")
        );
        assert_eq!(
            applied(&s, "db.prod.legacy.example", None).as_deref(),
            Some("db.prod.svc.cluster.local.")
        );
        assert_eq!(
            applied(&s, "web.team.corp", None).as_deref(),
            Some("web.team.svc.cluster.local.")
        );
        assert_eq!(applied(&s, "x.web.team.corp", None), None, "anchored");
    }

    #[test]
    fn tenant_rules_apply_only_to_their_pods_and_services() {
        let s = set(&[
            (
                MatchKind::Exact,
                "db.example",
                "db.team-a.svc.cluster.local",
                Some("team-a"),
            ),
            (
                MatchKind::Exact,
                "evil.example",
                "db.team-b.svc.cluster.local",
                Some("team-a"),
            ),
        ]);
        assert!(applied(&s, "db.example", Some("team-a")).is_some());
        assert_eq!(applied(&s, "db.example", Some("team-b")), None);
        assert_eq!(applied(&s, "db.example", None), None, "unknown client");
        assert_eq!(
            applied(&s, "evil.example", Some("team-a")),
            None,
            "points outside its namespace"
        );
    }

    #[test]
    fn answers_are_turned_back() {
        use hickory_proto::rr::rdata::{A, CNAME, SRV};
        let s = set(&[(
            MatchKind::Suffix,
            ".mystore.com",
            ".shop.svc.cluster.local",
            None,
        )]);
        let rewritten = s
            .apply(&q("_http._tcp.web.mystore.com"), None)
            .expect("rewrites");
        let n = |t: &str| Name::from_ascii(t).expect("name");
        let inner = n("_http._tcp.web.shop.svc.cluster.local.");
        let asked = n("_http._tcp.Web.MyStore.com.");
        let mut records = vec![
            Record::from_rdata(
                inner.clone(),
                5,
                RData::SRV(SRV::new(0, 100, 80, n("pod-1.web.shop.svc.cluster.local."))),
            ),
            Record::from_rdata(
                n("pod-1.web.shop.svc.cluster.local."),
                5,
                RData::A(A::new(10, 0, 0, 1)),
            ),
            Record::from_rdata(
                n("alias.shop.svc.cluster.local."),
                5,
                RData::CNAME(CNAME(n("elsewhere.example."))),
            ),
        ];
        rewritten.rule.back(&mut records, &inner, &asked);
        assert_eq!(records[0].name, asked);
        match &records[0].data {
            RData::SRV(srv) => assert_eq!(srv.target, n("pod-1.web.mystore.com.")),
            other => panic!("{other:?}"),
        }
        assert_eq!(records[1].name, n("pod-1.web.mystore.com."));
        assert_eq!(records[2].name, n("alias.mystore.com."));
        assert!(records.iter().all(|r| r.ttl == 30));
    }

    /// PTR and MX targets are turned back like CNAME and SRV ones; other data is left alone.
    #[test]
    fn ptr_and_mx_targets_are_turned_back() {
        use hickory_proto::rr::rdata::{MX, PTR, TXT};
        let s = set(&[(
            MatchKind::Suffix,
            ".mystore.com",
            ".shop.svc.cluster.local",
            None,
        )]);
        let rewritten = s.apply(&q("web.mystore.com"), None).expect("rewrites");
        let n = |t: &str| Name::from_ascii(t).expect("name");
        let inner = n("web.shop.svc.cluster.local.");
        let asked = n("web.mystore.com.");
        let mut records = vec![
            Record::from_rdata(
                inner.clone(),
                5,
                RData::PTR(PTR(n("pod-1.web.shop.svc.cluster.local."))),
            ),
            Record::from_rdata(
                inner.clone(),
                5,
                RData::MX(MX::new(10, n("mail.shop.svc.cluster.local."))),
            ),
            Record::from_rdata(
                inner.clone(),
                5,
                RData::TXT(TXT::new(vec!["x.shop.svc.cluster.local".into()])),
            ),
        ];
        rewritten.rule.back(&mut records, &inner, &asked);
        assert!(records.iter().all(|r| r.name == asked));
        match &records[0].data {
            RData::PTR(ptr) => assert_eq!(ptr.0, n("pod-1.web.mystore.com.")),
            other => panic!("{other:?}"),
        }
        match &records[1].data {
            RData::MX(mx) => assert_eq!(mx.exchange, n("mail.mystore.com.")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            records[2].data,
            RData::TXT(TXT::new(vec!["x.shop.svc.cluster.local".into()]))
        );
    }

    /// Each rewrite adds one to `nameplane_dns_rewrites_total` under the rule's source.
    #[test]
    fn each_rewrite_is_counted_under_its_rule() {
        let metrics = Metrics::new(std::net::SocketAddr::from(([127, 0, 0, 1], 53)));
        let s = set(&[(MatchKind::Exact, "a.example", "b.example", None)]);
        let rewritten = s.apply(&q("a.example"), None).expect("rewrites");
        rewritten.rule.count(&metrics);
        rewritten.rule.count(&metrics);
        assert_eq!(metrics.clients().rewrite("ns/r").get(), 2);
    }

    /// Rules see the name as the server prints it: names of plain labels are built on the
    /// stack, anything else (a dot, a backslash or a byte outside ASCII inside a label) falls
    /// back to the escaped presentation form; both give the text `Display` gives.
    #[test]
    fn rules_see_the_presentation_form_of_every_name() {
        let longest = format!(
            "{}{}",
            format!("{}.", "a".repeat(63)).repeat(3),
            "b".repeat(61)
        );
        let names: Vec<QName> = vec![
            q("web.default.svc.cluster.local"),
            q("_http._tcp.*.x-1"),
            q(&longest),
            QName::from_wire(b"\x03a.b\x07example\x00").expect("a dot inside a label"),
            QName::from_wire(b"\x02\xffz\x07example\x00").expect("a byte outside ASCII"),
            QName::from_wire(b"\x03a\\b\x07example\x00").expect("a backslash"),
            // No plain label at all, so no label sends it to the fallback by itself.
            QName::from_wire(b"\x03a.b\x02\xffz\x00").expect("only escaped labels"),
        ];
        assert_eq!(names[2].wire().len(), 255, "the longest name there is");
        for name in &names {
            let mut printed = name.to_string();
            printed.pop();
            assert_eq!(with_text(name, str::to_owned), printed);
        }
    }

    /// Properties over generated rules and names.
    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::select;

        const LABELS: [&str; 5] = ["a", "b", "web", "svc", "x-1"];

        fn labels() -> impl Strategy<Value = Vec<&'static str>> {
            vec(select(&LABELS[..]), 1..4)
        }

        /// A rule of `kind` (0 exact, 1 prefix, 2 suffix) built from label lists, and a
        /// name it matches: `(from, to, name, what the name becomes)`.
        fn case(
            kind: u8,
            from: &[&str],
            to: &[&str],
            rest: &[&str],
        ) -> (MatchKind, String, String, String, String) {
            let (from, to, rest) = (from.join("."), to.join("."), rest.join("."));
            match kind {
                0 => (MatchKind::Exact, from.clone(), to.clone(), from, to),
                1 => (
                    MatchKind::Prefix,
                    format!("{from}."),
                    format!("{to}."),
                    format!("{from}.{rest}"),
                    format!("{to}.{rest}"),
                ),
                _ => (
                    MatchKind::Suffix,
                    format!(".{from}"),
                    format!(".{to}"),
                    format!("{rest}.{from}"),
                    format!("{rest}.{to}"),
                ),
            }
        }

        proptest! {
            #[test]
            fn exact_prefix_and_suffix_rules_rewrite_and_turn_back(
                kind in 0u8..3,
                from in labels(),
                to in labels(),
                rest in labels(),
                upper in any::<bool>(),
            ) {
                let (match_kind, from, to, name, expected) = case(kind, &from, &to, &rest);
                prop_assume!(from != to);
                let s = set(&[(match_kind, &from, &to, None)]);
                let asked = if upper { name.to_uppercase() } else { name.clone() };
                let rewritten = s.apply(&q(&asked), None).expect("the rule matches its own form");
                prop_assert_eq!(rewritten.name.to_string(), format!("{expected}."));
                // The way back gives the asked name, for the question and for any target.
                prop_assert_eq!(rewritten.rule.backward(&expected), Some(name.clone()));
                let n = |t: &str| Name::from_ascii(format!("{t}.")).expect("name");
                let inner = n(&expected);
                let asked_name = n(&asked);
                let mut records = vec![
                    Record::from_rdata(inner.clone(), 99, RData::CNAME(hickory_proto::rr::rdata::CNAME(inner.clone()))),
                ];
                rewritten.rule.back(&mut records, &inner, &asked_name);
                prop_assert_eq!(&records[0].name, &asked_name);
                prop_assert_eq!(records[0].ttl, 30);
                match &records[0].data {
                    RData::CNAME(target) => prop_assert_eq!(&target.0, &asked_name),
                    other => prop_assert!(false, "{other:?}"),
                }
            }

            #[test]
            fn the_first_matching_rule_decides_once(
                first in labels(),
                second in labels(),
                name in labels(),
            ) {
                let (first, second, name) = (first.join("."), second.join("."), name.join("."));
                prop_assume!(first != name && second != name && first != second);
                // name -> first -> second: the question is rewritten once, to `first`.
                let s = set(&[
                    (MatchKind::Exact, &name, &first, None),
                    (MatchKind::Exact, &first, &second, None),
                ]);
                prop_assert_eq!(applied(&s, &name, None), Some(format!("{first}.")));
                prop_assert_eq!(applied(&s, &first, None), Some(format!("{second}.")));
            }

            #[test]
            fn a_tenant_rule_only_ever_leads_into_its_own_namespace(
                rule_ns in select(&["team-a", "team-b"][..]),
                target_ns in select(&["team-a", "team-b"][..]),
                client_ns in proptest::option::of(select(&["team-a", "team-b"][..])),
                from in labels(),
                service in labels(),
            ) {
                let from = from.join(".");
                let to = format!("{}.{target_ns}.svc.cluster.local", service.join("."));
                let s = set(&[(MatchKind::Exact, &from, &to, Some(rule_ns))]);
                let own = q(&format!("{rule_ns}.svc.cluster.local"));
                match s.apply(&q(&from), client_ns) {
                    Some(rewritten) => {
                        prop_assert_eq!(client_ns, Some(rule_ns));
                        prop_assert!(rewritten.name.is_in(own.wire()), "{}", rewritten.name);
                    }
                    None => prop_assert!(client_ns != Some(rule_ns) || target_ns != rule_ns),
                }
            }
        }
    }
}
