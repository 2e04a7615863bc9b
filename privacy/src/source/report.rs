//! The privacy report of a Source (`persona privacy report`): field by field, what
//! leaves the trusted zone and in what form, what can be turned back into what it
//! was and by whom, read off the compiled rules, so it says what the scrubber does.
//! It reads no data: fields that no rule names are known only as "any other field".

use std::collections::BTreeMap;
use std::fmt;

use persona_event::ContactKind;
use serde::Serialize;

use super::rules::band_labels;
use super::spec::{AttrType, FieldRule, Format, Generalize, Keep, TimeSpec};
use super::time::{precision, zone};
use super::{Rule, Source, TimeRule};

/// What one Source lets out of the trusted zone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceReport {
    pub source: String,
    /// The event type its records become.
    pub event: String,
    /// The file format (none for a stream source).
    pub format: Option<Format>,
    /// The file pattern under the sources directory, or the Redis stream.
    pub files: String,
    /// Every field the spec names (a rule, `id` or `time`), by name.
    pub fields: Vec<FieldReport>,
    pub time: TimeReport,
    pub event_id: EventIdReport,
    /// What becomes of a field the spec does not name: always `dropped`.
    pub other_fields: &'static str,
}

/// One named field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldReport {
    pub field: String,
    pub rule: RuleName,
    pub leaves: Leaves,
    /// How much of the value the cloud zone can read as it was.
    pub in_clear: Clear,
    /// Who can get the value back from what left, and how; `None`: no one.
    pub reversible: Option<Reversal>,
    /// Other uses of the raw value inside the trusted zone.
    pub read_for: Vec<Use>,
}

/// A field's rule by name; `none` for a field named only by `id` or `time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleName {
    Key,
    Drop,
    Generalize,
    Mask,
    Vault,
    Attr,
    None,
}

/// What of a field reaches the cloud zone.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "as", rename_all = "snake_case")]
pub enum Leaves {
    Nothing,
    /// The customer's token instead of her key.
    Token,
    /// Only the kind of contact held (`contacts` of profile events); the value is
    /// sealed in the vault.
    ContactKind {
        kind: ContactKind,
    },
    /// A band label instead of the value.
    Band {
        attr: String,
        of: Generalize,
        bands: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        date_format: Option<String>,
    },
    /// The value with all but a few characters replaced by `X`.
    Masked {
        attr: String,
        keep: End,
        chars: usize,
    },
    /// The value itself, typed, perhaps translated through a code table.
    Value {
        attr: String,
        #[serde(rename = "type")]
        kind: AttrType,
        #[serde(skip_serializing_if = "Option::is_none")]
        translated: Option<Translation>,
        /// Stands in for a missing value (and an unmapped code, with a table).
        #[serde(skip_serializing_if = "Option::is_none")]
        default: Option<String>,
    },
}

/// Which end of a masked value is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    First,
    Last,
}

/// A code table an attribute goes through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Translation {
    /// `map` (inline) or the name of a `lookups` table.
    pub table: String,
    pub codes: usize,
}

/// How much of the raw value the cloud zone reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clear {
    None,
    Part,
    Whole,
}

/// A way back from what left to what was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reversal {
    pub to: &'static str,
    pub by: &'static str,
    pub how: &'static str,
}

/// A use of a field's raw value other than its rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Use {
    EventTime,
    EventId,
}

/// Where the event time comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum TimeReport {
    Field {
        field: String,
        /// The strftime format; absent: RFC 3339.
        #[serde(skip_serializing_if = "Option::is_none")]
        format: Option<String>,
        /// The zone local times are read in, or what stands for one (`its own
        /// offset`, `epoch seconds`).
        zone: String,
        precision: &'static str,
    },
    Fixed {
        value: String,
    },
}

/// What the event id is a keyed hash of.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventIdReport {
    /// The id fields; empty when the whole raw record (with its file and line) is.
    pub from: Vec<String>,
    pub form: &'static str,
}

const TOKEN_BACK: Reversal = Reversal {
    to: "customer key",
    by: "the holder of the vault and KMS Decrypt on its vault key",
    how: "persona vault resolve (audited); no one once the customer is forgotten",
};

const CONTACT_BACK: Reversal = Reversal {
    to: "contact value",
    by: "the de-tokenizer (the vault and KMS Decrypt on its vault key)",
    how: "just in time, to deliver a match on the channel that needs it; no one once the customer is forgotten",
};

const NAME_BACK: Reversal = Reversal {
    to: "name",
    by: "the de-tokenizer (the vault and KMS Decrypt on its vault key)",
    how: "just in time, to fill the {name} and {first_name} placeholders of a message it delivers; no one once \
          the customer is forgotten",
};

const EVENT_ID_FORM: &str = "ev_ + 128 bits of HMAC-SHA256 under the event-id key";

impl Source {
    /// The privacy report of this source (see the module docs).
    pub fn privacy_report(&self) -> SourceReport {
        let body = &self.spec.spec;
        let time_field = match &self.time {
            TimeRule::Field { field, .. } => Some(field.as_str()),
            TimeRule::Fixed(_) => None,
        };
        let ids = self.id_fields.as_deref().unwrap_or_default();
        let mut named: BTreeMap<&str, Option<&Rule>> = self.rules.iter().map(|(f, r)| (f.as_str(), Some(r))).collect();
        for f in ids.iter().map(String::as_str).chain(time_field) {
            named.entry(f).or_insert(None);
        }
        let fields = named
            .into_iter()
            .map(|(field, rule)| {
                let mut read_for = Vec::new();
                if time_field == Some(field) {
                    read_for.push(Use::EventTime);
                }
                // Without `id`, the whole raw record is hashed: every field is.
                if self.id_fields.is_none() || ids.iter().any(|i| i == field) {
                    read_for.push(Use::EventId);
                }
                self.field_report(field, rule, read_for)
            })
            .collect();
        SourceReport {
            source: self.name().to_owned(),
            event: self.event().to_owned(),
            format: body.format,
            files: match self.stream() {
                Some(stream) => format!("Redis stream `{stream}`"),
                None => self.pattern(),
            },
            fields,
            time: match &self.time {
                TimeRule::Field { field, parse } => {
                    let format = match &body.time {
                        TimeSpec::Field { format, .. } => format.clone(),
                        TimeSpec::Value(_) => None,
                    };
                    TimeReport::Field {
                        field: field.clone(),
                        precision: precision(format.as_deref()),
                        format,
                        zone: zone(parse, self.tz.name()),
                    }
                }
                TimeRule::Fixed(ts) => TimeReport::Fixed {
                    value: persona_event::time::format_ts(ts),
                },
            },
            event_id: EventIdReport {
                from: ids.to_vec(),
                form: EVENT_ID_FORM,
            },
            other_fields: "dropped",
        }
    }

    fn field_report(&self, field: &str, rule: Option<&Rule>, read_for: Vec<Use>) -> FieldReport {
        let report = |rule, leaves, in_clear, reversible| FieldReport {
            field: field.to_owned(),
            rule,
            leaves,
            in_clear,
            reversible,
            read_for: read_for.clone(),
        };
        let Some(rule) = rule else {
            return report(RuleName::None, Leaves::Nothing, Clear::None, None);
        };
        match rule {
            Rule::Key => report(RuleName::Key, Leaves::Token, Clear::None, Some(TOKEN_BACK)),
            Rule::Drop => report(RuleName::Drop, Leaves::Nothing, Clear::None, None),
            Rule::Vault(kind) => report(
                RuleName::Vault,
                Leaves::ContactKind { kind: *kind },
                Clear::None,
                Some(if *kind == ContactKind::Name {
                    NAME_BACK
                } else {
                    CONTACT_BACK
                }),
            ),
            Rule::Generalize {
                attr,
                kind,
                bands,
                format,
            } => report(
                RuleName::Generalize,
                Leaves::Band {
                    attr: attr.clone(),
                    of: *kind,
                    bands: band_labels(bands),
                    date_format: (*kind == Generalize::Age).then(|| format.clone()),
                },
                Clear::None,
                None,
            ),
            Rule::Mask { attr, keep } => {
                let (keep, chars) = match *keep {
                    Keep::First(n) => (End::First, n),
                    Keep::Last(n) => (End::Last, n),
                };
                let clear = if chars == 0 { Clear::None } else { Clear::Part };
                report(
                    RuleName::Mask,
                    Leaves::Masked {
                        attr: attr.clone(),
                        keep,
                        chars,
                    },
                    clear,
                    None,
                )
            }
            Rule::Attr { attr, kind, .. } => {
                let (translated, default) = match self.spec.spec.fields.get(field) {
                    Some(FieldRule::Attr(a)) => (
                        match (&a.map, &a.lookup) {
                            (Some(map), _) => Some(Translation {
                                table: "map".to_owned(),
                                codes: map.len(),
                            }),
                            (None, Some(name)) => Some(Translation {
                                table: name.clone(),
                                codes: self.spec.spec.lookups.get(name).map_or(0, BTreeMap::len),
                            }),
                            (None, None) => None,
                        },
                        a.default.clone(),
                    ),
                    _ => (None, None),
                };
                report(
                    RuleName::Attr,
                    Leaves::Value {
                        attr: attr.clone(),
                        kind: *kind,
                        translated,
                        default,
                    },
                    Clear::Whole,
                    None,
                )
            }
        }
    }
}

impl fmt::Display for SourceReport {
    /// The text form: a header, one line per named field, then the event time, the
    /// event id and the fields the spec does not name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = match self.format {
            Some(Format::Csv) => " (csv)",
            Some(Format::Jsonl) => " (jsonl)",
            None => "",
        };
        writeln!(
            f,
            "source {}: {}{format} -> {} events",
            self.source, self.files, self.event
        )?;
        for field in &self.fields {
            writeln!(f, "  {field}")?;
        }
        match &self.time {
            TimeReport::Field {
                field,
                format,
                zone,
                precision,
            } => {
                let format = format.as_deref().unwrap_or("RFC 3339");
                writeln!(
                    f,
                    "  event time: ts from {field} ({format}, {zone}), {precision}, in UTC, in clear"
                )?;
            }
            TimeReport::Fixed { value } => writeln!(f, "  event time: ts fixed at {value} for every record")?,
        }
        let of = if self.event_id.from.is_empty() {
            "the file, the line and the whole raw record".to_owned()
        } else {
            self.event_id.from.join(", ")
        };
        writeln!(
            f,
            "  event id: {} of the source and {of}; one-way, the same for a re-read record",
            self.event_id.form
        )?;
        writeln!(
            f,
            "  any other field: {} (deny by default; counted, its name warned about once per file)",
            self.other_fields
        )
    }
}

impl fmt::Display for FieldReport {
    /// `FIELD: RULE -> what leaves; who can reverse it; other uses`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = match self.rule {
            RuleName::Key => "key",
            RuleName::Drop => "drop",
            RuleName::Generalize => "generalize",
            RuleName::Mask => "mask",
            RuleName::Vault => "vault",
            RuleName::Attr => "attr",
            RuleName::None => "no rule",
        };
        write!(f, "{}: {rule} -> ", self.field)?;
        match &self.leaves {
            Leaves::Nothing => write!(f, "nothing leaves")?,
            Leaves::Token => write!(f, "token (random 128 bits, one per customer)")?,
            Leaves::ContactKind { kind } => write!(
                f,
                "only that {} {kind} contact is held (profile contacts); the value is sealed in the vault (AES-256-GCM)",
                if *kind == ContactKind::Email { "an" } else { "a" }
            )?,
            Leaves::Band {
                attr,
                of,
                bands,
                date_format,
            } => {
                match (of, date_format) {
                    (Generalize::Age, Some(format)) => {
                        write!(f, "{attr}: age in years at the event time (dates as {format})")?
                    }
                    _ => write!(f, "{attr}: the number")?,
                }
                write!(f, ", one of {}; not reversible", bands.join(", "))?;
            }
            Leaves::Masked { attr, keep, chars } => {
                let end = match keep {
                    End::First => "first",
                    End::Last => "last",
                };
                write!(
                    f,
                    "{attr}: the {end} {chars} characters, the others replaced by X; not reversible"
                )?;
                if *chars > 0 {
                    write!(f, " (the {chars} kept characters leave in clear)")?;
                }
            }
            Leaves::Value {
                attr,
                kind,
                translated,
                default,
            } => {
                write!(f, "{attr} ({}), in clear", kind.as_str())?;
                match (translated, default) {
                    (Some(t), d) => {
                        let table = if t.table == "map" {
                            "its map".to_owned()
                        } else {
                            format!("lookup {}", t.table)
                        };
                        let other = match d {
                            Some(d) => format!("other codes and missing values: {d}"),
                            None => "other codes as they are".to_owned(),
                        };
                        write!(f, ", translated by {table} ({} codes; {other})", t.codes)?;
                    }
                    (None, Some(d)) => write!(f, " (missing values: {d})")?,
                    (None, None) => {}
                }
            }
        }
        if let Some(back) = &self.reversible {
            write!(f, "; reversible to the {} by {}: {}", back.to, back.by, back.how)?;
        }
        let uses: Vec<&str> = self
            .read_for
            .iter()
            .map(|u| match u {
                Use::EventTime => "the event time",
                Use::EventId => "the event id",
            })
            .collect();
        if !uses.is_empty() {
            write!(f, "; read for {}", uses.join(" and "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::TXN;
    use super::*;

    fn lines(yaml: &str) -> Vec<String> {
        Source::from_yaml(yaml)
            .unwrap()
            .privacy_report()
            .to_string()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_design_example_reads_field_by_field() {
        assert_eq!(
            lines(TXN),
            [
                "source core-banking-txn: txn-*.csv (csv) -> transaction events",
                "  ACCT_NO: no rule -> nothing leaves; read for the event id",
                "  CUST_ID: key -> token (random 128 bits, one per customer); reversible to the customer key by the \
                 holder of the vault and KMS Decrypt on its vault key: persona vault resolve (audited); no one once \
                 the customer is forgotten",
                "  CUST_NAME: drop -> nothing leaves",
                "  DOB: generalize -> age_band: age in years at the event time (dates as %Y-%m-%d), one of <18, \
                 18-25, 25-35, 35-45, 45-60, 60+; not reversible",
                "  DR_CR: attr -> direction (string), in clear, translated by its map (2 codes; other codes as they are)",
                "  EMAIL: vault -> only that an email contact is held (profile contacts); the value is sealed in the \
                 vault (AES-256-GCM); reversible to the contact value by the de-tokenizer (the vault and KMS Decrypt \
                 on its vault key): just in time, to deliver a match on the channel that needs it; no one once the \
                 customer is forgotten",
                "  MCC: attr -> category (string), in clear, translated by lookup mcc (3 codes; other codes as they are)",
                "  MOBILE: vault -> only that a phone contact is held (profile contacts); the value is sealed in the \
                 vault (AES-256-GCM); reversible to the contact value by the de-tokenizer (the vault and KMS Decrypt \
                 on its vault key): just in time, to deliver a match on the channel that needs it; no one once the \
                 customer is forgotten",
                "  PAN: mask -> pan: the last 4 characters, the others replaced by X; not reversible (the 4 kept \
                 characters leave in clear)",
                "  TXN_AMT: attr -> amount (decimal), in clear",
                "  TXN_DATE: no rule -> nothing leaves; read for the event time",
                "  TXN_REF: no rule -> nothing leaves; read for the event id",
                "  event time: ts from TXN_DATE (%d/%m/%Y %H:%M, Asia/Kolkata), to the minute, in UTC, in clear",
                "  event id: ev_ + 128 bits of HMAC-SHA256 under the event-id key of the source and ACCT_NO, \
                 TXN_REF; one-way, the same for a re-read record",
                "  any other field: dropped (deny by default; counted, its name warned about once per file)",
            ]
        );
    }

    #[test]
    fn fixed_times_whole_record_ids_defaults_and_number_bands() {
        let yaml = "kind: Source\nmetadata: {name: s}\nspec:\n  format: jsonl\n  event: profile\n  \
                    time: {value: \"2026-01-01T00:00:00Z\"}\n  fields:\n    ID: key\n    \
                    SCORE: {generalize: number, bands: [300, 650.5]}\n    \
                    TIER: {attr: tier, type: int, default: \"0\"}\n    \
                    CARD: {mask: {keepFirst: 0}, attr: card}\n";
        assert_eq!(
            lines(yaml)[1..],
            [
                "  CARD: mask -> card: the first 0 characters, the others replaced by X; not reversible; read \
                 for the event id",
                "  ID: key -> token (random 128 bits, one per customer); reversible to the customer key by the \
                 holder of the vault and KMS Decrypt on its vault key: persona vault resolve (audited); no one once \
                 the customer is forgotten; read for the event id",
                "  SCORE: generalize -> score: the number, one of <300, 300-650.5, 650.5+; not reversible; read for \
                 the event id",
                "  TIER: attr -> tier (int), in clear (missing values: 0); read for the event id",
                "  event time: ts fixed at 2026-01-01T00:00:00Z for every record",
                "  event id: ev_ + 128 bits of HMAC-SHA256 under the event-id key of the source and the file, the \
                 line and the whole raw record; one-way, the same for a re-read record",
                "  any other field: dropped (deny by default; counted, its name warned about once per file)",
            ]
        );
    }

    #[test]
    fn the_json_form_names_every_decision() {
        let report = Source::from_yaml(TXN).unwrap().privacy_report();
        let json = serde_json::to_value(&report).unwrap();
        let field = |name: &str| {
            json["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["field"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(json["format"], "csv");
        assert_eq!(
            field("DOB")["leaves"],
            serde_json::json!({"as": "band", "attr": "age_band", "of": "age",
                "bands": ["<18", "18-25", "25-35", "35-45", "45-60", "60+"], "date_format": "%Y-%m-%d"})
        );
        assert_eq!(
            field("PAN")["leaves"],
            serde_json::json!({"as": "masked", "attr": "pan", "keep": "last", "chars": 4})
        );
        assert_eq!(field("PAN")["in_clear"], "part");
        assert_eq!(
            field("EMAIL")["leaves"],
            serde_json::json!({"as": "contact_kind", "kind": "email"})
        );
        assert_eq!(field("EMAIL")["reversible"]["to"], "contact value");
        assert_eq!(field("CUST_ID")["reversible"]["to"], "customer key");
        assert_eq!(field("TXN_REF")["rule"], "none");
        assert_eq!(field("TXN_REF")["read_for"], serde_json::json!(["event_id"]));
        assert_eq!(
            field("MCC")["leaves"]["translated"],
            serde_json::json!({"table": "mcc", "codes": 3})
        );
        assert_eq!(json["time"]["precision"], "to the minute");
        assert_eq!(json["other_fields"], "dropped");
    }
}
