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
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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

/// The verbs `rules` grant on `resource` of `group`, sorted.
fn verbs_on(rules: &[PolicyRule], group: &str, resource: &str) -> Vec<String> {
    let mut verbs: Vec<String> = rules
        .iter()
        .filter(|r| r.api_groups.iter().flatten().any(|g| g == group))
        .filter(|r| r.resources.iter().flatten().any(|x| x == resource))
        .flat_map(|r| r.verbs.clone())
        .collect();
    verbs.sort_unstable();
    verbs
}

/// A metric as the code registers it, and the series the prometheus-client crate
/// exposes for it (OpenMetrics): counters get `_total`, histograms `_bucket`, `_sum`
/// and `_count`.
#[derive(Clone, Copy, Debug)]
enum Metric {
    Counter(&'static str),
    Gauge(&'static str),
    Histogram(&'static str),
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Counter(n) | Metric::Gauge(n) | Metric::Histogram(n) => n,
        }
    }

    fn series(self) -> Vec<String> {
        match self {
            Metric::Counter(n) => vec![format!("{n}_total")],
            Metric::Gauge(n) => vec![n.to_owned()],
            Metric::Histogram(n) => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{n}{suffix}"))
                .collect(),
        }
    }
}

/// What the cloud zone exposes: the shards (cli/src/cluster.rs, `shard_metrics`) and
/// the operator.
const CLOUD_METRICS: &[Metric] = &[
    Metric::Counter("persona_events_applied"),
    Metric::Counter("persona_events_duplicate"),
    Metric::Counter("persona_matches"),
    Metric::Counter("persona_actor_activations"),
    Metric::Counter("persona_actor_passivations"),
    Metric::Gauge("persona_actors_hot"),
    Metric::Gauge("persona_partition_lag"),
    Metric::Histogram("persona_apply_batch_seconds"),
    Metric::Histogram("persona_checkpoint_seconds"),
    Metric::Histogram("persona_decide_seconds"),
    Metric::Gauge("process_resident_memory_bytes"),
    Metric::Counter("persona_operator_reconciles"),
    Metric::Gauge("persona_operator_leader"),
    Metric::Gauge("persona_operator_desired_shards"),
    Metric::Gauge("persona_operator_shards"),
    Metric::Gauge("persona_operator_max_shards"),
];

/// What the trusted zone exposes: the gateway and the de-tokenizer
/// (cli/src/trusted.rs).
const TRUSTED_METRICS: &[Metric] = &[
    Metric::Counter("persona_gateway_records"),
    Metric::Counter("persona_gateway_events"),
    Metric::Counter("persona_gateway_dead_lettered"),
    Metric::Counter("persona_gateway_tokens_issued"),
    Metric::Counter("persona_gateway_failures"),
    Metric::Counter("persona_detokenizer_matches"),
    Metric::Counter("persona_detokenizer_duplicates"),
    Metric::Counter("persona_detokenizer_retries"),
    Metric::Counter("persona_detokenizer_kms_decrypts"),
    Metric::Histogram("persona_detokenizer_deliver_seconds"),
];

/// Series of others that the rules and dashboards read: Prometheus' own `up` and
/// kube-state-metrics' pod readiness.
const OTHER_SERIES: &[&str] = &["up", "kube_pod_status_ready"];

fn known_series(metrics: &[Metric]) -> Vec<String> {
    metrics
        .iter()
        .flat_map(|m| m.series())
        .chain(OTHER_SERIES.iter().map(|s| (*s).to_owned()))
        .collect()
}

/// The index just past the string literal opening at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// The metric names a PromQL expression reads. A small scanner, enough for the
/// expressions the charts ship: it skips strings, ranges `[...]`, label matchers
/// `{...}` (reading a `__name__` matcher's alternatives), the label lists of `by`,
/// `without`, `on`, `ignoring`, `group_left` and `group_right`, keywords,
/// aggregations and function calls; every other identifier is a metric.
fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let closing = |from: usize, close: char| {
        let mut j = from;
        while j < chars.len() && chars[j] != close {
            j = if chars[j] == '"' || chars[j] == '\'' {
                skip_string(&chars, j)
            } else {
                j + 1
            };
        }
        j.min(chars.len())
    };
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            i = closing(i, ']') + 1;
        } else if c == '{' {
            let end = closing(i, '}');
            let block: String = chars[i + 1..end].iter().collect();
            if let Some(at) = block.find("__name__") {
                let value = block[at + "__name__".len()..]
                    .trim_start()
                    .trim_start_matches(['=', '~'])
                    .trim_start();
                if let Some(quoted) = value.strip_prefix('"') {
                    let alternatives = quoted.split('"').next().unwrap_or_default();
                    names.extend(alternatives.split('|').map(str::to_owned));
                }
            }
            i = end + 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if called {
                    i = closing(next, ')') + 1;
                }
            } else if !called && !KEYWORDS.contains(&word.as_str()) {
                names.push(word);
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_promql_scanner_finds_metrics_and_nothing_else() {
    let expr = r#"sum by (namespace, pod) (rate(persona_events_applied_total{pod=~"a-[0-9]{2}"}[5m])) > 0
        unless on (pod) histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))
        or count(label_replace(up{job="s"} == 1, "c", "$1", "pod", "(.+)")) * 0
        or absent({__name__=~"a_total|b_total"})"#;
    assert_eq!(
        metric_names(expr),
        ["persona_events_applied_total", "x_bucket", "up", "a_total", "b_total"]
    );
}

/// Every expression of a rendered dashboard: its panels' targets (rows included)
/// and the series its query variables read.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or_default();
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: the chosen data source"
        );
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a target without expr"));
            exprs.push(expr.to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            let query = variable["query"]["query"]
                .as_str()
                .or(variable["query"].as_str())
                .unwrap();
            let series = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .and_then(|q| q.rsplit_once(','))
                .map_or(query, |(series, _label)| series);
            exprs.push(series.to_owned());
        }
    }
    exprs
}

/// The dashboard in `configmap` of `r`: it parses, reads only series in `metrics`
/// (or others'), and shows every one of `metrics`.
fn assert_dashboard_shows(r: &Rendered, configmap: &str, key: &str, metrics: &[Metric]) -> Value {
    let cm: ConfigMap = r.one("ConfigMap", configmap);
    assert_eq!(
        cm.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("grafana_dashboard")
            .map(String::as_str),
        Some("1"),
        "the Grafana sidecar's default label"
    );
    let text = &cm.data.as_ref().unwrap()[key];
    let dashboard: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{configmap}/{key}: {e}"));
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()), "a stable uid");
    let known = known_series(metrics);
    let mut read = Vec::new();
    for expr in dashboard_exprs(&dashboard) {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{configmap}: reads no metric: {expr}");
        for name in names {
            assert!(
                known.contains(&name),
                "{configmap}: {name} is not a series persona exposes: {expr}"
            );
            read.push(name);
        }
    }
    for metric in metrics {
        assert!(
            metric.series().iter().any(|s| read.contains(s)),
            "{configmap}: no panel shows {}",
            metric.name()
        );
    }
    dashboard
}

/// The alerting rules of the one PrometheusRule `r` renders.
fn alert_rules(r: &Rendered) -> Vec<Value> {
    let found = r.of_kind("PrometheusRule");
    assert_eq!(found.len(), 1, "one PrometheusRule");
    found[0]["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

/// Each rule is an alert over series the code exposes (or others'), waits `for` a
/// while, says how bad (severity) and what and why (summary, description).
fn assert_alerts_complete(rules: &[Value], metrics: &[Metric]) -> Vec<String> {
    let known = known_series(metrics);
    let mut names = Vec::new();
    for rule in rules {
        let name = rule["alert"].as_str().unwrap_or_else(|| panic!("not an alert: {rule}"));
        let expr = rule["expr"].as_str().unwrap_or_default();
        let read = metric_names(expr);
        assert!(!read.is_empty(), "{name}: reads no metric: {expr}");
        for series in read {
            assert!(
                known.contains(&series),
                "{name}: {series} is not a series persona exposes"
            );
        }
        let wait = rule["for"].as_str().unwrap_or_else(|| panic!("{name}: no `for`"));
        assert!(
            wait.starts_with(|c: char| c.is_ascii_digit())
                && wait.chars().all(|c| c.is_ascii_digit() || "smhdwy".contains(c))
                && wait.chars().any(|c| c != '0' && c.is_ascii_digit()),
            "{name}: for {wait}"
        );
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name}: no {annotation}");
        }
        names.push(name.to_owned());
    }
    names.sort_unstable();
    names
}

/// The job label a PodMonitor's first endpoint gives its targets.
fn pod_monitor_job(monitor: &Value) -> &str {
    monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["targetLabel"] == "job")
        .and_then(|r| r["replacement"].as_str())
        .unwrap()
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
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "NetworkPolicy",
            "PersonaCluster",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ]
    );
    let deployment: Deployment = r.one("Deployment", "persona-operator");
    let spec = deployment.spec;
    // Leader election makes two replicas safe, and a rolling update with them.
    assert_eq!(spec.replicas, Some(2));
    let strategy = spec.strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let pod = spec.template.spec.unwrap();
    assert_hardened("operator", &pod);
    assert_eq!(pod.service_account_name.as_deref(), Some("persona-operator"));
    let operator = &pod.containers[0];
    assert_eq!(operator.image.as_deref(), Some("ghcr.io/persona-dev/persona:0.1.0"));
    assert_eq!(operator.args.as_deref(), Some(&["operator".to_owned()][..]));
    let env = operator.env.clone().unwrap();
    let value = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
    let field = |n: &str| {
        env.iter()
            .find(|e| e.name == n)
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.clone())
    };
    assert_eq!(value("PERSONA_LEASE_NAME").as_deref(), Some("persona-operator"));
    assert_eq!(field("PERSONA_NAMESPACE").as_deref(), Some("metadata.namespace"));
    assert_eq!(field("PERSONA_POD_NAME").as_deref(), Some("metadata.name"));

    let role: ClusterRole = r.one("ClusterRole", "persona-operator");
    let rules = role.rules.as_deref().unwrap();
    assert_least_privilege(rules);
    // The four kinds are watched and their statuses written; nothing more on them.
    for kind in ["personaclusters", "featuresets", "offers", "contactpolicies"] {
        assert_eq!(verbs_on(rules, "persona.dev", kind), ["get", "list", "watch"], "{kind}");
        assert_eq!(
            verbs_on(rules, "persona.dev", &format!("{kind}/status")),
            ["patch"],
            "{kind}/status"
        );
    }
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
        (json!({"operator": {"replicas": 4}}), "/operator/replicas"),
        (
            json!({"prometheus": {"rules": {"alertLabels": {"severity": "page"}}}}),
            "invalid propertyName 'severity'",
        ),
        (
            json!({"prometheus": {"podMonitors": {"interval": "30 s"}}}),
            "/prometheus/podMonitors/interval",
        ),
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
        assert!(env.iter().any(|e| e.name == "PERSONA_REDIS_PASSWORD"));
        // The bus as the cloud side's PersonaCluster has it (charts/persona's defaults).
        assert_eq!(get("PERSONA_REDIS_PREFIX").as_deref(), Some("persona"));
        assert_eq!(get("PERSONA_PARTITIONS").as_deref(), Some("256"));
        assert_eq!(get("PERSONA_METRICS_ADDR").as_deref(), Some("0.0.0.0:9090"));
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

/// The environment value `name` of a pod's first container.
fn env_value(pod: &PodSpec, name: &str) -> Option<String> {
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

/// The ports of an egress rule, in order.
fn egress_ports(rule: &k8s_openapi::api::networking::v1::NetworkPolicyEgressRule) -> Vec<Option<IntOrString>> {
    rule.ports.iter().flatten().map(|p| p.port.clone()).collect()
}

/// The egress rules of NetworkPolicy `name` that open the API server's port 6443.
fn api_server_egress(r: &Rendered, name: &str) -> Vec<k8s_openapi::api::networking::v1::NetworkPolicyEgressRule> {
    let policy: NetworkPolicy = r.one("NetworkPolicy", name);
    let egress = policy.spec.unwrap().egress.unwrap_or_default();
    egress
        .into_iter()
        .filter(|rule| egress_ports(rule).contains(&Some(IntOrString::Int(6443))))
        .collect()
}

#[test]
fn with_sources_from_kubernetes_the_gateway_alone_may_read_the_namespaces_sources() {
    let mut values = onprem_values();
    // No spec in the values: every Source is an object of the namespace.
    values["sources"] = json!({"fromKubernetes": true, "specs": {}});
    let r = render("persona-onprem", "trusted", &values).unwrap();

    let gateway: StatefulSet = r.one("StatefulSet", "trusted-gateway");
    let pod = gateway.spec.template.spec.unwrap();
    assert_hardened("trusted-gateway", &pod);
    assert_eq!(
        env_value(&pod, "PERSONA_SOURCES_NAMESPACE").as_deref(),
        Some("banking"),
        "the release namespace, where the Role is"
    );
    let container = &pod.containers[0];
    assert!(
        container.env.iter().flatten().all(|e| e.name != "PERSONA_SPECS"),
        "no spec files: --specs is given only with specs"
    );
    assert!(
        pod.volumes.iter().flatten().all(|v| v.name != "specs"),
        "no specs volume"
    );
    assert!(
        container
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.name != "specs" && m.mount_path != "/etc/persona/specs"),
        "nothing mounted at the specs directory"
    );
    assert!(
        r.of_kind("ConfigMap")
            .iter()
            .all(|c| c["metadata"]["name"] != "trusted-sources"),
        "no ConfigMap of specs"
    );
    // The token: the gateway's pod mounts it, the de-tokenizer's never; each
    // ServiceAccount still says no, the pod asks.
    assert_eq!(pod.service_account_name.as_deref(), Some("trusted-gateway"));
    assert_eq!(pod.automount_service_account_token, Some(true), "the gateway's token");
    let detokenizer: StatefulSet = r.one("StatefulSet", "trusted-detokenizer");
    let detokenizer_pod = detokenizer.spec.template.spec.unwrap();
    assert_eq!(
        detokenizer_pod.automount_service_account_token,
        Some(false),
        "the de-tokenizer never gets a token"
    );
    assert_eq!(env_value(&detokenizer_pod, "PERSONA_SOURCES_NAMESPACE"), None);
    for name in ["trusted-gateway", "trusted-detokenizer"] {
        let sa: ServiceAccount = r.one("ServiceAccount", name);
        assert_eq!(sa.automount_service_account_token, Some(false), "{name}");
    }

    // Exactly get and list on persona.dev sources, in the release namespace only.
    assert!(r.of_kind("ClusterRole").is_empty() && r.of_kind("ClusterRoleBinding").is_empty());
    let roles = r.of_kind("Role");
    assert_eq!(roles.len(), 1, "one Role");
    let role: Role = serde_json::from_value(roles[0].clone()).unwrap();
    assert_eq!(role.metadata.namespace.as_deref(), Some("banking"));
    let rules = role.rules.clone().unwrap();
    assert_least_privilege(&rules);
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0];
    assert_eq!(rule.api_groups.as_deref(), Some(&["persona.dev".to_owned()][..]));
    assert_eq!(rule.resources.as_deref(), Some(&["sources".to_owned()][..]));
    assert_eq!(
        (rule.resource_names.as_ref(), rule.non_resource_urls.as_ref()),
        (None, None)
    );
    let mut verbs = rule.verbs.clone();
    verbs.sort_unstable();
    assert_eq!(verbs, ["get", "list"]);
    assert_eq!(verbs_on(&rules, "persona.dev", "sources"), ["get", "list"]);

    let bindings = r.of_kind("RoleBinding");
    assert_eq!(bindings.len(), 1, "one RoleBinding");
    let binding: RoleBinding = serde_json::from_value(bindings[0].clone()).unwrap();
    assert_eq!(binding.metadata.namespace.as_deref(), Some("banking"));
    assert_eq!(
        (
            binding.role_ref.api_group.as_deref(),
            binding.role_ref.kind.as_str(),
            Some(binding.role_ref.name.as_str())
        ),
        (Some("rbac.authorization.k8s.io"), "Role", role.metadata.name.as_deref())
    );
    let subjects = binding.subjects.unwrap();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert_eq!(
        (
            subjects[0].kind.as_str(),
            subjects[0].name.as_str(),
            subjects[0].namespace.as_deref()
        ),
        ("ServiceAccount", "trusted-gateway", Some("banking")),
        "the gateway's ServiceAccount"
    );
    assert_eq!(pod.service_account_name.as_deref(), Some(subjects[0].name.as_str()));

    // The gateway may reach the API server (any address on 443 and 6443 by
    // default), the de-tokenizer may not.
    let to_api = api_server_egress(&r, "trusted-gateway");
    assert_eq!(to_api.len(), 1, "one egress rule to the API server");
    assert_eq!(
        egress_ports(&to_api[0]),
        [Some(IntOrString::Int(443)), Some(IntOrString::Int(6443))]
    );
    assert_eq!(to_api[0].to, None, "any address");
    assert!(api_server_egress(&r, "trusted-detokenizer").is_empty());
    assert!(r.notes.contains("kubectl -n banking get sources"), "{}", r.notes);

    // networkPolicy.apiServerCIDRs narrows it to those addresses.
    values["networkPolicy"] = json!({"apiServerCIDRs": ["10.96.0.1/32", "192.168.10.4/32"]});
    let r = render("persona-onprem", "trusted", &values).unwrap();
    let to_api = api_server_egress(&r, "trusted-gateway");
    assert_eq!(to_api.len(), 1);
    let cidrs: Vec<_> = to_api[0]
        .to
        .iter()
        .flatten()
        .map(|peer| peer.ip_block.as_ref().map(|b| b.cidr.clone()))
        .collect();
    assert_eq!(
        cidrs,
        [Some("10.96.0.1/32".to_owned()), Some("192.168.10.4/32".to_owned())]
    );
    let report = lint("persona-onprem", &values, "v1.30.0");
    assert_eq!(problems(&report), Vec::<String>::new());

    // Off (the default): no Role, no token, the specs as files.
    let r = render("persona-onprem", "trusted", &onprem_values()).unwrap();
    for kind in ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"] {
        assert!(r.of_kind(kind).is_empty(), "{kind} rendered");
    }
    for name in ["trusted-gateway", "trusted-detokenizer"] {
        let sts: StatefulSet = r.one("StatefulSet", name);
        let pod = sts.spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false), "{name}");
        assert_eq!(env_value(&pod, "PERSONA_SOURCES_NAMESPACE"), None, "{name}");
        assert!(api_server_egress(&r, name).is_empty(), "{name}");
    }
    let sts: StatefulSet = r.one("StatefulSet", "trusted-gateway");
    let pod = sts.spec.template.spec.unwrap();
    assert_eq!(env_value(&pod, "PERSONA_SPECS").as_deref(), Some("/etc/persona/specs"));
    // And then the gateway needs a spec in the values.
    let mut values = onprem_values();
    values["sources"]["specs"] = json!({});
    let err = render("persona-onprem", "trusted", &values)
        .err()
        .expect("no Source accepted");
    assert!(err.contains("/sources/specs"), "{err}");
}

#[test]
fn the_gateway_and_the_detokenizer_speak_mutual_tls_with_the_files_their_secrets_hold() {
    let r = render("persona-onprem", "trusted", &onprem_values()).unwrap();
    // ci/test-values.yaml: the gateway's Secret has cert-manager's keys, the
    // de-tokenizer's is made from `persona dev-certs` files.
    for (name, service, secret, keys) in [
        (
            "trusted-gateway",
            "gateway",
            "persona-gateway-tls",
            ["ca.crt", "tls.crt", "tls.key"],
        ),
        (
            "trusted-detokenizer",
            "detokenizer",
            "persona-trusted-certs",
            ["ca.pem", "detokenizer.pem", "detokenizer.key"],
        ),
    ] {
        let sts: StatefulSet = r.one("StatefulSet", name);
        let pod = sts.spec.template.spec.unwrap();
        let dir = env_value(&pod, "PERSONA_TLS_DIR").unwrap_or_else(|| panic!("{name}: no PERSONA_TLS_DIR"));
        let mount = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == dir)
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {dir}"));
        assert_eq!(mount.read_only, Some(true), "{name}: the TLS files are read-only");
        let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name).unwrap();
        let source = volume
            .secret
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: {dir} is not a Secret"));
        assert_eq!(source.secret_name.as_deref(), Some(secret), "{name}");
        let items: Vec<(&str, &str)> = source
            .items
            .iter()
            .flatten()
            .map(|i| (i.key.as_str(), i.path.as_str()))
            .collect();
        // The names `persona SERVICE --tls-dir` reads: ca.pem, SERVICE.pem, SERVICE.key.
        let files = ["ca.pem".to_owned(), format!("{service}.pem"), format!("{service}.key")];
        let expected: Vec<(&str, &str)> = keys.iter().copied().zip(files.iter().map(String::as_str)).collect();
        assert_eq!(items, expected, "{name}");
        assert_eq!(
            source.default_mode,
            Some(0o440),
            "{name}: the key is not world-readable"
        );
    }

    let sts: StatefulSet = r.one("StatefulSet", "trusted-gateway");
    let pod = sts.spec.template.spec.unwrap();
    assert_eq!(env_value(&pod, "PERSONA_GRPC_ADDR").as_deref(), Some("0.0.0.0:50061"));
    // The kubelet's gRPC probe has no client certificate.
    let container = &pod.containers[0];
    assert!(container.readiness_probe.as_ref().unwrap().grpc.is_none());
    assert!(container.liveness_probe.as_ref().unwrap().grpc.is_none());

    let sts: StatefulSet = r.one("StatefulSet", "trusted-detokenizer");
    let pod = sts.spec.template.spec.unwrap();
    assert_eq!(
        env_value(&pod, "PERSONA_VAULT_ADDR").as_deref(),
        Some("https://trusted-gateway.banking.svc:50061"),
        "the gateway's Service, whose name its certificate carries"
    );
    assert_eq!(
        env_value(&pod, "PERSONA_CHANNELS").as_deref(),
        Some(
            "push=https://notify.bank.internal/persona,\
             email=smtp+starttls://smtp.bank.internal:587?from=offers@bank.example,\
             sms=file:/var/lib/persona/deliveries.jsonl"
        )
    );
    assert_eq!(env_value(&pod, "PERSONA_OUT").as_deref(), Some("/var/lib/persona"));

    // The de-tokenizer may reach the gateway's gRPC port, and the gateway lets it in
    // whatever ingestFrom says.
    let mut values = onprem_values();
    values["networkPolicy"] = json!({"ingestFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "core-banking"}}}]});
    let r = render("persona-onprem", "trusted", &values).unwrap();
    let selects = |peer: &k8s_openapi::api::networking::v1::NetworkPolicyPeer, component: &str| {
        peer.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .is_some_and(|l| l.get("app.kubernetes.io/name").map(String::as_str) == Some(component))
    };
    let detokenizer: NetworkPolicy = r.one("NetworkPolicy", "trusted-detokenizer");
    let egress = detokenizer.spec.unwrap().egress.unwrap();
    let to_gateway = egress
        .iter()
        .find(|rule| rule.to.iter().flatten().any(|p| selects(p, "persona-gateway")))
        .expect("an egress rule to the gateway");
    let ports: Vec<_> = to_gateway.ports.iter().flatten().map(|p| p.port.clone()).collect();
    assert_eq!(ports, [Some(IntOrString::Int(50061))]);
    // The channels: the webhook's https and SMTP submission.
    let channel_ports: Vec<_> = egress
        .last()
        .unwrap()
        .ports
        .iter()
        .flatten()
        .map(|p| p.port.clone())
        .collect();
    assert_eq!(
        channel_ports,
        [Some(IntOrString::Int(443)), Some(IntOrString::Int(587))]
    );
    let gateway: NetworkPolicy = r.one("NetworkPolicy", "trusted-gateway");
    let ingress = gateway.spec.unwrap().ingress.unwrap();
    assert!(
        ingress.iter().any(
            |rule| rule.from.iter().flatten().any(|p| selects(p, "persona-detokenizer"))
                && rule
                    .ports
                    .iter()
                    .flatten()
                    .any(|p| p.port == Some(IntOrString::String("grpc".to_owned())))
        ),
        "the gateway admits the de-tokenizer on grpc"
    );
}

#[test]
fn the_trusted_chart_refuses_what_the_services_could_not_run_with() {
    let cases = [
        (
            json!({"gateway": {"tls": {"secretName": ""}}}),
            "/gateway/tls/secretName",
        ),
        (
            json!({"detokenizer": {"tls": {"secretName": ""}}}),
            "/detokenizer/tls/secretName",
        ),
        (
            json!({"detokenizer": {"channels": {"sms": {"sink": "webhook"}}}}),
            "/detokenizer/channels/sms/url",
        ),
        (
            json!({"detokenizer": {"channels": {"push": {"url": "http://notify.bank.internal"}}}}),
            "/detokenizer/channels/push/url",
        ),
        (
            json!({"detokenizer": {"channels": {"smtp": {"host": ""}}}}),
            "detokenizer.channels.email.sink is smtp: set detokenizer.channels.smtp.host and .from",
        ),
        (json!({"bus": {"partitions": 0}}), "/bus/partitions"),
        (json!({"bus": {"prefix": "persona prod"}}), "/bus/prefix"),
        (
            json!({"sources": {"specs": {"card-swipes": {"stream": "cards", "event": "swipe", "time": {"field": "TS"}, "fields": {}}}}}),
            "sources.specs.card-swipes reads the Redis stream cards: set sources.redis.url or sources.redis.urlSecret",
        ),
        (
            json!({"gateway": {"enabled": false}}),
            "detokenizer.vaultAddress: the gateway is not in this release",
        ),
    ];
    for (over, expected) in cases {
        let mut values = onprem_values();
        merge(&mut values, &over);
        let err = render("persona-onprem", "trusted", &values)
            .err()
            .unwrap_or_else(|| panic!("{over} was accepted"));
        assert!(err.contains(expected), "{over}: {err}");
    }
    // With a stream source and its Redis, and the gateway of another release.
    let mut values = onprem_values();
    merge(
        &mut values,
        &json!({
            "sources": {
                "specs": {"card-swipes": {"stream": "cards", "event": "swipe", "time": {"field": "TS"}, "fields": {}}},
                "redis": {"urlSecret": {"name": "persona-source-redis", "key": "url"}}
            },
            "gateway": {"enabled": false},
            "detokenizer": {"vaultAddress": "https://vault.trusted.svc:50061"}
        }),
    );
    let r = render("persona-onprem", "trusted", &values).unwrap();
    let sts: StatefulSet = r.one("StatefulSet", "trusted-detokenizer");
    let pod = sts.spec.template.spec.unwrap();
    assert_eq!(
        env_value(&pod, "PERSONA_VAULT_ADDR").as_deref(),
        Some("https://vault.trusted.svc:50061")
    );
}

/// `over` merged into `values`, maps key by key, as Helm merges values files.
fn merge(values: &mut Value, over: &Value) {
    match (values, over) {
        (Value::Object(v), Value::Object(o)) => {
            for (k, x) in o {
                merge(v.entry(k.clone()).or_insert(Value::Null), x);
            }
        }
        (v, o) => *v = o.clone(),
    }
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

#[test]
fn leader_election_may_touch_only_the_operators_lease_in_the_release_namespace() {
    for values in [json!({}), json!({"operator": {"watchNamespace": "payments"}})] {
        let r = render("persona", "persona", &values).unwrap();
        let role: Role = r.one("Role", "persona-operator-lease");
        assert_eq!(role.metadata.namespace.as_deref(), Some("banking"), "{values}");
        let rules = role.rules.unwrap();
        let mut verbs = Vec::new();
        for rule in &rules {
            assert_eq!(
                rule.api_groups.as_deref(),
                Some(&["coordination.k8s.io".to_owned()][..])
            );
            assert_eq!(rule.resources.as_deref(), Some(&["leases".to_owned()][..]));
            for verb in &rule.verbs {
                assert!(["get", "create", "update"].contains(&verb.as_str()), "{verb} on leases");
                // Only create cannot name the object it applies to.
                if verb != "create" {
                    assert_eq!(
                        rule.resource_names.as_deref(),
                        Some(&["persona-operator".to_owned()][..]),
                        "{verb} on any lease"
                    );
                }
                verbs.push(verb.clone());
            }
        }
        verbs.sort_unstable();
        assert_eq!(verbs, ["create", "get", "update"]);
        let binding: RoleBinding = r.one("RoleBinding", "persona-operator-lease");
        assert_eq!(binding.metadata.namespace.as_deref(), Some("banking"));
        assert_eq!(
            (binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()),
            ("Role", "persona-operator-lease")
        );
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(
            (subject.name.as_str(), subject.namespace.as_deref()),
            ("persona-operator", Some("banking"))
        );
        // Nothing else anywhere grants leases.
        for kind in ["Role", "ClusterRole"] {
            for object in r.of_kind(kind) {
                if object["metadata"]["name"] != "persona-operator-lease" {
                    let text = object["rules"].to_string();
                    assert!(
                        !text.contains("leases") && !text.contains("coordination"),
                        "{kind}: {text}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_operator_may_read_the_shards_metrics_and_the_shards_let_it() {
    let metrics_port = persona_operator::resources::METRICS_PORT;
    let r = render(
        "persona",
        "persona",
        &json!({"networkPolicy": {"metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}}),
    )
    .unwrap();
    let operator: NetworkPolicy = r.one("NetworkPolicy", "persona-operator");
    let egress = operator.spec.unwrap().egress.unwrap();
    let to_shards = egress
        .iter()
        .find(|rule| {
            rule.to.iter().flatten().any(|peer| {
                peer.pod_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref())
                    .is_some_and(|l| l.get("app.kubernetes.io/name").map(String::as_str) == Some("persona-shard"))
            })
        })
        .expect("an egress rule to the shard pods");
    let ports: Vec<_> = to_shards.ports.iter().flatten().map(|p| p.port.clone()).collect();
    assert_eq!(ports, [Some(IntOrString::Int(metrics_port))], "only their metrics port");

    let shards: NetworkPolicy = r.one("NetworkPolicy", "persona-shard");
    let ingress = shards.spec.unwrap().ingress.unwrap();
    let metrics = ingress
        .iter()
        .find(|rule| {
            rule.ports
                .iter()
                .flatten()
                .any(|p| p.port == Some(IntOrString::String("metrics".to_owned())))
        })
        .unwrap();
    let from = metrics.from.clone().unwrap();
    assert!(
        from.iter().any(|peer| peer
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .is_some_and(|l| l.get("app.kubernetes.io/name").map(String::as_str) == Some("persona-operator"))),
        "the operator scrapes the shards even when metricsFrom names only Prometheus"
    );
    assert_eq!(from.len(), 2, "the operator and metricsFrom");
}

#[test]
fn the_dashboards_render_and_show_only_metrics_the_code_exposes() {
    let r = render("persona", "persona", &json!({})).unwrap();
    let dashboard = assert_dashboard_shows(&r, "persona-dashboard", "persona.json", CLOUD_METRICS);
    let variables: Vec<_> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "cluster"]);

    let r = render("persona-onprem", "trusted", &onprem_values()).unwrap();
    assert_dashboard_shows(&r, "trusted-dashboard", "persona-trusted.json", TRUSTED_METRICS);

    // Another sidecar's label instead of the default (null drops a default key),
    // another namespace, or no dashboard at all.
    let r = render(
        "persona",
        "persona",
        &json!({"grafana": {"dashboard": {
            "labels": {"dashboards": "persona", "grafana_dashboard": null},
            "namespace": "monitoring"
        }}}),
    )
    .unwrap();
    let cm: ConfigMap = r.one("ConfigMap", "persona-dashboard");
    assert_eq!(cm.metadata.namespace.as_deref(), Some("monitoring"));
    let labels = cm.metadata.labels.unwrap();
    assert_eq!(labels.get("dashboards").map(String::as_str), Some("persona"));
    assert!(!labels.contains_key("grafana_dashboard"));
    let r = render(
        "persona",
        "persona",
        &json!({"grafana": {"dashboard": {"enabled": false}}}),
    )
    .unwrap();
    assert!(r.of_kind("ConfigMap").is_empty());
}

#[test]
fn the_alert_rules_render_when_enabled_and_each_says_how_bad_and_what() {
    let r = render("persona", "persona", &json!({})).unwrap();
    assert!(
        r.of_kind("PrometheusRule").is_empty() && r.of_kind("PodMonitor").is_empty(),
        "off by default: the Prometheus Operator's CRDs may not exist"
    );
    let r = render(
        "persona",
        "persona",
        &json!({"prometheus": {"rules": {"enabled": true, "alertLabels": {"team": "payments"}}, "podMonitors": {"enabled": true}}}),
    )
    .unwrap();
    let rules = alert_rules(&r);
    assert_eq!(
        assert_alerts_complete(&rules, CLOUD_METRICS),
        [
            "PersonaOperatorNoLeader",
            "PersonaOperatorReconcileErrors",
            "PersonaOperatorSplitBrain",
            "PersonaPartitionLagHigh",
            "PersonaPartitionStalled",
            "PersonaShardDown",
            "PersonaShardNotReady",
            "PersonaShardsAtMaximum",
            "PersonaShardsMissing"
        ]
    );
    assert!(rules.iter().all(|rule| rule["labels"]["team"] == "payments"));
    let rule = |name: &str| {
        let found = rules.iter().find(|r| r["alert"] == name).unwrap();
        found["expr"].as_str().unwrap().to_owned()
    };
    assert!(rule("PersonaShardsAtMaximum").contains(">= max by (namespace, cluster) (persona_operator_max_shards)"));
    assert!(rule("PersonaOperatorNoLeader").contains("absent(persona_operator_leader"));

    // The PodMonitors give the jobs the rules select.
    let shards = r
        .of_kind("PodMonitor")
        .into_iter()
        .find(|m| m["metadata"]["name"] == "persona-shards")
        .unwrap();
    assert_eq!(shards["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    assert_eq!(
        shards["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "persona-shard"
    );
    assert!(rule("PersonaShardDown").contains(&format!(r#"up{{job="{}"}}"#, pod_monitor_job(shards))));
    let operator = r
        .of_kind("PodMonitor")
        .into_iter()
        .find(|m| m["metadata"]["name"] == "persona-operator")
        .unwrap();
    let endpoint = &operator["spec"]["podMetricsEndpoints"][0];
    assert_eq!(
        (endpoint["port"].as_str(), endpoint["path"].as_str()),
        (Some("http"), Some("/metrics"))
    );
    assert_eq!(
        endpoint["honorLabels"].as_bool(),
        Some(true),
        "the gauges' namespace label is the PersonaCluster's"
    );
    assert_eq!(pod_monitor_job(operator), "persona-operator");

    // Every cluster's maximum comes from the operator, so the alert stands without
    // the chart's own PersonaCluster.
    let r = render(
        "persona",
        "persona",
        &json!({"cluster": {"create": false}, "prometheus": {"rules": {"enabled": true}}}),
    )
    .unwrap();
    assert!(
        alert_rules(&r)
            .iter()
            .any(|rule| rule["alert"] == "PersonaShardsAtMaximum")
    );

    let mut values = onprem_values();
    values["prometheus"] = json!({"rules": {"enabled": true}, "podMonitors": {"enabled": true}});
    let r = render("persona-onprem", "trusted", &values).unwrap();
    assert_eq!(
        assert_alerts_complete(&alert_rules(&r), TRUSTED_METRICS),
        [
            "PersonaDetokenizerRetrying",
            "PersonaDetokenizerUnresolvable",
            "PersonaGatewayFailing",
            "PersonaGatewayRefusingRecords",
            "PersonaTrustedServiceDown"
        ]
    );
    let mut jobs: Vec<_> = r.of_kind("PodMonitor").into_iter().map(pod_monitor_job).collect();
    jobs.sort_unstable();
    assert_eq!(jobs, ["persona-detokenizer", "persona-gateway"]);
    let report = lint(
        "persona",
        &json!({"prometheus": {"rules": {"enabled": true}, "podMonitors": {"enabled": true}}}),
        "v1.30.0",
    );
    assert_eq!(problems(&report), Vec::<String>::new());
}
