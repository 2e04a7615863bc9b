use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use persona_placement::plan;

use super::*;
use crate::testing::{NAMESPACE, UID, cluster};

fn defaults() -> ShardDefaults {
    ShardDefaults {
        image: "ghcr.io/persona/persona:0.1.0".to_owned(),
        image_pull_policy: Some("IfNotPresent".to_owned()),
    }
}

fn build(c: &PersonaCluster, replicas: u32) -> Children {
    let assignment = plan(None, c.spec.partitions, replicas).unwrap().assignment;
    let desired = Desired {
        assignment: &assignment,
        published_at: "2026-11-01T00:00:00Z",
        replicas,
    };
    children(c, &desired, &defaults()).unwrap()
}

fn pod_spec(children: &Children) -> &PodSpec {
    children.stateful_set.spec.template.spec.as_ref().unwrap()
}

fn shard_container(children: &Children) -> &Container {
    &pod_spec(children).containers[0]
}

fn env_value<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

#[test]
fn every_child_is_owned_by_the_cluster_and_lives_in_its_namespace() {
    let ch = build(&cluster(64, 2, 4), 2);
    let metas = [
        &ch.service_account.metadata,
        &ch.assignment.metadata,
        &ch.peers.metadata,
        &ch.grpc.metadata,
        &ch.stateful_set.metadata,
        &ch.disruption_budget.metadata,
    ];
    for meta in metas {
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, UID);
        assert_eq!(owners[0].kind, "PersonaCluster");
        assert_eq!(owners[0].api_version, "persona.dev/v1alpha1");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some(NAMESPACE));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], FIELD_MANAGER);
        assert_eq!(labels["app.kubernetes.io/instance"], "prod");
    }
}

#[test]
fn children_serialize_with_their_kind_for_server_side_apply() {
    let ch = build(&cluster(64, 2, 4), 2);
    let kinds = [
        serde_json::to_value(&ch.service_account).unwrap(),
        serde_json::to_value(&ch.assignment).unwrap(),
        serde_json::to_value(&ch.peers).unwrap(),
        serde_json::to_value(&ch.stateful_set).unwrap(),
        serde_json::to_value(&ch.disruption_budget).unwrap(),
    ]
    .map(|v| {
        (
            v["apiVersion"].as_str().unwrap().to_owned(),
            v["kind"].as_str().unwrap().to_owned(),
        )
    });
    assert_eq!(
        kinds.map(|(a, k)| format!("{a} {k}")),
        [
            "v1 ServiceAccount",
            "v1 ConfigMap",
            "v1 Service",
            "apps/v1 StatefulSet",
            "policy/v1 PodDisruptionBudget"
        ]
    );
}

#[test]
fn the_stateful_set_runs_the_shards() {
    let c = cluster(64, 3, 6);
    let ch = build(&c, 3);
    let names = Names::of("prod");
    let sts = &ch.stateful_set.spec;
    assert_eq!(sts.replicas, Some(3));
    assert_eq!(sts.service_name.as_deref(), Some(names.peers.as_str()));
    assert_eq!(sts.pod_management_policy.as_deref(), Some("Parallel"));
    // The selector selects the template's pods.
    let selector = sts.selector.match_labels.as_ref().unwrap();
    let template_labels = sts.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert!(selector.iter().all(|(k, v)| template_labels.get(k) == Some(v)));
    let claim = &sts.volume_claim_templates.as_ref().unwrap()[0];
    let requests = claim
        .spec
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap();
    assert_eq!(requests["storage"], Quantity("10Gi".to_owned()));

    let pod = pod_spec(&ch);
    assert_eq!(pod.service_account_name.as_deref(), Some(names.shards.as_str()));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let assignment_volume = pod.volumes.iter().flatten().find(|v| v.name == "assignment").unwrap();
    assert_eq!(assignment_volume.config_map.as_ref().unwrap().name, names.assignment);
    let specs_volume = pod.volumes.iter().flatten().find(|v| v.name == "specs").unwrap();
    assert_eq!(specs_volume.config_map.as_ref().unwrap().name, "prod-specs");

    let shard = shard_container(&ch);
    assert_eq!(shard.image.as_deref(), Some("ghcr.io/persona/persona:0.1.0"));
    assert_eq!(shard.args.as_deref(), Some(&["shard".to_owned()][..]));
    assert_eq!(env_value(shard, "PERSONA_PARTITIONS"), Some("64"));
    assert_eq!(
        env_value(shard, "PERSONA_REDIS_URL"),
        Some("rediss://persona-redis:6379")
    );
    assert_eq!(env_value(shard, "PERSONA_REDIS_PREFIX"), Some("persona"));
    assert_eq!(env_value(shard, "PERSONA_SPECS"), Some("/etc/persona/specs"));
    assert_eq!(env_value(shard, "PERSONA_GRPC_ADDR"), Some("0.0.0.0:50051"));
    assert_eq!(env_value(shard, "PERSONA_METRICS_ADDR"), Some("0.0.0.0:9090"));
    assert_eq!(
        env_value(shard, "PERSONA_ASSIGNMENT_FILE"),
        Some("/etc/persona/assignment/assignment.json")
    );
    // Each shard tells the others where it serves: its own pod's stable name.
    assert_eq!(
        env_value(shard, "PERSONA_ADVERTISE"),
        Some("http://$(PERSONA_SHARD_NAME).prod-shard-peers.banking.svc:50051")
    );
    let position = |name: &str| shard.env.iter().flatten().position(|e| e.name == name).unwrap();
    assert!(
        position("PERSONA_SHARD_NAME") < position("PERSONA_ADVERTISE"),
        "Kubernetes expands only variables defined before"
    );
    assert!(shard.readiness_probe.as_ref().unwrap().grpc.is_some());
    let resources = shard.resources.as_ref().unwrap();
    assert_eq!(resources.requests.as_ref().unwrap()["cpu"], Quantity("500m".to_owned()));
    assert_eq!(resources.limits.as_ref().unwrap()["memory"], Quantity("2Gi".to_owned()));
}

#[test]
fn shard_pods_run_unprivileged_on_a_read_only_root() {
    let ch = build(&cluster(8, 1, 2), 1);
    let pod = pod_spec(&ch).security_context.as_ref().unwrap();
    assert_eq!(pod.run_as_non_root, Some(true));
    assert_eq!(pod.run_as_user, Some(65532));
    assert_eq!(pod.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let container = shard_container(&ch).security_context.as_ref().unwrap();
    assert_eq!(container.read_only_root_filesystem, Some(true));
    assert_eq!(container.allow_privilege_escalation, Some(false));
    assert_eq!(container.run_as_non_root, Some(true));
    assert_eq!(
        container.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    // Writable places are volumes.
    let mounts: Vec<_> = shard_container(&ch)
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.as_str(), m.read_only.unwrap_or(false)))
        .collect();
    assert_eq!(
        mounts,
        [
            ("/var/lib/persona", false),
            ("/etc/persona/assignment", true),
            ("/etc/persona/specs", true),
            ("/tmp", false)
        ]
    );
}

#[test]
fn the_spec_overrides_image_resources_storage_and_adds_the_redis_password() {
    let mut c = cluster(8, 1, 2);
    c.spec.image = Some("registry.bank.internal/persona:1.2.3".to_owned());
    c.spec.storage.size = Quantity("200Gi".to_owned());
    c.spec.storage.storage_class_name = Some("fast-ssd".to_owned());
    c.spec.resources = Some(ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".to_owned(), Quantity("4".to_owned()))])),
        ..ResourceRequirements::default()
    });
    c.spec.bus.password_secret = Some(SecretKeySelector {
        name: "redis-auth".to_owned(),
        key: "password".to_owned(),
        optional: None,
    });
    let ch = build(&c, 2);
    let shard = shard_container(&ch);
    assert_eq!(shard.image.as_deref(), Some("registry.bank.internal/persona:1.2.3"));
    assert_eq!(
        shard.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"],
        Quantity("4".to_owned())
    );
    let password = shard
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "PERSONA_REDIS_PASSWORD")
        .unwrap();
    assert!(
        password.value.is_none(),
        "the password comes from the Secret, never inline"
    );
    let secret = password.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((secret.name.as_str(), secret.key.as_str()), ("redis-auth", "password"));
    let claim = ch.stateful_set.spec.volume_claim_templates.as_ref().unwrap()[0]
        .spec
        .clone()
        .unwrap();
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast-ssd"));
    assert_eq!(
        claim.resources.unwrap().requests.unwrap()["storage"],
        Quantity("200Gi".to_owned())
    );
}

#[test]
fn the_config_map_carries_the_table_and_its_epoch() {
    let c = cluster(10, 1, 3);
    let assignment = plan(None, 10, 3).unwrap().assignment;
    let desired = Desired {
        assignment: &assignment,
        published_at: "2026-11-01T00:00:00Z",
        replicas: 3,
    };
    let ch = children(&c, &desired, &defaults()).unwrap();
    let data = ch.assignment.data.as_ref().unwrap();
    let parsed: Assignment = serde_json::from_str(&data[ASSIGNMENT_KEY]).unwrap();
    assert_eq!(parsed, assignment);
    let annotations = ch.assignment.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[EPOCH], "1");
    assert_eq!(annotations[PUBLISHED_AT], "2026-11-01T00:00:00Z");
}

#[test]
fn services_and_the_disruption_budget_select_the_shard_pods() {
    let ch = build(&cluster(8, 1, 2), 2);
    let selector = selector_labels("prod");
    let peers = ch.peers.spec.as_ref().unwrap();
    assert_eq!(peers.cluster_ip.as_deref(), Some("None"));
    assert_eq!(peers.publish_not_ready_addresses, Some(true));
    assert_eq!(peers.selector.as_ref(), Some(&selector));
    let grpc = ch.grpc.spec.as_ref().unwrap();
    assert_eq!(grpc.selector.as_ref(), Some(&selector));
    let port = &grpc.ports.as_ref().unwrap()[0];
    assert_eq!((port.port, port.app_protocol.as_deref()), (GRPC_PORT, Some("grpc")));
    let pdb = ch.disruption_budget.spec.as_ref().unwrap();
    assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(pdb.selector.as_ref().unwrap().match_labels.as_ref(), Some(&selector));
}

#[test]
fn names_fit_kubernetes_limits_at_the_longest_cluster_name() {
    let longest = "a".repeat(crate::decision::MAX_NAME_LEN);
    let n = Names::of(&longest);
    // Pod names `<sts>-<ordinal>` must be DNS labels, Services DNS-1035 labels.
    for name in [format!("{}-99999", n.shards), n.peers, n.grpc, n.assignment] {
        assert!(name.len() <= 63, "{name} is {} characters", name.len());
    }
}

#[test]
fn a_cluster_without_a_uid_cannot_own_children() {
    let mut c = cluster(8, 1, 2);
    c.metadata.uid = None;
    let assignment = plan(None, 8, 1).unwrap().assignment;
    let desired = Desired {
        assignment: &assignment,
        published_at: "2026-11-01T00:00:00Z",
        replicas: 1,
    };
    let err = children(&c, &desired, &defaults()).unwrap_err();
    assert_eq!(err.to_string(), "PersonaCluster has no metadata.uid");
}
