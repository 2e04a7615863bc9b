//! Sources (DESIGN.md §3): the spec of a system of record's files, compiled into a
//! reader and a scrubber that turn each record into tokenizable, non-identifying data.

mod read;
mod report;
mod rules;
mod scrub;
mod spec;
mod time;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use persona_event::{ContactKind, Value};

use crate::{Error, Result};

pub use read::{RawRecord, Read, Records};
pub use report::{
    Clear, End, EventIdReport, FieldReport, Leaves, Reversal, RuleName, SourceReport, TimeReport, Translation, Use,
};
pub use scrub::{FieldCounts, Scrubbed};
pub use spec::{
    AttrRule, AttrType, FieldRule, Format, Generalize, GeneralizeRule, Keep, MaskRule, Metadata, SourceBody,
    SourceKind, SourceSpec, TimeSpec,
};

use time::TimeParse;

/// The API version a Source may state.
pub const API_VERSION: &str = "persona.dev/v1alpha1";

/// A spec that does not parse or does not hold together. The message names the field;
/// `line` and `column` (1-based) are set when the YAML position is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl SpecError {
    fn at(message: impl Into<String>) -> Self {
        Self {
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SpecError {}

/// Why a record was refused. `reason` never holds a value of the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The field at fault, when one is.
    pub field: Option<String>,
    pub reason: String,
}

impl Refusal {
    pub(crate) fn new(field: Option<&str>, reason: String) -> Self {
        Self {
            field: field.map(str::to_owned),
            reason,
        }
    }
}

impl SourceSpec {
    /// Parses one YAML document.
    pub fn from_yaml(text: &str) -> Result<SourceSpec, SpecError> {
        serde_yaml::from_str(text).map_err(|e| {
            let location = e.location();
            let mut message = e.to_string();
            if let Some(loc) = &location {
                let suffix = format!(" at line {} column {}", loc.line(), loc.column());
                if let Some(stripped) = message.strip_suffix(&suffix) {
                    message = stripped.to_owned();
                }
            }
            SpecError {
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
                message,
            }
        })
    }
}

/// A field's rule, ready to apply.
#[derive(Clone, Debug)]
pub(crate) enum Rule {
    Key,
    Drop,
    Generalize {
        attr: String,
        kind: Generalize,
        bands: Vec<f64>,
        format: String,
    },
    Mask {
        attr: String,
        keep: Keep,
    },
    Vault(ContactKind),
    Attr {
        attr: String,
        kind: AttrType,
        table: Option<HashMap<String, Value>>,
        default: Option<Value>,
    },
}

#[derive(Clone, Debug)]
pub(crate) enum TimeRule {
    Fixed(DateTime<Utc>),
    Field { field: String, parse: TimeParse },
}

/// A validated Source: reads its files and scrubs their records.
#[derive(Clone, Debug)]
pub struct Source {
    spec: SourceSpec,
    rules: HashMap<String, Rule>,
    /// `None` for a `context` source, whose events reach every customer.
    key_field: Option<String>,
    id_fields: Option<Vec<String>>,
    /// Id fields no rule names: read for the id, then dropped.
    id_only: HashSet<String>,
    time: TimeRule,
    tz: Tz,
}

impl Source {
    /// Checks what a single rule cannot: one key, known lookups and time zone, unique
    /// attribute names, the API version.
    pub fn compile(spec: SourceSpec) -> Result<Source, SpecError> {
        if let Some(v) = &spec.api_version
            && v != API_VERSION
        {
            return Err(SpecError::at(format!("apiVersion: expected `{API_VERSION}`")));
        }
        let body = &spec.spec;
        if spec.metadata.name.trim().is_empty() {
            return Err(SpecError::at("metadata.name: must not be empty"));
        }
        if body.event.trim().is_empty() {
            return Err(SpecError::at("spec.event: must not be empty"));
        }
        if body.event == persona_event::kinds::FORGET {
            return Err(SpecError::at(
                "spec.event: `forget` is reserved: erasures come from `persona vault forget`, not from source files",
            ));
        }
        if let Some(files) = &body.files {
            glob::Pattern::new(files).map_err(|_| SpecError::at("spec.files: invalid glob pattern"))?;
        }
        match (&body.stream, body.format) {
            (Some(_), _) if body.files.is_some() => {
                return Err(SpecError::at("spec.stream: a source reads files or a stream, not both"));
            }
            (Some(_), Some(_)) => {
                return Err(SpecError::at(
                    "spec.format: a stream source has no file format (each entry's fields are the record's)",
                ));
            }
            (Some(stream), None) if stream.trim().is_empty() => {
                return Err(SpecError::at("spec.stream: must not be empty"));
            }
            (None, None) => {
                return Err(SpecError::at(
                    "spec.format: a file source needs `format: csv` or `format: jsonl` (or read a Redis `stream`)",
                ));
            }
            _ => {}
        }
        let keys: Vec<&String> = body
            .fields
            .iter()
            .filter(|(_, r)| **r == FieldRule::Key)
            .map(|(n, _)| n)
            .collect();
        let broadcast = body.event == persona_event::kinds::CONTEXT;
        let key_field = match keys.as_slice() {
            [one] => Some((*one).clone()),
            // A `context` source (an alert for a region) concerns no one customer: its
            // events are broadcast to every actor, which decide whether they apply.
            [] if broadcast => {
                if body.fields.values().any(|r| matches!(r, FieldRule::Vault(_))) {
                    return Err(SpecError::at(
                        "spec.fields: a `context` source without a `key` has no customer to vault contacts for",
                    ));
                }
                None
            }
            [] => {
                return Err(SpecError::at(
                    "spec.fields: exactly one field must be `key`, none is (only an `event: context` source, broadcast to every customer, has none)",
                ));
            }
            _ => {
                return Err(SpecError::at(
                    "spec.fields: exactly one field must be `key`, several are",
                ));
            }
        };
        let (time, tz) = match &body.time {
            TimeSpec::Value(v) => {
                let ts = persona_event::time::parse_ts(v)
                    .map_err(|_| SpecError::at("spec.time.value: expected an rfc 3339 timestamp"))?;
                (TimeRule::Fixed(ts), Tz::UTC)
            }
            TimeSpec::Field { field, format, tz } => {
                let tz = match tz {
                    Some(name) => Tz::from_str(name)
                        .map_err(|_| SpecError::at(format!("spec.time.tz: unknown time zone `{name}`")))?,
                    None => Tz::UTC,
                };
                (
                    TimeRule::Field {
                        field: field.clone(),
                        parse: TimeParse::of(format.as_deref()),
                    },
                    tz,
                )
            }
        };
        let mut rules = HashMap::new();
        let mut produced: BTreeMap<String, &str> = BTreeMap::new();
        for (name, rule) in &body.fields {
            let at = |m: String| SpecError::at(format!("spec.fields.{name}: {m}"));
            let rule = compile_rule(name, rule, &body.lookups).map_err(at)?;
            if let Rule::Generalize { attr, .. } | Rule::Mask { attr, .. } | Rule::Attr { attr, .. } = &rule {
                if let Some(other) = produced.insert(attr.clone(), name) {
                    return Err(at(format!("attribute `{attr}` is also produced by field `{other}`")));
                }
                if matches!(attr.as_str(), "ts" | "type" | "id") {
                    return Err(at(format!(
                        "attribute name `{attr}` is reserved: `event.{attr}` is the event's own; choose another"
                    )));
                }
                if attr == "contacts" && body.event == persona_event::kinds::PROFILE {
                    return Err(at("attribute `contacts` is reserved on profile events".to_owned()));
                }
            }
            rules.insert(name.clone(), rule);
        }
        let id_fields = match &body.id {
            Some(ids) if ids.is_empty() => {
                return Err(SpecError::at("spec.id: must name at least one field"));
            }
            Some(ids) => Some(ids.clone()),
            None => None,
        };
        let id_only = id_fields
            .iter()
            .flatten()
            .filter(|f| !rules.contains_key(*f))
            .cloned()
            .collect();
        Ok(Source {
            spec,
            rules,
            key_field,
            id_fields,
            id_only,
            time,
            tz,
        })
    }

    /// Parses and compiles one YAML document.
    pub fn from_yaml(text: &str) -> Result<Source, SpecError> {
        Source::compile(SourceSpec::from_yaml(text)?)
    }

    pub fn name(&self) -> &str {
        &self.spec.metadata.name
    }

    /// The field holding the customer key (the one `key` rule).
    pub fn key_field(&self) -> Option<&str> {
        self.key_field.as_deref()
    }

    /// The event type this source produces.
    pub fn event(&self) -> &str {
        &self.spec.spec.event
    }

    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    /// The file pattern, relative to the sources directory: `spec.files`, else
    /// `<name>.<format>`.
    pub fn pattern(&self) -> String {
        match (&self.spec.spec.files, self.spec.spec.format) {
            (Some(files), _) => files.clone(),
            (None, Some(format)) => format!("{}.{}", self.name(), format.extension()),
            // A stream source has no files: a pattern no file name matches.
            (None, None) => format!("{}.stream-source-has-no-files", self.name()),
        }
    }

    /// The Redis stream this source reads, when it reads one instead of files.
    pub fn stream(&self) -> Option<&str> {
        self.spec.spec.stream.as_deref()
    }

    /// This source's files under `dir`, sorted by path.
    pub fn files(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        if self.stream().is_some() {
            return Ok(Vec::new());
        }
        let base = glob::Pattern::escape(&dir.to_string_lossy());
        let pattern = format!("{base}/{}", self.pattern());
        let paths = glob::glob(&pattern).map_err(|source| Error::Pattern { pattern, source })?;
        let mut files = Vec::new();
        for path in paths {
            let path = path.map_err(|source| Error::Glob { source })?;
            if path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Opens one file of this source; `rel` is its name relative to the sources
    /// directory, as dead letters report it.
    pub fn read(&self, path: &Path, rel: &str) -> Result<Records> {
        Records::open(path, rel, self.spec.spec.format.unwrap_or(Format::Csv))
    }
}

fn compile_rule(
    name: &str,
    rule: &FieldRule,
    lookups: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Rule, String> {
    let default_attr = |attr: &Option<String>| attr.clone().unwrap_or_else(|| name.to_lowercase());
    let typed = |kind: AttrType, v: &str, what: String| {
        rules::parse_typed(kind, v).map_err(|()| format!("{what} is not a valid {}", kind.as_str()))
    };
    Ok(match rule {
        FieldRule::Key => Rule::Key,
        FieldRule::Drop => Rule::Drop,
        FieldRule::Vault(kind) => Rule::Vault(*kind),
        FieldRule::Mask(m) => Rule::Mask {
            attr: default_attr(&m.attr),
            keep: m.keep,
        },
        FieldRule::Generalize(g) => {
            spec::check_bands(&g.bands)?;
            if let Some(format) = &g.format {
                spec::check_format(format)?;
            }
            Rule::Generalize {
                attr: default_attr(&g.attr),
                kind: g.kind,
                bands: g.bands.clone(),
                format: g.format.clone().unwrap_or_else(|| "%Y-%m-%d".to_owned()),
            }
        }
        FieldRule::Attr(a) => {
            let table = match (&a.map, &a.lookup) {
                (Some(map), _) => Some(
                    map.iter()
                        .map(|(c, v)| Ok((c.clone(), typed(a.kind, v, format!("`map` value for code `{c}`"))?)))
                        .collect::<Result<_, String>>()?,
                ),
                (None, Some(table)) => {
                    let codes = lookups
                        .get(table)
                        .ok_or_else(|| format!("unknown lookup table `{table}`"))?;
                    let mut out = HashMap::with_capacity(codes.len());
                    for (code, v) in codes {
                        let what = format!("lookup `{table}` value for code `{code}`");
                        out.insert(code.clone(), typed(a.kind, v, what)?);
                    }
                    Some(out)
                }
                (None, None) => None,
            };
            Rule::Attr {
                attr: a.attr.clone(),
                kind: a.kind,
                table,
                default: a
                    .default
                    .as_deref()
                    .map(|d| typed(a.kind, d, "`default`".to_owned()))
                    .transpose()?,
            }
        }
    })
}

#[cfg(test)]
mod tests;
