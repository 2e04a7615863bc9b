//! The Source kind as a Kubernetes custom resource (group `persona.dev`, version
//! `v1alpha1`), for the trusted zone: charts/persona-onprem installs its CRD, so
//! `kubectl explain source.spec` documents every field and the API server checks
//! the structure. Its spec is the very type the gateway reads from files.

// Each `printcolumn(...)` of kube's derive repeats `type_ = ...`; clippy takes the
// columns for one attribute list.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::{Metadata, SourceBody, SourceKind, SourceSpec};

/// How one system of record's records become canonical events: which field is the
/// customer, and what happens to every other field.
#[derive(CustomResource, JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "persona.dev",
    version = "v1alpha1",
    kind = "Source",
    namespaced,
    derive = "PartialEq",
    category = "persona",
    doc = "A system of record in the trusted zone: its files or stream, and the rule for each field (key, drop, generalize, mask, vault, attr).",
    printcolumn(name = "Event", type_ = "string", json_path = ".spec.event"),
    printcolumn(name = "Format", type_ = "string", json_path = ".spec.format"),
    printcolumn(name = "Files", type_ = "string", json_path = ".spec.files"),
    printcolumn(name = "Stream", type_ = "string", json_path = ".spec.stream", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(transparent)]
pub struct SourceResource(pub SourceBody);

impl Source {
    /// The document [`crate::Source::compile`] takes.
    pub fn to_spec(&self) -> SourceSpec {
        SourceSpec {
            api_version: Some("persona.dev/v1alpha1".to_owned()),
            kind: SourceKind::Source,
            metadata: Metadata { name: self.name_any() },
            spec: self.spec.0.clone(),
        }
    }
}
