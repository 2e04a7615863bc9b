//! The autoscaler: how many shards a PersonaCluster should have for its load, with
//! the behaviour of the Horizontal Pod Autoscaler.
//!
//! - **Per metric**, the shards needed are `ceil(total / target per shard)`: events
//!   applied per second against `scaling.targetEventsPerSecond`, bus entries waiting
//!   (the partitions' lag: entries after the checkpoint, counted on Redis) against
//!   `scaling.targetLag`, and resident memory against `scaling.targetMemory` when set.
//!   A metric within 10% of its target at the current count asks for no change (the
//!   tolerance); the largest wish wins.
//! - **Up fast**: a larger wish applies at once, by at most `scaling.maxStep` shards
//!   per decision.
//! - **Down slowly**: a smaller count applies only when every wish of the last
//!   `scaling.scaleDownAfter` (the stabilization window) was at most that count, and
//!   the autoscaler has watched for a whole window (a new operator leader waits too);
//!   by at most `maxStep` shards per decision.
//! - **Partial data never shrinks**: while some shard's metrics cannot be read, the
//!   count may rise but not fall.
//!
//! The moves themselves (new pods first, partitions off the highest ordinals before
//! their pods go) are [`crate::decision::decide`]'s.

use std::collections::VecDeque;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{LoadStatus, PersonaClusterSpec};

/// A metric within this fraction of its target asks for no change.
pub const TOLERANCE: f64 = 0.1;

/// The load of one cluster at one instant, summed over the shards that reported.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// Events applied per second.
    pub events_per_second: f64,
    /// Bus entries not yet checkpointed by their partition's owner.
    pub lag: u64,
    /// Resident memory of the shard processes, in bytes.
    pub memory_bytes: u64,
    /// Shards whose metrics were read.
    pub reporting: u32,
    /// Shards that should have reported (the pods running).
    pub expected: u32,
    /// The lowest assignment-table epoch the shards have taken all their partitions
    /// under (`persona_table_epoch`); `None` unless every running shard reported one.
    pub table_epoch: Option<u64>,
}

impl Load {
    /// Whether every running shard reported.
    pub fn complete(&self) -> bool {
        self.reporting >= self.expected
    }

    /// The load as the status shows it.
    pub fn status(&self) -> LoadStatus {
        LoadStatus {
            events_per_second: self.events_per_second.round().max(0.0) as u64,
            lag: self.lag,
            memory_bytes: self.memory_bytes,
            reporting_shards: self.reporting,
        }
    }
}

/// The count the autoscaler asks for, and what drove it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recommendation {
    /// Shards wanted, within the spec's bounds.
    pub target: u32,
    /// Why, for the status and the log: the metric that decided, or what held the
    /// count.
    pub reason: String,
}

/// The shards one metric asks for: `ceil(total / per_shard)`, or `current` when the
/// metric is within [`TOLERANCE`] of its target at the current count.
pub fn needed(total: f64, per_shard: f64, current: u32) -> u32 {
    if per_shard <= 0.0 || !total.is_finite() || total <= 0.0 {
        return 0;
    }
    if current > 0 {
        let ratio = total / (per_shard * f64::from(current));
        if (ratio - 1.0).abs() <= TOLERANCE {
            return current;
        }
    }
    let n = (total / per_shard).ceil();
    if n >= f64::from(u32::MAX) { u32::MAX } else { n as u32 }
}

/// The shards the load asks for, before the behaviour (steps, window, bounds), and
/// the metric that asked for the most.
pub fn wish(spec: &PersonaClusterSpec, current: u32, load: &Load) -> (u32, &'static str) {
    let scaling = &spec.scaling;
    let mut best = (
        needed(load.events_per_second, scaling.target_events_per_second as f64, current),
        "events",
    );
    let lag = needed(load.lag as f64, scaling.target_lag as f64, current);
    if lag > best.0 {
        best = (lag, "lag");
    }
    if let Some(per_shard) = scaling.target_memory.as_ref().and_then(|q| quantity_bytes(q).ok()) {
        let memory = needed(load.memory_bytes as f64, per_shard, current);
        if memory > best.0 {
            best = (memory, "memory");
        }
    }
    (best.0.max(1), best.1)
}

/// The wishes of the last window and what was decided, for one cluster. The
/// operator keeps one per PersonaCluster in memory; a new leader starts afresh and
/// waits a whole window before it shrinks anything.
#[derive(Clone, Debug, Default)]
pub struct Autoscaler {
    /// (when, wish) over the last window, oldest first.
    wishes: VecDeque<(Timestamp, u32)>,
    /// The first observation.
    since: Option<Timestamp>,
}

impl Autoscaler {
    /// Decides the target given the `current` one (the last target decided, which
    /// the table reaches once the new pods are ready) under `load` (`None`: no
    /// metrics at all, which holds the count).
    pub fn recommend(
        &mut self,
        spec: &PersonaClusterSpec,
        current: u32,
        load: Option<&Load>,
        now: Timestamp,
    ) -> Recommendation {
        let (min, max) = (spec.shards.min, spec.shards.max.max(spec.shards.min));
        let step = spec.scaling.max_step.max(1);
        let window: Duration = spec.scaling.scale_down_after.into();
        let current_clamped = current.clamp(min, max);
        let hold = |reason: String| Recommendation {
            target: current_clamped,
            reason,
        };
        let Some(load) = load else {
            return hold("NoMetrics: no shard's metrics could be read; the count holds".to_owned());
        };
        let since = *self.since.get_or_insert(now);
        let (raw, metric) = wish(spec, current, load);
        let raw = raw.clamp(min, max);
        // A partial reading may show too little load, never too much: it counts only
        // when it asks for no fewer shards than there are.
        if load.complete() || raw >= current {
            self.wishes.push_back((now, raw));
        }
        while self
            .wishes
            .front()
            .is_some_and(|(at, _)| age(now, *at) > window && self.wishes.len() > 1)
        {
            self.wishes.pop_front();
        }

        if current < min || current > max {
            return Recommendation {
                target: current_clamped,
                reason: format!("Bounds: {current} shards is outside [{min}, {max}]"),
            };
        }
        if raw > current {
            let target = raw.min(current.saturating_add(step));
            return Recommendation {
                target,
                reason: format!("ScaleUp: {metric} asks for {raw} shards"),
            };
        }
        if !load.complete() {
            return hold(format!(
                "PartialMetrics: {}/{} shards reported; the count does not fall on partial data",
                load.reporting, load.expected
            ));
        }
        let stabilized = self.wishes.iter().map(|(_, w)| *w).max().unwrap_or(current);
        if stabilized >= current {
            let reason = if raw < current {
                format!(
                    "Stabilizing: the load asks for {raw} shards, but {stabilized} within the last {}",
                    kube::core::Duration::from(window)
                )
            } else {
                format!("Steady: {metric} is within target at {current} shards")
            };
            return hold(reason);
        }
        if age(now, since) < window {
            return hold(format!(
                "Watching: the load asks for {stabilized} shards; a scale-down waits until the load was watched for {}",
                kube::core::Duration::from(window)
            ));
        }
        let target = stabilized.max(current.saturating_sub(step)).max(min);
        Recommendation {
            target,
            reason: format!(
                "ScaleDown: the load asked for at most {stabilized} shards over the last {}",
                kube::core::Duration::from(window)
            ),
        }
    }
}

fn age(now: Timestamp, then: Timestamp) -> Duration {
    let elapsed = now.duration_since(then);
    if elapsed.is_negative() {
        Duration::ZERO
    } else {
        elapsed.unsigned_abs()
    }
}

/// Bytes of a Kubernetes quantity (`512Mi`, `2Gi`, `1.5G`, `1e9`, `100000k`).
pub fn quantity_bytes(quantity: &Quantity) -> Result<f64, String> {
    let text = quantity.0.trim();
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text, 1.0));
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a quantity"))?;
    if value < 0.0 || !value.is_finite() {
        return Err(format!("`{text}` is not a positive quantity"));
    }
    Ok(value * factor)
}

#[cfg(test)]
mod tests;
