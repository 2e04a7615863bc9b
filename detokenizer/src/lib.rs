//! The trusted-zone delivery service: takes matches from the cloud zone, resolves the
//! token to the customer and the contact her channel needs just in time, hands the
//! message to a channel adapter, and writes an audit record that holds no PII.
//! Matches may arrive more than once (the bus is at-least-once with stable match ids);
//! a match id is delivered once.

mod adapter;
pub mod channels;
pub mod resolve;
pub mod service;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use persona_bus::MemoryBus;
use persona_event::{Channel, MatchId, MatchMessage, Token};
use persona_privacy::Vault;
use serde::{Deserialize, Serialize};

pub use adapter::{ChannelAdapter, Delivery, FileAdapter};

/// What can go wrong while delivering.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("vault: {0}")]
    Vault(#[from] persona_privacy::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What became of a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    /// The channel refused the address for good (a hard bounce).
    Bounced,
    /// The channel refused the message for good (not the address).
    Rejected,
    /// The vault record does not open (corrupt or tampered).
    Unresolvable,
    /// The token is unknown or forgotten.
    UnknownToken,
    /// The customer has no contact of the kind the channel needs.
    NoContact,
    /// This match id was delivered before.
    Duplicate,
}

/// One line of `audit.jsonl`: who was resolved, for what, with what result. No PII.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    pub match_id: MatchId,
    pub token: Token,
    pub offer: String,
    pub variant: String,
    pub channel: Channel,
    #[serde(with = "persona_event::time::rfc3339")]
    pub ts: chrono::DateTime<chrono::Utc>,
    /// What was read from the vault: the customer key and the contact kind.
    pub resolved: Vec<&'static str>,
    pub outcome: Outcome,
    pub adapter: &'static str,
}

impl AuditRecord {
    /// The record of what became of `m`.
    pub fn of(m: &persona_event::Match, resolved: Vec<&'static str>, outcome: Outcome, adapter: &'static str) -> Self {
        AuditRecord {
            match_id: m.match_id.clone(),
            token: m.token.clone(),
            offer: m.offer.clone(),
            variant: m.variant.clone(),
            channel: m.channel,
            ts: m.ts,
            resolved,
            outcome,
            adapter,
        }
    }
}

/// Counters of a delivery run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub deliveries_by_channel: BTreeMap<Channel, u64>,
    pub undeliverable: u64,
    pub duplicates: u64,
}

/// The de-tokenizer with its channel adapter.
#[derive(Debug)]
pub struct Detokenizer<A: ChannelAdapter> {
    vault: Arc<Vault>,
    adapter: A,
    audit: Vec<AuditRecord>,
    seen: HashSet<MatchId>,
    report: DeliveryReport,
}

impl<A: ChannelAdapter> Detokenizer<A> {
    pub fn new(vault: Arc<Vault>, adapter: A) -> Self {
        Self {
            vault,
            adapter,
            audit: Vec::new(),
            seen: HashSet::new(),
            report: DeliveryReport::default(),
        }
    }

    /// Resolves and delivers one match.
    pub fn deliver(&mut self, m: &MatchMessage) -> Result<Outcome, Error> {
        let d = &m.decision;
        if !self.seen.insert(d.match_id.clone()) {
            self.report.duplicates += 1;
            return Ok(Outcome::Duplicate);
        }
        let kind = d.channel.contact_kind();
        let mut resolved = vec!["customer_key"];
        let outcome = match self.vault.resolve(&d.token)? {
            None => Outcome::UnknownToken,
            Some(customer_key) => {
                resolved.push(kind.as_str());
                match self.vault.contact(&d.token, kind)? {
                    None => Outcome::NoContact,
                    Some(to) => {
                        // The placeholders' fields, read just in time like the contact.
                        let mut contacts = vec![(kind, to)];
                        for k in service::placeholder_kinds(&m.title).chain(service::placeholder_kinds(&m.message)) {
                            if !contacts.iter().any(|(c, _)| *c == k)
                                && let Some(v) = self.vault.contact(&d.token, k)?
                            {
                                resolved.push(k.as_str());
                                contacts.push((k, v));
                            }
                        }
                        let opened = persona_privacy::Opened { customer_key, contacts };
                        self.adapter.send(Delivery {
                            decision: d,
                            customer_key: &opened.customer_key,
                            to: &opened.contacts[0].1,
                            message: &service::fill(&m.message, &opened),
                            title: &service::fill(&m.title, &opened),
                        })?;
                        Outcome::Delivered
                    }
                }
            }
        };
        match outcome {
            Outcome::Delivered => *self.report.deliveries_by_channel.entry(d.channel).or_default() += 1,
            _ => self.report.undeliverable += 1,
        }
        self.audit
            .push(AuditRecord::of(d, resolved, outcome, self.adapter.name()));
        Ok(outcome)
    }

    /// Delivers everything the matches stream carries until it is closed.
    pub async fn run(&mut self, bus: &MemoryBus) -> Result<(), Error> {
        let mut next = 1;
        while let Some(batch) = bus.matches().read(next, 1024).await {
            for (pos, m) in batch {
                self.deliver(&m)?;
                next = pos + 1;
            }
            bus.matches().trim(next - 1);
        }
        Ok(())
    }

    /// Flushes the adapter and writes the audit trail (sorted by time, token, offer).
    pub fn finish(mut self, audit: &Path) -> Result<(A, DeliveryReport), Error> {
        self.adapter.finish()?;
        self.audit
            .sort_by(|a, b| (a.ts, &a.token, &a.offer).cmp(&(b.ts, &b.token, &b.offer)));
        let io = |source| Error::Io {
            path: audit.to_owned(),
            source,
        };
        let mut out = String::new();
        for r in &self.audit {
            out.push_str(&serde_json::to_string(r).expect("audit record serializes"));
            out.push('\n');
        }
        std::fs::write(audit, out).map_err(io)?;
        Ok((self.adapter, self.report))
    }
}

pub use persona_proto::error_chain;

#[cfg(test)]
mod tests;
