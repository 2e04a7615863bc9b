//! `persona demo`: a synthetic bank through all five stages, embedded. It writes the
//! generated sources and the specs it used under OUT, so `persona run` can replay
//! them, and ends with the summary and one persona's story. Its stdout is a
//! trusted-zone view (it may name the persona); its logs follow the cloud rule.

pub(crate) mod bank;
mod story;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::args::DemoArgs;
use crate::pipeline::{self, RunOptions};
use crate::progress::Progress;
use crate::specs;

/// The specs the demo runs, embedded in the binary and written to OUT/specs.
const SPECS: [(&str, &str); 3] = [
    ("sources.yaml", include_str!("demo/specs/sources.yaml")),
    ("featureset.yaml", include_str!("demo/specs/featureset.yaml")),
    ("offers.yaml", include_str!("demo/specs/offers.yaml")),
];

/// Writes the demo's specs into `dir`.
pub(crate) fn write_specs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in SPECS {
        std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))?;
    }
    Ok(())
}

/// Empties `dir` when it is empty or `ours` says it holds what an earlier demo made;
/// refuses anything else, so a typo in --out or --data cannot wipe a directory the
/// demo did not make.
fn replace_dir(dir: &Path, flag: &str, ours: impl Fn(&str) -> bool) -> Result<()> {
    if dir.exists() {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            entries.push(entry?.file_name().to_string_lossy().into_owned());
        }
        if !entries.iter().all(|e| ours(e)) {
            bail!(
                "{} exists and was not made by persona demo; choose another {flag}",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// What a demo writes to --out.
const OUT_ENTRIES: [&str; 9] = [
    "sources",
    "specs",
    "data",
    "matches.jsonl",
    "deliveries.jsonl",
    "features.jsonl",
    "audit.jsonl",
    "summary.json",
    "dead_letter.jsonl",
];

pub(crate) async fn run(args: DemoArgs, progress: &Progress) -> Result<ExitCode> {
    replace_dir(&args.out, "--out", |e| OUT_ENTRIES.contains(&e))?;
    let data = args.data.clone().unwrap_or_else(|| args.out.join("data"));
    // A demo's bank is new every time: its state starts empty too.
    replace_dir(&data, "--data", |e| e == "trusted" || e == "cloud")?;
    let sources = args.out.join("sources");
    let config = bank::BankConfig {
        customers: args.customers,
        days: args.days,
        seed: args.seed,
        end: args.end,
    };
    let bar = progress.counter("generate", "records");
    let dir = sources.clone();
    let bank = tokio::task::spawn_blocking(move || {
        let bank = bank::generate(&config, &dir, &mut |n| bar.set(n));
        if let Ok(b) = &bank {
            bar.finish(b.records);
        }
        bank
    })
    .await?
    .context("generating the synthetic bank")?;
    let spec_dir = args.out.join("specs");
    write_specs(&spec_dir)?;
    println!(
        "persona demo: a synthetic bank of {} customers over {} days (seed {}, ending {}), {} source records in {} files",
        args.customers,
        args.days,
        args.seed,
        args.end,
        bank.records,
        bank.files.len()
    );
    let specs = specs::load(&spec_dir)?;
    crate::commands::report_problems(&specs);
    let opts = RunOptions {
        sources: &sources,
        data: &data,
        out: &args.out,
        as_of: None,
        backfill: &[],
        kms: &args.kms,
        max_hot: None,
    };
    let finished = pipeline::run(specs, opts, progress).await?;
    println!("\n{}", finished.summary);
    story::tell(&bank, &finished).await?;
    println!("\noutputs in {}; replay with:", args.out.display());
    println!(
        "  persona run --specs {0}/specs --sources {0}/sources --data <DIR> --out <DIR>",
        args.out.display()
    );
    finished.shard.stop().await;
    Ok(ExitCode::SUCCESS)
}
