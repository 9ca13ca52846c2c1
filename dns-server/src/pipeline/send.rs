//! Turning what the stages decided ([`Flow`]) into bytes, and saying what happened
//! ([`Sent`]).
//!
//! Every answer leaves through [`send`]: a local answer through the borrowed-record writer
//! ([`crate::wire::answer`]), a cached one from its template ([`crate::wire::cached`], or
//! [`crate::wire::reply`] when the template does not fit), a zone transfer as TCP messages
//! ([`crate::wire::transfer`]; REFUSED for a UDP query whatever path it took, so a whole
//! zone never goes into one datagram), and a query that waits on the network as a
//! [`Deferred`] for the transport to finish. The size limit is explicit ([`SizeLimit`]).

use hickory_proto::op::ResponseCode;

use super::deferred::Deferred;
use super::flow::{Flow, Sources, Stats};
use crate::answer_cache::Hit;
use crate::request::{OwnedRequest, Request, SizeLimit, Transport};
use crate::settings::Settings;
use crate::wire;
use crate::wire::answer::{Answer, Origin};

/// What [`super::answer`] did with one packet.
// `Replied` is large (the stats hold the question name for the query log); boxing it
// would allocate on every answer, while a `Sent` only lives on the stack for one query.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Nothing is sent: a runt, a response, or an answer the rate limit dropped.
    Dropped,
    /// The response is at the end of the caller's buffer.
    Replied {
        /// What happened.
        stats: Stats,
        /// Further messages after the one written (a zone transfer over TCP).
        more: Vec<Vec<u8>>,
        /// A prefetch to run in the background; its answer only refreshes the cache.
        refresh: Option<Box<Deferred>>,
    },
    /// The answer waits on the network: [`Deferred::resolve`] produces it.
    Deferred(Box<Deferred>),
}

impl Sent {
    /// A response that is the whole answer.
    pub fn replied(stats: Stats) -> Self {
        Self::Replied {
            stats,
            more: Vec::new(),
            refresh: None,
        }
    }

    /// What happened, when a response was written.
    pub fn stats(&self) -> Option<&Stats> {
        match self {
            Self::Replied { stats, .. } => Some(stats),
            _ => None,
        }
    }

    /// The messages after the first (a zone transfer), when a response was written.
    pub fn more(&self) -> &[Vec<u8>] {
        match self {
            Self::Replied { more, .. } => more,
            _ => &[],
        }
    }
}

/// Writes `answer` for `request` at the end of `out`, within `limit`.
pub(crate) fn answer(
    request: &Request<'_>,
    answer: &Answer<'_>,
    limit: SizeLimit,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Sent {
    let encoded = wire::writer::encode(request, answer, limit, out);
    Sent::replied(Stats {
        truncated: encoded.truncated,
        ..Stats::of(request, answer.rcode, answer.origin, settings.query_log)
    })
}

/// Writes a bare `rcode` from `origin` for `request` at the end of `out`.
pub(crate) fn rcode(
    request: &Request<'_>,
    rcode: ResponseCode,
    origin: Origin,
    limit: SizeLimit,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Sent {
    answer(request, &Answer::rcode(rcode, origin), limit, settings, out)
}

/// Writes a cache hit for `request`: from its template, or the slow way when the template
/// does not fit.
fn cached(
    request: &Request<'_>,
    hit: &Hit,
    limit: SizeLimit,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Sent {
    let stats = Stats::of(request, hit.reply.rcode, Origin::Cache, settings.query_log);
    if let Some(template) = &hit.wire
        && template.write(request, hit.ttl, hit.stale, limit, out)
    {
        return Sent::replied(stats);
    }
    let reply = hit.reply_for();
    let truncated = wire::reply::encode(request, &reply, Origin::Cache, limit, out);
    Sent::replied(Stats { truncated, ..stats })
}

/// Encodes what the stages decided for `request` (parsed from `packet`) at the end of
/// `out`, within `limit`.
pub(crate) fn send(
    packet: &[u8],
    request: &Request<'_>,
    flow: Flow<'_>,
    sources: &Sources<'_>,
    settings: &Settings,
    limit: SizeLimit,
    out: &mut Vec<u8>,
) -> Sent {
    let defer = |upstream| {
        OwnedRequest::new(packet, request)
            .map(|query| Box::new(Deferred::new(query, upstream, sources.client)))
    };
    match flow {
        Flow::Answer(found) => answer(request, &found, limit, settings, out),
        Flow::Skip => rcode(
            request,
            ResponseCode::Refused,
            Origin::Server,
            limit,
            settings,
            out,
        ),
        Flow::Cached(hit) => cached(request, &hit, limit, settings, out),
        Flow::CachedAndRefresh(hit, upstream) => {
            match cached(request, &hit, limit, settings, out) {
                Sent::Replied { stats, more, .. } => Sent::Replied {
                    stats,
                    more,
                    refresh: defer(upstream),
                },
                other => other,
            }
        }
        // The zones stage refuses transfers over UDP; this holds whatever path the query
        // took: a whole zone never goes into one datagram.
        Flow::Transfer(_) if request.transport == Transport::Udp => rcode(
            request,
            ResponseCode::Refused,
            Origin::Zones,
            limit,
            settings,
            out,
        ),
        Flow::Transfer(transfer) => {
            let mut messages =
                wire::transfer::encode(request, transfer, settings.max_udp_payload).into_iter();
            out.extend_from_slice(&messages.next().unwrap_or_default());
            Sent::Replied {
                stats: Stats::of(
                    request,
                    ResponseCode::NoError,
                    Origin::Zones,
                    settings.query_log,
                ),
                more: messages.collect(),
                refresh: None,
            }
        }
        Flow::Upstream(upstream) => match defer(upstream) {
            Some(deferred) => Sent::Deferred(deferred),
            None => rcode(
                request,
                ResponseCode::ServFail,
                Origin::Server,
                limit,
                settings,
                out,
            ),
        },
    }
}
