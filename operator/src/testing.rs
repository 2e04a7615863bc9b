//! Builders of test objects, shared by the unit tests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{BusSpec, PersonaCluster, PersonaClusterSpec, ScalingSpec, ShardsSpec, StorageSpec};

pub(crate) const NAMESPACE: &str = "banking";
pub(crate) const UID: &str = "5b0f3f7e-2d1c-4c8a-9a53-3c1f00c0ffee";

/// `prod` in `banking`: `partitions` partitions, between `min` and `max` shards.
pub(crate) fn cluster(partitions: u32, min: u32, max: u32) -> PersonaCluster {
    PersonaCluster {
        metadata: ObjectMeta {
            name: Some("prod".to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            uid: Some(UID.to_owned()),
            generation: Some(3),
            ..ObjectMeta::default()
        },
        spec: PersonaClusterSpec {
            partitions,
            shards: ShardsSpec { min, max },
            scaling: ScalingSpec::default(),
            storage: StorageSpec::default(),
            bus: BusSpec {
                redis: "rediss://persona-redis:6379".to_owned(),
                password_secret: None,
                prefix: "persona".to_owned(),
            },
            feature_set: "retail-banking".to_owned(),
            image: None,
            resources: None,
        },
        status: None,
    }
}
