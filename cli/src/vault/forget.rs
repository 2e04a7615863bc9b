//! `persona vault forget` (the right to erasure) and the erasure journal's part in
//! every command that opens the vault: erasures are made true of the vault each time
//! it is opened, and `persona run` sends the ones the cloud zone has not applied as
//! `forget` events ahead of everything else.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use persona_bus::MemoryBus;
use persona_privacy::{CustomerKey, ErasureJournal, Forgotten, Vault};
use serde_json::json;
use zeroize::{Zeroize, Zeroizing};

use super::audit::AdminAudit;
use super::audited;
use crate::kms::KmsArgs;

/// The erasure journal of `data`: DATA/trusted/erasures (beside the vault, not in
/// it, so that a restored vault gets its erasures back).
pub(crate) fn erasures(data: &Path) -> Result<ErasureJournal> {
    let dir = data.join("trusted").join("erasures");
    ErasureJournal::open(&dir).with_context(|| format!("reading the erasure journal in {}", dir.display()))
}

/// Makes every journaled erasure true of `vault` (a no-op unless a crash or a restore
/// undid one). Every command that opens the vault goes through here.
pub(crate) fn enforce_erasures(data: &Path, vault: &Vault) -> Result<()> {
    let mut journal = erasures(data)?;
    vault
        .enforce(&mut journal)
        .context("applying the erasure journal to the vault")?;
    Ok(())
}

/// Publishes a `forget` event for every erasure the cloud zone has not applied yet;
/// returns the journal count to acknowledge once the shard has checkpointed them.
pub(crate) fn publish_forgets(journal: &ErasureJournal, vault: &Vault, bus: &MemoryBus) -> Result<usize> {
    let pending = journal.undelivered();
    for erasure in pending {
        bus.publish(persona_gateway::forget_event(vault, erasure)?);
    }
    if !pending.is_empty() {
        tracing::info!(erasures = pending.len(), "forget events sent to the cloud zone");
    }
    Ok(journal.entries().len())
}

/// `persona vault forget`: one output line and one audit line per key, in order.
/// Exits 1 when a key was unknown to the vault (nothing was done for it).
pub(crate) fn forget(data: &Path, keys: Vec<String>, keys_from: Option<&Path>, kms: &KmsArgs) -> Result<ExitCode> {
    let keys = customer_keys(keys, keys_from)?;
    let vault = kms.open_vault(data)?;
    let mut journal = erasures(data)?;
    let mut audit = AdminAudit::open(data)?;
    let mut out = std::io::stdout().lock();
    let (mut now, mut unknown) = (0, 0);
    for key in &keys {
        let outcome = audited(
            &mut audit,
            "forget",
            vault.forget(key, &mut journal).context("forgetting a customer"),
            |f| match f {
                Forgotten::Erased(token) => json!({"token": token, "result": "forgotten"}),
                Forgotten::Already(token) => json!({"token": token, "result": "already-forgotten"}),
                Forgotten::Unknown => json!({"result": "unknown"}),
            },
        )?;
        match outcome {
            Forgotten::Erased(token) => {
                now += 1;
                writeln!(out, "{token}\tforgotten")?;
            }
            Forgotten::Already(token) => writeln!(out, "{token}\talready-forgotten")?,
            Forgotten::Unknown => {
                unknown += 1;
                writeln!(out, "-\tunknown")?;
            }
        }
    }
    out.flush()?;
    let pending = journal.undelivered().len();
    if pending > 0 {
        eprintln!(
            "{now} customer(s) forgotten in the vault; the cloud zone deletes the state of {pending} at the next \
             `persona run --data {}`",
            data.display()
        );
    }
    if unknown > 0 {
        eprintln!("{unknown} key(s) unknown to the vault (never tokenized): nothing was done for them");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The keys of the command line and of `--keys-from` (one a line, `-` for standard
/// input; blank lines skipped), trimmed as sources' keys are.
fn customer_keys(args: Vec<String>, from: Option<&Path>) -> Result<Vec<CustomerKey>> {
    let mut keys: Vec<CustomerKey> = args
        .into_iter()
        .map(|k| CustomerKey::new(Zeroizing::new(k).trim()))
        .collect();
    match from {
        None => {}
        Some(path) if path == Path::new("-") => {
            read_keys(std::io::stdin().lock(), &mut keys).context("reading customer keys from standard input")?;
        }
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            read_keys(std::io::BufReader::new(file), &mut keys)
                .with_context(|| format!("reading {}", path.display()))?;
        }
    }
    if keys.iter().any(|k| k.expose_secret().is_empty()) {
        bail!("a customer key is empty");
    }
    if keys.is_empty() {
        bail!("no customer key: give them as arguments or with --keys-from FILE");
    }
    Ok(keys)
}

/// Appends the keys of `reader`, one a line, through a buffer wiped after each.
fn read_keys(mut reader: impl BufRead, keys: &mut Vec<CustomerKey>) -> std::io::Result<()> {
    let mut line = Zeroizing::new(String::new());
    while reader.read_line(&mut line)? > 0 {
        if !line.trim().is_empty() {
            keys.push(CustomerKey::new(line.trim()));
        }
        line.zeroize();
    }
    Ok(())
}
