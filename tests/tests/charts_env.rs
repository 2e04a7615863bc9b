//! The deployments against the commands they run. For every container that runs
//! `persona SUBCOMMAND`, in the two charts (rendered by the real Helm engine) and in
//! the shard StatefulSet the operator builds: every `PERSONA_*` variable (and
//! `AWS_REGION`) it sets is one `persona SUBCOMMAND` reads, and every option the
//! subcommand requires is given, by a variable or an argument. The contract is the
//! command's own `--help`: clap prints each flag's variable as `[env: NAME=]` and the
//! required flags in the `Usage:` line.
//!
//! The charts are rendered by operator/tests/charts/helm.py with the Python that
//! `PERSONA_TEST_HELM_PYTHON` names (helm-python-sdk; `./scripts/test` installs it),
//! like operator/tests/charts.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use persona_operator::crd::PersonaCluster;
use persona_operator::resources::{Desired, ShardDefaults, children};
use persona_tests::persona_command;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm_python() -> String {
    std::env::var("PERSONA_TEST_HELM_PYTHON").unwrap_or_else(|_| {
        panic!(
            "PERSONA_TEST_HELM_PYTHON is not set: this test renders the charts with the real Helm engine. \
             Run ./scripts/test (it installs helm-python-sdk into .work/helm-venv and sets it)"
        )
    })
}

/// Every object `chart` renders with `values` (release `persona`, namespace
/// `banking`), as JSON.
fn render(chart: &str, values: &Value) -> Vec<Value> {
    let script = repo().join("operator/tests/charts/helm.py");
    let chart_dir = repo().join("charts").join(chart);
    let python = helm_python();
    let out = Command::new(&python)
        .arg(&script)
        .args(["render", chart_dir.to_str().expect("utf-8 path"), "persona", "banking"])
        .arg(values.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (PERSONA_TEST_HELM_PYTHON): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "helm.py printed no JSON (exit {:?}); is helm-python-sdk installed for {python}?\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if parsed.get("error").is_some() {
        panic!("helm cannot render charts/{chart} with {values}: {}", parsed["message"]);
    }
    let mut objects = Vec::new();
    for (path, text) in parsed["manifests"].as_object().expect("manifests") {
        if !path.ends_with(".yaml") {
            continue;
        }
        for doc in yaml_documents(text.as_str().expect("a manifest's text")) {
            let object: Value = serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{path}: {e}"));
            if !object.is_null() {
                objects.push(object);
            }
        }
    }
    objects
}

/// The documents of a multi-document YAML text as Helm writes it (`---` lines
/// between them), without those holding only comments.
fn yaml_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

fn values_file(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `over` merged into `base`, maps key by key (what Helm does with a second values
/// file).
fn merged(mut base: Value, over: &Value) -> Value {
    fn merge(base: &mut Value, over: &Value) {
        match (base, over) {
            (Value::Object(b), Value::Object(o)) => {
                for (k, v) in o {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (b, o) => *b = o.clone(),
        }
    }
    merge(&mut base, over);
    base
}

/// What `persona SUBCOMMAND --help` says the command reads.
#[derive(Debug)]
struct Contract {
    subcommand: String,
    /// Each long flag (`--redis`) and its environment variable, if it has one.
    options: BTreeMap<String, Option<String>>,
    /// The flags the `Usage:` line shows without brackets.
    required: Vec<String>,
}

impl Contract {
    fn of(subcommand: &str) -> Contract {
        let out = persona_command(&[subcommand, "--help"])
            .output()
            .expect("running persona");
        assert!(
            out.status.success(),
            "persona {subcommand} --help failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Contract::parse(subcommand, &String::from_utf8(out.stdout).expect("utf-8 help"))
    }

    fn parse(subcommand: &str, help: &str) -> Contract {
        let mut options = BTreeMap::new();
        let mut current = None;
        for line in help.lines() {
            if let Some(flag) = option_header(line) {
                options.insert(flag.clone(), None);
                current = Some(flag);
            }
            if let (Some(flag), Some(env)) = (&current, env_name(line)) {
                options.insert(flag.clone(), Some(env));
            }
        }
        let usage: Vec<&str> = help
            .lines()
            .skip_while(|l| !l.starts_with("Usage:"))
            .take_while(|l| !l.trim().is_empty())
            .collect();
        assert!(
            !usage.is_empty(),
            "persona {subcommand} --help has no Usage: line:\n{help}"
        );
        let required = required_flags(subcommand, &usage.join(" "));
        for flag in &required {
            assert!(
                options.contains_key(flag),
                "persona {subcommand} requires {flag}, which its --help does not describe"
            );
        }
        Contract {
            subcommand: subcommand.to_owned(),
            options,
            required,
        }
    }

    fn reads(&self, env: &str) -> bool {
        self.options.values().flatten().any(|e| e == env)
    }
}

/// The long flag an option's entry opens with: `  -q, --quiet` or `      --redis
/// <URL>` (help text lines are indented further).
fn option_header(line: &str) -> Option<String> {
    let rest = line.strip_prefix("  ")?;
    let long = match rest.strip_prefix("    ") {
        Some(long) => long,
        None => {
            let short = rest.get(..4)?;
            if !(short.starts_with('-') && short.ends_with(", ")) {
                return None;
            }
            rest.get(4..)?
        }
    };
    let name: String = long
        .strip_prefix("--")?
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!name.is_empty()).then(|| format!("--{name}"))
}

/// The variable of a `[env: NAME=]` (or, for hidden values, `[env: NAME]`) on `line`.
fn env_name(line: &str) -> Option<String> {
    let (_, after) = line.split_once("[env: ")?;
    let name: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The flags of a `Usage: persona SUBCOMMAND [OPTIONS] --a <A> --b <B>` line outside
/// brackets.
fn required_flags(subcommand: &str, usage: &str) -> Vec<String> {
    let tokens = usage.split_whitespace().skip_while(|t| *t != subcommand).skip(1);
    let mut depth = 0usize;
    let mut after_flag = false;
    let mut required = Vec::new();
    for token in tokens {
        let outside = depth + token.chars().take_while(|c| *c == '[').count() == 0;
        let flag = token.strip_prefix("--").filter(|_| outside);
        if let Some(flag) = flag {
            required.push(format!("--{}", flag.trim_end_matches("...")));
        } else if outside {
            // `<URL>` after `--redis` is its value; one on its own is an argument.
            assert!(
                after_flag || !token.starts_with('<'),
                "persona {subcommand} takes an argument {token}: this test knows only flags and variables"
            );
        }
        after_flag = flag.is_some();
        let opened = token.matches('[').count();
        let closed = token.matches(']').count();
        depth = (depth + opened).saturating_sub(closed);
    }
    required
}

/// A container found in a workload, with where it comes from.
#[derive(Debug)]
struct Found {
    /// `charts/persona-onprem (values: ci)`, or the operator.
    origin: String,
    /// `StatefulSet persona-gateway`.
    workload: String,
    container: Value,
}

impl Found {
    fn name(&self) -> String {
        format!(
            "{}: {} container {}",
            self.origin,
            self.workload,
            self.container["name"].as_str().unwrap_or("?")
        )
    }

    /// `persona SUBCOMMAND`'s subcommand when the container runs the persona image's
    /// entrypoint with it.
    fn subcommand(&self) -> Option<String> {
        let image = self.container["image"].as_str().unwrap_or_default();
        if self.container.get("command").is_some() || !image.contains("persona") {
            return None;
        }
        let args = self.container["args"].as_array()?;
        args.iter()
            .filter_map(Value::as_str)
            .find(|a| !a.starts_with('-'))
            .map(str::to_owned)
    }

    fn env_names(&self) -> Vec<String> {
        self.container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect()
    }

    fn arg_flags(&self) -> Vec<String> {
        self.container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|a| a.starts_with("--"))
            .map(|a| a.split('=').next().unwrap_or(a).to_owned())
            .collect()
    }

    /// What is wrong with this container against `contract`.
    fn problems(&self, contract: &Contract) -> Vec<String> {
        let name = self.name();
        let command = format!("`persona {}`", contract.subcommand);
        let mut problems = Vec::new();
        if self.container.get("envFrom").is_some() {
            problems.push(format!(
                "{name}: envFrom hides which variables it sets; list them under env"
            ));
        }
        let env = self.env_names();
        for var in &env {
            let checked = var.starts_with("PERSONA_") || var == "AWS_REGION";
            if checked && !contract.reads(var) {
                problems.push(format!("{name}: sets {var}, which {command} does not read"));
            }
        }
        let flags = self.arg_flags();
        for flag in &flags {
            if !contract.options.contains_key(flag) {
                problems.push(format!("{name}: passes {flag}, which {command} does not take"));
            }
        }
        for flag in &contract.required {
            let var = contract.options.get(flag).cloned().flatten();
            let by_env = var.as_ref().is_some_and(|v| env.contains(v));
            if !by_env && !flags.contains(flag) {
                problems.push(format!(
                    "{name}: {command} requires {flag} ({}), which the container does not give",
                    var.as_deref().unwrap_or("no variable")
                ));
            }
        }
        problems
    }
}

/// The containers (init containers too) of every workload among `objects`.
fn containers(origin: &str, objects: &[Value]) -> Vec<Found> {
    let mut found = Vec::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let pod = match kind {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => &object["spec"]["template"]["spec"],
            "CronJob" => &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            "Pod" => &object["spec"],
            _ => continue,
        };
        let workload = format!("{kind} {}", object["metadata"]["name"].as_str().unwrap_or("?"));
        for list in ["initContainers", "containers"] {
            for container in pod[list].as_array().into_iter().flatten() {
                found.push(Found {
                    origin: origin.to_owned(),
                    workload: workload.clone(),
                    container: container.clone(),
                });
            }
        }
    }
    found
}

/// Checks every persona container among `found` against its command's `--help`;
/// returns the subcommands seen, by origin.
fn check(found: &[Found]) -> BTreeSet<(String, String)> {
    let mut contracts: BTreeMap<String, Contract> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for f in found {
        let Some(subcommand) = f.subcommand() else {
            continue;
        };
        let contract = contracts
            .entry(subcommand.clone())
            .or_insert_with(|| Contract::of(&subcommand));
        problems.extend(f.problems(contract));
        seen.insert((f.origin.clone(), subcommand));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    seen
}

fn seen(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs.iter().map(|(o, s)| ((*o).to_owned(), (*s).to_owned())).collect()
}

#[test]
fn the_trusted_chart_sets_only_what_the_gateway_and_the_detokenizer_read() {
    let ci = values_file("charts/persona-onprem/ci/test-values.yaml");
    // Every optional variable on: the KMS endpoint, region, credentials and cache
    // bound, a stream source's Redis, channel responses, another gateway.
    let everything = merged(
        ci.clone(),
        &json!({
            "kms": {
                "endpoint": "https://kms.bank.internal",
                "region": "ap-south-1",
                "credentialsSecret": "persona-kms",
                "keyCacheMaxUses": 1_000_000
            },
            "sources": {
                "filesClaim": "persona-drop",
                "redis": {"urlSecret": {"name": "persona-source-redis", "key": "url"}},
                "specs": {"card-swipes": {
                    "stream": "cards:swipes",
                    "event": "swipe",
                    "time": {"field": "TS", "format": "rfc3339"},
                    "fields": {"CUST_ID": "key"}
                }}
            },
            "detokenizer": {
                "vaultAddress": "https://vault-gateway.trusted.svc:50061",
                "responses": {"enabled": true},
                "channels": {"sms": {"sink": "webhook", "url": "https://sms.bank.internal:8443/send"}}
            }
        }),
    );
    let local = merged(
        ci.clone(),
        &json!({"kms": {"provider": "local", "allowLocalForDevelopment": true}, "bus": {"passwordSecret": {"name": ""}}}),
    );
    // The Sources as objects of the namespace only (PERSONA_SOURCES_NAMESPACE, no
    // PERSONA_SPECS): the values' specs replaced, not merged.
    let mut from_kubernetes = merged(ci.clone(), &json!({"sources": {"fromKubernetes": true}}));
    from_kubernetes["sources"]["specs"] = json!({});
    for (label, values) in [
        ("ci", ci),
        ("everything", everything),
        ("local kms", local),
        ("sources from kubernetes", from_kubernetes),
    ] {
        let origin = format!("charts/persona-onprem (values: {label})");
        let objects = render("persona-onprem", &values);
        let seen_here = check(&containers(&origin, &objects));
        assert_eq!(
            seen_here,
            seen(&[(origin.as_str(), "detokenizer"), (origin.as_str(), "gateway")]),
            "{origin}: the persona containers"
        );
    }
}

#[test]
fn the_cloud_chart_and_the_operators_shards_set_only_what_operator_and_shard_read() {
    let with_password = json!({
        "operator": {"watchNamespace": "banking"},
        "cluster": {"bus": {"passwordSecret": {"name": "persona-redis", "key": "password"}}}
    });
    for (label, values) in [("defaults", json!({})), ("password", with_password)] {
        let origin = format!("charts/persona (values: {label})");
        let objects = render("persona", &values);
        let mut found = containers(&origin, &objects);

        // The shards the operator would run for the chart's PersonaCluster, with the
        // image settings the chart gives the operator.
        let operator_env = |name: &str| {
            found
                .iter()
                .find(|f| f.subcommand().as_deref() == Some("operator"))
                .and_then(|f| {
                    f.container["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"]
                        .as_str()
                        .map(str::to_owned)
                })
        };
        let defaults = ShardDefaults {
            image: operator_env("PERSONA_SHARD_IMAGE")
                .unwrap_or_else(|| panic!("{origin}: the operator gets no PERSONA_SHARD_IMAGE")),
            image_pull_policy: operator_env("PERSONA_SHARD_IMAGE_PULL_POLICY").filter(|p| !p.is_empty()),
        };
        let mut object = objects
            .iter()
            .find(|o| o["kind"] == "PersonaCluster")
            .unwrap_or_else(|| panic!("{origin}: no PersonaCluster rendered"))
            .clone();
        // What the API server adds, and the owner references need.
        object["metadata"]["uid"] = json!("5b0f3f7e-2d1c-4c8a-9a53-3c1f00c0ffee");
        let cluster: PersonaCluster =
            serde_json::from_value(object).unwrap_or_else(|e| panic!("{origin}: the PersonaCluster: {e}"));
        let spec = &cluster.spec;
        let assignment = persona_placement::plan(None, spec.partitions, spec.shards.min)
            .expect("a first plan")
            .assignment;
        let desired = Desired {
            assignment: &assignment,
            published_at: "2026-11-01T00:00:00Z",
            replicas: spec.shards.min,
        };
        let built = children(&cluster, &desired, &defaults).expect("the cluster's children");
        let shards = serde_json::to_value(&built.stateful_set).expect("a StatefulSet as JSON");
        let operator_origin = format!("the operator, for the PersonaCluster of {origin}");
        found.extend(containers(&operator_origin, &[shards]));

        assert_eq!(
            check(&found),
            seen(&[(origin.as_str(), "operator"), (operator_origin.as_str(), "shard")]),
            "the persona containers"
        );
    }
}

#[test]
fn the_help_parser_reads_variables_and_required_flags_in_both_layouts() {
    // `--help` with long help: each option's text on the lines below it.
    let long = "\
The trusted zone's ingest service

Usage: persona gateway [OPTIONS] --redis <URL> --specs <SPECS>

Options:
  -q, --quiet
          Less output on stderr

      --redis <URL>
          Redis URL (`redis://` or `rediss://`, with a password if any). Never logged
          
          [env: PERSONA_REDIS_URL]

      --specs <SPECS>
          Directory of Source YAML; see
          --data for the rest
          
          [env: PERSONA_SPECS=/etc/persona/specs]

      --poll <POLL>
          How often the drop directory is scanned
          
          [default: 1s]
";
    let c = Contract::parse("gateway", long);
    assert_eq!(c.required, ["--redis", "--specs"]);
    assert_eq!(c.options["--redis"].as_deref(), Some("PERSONA_REDIS_URL"));
    assert_eq!(c.options["--specs"].as_deref(), Some("PERSONA_SPECS"));
    assert_eq!(c.options["--poll"], None);
    assert_eq!(c.options["--quiet"], None);
    assert!(
        !c.options.contains_key("--data"),
        "a flag named in help text is not an option"
    );

    // Short help: the variable on the option's own line.
    let short = "\
Usage: persona operator [OPTIONS] --shard-image <SHARD_IMAGE> [--lease <L>]

Options:
      --watch-namespace <WATCH_NAMESPACE>  Watch this namespace only [env: PERSONA_WATCH_NAMESPACE=] [default: \"\"]
      --shard-image <SHARD_IMAGE>          The shard image [env: PERSONA_SHARD_IMAGE=]
      --lease <L>                          The Lease [env: PERSONA_LEASE_NAME=]
  -h, --help                               Print help
";
    let c = Contract::parse("operator", short);
    assert_eq!(c.required, ["--shard-image"]);
    assert!(c.reads("PERSONA_WATCH_NAMESPACE") && c.reads("PERSONA_LEASE_NAME"));
    assert_eq!(c.options["--help"], None);

    let container = Found {
        origin: "charts/x".to_owned(),
        workload: "Deployment x".to_owned(),
        container: json!({
            "name": "operator",
            "image": "ghcr.io/persona-dev/persona:0.1.0",
            "args": ["operator", "--lease=l", "--leader"],
            "env": [{"name": "PERSONA_WATCH_NAMESPACE", "value": ""}, {"name": "PERSONA_PORT", "value": "1"}]
        }),
    };
    assert_eq!(container.subcommand().as_deref(), Some("operator"));
    assert_eq!(
        container.problems(&c),
        [
            "charts/x: Deployment x container operator: sets PERSONA_PORT, which `persona operator` does not read",
            "charts/x: Deployment x container operator: passes --leader, which `persona operator` does not take",
            "charts/x: Deployment x container operator: `persona operator` requires --shard-image \
             (PERSONA_SHARD_IMAGE), which the container does not give",
        ]
    );
}
