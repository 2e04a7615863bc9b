//! The committed CRDs (crds/ and the chart's copies) are what the Rust types generate,
//! they teach `kubectl explain`, and their CEL rules accept and refuse what they
//! should, evaluated as the API server would (kube-cel), since no API server runs here.

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use persona_operator::crd::{self, PersonaCluster};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/crdgen", path.display()))
}

#[test]
fn committed_crds_and_the_chart_copies_match_the_types() {
    for (name, yaml) in crd::files(&crd::cloud_crds()).unwrap() {
        for dir in ["crds", "charts/persona/crds"] {
            let path = repo().join(dir).join(&name);
            assert!(
                read(&path) == yaml,
                "{dir}/{name} drifted from the Rust types: run scripts/crdgen and commit the result"
            );
        }
    }
}

/// The OpenAPI schema of a committed CRD, as JSON.
fn schema(file: &str) -> Value {
    let yaml: Value = serde_yaml::from_str(&read(&repo().join("crds").join(file))).unwrap();
    yaml["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Every property, however deep, has a description for `kubectl explain`.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            if prop
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                out.push(here.clone());
            }
            undocumented(prop, &here, out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(key) {
            undocumented(inner, &format!("{path}[]"), out);
        }
    }
}

#[test]
fn every_field_is_described() {
    for file in [
        "personacluster.yaml",
        "featureset.yaml",
        "offer.yaml",
        "contactpolicy.yaml",
        "source.yaml",
    ] {
        let mut missing = Vec::new();
        undocumented(&schema(file), "", &mut missing);
        assert!(missing.is_empty(), "{file}: no description for {missing:?}");
    }
}

/// Kubernetes accepts only structural schemas: no `type` inside anyOf/oneOf/allOf.
#[test]
fn schemas_are_structural() {
    fn walk(v: &Value, path: &str) {
        match v {
            Value::Object(map) => {
                for junctor in ["anyOf", "oneOf", "allOf", "not"] {
                    assert!(!map.contains_key(junctor), "{path} uses {junctor}");
                }
                let typed = map.contains_key("type")
                    || map.contains_key("x-kubernetes-int-or-string")
                    || map.contains_key("x-kubernetes-preserve-unknown-fields");
                assert!(typed, "{path} has no type");
                if let Some(props) = map.get("properties").and_then(Value::as_object) {
                    for (k, p) in props {
                        walk(p, &format!("{path}.{k}"));
                    }
                }
                if let Some(items) = map.get("items") {
                    walk(items, &format!("{path}[]"));
                }
                if let Some(extra @ Value::Object(_)) = map.get("additionalProperties") {
                    walk(extra, &format!("{path}{{}}"));
                }
            }
            other => panic!("{path}: schema is {other}"),
        }
    }
    for file in [
        "personacluster.yaml",
        "featureset.yaml",
        "offer.yaml",
        "contactpolicy.yaml",
        "source.yaml",
    ] {
        walk(&schema(file), file);
    }
}

#[test]
fn conditions_merge_by_type_and_printer_columns_show_readiness() {
    let crd = PersonaCluster::crd();
    let version = &crd.spec.versions[0];
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Partitions",
            "Shards",
            "Ready Shards",
            "Epoch",
            "Ready",
            "Reason",
            "Age"
        ]
    );
    let conditions = &schema("personacluster.yaml")["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    assert_eq!(crd.spec.names.short_names, Some(vec!["pc".to_owned()]));
}

fn cluster(name: &str, partitions: u32, min: u32, max: u32) -> Value {
    json!({
        "apiVersion": "persona.dev/v1alpha1",
        "kind": "PersonaCluster",
        "metadata": {"name": name, "namespace": "banking"},
        "spec": {
            "partitions": partitions,
            "shards": {"min": min, "max": max},
            "scaling": {"targetEventsPerSecond": 50000, "targetLag": 10000, "scaleDownAfter": "10m"},
            "storage": {"size": "50Gi"},
            "bus": {"redis": "redis://persona-redis:6379"},
            "featureSet": "retail-banking",
        },
    })
}

fn messages(result: Result<(), kube_cel::ValidationErrors>) -> Vec<String> {
    match result {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

#[test]
fn cel_rules_accept_a_good_cluster() {
    let s = schema("personacluster.yaml");
    assert_eq!(
        messages(kube_cel::validate(&s, &cluster("prod", 256, 2, 64), None)),
        Vec::<String>::new()
    );
    // Defaults (scaling, storage) apply before the rules, as in the API server.
    let mut minimal = cluster("prod", 16, 1, 16);
    minimal["spec"].as_object_mut().unwrap().remove("scaling");
    assert_eq!(messages(kube_cel::validate(&s, &minimal, None)), Vec::<String>::new());
}

#[test]
fn cel_rules_refuse_min_above_max_and_max_above_partitions() {
    let s = schema("personacluster.yaml");
    assert_eq!(
        messages(kube_cel::validate(&s, &cluster("prod", 256, 8, 4), None)),
        ["shards.min must not exceed shards.max"]
    );
    assert_eq!(
        messages(kube_cel::validate(&s, &cluster("prod", 16, 1, 32), None)),
        ["shards.max must not exceed partitions: a shard without a partition does nothing"]
    );
}

#[test]
fn cel_rules_keep_partitions_fixed_after_creation() {
    let s = schema("personacluster.yaml");
    let old = cluster("prod", 256, 2, 64);
    assert_eq!(
        messages(kube_cel::validate(&s, &cluster("prod", 128, 2, 64), Some(&old))),
        ["partitions is fixed at creation"]
    );
    // Other fields may change.
    assert_eq!(
        messages(kube_cel::validate(&s, &cluster("prod", 256, 4, 32), Some(&old))),
        Vec::<String>::new()
    );
}

#[test]
fn cel_rules_bound_the_name_and_the_scale_down_window() {
    let s = schema("personacluster.yaml");
    let long = "p".repeat(41);
    assert_eq!(
        messages(kube_cel::validate(&s, &cluster(&long, 16, 1, 2), None)),
        ["the name must be at most 40 characters: it prefixes the shard pods' names"]
    );
    let mut negative = cluster("prod", 16, 1, 2);
    negative["spec"]["scaling"]["scaleDownAfter"] = json!("-5m");
    assert_eq!(
        messages(kube_cel::validate(&s, &negative, None)),
        ["scaleDownAfter must not be negative"]
    );
}

#[test]
fn the_operator_reads_what_the_crd_admits() {
    // The example in DESIGN.md §3 and in the chart's values deserializes.
    let object: PersonaCluster = serde_json::from_value(cluster("prod", 256, 2, 64)).unwrap();
    assert_eq!(
        object.spec.scaling.scale_down_after,
        kube::core::Duration::from(std::time::Duration::from_secs(600))
    );
    assert_eq!(object.spec.storage.size.0, "50Gi");
}
