//! `PersonaCluster`: one persona deployment in the cloud zone (DESIGN.md §3).

use k8s_openapi::api::core::v1::{ResourceRequirements, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The shard pods of one persona deployment and how they scale. Customer tokens are
/// hashed into `partitions`; each shard pod owns a share of the partitions, per an
/// assignment table with an epoch that the operator publishes in a ConfigMap. The
/// operator keeps a StatefulSet, its Services, a PodDisruptionBudget, a
/// ServiceAccount and that table in step with this object.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "persona.dev",
    version = "v1alpha1",
    kind = "PersonaCluster",
    namespaced,
    status = "PersonaClusterStatus",
    derive = "PartialEq",
    shortname = "pc",
    category = "persona",
    doc = "A persona deployment in the cloud zone: sharded per-customer actors fed by the bus.",
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.partitions"),
    printcolumn(name = "Shards", type_ = "integer", json_path = ".status.shards"),
    printcolumn(name = "Ready Shards", type_ = "integer", json_path = ".status.readyShards"),
    printcolumn(name = "Epoch", type_ = "integer", json_path = ".status.epoch"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 40")
        .message("the name must be at most 40 characters: it prefixes the shard pods' names")
)]
#[x_kube(validation = Rule::new("self.shards.max <= self.partitions")
    .message("shards.max must not exceed partitions: a shard without a partition does nothing"))]
// Not `deny_unknown_fields`: the API server prunes unknown fields anyway, and an
// operator must still read objects written under a newer version of the CRD.
#[serde(rename_all = "camelCase")]
pub struct PersonaClusterSpec {
    /// Number of partitions the customer tokens are hashed into (partition = hash(token)
    /// mod partitions): the unit of ownership, of the bus (one stream per partition) and
    /// of rebalancing. Fixed at creation, since changing it would move every customer;
    /// at least shards.max.
    #[x_kube(validation = Rule::new("self == oldSelf").message("partitions is fixed at creation"))]
    #[schemars(range(min = 1, max = 65536))]
    pub partitions: u32,
    /// Bounds on the number of shard pods.
    pub shards: ShardsSpec,
    /// When to add and remove shard pods.
    #[serde(default)]
    pub scaling: ScalingSpec,
    /// Each shard pod's persistent volume (actor state and checkpoints).
    #[serde(default)]
    pub storage: StorageSpec,
    /// Where events come from and matches go.
    pub bus: BusSpec,
    /// The FeatureSet (in this namespace) the shards compute.
    #[schemars(length(min = 1, max = 253))]
    pub feature_set: String,
    /// The shard container image; the operator's default (the image it runs itself)
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Compute resources of each shard container; when absent, requests of 500m CPU
    /// and 1Gi memory and a 2Gi memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Bounds on the number of shard pods; the autoscaler stays within them.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("shards.min must not exceed shards.max"))]
#[serde(rename_all = "camelCase")]
pub struct ShardsSpec {
    /// The fewest shard pods, also the number at creation.
    #[schemars(range(min = 1))]
    pub min: u32,
    /// The most shard pods; at most partitions.
    #[schemars(range(min = 1))]
    pub max: u32,
}

/// Targets of the autoscaler: it adds shards when either target is exceeded and
/// removes them when the load has stayed low for `scaleDownAfter`.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingSpec {
    /// Events per second one shard pod should handle.
    #[serde(default = "default_events_per_second")]
    #[schemars(range(min = 1))]
    pub target_events_per_second: u64,
    /// Bus entries waiting per shard pod (the partitions' lag) above which a shard
    /// is added.
    #[serde(default = "default_target_lag")]
    #[schemars(range(min = 1))]
    pub target_lag: u64,
    /// How long the load must stay low before a shard is removed (Go duration, e.g.
    /// `10m`): the stabilization window that keeps the count from flapping.
    #[serde(default = "default_scale_down_after")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s')")
        .message("scaleDownAfter must not be negative"))]
    pub scale_down_after: Duration,
    /// The most shards added or removed by one decision.
    #[serde(default = "default_max_step")]
    #[schemars(range(min = 1))]
    pub max_step: u32,
    /// Resident memory per shard pod above which a shard is added (a quantity, e.g.
    /// `1500Mi`); memory does not drive scaling when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_memory: Option<Quantity>,
}

impl Default for ScalingSpec {
    fn default() -> Self {
        ScalingSpec {
            target_events_per_second: default_events_per_second(),
            target_lag: default_target_lag(),
            scale_down_after: default_scale_down_after(),
            max_step: default_max_step(),
            target_memory: None,
        }
    }
}

fn default_events_per_second() -> u64 {
    50_000
}

fn default_target_lag() -> u64 {
    10_000
}

fn default_max_step() -> u32 {
    4
}

fn default_scale_down_after() -> Duration {
    std::time::Duration::from_secs(600).into()
}

/// The persistent volume of each shard pod.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Capacity requested for each shard pod's volume.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// StorageClass of the volumes; the cluster's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".to_owned())
}

/// The bus between the zones: Redis Streams, one stream per partition.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BusSpec {
    /// Redis URL, `redis://host:port` or `rediss://host:port` for TLS. Keep the
    /// password out of it: use `passwordSecret`.
    #[schemars(regex(pattern = r"^rediss?://[^\s]+$"))]
    pub redis: String,
    /// A key of a Secret in this namespace holding the Redis password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeySelector>,
    /// Prefix of every key persona uses on that Redis; the trusted zone's gateway and
    /// de-tokenizer must use the same.
    #[serde(default = "default_prefix")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9:_.-]+$"))]
    pub prefix: String,
}

fn default_prefix() -> String {
    "persona".to_owned()
}

/// What the operator last did and saw.
#[derive(JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonaClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Shard pods the StatefulSet is asked to run.
    #[serde(default)]
    pub shards: u32,
    /// Shard pods that are ready.
    #[serde(default)]
    pub ready_shards: u32,
    /// Epoch of the published assignment table; shards process a partition only under
    /// the epoch that gives it to them.
    #[serde(default)]
    pub epoch: u64,
    /// The partitions of each shard under `epoch` (the full table is in the
    /// `<name>-assignment` ConfigMap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["shard"]))]
    pub assignment: Vec<ShardPartitions>,
    /// The shard count the autoscaler asks for (within the bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_shards: Option<u32>,
    /// Why the autoscaler asks for that count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_reason: Option<String>,
    /// The load the autoscaler last read from the shards' metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadStatus>,
    /// Ready, Progressing, Rebalancing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The partitions one shard owns.
#[derive(JsonSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardPartitions {
    /// The shard's ordinal (its pod is `<name>-shard-<ordinal>`).
    pub shard: u32,
    /// Partition ranges, e.g. `0-63,128`.
    pub partitions: String,
}

/// The load of the cluster, summed over the shards whose metrics were read.
#[derive(JsonSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadStatus {
    /// Events applied per second.
    pub events_per_second: u64,
    /// Bus entries waiting for their partition's owner.
    pub lag: u64,
    /// Resident memory of the shard processes, in bytes.
    pub memory_bytes: u64,
    /// Shards whose metrics were read.
    pub reporting_shards: u32,
}
