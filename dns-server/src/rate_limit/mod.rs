//! Response-rate limiting (RRL) of UDP answers to unidentified clients: the server's side of
//! `rateLimit` in the config ([`RateLimitConfig`]).
//!
//! Only clients the server cannot tie to exactly one Pod are limited (node addresses,
//! host-network Pods, anything outside the Pod network): they are who could use the cluster
//! DNS as a reflection amplifier with a forged source address. Identified Pods and TCP are
//! never limited. A config without `rateLimit` builds no `RateLimiter`, and the query path
//! does no work for it beyond one `Option` test.
//!
//! How an answer is counted (after BIND's and Knot's `rrl`):
//!
//! - its bucket is the client's network prefix (`/24` and `/56` by default) and the class of
//!   the answer (`classify`): a positive answer by its question name and type; NXDOMAIN
//!   and NODATA by the zone that says so (the owner of the SOA or NS in the authority
//!   section, else the question name), so a flood of random names under one zone fills one
//!   bucket; every error (SERVFAIL, REFUSED, FORMERR…) in one bucket per prefix;
//! - each bucket holds a balance, refilled by `responsesPerSecond` each whole second up to
//!   `responsesPerSecond`, and debited by every answer, sent or not, down to
//!   `-responsesPerSecond × (windowSeconds − 1)`: an answer goes out while the balance is
//!   positive, so a prefix that keeps flooding stays limited, and one that stops answers
//!   again at most `windowSeconds` later;
//! - an answer over the rate is dropped, except every `slip`-th one of its bucket, which is
//!   sent truncated (`slip`: TC=1 and only the question), so a real client whose address
//!   is forged retries over TCP, which is never limited.
//!
//! Memory is bounded: the buckets are a fixed table of `TABLE_SLOTS` atomic words, found
//! by a keyed hash (random per limiter, so nobody can aim collisions at a victim's bucket).
//! A key whose slot holds another key's bucket takes it over and starts full: a forgotten
//! bucket is recycled, never a reason to allocate. Each bucket is one `AtomicU64` updated by
//! compare-and-swap: no lock serialises the UDP loops.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nameplane_config::rate_limit::RateLimitConfig;

/// Buckets in a limiter's table (8 bytes each: 512 KiB).
pub(crate) const TABLE_SLOTS: usize = 1 << 16;

/// What happens to one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Sent as it is.
    Send,
    /// Not sent.
    Drop,
    /// Sent truncated: TC=1, only the question.
    Slip,
}

/// The class of an answer (part of its bucket's key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
enum Class {
    /// NOERROR with answers: by question name and type.
    Positive = 1,
    /// NOERROR without answers: by zone.
    NoData = 2,
    /// NXDOMAIN: by zone.
    Nxdomain = 3,
    /// Any other rcode: one bucket per prefix.
    Error = 4,
}

/// The buckets of one config's rate limit. `S` keys the hash: random per limiter in the
/// server (the tests fix it, so that which of their keys share a slot never changes).
#[derive(Debug)]
pub(crate) struct RateLimiter<S = RandomState> {
    settings: RateLimitConfig,
    slots: Box<[AtomicU64]>,
    hasher: S,
    epoch: Instant,
}

// The layout of a bucket's word: tag (16 bits, from the key's hash, telling whose bucket
// the slot holds) | second of the last refill (16 bits, wrapping) | balance + BALANCE_BIAS
// (24 bits) | answers over the rate since the last slip (8 bits). A live word is never 0
// (the balance never reaches -BALANCE_BIAS), so 0 is an empty slot.
const BALANCE_BIAS: i64 = 1 << 23;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    tag: u16,
    second: u16,
    balance: i64,
    over: u8,
}

impl Bucket {
    fn pack(self) -> u64 {
        (u64::from(self.tag) << 48)
            | (u64::from(self.second) << 32)
            | ((((self.balance + BALANCE_BIAS) as u64) & 0xFF_FFFF) << 8)
            | u64::from(self.over)
    }

    fn unpack(word: u64) -> Self {
        Self {
            tag: (word >> 48) as u16,
            second: (word >> 32) as u16,
            balance: ((word >> 8) & 0xFF_FFFF) as i64 - BALANCE_BIAS,
            over: word as u8,
        }
    }
}

impl RateLimiter {
    /// A limiter with every bucket empty, its hash keyed at random.
    pub(crate) fn new(settings: &RateLimitConfig) -> Self {
        Self::with(settings, TABLE_SLOTS, RandomState::new())
    }
}

impl<S: BuildHasher> RateLimiter<S> {
    fn with(settings: &RateLimitConfig, slots: usize, hasher: S) -> Self {
        let slots = slots.next_power_of_two();
        Self {
            settings: *settings,
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            hasher,
            epoch: Instant::now(),
        }
    }

    /// The settings this limiter was built with.
    pub(crate) fn settings(&self) -> &RateLimitConfig {
        &self.settings
    }

    /// Counts `response` (a complete DNS message) to `client` and says what to do with it.
    pub(crate) fn check(&self, client: IpAddr, response: &[u8]) -> Verdict {
        let now = self.epoch.elapsed().as_secs();
        self.check_at(client, response, now)
    }

    fn check_at(&self, client: IpAddr, response: &[u8], now: u64) -> Verdict {
        let mut hasher = self.hasher.build_hasher();
        self.hash_prefix(client, &mut hasher);
        classify(response, &mut hasher);
        self.count(hasher.finish(), now)
    }

    fn hash_prefix(&self, client: IpAddr, hasher: &mut impl Hasher) {
        match client.to_canonical() {
            IpAddr::V4(ip) => {
                let bits = u32::from(ip);
                let length = u32::from(self.settings.ipv4_prefix_length.min(32));
                let mask = u32::MAX.checked_shl(32 - length).unwrap_or(0);
                hasher.write_u8(4);
                hasher.write_u32(bits & mask);
            }
            IpAddr::V6(ip) => {
                let bits = u128::from(ip);
                let length = u32::from(self.settings.ipv6_prefix_length.min(128));
                let mask = u128::MAX.checked_shl(128 - length).unwrap_or(0);
                hasher.write_u8(6);
                hasher.write_u128(bits & mask);
            }
        }
    }

    /// Debits the bucket of `key` at second `now` (since the limiter's epoch).
    fn count(&self, key: u64, now: u64) -> Verdict {
        let rate = i64::from(self.settings.responses_per_second);
        let floor = -rate * (i64::from(self.settings.window_seconds) - 1);
        let slip = self.settings.slip;
        let tag = (key >> 48) as u16;
        let second = now as u16;
        let slot = &self.slots[(key as usize) & (self.slots.len() - 1)];
        let mut verdict = Verdict::Send;
        // Lock-free: recompute from the current word until the swap succeeds.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let mut bucket = match Bucket::unpack(word) {
                current if word != 0 && current.tag == tag => {
                    let elapsed = i64::from(second.wrapping_sub(current.second));
                    Bucket {
                        second,
                        balance: (current.balance + elapsed * rate).min(rate),
                        ..current
                    }
                }
                // Empty, or another key's: this key's bucket starts full.
                _ => Bucket {
                    tag,
                    second,
                    balance: rate,
                    over: 0,
                },
            };
            verdict = if bucket.balance > 0 {
                Verdict::Send
            } else if slip == 0 {
                Verdict::Drop
            } else {
                bucket.over = ((u32::from(bucket.over) + 1) % slip) as u8;
                if bucket.over == 0 {
                    Verdict::Slip
                } else {
                    Verdict::Drop
                }
            };
            bucket.balance = (bucket.balance - 1).max(floor);
            Some(bucket.pack())
        });
        verdict
    }
}

/// Feeds the class of `response` and its name (see the module docs) into `hasher`. A
/// message too short or malformed to read counts as an error.
fn classify(response: &[u8], hasher: &mut impl Hasher) {
    if classify_message(response, hasher).is_none() {
        hasher.write_u8(Class::Error as u8);
    }
}

fn read_u16(message: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *message.get(at)?,
        *message.get(at + 1)?,
    ]))
}

fn classify_message(message: &[u8], hasher: &mut impl Hasher) -> Option<()> {
    let rcode = message.get(3)? & 0x0F;
    let questions = read_u16(message, 4)?;
    let answers = read_u16(message, 6)?;
    let authorities = read_u16(message, 8)?;
    let class = match (rcode, answers) {
        (0, 0) => Class::NoData,
        (0, _) => Class::Positive,
        (3, _) => Class::Nxdomain,
        _ => {
            hasher.write_u8(Class::Error as u8);
            return Some(());
        }
    };
    if questions != 1 {
        return None;
    }
    let mut name = NameHash::default();
    let after_name = walk_name(message, 12, Some(&mut name))?;
    let qtype = read_u16(message, after_name)?;
    if class == Class::Positive {
        hasher.write_u8(class as u8);
        hasher.write_u16(qtype);
        hasher.write_u64(name.finish());
        return Some(());
    }
    // NXDOMAIN / NODATA: the zone, named by the SOA (or the NS of a referral) heading the
    // authority section.
    let mut at = after_name + 4;
    for _ in 0..answers {
        at = skip_record(message, at)?;
    }
    if authorities > 0 {
        let mut owner = NameHash::default();
        let after_owner = walk_name(message, at, Some(&mut owner))?;
        if matches!(read_u16(message, after_owner)?, 2 | 6) {
            name = owner;
        }
    }
    hasher.write_u8(class as u8);
    hasher.write_u64(name.finish());
    Some(())
}

/// A name's labels, lower-cased, hashed with a fixed function (the limiter's keyed hasher
/// hashes the result).
#[derive(Default)]
struct NameHash(u64);

impl NameHash {
    fn label(&mut self, label: &[u8]) {
        // FNV-1a over the length and the lower-cased bytes.
        for byte in
            std::iter::once(label.len() as u8).chain(label.iter().map(u8::to_ascii_lowercase))
        {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Reads the name at `at` (following compression pointers, at most 64) and returns where the
/// bytes after it start.
fn walk_name(message: &[u8], mut at: usize, mut hash: Option<&mut NameHash>) -> Option<usize> {
    let mut end = None;
    for _ in 0..128 {
        let length = *message.get(at)?;
        match length {
            0 => return Some(end.unwrap_or(at + 1)),
            1..=63 => {
                let label = message.get(at + 1..at + 1 + usize::from(length))?;
                if let Some(hash) = hash.as_deref_mut() {
                    hash.label(label);
                }
                at += 1 + usize::from(length);
            }
            0xC0..=0xFF => {
                let pointer = usize::from(read_u16(message, at)? & 0x3FFF);
                end.get_or_insert(at + 2);
                at = pointer;
            }
            _ => return None,
        }
    }
    None
}

fn skip_record(message: &[u8], at: usize) -> Option<usize> {
    let after_name = walk_name(message, at, None)?;
    let length = usize::from(read_u16(message, after_name + 8)?);
    let end = after_name + 10 + length;
    (end <= message.len()).then_some(end)
}

/// Rewrites the response at `out[start..]` into its slipped form: the header with TC=1 and
/// no records, and the question. Leaves it whole when it cannot read the question.
pub(crate) fn slip(out: &mut Vec<u8>, start: usize) {
    let Some(message) = out.get(start..) else {
        return;
    };
    let questions = read_u16(message, 4).unwrap_or(0);
    let end = if questions == 1 {
        walk_name(message, 12, None).map(|after| after + 4)
    } else {
        Some(12)
    };
    let Some(end) = end.filter(|end| *end <= message.len()) else {
        return;
    };
    out.truncate(start + end);
    if let Some(flags) = out.get_mut(start + 2) {
        *flags |= 0x02;
    }
    for at in 6..12 {
        if let Some(count) = out.get_mut(start + at) {
            *count = 0;
        }
    }
}

#[cfg(test)]
mod tests;
