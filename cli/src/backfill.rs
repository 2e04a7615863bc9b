//! `persona backfill`: features computed in batch from the source files, without
//! actors: every customer's whole history evaluated as of one instant. It reads and
//! tokenizes like `persona run` (same vault, same tokens) and writes `features.jsonl`
//! in the same format, so the two can be compared: streaming equals batch.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};
use persona_event::{Event, Token};
use persona_features::batch;

use crate::kms::KmsArgs;
use crate::pipeline::ingest;
use crate::progress::Progress;
use crate::specs;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory of Source and FeatureSet YAML (Offers are ignored).
    #[arg(long)]
    specs: PathBuf,
    #[arg(long)]
    sources: PathBuf,
    /// State directory: its trusted vault gives the tokens (issued when new).
    #[arg(long)]
    data: PathBuf,
    /// Where features.jsonl and dead_letter.jsonl go.
    #[arg(long)]
    out: PathBuf,
    /// Also write the canonical tokenized events, in event-time order, one JSON object
    /// per line: what the cloud zone receives (tokens, no protected value). The Spark
    /// comparison (bench/spark/compare) computes features from this file.
    #[arg(long)]
    events_out: Option<PathBuf>,
    /// The instant features are evaluated at (default: the latest event).
    #[arg(long, value_parser = crate::args::parse_instant)]
    as_of: Option<DateTime<Utc>>,
    #[command(flatten)]
    kms: KmsArgs,
}

pub(crate) async fn run(args: Args, progress: &Progress) -> Result<()> {
    let specs = specs::load(&args.specs)?;
    crate::commands::report_problems(&specs);
    std::fs::create_dir_all(&args.out)?;
    let vault = args.kms.open_vault(&args.data)?;
    let (events, report) = ingest(specs.sources, &vault, &args.sources, progress).await?;
    let Some(as_of) = args.as_of.or(events.last().map(|e| e.ts)) else {
        anyhow::bail!("no events: nothing to backfill");
    };
    if let Some(path) = &args.events_out {
        crate::outputs::write_lines(path, events.iter())?;
    }
    let mut by_customer: HashMap<Token, Vec<Event>> = HashMap::new();
    for e in events {
        by_customer.entry(e.token.clone()).or_default().push(e);
    }
    let mut features: Vec<_> = by_customer
        .into_iter()
        .map(|(token, events)| {
            let values = batch::evaluate(&specs.features, &events, as_of);
            (token, as_of, values)
        })
        .collect();
    features.sort_by(|a, b| a.0.cmp(&b.0));
    crate::outputs::write_features(&args.out.join("features.jsonl"), &features)?;
    crate::outputs::write_dead_letters(&args.out.join("dead_letter.jsonl"), &report.dead_letters)?;
    println!(
        "backfilled {} customers as of {}",
        features.len(),
        persona_event::time::format_ts(&as_of)
    );
    Ok(())
}
