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

/// The Sources of `namespace`, read from the Kubernetes API and compiled; each one
/// refused comes back with its name and why (the others are used).
pub async fn load(
    client: kube::Client,
    namespace: &str,
) -> Result<(Vec<crate::Source>, Vec<(String, crate::SpecError)>), kube::Error> {
    let api: kube::Api<Source> = kube::Api::namespaced(client, namespace);
    let mut objects = api.list(&kube::api::ListParams::default()).await?.items;
    objects.sort_by_key(ResourceExt::name_any);
    let mut sources = Vec::new();
    let mut refused = Vec::new();
    for object in objects {
        match crate::Source::compile(object.to_spec()) {
            Ok(source) => sources.push(source),
            Err(e) => refused.push((object.name_any(), e)),
        }
    }
    Ok((sources, refused))
}

#[cfg(test)]
mod tests {
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    use super::*;

    /// Against a mocked API server: the list of the namespace's Sources, one of them
    /// broken (no key field): the good one compiles, the broken one is named.
    #[tokio::test]
    async fn the_namespaces_sources_are_listed_and_compiled() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "trusted");
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), http::Method::GET);
            assert_eq!(
                request.uri().path(),
                "/apis/persona.dev/v1alpha1/namespaces/trusted/sources"
            );
            let list = json!({
                "apiVersion": "persona.dev/v1alpha1", "kind": "SourceList",
                "metadata": {"resourceVersion": "7"},
                "items": [
                    {"apiVersion": "persona.dev/v1alpha1", "kind": "Source",
                     "metadata": {"name": "ledger", "namespace": "trusted", "uid": "u1", "resourceVersion": "5"},
                     "spec": {"format": "csv", "event": "transaction",
                              "time": {"field": "posted", "format": "%Y-%m-%d", "tz": "Asia/Kolkata"},
                              "fields": {"member": "key", "amount": {"attr": "amount", "type": "decimal"},
                                         "email": {"vault": "email"}, "note": "drop"}}},
                    {"apiVersion": "persona.dev/v1alpha1", "kind": "Source",
                     "metadata": {"name": "broken", "namespace": "trusted", "uid": "u2", "resourceVersion": "6"},
                     "spec": {"format": "csv", "event": "transaction", "time": {"field": "posted"},
                              "fields": {"amount": {"attr": "amount", "type": "decimal"}}}},
                ],
            });
            send.send_response(
                Response::builder()
                    .status(StatusCode::OK)
                    .body(Body::from(serde_json::to_vec(&list).unwrap()))
                    .unwrap(),
            );
        });
        let (sources, refused) = load(client, "trusted").await.unwrap();
        server.await.unwrap();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].name(), "ledger");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "broken");
        assert!(refused[0].1.to_string().contains("key"), "{}", refused[0].1);
    }
}
