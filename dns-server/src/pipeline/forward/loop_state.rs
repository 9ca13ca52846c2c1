//! What loop detection ([`super::loops`]) knows about one upstream: kept by the upstream
//! itself (so a reload that keeps the upstream keeps the verdict), read by the forward
//! stage to recognise an echoed probe and to leave a looping upstream out.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use arc_swap::ArcSwapOption;

/// What is known about one upstream's loops.
#[derive(Debug, Default)]
pub struct LoopState {
    /// The probe in flight (wire form, lower case), while probing.
    pub(super) probe: ArcSwapOption<Box<[u8]>>,
    pub(super) echoes: AtomicU32,
    pub(super) probed: AtomicBool,
    pub(super) looping: AtomicBool,
}

impl LoopState {
    /// Whether a loop through this upstream was found.
    pub fn looping(&self) -> bool {
        self.looping.load(Ordering::Relaxed)
    }

    /// Counts `name` (a query's name, wire form, lower case) if it is this upstream's probe
    /// in flight; whether it was.
    pub fn echo(&self, name: &[u8]) -> bool {
        let hit = self
            .probe
            .load()
            .as_deref()
            .is_some_and(|probe| **probe == *name);
        if hit {
            self.echoes.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }
}
