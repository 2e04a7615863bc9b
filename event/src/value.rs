//! Attribute and expression values: what an event carries and what an expression
//! computes. JSON-shaped, plus time and duration, which expressions need.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value. `Null` stands for a missing value everywhere.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Time(DateTime<Utc>),
    Duration(TimeDelta),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The number, for `Int` and `Float`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A timestamp, also read from an RFC 3339 string.
    pub fn as_time(&self) -> Option<DateTime<Utc>> {
        match self {
            Value::Time(t) => Some(*t),
            Value::Str(s) => crate::time::parse_ts(s).ok(),
            _ => None,
        }
    }

    /// The name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Time(_) => "time",
            Value::Duration(_) => "duration",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Ordering between two values of comparable types; `None` when either is null or
    /// the types differ. Numbers compare across `Int` and `Float`.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (a @ (Value::Int(_) | Value::Float(_)), b @ (Value::Int(_) | Value::Float(_))) => {
                a.as_f64()?.partial_cmp(&b.as_f64()?)
            }
            (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Time(a), Value::Time(b)) => Some(a.cmp(b)),
            (Value::Time(a), Value::Str(_)) => Some(a.cmp(&other.as_time()?)),
            (Value::Str(_), Value::Time(b)) => Some(self.as_time()?.cmp(b)),
            (Value::Duration(a), Value::Duration(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Equality in the language's sense: numbers across `Int`/`Float`; null equals
    /// nothing.
    pub fn loose_eq(&self, other: &Value) -> Option<bool> {
        match (self, other) {
            (Value::Null, _) | (_, Value::Null) => None,
            (Value::List(a), Value::List(b)) => Some(a == b),
            (Value::Map(a), Value::Map(b)) => Some(a == b),
            _ => self.compare(other).map(|o| o == Ordering::Equal),
        }
    }

    /// A text form for keys and messages: strings without quotes.
    pub fn to_key(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Time(t) => f.write_str(&crate::time::format_ts(t)),
            Value::Duration(d) => f.write_str(&crate::time::format_duration(d)),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k:?}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Array(a) => Value::List(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => Value::Map(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect()),
        }
    }
}

/// The binary form (snapshots, the bus): tagged, so formats that cannot guess a type
/// from the bytes (postcard) read it back exactly.
#[derive(Serialize, Deserialize)]
enum Tagged {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Microseconds since the Unix epoch.
    Time(i64),
    /// Milliseconds.
    Duration(i64),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            let tagged = match self {
                Value::Null => Tagged::Null,
                Value::Bool(b) => Tagged::Bool(*b),
                Value::Int(i) => Tagged::Int(*i),
                Value::Float(x) => Tagged::Float(*x),
                Value::Str(v) => Tagged::Str(v.clone()),
                Value::Time(t) => Tagged::Time(t.timestamp_micros()),
                Value::Duration(d) => Tagged::Duration(d.num_milliseconds()),
                Value::List(v) => Tagged::List(v.clone()),
                Value::Map(m) => Tagged::Map(m.clone()),
            };
            return tagged.serialize(s);
        }
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(x) if x.is_finite() => s.serialize_f64(*x),
            Value::Float(_) => s.serialize_unit(),
            Value::Str(v) => s.serialize_str(v),
            Value::Time(t) => s.serialize_str(&crate::time::format_ts(t)),
            Value::Duration(d) => s.serialize_str(&crate::time::format_duration(d)),
            Value::List(v) => v.serialize(s),
            Value::Map(m) => m.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return Ok(match Tagged::deserialize(d)? {
                Tagged::Null => Value::Null,
                Tagged::Bool(b) => Value::Bool(b),
                Tagged::Int(i) => Value::Int(i),
                Tagged::Float(x) => Value::Float(x),
                Tagged::Str(v) => Value::Str(v),
                Tagged::Time(us) => DateTime::from_timestamp_micros(us)
                    .map(Value::Time)
                    .ok_or_else(|| serde::de::Error::custom("timestamp out of range"))?,
                Tagged::Duration(ms) => Value::Duration(TimeDelta::milliseconds(ms)),
                Tagged::List(v) => Value::List(v),
                Tagged::Map(m) => Value::Map(m),
            });
        }
        d.deserialize_any(JsonVisitor)
    }
}

/// The human-readable form read straight into a [`Value`], as
/// [`From<serde_json::Value>`] converts it: integers that fit `i64` stay integers,
/// other numbers are decimals; a repeated key keeps its last value.
struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
        Ok(Value::Float(x))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            out.insert(k, v);
        }
        Ok(Value::Map(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_across_int_and_float() {
        assert_eq!(Value::Int(3).compare(&Value::Float(3.5)), Some(Ordering::Less));
        assert_eq!(Value::Int(3).loose_eq(&Value::Float(3.0)), Some(true));
        assert_eq!(Value::Null.loose_eq(&Value::Null), None);
        assert_eq!(Value::from("a").compare(&Value::Int(1)), None);
    }

    #[test]
    fn json_reads_as_through_serde_json_value() {
        for json in [
            r#"{"a":1,"b":-2,"c":1.5,"d":18446744073709551615,"e":null,"f":true,"g":"x\"y"}"#,
            r#"[1,[2,{"k":[]}],{},"s",1e300,-0.0]"#,
            r#"{"dup":1,"dup":2}"#,
            "9223372036854775807",
            "\"tk_\"",
        ] {
            let direct: Value = serde_json::from_str(json).unwrap();
            let via: Value = serde_json::from_str::<serde_json::Value>(json)
                .map(Value::from)
                .unwrap();
            assert_eq!(direct, via, "{json}");
        }
    }

    #[test]
    fn json_form_is_plain() {
        let v = Value::Map(BTreeMap::from([
            ("fuel".to_owned(), Value::Float(1200.0)),
            ("n".to_owned(), Value::Int(2)),
        ]));
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"fuel":1200.0,"n":2}"#);
        let back: Value = serde_json::from_str(r#"{"fuel":1200.0,"n":2}"#).unwrap();
        assert_eq!(back, v);
    }
}
