//! Batch evaluation: a customer's features computed directly from her whole event
//! history as of an instant, with no incremental state. It serves backfills (replays,
//! comparisons with other engines) and is the oracle the streaming state is tested
//! against, so it shares the definitions (windows, tiles, expressions) but none of the
//! incremental arithmetic: every aggregation is a plain fold over the qualifying events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use persona_event::{Event, Value};
use persona_expr::{FeatureRef, Scope};

use crate::agg::Agg;
use crate::set::{Feature, FeatureSet};
use crate::state::EventScope;
use crate::window::{local_day, local_month};

/// One qualifying event of a feature: its time and value. Points are kept in
/// (time, event id) order, which is what first and last follow.
struct Point {
    ts: DateTime<Utc>,
    value: Value,
}

/// Scope of derived features over the values computed so far.
struct Computed<'a> {
    values: &'a BTreeMap<String, Value>,
    at: DateTime<Utc>,
    tz: Tz,
}

impl Scope for Computed<'_> {
    fn event(&self, _name: &str) -> Value {
        Value::Null
    }
    fn feature(&self, f: FeatureRef<'_>) -> Value {
        self.values.get(f.name).cloned().unwrap_or(Value::Null)
    }
    fn now(&self) -> Option<DateTime<Utc>> {
        Some(self.at)
    }
    fn timezone(&self) -> Tz {
        self.tz
    }
}

/// Every feature of `set`, derived ones included, for the customer whose events are
/// `events` (any order), as of `at`. Events after `at` do not count. A family holds the
/// keys that have events inside the window (all of them: the `maxKeys` bound is the
/// streaming state's, and the two agree below it).
pub fn evaluate(set: &FeatureSet, events: &[Event], at: DateTime<Utc>) -> BTreeMap<String, Value> {
    let mut ordered: Vec<&Event> = events.iter().filter(|e| e.ts <= at).collect();
    ordered.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
    let mut values = BTreeMap::new();
    for f in &set.features {
        values.insert(f.name.clone(), evaluate_feature(f, &ordered, at, set.tz));
    }
    for d in &set.derived {
        let v = d.program.eval(&Computed {
            values: &values,
            at,
            tz: set.tz,
        });
        values.insert(d.name.clone(), v);
    }
    values
}

fn evaluate_feature(f: &Feature, events: &[&Event], at: DateTime<Utc>, tz: Tz) -> Value {
    let end = f.window.tile(at, tz);
    let mut groups: BTreeMap<Option<String>, Vec<Point>> = BTreeMap::new();
    for e in events {
        if !f.on.contains(&e.kind) || !f.window.covers(f.window.tile(e.ts, tz), end) {
            continue;
        }
        let scope = EventScope::by_name(e, tz);
        if f.filter.as_ref().is_some_and(|w| !w.eval_bool(&scope)) {
            continue;
        }
        let value = f.value.as_ref().map_or(Value::Null, |v| v.eval(&scope));
        if f.agg.needs_value() && value.is_null() {
            continue;
        }
        let key = match &f.by {
            None => None,
            Some(by) => match by.eval(&scope) {
                Value::Null => continue,
                k => Some(k.to_key()),
            },
        };
        groups.entry(key).or_default().push(Point { ts: e.ts, value });
    }
    match &f.by {
        None => fold(&f.agg, groups.remove(&None).unwrap_or_default(), at, tz),
        Some(_) => Value::Map(
            groups
                .into_iter()
                .filter_map(|(k, points)| Some((k?, fold(&f.agg, points, at, tz))))
                .collect(),
        ),
    }
}

/// The aggregation over points sorted by (time, id).
fn fold(agg: &Agg, points: Vec<Point>, at: DateTime<Utc>, tz: Tz) -> Value {
    let numbers = || points.iter().filter(|p| p.value.as_f64().is_some());
    match agg {
        Agg::Count => Value::Int(points.len() as i64),
        Agg::Sum => {
            let ints: Option<Vec<i64>> = numbers()
                .map(|p| match p.value {
                    Value::Int(i) => Some(i),
                    _ => None,
                })
                .collect();
            match ints.and_then(|v| v.into_iter().try_fold(0i64, i64::checked_add)) {
                Some(total) => Value::Int(total),
                None => Value::Float(numbers().filter_map(|p| p.value.as_f64()).sum()),
            }
        }
        Agg::Avg => {
            let xs: Vec<f64> = numbers().filter_map(|p| p.value.as_f64()).collect();
            if xs.is_empty() {
                Value::Null
            } else {
                Value::Float(xs.iter().sum::<f64>() / xs.len() as f64)
            }
        }
        Agg::Min | Agg::Max => {
            let mut best: Option<&Value> = None;
            for p in &points {
                let better = best.is_none_or(|b| match p.value.compare(b) {
                    Some(o) => {
                        if *agg == Agg::Min {
                            o.is_lt()
                        } else {
                            o.is_gt()
                        }
                    }
                    None => false,
                });
                if better {
                    best = Some(&p.value);
                }
            }
            best.cloned().unwrap_or(Value::Null)
        }
        Agg::First => points.first().map_or(Value::Null, |p| p.value.clone()),
        Agg::Last => points.last().map_or(Value::Null, |p| p.value.clone()),
        Agg::DistinctCount => Value::Int(points.iter().map(|p| p.value.to_key()).collect::<BTreeSet<_>>().len() as i64),
        Agg::DistinctDays | Agg::DistinctMonths => {
            let calendar = |t| {
                if *agg == Agg::DistinctDays {
                    local_day(t, tz)
                } else {
                    local_month(t, tz)
                }
            };
            let set: BTreeSet<i64> = points
                .iter()
                .filter_map(|p| {
                    if p.value.is_null() {
                        Some(p.ts)
                    } else {
                        p.value.as_time()
                    }
                })
                .map(calendar)
                .collect();
            Value::Int(set.len() as i64)
        }
        Agg::Decay {
            half_life_secs,
            of_events,
        } => {
            let total = points
                .iter()
                .filter_map(|p| if *of_events { Some(1.0) } else { p.value.as_f64() }.map(|w| (w, p.ts)))
                .map(|(w, ts)| {
                    let age = (at - ts).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
                    w * (-age / *half_life_secs as f64).exp2()
                })
                .sum();
            Value::Float(total)
        }
    }
}
