//! How fast a failed watch retries.
//!
//! kube's default (client-go's: 0.8 s doubling to 30 s) is kind to a struggling API server
//! but means that after an outage of half a minute, changes can take another 30 s to show.
//! A DNS server wants to be current again quickly, and its watches are few (three or four per
//! replica), so [`WatchBackoff`] doubles from [`MIN_DELAY`] up to only [`MAX_DELAY`], each
//! delay jittered down by up to half so replicas do not retry in step. It starts again
//! from [`MIN_DELAY`] after [`RESET_AFTER`] without errors (kube's `ResetTimerBackoff`).

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use kube::runtime::utils::{Backoff, ResetTimerBackoff};

/// First delay after a failure.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(500);
/// Longest delay between attempts.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(5);
/// A watch healthy this long starts its next backoff from [`MIN_DELAY`].
pub(crate) const RESET_AFTER: Duration = Duration::from_secs(120);

/// Exponential backoff from [`MIN_DELAY`] to [`MAX_DELAY`] with jitter.
#[derive(Debug)]
pub(crate) struct WatchBackoff {
    current: Duration,
    jitter: std::collections::hash_map::RandomState,
    attempt: u64,
}

impl WatchBackoff {
    /// A backoff at its first delay.
    pub(crate) fn new() -> Self {
        Self {
            current: MIN_DELAY,
            jitter: std::collections::hash_map::RandomState::new(),
            attempt: 0,
        }
    }

    /// The backoff the watches use: [`WatchBackoff`] reset after [`RESET_AFTER`].
    pub(crate) fn for_watch() -> ResetTimerBackoff<Self> {
        ResetTimerBackoff::new(Self::new(), RESET_AFTER)
    }

    /// A factor in [0.5, 1.0), different for each attempt and each process.
    fn jitter_factor(&mut self) -> f64 {
        self.attempt += 1;
        let mut hasher = self.jitter.build_hasher();
        hasher.write_u64(self.attempt);
        let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
        0.5 + unit / 2.0
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.current.mul_f64(self.jitter_factor());
        self.current = (self.current * 2).min(MAX_DELAY);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.current = MIN_DELAY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut backoff = WatchBackoff::new();
        let delays: Vec<Duration> = backoff.by_ref().take(8).collect();
        let ceilings = [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000].map(Duration::from_millis);
        for (delay, ceiling) in delays.iter().zip(ceilings) {
            assert!(
                *delay < ceiling && *delay >= ceiling / 2,
                "{delay:?} for {ceiling:?}"
            );
        }
        assert!(
            delays.windows(2).any(|w| w[0] != w[1] && w[0] * 2 != w[1]),
            "jittered: {delays:?}"
        );
        backoff.reset();
        assert!(backoff.next().is_some_and(|d| d < MIN_DELAY));
    }
}
