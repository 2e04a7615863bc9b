//! The run's output files, in the line formats of DESIGN.md §6, sorted.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use persona_actors::CustomerFeatures;
use persona_event::Match;
use persona_gateway::DeadLetter;
use serde::Serialize;

pub(crate) fn write_lines<T: Serialize>(path: &Path, items: impl IntoIterator<Item = T>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    for item in items {
        serde_json::to_writer(&mut w, &item)?;
        w.write_all(b"\n")?;
    }
    w.flush().with_context(|| format!("writing {}", path.display()))
}

/// `matches.jsonl`, already sorted by (ts, token, offer).
pub(crate) fn write_matches(path: &Path, matches: &[Match]) -> Result<()> {
    write_lines(path, matches)
}

#[derive(Serialize)]
struct FeatureLine<'a> {
    token: &'a persona_event::Token,
    #[serde(with = "persona_event::time::rfc3339")]
    as_of: chrono::DateTime<chrono::Utc>,
    features: &'a std::collections::BTreeMap<String, persona_event::Value>,
}

/// `features.jsonl`, sorted by token.
pub(crate) fn write_features(path: &Path, features: &[CustomerFeatures]) -> Result<()> {
    write_lines(
        path,
        features.iter().map(|(token, as_of, features)| FeatureLine {
            token,
            as_of: *as_of,
            features,
        }),
    )
}

/// `dead_letter.jsonl`, sorted by source, file and line.
pub(crate) fn write_dead_letters(path: &Path, dead: &[DeadLetter]) -> Result<()> {
    let mut sorted: Vec<&DeadLetter> = dead.iter().collect();
    sorted.sort_by(|a, b| (&a.source, &a.file, a.line).cmp(&(&b.source, &b.file, b.line)));
    write_lines(path, sorted)
}
