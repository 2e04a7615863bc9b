//! Latency histograms of the shard (process-wide: one shard per process), for its
//! `/metrics`. Counts per partition come from the partition actors' stats at
//! scrape time.

use std::sync::OnceLock;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// How long feeding takes.
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    /// One batch read from the bus: applied by the partition actor and its matches
    /// published.
    pub apply_seconds: Histogram,
    /// One checkpoint: the store flushed and the entries acknowledged.
    pub checkpoint_seconds: Histogram,
    /// One Decide call, from reaching the service to its reply (a forwarded call
    /// includes the owner's answer).
    pub decide_seconds: Histogram,
}

/// The process's histograms.
pub fn shard_metrics() -> &'static ShardMetrics {
    static METRICS: OnceLock<ShardMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ShardMetrics {
        // 50 µs to ~1.6 s.
        apply_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        checkpoint_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        // 25 µs to ~0.8 s.
        decide_seconds: Histogram::new(exponential_buckets(0.000_025, 2.0, 16)),
    })
}
