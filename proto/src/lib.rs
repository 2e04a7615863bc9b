//! persona's gRPC API, package `persona.v1` (proto/persona/v1/persona.proto for the
//! cloud zone, trusted.proto for the trusted zone's own services): the
//! generated tonic client and server, the file descriptor set for reflection, and
//! conversions between the wire messages and persona's own types.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use persona_event::{EventId, Token};

pub mod tls;
pub mod trace;

/// An error with its causes, on one line (they name files, statuses and codes,
/// never values).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The generated messages, client and server of `persona.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("persona.v1");
}

/// The encoded file descriptor set of `persona.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("persona_v1_descriptor");

pub use v1::gateway_client::GatewayClient;
pub use v1::gateway_server::{Gateway, GatewayServer};
pub use v1::persona_client::PersonaClient;
pub use v1::persona_server::{Persona, PersonaServer};
pub use v1::sealed_vault_client::SealedVaultClient;
pub use v1::sealed_vault_server::{SealedVault, SealedVaultServer};
pub use v1::shard_control_client::ShardControlClient;
pub use v1::shard_control_server::{ShardControl, ShardControlServer};

/// A wire message that does not make a persona value: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct WireError {
    pub field: String,
    pub reason: String,
}

impl WireError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        WireError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn instant(field: &str, micros: i64) -> Result<DateTime<Utc>, WireError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| WireError::new(field, "instant out of range"))
}

impl From<&persona_event::Value> for v1::Value {
    fn from(value: &persona_event::Value) -> Self {
        use persona_event::Value as V;
        use v1::value::Kind;
        let kind = match value {
            V::Null => Kind::Null(true),
            V::Bool(b) => Kind::Bool(*b),
            V::Int(i) => Kind::Int(*i),
            V::Float(f) => Kind::Float(*f),
            V::Str(s) => Kind::Str(s.clone()),
            V::Time(t) => Kind::TimeMicros(t.timestamp_micros()),
            V::Duration(d) => Kind::DurationMicros(d.num_microseconds().unwrap_or(i64::MAX)),
            V::List(items) => Kind::List(v1::ValueList {
                items: items.iter().map(v1::Value::from).collect(),
            }),
            V::Map(m) => Kind::Map(v1::ValueMap {
                entries: to_wire_map(m),
            }),
        };
        v1::Value { kind: Some(kind) }
    }
}

/// A map of persona values on the wire.
pub fn to_wire_map(m: &BTreeMap<String, persona_event::Value>) -> HashMap<String, v1::Value> {
    m.iter().map(|(k, v)| (k.clone(), v1::Value::from(v))).collect()
}

/// A wire value as a persona value; `field` names it in an error.
pub fn value(field: &str, v: v1::Value) -> Result<persona_event::Value, WireError> {
    use persona_event::Value as V;
    use v1::value::Kind;
    Ok(match v.kind {
        None | Some(Kind::Null(_)) => V::Null,
        Some(Kind::Bool(b)) => V::Bool(b),
        Some(Kind::Int(i)) => V::Int(i),
        Some(Kind::Float(f)) => V::Float(f),
        Some(Kind::Str(s)) => V::Str(s),
        Some(Kind::TimeMicros(t)) => V::Time(instant(field, t)?),
        Some(Kind::DurationMicros(d)) => V::Duration(TimeDelta::microseconds(d)),
        Some(Kind::List(l)) => V::List(
            l.items
                .into_iter()
                .enumerate()
                .map(|(i, item)| value(&format!("{field}[{i}]"), item))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::Map(m)) => V::Map(from_wire_map(field, m.entries)?),
    })
}

/// A wire map as persona values; `field` names it in an error.
pub fn from_wire_map(
    field: &str,
    m: HashMap<String, v1::Value>,
) -> Result<BTreeMap<String, persona_event::Value>, WireError> {
    m.into_iter()
        .map(|(k, v)| {
            let v = value(&format!("{field}.{k}"), v)?;
            Ok((k, v))
        })
        .collect()
}

impl From<&persona_event::Event> for v1::Event {
    fn from(e: &persona_event::Event) -> Self {
        v1::Event {
            id: e.id.to_string(),
            token: e.token.to_string(),
            r#type: e.kind.clone(),
            ts_micros: micros(e.ts),
            attrs: to_wire_map(&e.attrs),
        }
    }
}

/// A token from the wire; `field` names it in an error.
pub fn token(field: &str, s: &str) -> Result<Token, WireError> {
    Token::parse(s).map_err(|e| WireError::new(field, e.to_string()))
}

impl TryFrom<v1::Event> for persona_event::Event {
    type Error = WireError;
    fn try_from(e: v1::Event) -> Result<Self, WireError> {
        if e.r#type.is_empty() {
            return Err(WireError::new("event.type", "empty"));
        }
        Ok(persona_event::Event {
            id: EventId::parse(&e.id).map_err(|err| WireError::new("event.id", err.to_string()))?,
            token: token("event.token", &e.token)?,
            kind: e.r#type,
            ts: instant("event.ts_micros", e.ts_micros)?,
            attrs: from_wire_map("event.attrs", e.attrs)?,
        })
    }
}

impl From<&persona_event::Match> for v1::Match {
    fn from(m: &persona_event::Match) -> Self {
        v1::Match {
            match_id: m.match_id.to_string(),
            token: m.token.to_string(),
            offer: m.offer.clone(),
            variant: m.variant.clone(),
            channel: m.channel.as_str().to_owned(),
            ts_micros: micros(m.ts),
            control: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persona_event::Value;

    #[test]
    fn events_round_trip_through_the_wire() {
        let mut attrs = BTreeMap::new();
        attrs.insert("amount".to_owned(), Value::Float(1500.5));
        attrs.insert("n".to_owned(), Value::Int(-3));
        attrs.insert("mall".to_owned(), Value::from("Lulu Mall"));
        attrs.insert("gone".to_owned(), Value::Null);
        attrs.insert("at".to_owned(), Value::Time(DateTime::UNIX_EPOCH + TimeDelta::days(3)));
        attrs.insert("wait".to_owned(), Value::Duration(TimeDelta::hours(2)));
        let inner: BTreeMap<String, Value> = [("k".to_owned(), Value::List(vec![Value::Bool(true)]))].into();
        attrs.insert("nested".to_owned(), Value::Map(inner));
        let event = persona_event::Event {
            id: EventId::from_bytes([7; 16]),
            token: Token::from_bytes([9; 16]),
            kind: "card_swipe".into(),
            ts: DateTime::UNIX_EPOCH + TimeDelta::microseconds(1_700_000_000_123_456),
            attrs,
        };
        let wire = v1::Event::from(&event);
        assert_eq!(persona_event::Event::try_from(wire).unwrap(), event);
    }

    #[test]
    fn a_bad_wire_event_names_its_field() {
        let wire = v1::Event {
            id: "ev_aaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            token: "not-a-token".into(),
            r#type: "x".into(),
            ts_micros: 0,
            attrs: HashMap::new(),
        };
        let err = persona_event::Event::try_from(wire).unwrap_err();
        assert_eq!(err.field, "event.token");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}
