use proptest::prelude::*;

use super::*;

fn table(shards: u32, owners: &[u32], epoch: u64) -> Assignment {
    Assignment {
        epoch,
        shards,
        owners: owners.to_vec(),
    }
}

/// The fewest moves from `prev` to any balanced table of `shards` shards, by trying
/// every table (small sizes only).
fn brute_force_min_moves(prev: &Assignment, shards: u32) -> usize {
    let p = prev.owners.len();
    let total = (shards as usize).pow(p as u32);
    let floor = p as u32 / shards;
    let mut best = usize::MAX;
    let mut owners = vec![0u32; p];
    for mut code in 0..total {
        for o in owners.iter_mut() {
            *o = (code % shards as usize) as u32;
            code /= shards as usize;
        }
        let mut counts = vec![0u32; shards as usize];
        for &o in &owners {
            counts[o as usize] += 1;
        }
        if counts.iter().any(|&c| c < floor || c > floor + 1) {
            continue;
        }
        let moves = owners.iter().zip(&prev.owners).filter(|(a, b)| a != b).count();
        best = best.min(moves);
    }
    best
}

fn check_invariants(plan: &Plan, previous: Option<&Assignment>, partitions: u32, shards: u32) {
    let a = &plan.assignment;
    assert_eq!(a.partitions(), partitions);
    assert_eq!(a.shards, shards);
    a.validate().unwrap();
    let counts = a.counts();
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert!(max - min <= 1, "unbalanced: {counts:?}");
    // The moves are exactly the partitions whose owner changed.
    let expected: Vec<Move> = (0..partitions)
        .filter_map(|p| {
            let from = previous.map(|prev| prev.owners[p as usize]);
            let to = a.owners[p as usize];
            (from != Some(to)).then_some(Move { partition: p, from, to })
        })
        .collect();
    assert_eq!(plan.moves, expected);
}

#[test]
fn a_first_plan_is_contiguous_blocks_at_epoch_one() {
    let plan = plan(None, 10, 3).unwrap();
    assert_eq!(plan.assignment.epoch, 1);
    assert_eq!(plan.assignment.owners, vec![0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
    assert_eq!(plan.moves.len(), 10);
    assert!(plan.moves.iter().all(|m| m.from.is_none()));
}

#[test]
fn growing_by_one_shard_moves_only_onto_the_new_shard() {
    let four = plan(None, 256, 4).unwrap().assignment;
    let five = plan(Some(&four), 256, 5).unwrap();
    // 256 = 51 * 5 + 1: one old shard keeps 52, three keep 51; 51 partitions move.
    assert_eq!(five.moves.len(), 51);
    assert!(five.moves.iter().all(|m| m.to == 4));
    assert_eq!(five.assignment.epoch, 2);
    assert_eq!(five.assignment.counts(), vec![52, 51, 51, 51, 51]);
}

#[test]
fn shrinking_moves_only_the_partitions_of_the_removed_shards() {
    let five = plan(None, 100, 5).unwrap().assignment;
    let four = plan(Some(&five), 100, 4).unwrap();
    assert_eq!(four.moves.len(), 20);
    assert!(four.moves.iter().all(|m| m.from == Some(4) && m.to < 4));
    assert!(!four.assignment.owns_any(4));
    assert_eq!(four.assignment.shards_in_use(), 4);
}

#[test]
fn planning_again_changes_nothing_and_keeps_the_epoch() {
    let first = plan(None, 64, 3).unwrap().assignment;
    let again = plan(Some(&first), 64, 3).unwrap();
    assert!(again.moves.is_empty());
    assert_eq!(again.assignment, first);
}

#[test]
fn more_shards_than_partitions_leaves_some_idle() {
    let plan = plan(None, 3, 5).unwrap();
    assert_eq!(plan.assignment.counts(), vec![1, 1, 1, 0, 0]);
    assert_eq!(plan.assignment.shards_in_use(), 3);
}

#[test]
fn bad_inputs_are_refused() {
    assert_eq!(plan(None, 0, 1), Err(AssignmentError::NoPartitions));
    assert_eq!(plan(None, 1, 0), Err(AssignmentError::NoShards));
    let t = table(2, &[0, 1, 1], 4);
    assert_eq!(
        plan(Some(&t), 4, 2),
        Err(AssignmentError::PartitionCountChanged { table: 3, asked: 4 })
    );
    let broken = table(2, &[0, 2], 1);
    assert_eq!(
        plan(Some(&broken), 2, 2),
        Err(AssignmentError::OwnerOutOfRange {
            partition: 1,
            owner: 2,
            shards: 2
        })
    );
}

#[test]
fn ranges_are_compact() {
    assert_eq!(Ranges(&[]).to_string(), "");
    assert_eq!(Ranges(&[5]).to_string(), "5");
    assert_eq!(Ranges(&[3, 0, 1, 2, 7, 9, 10]).to_string(), "0-3,7,9-10");
}

#[test]
fn the_table_round_trips_through_json() {
    let a = plan(None, 8, 3).unwrap().assignment;
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(json, r#"{"epoch":1,"shards":3,"owners":[0,0,0,1,1,1,2,2]}"#);
    assert_eq!(serde_json::from_str::<Assignment>(&json).unwrap(), a);
}

/// Any valid table: owners drawn freely, so it may be unbalanced.
fn any_table(max_partitions: u32, max_shards: u32) -> impl Strategy<Value = Assignment> {
    (1..=max_partitions, 1..=max_shards, 1u64..1000).prop_flat_map(|(p, s, epoch)| {
        proptest::collection::vec(0..s, p as usize).prop_map(move |owners| table(s, &owners, epoch))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_plan_is_complete_and_balanced_within_one(
        prev in any_table(300, 40),
        shards in 1u32..60,
    ) {
        let p = prev.partitions();
        let plan = plan(Some(&prev), p, shards).unwrap();
        check_invariants(&plan, Some(&prev), p, shards);
        let first = super::plan(None, p, shards).unwrap();
        check_invariants(&first, None, p, shards);
    }

    #[test]
    fn no_balanced_table_needs_fewer_moves(prev in any_table(6, 4), shards in 1u32..=4) {
        let plan = plan(Some(&prev), prev.partitions(), shards).unwrap();
        prop_assert_eq!(plan.moves.len(), brute_force_min_moves(&prev, shards));
    }

    #[test]
    fn a_plan_is_a_fixed_point(prev in any_table(200, 20), shards in 1u32..30) {
        let once = plan(Some(&prev), prev.partitions(), shards).unwrap().assignment;
        let twice = plan(Some(&once), once.partitions(), shards).unwrap();
        prop_assert!(twice.moves.is_empty());
        prop_assert_eq!(twice.assignment, once);
    }

    #[test]
    fn the_epoch_rises_by_one_exactly_when_the_table_changes(
        prev in any_table(100, 10),
        shards in 1u32..15,
    ) {
        let plan = plan(Some(&prev), prev.partitions(), shards).unwrap();
        let changed = plan.assignment.owners != prev.owners || shards != prev.shards;
        prop_assert_eq!(plan.assignment.epoch, prev.epoch + u64::from(changed));
    }

    #[test]
    fn scaling_moves_what_the_counting_argument_forces(
        prev in any_table(512, 32),
        to in 1u32..48,
    ) {
        let after = plan(Some(&prev), prev.partitions(), to).unwrap();
        let off_removed = prev.owners.iter().filter(|&&o| o >= to).count();
        prop_assert!(after.moves.len() >= off_removed);
        prop_assert_eq!(after.moves.len(), fewest_moves(&prev, to));
    }
}

/// The fewest moves by the counting argument: P minus the most partitions the kept
/// shards can retain, `Σ min(c_i, t_i)` with the larger quotas on the largest holders.
fn fewest_moves(prev: &Assignment, shards: u32) -> usize {
    let p = prev.partitions();
    let floor = p / shards;
    let extra = (p % shards) as usize;
    let mut held: Vec<u32> = prev.counts().into_iter().take(shards as usize).collect();
    held.resize(shards as usize, 0);
    held.sort_unstable_by(|a, b| b.cmp(a));
    let kept: u32 = held
        .iter()
        .enumerate()
        .map(|(i, &c)| c.min(floor + u32::from(i < extra)))
        .sum();
    (p - kept) as usize
}
