//! The Offer document as campaign managers write it (DESIGN.md §3). These doc comments
//! are the reference for each field.

use persona_event::Channel;
use persona_event::spec::Metadata;
use serde::{Deserialize, Serialize};

/// An `Offer` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OfferDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Always `Offer`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: OfferSpec,
}

/// What to offer, to whom, when, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OfferSpec {
    /// Human title, also sent as the subject of an email.
    pub title: String,
    /// Higher wins when several offers match one event; ties go by offer name.
    #[serde(default)]
    pub priority: i64,
    /// Which events make the actor evaluate this offer.
    pub trigger: TriggerSpec,
    /// The condition, an expression over `event.*`, `features.*`, `profile.*` and
    /// `prefs.*`; always true when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Channels in order of preference; the first the customer can be reached on and
    /// has not opted out of wins.
    pub channels: Vec<Channel>,
    /// At least one; chosen deterministically per (token, offer) by weight among those
    /// whose own `when` passes.
    pub variants: Vec<VariantSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,
    /// Chaining: only after the customer responded so to another offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<AfterSpec>,
    /// Dates (in the FeatureSet's time zone) between which the offer can match;
    /// `until` is inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<ValidSpec>,
    /// The topic a customer can opt out of (`prefs.opt_out_topics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Stops the offer without deleting it: a paused offer never matches.
    #[serde(default)]
    pub paused: bool,
    /// A holdout, e.g. `5%`: this share of customers (fixed per customer and offer)
    /// is a control group. Their matches are recorded but not delivered, so `persona
    /// offer report` can compare response rates of treated and control customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// A number expression; among the matching offers of the highest priority, the
    /// one with the largest value wins (null ranks last), then the name decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `{on: [transaction, card_swipe]}`, or `{schedule: "0 9 * * MON"}` for a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TriggerSpec {
    /// Event types that trigger an evaluation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<String>,
    /// A cron schedule (minute hour day-of-month month day-of-week, in the
    /// FeatureSet's time zone): at each of its times the offer is evaluated for every
    /// customer of the shard, with no triggering event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// One version of the offer's message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VariantSpec {
    /// Names the variant in matches and reports.
    pub name: String,
    /// Relative weight; default 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// The text the channel sends.
    pub message: String,
    /// An extra condition for this variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

fn one() -> u32 {
    1
}

/// How often the offer may match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsSpec {
    /// `"K per P"`: at most K matches of this offer per customer in any trailing
    /// period P (e.g. `1 per 30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_customer: Option<String>,
    /// Blocks the offer for this long after a negative response to it (e.g. `60d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_negative: Option<String>,
    /// Matches of this offer in total, over all customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
}

/// Chaining: the customer's response to another offer this one waits for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AfterSpec {
    /// The name of the earlier offer.
    pub offer: String,
    /// delivered, opened, positive or negative.
    pub response: String,
    /// How recent the response must be, e.g. `14d`.
    pub within: String,
}

/// The dates between which the offer can match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ValidSpec {
    /// `YYYY-MM-DD` or an RFC 3339 instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `YYYY-MM-DD` (the whole day counts) or an RFC 3339 instant; inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}
