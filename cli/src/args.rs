//! Command-line arguments. The doc comments are the `--help` text.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};

/// persona: real-time offer personalization for banks, with customer data kept on-prem.
#[derive(Debug, Parser)]
#[command(name = "persona", version, about)]
pub(crate) struct Cli {
    /// Less output on stderr: warnings and errors only.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    pub(crate) fn log_level(&self) -> &'static str {
        if self.quiet {
            "warn,sled=error"
        } else {
            "info,sled=warn,ractor=warn"
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Generate a synthetic bank and run all five stages on it, embedded.
    Demo(DemoArgs),
    /// Run the pipeline over your own sources and specs, embedded.
    Run(RunArgs),
    /// Compute features.jsonl in batch from the source files, without actors.
    Backfill(crate::backfill::Args),
    /// Trusted-zone vault administration.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Offer tools.
    #[command(subcommand)]
    Offer(OfferCommand),
    /// Measured scenarios (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Events/s per core applied to feature state, RAM and snapshot bytes per customer.
    Features(crate::bench::features::Args),
}

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Customers in the synthetic bank.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) customers: u32,
    /// Days of history, ending on --end.
    #[arg(long, default_value_t = 60)]
    pub(crate) days: u32,
    /// Seed: the same seed gives the same bank.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Last day of the calendar (YYYY-MM-DD).
    #[arg(long, default_value = "2026-10-31")]
    pub(crate) end: NaiveDate,
    /// Output directory; replaced on every run.
    #[arg(long, default_value = "persona-demo")]
    pub(crate) out: PathBuf,
    /// State directory (trusted/ and cloud/); default OUT/data.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Directory of Source, FeatureSet and Offer YAML.
    #[arg(long)]
    pub(crate) specs: PathBuf,
    /// Directory the Sources' file globs are read under.
    #[arg(long)]
    pub(crate) sources: PathBuf,
    /// State kept between runs: DATA/trusted (vault, keys) and DATA/cloud (shard state).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Output directory for matches, deliveries, features, audit, summary, dead letters.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Evaluate features.jsonl as of this RFC 3339 instant (default: the latest event).
    #[arg(long, value_parser = parse_instant)]
    pub(crate) as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Resolve tokens to customer keys (audited): prints TOKEN<TAB>KEY, or TOKEN<TAB>- when unknown.
    Resolve {
        #[arg(long)]
        data: PathBuf,
        #[arg(required = true)]
        tokens: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum OfferCommand {
    /// Validate offers and print diagnostics; exit 1 on any error.
    Check {
        /// Offer YAML files (FeatureSet documents among them are used for type-checking).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The FeatureSet file the offers are checked against.
        #[arg(long)]
        features: Option<PathBuf>,
    },
}

pub(crate) fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    persona_event::time::parse_ts(s).map_err(|e| e.to_string())
}
