//! charts/persona and charts/persona-onprem, rendered and linted by the real Helm
//! engine (PyPI helm-python-sdk, driven by tests/charts/helm.py), and the rendered
//! manifests read back as Kubernetes API types.
//!
//! `PERSONA_TEST_HELM_PYTHON` names a Python with helm-python-sdk installed;
//! scripts/test installs one under .work/ and sets it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use persona_operator::crd::{self, PersonaCluster};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        std::env::var("PERSONA_TEST_HELM_PYTHON").unwrap_or_else(|_| {
            panic!(
                "PERSONA_TEST_HELM_PYTHON is not set: these tests render the charts with the real Helm \
                 engine. Run scripts/test (it installs helm-python-sdk into .work/helm-venv and sets it), \
                 or: python3 -m venv .work/helm-venv && .work/helm-venv/bin/pip install \
                 helm-python-sdk==0.2.2 && export PERSONA_TEST_HELM_PYTHON=$PWD/.work/helm-venv/bin/python"
            )
        })
    })
}

/// Runs helm.py; `Ok` with its JSON, or `Err` with Helm's error message.
fn helm(args: &[&str]) -> Result<Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/charts/helm.py");
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (PERSONA_TEST_HELM_PYTHON): {e}", python()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "helm.py printed no JSON (exit {:?}); is helm-python-sdk installed for {}?\nstdout: {stdout}\nstderr: {}",
            out.status.code(),
            python(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    match parsed.get("error") {
        Some(_) => Err(parsed["message"].as_str().unwrap_or_default().to_owned()),
        None => Ok(parsed),
    }
}

struct Rendered {
    /// Every object of every template, in template order.
    objects: Vec<Value>,
    notes: String,
    crds: Vec<CustomResourceDefinition>,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one<T: serde::de::DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        let found = self
            .of_kind(kind)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} rendered"));
        serde_json::from_value(found.clone()).unwrap_or_else(|e| panic!("{kind} {name} is not a valid {kind}: {e}"))
    }
}

fn render(chart: &str, release: &str, values: &Value) -> Result<Rendered, String> {
    let chart_dir = repo().join("charts").join(chart);
    let out = helm(&[
        "render",
        chart_dir.to_str().unwrap(),
        release,
        "banking",
        &values.to_string(),
    ])?;
    eprintln!("helm render {chart}: {:.3} s", out["seconds"].as_f64().unwrap());
    let mut objects = Vec::new();
    let mut notes = String::new();
    let mut manifests: Vec<_> = out["manifests"].as_object().unwrap().iter().collect();
    manifests.sort_by_key(|(path, _)| path.as_str());
    for (path, text) in manifests {
        let text = text.as_str().unwrap();
        if path.ends_with("NOTES.txt") {
            notes = text.to_owned();
            continue;
        }
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}"));
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    let crds = out["crds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| serde_yaml::from_str(c["data"].as_str().unwrap()).unwrap())
        .collect();
    Ok(Rendered { objects, notes, crds })
}

fn lint(chart: &str, values: &Value, kube_version: &str) -> Value {
    let chart_dir = repo().join("charts").join(chart);
    let report = helm(&["lint", chart_dir.to_str().unwrap(), &values.to_string(), kube_version]).unwrap();
    eprintln!("helm lint {chart}: {:.3} s", report["seconds"].as_f64().unwrap());
    report
}

/// Lint findings at warning level or above, and errors.
fn problems(report: &Value) -> Vec<String> {
    let mut found: Vec<String> = report["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["severity"].as_u64().unwrap_or(0) >= 2)
        .map(|m| format!("{}: {}", m["path"], m["error"]))
        .collect();
    found.extend(report["errors"].as_array().unwrap().iter().map(|e| e.to_string()));
    found
}

fn onprem_values() -> Value {
    let text = std::fs::read_to_string(repo().join("charts/persona-onprem/ci/test-values.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn assert_hardened(what: &str, pod: &PodSpec) {
    let security = pod
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no pod securityContext"));
    assert_eq!(security.run_as_non_root, Some(true), "{what}: runAsNonRoot");
    assert_eq!(
        security.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault"),
        "{what}: seccomp"
    );
    for c in &pod.containers {
        assert_container_hardened(what, c);
    }
}

fn assert_container_hardened(what: &str, c: &Container) {
    let s = c
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{what}/{}: no securityContext", c.name));
    assert_eq!(
        s.read_only_root_filesystem,
        Some(true),
        "{what}/{}: readOnlyRootFilesystem",
        c.name
    );
    assert_eq!(
        s.allow_privilege_escalation,
        Some(false),
        "{what}/{}: allowPrivilegeEscalation",
        c.name
    );
    assert_eq!(s.run_as_non_root, Some(true), "{what}/{}: runAsNonRoot", c.name);
    let dropped = s.capabilities.as_ref().and_then(|c| c.drop.clone()).unwrap_or_default();
    assert_eq!(dropped, ["ALL"], "{what}/{}: capabilities", c.name);
    let resources = c
        .resources
        .as_ref()
        .unwrap_or_else(|| panic!("{what}/{}: no resources", c.name));
    assert!(
        resources
            .requests
            .as_ref()
            .is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory"))
    );
    assert!(
        resources.limits.as_ref().is_some_and(|l| l.contains_key("memory")),
        "{what}/{}: memory limit",
        c.name
    );
    // Secrets reach the container by reference only.
    for env in c.env.iter().flatten() {
        let secretish = ["PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY"]
            .iter()
            .any(|w| env.name.contains(w));
        if secretish {
            assert!(env.value.is_none(), "{what}/{}: {} is inline", c.name, env.name);
            assert!(
                env.value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .is_some()
            );
        }
    }
}

fn assert_least_privilege(rules: &[PolicyRule]) {
    for rule in rules {
        let all = [
            rule.verbs.clone(),
            rule.resources.clone().unwrap_or_default(),
            rule.api_groups.clone().unwrap_or_default(),
        ];
        assert!(all.iter().flatten().all(|x| x != "*"), "wildcard in {rule:?}");
        for verb in &rule.verbs {
            assert!(
                ["get", "list", "watch", "create", "patch"].contains(&verb.as_str()),
                "verb {verb} in {rule:?}"
            );
        }
        for resource in rule.resources.iter().flatten() {
            assert!(
                !["secrets", "pods/exec", "roles", "rolebindings", "clusterroles"].contains(&resource.as_str()),
                "{resource} in {rule:?}"
            );
        }
    }
}

#[test]
fn the_cloud_chart_installs_a_hardened_operator_with_least_privilege() {
    let r = render("persona", "persona", &json!({})).unwrap();
    let mut kinds: Vec<_> = r.objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "NetworkPolicy",
            "NetworkPolicy",
            "PersonaCluster",
            "ServiceAccount"
        ]
    );
    let deployment: Deployment = r.one("Deployment", "persona-operator");
    let spec = deployment.spec;
    let pod = spec.template.spec.unwrap();
    assert_hardened("operator", &pod);
    assert_eq!(pod.service_account_name.as_deref(), Some("persona-operator"));
    let operator = &pod.containers[0];
    assert_eq!(operator.image.as_deref(), Some("ghcr.io/persona-dev/persona:0.1.0"));
    assert_eq!(operator.args.as_deref(), Some(&["operator".to_owned()][..]));

    let role: ClusterRole = r.one("ClusterRole", "persona-operator");
    assert_least_privilege(role.rules.as_deref().unwrap());
    let binding: ClusterRoleBinding = r.one("ClusterRoleBinding", "persona-operator");
    assert_eq!(binding.role_ref.name, "persona-operator");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("persona-operator", Some("banking"))
    );
    let _: ServiceAccount = r.one("ServiceAccount", "persona-operator");
    let _: NetworkPolicy = r.one("NetworkPolicy", "persona-operator");
    let shards: NetworkPolicy = r.one("NetworkPolicy", "persona-shard");
    assert_eq!(shards.spec.unwrap().policy_types.unwrap(), ["Ingress", "Egress"]);
    assert!(
        r.notes.contains("kubectl -n banking get personacluster persona"),
        "{}",
        r.notes
    );
    assert!(
        r.notes.contains("WARNING: the bus URL is redis://"),
        "the default bus has no TLS: say so"
    );
}

#[test]
fn the_cloud_chart_ships_the_generated_crds() {
    let r = render("persona", "persona", &json!({})).unwrap();
    let mut names: Vec<_> = r.crds.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "contactpolicies.persona.dev",
            "featuresets.persona.dev",
            "offers.persona.dev",
            "personaclusters.persona.dev"
        ]
    );
    for generated in crd::cloud_crds() {
        let shipped = r
            .crds
            .iter()
            .find(|c| c.metadata.name == generated.metadata.name)
            .unwrap();
        assert_eq!(
            shipped, &generated,
            "the chart's CRD differs from the types: run scripts/crdgen"
        );
    }
}

#[test]
fn the_default_persona_cluster_is_one_the_crd_and_the_operator_accept() {
    let r = render("persona", "persona", &json!({})).unwrap();
    let object = r.of_kind("PersonaCluster")[0].clone();
    let cluster: PersonaCluster = serde_json::from_value(object.clone()).unwrap();
    assert_eq!(cluster.spec.partitions, 256);
    assert_eq!((cluster.spec.shards.min, cluster.spec.shards.max), (2, 64));
    persona_operator::decision::validate(&cluster).unwrap();
    let crd = serde_json::to_value(PersonaCluster::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    kube_cel::validate(schema, &object, None).unwrap();
}

#[test]
fn a_single_namespace_install_gets_a_role_not_a_cluster_role() {
    let r = render(
        "persona",
        "persona",
        &json!({"operator": {"watchNamespace": "banking"}}),
    )
    .unwrap();
    assert!(r.of_kind("ClusterRole").is_empty() && r.of_kind("ClusterRoleBinding").is_empty());
    let role: Role = r.one("Role", "persona-operator");
    assert_eq!(role.metadata.namespace.as_deref(), Some("banking"));
    assert_least_privilege(role.rules.as_deref().unwrap());
    let _: RoleBinding = r.one("RoleBinding", "persona-operator");
}

#[test]
fn the_values_schema_refuses_bad_values() {
    let cases = [
        (
            json!({"cluster": {"bus": {"redis": "http://redis:6379"}}}),
            "/cluster/bus/redis",
        ),
        (
            json!({"cluster": {"bus": {"redis": "redis://user:secret@redis:6379"}}}),
            "/cluster/bus/redis",
        ),
        (json!({"operator": {"replicas": 2}}), "/operator/replicas"),
        (json!({"image": {"pullPolicy": "Sometimes"}}), "/image/pullPolicy"),
        (json!({"cluster": {"partitions": 0}}), "/cluster/partitions"),
        (json!({"cluster": {"name": "Prod_Cluster"}}), "/cluster/name"),
        (json!({"clsuter": {}}), "clsuter"),
    ];
    for (values, path) in cases {
        let err = render("persona", "persona", &values)
            .err()
            .unwrap_or_else(|| panic!("{values} was accepted"));
        assert!(err.contains(path), "{values}: {err}");
    }
}

#[test]
fn the_cloud_chart_refuses_bounds_the_crd_would_refuse() {
    let err = render(
        "persona",
        "persona",
        &json!({"cluster": {"shards": {"min": 8, "max": 4}}}),
    )
    .err()
    .unwrap();
    assert!(
        err.contains("cluster.shards.min (8) must not exceed cluster.shards.max (4)"),
        "{err}"
    );
    let err = render(
        "persona",
        "persona",
        &json!({"cluster": {"partitions": 16, "shards": {"min": 1, "max": 32}}}),
    )
    .err()
    .unwrap();
    assert!(err.contains("must not exceed cluster.partitions (16)"), "{err}");
}

#[test]
fn the_charts_lint_clean() {
    let report = lint("persona", &json!({}), "v1.30.0");
    assert_eq!(problems(&report), Vec::<String>::new());
    let report = lint("persona-onprem", &onprem_values(), "v1.30.0");
    assert_eq!(problems(&report), Vec::<String>::new());
    // Helm's lint does not check kubeVersion; install does. The CRDs' transition
    // rules need 1.29+, the pod-index label 1.28+.
    for chart in ["persona", "persona-onprem"] {
        let meta: Value = serde_yaml::from_str(
            &std::fs::read_to_string(repo().join("charts").join(chart).join("Chart.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta["kubeVersion"], ">=1.30.0-0", "{chart}");
    }
}

#[test]
fn the_trusted_chart_runs_gateway_and_detokenizer_unprivileged_without_api_access() {
    let r = render("persona-onprem", "trusted", &onprem_values()).unwrap();
    for name in ["trusted-gateway", "trusted-detokenizer"] {
        let sts: StatefulSet = r.one("StatefulSet", name);
        assert_eq!(sts.spec.replicas, Some(1), "{name}: one process per vault");
        let pod = sts.spec.template.spec.unwrap();
        assert_hardened(name, &pod);
        assert_eq!(pod.automount_service_account_token, Some(false), "{name}");
        let sa: ServiceAccount = r.one("ServiceAccount", name);
        assert_eq!(sa.automount_service_account_token, Some(false));
        let env = pod.containers[0].env.clone().unwrap();
        let get = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
        assert_eq!(get("PERSONA_KMS").as_deref(), Some("aws"));
        assert_eq!(get("PERSONA_KMS_KEY_ID").as_deref(), Some("alias/persona-trusted"));
        assert!(env.iter().any(|e| e.name == "PERSONA_BUS_REDIS_PASSWORD"));
        let _: NetworkPolicy = r.one("NetworkPolicy", name);
    }
    // No Kubernetes API rights at all in the trusted zone.
    for kind in ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"] {
        assert!(r.of_kind(kind).is_empty(), "{kind} rendered");
    }
    let _: Service = r.one("Service", "trusted-gateway");
    let sources: ConfigMap = r.one("ConfigMap", "trusted-sources");
    let spec: Value = serde_yaml::from_str(&sources.data.unwrap()["core-banking-txn.yaml"]).unwrap();
    assert_eq!(spec["kind"], "Source");
    assert_eq!(spec["spec"]["fields"]["EMAIL"], json!({"vault": "email"}));
    assert!(!r.notes.contains("WARNING"), "{}", r.notes);
}

#[test]
fn the_trusted_chart_refuses_a_kms_without_a_key_and_labels_the_local_one() {
    let mut values = onprem_values();
    values["kms"]["keyId"] = json!("");
    let err = render("persona-onprem", "trusted", &values).err().unwrap();
    assert!(err.contains("/kms/keyId"), "{err}");

    values["kms"] = json!({"provider": "local"});
    let err = render("persona-onprem", "trusted", &values).err().unwrap();
    assert!(err.contains("/kms/allowLocalForDevelopment"), "{err}");

    values["kms"] = json!({"provider": "local", "allowLocalForDevelopment": true});
    let r = render("persona-onprem", "trusted", &values).unwrap();
    assert!(r.notes.contains("WARNING: kms.provider=local"), "{}", r.notes);
    let sts: StatefulSet = r.one("StatefulSet", "trusted-gateway");
    let env = sts.spec.template.spec.unwrap().containers[0].env.clone().unwrap();
    assert!(env.iter().all(|e| !e.name.starts_with("PERSONA_KMS_KEY")));
}
