//! Lock-free histograms for the per-query metrics: [`AtomicHistogram`] (one atomic counter
//! per bucket, where prometheus-client's own histogram takes a lock per observation), its
//! [`HistogramConstructor`] for a family, CoreDNS's bucket bounds, and `Slots`, the
//! per-label-combination handles the query path reads without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// CoreDNS `plugin.TimeBuckets`: 0.25 ms doubling 16 times (up to about 8 s).
pub const TIME_BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];

/// CoreDNS `plugin.SizeBuckets`, in bytes.
pub const SIZE_BUCKETS: [f64; 14] = [
    0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3,
];

/// Buckets of the DNS programming latency: 1 ms doubling 20 times (up to about 9 min).
pub const PROGRAMMING_BUCKETS: [f64; 20] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384, 32.768, 65.536, 131.072, 262.144, 524.288,
];

/// A histogram whose observations are lock-free: one atomic counter per bucket, an atomic
/// count and an atomic sum in integer units (nanoseconds or bytes).
#[derive(Clone, Debug)]
pub struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_units: AtomicU64,
    /// Value of one unit of `sum_units`.
    unit: f64,
}

impl AtomicHistogram {
    /// A histogram with these upper bounds, summing in units worth `unit`.
    pub fn new(bounds: &'static [f64], unit: f64) -> Self {
        Self {
            inner: Arc::new(HistogramInner {
                bounds,
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                count: AtomicU64::new(0),
                sum_units: AtomicU64::new(0),
                unit,
            }),
        }
    }

    /// Records one observation of `units` units.
    pub fn observe_units(&self, units: u64) {
        let inner = &*self.inner;
        let value = units as f64 * inner.unit;
        let bucket = inner
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(inner.bounds.len());
        inner.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        inner.count.fetch_add(1, Ordering::Relaxed);
        inner.sum_units.fetch_add(units, Ordering::Relaxed);
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // The count is the sum of the buckets read, so the rendering is consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = inner.sum_units.load(Ordering::Relaxed) as f64 * inner.unit;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Builds [`AtomicHistogram`]s for a [`Family`].
#[derive(Clone, Copy, Debug)]
pub struct HistogramConstructor {
    bounds: &'static [f64],
    unit: f64,
}

impl MetricConstructor<AtomicHistogram> for HistogramConstructor {
    fn new_metric(&self) -> AtomicHistogram {
        AtomicHistogram::new(self.bounds, self.unit)
    }
}

/// A family of [`AtomicHistogram`]s, one per label set.
pub(super) type HistogramFamily<L> = Family<L, AtomicHistogram, HistogramConstructor>;

/// A family of histograms with these upper bounds, summing in units worth `unit`.
pub(super) fn histograms<L: Clone + std::hash::Hash + Eq>(
    bounds: &'static [f64],
    unit: f64,
) -> HistogramFamily<L> {
    Family::new_with_constructor(HistogramConstructor { bounds, unit })
}

/// One handle per label combination, created on first use and read lock-free after.
#[derive(Debug)]
pub(super) struct Slots<M>(Box<[OnceLock<M>]>);

impl<M: Clone> Slots<M> {
    pub(super) fn new(n: usize) -> Self {
        Self((0..n).map(|_| OnceLock::new()).collect())
    }

    /// The handle in slot `index`, created by `create` on first use; `None` past the end.
    pub(super) fn get(&self, index: usize, create: impl FnOnce() -> M) -> Option<&M> {
        self.0.get(index).map(|slot| slot.get_or_init(create))
    }
}
