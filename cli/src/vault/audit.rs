//! The admin audit trail, DATA/trusted/audit/admin.jsonl: one JSON line per vault
//! administration act (resolve, rotate, rewrap, backup, restore), with when, who
//! and what, never a customer key or contact.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

/// An open audit trail; lines are appended.
#[derive(Debug)]
pub(crate) struct AdminAudit {
    path: PathBuf,
    file: File,
}

impl AdminAudit {
    pub(crate) fn open(data: &Path) -> Result<Self> {
        let dir = data.join("trusted").join("audit");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("admin.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { path, file })
    }

    /// Appends `{ts, action, user, ...fields}`. `fields` must hold no protected
    /// value: tokens, versions, counts, paths and outcomes only.
    pub(crate) fn record(&mut self, action: &str, fields: Value) -> Result<()> {
        let mut line = Map::new();
        line.insert(
            "ts".to_owned(),
            json!(persona_event::time::format_ts(&chrono::Utc::now())),
        );
        line.insert("action".to_owned(), json!(action));
        line.insert("user".to_owned(), json!(std::env::var("USER").unwrap_or_default()));
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        writeln!(self.file, "{}", Value::Object(line)).with_context(|| format!("writing {}", self.path.display()))
    }

    /// Makes the lines written so far durable: an act is on record before (or as) it
    /// takes effect, even if the process is killed next.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// `record` then `sync`.
    pub(crate) fn record_now(&mut self, action: &str, fields: Value) -> Result<()> {
        self.record(action, fields)?;
        self.sync()
    }
}
