//! One customer's feature state: per feature, its tiles (one for a lifetime feature,
//! one per day or hour that had events for a windowed one, per key for a family), and
//! the customer's clock, the latest event time applied. Memory follows what the
//! customer did, not the size of the windows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use persona_event::{Event, Value};
use persona_expr::Scope;
use serde::{Deserialize, Serialize};

use crate::agg::Acc;
use crate::set::{Feature, FeatureSet, Slot};
use crate::window::Tiles;

/// The tiles of one feature (or of one key of a family), sorted by tile. Encoded with
/// each tile number as the difference from the previous one (mostly one byte).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "crate::codec::SeriesWire", from = "crate::codec::SeriesWire")]
pub(crate) struct Series(pub(crate) Vec<(i64, Acc)>);

/// The state of one feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Cell {
    One(Series),
    Family(BTreeMap<String, Series>),
}

/// A customer's features, as state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureState {
    pub(crate) clock: Option<DateTime<Utc>>,
    /// Indexed like `FeatureSet::features`; `None` until the feature sees an event.
    pub(crate) cells: Vec<Option<Cell>>,
}

/// Expression scope over one event, for `where`, `value` and `by` (streaming and
/// batch alike).
pub(crate) struct EventScope<'a> {
    pub(crate) event: &'a Event,
    pub(crate) tz: Tz,
}

impl Scope for EventScope<'_> {
    fn event(&self, name: &str) -> Value {
        self.event.field(name)
    }
    fn event_ref(&self, name: &str) -> Option<&Value> {
        self.event.attr_field(name)
    }
    fn timezone(&self) -> Tz {
        self.tz
    }
    fn now(&self) -> Option<DateTime<Utc>> {
        Some(self.event.ts)
    }
}

impl FeatureState {
    /// The latest event time applied.
    pub fn clock(&self) -> Option<DateTime<Utc>> {
        self.clock
    }

    /// Applies one event to every feature that reads it. Windowed features accept a
    /// late event while its tile is still inside the window measured from the clock.
    pub fn apply(&mut self, set: &FeatureSet, event: &Event) {
        let clock = self.clock.map_or(event.ts, |c| c.max(event.ts));
        self.clock = Some(clock);
        if self.cells.len() < set.features.len() {
            self.cells.resize(set.features.len(), None);
        }
        let Some(reading) = set.by_kind.get(&event.kind) else {
            return;
        };
        let scope = EventScope { event, tz: set.tz };
        let at = Tiles::of(event.ts, set.tz);
        let now = if clock == event.ts {
            at
        } else {
            Tiles::of(clock, set.tz)
        };
        // Each distinct filter is evaluated at most once per event.
        let mut passed: Vec<Option<bool>> = vec![None; set.filters.len()];
        for &i in reading {
            let f = &set.features[i];
            if let Some(slot) = f.filter_slot {
                let pass = *passed[slot].get_or_insert_with(|| set.filters[slot].eval_bool(&scope));
                if !pass {
                    continue;
                }
            }
            let tile = f.window.tile_of(&at);
            let end = f.window.tile_of(&now);
            if !f.window.covers(tile, end) {
                continue;
            }
            let value = f.value.as_ref().map_or(Value::Null, |v| v.eval(&scope));
            if f.agg.needs_value() && value.is_null() {
                continue;
            }
            let series = match &f.by {
                None => match self.cells[i].get_or_insert_with(|| Cell::One(Series::default())) {
                    Cell::One(s) => s,
                    Cell::Family(_) => continue,
                },
                Some(by) => {
                    let key = by.eval(&scope);
                    if key.is_null() {
                        continue;
                    }
                    let Cell::Family(keys) = self.cells[i].get_or_insert_with(|| Cell::Family(BTreeMap::new())) else {
                        continue;
                    };
                    let key = key.to_key();
                    if !keys.contains_key(&key) && keys.len() >= f.max_keys {
                        // Keys whose window emptied count no more: forget them first.
                        keys.retain(|_, s| s.0.iter().any(|(t, _)| f.window.covers(*t, end)));
                        if keys.len() >= f.max_keys {
                            continue;
                        }
                    }
                    keys.entry(key).or_default()
                }
            };
            series.add(f, tile, end, &value, event, &at, set.tz);
        }
    }

    /// The value of a base feature at `at` (a family as a map).
    fn base_value(&self, f: &Feature, i: usize, at: DateTime<Utc>, tz: Tz) -> Value {
        let end = f.window.tile(at, tz);
        match self.cells.get(i).and_then(Option::as_ref) {
            None if f.by.is_some() => Value::Map(BTreeMap::new()),
            None => f.agg.finish(std::iter::empty(), at),
            Some(Cell::One(s)) => s.value(f, end, at),
            // A family holds the keys with events inside the window.
            Some(Cell::Family(keys)) => Value::Map(
                keys.iter()
                    .filter(|(_, s)| s.0.iter().any(|(t, _)| f.window.covers(*t, end)))
                    .map(|(k, s)| (k.clone(), s.value(f, end, at)))
                    .collect(),
            ),
        }
    }

    /// A read-only view of the features as of `at` (at least the clock: windows are
    /// never evaluated before the latest applied event).
    pub fn view<'a>(&'a self, set: &'a FeatureSet, at: Option<DateTime<Utc>>) -> FeatureView<'a> {
        let at = match (at, self.clock) {
            (Some(a), Some(c)) => a.max(c),
            (Some(a), None) => a,
            (None, Some(c)) => c,
            (None, None) => DateTime::UNIX_EPOCH,
        };
        FeatureView { set, state: self, at }
    }
}

impl Series {
    #[allow(clippy::too_many_arguments)]
    fn add(&mut self, f: &Feature, tile: i64, end: i64, value: &Value, event: &Event, at: &Tiles, tz: Tz) {
        let pos = match self.0.binary_search_by_key(&tile, |(t, _)| *t) {
            Ok(p) => p,
            Err(p) => {
                self.0.insert(p, (tile, f.agg.empty()));
                p
            }
        };
        self.0[pos].1.add(&f.agg, value, event.ts, &event.id, at, tz);
        // Tiles that fell out of the window can never count again.
        if let Some(n) = f.window.tiles()
            && self.0.first().is_some_and(|(t, _)| *t <= end - n)
        {
            self.0.retain(|(t, _)| *t > end - n);
        }
    }

    fn value(&self, f: &Feature, end: i64, at: DateTime<Utc>) -> Value {
        let tiles = self
            .0
            .iter()
            .filter(|(t, _)| f.window.covers(*t, end))
            .map(|(_, acc)| acc);
        f.agg.finish(tiles, at)
    }
}

/// Features as of an instant; an expression scope over `features.*`.
#[derive(Debug)]
pub struct FeatureView<'a> {
    set: &'a FeatureSet,
    state: &'a FeatureState,
    at: DateTime<Utc>,
}

impl FeatureView<'_> {
    /// The evaluation instant.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// One feature by name, base or derived; null when the set has no such feature.
    pub fn get(&self, name: &str) -> Value {
        match self.set.index.get(name) {
            Some(Slot::Base(i)) => self.state.base_value(&self.set.features[*i], *i, self.at, self.set.tz),
            Some(Slot::Derived(j)) => self.set.derived[*j].program.eval(self),
            None => Value::Null,
        }
    }

    /// Every feature, derived ones included, by name.
    pub fn all(&self) -> BTreeMap<String, Value> {
        let base = self
            .set
            .features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), self.state.base_value(f, i, self.at, self.set.tz)));
        let mut out: BTreeMap<String, Value> = base.collect();
        for d in &self.set.derived {
            let v = d.program.eval(self);
            out.insert(d.name.clone(), v);
        }
        out
    }
}

impl Scope for FeatureView<'_> {
    /// Derived features read only features.
    fn event(&self, _name: &str) -> Value {
        Value::Null
    }
    fn feature(&self, name: &str) -> Value {
        self.get(name)
    }
    fn now(&self) -> Option<DateTime<Utc>> {
        Some(self.at)
    }
    fn timezone(&self) -> Tz {
        self.set.tz
    }
}
