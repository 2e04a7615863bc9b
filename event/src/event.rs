//! The canonical event (DESIGN.md §2) and the match the cloud zone sends back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Channel, EventId, MatchId, Token, Value};

/// One event, as the cloud zone sees it: a token, a type, a time and non-identifying
/// attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub id: EventId,
    pub token: Token,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "crate::time::rfc3339")]
    pub ts: DateTime<Utc>,
    #[serde(default)]
    pub attrs: BTreeMap<String, Value>,
}

impl Event {
    pub fn attr(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.attrs.get(name).unwrap_or(&NULL)
    }

    /// `event.<name>` by reference when it is an attribute (null when absent); `None`
    /// for the envelope's `ts`, `type` and `id`, which [`Event::field`] builds.
    pub fn attr_field(&self, name: &str) -> Option<&Value> {
        match name {
            "ts" | "type" | "id" => None,
            other => Some(self.attr(other)),
        }
    }

    /// `event.<name>` in an expression: `ts`, `type` and `id` are the envelope's,
    /// any other name an attribute's (null when absent).
    pub fn field(&self, name: &str) -> Value {
        match name {
            "ts" => Value::Time(self.ts),
            "type" => Value::Str(self.kind.clone()),
            "id" => Value::Str(self.id.to_string()),
            other => self.attr(other).clone(),
        }
    }
}

/// A decision of the cloud zone: send `offer` in `variant` on `channel` to the customer
/// behind `token`. The line format of `matches.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub match_id: MatchId,
    pub token: Token,
    pub offer: String,
    pub variant: String,
    pub channel: Channel,
    #[serde(with = "crate::time::rfc3339")]
    pub ts: DateTime<Utc>,
    /// The triggering event; `None` for a scheduled sweep.
    pub event_id: Option<EventId>,
}

/// A match on its way to the de-tokenizer, with the text the channel sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchMessage {
    #[serde(flatten)]
    pub decision: Match,
    pub title: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_round_trips() {
        let line = r#"{"id":"ev_aaaaaaaaaaaaaaaaaaaaaaaaaa","token":"tk_baaaaaaaaaaaaaaaaaaaaaaaaa","type":"transaction","ts":"2026-03-04T10:22:00Z","attrs":{"amount":50000,"category":"salary"}}"#;
        let ev: Event = serde_json::from_str(line).unwrap();
        assert_eq!(ev.kind, "transaction");
        assert_eq!(ev.attr("amount"), &Value::Int(50000));
        assert_eq!(ev.attr("missing"), &Value::Null);
        assert_eq!(serde_json::to_string(&ev).unwrap(), line);
    }
}
