//! The `persona` command: wires telemetry and arguments to the commands.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod backfill;
mod bench;
mod certs;
mod cluster;
mod commands;
mod crdgen;
mod demo;
mod kms;
mod metrics;
mod offer;
mod outputs;
mod pipeline;
mod privacy;
mod progress;
mod specs;
mod summary;
mod trusted;
mod vault;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = args::Cli::parse();
    // Logs go to stderr and follow the cloud rule: tokens and counts, never a
    // protected value. RUST_LOG overrides the default level.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(args.log_level()));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(commands::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
