use proptest::prelude::*;

use super::*;
use crate::crd::PersonaCluster;
use crate::decision::{Decision, Observed, Policy, ShardPods, Table, decide};
use crate::testing::cluster;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn load(events_per_second: f64, lag: u64, shards: u32) -> Load {
    Load {
        events_per_second,
        lag,
        memory_bytes: 0,
        reporting: shards,
        expected: shards,
        table_epoch: None,
    }
}

/// 64 partitions, 2 to 12 shards, 50k events/s and 100k waiting entries per shard,
/// a 10-minute window, steps of 4.
fn spec() -> PersonaClusterSpec {
    let mut c = cluster(64, 2, 12);
    c.spec.scaling.target_events_per_second = 50_000;
    c.spec.scaling.target_lag = 100_000;
    c.spec.scaling.scale_down_after = Duration::from_secs(600).into();
    c.spec.scaling.max_step = 4;
    c.spec
}

#[test]
fn each_metric_asks_for_ceil_of_total_over_target_within_a_tolerance() {
    assert_eq!(needed(260_000.0, 50_000.0, 2), 6);
    // 4 shards at 50k each: 205k is 2.5% over, inside the tolerance.
    assert_eq!(needed(205_000.0, 50_000.0, 4), 4);
    assert_eq!(needed(170_000.0, 50_000.0, 4), 4);
    assert_eq!(needed(150_000.0, 50_000.0, 4), 3);
    assert_eq!(needed(0.0, 50_000.0, 4), 0);
    assert_eq!(needed(f64::NAN, 50_000.0, 4), 0);
    assert_eq!(needed(1e30, 1.0, 4), u32::MAX);
}

#[test]
fn the_metric_asking_for_most_decides() {
    let mut s = spec();
    assert_eq!(wish(&s, 2, &load(120_000.0, 0, 2)), (3, "events"));
    assert_eq!(wish(&s, 2, &load(120_000.0, 750_000, 2)), (8, "lag"));
    s.scaling.target_memory = Some(Quantity("1Gi".to_owned()));
    let mut l = load(10_000.0, 0, 2);
    l.memory_bytes = 5 * 1024 * 1024 * 1024;
    assert_eq!(wish(&s, 2, &l), (5, "memory"));
    // No load at all still asks for one shard (the bounds lift it to min).
    assert_eq!(wish(&s, 2, &load(0.0, 0, 2)), (1, "events"));
}

#[test]
fn it_scales_up_at_once_by_at_most_the_step() {
    let s = spec();
    let mut a = Autoscaler::default();
    let r = a.recommend(&s, 2, Some(&load(120_000.0, 2_000_000, 2)), at(0));
    assert_eq!(r.target, 6, "{r:?}");
    assert!(r.reason.starts_with("ScaleUp: lag asks for 12"), "{}", r.reason);
    let r = a.recommend(&s, 6, Some(&load(360_000.0, 1_000_000, 6)), at(15));
    assert_eq!(r.target, 10);
    // The bounds cap it.
    let r = a.recommend(&s, 10, Some(&load(2_000_000.0, 0, 10)), at(30));
    assert_eq!(r.target, 12);
}

#[test]
fn it_scales_down_only_after_a_window_of_lower_wishes() {
    let s = spec();
    let mut a = Autoscaler::default();
    // Ten minutes at 10 shards' worth of load.
    for t in (0..600).step_by(15) {
        let r = a.recommend(&s, 10, Some(&load(500_000.0, 0, 10)), at(t));
        assert_eq!(r.target, 10);
    }
    // The load falls to 2 shards' worth: nothing for the next ten minutes...
    for t in (600..1200).step_by(15) {
        let r = a.recommend(&s, 10, Some(&load(100_000.0, 0, 10)), at(t));
        assert_eq!(r.target, 10, "at {t}: {}", r.reason);
        assert!(r.reason.starts_with("Stabilizing"), "{}", r.reason);
    }
    // ...then down by the step, and again a step per decision.
    let r = a.recommend(&s, 10, Some(&load(100_000.0, 0, 10)), at(1215));
    assert_eq!(r.target, 6, "{}", r.reason);
    assert!(r.reason.starts_with("ScaleDown"));
    let r = a.recommend(&s, 6, Some(&load(100_000.0, 0, 6)), at(1230));
    assert_eq!(r.target, 2);
}

#[test]
fn a_new_autoscaler_watches_a_whole_window_before_it_shrinks() {
    let s = spec();
    let mut a = Autoscaler::default();
    for t in (0..600).step_by(15) {
        let r = a.recommend(&s, 8, Some(&load(100_000.0, 0, 8)), at(t));
        assert_eq!(r.target, 8, "{}", r.reason);
        assert!(r.reason.starts_with("Watching"), "{}", r.reason);
    }
    let r = a.recommend(&s, 8, Some(&load(100_000.0, 0, 8)), at(615));
    assert_eq!(r.target, 4);
}

#[test]
fn partial_metrics_may_grow_the_count_but_never_shrink_it() {
    let s = spec();
    let mut a = Autoscaler::default();
    let mut partial = load(50_000.0, 0, 8);
    partial.reporting = 5;
    for t in (0..3600).step_by(15) {
        let r = a.recommend(&s, 8, Some(&partial), at(t));
        assert_eq!(r.target, 8, "{}", r.reason);
    }
    partial.lag = 1_200_000;
    assert_eq!(a.recommend(&s, 8, Some(&partial), at(3615)).target, 12);
    // No metrics at all: hold.
    let r = a.recommend(&s, 12, None, at(3630));
    assert_eq!(r.target, 12);
    assert!(r.reason.starts_with("NoMetrics"));
}

#[test]
fn a_count_outside_new_bounds_moves_into_them() {
    let mut s = spec();
    s.shards.min = 4;
    let mut a = Autoscaler::default();
    assert_eq!(a.recommend(&s, 2, Some(&load(0.0, 0, 2)), at(0)).target, 4);
    s.shards.max = 6;
    assert_eq!(a.recommend(&s, 9, Some(&load(900_000.0, 0, 9)), at(15)).target, 6);
}

#[test]
fn quantities_read_as_bytes() {
    let q = |s: &str| quantity_bytes(&Quantity(s.to_owned()));
    assert_eq!(q("1500Mi"), Ok(1500.0 * 1_048_576.0));
    assert_eq!(q("2Gi"), Ok(2.0 * 1_073_741_824.0));
    assert_eq!(q("1.5G"), Ok(1.5e9));
    assert_eq!(q("1e9"), Ok(1e9));
    assert_eq!(q("2Ei"), Ok(2.0 * 1_152_921_504_606_846_976.0));
    assert_eq!(q("100000k"), Ok(1e8));
    assert_eq!(q("512"), Ok(512.0));
    assert!(q("12Xi").is_err());
    assert!(q("-1Gi").is_err());
    assert!(q("").is_err());
}

// ---- The simulation: the autoscaler and the reconcile decisions over a load curve.

/// Seconds between two decisions (the operator requeues every 15 s while it scales).
const TICK: i64 = 15;
/// Events per second one shard can apply.
const CAPACITY: f64 = 60_000.0;
/// Seconds from a pod's creation to its readiness.
const STARTUP: i64 = 45;

/// A StatefulSet as the kubelet would run it: pod `i` exists while `i < replicas`
/// and is ready `STARTUP` seconds after it was created.
#[derive(Default)]
struct Pods {
    created: Vec<i64>,
}

impl Pods {
    fn scale(&mut self, replicas: u32, now: i64) {
        self.created.truncate(replicas as usize);
        while self.created.len() < replicas as usize {
            self.created.push(now);
        }
    }

    fn ready(&self, now: i64) -> u32 {
        // A StatefulSet with Parallel management: each pod on its own clock.
        self.created.iter().filter(|c| now - **c >= STARTUP).count() as u32
    }

    fn is_ready(&self, ordinal: u32, now: i64) -> bool {
        self.created.get(ordinal as usize).is_some_and(|c| now - c >= STARTUP)
    }
}

/// What happened, tick by tick.
#[derive(Debug, Default)]
struct Run {
    /// (second, autoscaler target).
    targets: Vec<(i64, u32)>,
    /// (second, StatefulSet replicas).
    replicas: Vec<(i64, u32)>,
    /// (second, table shards).
    shards: Vec<(i64, u32)>,
    /// (second, lag).
    lag: Vec<(i64, f64)>,
}

/// Runs `seconds` of `incoming(t)` events per second through a cluster whose shards
/// apply `CAPACITY` each, checking at every tick that:
/// - the table and the replicas stay within the bounds (replicas above max only
///   while a hand-off drains);
/// - no partition is given to a pod that is not ready;
/// - no pod goes while its shard owns a partition, under the table in force or the
///   one before, and only once the shards confirmed the table that moved its
///   partitions off (`confirm`: a table is confirmed a tick after it is published if
///   every owner's pod is ready) or, without confirmations, once that table has been
///   out for the hand-off grace.
fn simulate(c: &PersonaCluster, seconds: i64, confirm: bool, incoming: impl Fn(i64) -> f64) -> Run {
    let spec = &c.spec;
    let (min, max) = (spec.shards.min, spec.shards.max);
    let policy = Policy::default();
    let mut cluster = c.clone();
    let mut autoscaler = Autoscaler::default();
    let mut pods = Pods::default();
    let mut table: Option<(persona_placement::Assignment, Timestamp)> = None;
    let mut backlog = 0.0f64;
    let mut applied_rate = 0.0f64;
    let mut confirmed = 0u64;
    let mut run = Run::default();
    for now in (0..seconds).step_by(TICK as usize) {
        // The shards take their partitions under a table once its owners' pods run.
        if let Some((a, published)) = &table
            && now - (published.as_second() - 1_800_000_000) >= TICK
            && (0..a.shards).filter(|s| a.owns_any(*s)).all(|s| pods.is_ready(s, now))
        {
            confirmed = confirmed.max(a.epoch);
        }
        // The shards apply what they can: every owner with a ready pod its share.
        let serving = match &table {
            Some((a, _)) => (0..a.shards)
                .filter(|s| a.owns_any(*s) && pods.is_ready(*s, now))
                .count(),
            None => 0,
        } as f64;
        let arriving = incoming(now) * TICK as f64;
        let can = serving * CAPACITY * TICK as f64;
        let done = can.min(backlog + arriving);
        backlog = backlog + arriving - done;
        if now > 0 {
            applied_rate = done / TICK as f64;
        }
        run.lag.push((now, backlog));

        let replicas = pods.created.len() as u32;
        let ready = pods.ready(now);
        let observed = Observed {
            table: table.as_ref().map_or(Table::Missing, |(a, p)| Table::Published {
                assignment: a.clone(),
                published_at: Some(*p),
            }),
            pods: (replicas > 0 || table.is_some()).then_some(ShardPods {
                replicas,
                ready,
                updated: replicas,
            }),
            conflict: None,
            confirmed_epoch: confirm.then_some(confirmed),
        };
        // The autoscaler goes on from its own last target (the operator keeps it in
        // the status), which the table reaches once the pods are ready.
        let current = run
            .targets
            .last()
            .map_or_else(|| table.as_ref().map_or(min, |(a, _)| a.shards), |(_, t)| *t);
        let reporting = ready.min(replicas);
        let load = Load {
            events_per_second: applied_rate,
            lag: backlog as u64,
            memory_bytes: 0,
            reporting,
            expected: replicas,
            table_epoch: confirm.then_some(confirmed),
        };
        let target = autoscaler
            .recommend(spec, current, (replicas > 0).then_some(&load), at(now))
            .target;
        assert!((min..=max).contains(&target), "at {now}s: target {target}");
        run.targets.push((now, target));

        let rollout = match decide(&cluster, &observed, Some(target), &policy, at(now)) {
            Decision::Apply(r) => r,
            Decision::Refuse(r) => panic!("at {now}s: refused: {} {}", r.reason, r.message),
        };
        let a = &rollout.assignment;
        assert!(
            (min..=max).contains(&a.shards),
            "at {now}s: table of {} shards",
            a.shards
        );
        for (p, owner) in a.owners.iter().enumerate() {
            let before = table.as_ref().and_then(|(t, _)| t.owners.get(p).copied());
            if before != Some(*owner) && table.is_some() {
                assert!(
                    pods.is_ready(*owner, now),
                    "at {now}s: partition {p} moved onto shard {owner}, whose pod is not ready"
                );
            }
        }
        if rollout.replicas < replicas {
            for (t, label) in [(Some(a), "in force"), (table.as_ref().map(|(t, _)| t), "before")] {
                if let Some(t) = t {
                    assert!(
                        t.shards_in_use() <= rollout.replicas,
                        "at {now}s: replicas drop to {} while the table {label} uses {} shards",
                        rollout.replicas,
                        t.shards_in_use()
                    );
                }
            }
            if confirm {
                assert!(
                    confirmed >= a.epoch,
                    "at {now}s: replicas drop before the shards confirmed epoch {}",
                    a.epoch
                );
            } else {
                let since = now - rollout.published_at.as_second() + 1_800_000_000;
                assert!(
                    since >= policy.handoff_grace.as_secs() as i64,
                    "at {now}s: replicas drop {since}s after the epoch that moved the partitions off"
                );
            }
        }
        if rollout.replicas > max {
            assert!(rollout.replicas <= replicas, "at {now}s: replicas grow beyond max");
        }
        pods.scale(rollout.replicas, now);
        table = Some((rollout.assignment.clone(), rollout.published_at));
        cluster.status = Some(rollout.status);
        run.replicas.push((now, rollout.replicas));
        run.shards.push((now, rollout.assignment.shards));
    }
    run
}

/// After a rise of the target, no fall within the window.
fn assert_no_flapping(run: &Run, window: i64) {
    let mut last_up: Option<i64> = None;
    for pair in run.targets.windows(2) {
        let ((_, before), (t, after)) = (pair[0], pair[1]);
        if after > before {
            last_up = Some(t);
        } else if after < before
            && let Some(u) = last_up
        {
            assert!(t - u >= window, "down at {t}s only {}s after a rise at {u}s", t - u);
        }
    }
}

/// A deterministic jitter of ±`amplitude` (a fraction), the same for a given second.
fn jitter(t: i64, amplitude: f64) -> f64 {
    let x = (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let unit = (x >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    1.0 + amplitude * (2.0 * unit - 1.0)
}

#[test]
fn a_five_fold_surge_and_its_decline() {
    let mut c = cluster(64, 2, 12);
    c.spec.scaling.target_events_per_second = 50_000;
    c.spec.scaling.target_lag = 100_000;
    c.spec.scaling.scale_down_after = Duration::from_secs(600).into();
    c.spec.scaling.max_step = 4;
    // 90k/s for 30 min; up to 450k/s over 5 min (the 5x expansion); an hour there;
    // back to 90k/s over 30 min; two hours of quiet. ±5% jitter throughout.
    let curve = |t: i64| {
        let m = t as f64 / 60.0;
        let base = if m < 30.0 {
            90_000.0
        } else if m < 35.0 {
            90_000.0 + 360_000.0 * (m - 30.0) / 5.0
        } else if m < 95.0 {
            450_000.0
        } else if m < 125.0 {
            450_000.0 - 360_000.0 * (m - 95.0) / 30.0
        } else {
            90_000.0
        };
        base * jitter(t, 0.05)
    };
    let seconds = 4 * 3600;
    for confirm in [false, true] {
        let run = simulate(&c, seconds, confirm, curve);
        check_surge(&run, seconds);
    }
}

fn check_surge(run: &Run, seconds: i64) {
    assert_no_flapping(run, 600);

    let replicas_at = |s: i64| run.replicas.iter().rev().find(|(t, _)| *t <= s).unwrap().1;
    let shards_at = |s: i64| run.shards.iter().rev().find(|(t, _)| *t <= s).unwrap().1;
    let lag_at = |s: i64| run.lag.iter().rev().find(|(t, _)| *t <= s).unwrap().1;
    // Before the surge: the minimum, no backlog.
    assert_eq!((shards_at(29 * 60), replicas_at(29 * 60)), (2, 2));
    assert!(lag_at(29 * 60) < 1.0);
    // The surge is absorbed: within 15 minutes of its peak at least 9 shards serve
    // (450k/s over 50k/s per shard) and the backlog is gone by the end of the hour.
    assert!(shards_at(50 * 60) >= 9, "{} shards at 50 min", shards_at(50 * 60));
    let peak_lag = run.lag.iter().map(|(_, l)| *l).fold(0.0, f64::max);
    assert!(peak_lag > 0.0, "the surge must outrun two shards for a while");
    assert!(lag_at(94 * 60) < 1.0, "backlog {} at 94 min", lag_at(94 * 60));
    // Never above max.
    assert!(run.replicas.iter().all(|(_, r)| *r <= 12));
    // The decline brings it back to the minimum, table and pods.
    assert_eq!((shards_at(seconds - 1), replicas_at(seconds - 1)), (2, 2));
    // It went down in steps no larger than maxStep.
    for pair in run.targets.windows(2) {
        assert!(pair[0].1.abs_diff(pair[1].1) <= 4, "{pair:?}");
    }
}

fn curve() -> impl Strategy<Value = Vec<(i64, f64)>> {
    // Up to 12 segments of 1 to 40 minutes at 10k to 700k events/s.
    proptest::collection::vec((1i64..40, 10_000.0f64..700_000.0), 1..12)
        .prop_map(|segments| segments.into_iter().map(|(m, rate)| (m * 60, rate)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the load: bounds hold, no flapping inside the window, no partition on a
    /// pod that is not ready, no pod removed before its partitions moved off.
    #[test]
    fn any_load_curve_keeps_the_invariants(
        segments in curve(),
        min in 1u32..4,
        extra in 0u32..10,
        noise in 0.0f64..0.08,
        window_min in 1i64..15,
        confirm in proptest::bool::ANY,
    ) {
        let max = min + extra;
        let mut c = cluster(64, min, max);
        c.spec.scaling.target_events_per_second = 50_000;
        c.spec.scaling.target_lag = 100_000;
        c.spec.scaling.scale_down_after = Duration::from_secs(window_min as u64 * 60).into();
        let total: i64 = segments.iter().map(|(s, _)| s).sum();
        // Time for the most shards to drain the worst backlog, then an hour of quiet.
        let events: f64 = segments.iter().map(|(s, r)| *s as f64 * r * (1.0 + noise)).sum();
        let drain = (events / (f64::from(max) * CAPACITY)).ceil() as i64;
        let rate = move |t: i64| {
            let mut end = 0;
            for (len, rate) in &segments {
                end += len;
                if t < end {
                    return rate * jitter(t, noise);
                }
            }
            0.0
        };
        let run = simulate(&c, total + drain + 3600, confirm, rate);
        assert_no_flapping(&run, window_min * 60);
        // Drained, and after an hour of no load, the cluster is back at its minimum.
        prop_assert!(run.lag.last().unwrap().1 < 1.0);
        prop_assert_eq!(run.shards.last().unwrap().1, min);
        prop_assert_eq!(run.replicas.last().unwrap().1, min);
    }
}
