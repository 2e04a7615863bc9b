//! Aggregations: what one tile of a feature remembers (`Acc`), how an event is added to
//! it, and how the tiles inside a window combine into the feature's value. Every
//! accumulator is mergeable, which is what lets a window be a set of tiles.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use persona_event::{EventId, Value};

use crate::window::{Tiles, local_day, local_month};

/// An aggregation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Agg {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    DistinctCount,
    DistinctDays,
    DistinctMonths,
    /// Decayed sum of the values (or, with `of_events`, of the events), half-life in
    /// seconds.
    Decay {
        half_life_secs: i64,
        of_events: bool,
    },
}

impl Agg {
    /// Parses `agg` and `decay` together.
    pub fn parse(agg: &str, decay_secs: Option<i64>) -> Result<Agg, String> {
        let plain = match agg {
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "avg" => Agg::Avg,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "first" => Agg::First,
            "last" => Agg::Last,
            "distinct_count" => Agg::DistinctCount,
            "distinct_days" => Agg::DistinctDays,
            "distinct_months" => Agg::DistinctMonths,
            "decay" => Agg::Decay {
                half_life_secs: 0,
                of_events: false,
            },
            other => {
                return Err(format!(
                    "unknown aggregation `{other}`: expected one of count, sum, avg, min, max, first, last, \
                     distinct_count, distinct_days, distinct_months, decay"
                ));
            }
        };
        match (plain, decay_secs) {
            (Agg::Decay { .. } | Agg::Sum, Some(h)) if h > 0 => Ok(Agg::Decay {
                half_life_secs: h,
                of_events: false,
            }),
            (Agg::Count, Some(h)) if h > 0 => Ok(Agg::Decay {
                half_life_secs: h,
                of_events: true,
            }),
            (_, Some(h)) if h <= 0 => Err("`decay` must be a positive duration".into()),
            (Agg::Decay { .. }, None) => Err("`agg: decay` needs a half-life: `decay: 14d`".into()),
            (other, Some(_)) => Err(format!("`decay` applies to sum, count or decay, not {}", other.name())),
            (other, None) => Ok(other),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Agg::Count => "count",
            Agg::Sum => "sum",
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::First => "first",
            Agg::Last => "last",
            Agg::DistinctCount => "distinct_count",
            Agg::DistinctDays => "distinct_days",
            Agg::DistinctMonths => "distinct_months",
            Agg::Decay { .. } => "decay",
        }
    }

    /// Whether the aggregation reads a `value` (else it counts events or their times).
    pub fn needs_value(&self) -> bool {
        !matches!(
            self,
            Agg::Count | Agg::DistinctDays | Agg::DistinctMonths | Agg::Decay { of_events: true, .. }
        )
    }

    /// Whether the result is always a number (for type-checking expressions).
    pub fn is_numeric(&self) -> bool {
        !matches!(self, Agg::Min | Agg::Max | Agg::First | Agg::Last)
    }

    /// A tile with nothing in it.
    pub(crate) fn empty(&self) -> Acc {
        match self {
            Agg::Count => Acc::Count(0),
            Agg::Sum => Acc::Sum(Num::Int(0)),
            Agg::Avg => Acc::Avg(0.0, 0),
            Agg::Min | Agg::Max => Acc::Extreme(Scalar::Null),
            Agg::First | Agg::Last => Acc::Pick(None),
            Agg::DistinctCount => Acc::Set(SmallSet::Empty),
            Agg::DistinctDays | Agg::DistinctMonths => Acc::Ints(SmallSet::Empty),
            Agg::Decay { .. } => Acc::Decay { at: 0, sum: 0.0 },
        }
    }

    /// The value of a window made of `tiles`, evaluated at `at`.
    pub(crate) fn finish<'a>(&self, tiles: impl Iterator<Item = &'a Acc>, at: DateTime<Utc>) -> Value {
        let mut total = self.empty();
        for t in tiles {
            total.merge(self, t);
        }
        match total {
            Acc::Count(n) => Value::Int(n as i64),
            Acc::Sum(Num::Int(i)) => Value::Int(i),
            Acc::Sum(Num::Float(x)) => Value::Float(x),
            Acc::Avg(_, 0) => Value::Null,
            Acc::Avg(sum, n) => Value::Float(sum / n as f64),
            Acc::Extreme(v) => v.to_value(),
            Acc::Pick(p) => p.map_or(Value::Null, |p| p.value),
            Acc::Set(s) => Value::Int(s.len() as i64),
            Acc::Ints(s) => Value::Int(s.len() as i64),
            Acc::Decay { at: ref_us, sum } => {
                let Agg::Decay { half_life_secs, .. } = *self else {
                    unreachable!("decay acc of a decay agg")
                };
                Value::Float(decayed(sum, ref_us, at.timestamp_micros(), half_life_secs))
            }
        }
    }
}

/// A number that stays an integer while it can, so integer sums are exact.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn add(self, v: &Value) -> Num {
        match (self, v) {
            (Num::Int(a), Value::Int(b)) => a.checked_add(*b).map_or(Num::Float(a as f64 + *b as f64), Num::Int),
            (Num::Int(a), Value::Float(b)) => Num::Float(a as f64 + b),
            (Num::Float(a), v) => Num::Float(a + v.as_f64().unwrap_or(0.0)),
            (n, _) => n,
        }
    }

    fn value(self) -> Value {
        match self {
            Num::Int(i) => Value::Int(i),
            Num::Float(x) => Value::Float(x),
        }
    }
}

/// A value kept by min, max, first and last: numbers inline (the usual case), any
/// other value boxed, so a tile stays small.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Int(i64),
    Float(f64),
    Other(Box<Value>),
}

impl Scalar {
    pub(crate) fn of(v: &Value) -> Scalar {
        match v {
            Value::Null => Scalar::Null,
            Value::Int(i) => Scalar::Int(*i),
            Value::Float(x) => Scalar::Float(*x),
            other => Scalar::Other(Box::new(other.clone())),
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Int(i) => Value::Int(*i),
            Scalar::Float(x) => Value::Float(*x),
            Scalar::Other(v) => (**v).clone(),
        }
    }

    fn compare(&self, v: &Value) -> Option<std::cmp::Ordering> {
        match self {
            Scalar::Null => None,
            Scalar::Int(i) => Value::Int(*i).compare(v),
            Scalar::Float(x) => Value::Float(*x).compare(v),
            Scalar::Other(o) => o.compare(v),
        }
    }
}

/// The earliest or latest value by (event time, event id).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Picked {
    pub(crate) at: i64,
    pub(crate) id: EventId,
    pub(crate) value: Value,
}

/// A small sorted set: one element inline (a day tile of `distinct_days` holds one
/// day), more on the heap.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SmallSet<T> {
    Empty,
    One(T),
    // A thin pointer: `Vec` itself would make every tile 8 bytes larger.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<T>>),
}

impl<T: Ord + Clone> SmallSet<T> {
    pub(crate) fn insert(&mut self, x: T) {
        match self {
            SmallSet::Empty => *self = SmallSet::One(x),
            SmallSet::One(y) if *y == x => {}
            SmallSet::One(y) => {
                let mut v = vec![y.clone(), x];
                v.sort();
                *self = SmallSet::Many(Box::new(v));
            }
            SmallSet::Many(v) => {
                if let Err(p) = v.binary_search(&x) {
                    v.insert(p, x);
                }
            }
        }
    }

    pub(crate) fn contains<Q: Ord + ?Sized>(&self, x: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
    {
        self.as_slice().binary_search_by(|y| y.borrow().cmp(x)).is_ok()
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            SmallSet::Empty => 0,
            SmallSet::One(_) => 1,
            SmallSet::Many(v) => v.len(),
        }
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            SmallSet::Empty => &[],
            SmallSet::One(x) => std::slice::from_ref(x),
            SmallSet::Many(v) => v,
        }
    }

    fn extend(&mut self, other: &SmallSet<T>) {
        for x in other.as_slice() {
            self.insert(x.clone());
        }
    }
}

/// What one tile of one feature remembers. Kept to 24 bytes: a customer holds one per
/// feature per active day.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Acc {
    Count(u64),
    Sum(Num),
    Avg(f64, u64),
    Extreme(Scalar),
    /// Boxed: it is rare and the largest variant, and every tile pays for the largest.
    Pick(Option<Box<Picked>>),
    Set(SmallSet<Box<str>>),
    Ints(SmallSet<i64>),
    /// Sum of decayed weights as of `at` (microseconds).
    Decay {
        at: i64,
        sum: f64,
    },
}

fn decayed(sum: f64, from_us: i64, to_us: i64, half_life_secs: i64) -> f64 {
    let age = (to_us - from_us) as f64 / 1e6;
    sum * (-age / half_life_secs as f64).exp2()
}

impl Acc {
    /// Adds one event's value. `value` is null for aggregations that count events.
    /// `tiles` are the event time's; a time `value` is converted in `tz`.
    pub(crate) fn add(&mut self, agg: &Agg, value: &Value, ts: DateTime<Utc>, id: &EventId, tiles: &Tiles, tz: Tz) {
        match (self, agg) {
            (Acc::Count(n), _) => *n += 1,
            (Acc::Sum(s), _) if value.as_f64().is_some() => *s = s.add(value),
            (Acc::Avg(sum, n), _) => {
                if let Some(x) = value.as_f64() {
                    *sum += x;
                    *n += 1;
                }
            }
            (Acc::Extreme(cur), agg) if !value.is_null() => {
                let replace = match cur.compare(value) {
                    _ if *cur == Scalar::Null => true,
                    Some(o) => (o.is_gt() && *agg == Agg::Min) || (o.is_lt() && *agg == Agg::Max),
                    None => false,
                };
                if replace {
                    *cur = Scalar::of(value);
                }
            }
            (Acc::Pick(cur), agg) if !value.is_null() => {
                let at = ts.timestamp_micros();
                let replace = match cur {
                    None => true,
                    Some(p) => {
                        let ord = (at, id).cmp(&(p.at, &p.id));
                        if *agg == Agg::First { ord.is_lt() } else { ord.is_gt() }
                    }
                };
                if replace {
                    match cur {
                        // In place: `last` replaces its pick on nearly every event.
                        Some(p) => {
                            p.at = at;
                            p.id.clone_from(id);
                            match (&mut p.value, value) {
                                (Value::Str(mine), Value::Str(theirs)) => mine.clone_from(theirs),
                                (mine, theirs) => *mine = theirs.clone(),
                            }
                        }
                        None => {
                            *cur = Some(Box::new(Picked {
                                at,
                                id: id.clone(),
                                value: value.clone(),
                            }))
                        }
                    }
                }
            }
            (Acc::Set(s), _) if !value.is_null() => match value {
                Value::Str(k) if s.contains(k.as_str()) => {}
                Value::Str(k) => s.insert(k.as_str().into()),
                other => s.insert(other.to_key().into_boxed_str()),
            },
            (Acc::Ints(s), agg) => {
                let days = *agg == Agg::DistinctDays;
                let calendar = if value.is_null() {
                    Some(if days { tiles.day } else { tiles.month })
                } else {
                    value
                        .as_time()
                        .map(|t| if days { local_day(t, tz) } else { local_month(t, tz) })
                };
                if let Some(c) = calendar {
                    s.insert(c);
                }
            }
            (
                Acc::Decay { at, sum },
                Agg::Decay {
                    half_life_secs,
                    of_events,
                },
            ) => {
                let weight = if *of_events { Some(1.0) } else { value.as_f64() };
                if let Some(w) = weight {
                    let t = ts.timestamp_micros();
                    if *sum == 0.0 && *at == 0 {
                        (*at, *sum) = (t, w);
                    } else if t > *at {
                        *sum = decayed(*sum, *at, t, *half_life_secs) + w;
                        *at = t;
                    } else {
                        *sum += decayed(w, t, *at, *half_life_secs);
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether the tile holds nothing (merging it changes nothing).
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Acc::Count(n) => *n == 0,
            Acc::Sum(Num::Int(0)) => true,
            Acc::Sum(_) => false,
            Acc::Avg(_, n) => *n == 0,
            Acc::Extreme(s) => *s == Scalar::Null,
            Acc::Pick(p) => p.is_none(),
            Acc::Set(s) => s.len() == 0,
            Acc::Ints(s) => s.len() == 0,
            Acc::Decay { at, sum } => *at == 0 && *sum == 0.0,
        }
    }

    /// Folds another tile of the same aggregation into this one.
    fn merge(&mut self, agg: &Agg, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum(a), Acc::Sum(b)) => *a = a.add(&b.value()),
            (Acc::Avg(s, n), Acc::Avg(s2, n2)) => {
                *s += s2;
                *n += n2;
            }
            (me @ Acc::Extreme(_), Acc::Extreme(v)) if *v != Scalar::Null => {
                let epoch = Tiles::of(DateTime::UNIX_EPOCH, Tz::UTC);
                me.add(
                    agg,
                    &v.to_value(),
                    DateTime::UNIX_EPOCH,
                    &EventId::from_bytes([0; 16]),
                    &epoch,
                    Tz::UTC,
                )
            }
            (Acc::Pick(cur), Acc::Pick(Some(p))) => {
                let replace = cur.as_ref().is_none_or(|c| {
                    let ord = (p.at, &p.id).cmp(&(c.at, &c.id));
                    if *agg == Agg::First { ord.is_lt() } else { ord.is_gt() }
                });
                if replace {
                    *cur = Some(p.clone());
                }
            }
            (Acc::Set(a), Acc::Set(b)) => a.extend(b),
            (Acc::Ints(a), Acc::Ints(b)) => a.extend(b),
            (Acc::Decay { at, sum }, Acc::Decay { at: at2, sum: sum2 }) => {
                let Agg::Decay { half_life_secs, .. } = *agg else {
                    return;
                };
                if *sum2 == 0.0 && *at2 == 0 {
                    return;
                }
                if *sum == 0.0 && *at == 0 {
                    (*at, *sum) = (*at2, *sum2);
                } else if at2 > at {
                    *sum = decayed(*sum, *at, *at2, half_life_secs) + sum2;
                    *at = *at2;
                } else {
                    *sum += decayed(*sum2, *at2, *at, half_life_secs);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persona_event::time::parse_ts;

    fn run(agg: Agg, values: &[(&str, Value)], at: &str) -> Value {
        let mut acc = agg.empty();
        for (i, (ts, v)) in values.iter().enumerate() {
            let ts = parse_ts(ts).unwrap();
            acc.add(
                &agg,
                v,
                ts,
                &EventId::from_bytes([i as u8; 16]),
                &Tiles::of(ts, Tz::UTC),
                Tz::UTC,
            );
        }
        agg.finish(std::iter::once(&acc), parse_ts(at).unwrap())
    }

    const T: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn hand_computed_values() {
        let nums = [
            (T, Value::Int(3)),
            (T, Value::Float(1.5)),
            (T, Value::Null),
            (T, Value::Int(-2)),
        ];
        assert_eq!(run(Agg::Count, &nums, T), Value::Int(4));
        assert_eq!(run(Agg::Sum, &nums, T), Value::Float(2.5));
        assert_eq!(
            run(Agg::Sum, &[(T, Value::Int(2)), (T, Value::Int(5))], T),
            Value::Int(7)
        );
        assert_eq!(run(Agg::Avg, &nums, T), Value::Float(2.5 / 3.0));
        assert_eq!(run(Agg::Min, &nums, T), Value::Int(-2));
        assert_eq!(run(Agg::Max, &nums, T), Value::Int(3));
        assert_eq!(
            run(
                Agg::DistinctCount,
                &[(T, "a".into()), (T, "b".into()), (T, "a".into())],
                T
            ),
            Value::Int(2)
        );
    }

    #[test]
    fn empty_windows_give_zero_or_null() {
        assert_eq!(run(Agg::Count, &[], T), Value::Int(0));
        assert_eq!(run(Agg::Sum, &[], T), Value::Int(0));
        assert_eq!(run(Agg::DistinctDays, &[], T), Value::Int(0));
        for agg in [Agg::Avg, Agg::Min, Agg::Max, Agg::First, Agg::Last] {
            assert_eq!(run(agg, &[], T), Value::Null, "{agg:?}");
        }
    }

    #[test]
    fn first_and_last_follow_event_time_then_id() {
        let vals = [
            ("2026-01-02T00:00:00Z", Value::from("b")),
            ("2026-01-01T00:00:00Z", Value::from("a")),
            ("2026-01-03T00:00:00Z", Value::from("c")),
            ("2026-01-03T00:00:00Z", Value::from("d")),
        ];
        assert_eq!(run(Agg::First, &vals, T), Value::from("a"));
        // Same time: the larger event id (index 3) wins.
        assert_eq!(run(Agg::Last, &vals, T), Value::from("d"));
    }

    #[test]
    fn distinct_days_and_months_use_event_time() {
        let evs = [
            ("2026-01-31T10:00:00Z", Value::Null),
            ("2026-01-31T12:00:00Z", Value::Null),
            ("2026-02-01T10:00:00Z", Value::Null),
        ];
        assert_eq!(run(Agg::DistinctDays, &evs, T), Value::Int(2));
        assert_eq!(run(Agg::DistinctMonths, &evs, T), Value::Int(2));
    }

    #[test]
    fn decay_halves_each_half_life() {
        let agg = Agg::parse("decay", Some(86_400)).unwrap();
        let v = run(agg, &[("2026-01-01T00:00:00Z", Value::Int(8))], "2026-01-03T00:00:00Z");
        assert!((v.as_f64().unwrap() - 2.0).abs() < 1e-12, "{v:?}");
        // Order of arrival does not matter.
        let a = run(
            agg,
            &[
                ("2026-01-01T00:00:00Z", Value::Int(4)),
                ("2026-01-02T00:00:00Z", Value::Int(4)),
            ],
            "2026-01-02T00:00:00Z",
        );
        let b = run(
            agg,
            &[
                ("2026-01-02T00:00:00Z", Value::Int(4)),
                ("2026-01-01T00:00:00Z", Value::Int(4)),
            ],
            "2026-01-02T00:00:00Z",
        );
        assert!((a.as_f64().unwrap() - 6.0).abs() < 1e-12 && (b.as_f64().unwrap() - 6.0).abs() < 1e-12);
    }

    #[test]
    fn a_tile_stays_small() {
        // A customer holds one accumulator per feature per active day or hour.
        assert!(std::mem::size_of::<Acc>() <= 24, "{}", std::mem::size_of::<Acc>());
    }

    #[test]
    fn decay_only_applies_to_sums_and_counts() {
        assert!(Agg::parse("decay", None).is_err());
        assert!(Agg::parse("min", Some(10)).is_err());
        assert_eq!(
            Agg::parse("count", Some(10)),
            Ok(Agg::Decay {
                half_life_secs: 10,
                of_events: true
            })
        );
        assert!(Agg::parse("median", None).is_err());
    }
}
