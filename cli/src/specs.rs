//! Reads a directory of spec YAML (Source, FeatureSet, Offer; several documents per
//! file allowed) and validates each document into its runtime type. A broken Source
//! or Offer is reported with its file and line and left out, so the rest of the run
//! goes on; without a valid FeatureSet there is no model to run.

mod locate;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use persona_expr::FieldError;
use persona_features::{FeatureSet, FeatureSetDocument};
use persona_offers::{ContactPolicy, ContactPolicyDocument, Offer, OfferDocument};
use persona_privacy::{Source, SourceSpec};

/// One YAML document of a spec file.
#[derive(Debug)]
pub(crate) struct Document {
    /// The file, as given on the command line or under the specs directory.
    pub(crate) file: PathBuf,
    /// 1-based line of the file where the document starts.
    pub(crate) line: usize,
    pub(crate) text: String,
    pub(crate) kind: String,
    pub(crate) name: String,
}

/// A spec that was refused, with its rendered diagnostics.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) rendered: String,
}

/// Everything a run needs.
#[derive(Debug)]
pub(crate) struct Specs {
    pub(crate) sources: Vec<Source>,
    pub(crate) features: FeatureSet,
    pub(crate) offers: Vec<Offer>,
    /// The cluster's contact policy, if the specs hold one.
    pub(crate) policy: Option<ContactPolicy>,
    pub(crate) problems: Vec<Problem>,
}

/// A digest of the `*.yaml` files of a directory (names and contents): it changes
/// when a spec does. An unreadable directory digests as empty.
pub(crate) fn fingerprint(dir: &Path) -> u64 {
    let mut bytes = Vec::new();
    for file in yaml_files(dir).unwrap_or_default() {
        bytes.extend_from_slice(file.as_os_str().as_encoded_bytes());
        bytes.push(0);
        bytes.extend(std::fs::read(&file).unwrap_or_default());
        bytes.push(0);
    }
    persona_event::hash::fnv1a64(&bytes)
}

/// `*.yaml` and `*.yml` files of a directory, sorted.
pub(crate) fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading specs directory {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Splits files into documents at `---` lines and reads each one's kind and name.
pub(crate) fn documents(files: &[PathBuf]) -> Result<(Vec<Document>, Vec<Problem>)> {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let mut start = 1;
        let mut current = String::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let separator = *line == "---" || line.starts_with("--- ");
            if !separator {
                current.push_str(line);
                current.push('\n');
            }
            if separator || i + 1 == lines.len() {
                let body = std::mem::take(&mut current);
                push_document(file, start, body, &mut docs, &mut problems);
                start = i + 2;
            }
        }
    }
    Ok((docs, problems))
}

fn push_document(file: &Path, line: usize, text: String, docs: &mut Vec<Document>, problems: &mut Vec<Problem>) {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return;
    }
    let head: serde_yaml::Value = match serde_yaml::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(Problem {
                kind: "?".into(),
                name: "?".into(),
                rendered: yaml_error(file, line, &e),
            });
            return;
        }
    };
    let kind = head.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
    let name = head
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_owned();
    docs.push(Document {
        file: file.to_owned(),
        line,
        text,
        kind,
        name,
    });
}

fn yaml_error(file: &Path, doc_line: usize, e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(loc) => format!(
            "error: {}:{}:{}: {e}",
            file.display(),
            doc_line + loc.line() - 1,
            loc.column()
        ),
        None => format!("error: {}:{doc_line}: {e}", file.display()),
    }
}

/// Renders a field error of a document: a plain one at the document, an expression
/// one with carets under the offending text at its position in the file.
fn render_field_error(doc: &Document, e: &FieldError) -> String {
    let (path, source, diagnostics) = match e {
        FieldError::Invalid { path, message } => return render_at(doc, path, message),
        FieldError::Expr {
            path,
            source_text,
            diagnostics,
        } => (path, source_text, diagnostics),
    };
    // Find where the expression sits in the document, to report file positions.
    let first = source.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    // Not found verbatim (a quoted string with escapes): the field's own position.
    // The expression's first line, as the file has it up to the expression.
    let (line_base, prefix) = doc
        .text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find(first).map(|c| (doc.line + i, l[..c].to_owned())))
        .or_else(|| locate::locate(&doc.text, path).map(|(line, col)| (doc.line + line - 1, " ".repeat(col - 1))))
        .unwrap_or((doc.line, String::new()));
    let origin = doc.file.display().to_string();
    let mut out = format!("error: {} `{}`: {path}: invalid expression\n", doc.kind, doc.name);
    let _ = write!(out, "{}", diagnostics.render_in(source, &origin, line_base, &prefix));
    out
}

/// `file:line:col: Kind `name`: path: message`, with the line and a caret under the
/// field when the path can be found in the document.
fn render_at(doc: &Document, path: &str, message: &str) -> String {
    let head = |line: usize, col: usize| {
        format!(
            "error: {}:{line}:{col}: {} `{}`: {path}: {message}",
            doc.file.display(),
            doc.kind,
            doc.name
        )
    };
    match locate::locate(&doc.text, path) {
        Some((line, col)) => {
            let text = doc.text.lines().nth(line - 1).unwrap_or_default();
            let number = doc.line + line - 1;
            let width = number.to_string().len();
            format!(
                "{}\n{:>width$} |\n{number} | {text}\n{:>width$} | {}^",
                head(number, col),
                "",
                "",
                " ".repeat(col - 1)
            )
        }
        None => head(doc.line, 1),
    }
}

fn render_features_error(doc: &Document, e: &persona_features::Error) -> String {
    match e {
        persona_features::Error::Yaml(y) => yaml_error(&doc.file, doc.line, y),
        persona_features::Error::Field(f) => render_field_error(doc, f),
        other => format!("error: {}:{}: {other}", doc.file.display(), doc.line),
    }
}

fn render_offer_error(doc: &Document, e: &persona_offers::Error) -> String {
    match e {
        persona_offers::Error::Yaml(y) => yaml_error(&doc.file, doc.line, y),
        persona_offers::Error::Field(f) => render_field_error(doc, f),
        other => format!("error: {}:{}: {other}", doc.file.display(), doc.line),
    }
}

/// Compiles the FeatureSet among `docs`, if exactly one is valid.
pub(crate) fn feature_set(docs: &[Document]) -> Result<FeatureSet> {
    let sets: Vec<&Document> = docs.iter().filter(|d| d.kind == "FeatureSet").collect();
    let [doc] = sets.as_slice() else {
        bail!("expected exactly one FeatureSet among the specs, found {}", sets.len());
    };
    let parsed =
        FeatureSetDocument::from_yaml(&doc.text).map_err(|e| anyhow::anyhow!(render_features_error(doc, &e)))?;
    FeatureSet::compile(&parsed).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(|e| render_field_error(doc, e)).collect();
        anyhow::anyhow!("FeatureSet `{}` is invalid:\n{}", doc.name, all.join("\n"))
    })
}

/// Compiles the ContactPolicy document. A broken policy stops the run: running without
/// the limits the bank wrote would contact customers in their quiet hours.
fn contact_policy(doc: &Document) -> Result<ContactPolicy> {
    let parsed =
        ContactPolicyDocument::from_yaml(&doc.text).map_err(|e| anyhow::anyhow!(render_offer_error(doc, &e)))?;
    ContactPolicy::compile(&parsed).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(|e| render_field_error(doc, e)).collect();
        anyhow::anyhow!("ContactPolicy `{}` is invalid:\n{}", doc.name, all.join("\n"))
    })
}

/// Compiles one Offer document against the FeatureSet.
pub(crate) fn offer(doc: &Document, features: &FeatureSet) -> Result<Offer, Problem> {
    offer_in(doc, &persona_offers::offer_schema(features), features.timezone())
}

/// Compiles one Offer document against an expression schema.
pub(crate) fn offer_in(doc: &Document, schema: &persona_expr::Schema, tz: chrono_tz::Tz) -> Result<Offer, Problem> {
    let problem = |rendered: String| Problem {
        kind: doc.kind.clone(),
        name: doc.name.clone(),
        rendered,
    };
    let parsed = OfferDocument::from_yaml(&doc.text).map_err(|e| problem(render_offer_error(doc, &e)))?;
    Offer::compile_in(&parsed, schema, tz).map_err(|errors| {
        problem(
            errors
                .iter()
                .map(|e| render_field_error(doc, e))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

fn source(doc: &Document) -> Result<Source, Problem> {
    let problem = |e: persona_privacy::SpecError| {
        let rendered = match (e.line, e.column) {
            (Some(line), Some(col)) => format!(
                "error: {}:{}:{col}: Source `{}`: {}",
                doc.file.display(),
                doc.line + line - 1,
                doc.name,
                e.message
            ),
            // Errors found after parsing start with the field's path.
            _ => match e.message.split_once(": ") {
                Some((path, message)) if path.starts_with("spec") => render_at(doc, path, message),
                _ => format!(
                    "error: {}:{}: Source `{}`: {}",
                    doc.file.display(),
                    doc.line,
                    doc.name,
                    e.message
                ),
            },
        };
        Problem {
            kind: doc.kind.clone(),
            name: doc.name.clone(),
            rendered,
        }
    };
    let spec = SourceSpec::from_yaml(&doc.text).map_err(problem)?;
    Source::compile(spec).map_err(problem)
}

/// Only the Source documents of a directory, compiled; the others are skipped and need
/// not be valid (the privacy report looks at nothing else).
pub(crate) fn sources(dir: &Path) -> Result<(Vec<Source>, Vec<Problem>)> {
    let (docs, mut problems) = documents(&yaml_files(dir)?)?;
    let mut sources = Vec::new();
    for doc in docs.iter().filter(|d| d.kind == "Source") {
        match source(doc) {
            Ok(s) => sources.push(s),
            Err(p) => problems.push(p),
        }
    }
    Ok((sources, problems))
}

/// Loads every spec of a directory.
pub(crate) fn load(dir: &Path) -> Result<Specs> {
    let (docs, mut problems) = documents(&yaml_files(dir)?)?;
    let features = feature_set(&docs)?;
    let mut sources = Vec::new();
    let mut offers = Vec::new();
    let mut policies = Vec::new();
    for doc in &docs {
        let result = match doc.kind.as_str() {
            "FeatureSet" => continue,
            "Source" => source(doc).map(|s| sources.push(s)),
            "Offer" => offer(doc, &features).map(|o| offers.push(o)),
            "ContactPolicy" => {
                policies.push(contact_policy(doc)?);
                continue;
            }
            other => Err(Problem {
                kind: other.to_owned(),
                name: doc.name.clone(),
                rendered: format!(
                    "error: {}:{}: unsupported kind `{other}`: expected Source, FeatureSet, Offer or ContactPolicy",
                    doc.file.display(),
                    doc.line
                ),
            }),
        };
        if let Err(p) = result {
            problems.push(p);
        }
    }
    // A second offer of the same name is refused; the first stays.
    let mut kept: Vec<Offer> = Vec::with_capacity(offers.len());
    for o in offers {
        if kept.iter().any(|k| k.name == o.name) {
            problems.push(Problem {
                kind: "Offer".into(),
                name: o.name.clone(),
                rendered: format!(
                    "error: Offer `{}` is defined twice; the first definition is used",
                    o.name
                ),
            });
        } else {
            kept.push(o);
        }
    }
    let offers = kept;
    if policies.len() > 1 {
        bail!(
            "expected at most one ContactPolicy among the specs (one per cluster), found {}: {}",
            policies.len(),
            policies
                .iter()
                .map(|p| format!("`{}`", p.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(Specs {
        sources,
        features,
        offers,
        policy: policies.pop(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_and_keep_their_lines() {
        let dir = std::env::temp_dir().join(format!("persona-specs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.yaml");
        std::fs::write(
            &file,
            "# comment\nkind: Offer\nmetadata: {name: a}\n---\nkind: FeatureSet\nmetadata: {name: f}\n---\n",
        )
        .unwrap();
        let (docs, problems) = documents(&[file]).unwrap();
        assert!(problems.is_empty());
        assert_eq!(
            docs.iter().map(|d| (d.kind.as_str(), d.line)).collect::<Vec<_>>(),
            vec![("Offer", 1), ("FeatureSet", 5)]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
