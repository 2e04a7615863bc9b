//! What the operator counts, for its `/metrics` endpoint: reconciles by kind and
//! outcome, and each cluster's desired and actual shard counts.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counters and gauges shared by the reconcilers.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    clusters: Mutex<BTreeMap<(String, String), Shards>>,
}

/// One cluster's shard counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shards {
    /// What the autoscaler asks for (the current count without one).
    pub desired: u32,
    /// Shard pods the StatefulSet is asked to run.
    pub shards: u32,
    /// The spec's `shards.max`.
    pub max: u32,
}

impl Metrics {
    /// One reconcile of a `kind` ended, well or not.
    pub fn reconciled(&self, kind: &'static str, ok: bool) {
        let mut map = self.reconciles.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((kind, if ok { "ok" } else { "error" })).or_default() += 1;
    }

    /// A cluster's counts after a reconcile.
    pub fn cluster(&self, namespace: &str, name: &str, shards: Shards) {
        let mut map = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((namespace.to_owned(), name.to_owned()), shards);
    }

    /// A deleted cluster's gauges go.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut map = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Reconciles by (kind, result).
    pub fn reconciles(&self) -> Vec<((&'static str, &'static str), u64)> {
        let map = self.reconciles.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Shard counts by (namespace, cluster).
    pub fn clusters(&self) -> Vec<((String, String), Shards)> {
        let map = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}
