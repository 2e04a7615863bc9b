//! The PersonaCluster controller: reads what a decision needs (the assignment
//! ConfigMap, the shard StatefulSet), decides ([`crate::decision`]), and applies the
//! children and the status with server-side apply under one field manager.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, instrument, warn};

use crate::autoscale::{Autoscaler, Load, Recommendation};
use crate::crd::{PersonaCluster, PersonaClusterStatus};
use crate::decision::{self, Decision, Observed, Policy, ShardPods, Table};
use crate::error::{Error, Result};
use crate::load::LoadSource;
use crate::metrics::{Metrics, Shards};
use crate::resources::{self, ASSIGNMENT_KEY, Desired, FIELD_MANAGER, Names, PUBLISHED_AT, ShardDefaults};

/// What every reconcile shares.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub defaults: ShardDefaults,
    pub policy: Policy,
    pub recorder: Recorder,
    /// Where the autoscaler reads the load; without it the shard count changes only
    /// with the bounds.
    pub load: Option<Arc<dyn LoadSource>>,
    /// Each cluster's autoscaler (`namespace/name`), with its window of wishes.
    autoscalers: Arc<Mutex<HashMap<String, Autoscaler>>>,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("defaults", &self.defaults)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// `instance` names this operator replica in the Events it writes (its pod name).
    pub fn new(client: Client, defaults: ShardDefaults, policy: Policy, instance: Option<String>) -> Context {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            defaults,
            policy,
            load: None,
            autoscalers: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// Scales the clusters with the load `source` reads.
    pub fn with_load(mut self, source: Arc<dyn LoadSource>) -> Context {
        self.load = Some(source);
        self
    }

    /// The autoscaler's target for `cluster`, and the load it saw; `None` without a
    /// load source or for a spec the decision will refuse anyway.
    async fn autoscale(&self, cluster: &PersonaCluster, observed: &Observed) -> Option<(Recommendation, Option<Load>)> {
        let source = self.load.as_ref()?;
        decision::validate(cluster).ok()?;
        let pods = observed.pods.map_or(0, |p| p.replicas);
        let load = if pods > 0 {
            source.load(cluster, pods).await
        } else {
            None
        };
        let table_shards = match &observed.table {
            Table::Published { assignment, .. } => Some(assignment.shards),
            _ => None,
        };
        // Go on from the last target, which the table reaches once new pods are ready.
        let current = cluster
            .status
            .as_ref()
            .and_then(|s| s.desired_shards)
            .or(table_shards)
            .or(observed.pods.map(|p| p.replicas))
            .unwrap_or(cluster.spec.shards.min);
        let key = format!("{}/{}", cluster.namespace().unwrap_or_default(), cluster.name_any());
        let mut autoscalers = self.autoscalers.lock().unwrap_or_else(|p| p.into_inner());
        let recommendation =
            autoscalers
                .entry(key)
                .or_default()
                .recommend(&cluster.spec, current, load.as_ref(), Timestamp::now());
        Some((recommendation, load))
    }

    /// Forgets the autoscalers and gauges of the clusters of `namespace` that are no
    /// longer there (deleted clusters get no reconcile to say so).
    pub fn retain_clusters(&self, namespace: &str, present: &[String]) {
        let mut autoscalers = self.autoscalers.lock().unwrap_or_else(|p| p.into_inner());
        autoscalers.retain(|key, _| match key.split_once('/') {
            Some((ns, name)) => ns != namespace || present.iter().any(|p| p == name),
            None => true,
        });
        drop(autoscalers);
        for ((ns, name), _) in self.metrics.clusters() {
            if ns == namespace && !present.contains(&name) {
                self.metrics.forget(&ns, &name);
            }
        }
    }
}

/// Runs the controller until `shutdown` completes: PersonaClusters in `namespace`, or
/// in every namespace when `None`.
pub async fn run(
    ctx: Context,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let client = ctx.client.clone();
    let clusters: Api<PersonaCluster> = scoped(&client, namespace);
    // Fails fast, with a clear error, when the CRD is not installed or RBAC forbids.
    clusters.list(&ListParams::default().limit(1)).await?;
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=persona-operator");
    let metrics = ctx.metrics.clone();
    Controller::new(clusters, watcher::Config::default().any_semantic())
        .owns(scoped::<StatefulSet>(&client, namespace), owned.clone())
        .owns(scoped::<ConfigMap>(&client, namespace), owned)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|outcome| {
            let metrics = metrics.clone();
            async move {
                match outcome {
                    Ok((object, _)) => {
                        metrics.reconciled("PersonaCluster", true);
                        info!(cluster = %object.name, namespace = ?object.namespace, "reconciled");
                    }
                    Err(e) => {
                        metrics.reconciled("PersonaCluster", false);
                        warn!(error = %e, "reconcile failed");
                    }
                }
            }
        })
        .await;
    Ok(())
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One reconcile of one PersonaCluster.
#[instrument(skip_all, fields(cluster = %cluster.name_any(), namespace = cluster.namespace()))]
pub async fn reconcile(cluster: Arc<PersonaCluster>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = cluster.namespace().ok_or(Error::MissingField {
        kind: "PersonaCluster",
        field: "metadata.namespace",
    })?;
    let uid = cluster.uid();
    let name = cluster.name_any();
    let names = Names::of(&name);
    let client = &ctx.client;

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let config_map = config_maps.get_opt(&names.assignment).await?;
    let stateful_set = stateful_sets.get_opt(&names.shards).await?;

    let mut conflict = None;
    if let Some(cm) = &config_map
        && !owned_by(cm, uid.as_deref())
    {
        conflict = Some(format!("ConfigMap {}", names.assignment));
    }
    if let Some(sts) = &stateful_set
        && !owned_by(sts, uid.as_deref())
    {
        conflict = Some(format!("StatefulSet {}", names.shards));
    }
    let mut observed = Observed {
        table: config_map.as_ref().map_or(Table::Missing, read_table),
        pods: stateful_set.as_ref().map(observe_pods),
        conflict,
        confirmed_epoch: None,
    };

    let clusters: Api<PersonaCluster> = Api::namespaced(client.clone(), &namespace);
    let scaling = ctx.autoscale(&cluster, &observed).await;
    observed.confirmed_epoch = scaling.as_ref().and_then(|(_, load)| load.and_then(|l| l.table_epoch));
    let target = scaling.as_ref().map(|(r, _)| r.target);
    match decision::decide(&cluster, &observed, target, &ctx.policy, Timestamp::now()) {
        Decision::Refuse(refusal) => {
            warn!(reason = refusal.reason, message = %refusal.message, "refusing to reconcile");
            let event = Event {
                type_: EventType::Warning,
                reason: refusal.reason.to_owned(),
                note: Some(truncate(&refusal.message, 1024)),
                action: "Reconcile".to_owned(),
                secondary: None,
            };
            // The status says it too: a missing Event must not hide the reason.
            if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
                warn!(error = %e, "could not publish the event");
            }
            patch_status(&clusters, &name, &refusal.status).await?;
            Ok(Action::requeue(refusal.requeue_after))
        }
        Decision::Apply(mut rollout) => {
            if let Some((recommendation, load)) = scaling {
                info!(target = recommendation.target, reason = %recommendation.reason, "autoscaler");
                rollout.status.desired_shards = Some(recommendation.target);
                rollout.status.scaling_reason = Some(recommendation.reason);
                rollout.status.load = load.map(|l| l.status());
                if recommendation.target != rollout.assignment.shards {
                    rollout.requeue_after = rollout.requeue_after.min(ctx.policy.busy_requeue);
                }
            }
            let published_at = rollout.published_at.to_string();
            let desired = Desired {
                assignment: &rollout.assignment,
                published_at: &published_at,
                replicas: rollout.replicas,
            };
            let children = resources::children(&cluster, &desired, &ctx.defaults)?;
            apply(client, &namespace, &names.shards, &children.service_account).await?;
            apply(client, &namespace, &names.assignment, &children.assignment).await?;
            apply(client, &namespace, &names.peers, &children.peers).await?;
            apply(client, &namespace, &names.grpc, &children.grpc).await?;
            apply(client, &namespace, &names.shards, &children.stateful_set).await?;
            apply(client, &namespace, &names.shards, &children.disruption_budget).await?;
            patch_status(&clusters, &name, &rollout.status).await?;
            ctx.metrics.cluster(
                &namespace,
                &name,
                Shards {
                    desired: rollout.status.desired_shards.unwrap_or(rollout.assignment.shards),
                    shards: rollout.replicas,
                    max: cluster.spec.shards.max,
                },
            );
            info!(epoch = rollout.assignment.epoch, replicas = rollout.replicas, "applied");
            Ok(Action::requeue(rollout.requeue_after))
        }
    }
}

/// Requeues a failed reconcile; the controller's own backoff spaces repeated failures.
pub fn error_policy(cluster: Arc<PersonaCluster>, error: &Error, _: Arc<Context>) -> Action {
    warn!(cluster = %cluster.name_any(), error = %error, label = error.metric_label(), "reconcile error");
    Action::requeue(Duration::from_secs(30))
}

/// Server-side apply of one child, forced: the operator is the only writer of the
/// fields it sets.
async fn apply<K>(client: &Client, namespace: &str, name: &str, object: &K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await?)
}

async fn patch_status(api: &Api<PersonaCluster>, name: &str, status: &PersonaClusterStatus) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": PersonaCluster::api_version(&()),
        "kind": PersonaCluster::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch))
        .await?;
    Ok(())
}

fn owned_by<K: Resource>(object: &K, uid: Option<&str>) -> bool {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// The table of an assignment ConfigMap.
pub fn read_table(config_map: &ConfigMap) -> Table {
    let Some(text) = config_map.data.as_ref().and_then(|d| d.get(ASSIGNMENT_KEY)) else {
        return Table::Unreadable(format!("the ConfigMap has no `{ASSIGNMENT_KEY}`"));
    };
    match serde_json::from_str(text) {
        Ok(assignment) => Table::Published {
            assignment,
            published_at: config_map
                .annotations()
                .get(PUBLISHED_AT)
                .and_then(|t| t.parse::<Timestamp>().ok()),
        },
        Err(e) => Table::Unreadable(format!("`{ASSIGNMENT_KEY}` does not parse: {e}")),
    }
}

/// The StatefulSet's replicas and readiness.
pub fn observe_pods(stateful_set: &StatefulSet) -> ShardPods {
    let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    let status = stateful_set.status.as_ref();
    ShardPods {
        replicas: count(stateful_set.spec.replicas),
        ready: count(status.and_then(|s| s.ready_replicas)),
        updated: count(status.and_then(|s| s.updated_replicas)),
    }
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests;
