//! `persona vault ...`: trusted-zone administration of the token vault. Every act
//! is written to the admin audit trail (DATA/trusted/audit/admin.jsonl) without a
//! protected value; only `resolve` prints one, on stdout, to the admin who asked.

mod audit;
mod forget;

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use persona_event::Token;
use persona_privacy::vault::{self, RewrapOptions, VaultStatus};
use serde_json::json;

use crate::kms::{KmsArgs, Provider};
use crate::progress::Progress;
use audit::AdminAudit;
pub(crate) use forget::{enforce_erasures, erasures, publish_forgets};

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Resolve tokens to customer keys (audited): prints TOKEN<TAB>KEY, or TOKEN<TAB>- when unknown.
    Resolve {
        /// State directory: the vault is DATA/trusted/vault.
        #[arg(long)]
        data: PathBuf,
        #[arg(required = true)]
        tokens: Vec<String>,
        #[command(flatten)]
        kms: KmsArgs,
    },
    /// Forget customers (right to erasure), audited: their tokens stop resolving,
    /// their vaulted contacts are destroyed, their records are refused from now on,
    /// and the next `persona run` has the cloud zone delete their state. Prints
    /// TOKEN<TAB>forgotten (or already-forgotten), or -<TAB>unknown, per key, in order;
    /// exits 1 when a key was unknown.
    Forget {
        /// State directory: the vault is DATA/trusted/vault.
        #[arg(long)]
        data: PathBuf,
        /// Also read customer keys from this file, one a line (`-`: standard input),
        /// which keeps them out of the shell history and the process list.
        #[arg(long, value_name = "FILE")]
        keys_from: Option<PathBuf>,
        /// Customer keys, as the sources' `key` fields hold them.
        #[arg(value_name = "CUSTOMER_KEY")]
        keys: Vec<String>,
        #[command(flatten)]
        kms: KmsArgs,
    },
    /// Make a new vault data-key version. Records sealed under older versions still
    /// open; `rewrap` moves them to the newest.
    Rotate {
        /// State directory: the vault is DATA/trusted/vault.
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        kms: KmsArgs,
    },
    /// Re-encrypt every reverse-map and contact record under the newest key version.
    /// Safe to interrupt (even kill -9): run it again and it resumes where it stopped.
    Rewrap {
        /// State directory: the vault is DATA/trusted/vault.
        #[arg(long)]
        data: PathBuf,
        /// Records per committed batch: the most work an interruption can undo.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        batch: u64,
        /// A pause after each batch, to spread the load of a large vault on a live
        /// trusted host (`0`, `50ms`, `1s`).
        #[arg(long, default_value = "0", value_parser = crate::args::parse_duration)]
        pause: Duration,
        #[command(flatten)]
        kms: KmsArgs,
    },
    /// Copy the vault (every tree, wrapped keys included) to a new file. Needs no
    /// KMS. The local KMS's master.key is not in it: keep that apart.
    Backup {
        /// State directory: the vault is DATA/trusted/vault.
        #[arg(long)]
        data: PathBuf,
        /// The backup file to create (an existing file is refused).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup as the vault of DATA, after unwrapping every key in it with
    /// the chosen KMS. A vault that holds data is replaced only with --force.
    Restore {
        /// The backup file (made by `persona vault backup`).
        #[arg(long)]
        from: PathBuf,
        /// State directory: the vault is DATA/trusted/vault.
        #[arg(long)]
        data: PathBuf,
        /// Replace a vault that holds data.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        kms: KmsArgs,
    },
    /// Key versions, records per key version, and any unfinished rewrap. Decrypts
    /// nothing and needs no KMS.
    Status {
        /// State directory: the vault is DATA/trusted/vault.
        #[arg(long)]
        data: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: VaultCommand, progress: &Progress) -> Result<ExitCode> {
    match command {
        VaultCommand::Resolve { data, tokens, kms } => resolve(&data, tokens, &kms),
        VaultCommand::Forget {
            data,
            keys_from,
            keys,
            kms,
        } => forget::forget(&data, keys, keys_from.as_deref(), &kms),
        VaultCommand::Rotate { data, kms } => rotate(&data, &kms),
        VaultCommand::Rewrap {
            data,
            batch,
            pause,
            kms,
        } => rewrap(&data, batch, pause, &kms, progress),
        VaultCommand::Backup { data, to } => backup(&data, &to),
        VaultCommand::Restore { from, data, force, kms } => restore(&from, &data, force, &kms),
        VaultCommand::Status { data, json } => status(&data, json),
    }
}

fn vault_dir(data: &Path) -> PathBuf {
    data.join("trusted").join("vault")
}

/// Records the outcome of an act: `fields` plus `outcome: ok`, or `outcome: failed`
/// and the error (error messages of the vault name places and versions, not values).
fn audited<T>(
    audit: &mut AdminAudit,
    action: &str,
    result: Result<T>,
    fields: impl FnOnce(&T) -> serde_json::Value,
) -> Result<T> {
    let line = match &result {
        Ok(value) => {
            let mut line = fields(value);
            line["outcome"] = json!("ok");
            line
        }
        Err(e) => json!({"outcome": "failed", "error": format!("{e:#}")}),
    };
    audit.record_now(action, line)?;
    result
}

/// `persona vault resolve`: a trusted-zone admin look-up; every look-up is audited
/// (token and whether it resolved, never the key).
fn resolve(data: &Path, tokens: Vec<String>, kms: &KmsArgs) -> Result<ExitCode> {
    let vault = kms.open_vault(data)?;
    let mut audit = AdminAudit::open(data)?;
    let mut out = std::io::stdout().lock();
    for t in tokens {
        let key = match Token::parse(&t) {
            Ok(token) => vault.resolve(&token)?,
            Err(e) => {
                tracing::warn!(error = %e, "not a token");
                None
            }
        };
        audit.record("resolve", json!({"token": t, "resolved": key.is_some()}))?;
        match key {
            Some(k) => writeln!(out, "{t}\t{}", k.expose_secret())?,
            None => writeln!(out, "{t}\t-")?,
        }
    }
    audit.sync()?;
    Ok(ExitCode::SUCCESS)
}

fn rotate(data: &Path, kms: &KmsArgs) -> Result<ExitCode> {
    let vault = kms.open_vault(data)?;
    let mut audit = AdminAudit::open(data)?;
    let version = audited(
        &mut audit,
        "rotate",
        vault.rotate().context("rotating the vault key"),
        |v| json!({"kms": kms.provider.as_str(), "version": v}),
    )?;
    println!("vault key version {version} made; new records are sealed under it");
    println!(
        "older records still open; to move them to it: persona vault rewrap --data {}",
        data.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn rewrap(data: &Path, batch: u64, pause: Duration, kms: &KmsArgs, progress: &Progress) -> Result<ExitCode> {
    let vault = kms.open_vault(data)?;
    let mut audit = AdminAudit::open(data)?;
    let status = vault.status()?;
    // On record before any record changes: a kill leaves a start without an end.
    audit.record_now(
        "rewrap",
        json!({
            "phase": "start",
            "kms": kms.provider.as_str(),
            "target": status.key_versions.last(),
            "resuming": status.rewrap_pending.is_some(),
        }),
    )?;
    let bar = progress.sized("rewrap", "records", status.tokens + status.contacts);
    let options = RewrapOptions {
        batch: usize::try_from(batch).unwrap_or(usize::MAX),
    };
    let result = vault.rewrap(&options, &mut |p| {
        bar.set(p.done);
        tracing::debug!(
            done = p.done,
            total = p.total,
            rewrapped = p.rewrapped,
            "rewrap: batch committed"
        );
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        ControlFlow::Continue(())
    });
    let report = audited(&mut audit, "rewrap", result.context("rewrapping the vault"), |r| {
        json!({
            "phase": "end",
            "target": r.target,
            "scanned": r.scanned,
            "rewrapped": r.rewrapped,
            "resumed_after": r.resumed_after,
        })
    })?;
    bar.finish(report.resumed_after + report.scanned);
    match report.target {
        None => println!("the vault has no sealed record: nothing to rewrap"),
        Some(target) => {
            println!(
                "rewrapped {} of {} records under key version {target}",
                report.rewrapped,
                report.resumed_after + report.scanned
            );
            if report.resumed_after > 0 {
                println!(
                    "resumed an interrupted rewrap: {} records were done before",
                    report.resumed_after
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn backup(data: &Path, to: &Path) -> Result<ExitCode> {
    let mut audit = AdminAudit::open(data)?;
    let report = audited(
        &mut audit,
        "backup",
        vault::backup(&vault_dir(data), to).with_context(|| format!("backing up the vault of {}", data.display())),
        |r| {
            json!({
                "to": to.display().to_string(),
                "tokens": r.tokens,
                "contacts": r.contacts,
                "bytes": r.bytes,
            })
        },
    )?;
    println!(
        "backed up {} tokens and {} contacts ({} bytes) to {}",
        report.tokens,
        report.contacts,
        report.bytes,
        to.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn restore(from: &Path, data: &Path, force: bool, kms: &KmsArgs) -> Result<ExitCode> {
    let trusted = data.join("trusted");
    let mut audit = AdminAudit::open(data)?;
    let result = (|| {
        // The local KMS would make a new master key, under which nothing unwraps.
        let master = trusted.join("kms").join("master.key");
        if kms.provider == Provider::Local && !master.exists() {
            bail!(
                "{} is missing: with --kms local, a backup's keys unwrap only with the master key \
                 of the data directory it came from, which backups leave out; copy that master.key \
                 here first (or restore with --kms aws if the backup was made with it)",
                master.display()
            );
        }
        let provider = kms.connect(&trusted)?;
        let mut erasures = erasures(data)?;
        vault::restore(from, &vault_dir(data), provider, force, &mut erasures).context("restoring the vault")
    })();
    let report = audited(&mut audit, "restore", result, |r| {
        json!({
            "from": from.display().to_string(),
            "kms": kms.provider.as_str(),
            "forced": force,
            "tokens": r.tokens,
            "contacts": r.contacts,
            "keys_verified": r.keys_verified,
            "erasures_reapplied": r.erasures_reapplied,
        })
    })?;
    println!(
        "restored {} tokens and {} contacts into {}; all {} keys unwrap with the {} KMS",
        report.tokens,
        report.contacts,
        vault_dir(data).display(),
        report.keys_verified,
        kms.provider.as_str()
    );
    if report.erasures_reapplied > 0 {
        println!(
            "{} customer(s) forgotten since the backup was made stay forgotten (erasure journal applied)",
            report.erasures_reapplied
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status(data: &Path, as_json: bool) -> Result<ExitCode> {
    let dir = vault_dir(data);
    let status = vault::inspect(&dir).with_context(|| format!("reading the vault of {}", data.display()))?;
    if as_json {
        println!("{}", status_json(&status));
    } else {
        print!("{}", status_text(&dir, &status));
    }
    Ok(ExitCode::SUCCESS)
}

fn status_json(s: &VaultStatus) -> serde_json::Value {
    let by_version: serde_json::Map<String, serde_json::Value> = s
        .sealed_by_version
        .iter()
        .map(|(v, n)| (v.to_string(), json!(n)))
        .collect();
    json!({
        "provider": s.provider,
        "tokens": s.tokens,
        "contacts": s.contacts,
        "forgotten": s.forgotten,
        "key_versions": s.key_versions,
        "sealed_by_version": by_version,
        "rewrap_pending": s.rewrap_pending,
    })
}

fn status_text(dir: &Path, s: &VaultStatus) -> String {
    let versions: Vec<String> = s.key_versions.iter().map(u32::to_string).collect();
    let sealed: Vec<String> = s.sealed_by_version.iter().map(|(v, n)| format!("v{v}: {n}")).collect();
    let mut text = format!(
        "vault {} (kms provider: {})\n",
        dir.display(),
        s.provider.as_deref().unwrap_or("none yet")
    );
    text += &format!(
        "  tokens {}, contacts {}, forgotten {}\n",
        s.tokens, s.contacts, s.forgotten
    );
    text += &format!("  key versions: {}\n", or_none(&versions));
    text += &format!("  records by key version: {}\n", or_none(&sealed));
    match s.rewrap_pending {
        Some(v) => text += &format!("  rewrap to v{v} interrupted: run `persona vault rewrap` to finish it\n"),
        None => text += "  no rewrap pending\n",
    }
    text
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sample() -> VaultStatus {
        VaultStatus {
            provider: Some("aws".to_owned()),
            tokens: 3,
            contacts: 2,
            forgotten: 1,
            key_versions: vec![1, 2],
            sealed_by_version: BTreeMap::from([(1, 1), (2, 4)]),
            rewrap_pending: Some(2),
        }
    }

    #[test]
    fn status_prints_versions_and_counts() {
        let text = status_text(Path::new("d/trusted/vault"), &sample());
        assert_eq!(
            text,
            "vault d/trusted/vault (kms provider: aws)\n  tokens 3, contacts 2, forgotten 1\n  key versions: 1, 2\n  \
             records by key version: v1: 1, v2: 4\n  rewrap to v2 interrupted: run `persona vault rewrap` to finish it\n"
        );
        let json = status_json(&sample());
        assert_eq!(json["sealed_by_version"]["2"], 4);
        assert_eq!(json["rewrap_pending"], 2);
    }
}
