//! Latency histograms of the feeders (process-wide: one shard per process), for the
//! shard's `/metrics`. Counts per partition come from the partition actors' stats at
//! scrape time.

use std::sync::OnceLock;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// How long feeding takes.
#[derive(Debug, Clone)]
pub struct FeedMetrics {
    /// One batch read from the bus: applied by the partition actor and its matches
    /// published.
    pub apply_seconds: Histogram,
    /// One checkpoint: the store flushed and the entries acknowledged.
    pub checkpoint_seconds: Histogram,
}

/// The process's feeder histograms.
pub fn feed_metrics() -> &'static FeedMetrics {
    static METRICS: OnceLock<FeedMetrics> = OnceLock::new();
    METRICS.get_or_init(|| FeedMetrics {
        // 50 µs to ~1.6 s.
        apply_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        checkpoint_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
    })
}
