//! `FeatureSet`, `Offer` and `ContactPolicy` as Kubernetes resources. Their specs are
//! the very types the engine reads from plain files (persona-features,
//! persona-offers), wrapped, so there is one definition of each and its doc comments
//! are what `kubectl explain` prints.

// Each `printcolumn(...)` of kube's derive repeats `type_ = ...`; clippy takes the
// columns for one attribute list.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use persona_features::spec::FeatureSetSpec;
use persona_offers::ContactPolicySpec;
use persona_offers::spec::OfferSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The behavioral model: features computed per customer from her events.
#[derive(CustomResource, JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "persona.dev",
    version = "v1alpha1",
    kind = "FeatureSet",
    namespaced,
    status = "SpecStatus",
    derive = "PartialEq",
    shortname = "fs",
    category = "persona",
    doc = "The behavioral model: windowed aggregations over each customer's events, and features derived from them.",
    printcolumn(name = "Timezone", type_ = "string", json_path = ".spec.timezone"),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(transparent)]
pub struct FeatureSetResource(pub FeatureSetSpec);

/// An offer: when it matches a customer, which message, on which channel.
#[derive(CustomResource, JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "persona.dev",
    version = "v1alpha1",
    kind = "Offer",
    namespaced,
    status = "SpecStatus",
    derive = "PartialEq",
    category = "persona",
    doc = "An offer: the condition over a customer's features, profile and preferences under which it matches, its variants, channels and limits.",
    printcolumn(name = "Title", type_ = "string", json_path = ".spec.title"),
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority"),
    printcolumn(name = "Paused", type_ = "boolean", json_path = ".spec.paused"),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(transparent)]
pub struct OfferResource(pub OfferSpec);

/// How often and when a customer may be contacted, whatever the offer.
#[derive(CustomResource, JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "persona.dev",
    version = "v1alpha1",
    kind = "ContactPolicy",
    namespaced,
    status = "SpecStatus",
    derive = "PartialEq",
    shortname = "cp",
    category = "persona",
    doc = "Limits on contacting a customer across all offers: a daily cap, quiet hours and preferred days. One per cluster.",
    printcolumn(name = "Max Per Day", type_ = "integer", json_path = ".spec.maxPerDay"),
    printcolumn(name = "Timezone", type_ = "string", json_path = ".spec.timezone"),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(transparent)]
pub struct ContactPolicyResource(pub ContactPolicySpec);

/// Whether the spec compiled, and why not.
#[derive(JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Valid`: True when the spec compiled; False with the diagnostic (line, column,
    /// caret) as the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
