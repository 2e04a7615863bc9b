//! `persona bench passivation`: a shard holding far more customers than its memory
//! bound. Generated customers (a profile and a few events each, customer after
//! customer) stream through an in-process shard whose `--max-hot` is much smaller;
//! the scenario reports events per second, the shard's peak resident memory, and the
//! memory goal of issue [distribution]: hot x (model + 1 KB) + 256 MB, the model size
//! being the mean size of a customer's encoded state in the store.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use persona_actors::{Shard, ShardConfig};
use persona_bus::MemoryBus;
use serde::Serialize;

use super::features::customer_events;

const PARTITIONS: u32 = 8;
/// Events published ahead of what the shard applied, at most. The in-process bus
/// holds them in this process's memory, which a shard on Redis does not (its backlog
/// is on Redis): enough to keep every partition busy, no more.
const AHEAD: u64 = 20_000;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    customers: u32,
    /// Events per customer besides her profile.
    #[arg(long, default_value_t = 5)]
    events_per_customer: u32,
    /// Customers in memory at most (the shard's --max-hot).
    #[arg(long, default_value_t = 100_000)]
    max_hot: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Params {
    customers: u32,
    events: u64,
    max_hot: usize,
    partitions: u32,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    ops_per_sec: f64,
    cores_used: usize,
    peak_rss_bytes: u64,
    /// Mean encoded size of a customer's state (the store's bytes per customer).
    model_bytes: u64,
    /// hot x (model + 1 KB) + 256 MB.
    goal_rss_bytes: u64,
    /// (peak RSS - RSS before the first event) / customers in memory: what one hot
    /// customer costs in memory, sled's cache and the bus backlog included.
    rss_per_hot_customer: u64,
    hot_after: u64,
    passivated: u64,
    params: Params,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "bench passivation: {} customers, {} events, at most {} in memory, {} partitions, 1 shard in-process",
            p.customers, p.events, p.max_hot, p.partitions
        )?;
        writeln!(f, "  {:<28} {:>12.0}", "events/s", self.ops_per_sec)?;
        writeln!(f, "  {:<28} {:>12}", "passivated", self.passivated)?;
        writeln!(f, "  {:<28} {:>12}", "in memory at the end", self.hot_after)?;
        writeln!(
            f,
            "  {:<28} {:>12} bytes",
            "model (encoded) per customer", self.model_bytes
        )?;
        writeln!(f, "  {:<28} {:>12} bytes", "peak RSS", self.peak_rss_bytes)?;
        writeln!(
            f,
            "  {:<28} {:>12} bytes",
            "RSS per hot customer", self.rss_per_hot_customer
        )?;
        write!(
            f,
            "  {:<28} {:>12} bytes (hot x (model + 1 KB) + 256 MB): {}",
            "goal",
            self.goal_rss_bytes,
            if self.peak_rss_bytes <= self.goal_rss_bytes {
                "met"
            } else {
                "NOT met"
            }
        )
    }
}

pub(crate) async fn run(args: &Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("persona-bench-passivation-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let engine = Arc::new(super::dsl::engine(None)?);
    let bus = Arc::new(MemoryBus::new(PARTITIONS));
    let config = ShardConfig {
        name: "bench-passivation".into(),
        dir: dir.join("shard"),
        checkpoint_every: 10_000,
        batch: 512,
        max_hot: Some(args.max_hot),
        idle_after: None,
        peer_tls: None,
    };
    let mut shard = Shard::start(config, engine, bus.clone()).await?;
    let (before, _) = super::rss();
    let start = persona_event::time::parse_ts("2026-08-01T00:00:00Z")?;
    let started = Instant::now();
    let mut published = 0u64;
    for c in 0..args.customers {
        let mut events = customer_events(c, args.events_per_customer, start);
        if let Some(first) = events.first() {
            events.insert(0, super::dsl::profile(first, c));
        }
        for e in events {
            bus.publish(e);
            published += 1;
        }
        // Keep the backlog bounded: the bus holds what is not yet checkpointed.
        if published % 10_000 < u64::from(args.events_per_customer) + 1 {
            while published.saturating_sub(shard.stats().await?.applied) > AHEAD {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    bus.close_events();
    shard.drain().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let stats = shard.stats().await?;
    shard.stop().await;
    let (_, peak) = super::rss();
    let store_bytes = dir_size(&dir.join("shard"));
    std::fs::remove_dir_all(&dir).ok();
    let model = store_bytes / u64::from(args.customers.max(1));
    let goal = args.max_hot as u64 * (model + 1024) + 256 * 1024 * 1024;
    let report = Report {
        scenario: "passivation",
        ops_per_sec: published as f64 / elapsed,
        cores_used: std::thread::available_parallelism().map_or(1, usize::from),
        peak_rss_bytes: peak,
        model_bytes: model,
        goal_rss_bytes: goal,
        rss_per_hot_customer: peak.saturating_sub(before) / args.max_hot.max(1) as u64,
        hot_after: stats.hot,
        passivated: stats.passivated,
        params: Params {
            customers: args.customers,
            events: published,
            max_hot: args.max_hot,
            partitions: PARTITIONS,
        },
    };
    super::print(&report, args.json);
    Ok(())
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
