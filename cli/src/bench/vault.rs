//! `persona bench tokenize` and `persona bench detokenize`: the trusted zone's two
//! hot paths over a generated bank, on one core.
//!
//! - tokenize: source records read, scrubbed and tokenized into canonical events per
//!   second (the gateway's work for a file drop). The first run issues every token
//!   into a fresh vault; the measured runs then read the same files into the same
//!   vault, as a gateway does day after day (customers are known).
//! - detokenize: resolutions per second, token -> customer key -> the contact field a
//!   channel needs (what the de-tokenizer does for every match), with the latency of
//!   each and the KMS calls they cost (the data-key cache must keep them near 0).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use persona_event::{ContactKind, Token};
use persona_gateway::Gateway;
use persona_privacy::Vault;
use serde::Serialize;

use super::{median, percentile, rss};
use crate::demo::bank::{self, BankConfig};
use crate::kms::KmsArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Customers in the generated bank.
    #[arg(long, default_value_t = 20_000)]
    customers: u32,
    /// Days of history.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Measured runs; throughput is their median.
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
    /// Records (tokenize) or tokens (detokenize) per run.
    items: u64,
    runs: u32,
    kms: String,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    /// Records per second (tokenize) or resolutions per second (detokenize), median.
    ops_per_sec: f64,
    cores_used: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_ms: Option<f64>,
    /// tokenize: records per second of the first run, which issued every token.
    #[serde(skip_serializing_if = "Option::is_none")]
    issuing_ops_per_sec: Option<f64>,
    /// KMS calls (GenerateDataKey + Decrypt) made during the measured runs, and per item.
    kms_calls: u64,
    kms_calls_per_item: f64,
    peak_rss_bytes: u64,
    runs_ops_per_sec: Vec<f64>,
    params: Params,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        let what = if self.scenario == "tokenize" {
            "records"
        } else {
            "resolutions"
        };
        writeln!(
            f,
            "bench {}: {} customers over {} days, {} {what} per run, {} runs, 1 core, kms {}",
            self.scenario, p.customers, p.days, p.items, p.runs, p.kms
        )?;
        super::median_line(f, &format!("{what}/s"), self.ops_per_sec, &self.runs_ops_per_sec)?;
        if let Some(issuing) = self.issuing_ops_per_sec {
            writeln!(f, "  {:<28} {issuing:>12.0}", "records/s issuing tokens")?;
        }
        if let (Some(p50), Some(p99)) = (self.p50_ms, self.p99_ms) {
            writeln!(f, "  {:<28} {:>12.4} / {:.4} ms", "latency p50 / p99", p50, p99)?;
        }
        writeln!(
            f,
            "  {:<28} {:>12} ({:.6} per {})",
            "KMS calls (measured runs)",
            self.kms_calls,
            self.kms_calls_per_item,
            what.trim_end_matches('s')
        )?;
        write!(f, "  {:<28} {:>12} bytes", "peak RSS", self.peak_rss_bytes)
    }
}

/// A generated bank in a scratch directory, removed when dropped.
struct Scratch {
    dir: std::path::PathBuf,
    sources: Vec<persona_privacy::Source>,
}

impl Scratch {
    fn new(name: &str, args: &Args) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("persona-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut scratch = Scratch {
            sources: Vec::new(),
            dir,
        };
        let config = BankConfig {
            customers: args.customers,
            days: args.days,
            seed: 7,
            end: chrono::NaiveDate::from_ymd_opt(2026, 10, 31).expect("a date"),
        };
        bank::generate(&config, &scratch.dir.join("sources"), &mut |_| {}).context("generating the bank")?;
        crate::demo::write_specs(&scratch.dir.join("specs"))?;
        scratch.sources = crate::specs::load(&scratch.dir.join("specs"))?.sources;
        Ok(scratch)
    }

    fn vault(&self, args: &Args) -> Result<Arc<Vault>> {
        args.kms.open_vault(&self.dir.join("data"))
    }

    /// Reads every source file through the gateway into `vault`: (records, seconds,
    /// the tokens of the events).
    fn ingest(&self, vault: &Arc<Vault>) -> Result<(u64, f64, Vec<Token>)> {
        let gateway = Gateway::new(self.sources.clone(), vault.clone());
        let mut tokens = Vec::new();
        let started = Instant::now();
        let report = gateway.ingest_dir(&self.dir.join("sources"), &mut |e| tokens.push(e.token))?;
        let seconds = started.elapsed().as_secs_f64();
        Ok((report.records_read, seconds, tokens))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

pub(crate) fn tokenize(args: &Args) -> Result<()> {
    let scratch = Scratch::new("tokenize", args)?;
    let vault = scratch.vault(args)?;
    let (records, seconds, _) = scratch.ingest(&vault)?;
    let issuing = records as f64 / seconds;
    let before = vault.kms_calls().total();
    let mut rates = Vec::new();
    for _ in 0..args.runs.max(1) {
        let (records, seconds, _) = scratch.ingest(&vault)?;
        rates.push(records as f64 / seconds);
    }
    let kms_calls = vault.kms_calls().total() - before;
    let measured = records * u64::from(args.runs.max(1));
    let report = Report {
        scenario: "tokenize",
        ops_per_sec: median(rates.clone()),
        cores_used: 1,
        p50_ms: None,
        p99_ms: None,
        issuing_ops_per_sec: Some(issuing),
        kms_calls,
        kms_calls_per_item: kms_calls as f64 / measured.max(1) as f64,
        peak_rss_bytes: rss().1,
        runs_ops_per_sec: rates,
        params: params(args, records),
    };
    super::print(&report, args.json);
    Ok(())
}

pub(crate) fn detokenize(args: &Args) -> Result<()> {
    let scratch = Scratch::new("detokenize", args)?;
    let mut tokens = {
        let vault = scratch.vault(args)?;
        let (_, _, tokens) = scratch.ingest(&vault)?;
        vault.flush()?;
        tokens
    };
    tokens.sort_unstable();
    tokens.dedup();
    // A vault opened afresh, as the de-tokenizer's own process would: its key cache
    // starts cold, and its KMS calls are all counted.
    let vault = scratch.vault(args)?;
    let before = vault.kms_calls().total();
    let (mut rates, mut latencies) = (Vec::new(), Vec::with_capacity(tokens.len()));
    for run in 0..args.runs.max(1) {
        let started = Instant::now();
        for token in &tokens {
            let t = Instant::now();
            let key = vault.resolve(token)?.context("an issued token resolves")?;
            let email = vault.contact(token, ContactKind::Email)?;
            std::hint::black_box((key, email));
            if run == 0 {
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        rates.push(tokens.len() as f64 / started.elapsed().as_secs_f64());
    }
    let kms_calls = vault.kms_calls().total() - before;
    let measured = tokens.len() as u64 * u64::from(args.runs.max(1));
    let report = Report {
        scenario: "detokenize",
        ops_per_sec: median(rates.clone()),
        cores_used: 1,
        p50_ms: Some(percentile(&mut latencies, 0.5)),
        p99_ms: Some(percentile(&mut latencies, 0.99)),
        issuing_ops_per_sec: None,
        kms_calls,
        kms_calls_per_item: kms_calls as f64 / measured.max(1) as f64,
        peak_rss_bytes: rss().1,
        runs_ops_per_sec: rates,
        params: params(args, tokens.len() as u64),
    };
    super::print(&report, args.json);
    Ok(())
}

fn params(args: &Args, items: u64) -> Params {
    Params {
        customers: args.customers,
        days: args.days,
        items,
        runs: args.runs,
        kms: args.kms.provider.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both scenarios run end to end on a tiny bank and count what they claim.
    #[test]
    fn both_scenarios_measure_a_small_bank() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = Cli::parse_from(["bench", "--customers", "30", "--days", "5", "--runs", "1", "--json"]);
        tokenize(&cli.args).unwrap();
        detokenize(&cli.args).unwrap();
        let scratch = Scratch::new("unit", &cli.args).unwrap();
        let vault = scratch.vault(&cli.args).unwrap();
        let (records, _, tokens) = scratch.ingest(&vault).unwrap();
        assert!(records > 30, "{records}");
        let calls = vault.kms_calls().total();
        let (again, _, same) = scratch.ingest(&vault).unwrap();
        assert_eq!(
            (again, &same),
            (records, &tokens),
            "the same records give the same tokens"
        );
        assert_eq!(vault.kms_calls().total(), calls, "known customers cost no KMS call");
    }
}
