//! `persona bench e2e`: the whole embedded pipeline (ingest, scrub, tokenize, the
//! actors with features and offers, de-tokenize and deliver, outputs) over a
//! generated bank of a stated size, as `persona demo` runs it, without the story.

use std::fmt;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{median, rss};
use crate::demo::bank::{self, BankConfig};
use crate::kms::KmsArgs;
use crate::pipeline::{self, RunOptions};
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Customers in the generated bank.
    #[arg(long, default_value_t = 20_000)]
    customers: u32,
    /// Days of history.
    #[arg(long, default_value_t = 60)]
    days: u32,
    /// Runs, each on a fresh state; throughput is their median.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kms: KmsArgs,
}

#[derive(Debug, Serialize)]
struct Params {
    customers: u32,
    days: u32,
    records: u64,
    events: u64,
    runs: u32,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    /// Events per second over the whole pipeline (ingest to outputs).
    ops_per_sec: f64,
    /// Events per second of the cloud stage alone (the actors).
    actors_ops_per_sec: f64,
    /// The actors use a thread per partition; the machine's cores.
    cores_used: usize,
    peak_rss_bytes: u64,
    runs_ops_per_sec: Vec<f64>,
    params: Params,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "bench e2e: {} customers over {} days ({} records, {} events), {} runs, {} cores",
            p.customers, p.days, p.records, p.events, p.runs, self.cores_used
        )?;
        super::median_line(f, "events/s all stages", self.ops_per_sec, &self.runs_ops_per_sec)?;
        writeln!(f, "  events/s actors (median)     {:>10.0}", self.actors_ops_per_sec)?;
        write!(f, "  peak RSS                     {:>10} bytes", self.peak_rss_bytes)
    }
}

pub(crate) async fn run(args: &Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("persona-bench-e2e-{}", std::process::id()));
    let result = measure(args, &dir).await;
    std::fs::remove_dir_all(&dir).ok();
    let report = result?;
    super::print(&report, args.json);
    Ok(())
}

async fn measure(args: &Args, dir: &std::path::Path) -> Result<Report> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let sources = dir.join("sources");
    let config = BankConfig {
        customers: args.customers,
        days: args.days,
        seed: 7,
        end: chrono::NaiveDate::from_ymd_opt(2026, 10, 31).expect("a date"),
    };
    let bank = bank::generate(&config, &sources, &mut |_| {}).context("generating the bank")?;
    let specs_dir = dir.join("specs");
    crate::demo::write_specs(&specs_dir)?;
    let quiet = Progress::new(true);
    let (mut all, mut actors) = (Vec::new(), Vec::new());
    let mut events = 0;
    for run in 0..args.runs.max(1) {
        let specs = crate::specs::load(&specs_dir)?;
        let (data, out) = (dir.join(format!("data-{run}")), dir.join(format!("out-{run}")));
        let opts = RunOptions {
            sources: &sources,
            data: &data,
            out: &out,
            as_of: None,
            backfill: &[],
            kms: &args.kms,
            max_hot: None,
        };
        let finished = pipeline::run(specs, opts, &quiet).await?;
        all.push(finished.summary.events_per_sec);
        actors.push(finished.summary.cloud_events_per_sec);
        events = finished.summary.events;
        finished.shard.stop().await;
        std::fs::remove_dir_all(&data).ok();
    }
    Ok(Report {
        scenario: "e2e",
        ops_per_sec: median(all.clone()),
        actors_ops_per_sec: median(actors),
        cores_used: std::thread::available_parallelism().map_or(1, usize::from),
        peak_rss_bytes: rss().1,
        runs_ops_per_sec: all,
        params: Params {
            customers: args.customers,
            days: args.days,
            records: bank.records,
            events,
            runs: args.runs,
        },
    })
}
