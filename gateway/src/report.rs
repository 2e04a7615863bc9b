//! What an ingest run reports: counts for the summary and the dead letters, in the
//! line format of `dead_letter.jsonl` (DESIGN.md §6).

use std::collections::BTreeMap;

use persona_privacy::FieldCounts;
use serde::Serialize;

/// One refused record: where it was and why, never its values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub source: String,
    /// Relative to the sources directory.
    pub file: String,
    /// The 1-based physical line (a CSV header is line 1) or JSON Lines line.
    pub line: u64,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Counts of one source, over its files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceCounts {
    pub files: u64,
    /// Every record met, accepted or refused.
    pub records_read: u64,
    pub dead_lettered: u64,
    /// Records refused because their customer was forgotten (among the dead letters).
    pub forgotten: u64,
    pub events: u64,
    pub tokens_issued: u64,
    #[serde(flatten)]
    pub fields: FieldCounts,
}

impl std::ops::AddAssign for SourceCounts {
    fn add_assign(&mut self, o: Self) {
        self.files += o.files;
        self.records_read += o.records_read;
        self.dead_lettered += o.dead_lettered;
        self.forgotten += o.forgotten;
        self.events += o.events;
        self.tokens_issued += o.tokens_issued;
        self.fields += o.fields;
    }
}

/// The outcome of [`crate::Gateway::ingest_dir`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IngestReport {
    /// Every record met, accepted or refused.
    pub records_read: u64,
    pub dead_letters: Vec<DeadLetter>,
    pub fields_dropped: u64,
    pub fields_generalized: u64,
    pub fields_masked: u64,
    pub fields_vaulted: u64,
    /// Fields no rule named (dropped by default).
    pub fields_unnamed: u64,
    /// Tokens newly issued in this run.
    pub tokens_issued: u64,
    /// Records refused because their customer was forgotten (among the dead letters).
    pub records_forgotten: u64,
    pub events: u64,
    pub per_source: BTreeMap<String, SourceCounts>,
}

impl IngestReport {
    pub(crate) fn add(&mut self, source: String, c: SourceCounts) {
        self.records_read += c.records_read;
        self.fields_dropped += c.fields.dropped;
        self.fields_generalized += c.fields.generalized;
        self.fields_masked += c.fields.masked;
        self.fields_vaulted += c.fields.vaulted;
        self.fields_unnamed += c.fields.unnamed;
        self.tokens_issued += c.tokens_issued;
        self.records_forgotten += c.forgotten;
        self.events += c.events;
        *self.per_source.entry(source).or_default() += c;
    }
}
