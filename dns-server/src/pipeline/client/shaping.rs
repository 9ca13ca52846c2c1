//! What the client-aware stages do to an answer before its client sees it: the policy
//! checks every name of the answer section (and drops additional records it does not
//! allow), autopath's CNAME goes in front, the rewrite is turned back, and the response is
//! written for the question the client sent, within the client's size limit.
//!
//! Both kinds of answer are shaped as they are, without an encode → parse → encode round
//! trip:
//!
//! - a local answer ([`Shape::local`]) keeps its borrowed records; names are checked as
//!   [`QName`]s built on the stack, and only names that change for the client (a rewritten
//!   question, a search-path hit, a name a rule turns back) are replaced;
//! - an owned reply (forwarded, cached; [`Shape::owned`]) is edited in place. A forwarded
//!   query carries its [`Shaping`] (the owned form of [`Shape`]) to its answer.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};
use nameplane_config::policy::DeniedResponse;

use super::policy::{Denial, Restriction};
use super::rewrite::RewriteRule;
use crate::metrics::Metrics;
use crate::reply::Reply;
use crate::request::{OwnedRequest, QName, Request, SizeLimit};
use crate::wire;
use crate::wire::answer::Origin;
use crate::wire::answer::{Answer, OutName, Rdata, Rr};

/// What was written for the client.
#[derive(Debug)]
pub struct Shaped {
    /// The response code sent.
    pub rcode: ResponseCode,
    /// Whether TC was set.
    pub truncated: bool,
    /// Who denied the answer, when a policy or client class did.
    pub denied_by: Option<Arc<str>>,
}

/// How one query's answer is shaped, borrowed for an answer shaped at once.
#[derive(Clone, Copy, Debug)]
pub struct Shape<'s> {
    /// The client's request: the response is written for its question.
    pub request: &'s Request<'s>,
    /// The question after rewriting (the first autopath candidate).
    pub first: &'s QName,
    /// The name whose answer is shaped.
    pub resolved: &'s QName,
    /// The rule that rewrote the question, to turn the answer back.
    pub rewrite: Option<&'s Arc<RewriteRule>>,
    /// Whether autopath walked the search path for this query.
    pub autopath: bool,
    /// What restricts the client.
    pub restriction: Option<&'s Restriction>,
    /// TTL of autopath's CNAME (the cluster names' TTL).
    pub cname_ttl: u32,
    /// Who asked (the audit log).
    pub client: IpAddr,
    /// The client's size limit.
    pub limit: SizeLimit,
}

/// The owned form of a [`Shape`], carried by a query that waits on an upstream.
#[derive(Debug)]
pub struct Shaping {
    /// The client's query.
    original: OwnedRequest,
    first: QName,
    resolved: QName,
    rewrite: Option<Arc<RewriteRule>>,
    autopath: bool,
    /// Autopath: the answer to `first` (NXDOMAIN), encoded for `first`'s question, for when
    /// the rest of the path is NXDOMAIN too (read back only then).
    fallback: Option<Vec<u8>>,
    restriction: Option<Restriction>,
    /// The NXDOMAIN denial, encoded up front for the client's question (it needs the
    /// cluster snapshot, which the forwarded answer no longer has); empty without a
    /// restriction.
    nx_denial: Vec<u8>,
    cname_ttl: u32,
    limit: SizeLimit,
}

impl PartialEq for Shaping {
    /// Same client query, same resolved name.
    fn eq(&self, other: &Self) -> bool {
        self.original == other.original && self.resolved == other.resolved
    }
}

impl Eq for Shaping {}

impl Shaping {
    /// Keeps `shape` for an answer that comes later; `fallback` and `nx_denial` as in the
    /// fields' docs.
    pub fn new(
        original: OwnedRequest,
        shape: &Shape<'_>,
        fallback: Option<Vec<u8>>,
        nx_denial: Vec<u8>,
    ) -> Self {
        Self {
            original,
            first: shape.first.clone(),
            resolved: shape.resolved.clone(),
            rewrite: shape.rewrite.cloned(),
            autopath: shape.autopath,
            fallback,
            restriction: shape.restriction.cloned(),
            nx_denial,
            cname_ttl: shape.cname_ttl,
            limit: shape.limit,
        }
    }

    /// Writes the client's response made of `reply` (from `origin`) at the end of `out`.
    pub fn finish(
        self,
        reply: Reply,
        origin: Origin,
        metrics: &Metrics,
        client: IpAddr,
        out: &mut Vec<u8>,
    ) -> Shaped {
        let request = self.original.request();
        let shape = Shape {
            request: &request,
            first: &self.first,
            resolved: &self.resolved,
            rewrite: self.rewrite.as_ref(),
            autopath: self.autopath,
            restriction: self.restriction.as_ref(),
            cname_ttl: self.cname_ttl,
            client,
            limit: self.limit,
        };
        // The rest of the search path did not exist either: the first step's NXDOMAIN.
        let fallback = self
            .fallback
            .as_deref()
            .filter(|_| reply.rcode != ResponseCode::NoError)
            .and_then(Reply::from_wire);
        let nx_denial = &self.nx_denial;
        let deny_nx = |out: &mut Vec<u8>| out.extend_from_slice(nx_denial);
        match fallback {
            Some(first) => {
                let shape = Shape {
                    resolved: &self.first,
                    ..shape
                };
                if self.autopath && self.resolved != self.first {
                    metrics.clients().autopath(false);
                }
                shape.owned(
                    first,
                    Origin::Kubernetes,
                    true,
                    false,
                    metrics,
                    &deny_nx,
                    out,
                )
            }
            None => {
                if self.autopath && self.resolved != self.first {
                    metrics.clients().autopath(true);
                }
                shape.owned(reply, origin, false, self.autopath, metrics, &deny_nx, out)
            }
        }
    }
}

/// Writes `fixes` (in the order of [`Rr::names`]) into `records`, with `ttl` on each when
/// a rule sets one.
fn apply_fixes<'n>(
    records: &mut [Rr<'n>],
    fixes: &mut impl Iterator<Item = NameFix>,
    resolved: &'n QName,
    new_names: &'n [QName],
    ttl: Option<u32>,
) {
    for rr in records.iter_mut() {
        for name in rr.names_mut() {
            match fixes.next().unwrap_or(NameFix::Keep) {
                NameFix::Keep => {}
                NameFix::Asked => *name = OutName::Query,
                NameFix::Resolved => *name = OutName::wire(resolved.wire()),
                NameFix::New(at) => {
                    if let Some(new) = new_names.get(at) {
                        *name = OutName::wire(new.wire());
                    }
                }
            }
        }
        if let Some(ttl) = ttl {
            rr.ttl = ttl;
        }
    }
}

/// How one name of an answer is written for the client.
#[derive(Clone, Copy, Debug)]
enum NameFix {
    /// As the stage wrote it.
    Keep,
    /// The question as the client spelled it.
    Asked,
    /// The name that was resolved (the stage wrote it as the question).
    Resolved,
    /// A name a rule turned back: this entry of the list of new names.
    New(usize),
}

impl<'s> Shape<'s> {
    /// The denial of the client's question: NXDOMAIN (written by `deny_nx`) or REFUSED.
    fn deny(
        &self,
        restriction: &Restriction,
        denial: Denial,
        deny_nx: &dyn Fn(&mut Vec<u8>),
        out: &mut Vec<u8>,
    ) -> Shaped {
        let rcode = match denial.response {
            DeniedResponse::Nxdomain => {
                deny_nx(out);
                ResponseCode::NXDomain
            }
            DeniedResponse::Refused => {
                let answer = Answer::rcode(ResponseCode::Refused, Origin::Server);
                wire::writer::encode(self.request, &answer, self.limit, out);
                ResponseCode::Refused
            }
        };
        Shaped {
            rcode,
            truncated: false,
            denied_by: Some(restriction.denied_by(&denial)),
        }
    }

    /// Shapes a local answer for the resolved name and writes it at the end of `out`.
    pub fn local(
        &self,
        mut answer: Answer<'_>,
        metrics: &Metrics,
        deny_nx: &dyn Fn(&mut Vec<u8>),
        out: &mut Vec<u8>,
    ) -> Shaped {
        if let Some(shaped) = self.raw_names_owned(&answer, metrics, deny_nx, out) {
            return shaped;
        }
        if let Some(r) = self.restriction {
            let verdict = r.check_answer(&answer.answers, self.resolved);
            r.record(verdict, metrics, self.client, &self.request.name);
            if let Err(denial) = verdict {
                return self.deny(r, denial, deny_nx, out);
            }
            answer.additionals.retain(|rr| {
                r.check_answer(std::slice::from_ref(rr), self.resolved)
                    .is_ok()
            });
        }
        let found_elsewhere = self.autopath && self.resolved != self.first;
        let renames = self.rewrite.is_some() || self.resolved != &self.request.name;
        if !found_elsewhere && !renames {
            // A policy-only query: the answer as the stage wrote it.
            return self.write(&answer, out);
        }
        // The records may point into `new_names` (the names rules turn back) and this
        // shape's names, which live shorter than the snapshot they were borrowed from.
        let mut new_names: Vec<QName> = Vec::new();
        let mut answer: Answer<'_> = answer;
        if found_elsewhere {
            // The client asked `first`; the search path found `resolved`.
            answer.answers.insert(
                0,
                Rr {
                    owner: OutName::wire(self.first.wire()),
                    ttl: self.cname_ttl,
                    data: Rdata::Cname(OutName::Query),
                },
            );
        }
        let fixes: Vec<NameFix> = answer
            .answers
            .iter()
            .chain(&answer.authorities)
            .chain(&answer.additionals)
            .flat_map(Rr::names)
            .map(|name| self.fix(name, &mut new_names))
            .collect();
        let ttl = self.rewrite.and_then(|rule| rule.ttl());
        let mut fixes = fixes.into_iter();
        // A rule's TTL applies to the answer and additional sections.
        for (records, rule_ttl) in [
            (&mut answer.answers, ttl),
            (&mut answer.authorities, None),
            (&mut answer.additionals, ttl),
        ] {
            apply_fixes(records, &mut fixes, self.resolved, &new_names, rule_ttl);
        }
        self.write(&answer, out)
    }

    /// Writes the shaped `answer` for the client's question.
    fn write(&self, answer: &Answer<'_>, out: &mut Vec<u8>) -> Shaped {
        let encoded = wire::writer::encode(self.request, answer, self.limit, out);
        Shaped {
            rcode: answer.rcode,
            truncated: encoded.truncated,
            denied_by: None,
        }
    }

    /// A zone record whose data names another name is kept as raw wire data: a rule that
    /// turns names back cannot rewrite it in place, so that (rare) answer is shaped in its
    /// owned form. `None`: the answer is shaped as borrowed records.
    fn raw_names_owned(
        &self,
        answer: &Answer<'_>,
        metrics: &Metrics,
        deny_nx: &dyn Fn(&mut Vec<u8>),
        out: &mut Vec<u8>,
    ) -> Option<Shaped> {
        let raw_names = answer
            .answers
            .iter()
            .chain(&answer.additionals)
            .any(|rr| rr.data.raw_target().is_some());
        if self.rewrite.is_none() || !raw_names {
            return None;
        }
        let resolved = Request {
            name: self.resolved.clone(),
            ..self.request.clone()
        };
        let reply = wire::writer::to_reply(&resolved, answer)?;
        Some(self.owned(
            reply,
            answer.origin,
            answer.authoritative,
            self.autopath,
            metrics,
            deny_nx,
            out,
        ))
    }

    /// How `name` (of the answer to the resolved name) is written for the client.
    fn fix(&self, name: &OutName<'_>, new_names: &mut Vec<QName>) -> NameFix {
        let Some(value) = name.to_qname(self.resolved) else {
            return NameFix::Keep;
        };
        if let Some(rule) = self.rewrite.filter(|rule| rule.rewrites_answers()) {
            if &value == self.first {
                return NameFix::Asked;
            }
            if let Some(back) = rule.back_name(&value) {
                new_names.push(back);
                return NameFix::New(new_names.len() - 1);
            }
        }
        if value == self.request.name {
            NameFix::Asked
        } else if matches!(name, OutName::Query) {
            NameFix::Resolved
        } else {
            NameFix::Keep
        }
    }

    /// Shapes an owned reply for the resolved name (`walked`: autopath found it further
    /// down the search path; `authoritative`: AA is set) and writes it at the end of `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn owned(
        &self,
        mut reply: Reply,
        origin: Origin,
        authoritative: bool,
        walked: bool,
        metrics: &Metrics,
        deny_nx: &dyn Fn(&mut Vec<u8>),
        out: &mut Vec<u8>,
    ) -> Shaped {
        if let Some(r) = self.restriction {
            let verdict = r.check_records(&reply.answers);
            r.record(verdict, metrics, self.client, &self.request.name);
            if let Err(denial) = verdict {
                return self.deny(r, denial, deny_nx, out);
            }
            reply
                .additionals
                .retain(|record| r.check_records(std::slice::from_ref(record)).is_ok());
        }
        let name = |q: &QName| Name::read(&mut BinDecoder::new(q.wire())).ok();
        let (Some(first), Some(resolved), Ok(asked)) = (
            name(self.first),
            name(self.resolved),
            Query::read(&mut BinDecoder::new(self.request.question)),
        ) else {
            let answer = Answer::rcode(ResponseCode::Refused, Origin::Server);
            wire::writer::encode(self.request, &answer, self.limit, out);
            return Shaped {
                rcode: ResponseCode::Refused,
                truncated: false,
                denied_by: None,
            };
        };
        if walked && resolved != first {
            let cname = Record::from_rdata(
                first.clone(),
                self.cname_ttl,
                RData::CNAME(CNAME(resolved.clone())),
            );
            reply.answers.insert(0, cname);
        }
        if let Some(rule) = self.rewrite {
            rule.back(&mut reply.answers, &first, asked.name());
            rule.back(&mut reply.additionals, &first, asked.name());
        }
        let start = out.len();
        let truncated = wire::reply::encode(self.request, &reply, origin, self.limit, out);
        if authoritative && let Some(flags) = out.get_mut(start + 2) {
            *flags |= 0x04;
        }
        Shaped {
            rcode: reply.rcode,
            truncated,
            denied_by: None,
        }
    }
}
