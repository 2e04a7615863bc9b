//! The trusted-zone ingest driver: reads each Source's files, scrubs and tokenizes
//! every record, and hands canonical events to a sink. Nothing it emits, logs or
//! reports holds a value that a rule protects.

mod erasure;
mod report;
pub mod service;

use std::path::Path;
use std::sync::Arc;

use persona_event::{Event, Token, Value, kinds};
use persona_privacy::{RawRecord, Read, Refusal, Source, Vault};

pub use erasure::forget_event;
pub use report::{DeadLetter, IngestReport, SourceCounts};

/// The dead-letter reason of a record whose customer was forgotten.
pub const FORGOTTEN_REASON: &str = "the customer was forgotten (right to erasure): her records are refused";

/// What can stop an ingest run. Bad records never do: they become dead letters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the files of source `{source_name}`")]
    Source {
        source_name: String,
        #[source]
        source: persona_privacy::Error,
    },
    #[error("vault failure while ingesting source `{source_name}`")]
    Vault {
        source_name: String,
        #[source]
        source: persona_privacy::Error,
    },
    #[error("cannot flush the vault")]
    Flush {
        #[source]
        source: persona_privacy::Error,
    },
    #[error("cannot make the forget event of an erasure")]
    Erasure {
        #[source]
        source: persona_privacy::Error,
    },
}

/// The ingest driver: sources, and the vault that tokenizes for them.
#[derive(Debug)]
pub struct Gateway {
    sources: Vec<Source>,
    vault: Arc<Vault>,
}

impl Gateway {
    pub fn new(sources: Vec<Source>, vault: Arc<Vault>) -> Self {
        Self { sources, vault }
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name() == name)
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// Reads every source's files (its glob under `dir`, sorted by path), scrubs,
    /// tokenizes, builds canonical events and hands each to `sink`, in file order.
    /// Refused records go to the report's dead letters and the run goes on. The vault
    /// is flushed at the end.
    pub fn ingest_dir(&self, dir: &Path, sink: &mut dyn FnMut(Event)) -> Result<IngestReport, Error> {
        let mut report = IngestReport::default();
        for source in &self.sources {
            let name = source.name().to_owned();
            let files = source.files(dir).map_err(|e| Error::Source {
                source_name: name.clone(),
                source: e,
            })?;
            if files.is_empty() {
                tracing::warn!(source = %name, pattern = %source.pattern(), "source has no files");
            }
            let mut counts = SourceCounts::default();
            for path in files {
                let rel = relative(dir, &path);
                let file = self.ingest_file(source, &path, &rel, sink, &mut report.dead_letters)?;
                counts += file;
            }
            report.add(name, counts);
        }
        self.vault.flush().map_err(|source| Error::Flush { source })?;
        Ok(report)
    }

    /// Ingests one file of `source` (`rel` is its name in dead letters and logs):
    /// events to `sink`, refused records to `dead`. The vault is not flushed.
    pub fn ingest_file(
        &self,
        source: &Source,
        path: &Path,
        rel: &str,
        sink: &mut dyn FnMut(Event),
        dead: &mut Vec<DeadLetter>,
    ) -> Result<SourceCounts, Error> {
        let name = source.name();
        let read_err = |e| Error::Source {
            source_name: name.to_owned(),
            source: e,
        };
        let mut counts = SourceCounts {
            files: 1,
            ..SourceCounts::default()
        };
        let mut unnamed = std::collections::BTreeSet::new();
        let mut refuse = |counts: &mut SourceCounts, line: u64, refusal: Refusal| {
            counts.dead_lettered += 1;
            tracing::debug!(source = %name, file = %rel, line, field = ?refusal.field, reason = %refusal.reason, "record refused");
            dead.push(DeadLetter {
                source: name.to_owned(),
                file: rel.to_owned(),
                line,
                reason: refusal.reason,
                field: refusal.field,
            });
        };
        for item in source.read(path, rel).map_err(read_err)? {
            counts.records_read += 1;
            let rec = match item.map_err(read_err)? {
                Read::Record(rec) => rec,
                Read::Refused { line, refusal } => {
                    refuse(&mut counts, line, refusal);
                    continue;
                }
            };
            if let Some(refusal) = self.ingest_record(source, &rec, sink, &mut counts, &mut unnamed)? {
                refuse(&mut counts, rec.line(), refusal);
            }
        }
        if !unnamed.is_empty() {
            tracing::warn!(
                source = %name,
                file = %rel,
                columns = ?unnamed,
                "columns named by no rule were dropped"
            );
        }
        tracing::info!(
            source = %name,
            file = %rel,
            records = counts.records_read,
            events = counts.events,
            dead_lettered = counts.dead_lettered,
            dropped = counts.fields.dropped,
            generalized = counts.fields.generalized,
            masked = counts.fields.masked,
            vaulted = counts.fields.vaulted,
            unnamed = counts.fields.unnamed,
            tokens_issued = counts.tokens_issued,
            "file ingested"
        );
        Ok(counts)
    }

    /// Scrubs and tokenizes one record, hands its events to `sink` and counts them in
    /// `counts` (its dead-lettering is the caller's). Returns the refusal of a record
    /// that may not pass; an error only for a failure of the vault, which stops the
    /// file.
    pub fn ingest_record(
        &self,
        source: &Source,
        rec: &RawRecord,
        sink: &mut dyn FnMut(Event),
        counts: &mut SourceCounts,
        unnamed: &mut std::collections::BTreeSet<String>,
    ) -> Result<Option<Refusal>, Error> {
        let name = source.name();
        let vault_err = |e| Error::Vault {
            source_name: name.to_owned(),
            source: e,
        };
        let scrubbed = match source.scrub(rec) {
            Ok(s) => s,
            Err(mut refusal) => {
                if rec.end_line() > rec.line() {
                    refusal.reason = format!(
                        "{} (the record spans lines {}-{})",
                        refusal.reason,
                        rec.line(),
                        rec.end_line()
                    );
                }
                return Ok(Some(refusal));
            }
        };
        if scrubbed.counts.unnamed > 0 {
            unnamed.extend(source.unnamed_columns(rec).map(str::to_owned));
        }
        counts.fields += scrubbed.counts;
        // A `context` record concerns no one customer: it goes to every actor.
        let Some(key) = &scrubbed.key else {
            let id = self.vault.event_id(name, &scrubbed.id_material).map_err(vault_err)?;
            sink(Event {
                id,
                token: Token::broadcast(),
                kind: source.event().to_owned(),
                ts: scrubbed.ts,
                attrs: scrubbed.attrs,
            });
            counts.events += 1;
            return Ok(None);
        };
        let (token, issued) = match self.vault.tokenize(key) {
            Ok(tokenized) => tokenized,
            // Her records are refused for good: a new token would bring her back.
            Err(persona_privacy::Error::Forgotten) => {
                counts.forgotten += 1;
                let refusal = Refusal {
                    field: source.key_field().map(str::to_owned),
                    reason: FORGOTTEN_REASON.to_owned(),
                };
                return Ok(Some(refusal));
            }
            Err(e) => return Err(vault_err(e)),
        };
        counts.tokens_issued += u64::from(issued);
        let is_profile = source.event() == kinds::PROFILE;
        for (kind, value) in &scrubbed.vaulted {
            self.vault.store_contact(&token, *kind, value).map_err(vault_err)?;
        }
        // A contact vaulted by a source of another event type must still reach the
        // cloud, or the customer is unreachable: a profile event of its own carries
        // the kinds held. Its id is a keyed hash of the record's and the kinds', so a
        // re-read gives the same event and the cloud recognises it.
        if !scrubbed.vaulted.is_empty() && !is_profile {
            let held = self.vault.contact_kinds(&token).map_err(vault_err)?;
            let list: Vec<Value> = held.iter().map(|k| Value::from(k.as_str())).collect();
            let mut material = scrubbed.id_material.to_vec();
            material.extend(held.iter().flat_map(|k| k.as_str().bytes()));
            sink(Event {
                id: self
                    .vault
                    .event_id(&format!("{name}#contacts"), &material)
                    .map_err(vault_err)?,
                token: token.clone(),
                kind: kinds::PROFILE.to_owned(),
                ts: scrubbed.ts,
                attrs: [("contacts".to_owned(), Value::List(list))].into(),
            });
            counts.events += 1;
        }
        let mut attrs = scrubbed.attrs;
        if is_profile {
            let held = self.vault.contact_kinds(&token).map_err(vault_err)?;
            let list = held.into_iter().map(|k| Value::from(k.as_str())).collect();
            attrs.insert("contacts".to_owned(), Value::List(list));
        }
        let id = self.vault.event_id(name, &scrubbed.id_material).map_err(vault_err)?;
        sink(Event {
            id,
            token,
            kind: source.event().to_owned(),
            ts: scrubbed.ts,
            attrs,
        });
        counts.events += 1;
        Ok(None)
    }
}

/// `path` relative to `dir`, with `/` separators.
fn relative(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
