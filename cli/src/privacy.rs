//! `persona privacy report`: a dry run over the Source specs that says, per source
//! and per field, what leaves the trusted zone, in what form, and what can be turned
//! back by whom. It reads specs only, never a source file, so it can be run (and
//! reviewed) before any customer data exists.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use persona_privacy::SourceReport;
use serde_json::json;

use crate::specs::{self, Problem};

#[derive(Debug, Subcommand)]
pub(crate) enum PrivacyCommand {
    /// What each Source lets out of the trusted zone, field by field: dropped,
    /// generalized (to which bands), masked, vaulted, kept as an attribute, turned
    /// into the token or the event id; and who can reverse what. Reads no data.
    /// Exits 1 when a Source spec is refused (it is then left out of the report).
    Report {
        /// Directory of spec YAML; its Source documents are reported, others skipped.
        #[arg(long)]
        specs: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: PrivacyCommand) -> Result<ExitCode> {
    match command {
        PrivacyCommand::Report { specs, json } => report(&specs, json),
    }
}

fn report(dir: &Path, as_json: bool) -> Result<ExitCode> {
    let (sources, problems) = specs::sources(dir)?;
    let reports: Vec<SourceReport> = sources.iter().map(persona_privacy::Source::privacy_report).collect();
    for p in &problems {
        eprintln!("{}", p.rendered);
    }
    if as_json {
        println!("{:#}", to_json(&reports, &problems));
    } else {
        print!("{}", to_text(dir, &reports, problems.len()));
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn to_json(reports: &[SourceReport], problems: &[Problem]) -> serde_json::Value {
    json!({
        "sources": reports,
        "refused": problems
            .iter()
            .map(|p| json!({"kind": p.kind, "name": p.name, "error": p.rendered}))
            .collect::<Vec<_>>(),
        "reversible": REVERSIBLE,
    })
}

/// Who can undo what, for every source alike: the closing note of the report.
const REVERSIBLE: &str = "tokens -> customer keys: only the holder of the vault with KMS Decrypt on its vault key \
    (persona vault resolve, audited); vaulted contacts: only the de-tokenizer, to deliver; forgotten customers \
    (persona vault forget): no one";

fn to_text(dir: &Path, reports: &[SourceReport], refused: usize) -> String {
    let mut text = format!(
        "privacy report of {} source(s) in {} (specs only: no data was read)\n",
        reports.len(),
        dir.display()
    );
    if refused > 0 {
        text.push_str(&format!(
            "{refused} spec document(s) refused and left out: see the errors on stderr\n"
        ));
    }
    for r in reports {
        text.push('\n');
        text.push_str(&r.to_string());
    }
    text.push_str(&format!("\nreversible: {REVERSIBLE}\n"));
    text
}
