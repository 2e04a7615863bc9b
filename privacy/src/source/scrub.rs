//! Scrubbing one raw record into what may leave the trusted zone: deny by default,
//! every field through its rule, the record refused whole when it cannot be trusted.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use persona_event::{ContactKind, Value};
use serde::Serialize;
use zeroize::Zeroizing;

use super::read::RawRecord;
use super::rules::{age, band_label, mask, parse_typed};
use super::spec::Generalize;
use super::{Refusal, Rule, Source, TimeRule};
use crate::pii::{CustomerKey, Pii};

/// How many fields each rule handled, over one record or many.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FieldCounts {
    pub dropped: u64,
    pub generalized: u64,
    pub masked: u64,
    pub vaulted: u64,
    /// Fields no rule names (dropped by default).
    pub unnamed: u64,
}

impl std::ops::AddAssign for FieldCounts {
    fn add_assign(&mut self, o: Self) {
        self.dropped += o.dropped;
        self.generalized += o.generalized;
        self.masked += o.masked;
        self.vaulted += o.vaulted;
        self.unnamed += o.unnamed;
    }
}

/// A record after scrubbing: the key still to be tokenized, the time, the attributes
/// that may leave the zone, and the contact data for the vault.
pub struct Scrubbed {
    /// `None` for a `context` source's record, which concerns no one customer.
    pub key: Option<CustomerKey>,
    pub ts: DateTime<Utc>,
    pub attrs: BTreeMap<String, Value>,
    pub vaulted: Vec<(ContactKind, Pii<String>)>,
    /// What the event id is a keyed hash of: the id fields' values, or the whole raw
    /// record with its file and line when the source names no id. Never sent.
    pub id_material: Zeroizing<Vec<u8>>,
    pub counts: FieldCounts,
}

impl fmt::Debug for Scrubbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubbed")
            .field("key", &self.key)
            .field("ts", &self.ts)
            .field("attrs", &self.attrs)
            .field("vaulted", &self.vaulted)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// Appends a length-prefixed part, so that concatenations cannot collide.
fn push(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u64).to_be_bytes());
    out.extend_from_slice(part);
}

fn nonempty(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.trim().is_empty())
}

impl Source {
    /// Scrubs one record. The refusal names the field and why, never its value.
    pub fn scrub(&self, rec: &RawRecord) -> Result<Scrubbed, Refusal> {
        let ts = match &self.time {
            TimeRule::Fixed(ts) => *ts,
            TimeRule::Field { field, parse } => {
                let text =
                    nonempty(rec.get(field)).ok_or_else(|| Refusal::new(Some(field), "time is missing".to_owned()))?;
                parse
                    .parse(text, self.tz)
                    .map_err(|why| Refusal::new(Some(field), why.to_owned()))?
            }
        };
        let mut key = None;
        let mut attrs = BTreeMap::new();
        let mut vaulted = Vec::new();
        let mut counts = FieldCounts::default();
        for (name, value) in rec.fields() {
            let Some(rule) = self.rules.get(&**name) else {
                // The time column becomes `ts`; id-only columns are hashed, then dropped.
                if !self.is_time_field(name) {
                    if self.id_only.contains(&**name) {
                        counts.dropped += 1;
                    } else {
                        counts.unnamed += 1;
                    }
                }
                continue;
            };
            let value = nonempty(value.as_deref());
            let refuse = |reason: &str| Refusal::new(Some(name), reason.to_owned());
            match rule {
                Rule::Key => {
                    if key.is_none() {
                        key = value.map(|v| CustomerKey::new(v.trim()));
                    }
                }
                Rule::Drop => counts.dropped += 1,
                Rule::Generalize {
                    attr,
                    kind,
                    bands,
                    format,
                } => {
                    let Some(v) = value else { continue };
                    let n = match kind {
                        Generalize::Number => v.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
                        Generalize::Age => {
                            let born = NaiveDate::parse_from_str(v.trim(), format)
                                .map_err(|_| refuse("date does not match the format"))?;
                            let on = ts.with_timezone(&self.tz).date_naive();
                            let years = age(born, on).ok_or_else(|| refuse("date is after the event time"))?;
                            Some(f64::from(years))
                        }
                    }
                    .ok_or_else(|| refuse("value is not a number"))?;
                    attrs.insert(attr.clone(), Value::Str(band_label(bands, n)));
                    counts.generalized += 1;
                }
                Rule::Mask { attr, keep } => {
                    let Some(v) = value else { continue };
                    attrs.insert(attr.clone(), Value::Str(mask(v, *keep)));
                    counts.masked += 1;
                }
                Rule::Vault(kind) => {
                    let Some(v) = value else { continue };
                    vaulted.push((*kind, Pii::new(v.trim().to_owned())));
                    counts.vaulted += 1;
                }
                Rule::Attr {
                    attr,
                    kind,
                    table,
                    default,
                } => {
                    let typed = match (value, table) {
                        (None, _) => default.clone(),
                        (Some(code), Some(table)) => match table.get(code.trim()) {
                            Some(v) => Some(v.clone()),
                            None if default.is_some() => default.clone(),
                            None => Some(parse_typed(*kind, code).map_err(|()| not_typed(name, *kind))?),
                        },
                        (Some(v), None) => Some(parse_typed(*kind, v).map_err(|()| not_typed(name, *kind))?),
                    };
                    if let Some(typed) = typed {
                        attrs.insert(attr.clone(), typed);
                    }
                }
            }
        }
        let key = match &self.key_field {
            Some(field) => Some(key.ok_or_else(|| Refusal::new(Some(field), "key is missing or empty".to_owned()))?),
            None => None,
        };
        let id_material = self.id_material(rec)?;
        Ok(Scrubbed {
            key,
            ts,
            attrs,
            vaulted,
            id_material,
            counts,
        })
    }

    /// Names of the record's fields that no rule names (they are dropped).
    pub fn unnamed_columns<'a>(&'a self, rec: &'a RawRecord) -> impl Iterator<Item = &'a str> + 'a {
        rec.names()
            .filter(|n| !self.rules.contains_key(*n) && !self.id_only.contains(*n) && !self.is_time_field(n))
    }

    fn is_time_field(&self, name: &str) -> bool {
        matches!(&self.time, TimeRule::Field { field, .. } if field == name)
    }

    fn id_material(&self, rec: &RawRecord) -> Result<Zeroizing<Vec<u8>>, Refusal> {
        let mut out = Zeroizing::new(Vec::new());
        match &self.id_fields {
            Some(fields) => {
                for field in fields {
                    let v = nonempty(rec.get(field))
                        .ok_or_else(|| Refusal::new(Some(field), "id field is missing or empty".to_owned()))?;
                    push(&mut out, field.as_bytes());
                    push(&mut out, v.trim().as_bytes());
                }
            }
            None => {
                push(&mut out, rec.file().as_bytes());
                push(&mut out, &rec.line().to_be_bytes());
                for (name, value) in rec.fields() {
                    push(&mut out, name.as_bytes());
                    match value {
                        Some(v) => push(&mut out, v.as_bytes()),
                        None => out.push(0xff),
                    }
                }
            }
        }
        Ok(out)
    }
}

fn not_typed(field: &str, kind: super::spec::AttrType) -> Refusal {
    Refusal::new(Some(field), format!("value is not a valid {}", kind.as_str()))
}

#[cfg(test)]
mod tests;
