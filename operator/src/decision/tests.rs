use proptest::prelude::*;

use super::*;
use crate::conditions::{find, is_true};
use crate::testing::cluster;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn apply(decision: Decision) -> Rollout {
    match decision {
        Decision::Apply(r) => r,
        Decision::Refuse(r) => panic!("refused: {} {}", r.reason, r.message),
    }
}

fn refuse(decision: Decision) -> Refusal {
    match decision {
        Decision::Refuse(r) => r,
        Decision::Apply(r) => panic!("applied: {r:?}"),
    }
}

fn reason<'a>(status: &'a PersonaClusterStatus, type_: &str) -> &'a str {
    &find(&status.conditions, type_).unwrap().reason
}

fn published(assignment: &Assignment, secs: i64) -> Table {
    Table::Published {
        assignment: assignment.clone(),
        published_at: Some(at(secs)),
    }
}

fn pods(replicas: u32, ready: u32) -> Option<ShardPods> {
    Some(ShardPods {
        replicas,
        ready,
        updated: replicas,
    })
}

#[test]
fn a_new_cluster_gets_its_first_table_and_min_shards() {
    let c = cluster(256, 2, 8);
    let r = apply(decide(&c, &Observed::default(), None, &Policy::default(), at(0)));
    assert_eq!(r.replicas, 2);
    assert_eq!(r.assignment.epoch, 1);
    assert_eq!(r.assignment.counts(), vec![128, 128]);
    assert_eq!(r.published_at, at(0));
    let s = &r.status;
    assert_eq!((s.shards, s.ready_shards, s.epoch), (2, 0, 1));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.assignment[1].partitions, "128-255");
    assert!(!is_true(&s.conditions, types::READY));
    assert_eq!(reason(s, types::READY), "ShardsStarting");
    assert!(is_true(&s.conditions, types::PROGRESSING));
    assert!(!is_true(&s.conditions, types::REBALANCING));
    assert!(!is_true(&s.conditions, types::DEGRADED));
    assert_eq!(r.requeue_after, Policy::default().busy_requeue);
}

#[test]
fn a_settled_cluster_is_ready_and_keeps_its_epoch() {
    let c = cluster(64, 2, 8);
    let table = plan(None, 64, 2).unwrap().assignment;
    let observed = Observed {
        table: published(&table, 0),
        pods: pods(2, 2),
        conflict: None,
        confirmed_epoch: None,
    };
    let r = apply(decide(&c, &observed, None, &Policy::default(), at(500)));
    assert_eq!(r.assignment, table);
    assert_eq!(r.published_at, at(0), "an unchanged epoch keeps its publication time");
    assert_eq!(r.replicas, 2);
    assert!(is_true(&r.status.conditions, types::READY));
    assert!(!is_true(&r.status.conditions, types::PROGRESSING));
    assert_eq!(reason(&r.status, types::PROGRESSING), "Stable");
    assert_eq!(r.requeue_after, Policy::default().idle_requeue);
}

#[test]
fn growing_starts_the_pods_first_and_moves_partitions_once_they_are_ready() {
    let c = cluster(64, 4, 8); // min raised from 2 to 4
    let table = plan(None, 64, 2).unwrap().assignment;
    let waiting = Observed {
        table: published(&table, 0),
        pods: pods(4, 2),
        conflict: None,
        confirmed_epoch: None,
    };
    let r = apply(decide(&c, &waiting, None, &Policy::default(), at(10)));
    assert_eq!(r.replicas, 4);
    assert_eq!(r.assignment, table, "no partition moves onto a pod that is not ready");
    assert_eq!(reason(&r.status, types::REBALANCING), "WaitingForShards");
    // The old owners still serve every partition.
    assert!(is_true(&r.status.conditions, types::READY));

    let ready = Observed {
        pods: pods(4, 4),
        ..waiting
    };
    let r = apply(decide(&c, &ready, None, &Policy::default(), at(20)));
    assert_eq!(r.assignment.epoch, table.epoch + 1);
    assert_eq!(r.assignment.counts(), vec![16, 16, 16, 16]);
    assert_eq!(r.published_at, at(20));
    let moved_to: Vec<u32> = (0..64)
        .filter(|&p| r.assignment.owners[p as usize] != table.owners[p as usize])
        .map(|p| r.assignment.owners[p as usize])
        .collect();
    assert_eq!(moved_to.len(), 32);
    assert!(moved_to.iter().all(|&s| s >= 2), "only onto the new shards");
}

#[test]
fn shrinking_moves_partitions_off_first_and_stops_pods_after_the_hand_off() {
    let policy = Policy::default();
    let c = cluster(64, 1, 2); // max lowered from 4 to 2
    let four = plan(None, 64, 4).unwrap().assignment;
    let observed = Observed {
        table: published(&four, 0),
        pods: pods(4, 4),
        conflict: None,
        confirmed_epoch: None,
    };
    let r = apply(decide(&c, &observed, None, &policy, at(100)));
    assert_eq!(r.assignment.shards, 2);
    assert!(!r.assignment.owns_any(2) && !r.assignment.owns_any(3));
    assert_eq!(r.assignment.epoch, four.epoch + 1);
    assert_eq!(r.replicas, 4, "pods 2 and 3 keep running while they hand off");
    assert_eq!(reason(&r.status, types::REBALANCING), "HandingOff");

    let two = r.assignment.clone();
    let during = Observed {
        table: published(&two, 100),
        pods: pods(4, 4),
        conflict: None,
        confirmed_epoch: None,
    };
    let before = apply(decide(&c, &during, None, &policy, at(100 + 119)));
    assert_eq!(before.replicas, 4);
    assert_eq!(before.assignment, two);
    let after = apply(decide(&c, &during, None, &policy, at(100 + 120)));
    assert_eq!(after.replicas, 2);
    assert!(!is_true(&after.status.conditions, types::REBALANCING));
}

#[test]
fn with_the_shards_confirmations_pods_stop_when_the_epoch_is_confirmed_not_on_a_timer() {
    let policy = Policy::default();
    let c = cluster(64, 1, 2);
    let four = plan(None, 64, 4).unwrap().assignment;
    let shrink = Observed {
        table: published(&four, 0),
        pods: pods(4, 4),
        conflict: None,
        confirmed_epoch: Some(four.epoch),
    };
    // The new epoch is not confirmed by anyone yet: the pods stay.
    let r = apply(decide(&c, &shrink, None, &policy, at(100)));
    assert_eq!((r.assignment.shards, r.replicas), (2, 4));
    let two = r.assignment.clone();
    let waiting = |confirmed: u64| Observed {
        table: published(&two, 100),
        pods: pods(4, 4),
        conflict: None,
        confirmed_epoch: Some(confirmed),
    };
    // Long past the grace period, a shard still has not taken its partitions under the
    // new epoch: the pods that hold their state stay, and the status says why.
    let held = apply(decide(&c, &waiting(four.epoch), None, &policy, at(100 + 3600)));
    assert_eq!(held.replicas, 4);
    let rebalancing = find(&held.status.conditions, types::REBALANCING).unwrap();
    assert_eq!(rebalancing.reason, "HandingOff");
    assert!(
        rebalancing
            .message
            .contains(&format!("lowest epoch confirmed: {}", four.epoch)),
        "{}",
        rebalancing.message
    );
    // Confirmed a second after publication: the pods go at once.
    let done = apply(decide(&c, &waiting(two.epoch), None, &policy, at(101)));
    assert_eq!(done.replicas, 2);
    assert!(!is_true(&done.status.conditions, types::REBALANCING));
}

#[test]
fn a_lost_table_is_published_under_a_new_epoch() {
    let mut c = cluster(16, 2, 4);
    c.status = Some(PersonaClusterStatus {
        epoch: 17,
        ..PersonaClusterStatus::default()
    });
    let r = apply(decide(&c, &Observed::default(), None, &Policy::default(), at(0)));
    assert_eq!(r.assignment.epoch, 18);
}

#[test]
fn the_target_is_clamped_to_the_bounds() {
    let c = cluster(64, 2, 6);
    let table = plan(None, 64, 2).unwrap().assignment;
    let observed = Observed {
        table: published(&table, 0),
        pods: pods(2, 2),
        conflict: None,
        confirmed_epoch: None,
    };
    let r = apply(decide(&c, &observed, Some(50), &Policy::default(), at(1)));
    assert_eq!(r.replicas, 6);
    let r = apply(decide(&c, &observed, Some(0), &Policy::default(), at(1)));
    assert_eq!(r.replicas, 2);
}

#[test]
fn an_invalid_spec_is_refused_and_reported() {
    let c = cluster(64, 5, 3);
    let r = refuse(decide(&c, &Observed::default(), None, &Policy::default(), at(0)));
    assert_eq!(r.reason, "InvalidSpec");
    assert!(
        r.message.contains("min (5) exceeds spec.shards.max (3)"),
        "{}",
        r.message
    );
    assert!(is_true(&r.status.conditions, types::DEGRADED));
    assert!(!is_true(&r.status.conditions, types::READY));
    assert!(!is_true(&r.status.conditions, types::PROGRESSING));

    let c = cluster(4, 1, 8);
    assert_eq!(
        refuse(decide(&c, &Observed::default(), None, &Policy::default(), at(0))).reason,
        "InvalidSpec"
    );
    let mut c = cluster(4, 1, 2);
    c.metadata.name = Some("x".repeat(41));
    assert_eq!(
        refuse(decide(&c, &Observed::default(), None, &Policy::default(), at(0))).reason,
        "InvalidSpec"
    );
}

#[test]
fn a_changed_partition_count_is_refused() {
    let c = cluster(128, 2, 4);
    let table = plan(None, 64, 2).unwrap().assignment;
    let observed = Observed {
        table: published(&table, 0),
        pods: pods(2, 2),
        conflict: None,
        confirmed_epoch: None,
    };
    let r = refuse(decide(&c, &observed, None, &Policy::default(), at(0)));
    assert_eq!(r.reason, "PartitionsChanged");
    assert!(r.message.contains("created with 64"), "{}", r.message);
}

#[test]
fn a_broken_table_or_a_foreign_object_is_refused() {
    let c = cluster(8, 1, 2);
    let broken = Observed {
        table: Table::Unreadable("`assignment.json` does not parse".to_owned()),
        ..Observed::default()
    };
    assert_eq!(
        refuse(decide(&c, &broken, None, &Policy::default(), at(0))).reason,
        "UnreadableAssignment"
    );
    let out_of_range = Observed {
        table: published(
            &Assignment {
                epoch: 1,
                shards: 1,
                owners: vec![0, 0, 0, 0, 0, 0, 0, 3],
            },
            0,
        ),
        ..Observed::default()
    };
    assert_eq!(
        refuse(decide(&c, &out_of_range, None, &Policy::default(), at(0))).reason,
        "UnreadableAssignment"
    );
    let foreign = Observed {
        conflict: Some("ConfigMap prod-assignment".to_owned()),
        ..Observed::default()
    };
    assert_eq!(
        refuse(decide(&c, &foreign, None, &Policy::default(), at(0))).reason,
        "NameConflict"
    );
}

/// One step of a simulated world: a target for the autoscaler and how long passes.
#[derive(Clone, Debug)]
struct Step {
    target: u32,
    seconds: i64,
    pods_ready: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (1u32..12, 1i64..200, proptest::bool::weighted(0.7)).prop_map(|(target, seconds, pods_ready)| Step {
            target,
            seconds,
            pods_ready,
        }),
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the targets, a pod whose shard owns a partition under the table in
    /// force is never removed, partitions never move onto a pod that is not ready,
    /// and replicas stay within bounds except while a hand-off drains.
    #[test]
    fn no_partition_loses_its_pod(partitions in 8u32..200, min in 1u32..4, extra in 0u32..8, steps in steps()) {
        let max = (min + extra).min(partitions);
        let c = cluster(partitions, min, max);
        let policy = Policy::default();
        let mut now = at(0);
        let mut observed = Observed::default();
        for step in steps {
            let r = apply(decide(&c, &observed, Some(step.target), &policy, now));
            let running = observed.pods.map_or(0, |p| p.replicas);
            let ready = observed.pods.map_or(0, |p| p.ready);
            if let Table::Published { assignment: old, published_at } = &observed.table {
                // A pod whose shard owns partitions under the table in force stays...
                prop_assert!(r.replicas >= old.shards_in_use());
                // ...and surplus pods go only once that table has been out for the
                // hand-off time.
                if r.replicas < running {
                    let since = now.duration_since(published_at.unwrap()).unsigned_abs();
                    prop_assert!(since >= policy.handoff_grace);
                    prop_assert_eq!(&r.assignment, old);
                }
                // A partition moves onto a new shard only once its pod is ready.
                for (p, &owner) in r.assignment.owners.iter().enumerate() {
                    if owner != old.owners[p] && owner >= old.shards {
                        prop_assert!(owner < ready, "partition {} moved onto shard {} with {} ready", p, owner, ready);
                    }
                }
            }
            prop_assert!(r.replicas >= r.assignment.shards_in_use());
            prop_assert!(r.replicas >= min);
            prop_assert!(r.replicas <= max.max(running));
            prop_assert!(r.assignment.shards >= min && r.assignment.shards <= max);
            // The world follows: the StatefulSet gets the replicas, the table is published.
            observed.table = Table::Published { assignment: r.assignment.clone(), published_at: Some(r.published_at) };
            let ready = if step.pods_ready { r.replicas } else { ready.min(r.replicas) };
            observed.pods = pods(r.replicas, ready);
            now = now.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(step.seconds)).unwrap();
        }
    }
}
