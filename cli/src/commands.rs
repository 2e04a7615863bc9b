//! The commands other than `demo` and `vault`: `run`, `offer check`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use persona_expr::{Root, Schema};

use crate::args::{BenchCommand, Cli, Command, OfferCommand, RunArgs};
use crate::pipeline::{self, RunOptions};
use crate::progress::Progress;
use crate::specs;

pub(crate) async fn run(cli: Cli) -> Result<ExitCode> {
    let progress = Progress::new(cli.quiet);
    match cli.command {
        Command::Demo(args) => crate::demo::run(args, &progress).await,
        Command::Run(args) => run_files(args, &progress).await,
        Command::Backfill(args) => crate::backfill::run(args, &progress).await.map(|()| ExitCode::SUCCESS),
        Command::Vault(command) => crate::vault::run(command, &progress),
        Command::Privacy(command) => crate::privacy::run(command),
        Command::Offer(OfferCommand::Check { files, features }) => check(files, features),
        Command::Offer(OfferCommand::Explain(args)) => crate::offer::explain(&args),
        Command::Offer(OfferCommand::Simulate(args)) => crate::offer::simulate(&args),
        Command::Offer(OfferCommand::Report(args)) => crate::offer::report(&args),
        Command::Bench(BenchCommand::Features(args)) => crate::bench::features::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Dsl(args)) => crate::bench::dsl::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::E2e(args)) => crate::bench::e2e::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Tokenize(args)) => {
            crate::bench::vault::tokenize(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::GrpcIngest(args)) => {
            crate::bench::grpc::grpc_ingest(&args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Decide(args)) => {
            crate::bench::grpc::decide(&args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Passivation(args)) => {
            crate::bench::passivation::run(&args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::EventToMatch { args, rate }) => crate::bench::grpc::event_to_match(&args, rate)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Detokenize(args)) => {
            crate::bench::vault::detokenize(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Crdgen(args) => crate::crdgen::run(&args),
        Command::Shard(args) => crate::cluster::shard(args).await,
        Command::Operator(args) => crate::operator::run(args).await,
        Command::Gateway(args) => crate::trusted::gateway(args).await,
        Command::Detokenizer(args) => crate::trusted::detokenizer(args).await,
        Command::DevCerts(args) => crate::certs::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bus(command) => crate::cluster::bus(command).await,
    }
}

/// Reports refused specs on stderr (specs hold no customer data).
pub(crate) fn report_problems(specs: &specs::Specs) {
    for p in &specs.problems {
        eprintln!("{}", p.rendered);
        tracing::warn!(kind = %p.kind, name = %p.name, "spec refused; the run goes on without it");
    }
}

async fn run_files(args: RunArgs, progress: &Progress) -> Result<ExitCode> {
    let specs = specs::load(&args.specs)?;
    report_problems(&specs);
    let opts = RunOptions {
        sources: &args.sources,
        data: &args.data,
        out: &args.out,
        as_of: args.as_of,
        backfill: &args.backfill,
        kms: &args.kms,
        max_hot: args.max_hot,
    };
    let finished = pipeline::run(specs, opts, progress).await?;
    println!("{}", finished.summary);
    println!("outputs in {}", args.out.display());
    finished.shard.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// `persona offer check`: diagnostics for every offer; exit 1 on any error.
fn check(files: Vec<PathBuf>, features: Option<PathBuf>) -> Result<ExitCode> {
    let mut all = files.clone();
    all.extend(features.iter().cloned());
    let (docs, mut problems) = specs::documents(&all)?;
    let has_set = docs.iter().any(|d| d.kind == "FeatureSet");
    // Without a FeatureSet, feature names and types cannot be checked; the rest can.
    let (schema, tz, against) = if has_set {
        match specs::feature_set(&docs) {
            Ok(set) => (
                persona_offers::offer_schema(&set),
                set.timezone(),
                format!("FeatureSet `{}`", set.name),
            ),
            Err(e) => {
                eprintln!("{e:#}");
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        eprintln!("warning: no FeatureSet given (--features FILE): feature names and types are not checked");
        let all_roots = [Root::Event, Root::Features, Root::Profile, Root::Prefs];
        let schema = all_roots
            .into_iter()
            .fold(Schema::new(), Schema::allow_root)
            .open_features();
        (schema, chrono_tz::Tz::UTC, "no FeatureSet".to_owned())
    };
    let mut checked = 0;
    for doc in docs.iter().filter(|d| d.kind == "Offer") {
        checked += 1;
        if let Err(p) = specs::offer_in(doc, &schema, tz) {
            problems.push(p);
        }
    }
    for doc in docs.iter().filter(|d| d.kind != "Offer" && d.kind != "FeatureSet") {
        eprintln!(
            "warning: {}:{}: `{}` is not an Offer; skipped",
            doc.file.display(),
            doc.line,
            doc.kind
        );
    }
    for p in &problems {
        eprintln!("{}", p.rendered);
    }
    println!(
        "{checked} offer(s) checked against {against}: {} error(s)",
        problems.len()
    );
    if checked == 0 {
        // A misspelled `kind` would otherwise pass as "nothing wrong".
        eprintln!("error: no Offer document among the files given");
    }
    Ok(if problems.is_empty() && checked > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
