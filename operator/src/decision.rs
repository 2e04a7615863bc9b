//! The reconcile decisions for a PersonaCluster, as a pure function of the spec and
//! what the reconciler observed: the assignment table to publish, the number of shard
//! pods to run, and the status to report.
//!
//! Partitions never lose their owner's pod. Growing, the new pods start first and
//! partitions move onto them only once they are ready. Shrinking, partitions move off
//! the highest ordinals first (a new epoch), and replicas drop only once every shard
//! reports that it took its partitions under that epoch (the new owners pulled the
//! state); when the shards' metrics cannot be read, once a hand-off grace period has
//! passed since the epoch was published.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use persona_placement::{Assignment, AssignmentError, Ranges, plan};

use crate::conditions::{condition, merge};
use crate::crd::{PersonaCluster, PersonaClusterStatus, ShardPartitions};

/// Condition types of a PersonaCluster.
pub mod types {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const REBALANCING: &str = "Rebalancing";
    pub const DEGRADED: &str = "Degraded";
}
use types::*;

/// The longest name a PersonaCluster may have: its StatefulSet's pods are named
/// `<name>-shard-<ordinal>` and carry a 63-character `controller-revision-hash` label.
pub const MAX_NAME_LEN: usize = 40;

/// What the reconciler read before deciding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The assignment ConfigMap.
    pub table: Table,
    /// The shard StatefulSet, if it exists.
    pub pods: Option<ShardPods>,
    /// An object with one of the cluster's names that this PersonaCluster does not
    /// own; what it is.
    pub conflict: Option<String>,
    /// The lowest table epoch every running shard reports it took all its partitions
    /// under (`persona_table_epoch`); `None` when the shards' metrics were not read.
    pub confirmed_epoch: Option<u64>,
}

/// The published assignment table.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Table {
    /// No ConfigMap yet (a new cluster, or someone deleted it).
    #[default]
    Missing,
    /// The table, and when its epoch was first published (absent or unreadable
    /// annotation: unknown, taken as long ago).
    Published {
        assignment: Assignment,
        published_at: Option<Timestamp>,
    },
    /// A ConfigMap whose table does not parse or is not valid; the reason.
    Unreadable(String),
}

/// The shard StatefulSet as observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardPods {
    /// `spec.replicas`.
    pub replicas: u32,
    /// `status.readyReplicas`.
    pub ready: u32,
    /// `status.updatedReplicas`: pods at the current template.
    pub updated: u32,
}

/// Knobs of the decision that are the operator's, not the cluster's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// When the shards' confirmations cannot be read: how long after a scale-down's
    /// epoch is published the removed ordinals' pods keep running, for their shards
    /// to checkpoint and hand their partitions over.
    pub handoff_grace: Duration,
    /// Requeue while something is moving.
    pub busy_requeue: Duration,
    /// Requeue when all is settled (a resync in case a watch event was missed).
    pub idle_requeue: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            handoff_grace: Duration::from_secs(120),
            busy_requeue: Duration::from_secs(10),
            idle_requeue: Duration::from_secs(300),
        }
    }
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Apply the children for this table and replica count, then report `status`.
    Apply(Rollout),
    /// Leave the children alone and report why: the spec or the table is not usable.
    Refuse(Refusal),
}

/// A table and replica count to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    pub assignment: Assignment,
    /// When `assignment.epoch` was first published: now for a new epoch.
    pub published_at: Timestamp,
    pub replicas: u32,
    pub status: PersonaClusterStatus,
    pub requeue_after: Duration,
}

/// Why the operator did nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// A CamelCase reason, for the Degraded condition and the Event.
    pub reason: &'static str,
    pub message: String,
    pub status: PersonaClusterStatus,
    pub requeue_after: Duration,
}

/// Checks what the CRD's validation rules check, for objects that got past them (an
/// older CRD, a direct etcd write) or that the rules cannot see.
pub fn validate(cluster: &PersonaCluster) -> Result<(), (&'static str, String)> {
    let spec = &cluster.spec;
    let name = cluster.name_any();
    if name.len() > MAX_NAME_LEN {
        return Err((
            "InvalidSpec",
            format!(
                "the name is {} characters; at most {MAX_NAME_LEN} are allowed",
                name.len()
            ),
        ));
    }
    if spec.partitions == 0 {
        return Err(("InvalidSpec", "spec.partitions must be at least 1".to_owned()));
    }
    if spec.shards.min == 0 {
        return Err(("InvalidSpec", "spec.shards.min must be at least 1".to_owned()));
    }
    if spec.shards.min > spec.shards.max {
        return Err((
            "InvalidSpec",
            format!(
                "spec.shards.min ({}) exceeds spec.shards.max ({})",
                spec.shards.min, spec.shards.max
            ),
        ));
    }
    if spec.shards.max > spec.partitions {
        return Err((
            "InvalidSpec",
            format!(
                "spec.shards.max ({}) exceeds spec.partitions ({}): a shard without a partition does nothing",
                spec.shards.max, spec.partitions
            ),
        ));
    }
    Ok(())
}

/// Decides the table, the replicas and the status. `target` is the autoscaler's
/// wish for the number of shards (clamped to the spec's bounds); without it the
/// cluster keeps its current count, `shards.min` at creation.
pub fn decide(
    cluster: &PersonaCluster,
    observed: &Observed,
    target: Option<u32>,
    policy: &Policy,
    now: Timestamp,
) -> Decision {
    let generation = cluster.metadata.generation;
    let previous = cluster.status.clone().unwrap_or_default();
    let refuse = |reason: &'static str, message: String| {
        let mut status = previous.clone();
        status.observed_generation = generation;
        if let Some(pods) = observed.pods {
            status.ready_shards = pods.ready;
        }
        let at = Time(now);
        let word = format!("the operator leaves the shards as they are: {message}");
        merge(
            &mut status.conditions,
            condition(DEGRADED, true, reason, &message, generation, &at),
        );
        merge(
            &mut status.conditions,
            condition(PROGRESSING, false, reason, &word, generation, &at),
        );
        if status.conditions.iter().all(|c| c.type_ != READY) {
            merge(
                &mut status.conditions,
                condition(READY, false, reason, &message, generation, &at),
            );
        }
        Decision::Refuse(Refusal {
            reason,
            message,
            status,
            requeue_after: policy.idle_requeue,
        })
    };

    if let Err((reason, message)) = validate(cluster) {
        return refuse(reason, message);
    }
    if let Some(what) = &observed.conflict {
        return refuse(
            "NameConflict",
            format!("{what} exists and is not owned by this PersonaCluster; rename or remove it"),
        );
    }
    let spec = &cluster.spec;
    let (min, max) = (spec.shards.min, spec.shards.max);

    let (table, published_at) = match &observed.table {
        Table::Missing => (None, None),
        Table::Published {
            assignment,
            published_at,
        } => (Some(assignment), *published_at),
        Table::Unreadable(why) => {
            return refuse(
                "UnreadableAssignment",
                format!("{why}; delete the ConfigMap for the operator to publish a new table"),
            );
        }
    };
    if let Some(t) = table {
        if let Err(e) = t.validate() {
            return refuse(
                "UnreadableAssignment",
                format!("{e}; delete the ConfigMap for the operator to publish a new table"),
            );
        }
        if t.partitions() != spec.partitions {
            return refuse(
                "PartitionsChanged",
                format!(
                    "spec.partitions is {} but the cluster was created with {}; partitions are fixed at creation",
                    spec.partitions,
                    t.partitions()
                ),
            );
        }
    }

    let current = table
        .map(|t| t.shards)
        .or(observed.pods.map(|p| p.replicas))
        .unwrap_or(min);
    let target = target.unwrap_or(current).clamp(min, max);
    let ready = observed.pods.map_or(0, |p| p.ready);
    let running = observed.pods.map_or(0, |p| p.replicas);

    // The table: grow only onto ready pods; otherwise plan for the target now.
    let growing = table.is_some_and(|t| target > t.shards);
    let waiting_for_pods = growing && (running < target || ready < target);
    let planned = match table {
        Some(t) if waiting_for_pods => Ok(t.clone()),
        _ => plan(table, spec.partitions, target).map(|p| p.assignment),
    };
    let mut assignment = match planned {
        Ok(a) => a,
        // validate() and the checks above exclude every planner error.
        Err(e @ (AssignmentError::NoPartitions | AssignmentError::NoShards)) => {
            return refuse("InvalidSpec", e.to_string());
        }
        Err(e) => return refuse("UnreadableAssignment", e.to_string()),
    };
    if table.is_none() && previous.epoch >= assignment.epoch {
        // A table lost and published anew must not reuse an epoch shards have seen.
        assignment.epoch = previous.epoch + 1;
    }
    let new_epoch = table.is_none_or(|t| t.epoch != assignment.epoch);
    let published_at = if new_epoch {
        now
    } else {
        published_at.unwrap_or(Timestamp::UNIX_EPOCH)
    };

    // The pods: every shard that owns a partition keeps its pod; the surplus goes
    // once the hand-off time has passed since the shrinking epoch was published.
    let needed = target.max(assignment.shards_in_use());
    let elapsed = now.duration_since(published_at);
    // A clock behind the annotation counts as no time passed.
    let since_published = if elapsed.is_negative() {
        Duration::ZERO
    } else {
        elapsed.unsigned_abs()
    };
    // The hand-off is done when every shard confirms the epoch (the new owners pulled
    // the state); without confirmations, when the grace period has passed.
    let handed_off = match observed.confirmed_epoch {
        Some(confirmed) => !new_epoch && confirmed >= assignment.epoch,
        None => since_published >= policy.handoff_grace,
    };
    let draining = running > needed && !handed_off;
    let replicas = if draining { running } else { needed };

    let at = Time(now);
    let mut status = previous;
    status.observed_generation = generation;
    status.shards = replicas;
    status.ready_shards = ready;
    status.epoch = assignment.epoch;
    status.assignment = (0..assignment.shards)
        .map(|shard| ShardPartitions {
            shard,
            partitions: Ranges(&assignment.partitions_of(shard)).to_string(),
        })
        .collect();

    let conditions = &mut status.conditions;
    merge(
        conditions,
        condition(DEGRADED, false, "AsExpected", "", generation, &at),
    );

    let rebalancing = if waiting_for_pods {
        Some((
            "WaitingForShards",
            format!("{ready}/{target} shard pods ready; partitions move to the new shards once they are ready"),
        ))
    } else if draining {
        let message = match observed.confirmed_epoch {
            Some(confirmed) => format!(
                "partitions move off shards {needed}..{running} under epoch {}; their pods stop once every shard has taken its partitions (lowest epoch confirmed: {confirmed})",
                assignment.epoch
            ),
            None => format!(
                "partitions moved off shards {needed}..{running} under epoch {}; their pods stop in {}s",
                assignment.epoch,
                policy.handoff_grace.saturating_sub(since_published).as_secs()
            ),
        };
        Some(("HandingOff", message))
    } else {
        None
    };
    match &rebalancing {
        Some((reason, message)) => merge(
            conditions,
            condition(REBALANCING, true, reason, message, generation, &at),
        ),
        None => merge(
            conditions,
            condition(
                REBALANCING,
                false,
                "Balanced",
                format!("{} partitions over {} shards", spec.partitions, assignment.shards),
                generation,
                &at,
            ),
        ),
    }

    let rolled_out = observed
        .pods
        .is_some_and(|p| p.replicas == replicas && p.ready >= replicas && p.updated >= replicas);
    let progressing = rebalancing.is_some() || !rolled_out;
    let (reason, message) = match (&rebalancing, rolled_out) {
        (Some((reason, message)), _) => (*reason, message.clone()),
        (None, false) => ("RollingOut", format!("{ready}/{replicas} shard pods ready")),
        (None, true) => ("Stable", format!("{replicas} shard pods at the current spec")),
    };
    merge(
        conditions,
        condition(PROGRESSING, progressing, reason, message, generation, &at),
    );

    // Ready: every partition's owner under the published table has a ready pod.
    let owners_ready = table.is_some() && ready >= assignment.shards_in_use() && running >= assignment.shards_in_use();
    let (reason, message) = if owners_ready {
        (
            "ShardsReady",
            format!("{ready}/{replicas} shard pods ready; every partition has its owner"),
        )
    } else {
        ("ShardsStarting", format!("{ready}/{replicas} shard pods ready"))
    };
    merge(
        conditions,
        condition(READY, owners_ready, reason, message, generation, &at),
    );

    Decision::Apply(Rollout {
        assignment,
        published_at,
        replicas,
        status,
        requeue_after: if progressing {
            policy.busy_requeue
        } else {
            policy.idle_requeue
        },
    })
}

#[cfg(test)]
mod tests;
