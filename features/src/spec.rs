//! The FeatureSet document as users write it (DESIGN.md §3). These doc comments are
//! the reference for each field.

use persona_event::spec::Metadata;
use serde::{Deserialize, Serialize};

/// A `FeatureSet` document: `kind: FeatureSet`, metadata and spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FeatureSetDocument {
    /// `persona.dev/v1alpha1`; may be left out in plain files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Always `FeatureSet`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: FeatureSetSpec,
}

/// The behavioral model: features computed per customer from her events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FeatureSetSpec {
    /// IANA time zone of calendar days, months, clock hours and `day_of_month`;
    /// default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Aggregations over events.
    #[serde(default)]
    pub features: Vec<FeatureSpec>,
    /// Expressions over other features.
    #[serde(default)]
    pub derived: Vec<DerivedSpec>,
}

/// One aggregated feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FeatureSpec {
    /// Name used as `features.<name>`; letters, digits and `_`.
    pub name: String,
    /// The event type or types this feature reads.
    pub on: OneOrMany,
    /// Only events for which this expression over `event.*` is true count.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The value aggregated, an expression over `event.*`. Needed by every
    /// aggregation except count, distinct_days and distinct_months (which default to
    /// the event's time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// count, sum, avg, min, max, first, last, distinct_count, distinct_days,
    /// distinct_months, or decay (a decayed sum; needs `decay`).
    pub agg: String,
    /// `Nd` (calendar days) or `Nh` (clock hours) on event time; lifetime when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Half-life of exponential decay, e.g. `14d`: with `agg: decay` or `sum` each
    /// value weighs 2^(-age/half-life); with `count` each event does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<String>,
    /// Makes a keyed family, one value per key: `features.<name>["key"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Bound on the number of keys of a family per customer; default 256. Events
    /// for further keys are not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u32>,
}

/// A feature computed from other features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DerivedSpec {
    /// Name used as `features.<name>`; letters, digits and `_`.
    pub name: String,
    /// An expression over `features.*`.
    pub expr: String,
}

/// `on: transaction` or `on: [transaction, card_swipe]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A string or a list is not a structural schema in Kubernetes' sense (no `type` may
/// vary), so the CRD keeps the value as it is and the compiler checks it.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for OneOrMany {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OneOrMany".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An event type, or a list of event types.",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}
