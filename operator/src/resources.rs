//! The Kubernetes objects a PersonaCluster stands for, computed from it and the
//! assignment table: what the reconciler server-side applies. Pure: no API calls.

mod shards;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use persona_placement::Assignment;

use crate::crd::PersonaCluster;
use crate::error::{Error, Result};

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "persona-operator";
/// The shards' gRPC port (ingest, queries, forwarding between shards, health).
pub const GRPC_PORT: i32 = 50051;
/// The shards' Prometheus metrics port.
pub const METRICS_PORT: i32 = 9090;
/// The key of the assignment table in its ConfigMap.
pub const ASSIGNMENT_KEY: &str = "assignment.json";
/// Annotation of the assignment ConfigMap: when its epoch was first published
/// (RFC 3339), which times the hand-off before a scale-down.
pub const PUBLISHED_AT: &str = "persona.dev/published-at";
/// Annotation of the assignment ConfigMap: its epoch, for people reading it.
pub const EPOCH: &str = "persona.dev/epoch";

/// The names of a cluster's objects; all derive from the PersonaCluster's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// StatefulSet, ServiceAccount and PodDisruptionBudget; pods are `<shards>-<ordinal>`.
    pub shards: String,
    /// The headless Service that gives each shard pod a stable DNS name.
    pub peers: String,
    /// The client Service: any shard answers any token (it forwards to the owner).
    pub grpc: String,
    /// The ConfigMap with the assignment table.
    pub assignment: String,
    /// The ConfigMap with the FeatureSet, Offers and ContactPolicy the shards run.
    pub specs: String,
}

impl Names {
    pub fn of(cluster: &str) -> Names {
        Names {
            shards: format!("{cluster}-shard"),
            peers: format!("{cluster}-shard-peers"),
            grpc: format!("{cluster}-grpc"),
            assignment: format!("{cluster}-assignment"),
            specs: format!("{cluster}-specs"),
        }
    }
}

/// What the operator knows of shard pods that a PersonaCluster does not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardDefaults {
    /// The shard image when the spec names none: the operator's own image.
    pub image: String,
    /// `imagePullPolicy` of the shard container; Kubernetes' default when absent.
    pub image_pull_policy: Option<String>,
}

/// Everything a PersonaCluster owns, ready to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub assignment: ConfigMap,
    pub peers: Service,
    pub grpc: Service,
    pub stateful_set: StatefulSet,
    pub disruption_budget: PodDisruptionBudget,
}

/// The assignment table to publish and the shard pods to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired<'a> {
    pub assignment: &'a Assignment,
    /// When `assignment.epoch` was first published (RFC 3339).
    pub published_at: &'a str,
    /// StatefulSet replicas.
    pub replicas: u32,
}

/// The objects for `cluster` in the state `desired`.
pub fn children(cluster: &PersonaCluster, desired: &Desired<'_>, defaults: &ShardDefaults) -> Result<Children> {
    let owner = owner_reference(cluster)?;
    let namespace = cluster.namespace().ok_or(Error::MissingField {
        kind: "PersonaCluster",
        field: "metadata.namespace",
    })?;
    let name = cluster.name_any();
    let names = Names::of(&name);
    let meta = |object_name: &str, component: &str| ObjectMeta {
        name: Some(object_name.to_owned()),
        namespace: Some(namespace.clone()),
        labels: Some(labels(&name, component)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let selector = selector_labels(&name);

    let service_account = ServiceAccount {
        metadata: meta(&names.shards, "shard"),
        // Shards need no Kubernetes API: the table reaches them as a mounted file.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };

    let table = serde_json::to_string(desired.assignment).map_err(Error::Serialize)?;
    let mut cm_meta = meta(&names.assignment, "assignment");
    cm_meta.annotations = Some(BTreeMap::from([
        (EPOCH.to_owned(), desired.assignment.epoch.to_string()),
        (PUBLISHED_AT.to_owned(), desired.published_at.to_owned()),
    ]));
    let assignment = ConfigMap {
        metadata: cm_meta,
        data: Some(BTreeMap::from([(ASSIGNMENT_KEY.to_owned(), table)])),
        ..ConfigMap::default()
    };

    let peers = Service {
        metadata: meta(&names.peers, "shard"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            // Shards find each other (forwarding, partition hand-off) before they
            // are ready to serve clients.
            publish_not_ready_addresses: Some(true),
            selector: Some(selector.clone()),
            ports: Some(vec![
                port("grpc", GRPC_PORT, Some("grpc")),
                port("metrics", METRICS_PORT, None),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    let grpc = Service {
        metadata: meta(&names.grpc, "shard"),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector.clone()),
            ports: Some(vec![port("grpc", GRPC_PORT, Some("grpc"))]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    let disruption_budget = PodDisruptionBudget {
        metadata: meta(&names.shards, "shard"),
        spec: Some(PodDisruptionBudgetSpec {
            // One shard pod at a time: its partitions wait for it, nobody else's do.
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            }),
            // A pod that never became ready protects nothing; let drains evict it.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };

    let stateful_set = shards::stateful_set(
        cluster,
        &names,
        meta(&names.shards, "shard"),
        selector,
        desired,
        defaults,
    );

    Ok(Children {
        service_account,
        assignment,
        peers,
        grpc,
        stateful_set,
        disruption_budget,
    })
}

/// The controller owner reference that makes Kubernetes delete the children with
/// the cluster (no finalizer needed: nothing lives outside Kubernetes).
pub fn owner_reference(cluster: &PersonaCluster) -> Result<OwnerReference> {
    cluster.controller_owner_ref(&()).ok_or(Error::MissingField {
        kind: "PersonaCluster",
        field: "metadata.uid",
    })
}

/// Labels of every object of cluster `name`.
pub fn labels(name: &str, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert("app.kubernetes.io/component".to_owned(), component.to_owned());
    labels.insert("app.kubernetes.io/managed-by".to_owned(), FIELD_MANAGER.to_owned());
    labels.insert("app.kubernetes.io/part-of".to_owned(), "persona".to_owned());
    labels
}

/// The labels that select a cluster's shard pods (immutable in a StatefulSet).
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "persona-shard".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
    ])
}

fn port(name: &str, number: i32, app_protocol: Option<&str>) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        app_protocol: app_protocol.map(str::to_owned),
        ..ServicePort::default()
    }
}

#[cfg(test)]
mod tests;
