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

/// Empties OUT when it is a previous demo's output (or empty); refuses anything else,
/// so a typo in --out cannot wipe a directory the demo did not make.
fn replace_out(out: &Path) -> Result<()> {
    if out.exists() {
        let ours = out.join("summary.json").exists() || out.join("sources").join("customers.csv").exists();
        let empty = std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !ours && !empty {
            bail!(
                "{} exists and is not a persona demo output; choose another --out",
                out.display()
            );
        }
        std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

pub(crate) async fn run(args: DemoArgs, progress: &Progress) -> Result<ExitCode> {
    replace_out(&args.out)?;
    let data = args.data.clone().unwrap_or_else(|| args.out.join("data"));
    if args.data.is_some() && data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    }
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
    std::fs::create_dir_all(&spec_dir)?;
    for (name, text) in SPECS {
        std::fs::write(spec_dir.join(name), text)?;
    }
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
