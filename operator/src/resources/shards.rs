//! The shard StatefulSet: one pod per shard ordinal, each with its own volume for
//! actor state and checkpoints, the assignment table mounted read-only.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    GRPCAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;

use super::{ASSIGNMENT_KEY, Desired, GRPC_PORT, METRICS_PORT, Names, ShardDefaults};
use crate::crd::PersonaCluster;

/// The unprivileged user of the shard image (distroless `nonroot`).
const SHARD_UID: i64 = 65532;
const DATA_DIR: &str = "/var/lib/persona";
const ASSIGNMENT_DIR: &str = "/etc/persona/assignment";
const SPECS_DIR: &str = "/etc/persona/specs";
/// Long enough for a shard to finish its batch and checkpoint every partition.
const TERMINATION_GRACE_SECONDS: i64 = 60;

pub(super) fn stateful_set(
    cluster: &PersonaCluster,
    names: &Names,
    metadata: ObjectMeta,
    selector: BTreeMap<String, String>,
    desired: &Desired<'_>,
    defaults: &ShardDefaults,
) -> StatefulSet {
    let spec = &cluster.spec;
    let pod_labels = metadata.labels.clone();
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: pod_labels,
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(names.shards.clone()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(SHARD_UID),
                run_as_group: Some(SHARD_UID),
                fs_group: Some(SHARD_UID),
                fs_group_change_policy: Some("OnRootMismatch".to_owned()),
                seccomp_profile: Some(runtime_default()),
                ..PodSecurityContext::default()
            }),
            // Spread shards over nodes so that one node's loss stops few partitions.
            topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "kubernetes.io/hostname".to_owned(),
                when_unsatisfiable: "ScheduleAnyway".to_owned(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector.clone()),
                    ..LabelSelector::default()
                }),
                ..TopologySpreadConstraint::default()
            }]),
            containers: vec![container(cluster, names, defaults)],
            volumes: Some(vec![
                Volume {
                    name: "assignment".to_owned(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: names.assignment.clone(),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "specs".to_owned(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: names.specs.clone(),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "tmp".to_owned(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        size_limit: Some(Quantity("64Mi".to_owned())),
                        ..EmptyDirVolumeSource::default()
                    }),
                    ..Volume::default()
                },
            ]),
            ..PodSpec::default()
        }),
    };

    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            labels: Some(selector.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), spec.storage.size.clone())])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };

    StatefulSet {
        metadata,
        spec: StatefulSetSpec {
            replicas: Some(i32::try_from(desired.replicas).unwrap_or(i32::MAX)),
            service_name: Some(names.peers.clone()),
            // Shards start and stop independently; ordering comes from the table.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // A removed ordinal's volume is kept: it may come back, and its partitions
            // were handed off before it went.
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".to_owned()),
                when_scaled: Some("Retain".to_owned()),
            }),
            revision_history_limit: Some(5),
            template,
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}

fn container(cluster: &PersonaCluster, names: &Names, defaults: &ShardDefaults) -> Container {
    let spec = &cluster.spec;
    let namespace = cluster.namespace().unwrap_or_default();
    // What `persona shard` reads (its flags' environment variables).
    let mut env = vec![
        field_env("PERSONA_SHARD_NAME", "metadata.name"),
        field_env(
            "PERSONA_SHARD_ORDINAL",
            "metadata.labels['apps.kubernetes.io/pod-index']",
        ),
        env("PERSONA_PARTITIONS", &spec.partitions.to_string()),
        env("PERSONA_REDIS_URL", &spec.bus.redis),
        env("PERSONA_REDIS_PREFIX", &spec.bus.prefix),
        env("PERSONA_DATA", DATA_DIR),
        env("PERSONA_SPECS", SPECS_DIR),
        env("PERSONA_ASSIGNMENT_FILE", &format!("{ASSIGNMENT_DIR}/{ASSIGNMENT_KEY}")),
        env("PERSONA_GRPC_ADDR", &format!("0.0.0.0:{GRPC_PORT}")),
        // Kubernetes expands $(PERSONA_SHARD_NAME), defined above.
        env(
            "PERSONA_ADVERTISE",
            &format!(
                "http://$(PERSONA_SHARD_NAME).{}.{namespace}.svc:{GRPC_PORT}",
                names.peers
            ),
        ),
        env("PERSONA_METRICS_ADDR", &format!("0.0.0.0:{METRICS_PORT}")),
    ];
    if let Some(secret) = &spec.bus.password_secret {
        env.push(EnvVar {
            name: "PERSONA_REDIS_PASSWORD".to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: secret.optional,
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    let grpc_probe = |period: i32, failures: i32| Probe {
        grpc: Some(GRPCAction {
            port: GRPC_PORT,
            ..GRPCAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    };
    Container {
        name: "shard".to_owned(),
        image: Some(spec.image.clone().unwrap_or_else(|| defaults.image.clone())),
        image_pull_policy: defaults.image_pull_policy.clone(),
        args: Some(vec!["shard".to_owned()]),
        env: Some(env),
        ports: Some(vec![
            container_port("grpc", GRPC_PORT),
            container_port("metrics", METRICS_PORT),
        ]),
        // Replaying a partition from its checkpoint may take a while after a crash.
        startup_probe: Some(grpc_probe(5, 60)),
        readiness_probe: Some(grpc_probe(5, 3)),
        liveness_probe: Some(grpc_probe(10, 6)),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR, false),
            mount("assignment", ASSIGNMENT_DIR, true),
            mount("specs", SPECS_DIR, true),
            mount("tmp", "/tmp", false),
        ]),
        ..Container::default()
    }
}

/// Requests of 500m CPU and 1Gi memory, a 2Gi memory limit and no CPU limit (a CPU
/// limit only throttles a shard that could have used an idle core).
pub(super) fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("500m".to_owned())),
            ("memory".to_owned(), Quantity("1Gi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), Quantity("2Gi".to_owned()))])),
        ..ResourceRequirements::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}
