//! Channel adapters: where a resolved message goes. The file adapter writes
//! `deliveries.jsonl`, the embedded mode's stand-in for push, email and SMS gateways.

use std::path::{Path, PathBuf};

use persona_event::Match;
use persona_privacy::{CustomerKey, Pii};

use crate::Error;

/// One message, resolved: it holds PII and lives only inside the trusted zone.
#[derive(Debug)]
pub struct Delivery<'a> {
    pub decision: &'a Match,
    pub customer_key: &'a CustomerKey,
    /// The address the channel needs.
    pub to: &'a Pii<String>,
    pub title: &'a str,
    pub message: &'a str,
}

/// A way to reach customers.
pub trait ChannelAdapter: std::fmt::Debug {
    /// Short name for the audit trail.
    fn name(&self) -> &'static str;
    fn send(&mut self, delivery: Delivery<'_>) -> Result<(), Error>;
    /// Makes everything sent durable.
    fn finish(&mut self) -> Result<(), Error>;
}

/// Writes each delivery as a JSON line; the file is sorted like `matches.jsonl` (by
/// time, token, offer) when finished.
/// The order of `matches.jsonl`: time, token, offer.
type SortKey = (chrono::DateTime<chrono::Utc>, String, String);

#[derive(Debug)]
pub struct FileAdapter {
    path: PathBuf,
    lines: Vec<(SortKey, String)>,
}

impl FileAdapter {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            lines: Vec::new(),
        }
    }
}

impl ChannelAdapter for FileAdapter {
    fn name(&self) -> &'static str {
        "file"
    }

    fn send(&mut self, d: Delivery<'_>) -> Result<(), Error> {
        let m = d.decision;
        let line = serde_json::json!({
            "match_id": m.match_id,
            "customer_key": d.customer_key.expose_secret(),
            "channel": m.channel,
            "to": d.to.expose(),
            "offer": m.offer,
            "variant": m.variant,
            "message": d.message,
        });
        self.lines
            .push(((m.ts, m.token.to_string(), m.offer.clone()), line.to_string()));
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.lines.sort();
        let mut out = String::with_capacity(self.lines.iter().map(|l| l.1.len() + 1).sum());
        for (_, line) in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        std::fs::write(&self.path, out).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }
}
