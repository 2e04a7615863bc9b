//! What every persona spec document shares with a Kubernetes object: its metadata.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The part of Kubernetes object metadata persona reads; the rest of what `kubectl`
/// may add is refused so that a typo is not silently ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The object's name: unique per kind.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The API group and version of every persona kind.
pub const API_VERSION: &str = "persona.dev/v1alpha1";
