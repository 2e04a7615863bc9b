//! `summary.json` and the table a run ends with.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use persona_actors::PartitionStats;
use persona_detokenizer::DeliveryReport;
use persona_event::Match;
use persona_gateway::IngestReport;
use persona_privacy::KmsCalls;
use serde::Serialize;

use crate::specs::Problem;

/// The counters of a run (DESIGN.md §6), and a few more.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub(crate) records_read: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) fields_dropped: u64,
    pub(crate) fields_generalized: u64,
    pub(crate) fields_masked: u64,
    pub(crate) fields_vaulted: u64,
    /// Columns no rule named: dropped by default.
    pub(crate) fields_unnamed: u64,
    pub(crate) tokens_issued: u64,
    /// Records refused because their customer was forgotten (among the dead letters).
    pub(crate) records_forgotten: u64,
    /// Customers the cloud zone forgot in this run (`forget` events applied).
    pub(crate) customers_forgotten: u64,
    pub(crate) events: u64,
    pub(crate) events_applied: u64,
    /// Events recognised as already applied (re-delivered records).
    pub(crate) events_duplicate: u64,
    /// Events per second over the whole run, all five stages.
    pub(crate) events_per_sec: f64,
    /// Events per second of the cloud stage alone (actors, features, matching).
    pub(crate) cloud_events_per_sec: f64,
    pub(crate) elapsed_secs: f64,
    pub(crate) customers_activated: u64,
    /// Customers dropped from memory under `--max-hot` (and reactivated when needed).
    pub(crate) customers_passivated: u64,
    pub(crate) matches: u64,
    pub(crate) matches_by_offer: BTreeMap<String, u64>,
    pub(crate) deliveries_by_channel: BTreeMap<String, u64>,
    pub(crate) undeliverable: u64,
    pub(crate) specs_refused: Vec<String>,
    /// The KMS provider of the run's vault.
    pub(crate) kms: String,
    /// KMS calls of the whole run (gateway and de-tokenizer): ~0 per record, thanks
    /// to the data-key cache.
    pub(crate) kms_calls: KmsCallCounts,
}

/// KMS calls by operation.
#[derive(Debug, Default, Serialize)]
pub(crate) struct KmsCallCounts {
    pub(crate) generate_data_key: u64,
    pub(crate) decrypt: u64,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        ingest: &IngestReport,
        stats: &PartitionStats,
        matches: &[Match],
        delivery: &DeliveryReport,
        events: u64,
        elapsed: f64,
        cloud_secs: f64,
        problems: &[Problem],
    ) -> Summary {
        let mut matches_by_offer = BTreeMap::new();
        for m in matches {
            *matches_by_offer.entry(m.offer.clone()).or_default() += 1;
        }
        let rate = |n: u64, secs: f64| if secs > 0.0 { (n as f64 / secs).round() } else { 0.0 };
        Summary {
            records_read: ingest.records_read,
            dead_lettered: ingest.dead_letters.len() as u64,
            fields_dropped: ingest.fields_dropped,
            fields_generalized: ingest.fields_generalized,
            fields_masked: ingest.fields_masked,
            fields_vaulted: ingest.fields_vaulted,
            fields_unnamed: ingest.fields_unnamed,
            tokens_issued: ingest.tokens_issued,
            records_forgotten: ingest.records_forgotten,
            customers_forgotten: stats.forgotten,
            events,
            events_applied: stats.applied,
            events_duplicate: stats.duplicates,
            events_per_sec: rate(events, elapsed),
            cloud_events_per_sec: rate(events, cloud_secs),
            elapsed_secs: (elapsed * 1000.0).round() / 1000.0,
            customers_activated: stats.activations,
            customers_passivated: stats.passivated,
            matches: matches.len() as u64,
            matches_by_offer,
            deliveries_by_channel: delivery
                .deliveries_by_channel
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect(),
            undeliverable: delivery.undeliverable,
            specs_refused: problems.iter().map(|p| format!("{} {}", p.kind, p.name)).collect(),
            kms: String::new(),
            kms_calls: KmsCallCounts::default(),
        }
    }

    pub(crate) fn record_kms(&mut self, provider: &str, calls: KmsCalls) {
        self.kms = provider.to_owned();
        self.kms_calls = KmsCallCounts {
            generate_data_key: calls.generate_data_key,
            decrypt: calls.decrypt,
        };
    }

    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, k: &str, v: String| writeln!(f, "  {k:<28} {v:>14}");
        writeln!(f, "summary")?;
        row(f, "records read", self.records_read.to_string())?;
        row(f, "dead-lettered", self.dead_lettered.to_string())?;
        if self.records_forgotten > 0 {
            row(f, "  of which forgotten customers", self.records_forgotten.to_string())?;
        }
        row(f, "fields dropped", self.fields_dropped.to_string())?;
        row(f, "  of which unnamed columns", self.fields_unnamed.to_string())?;
        row(f, "fields generalized", self.fields_generalized.to_string())?;
        row(f, "fields masked", self.fields_masked.to_string())?;
        row(f, "fields vaulted", self.fields_vaulted.to_string())?;
        row(f, "tokens issued", self.tokens_issued.to_string())?;
        // Erasure rows only when there was one: most runs have none.
        if self.customers_forgotten > 0 {
            row(f, "customers forgotten (cloud)", self.customers_forgotten.to_string())?;
        }
        row(f, "events", self.events.to_string())?;
        row(f, "  already applied before", self.events_duplicate.to_string())?;
        row(f, "events/s (all stages)", format!("{:.0}", self.events_per_sec))?;
        row(f, "events/s (actors)", format!("{:.0}", self.cloud_events_per_sec))?;
        row(f, "elapsed", format!("{:.1} s", self.elapsed_secs))?;
        writeln!(f, "  matches per offer")?;
        if self.matches_by_offer.is_empty() {
            row(f, "  (none)", String::new())?;
        }
        for (offer, n) in &self.matches_by_offer {
            row(f, &format!("  {offer}"), n.to_string())?;
        }
        writeln!(f, "  deliveries per channel")?;
        if self.deliveries_by_channel.is_empty() {
            row(f, "  (none)", String::new())?;
        }
        for (channel, n) in &self.deliveries_by_channel {
            row(f, &format!("  {channel}"), n.to_string())?;
        }
        row(f, "undeliverable", self.undeliverable.to_string())?;
        row(
            f,
            &format!("kms calls ({})", self.kms),
            (self.kms_calls.generate_data_key + self.kms_calls.decrypt).to_string(),
        )?;
        for s in &self.specs_refused {
            writeln!(f, "  refused spec: {s}")?;
        }
        Ok(())
    }
}
