//! A check-latency histogram that many cores can write at once.
//!
//! `prometheus-client`'s histogram takes one mutex per observation: a cache
//! line that every worker thread writes on every check, which is what stops
//! a server scaling with its cores. Here each thread adds to one of
//! [`SHARDS`] sets of atomic counts on cache lines of their own; a scrape
//! sums them. The exposition is the same as the library's histogram with
//! the same buckets.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::MetricType;

/// Bucket bounds: 1 µs times powers of 4, up to about 4.2 s.
const BOUNDS: usize = 12;

/// Sets of counts; threads past this many share them.
const SHARDS: usize = 16;

/// The upper bound of bucket `i`, in nanoseconds.
fn bound_nanos(i: usize) -> u64 {
    1_000 << (2 * i)
}

/// One thread's counts (shared only past [`SHARDS`] threads). The last
/// bucket counts what is above every bound.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Shard {
    buckets: [AtomicU64; BOUNDS + 1],
    sum_nanos: AtomicU64,
}

/// A latency histogram with buckets from 1 µs to about 4.2 s, by powers
/// of 4. Clones share their counts.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    shards: Arc<[Shard]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

/// This thread's shard, handed out in turn on first use.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        if index.get() == usize::MAX {
            index.set(NEXT.fetch_add(1, Relaxed) % SHARDS);
        }
        index.get()
    })
}

impl LatencyHistogram {
    /// Counts one observation.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = (0..BOUNDS).find(|&i| nanos <= bound_nanos(i)).unwrap_or(BOUNDS);
        let shard = &self.shards[shard_index()];
        shard.buckets[bucket].fetch_add(1, Relaxed);
        // Wraps after 584 years of summed latency.
        shard.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The sum in seconds, the count, and each bucket's own count with its
    /// upper bound in seconds (the last one infinite), as the encoder takes
    /// them.
    fn totals(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets: Vec<(f64, u64)> = exponential_buckets(1e-6, 4.0, BOUNDS as u16)
            .chain([f64::INFINITY])
            .map(|bound| (bound, 0))
            .collect();
        let mut sum_nanos = 0u64;
        for shard in self.shards.iter() {
            for (total, count) in buckets.iter_mut().zip(&shard.buckets) {
                total.1 += count.load(Relaxed);
            }
            sum_nanos = sum_nanos.wrapping_add(shard.sum_nanos.load(Relaxed));
        }
        let count = buckets.iter().map(|(_, count)| count).sum();
        (sum_nanos as f64 / 1e9, count, buckets)
    }
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.totals();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    fn exposition(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn encodes_as_the_librarys_histogram_with_the_same_buckets() {
        let ours = LatencyHistogram::default();
        let theirs = Histogram::new(exponential_buckets(1e-6, 4.0, 12));
        // Each bound exactly, just past it, and past the last bound.
        let mut nanos: Vec<u64> = (0..BOUNDS)
            .flat_map(|i| [bound_nanos(i), bound_nanos(i) + 1])
            .collect();
        nanos.extend([0, 17, 5_000_000_000, u64::MAX / 2]);
        for n in nanos {
            ours.observe(Duration::from_nanos(n));
            theirs.observe(n as f64 / 1e9);
        }
        let ours = exposition(|r| r.register("latency", "help", ours.clone()));
        let theirs = exposition(|r| r.register("latency", "help", theirs.clone()));
        // The sums differ in the last digits (integer nanoseconds against
        // a float sum); every other line must match.
        let without_sum = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|line| !line.starts_with("latency_sum"))
                .map(String::from)
                .collect()
        };
        assert_eq!(without_sum(&ours), without_sum(&theirs), "{ours}");
        assert!(ours.contains("latency_count 28"), "{ours}");
        assert!(ours.contains("latency_bucket{le=\"+Inf\"} 28"), "{ours}");
    }

    #[test]
    fn counts_every_observation_from_many_threads() {
        let histogram = LatencyHistogram::default();
        std::thread::scope(|scope| {
            for thread in 0..20u64 {
                let histogram = &histogram;
                scope.spawn(move || {
                    for i in 0..5_000u64 {
                        histogram.observe(Duration::from_nanos(thread * 1_000 + i));
                    }
                });
            }
        });
        let (sum, count, buckets) = histogram.totals();
        assert_eq!(count, 100_000);
        assert_eq!(buckets.iter().map(|(_, c)| c).sum::<u64>(), 100_000);
        let expected: u64 = (0..20u64)
            .map(|t| (0..5_000u64).map(|i| t * 1_000 + i).sum::<u64>())
            .sum();
        assert!((sum - expected as f64 / 1e9).abs() < 1e-9, "{sum}");
    }
}
