//! One home for the wire: every response this server sends is written here.
//!
//! - [`answer`]: the borrowed records a local stage answers with;
//! - [`writer`]: their writer (name compression, truncation, no allocation beyond the
//!   output buffer);
//! - [`reply`]: an owned [`crate::reply::Reply`] (forwarded, or cached and not fitting its
//!   template) through hickory's encoder, with the same rules;
//! - [`cached`]: a cached reply kept encoded, written as a copy with its TTLs patched;
//! - [`transfer`]: a zone transfer as TCP messages;
//! - [`edns`]: the OPT record all of them write, advertising `--max-udp-payload`.
//!
//! Each encoder takes an explicit [`crate::request::SizeLimit`]: what the client may
//! receive (its EDNS size capped at the server's, on UDP), or a whole message for an
//! answer shaped afterwards.

pub(crate) mod answer;
pub(crate) mod cached;
pub(crate) mod edns;
pub(crate) mod reply;
pub(crate) mod transfer;
pub(crate) mod writer;
