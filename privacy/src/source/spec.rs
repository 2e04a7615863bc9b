//! The Source spec as users write it (DESIGN.md §3). These serde types are the
//! reference: each rule is checked on its own while it is read, so an error carries
//! the YAML line and column; checks across fields happen in [`super::Source::compile`].

use std::collections::BTreeMap;
use std::fmt;

use chrono::format::{Item, StrftimeItems};
use persona_event::ContactKind;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A `Source` document: how one system of record's files become canonical events.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceSpec {
    /// `persona.dev/v1alpha1`. May be left out in plain files.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Always `Source`.
    pub kind: SourceKind,
    /// Kubernetes object metadata; only `name` is used (other keys are ignored).
    pub metadata: Metadata,
    /// What to read and how to scrub it.
    pub spec: SourceBody,
}

/// The only kind this type reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SourceKind {
    Source,
}

/// Object metadata. Open to the other keys Kubernetes adds (labels, namespace, ...).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Metadata {
    /// The source's name: names its dead letters, its counts and its default file.
    pub name: String,
}

/// The body of a Source.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceBody {
    /// Glob of the files to read, under the sources directory. Default
    /// `<name>.<format>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<String>,
    /// A Redis stream whose entries are this source's records, instead of files: read
    /// continuously by `persona gateway --source-redis URL`, each entry's fields the
    /// record's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// File format: `csv` (with a header row) or `jsonl` (one JSON object a line).
    /// Required for files; a stream source has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The event type every record of this source becomes, e.g. `transaction`.
    pub event: String,
    /// Fields whose keyed hash is the stable event id. They may be columns that no
    /// rule names (they are then dropped). Absent: the whole raw record, its file and
    /// its line are hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Vec<String>>,
    /// Where the event time comes from.
    pub time: TimeSpec,
    /// One rule per field (CSV header or top-level JSON key, taken literally). A field
    /// no rule names is dropped.
    pub fields: BTreeMap<String, FieldRule>,
    /// Code tables for `lookup`, by name: `{mcc: {"5541": fuel}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lookups: BTreeMap<String, BTreeMap<String, String>>,
}

/// A source file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// The file extension of the default file name.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// The event time: from a field (`{field, format, tz}`) or one fixed instant for the
/// whole source (`{value: "2026-01-01T00:00:00Z"}`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "TimeDoc", into = "TimeDoc")]
pub enum TimeSpec {
    Field {
        /// The field holding the time.
        field: String,
        /// chrono strftime format, e.g. `%d/%m/%Y %H:%M`; a format without a time of
        /// day reads local midnight. Absent: RFC 3339.
        format: Option<String>,
        /// IANA time zone the field's local times are in. Absent: UTC.
        tz: Option<String>,
    },
    Value(String),
}

/// The event time as written: `{field, format, tz}` or `{value}`.
#[derive(Deserialize, Serialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct TimeDoc {
    /// The field holding the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// chrono strftime format of the field, e.g. `%d/%m/%Y %H:%M`; a format without a
    /// time of day reads local midnight. Absent: RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    /// IANA time zone the field's local times are in. Absent: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tz: Option<String>,
    /// One fixed RFC 3339 instant for every record, instead of a field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

impl From<TimeSpec> for TimeDoc {
    fn from(spec: TimeSpec) -> TimeDoc {
        match spec {
            TimeSpec::Field { field, format, tz } => TimeDoc {
                field: Some(field),
                format,
                tz,
                value: None,
            },
            TimeSpec::Value(value) => TimeDoc {
                field: None,
                format: None,
                tz: None,
                value: Some(value),
            },
        }
    }
}

#[cfg(feature = "crd")]
impl schemars::JsonSchema for TimeSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeSpec".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        TimeDoc::json_schema(generator)
    }
}

/// A rule is the word `key` or `drop`, or a map: not a structural schema in
/// Kubernetes' sense (no `type` may vary), so the CRD keeps it as written and
/// `Source::compile` checks it.
#[cfg(feature = "crd")]
impl schemars::JsonSchema for FieldRule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FieldRule".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "What happens to the field: `key` (the customer identifier, tokenized), `drop`, or a map with one of `generalize` (+ `bands`, `format`, `attr`), `mask` (`{keepFirst|keepLast: N}`, `attr`), `vault` (email, phone, push, name) or `attr` (+ `type`, `map`, `lookup`, `default`).",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// Written back as it is read: the word, or the map with the keys given.
impl Serialize for FieldRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = match self {
            FieldRule::Key => return s.serialize_str("key"),
            FieldRule::Drop => return s.serialize_str("drop"),
            _ => s.serialize_map(None)?,
        };
        match self {
            FieldRule::Key | FieldRule::Drop => {}
            FieldRule::Generalize(g) => {
                map.serialize_entry("generalize", &g.kind)?;
                map.serialize_entry("bands", &g.bands)?;
                if let Some(format) = &g.format {
                    map.serialize_entry("format", format)?;
                }
                if let Some(attr) = &g.attr {
                    map.serialize_entry("attr", attr)?;
                }
            }
            FieldRule::Mask(m) => {
                let keep = match m.keep {
                    Keep::First(n) => BTreeMap::from([("keepFirst", n)]),
                    Keep::Last(n) => BTreeMap::from([("keepLast", n)]),
                };
                map.serialize_entry("mask", &keep)?;
                if let Some(attr) = &m.attr {
                    map.serialize_entry("attr", attr)?;
                }
            }
            FieldRule::Vault(kind) => map.serialize_entry("vault", kind)?,
            FieldRule::Attr(a) => {
                map.serialize_entry("attr", &a.attr)?;
                if a.kind != AttrType::String {
                    map.serialize_entry("type", &a.kind)?;
                }
                if let Some(m) = &a.map {
                    map.serialize_entry("map", m)?;
                }
                if let Some(lookup) = &a.lookup {
                    map.serialize_entry("lookup", lookup)?;
                }
                if let Some(default) = &a.default {
                    map.serialize_entry("default", default)?;
                }
            }
        }
        map.end()
    }
}

impl TryFrom<TimeDoc> for TimeSpec {
    type Error = String;
    fn try_from(doc: TimeDoc) -> Result<Self, String> {
        match (doc.field, doc.value) {
            (Some(field), None) => {
                if let Some(format) = &doc.format {
                    check_format(format)?;
                }
                Ok(TimeSpec::Field {
                    field,
                    format: doc.format,
                    tz: doc.tz,
                })
            }
            (None, Some(value)) if doc.format.is_none() && doc.tz.is_none() => {
                persona_event::time::parse_ts(&value)
                    .map_err(|_| "time `value` must be an RFC 3339 timestamp".to_owned())?;
                Ok(TimeSpec::Value(value))
            }
            (None, Some(_)) => Err("time `value` takes no `format` or `tz`".to_owned()),
            _ => Err("time needs exactly one of `field` or `value`".to_owned()),
        }
    }
}

/// What happens to one field.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldRule {
    /// The customer identifier: tokenized, never sent on. Exactly one per source, but
    /// none for an `event: context` source, whose events reach every customer.
    Key,
    /// Thrown away.
    Drop,
    /// A number or a date of birth turned into a band: `{generalize: age, bands: [18,
    /// 25, 35]}` gives `<18`, `18-25`, `25-35`, `35+`.
    Generalize(GeneralizeRule),
    /// Most characters replaced by `X`: `{mask: {keepLast: 4}}` gives `XXXXXX1234`.
    Mask(MaskRule),
    /// Contact data kept encrypted in the vault for delivery: `{vault: email}`.
    Vault(ContactKind),
    /// A non-identifying attribute sent on: `{attr: amount, type: decimal}`.
    Attr(AttrRule),
}

/// `generalize`: banding of a number or an age.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneralizeRule {
    pub kind: Generalize,
    /// Band bounds, strictly ascending; bands are half-open `[lo, hi)`.
    pub bands: Vec<f64>,
    /// Attribute name; default the field name lowercased.
    pub attr: Option<String>,
    /// Date format of an `age` field (chrono strftime). Default `%Y-%m-%d`.
    pub format: Option<String>,
}

/// What `generalize` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Generalize {
    /// A date of birth: whole years at the record's event time.
    Age,
    /// A number.
    Number,
}

/// `mask`: which characters stay.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskRule {
    pub keep: Keep,
    /// Attribute name; default the field name lowercased.
    pub attr: Option<String>,
}

/// How many characters a mask keeps, and at which end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    First(usize),
    Last(usize),
}

/// `attr`: a typed attribute, optionally translated through a code table.
#[derive(Clone, Debug, PartialEq)]
pub struct AttrRule {
    pub attr: String,
    pub kind: AttrType,
    /// Inline code table: `{D: debit, C: credit}`.
    pub map: Option<BTreeMap<String, String>>,
    /// Name of a table in `lookups`.
    pub lookup: Option<String>,
    /// Used for an unmapped code and for a missing or empty value. Without it an
    /// unmapped code passes through and a missing value gives no attribute.
    pub default: Option<String>,
}

/// The type of an attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttrType {
    #[default]
    String,
    Int,
    Decimal,
    Bool,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Int => "int",
            AttrType::Decimal => "decimal",
            AttrType::Bool => "bool",
        }
    }
}

/// A rule written as a map, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleDoc {
    generalize: Option<Generalize>,
    bands: Option<Vec<f64>>,
    format: Option<String>,
    mask: Option<MaskDoc>,
    vault: Option<ContactKind>,
    attr: Option<String>,
    #[serde(rename = "type")]
    kind: Option<AttrType>,
    map: Option<BTreeMap<String, String>>,
    lookup: Option<String>,
    default: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MaskDoc {
    keep_last: Option<usize>,
    keep_first: Option<usize>,
}

impl<'de> Deserialize<'de> for FieldRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RuleVisitor;
        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = FieldRule;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`key`, `drop`, or a map with one of generalize, mask, vault or attr")
            }
            fn visit_str<E: de::Error>(self, word: &str) -> Result<FieldRule, E> {
                match word {
                    "key" => Ok(FieldRule::Key),
                    "drop" => Ok(FieldRule::Drop),
                    other => Err(E::custom(format!(
                        "unknown rule `{other}`: expected `key`, `drop`, or a map with one of \
                         generalize, mask, vault or attr"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldRule, A::Error> {
                let doc = RuleDoc::deserialize(de::value::MapAccessDeserializer::new(map))?;
                doc.check().map_err(de::Error::custom)
            }
        }
        d.deserialize_any(RuleVisitor)
    }
}

impl RuleDoc {
    fn check(self) -> Result<FieldRule, String> {
        let chosen = [self.generalize.is_some(), self.mask.is_some(), self.vault.is_some()];
        if chosen.iter().filter(|c| **c).count() > 1 {
            return Err("a rule takes only one of `generalize`, `mask` or `vault`".to_owned());
        }
        let not_with = |rule: &str, present: &[(&str, bool)]| -> Result<(), String> {
            match present.iter().find(|(_, p)| *p) {
                Some((name, _)) => Err(format!("`{name}` is not allowed with `{rule}`")),
                None => Ok(()),
            }
        };
        let typed = [
            ("type", self.kind.is_some()),
            ("map", self.map.is_some()),
            ("lookup", self.lookup.is_some()),
            ("default", self.default.is_some()),
        ];
        if let Some(kind) = self.generalize {
            not_with("generalize", &typed)?;
            let bands = self.bands.ok_or("`generalize` needs `bands`")?;
            check_bands(&bands)?;
            if let Some(format) = &self.format {
                if kind == Generalize::Number {
                    return Err("`format` is only for `generalize: age`".to_owned());
                }
                check_format(format)?;
            }
            check_attr(self.attr.as_deref())?;
            return Ok(FieldRule::Generalize(GeneralizeRule {
                kind,
                bands,
                attr: self.attr,
                format: self.format,
            }));
        }
        let banding = [("bands", self.bands.is_some()), ("format", self.format.is_some())];
        if let Some(mask) = self.mask {
            not_with("mask", &typed)?;
            not_with("mask", &banding)?;
            let keep = match (mask.keep_first, mask.keep_last) {
                (Some(n), None) => Keep::First(n),
                (None, Some(n)) => Keep::Last(n),
                _ => return Err("`mask` needs exactly one of `keepFirst` or `keepLast`".to_owned()),
            };
            check_attr(self.attr.as_deref())?;
            return Ok(FieldRule::Mask(MaskRule { keep, attr: self.attr }));
        }
        if let Some(kind) = self.vault {
            not_with("vault", &typed)?;
            not_with("vault", &banding)?;
            not_with("vault", &[("attr", self.attr.is_some())])?;
            return Ok(FieldRule::Vault(kind));
        }
        not_with("attr", &banding)?;
        let attr = self
            .attr
            .ok_or("a rule needs one of `generalize`, `mask`, `vault` or `attr`")?;
        check_attr(Some(&attr))?;
        let kind = self.kind.unwrap_or_default();
        if self.map.is_some() && self.lookup.is_some() {
            return Err("use one of `map` or `lookup`, not both".to_owned());
        }
        for (code, value) in self.map.iter().flatten() {
            check_typed(kind, value).map_err(|e| format!("`map` value for code `{code}` {e}"))?;
        }
        if let Some(default) = &self.default {
            check_typed(kind, default).map_err(|e| format!("`default` {e}"))?;
        }
        Ok(FieldRule::Attr(AttrRule {
            attr,
            kind,
            map: self.map,
            lookup: self.lookup,
            default: self.default,
        }))
    }
}

fn check_attr(attr: Option<&str>) -> Result<(), String> {
    match attr {
        Some(a) if a.trim().is_empty() => Err("`attr` must not be empty".to_owned()),
        _ => Ok(()),
    }
}

pub(crate) fn check_bands(bands: &[f64]) -> Result<(), String> {
    if bands.is_empty() {
        return Err("`bands` must not be empty".to_owned());
    }
    if bands.iter().any(|b| !b.is_finite()) {
        return Err("`bands` must be finite numbers".to_owned());
    }
    if bands.windows(2).any(|w| w[0] >= w[1]) {
        return Err("`bands` must be strictly ascending".to_owned());
    }
    Ok(())
}

/// A strftime format chrono understands.
pub(crate) fn check_format(format: &str) -> Result<(), String> {
    if format.is_empty() || StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(format!("invalid time format `{format}`"));
    }
    Ok(())
}

/// Whether a spec-written value parses as `kind` (the message says why not).
pub(crate) fn check_typed(kind: AttrType, value: &str) -> Result<(), String> {
    super::rules::parse_typed(kind, value)
        .map(|_| ())
        .map_err(|()| format!("is not a valid {}", kind.as_str()))
}
