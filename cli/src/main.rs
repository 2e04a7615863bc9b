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
mod operator;
mod outputs;
mod pipeline;
mod privacy;
mod progress;
mod specs;
mod summary;
mod telemetry;
mod trusted;
mod vault;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = args::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let telemetry = {
        let _inside = runtime.enter();
        telemetry::init(&args)
    };
    let result = runtime.block_on(commands::run(args));
    {
        let _inside = runtime.enter();
        drop(telemetry);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
