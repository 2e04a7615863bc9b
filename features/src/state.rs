//! One customer's feature state: per tile group, its tiles (one for lifetime
//! features, one per day or hour that had events for windowed ones) with a column per
//! feature; per family, the tiles of each key; and the customer's clock, the latest
//! event time applied. Memory follows what the customer did, not the size of the
//! windows.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use persona_event::{Event, Value};
use persona_expr::{FeatureRef, Scope};

use crate::agg::Acc;
use crate::set::{Feature, FeatureSet, Group, Place, Selection, Slot};
use crate::window::{Tiles, Window};

static NULL: Value = Value::Null;

/// The tiles of one tile group: `tiles` sorted, and a row of accumulators per tile,
/// one per member feature (row-major: `accs[row * width + column]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Tiled {
    pub(crate) tiles: Vec<i64>,
    pub(crate) accs: Vec<Acc>,
}

/// The tiles of one key of a family, sorted by tile.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Series(pub(crate) Vec<(i64, Acc)>);

/// A customer's features, as state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureState {
    pub(crate) clock: Option<DateTime<Utc>>,
    /// Indexed like `FeatureSet::groups`; empty until the customer has a group's event.
    pub(crate) groups: Vec<Tiled>,
    /// Indexed by family number.
    pub(crate) families: Vec<BTreeMap<String, Series>>,
}

/// What [`FeatureState::apply_undoable`] changed, kept to put it back: the clock and
/// a copy of each tile group and family the event's type reads (only those can
/// change), so a what-if costs the event's features, not the customer's whole state.
#[derive(Debug)]
pub struct Undo {
    clock: Option<DateTime<Utc>>,
    groups_len: usize,
    families_len: usize,
    groups: Vec<(usize, Tiled)>,
    families: Vec<(usize, BTreeMap<String, Series>)>,
}

/// Expression scope over one event, for `where`, `value` and `by` (streaming and
/// batch alike).
pub(crate) struct EventScope<'a> {
    pub(crate) event: &'a Event,
    pub(crate) tz: Tz,
    /// The event's value of each attribute the set reads, by slot
    /// ([`FeatureSet::attrs`]); empty when the attributes are read by name (batch).
    pub(crate) attrs: &'a [&'a Value],
}

impl<'a> EventScope<'a> {
    /// A scope that reads attributes by name.
    pub(crate) fn by_name(event: &'a Event, tz: Tz) -> Self {
        EventScope { event, tz, attrs: &[] }
    }
}

impl Scope for EventScope<'_> {
    fn event(&self, name: &str) -> Value {
        self.event.field(name)
    }
    fn event_ref(&self, name: &str) -> Option<&Value> {
        self.event.attr_field(name)
    }
    fn event_attr(&self, slot: u32, name: &str) -> Option<&Value> {
        match self.attrs.get(slot as usize) {
            Some(v) => Some(v),
            None => self.event.attr_field(name),
        }
    }
    fn timezone(&self) -> Tz {
        self.tz
    }
    fn now(&self) -> Option<DateTime<Utc>> {
        Some(self.event.ts)
    }
}

/// Fills `slots[i]` with the event's value of attribute `names[i]` (null when it has
/// none): one pass over both sorted lists, or a look-up per name when the event
/// carries many more attributes than the set reads.
fn resolve_attrs<'e>(names: &[Box<str>], event: &'e Event, slots: &mut [&'e Value]) {
    if event.attrs.len() > 4 * names.len() {
        for (name, slot) in names.iter().zip(slots.iter_mut()) {
            *slot = event.attr(name);
        }
        return;
    }
    let mut wanted = names.iter().zip(slots.iter_mut()).peekable();
    for (key, value) in &event.attrs {
        while wanted.next_if(|(name, _)| ***name < **key).is_some() {}
        match wanted.next_if(|(name, _)| ***name == **key) {
            Some((_, slot)) => *slot = value,
            None if wanted.peek().is_none() => return,
            None => {}
        }
    }
}

/// The filters of a set evaluated for one event, each clause at most once.
struct Filters<'a> {
    set: &'a FeatureSet,
    scope: &'a EventScope<'a>,
    clauses: &'a mut [Option<bool>],
}

impl Filters<'_> {
    fn pass(&mut self, slot: Option<usize>) -> bool {
        let Some(slot) = slot else {
            return true;
        };
        self.set.filters[slot].iter().all(|&k| self.clause(k))
    }

    fn clause(&mut self, k: usize) -> bool {
        if let Some(known) = self.clauses[k] {
            return known;
        }
        if let Some(d) = self.set.clause_dispatch[k] {
            let dispatch = &self.set.dispatches[d];
            // By slot only: reading by name (batch), each clause is evaluated as written.
            if let Some(Value::Str(text)) = self.scope.attrs.get(dispatch.slot).copied() {
                for &(_, c) in &dispatch.texts {
                    self.clauses[c] = Some(false);
                }
                let from = dispatch.texts.partition_point(|(t, _)| **t < **text);
                for (_, c) in dispatch.texts[from..].iter().take_while(|(t, _)| **t == **text) {
                    self.clauses[*c] = Some(true);
                }
                return self.clauses[k] == Some(true);
            }
        }
        let holds = self.set.clauses[k].eval_bool(self.scope);
        self.clauses[k] = Some(holds);
        holds
    }
}

/// What one event brings to a feature: where, when and its value.
struct Arrival<'a> {
    event: &'a Event,
    scope: &'a EventScope<'a>,
    tiles: &'a Tiles,
    tz: Tz,
}

impl Arrival<'_> {
    /// The feature's value for this event, or `None` when the feature skips it. An
    /// attribute is read in place; any other expression is evaluated into `scratch`.
    fn value<'v>(&'v self, f: &Feature, scratch: &'v mut Value) -> Option<&'v Value> {
        let value = match (&f.value, f.value_attr) {
            (None, _) => &NULL,
            (Some(_), Some(slot)) => self.scope.attrs.get(slot).copied().unwrap_or(&NULL),
            (Some(v), None) => {
                *scratch = v.eval(self.scope);
                scratch
            }
        };
        (!(f.agg.needs_value() && value.is_null())).then_some(value)
    }

    fn add_to(&self, acc: &mut Acc, f: &Feature, value: &Value) {
        acc.add(&f.agg, value, self.event.ts, &self.event.id, self.tiles, self.tz);
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
        self.apply_to(set, event, None);
    }

    /// Applies one event to the selected features only: a backfill recomputing them
    /// from history, over events the others have already counted.
    pub fn apply_selected(&mut self, set: &FeatureSet, event: &Event, only: &Selection) {
        self.apply_to(set, event, Some(only));
    }

    /// Applies one event as [`FeatureState::apply`] does, keeping what it changes so
    /// that [`FeatureState::undo`] puts the state back exactly as it was.
    pub fn apply_undoable(&mut self, set: &FeatureSet, event: &Event) -> Undo {
        let mut undo = Undo {
            clock: self.clock,
            groups_len: self.groups.len(),
            families_len: self.families.len(),
            groups: Vec::new(),
            families: Vec::new(),
        };
        if let Some(readers) = set.readers(&event.kind) {
            for &g in &readers.groups {
                if let Some(tiled) = self.groups.get(g) {
                    undo.groups.push((g, tiled.clone()));
                }
            }
            for &i in &readers.families {
                if let Place::Family(k) = set.features[i].place
                    && let Some(keys) = self.families.get(k)
                    && !undo.families.iter().any(|(j, _)| *j == k)
                {
                    undo.families.push((k, keys.clone()));
                }
            }
        }
        self.apply(set, event);
        undo
    }

    /// Puts back what [`FeatureState::apply_undoable`] changed.
    pub fn undo(&mut self, undo: Undo) {
        self.clock = undo.clock;
        self.groups.truncate(undo.groups_len);
        self.families.truncate(undo.families_len);
        for (g, tiled) in undo.groups {
            self.groups[g] = tiled;
        }
        for (k, keys) in undo.families {
            self.families[k] = keys;
        }
    }

    /// Empties the selected features, so that a backfill can recompute them.
    pub fn reset(&mut self, set: &FeatureSet, only: &Selection) {
        for (_, f) in set.features.iter().enumerate().filter(|(i, _)| only.has(*i)) {
            match f.place {
                Place::Column { group, column } => {
                    if let Some(tiled) = self.groups.get_mut(group) {
                        let width = set.groups[group].members.len();
                        for row in 0..tiled.tiles.len() {
                            tiled.accs[row * width + column] = f.agg.empty();
                        }
                    }
                }
                Place::Family(k) => {
                    if let Some(keys) = self.families.get_mut(k) {
                        keys.clear();
                    }
                }
            }
        }
    }

    fn apply_to(&mut self, set: &FeatureSet, event: &Event, only: Option<&Selection>) {
        let clock = self.clock.map_or(event.ts, |c| c.max(event.ts));
        self.clock = Some(clock);
        let Some(readers) = set.readers(&event.kind) else {
            return;
        };
        if self.groups.len() < set.groups.len() {
            self.groups.resize_with(set.groups.len(), Tiled::default);
        }
        if self.families.len() < set.families {
            self.families.resize_with(set.families, BTreeMap::new);
        }
        let mut attrs_on_stack = [&NULL; 16];
        let mut attrs_on_heap;
        let attrs = if set.attrs.len() <= attrs_on_stack.len() {
            &mut attrs_on_stack[..set.attrs.len()]
        } else {
            attrs_on_heap = vec![&NULL; set.attrs.len()];
            &mut attrs_on_heap[..]
        };
        resolve_attrs(&set.attrs, event, attrs);
        let scope = EventScope {
            event,
            tz: set.tz,
            attrs,
        };
        let at = Tiles::of(event.ts, set.tz);
        let now = if clock == event.ts {
            at
        } else {
            Tiles::of(clock, set.tz)
        };
        let mut on_stack = [None; 64];
        let mut on_heap;
        let clauses = if set.clauses.len() <= on_stack.len() {
            &mut on_stack[..set.clauses.len()]
        } else {
            on_heap = vec![None; set.clauses.len()];
            &mut on_heap[..]
        };
        let mut filters = Filters {
            set,
            scope: &scope,
            clauses,
        };
        let arrival = Arrival {
            event,
            scope: &scope,
            tiles: &at,
            tz: set.tz,
        };
        // Only the groups the event can pass, when its type's groups are split.
        let (first, then) = match &readers.split {
            Some(split) => match scope.attrs.get(split.slot).copied() {
                Some(Value::Str(text)) => (&split.rest[..], split.testing(text)),
                _ => (&readers.groups[..], &[][..]),
            },
            None => (&readers.groups[..], &[][..]),
        };
        for &g in first.iter().chain(then) {
            let group = &set.groups[g];
            if only.is_some_and(|o| !group.members.iter().any(|&i| o.has(i))) {
                continue;
            }
            if filters.pass(group.filter_slot) {
                self.groups[g].add(set, group, &arrival, &now, only);
            }
        }
        for &i in &readers.families {
            let f = &set.features[i];
            let Place::Family(k) = f.place else { continue };
            if only.is_some_and(|o| !o.has(i)) {
                continue;
            }
            if filters.pass(f.filter_slot) {
                add_to_family(&mut self.families[k], f, &arrival, &now);
            }
        }
    }

    /// The value of a base feature at `at` (a family as a map).
    fn base_value(&self, set: &FeatureSet, f: &Feature, at: DateTime<Utc>) -> Value {
        let end = f.window.tile(at, set.tz);
        match f.place {
            Place::Column { group, column } => {
                let width = set.groups[group].members.len();
                let Some(tiled) = self.groups.get(group) else {
                    return f.agg.finish(std::iter::empty(), at);
                };
                let accs = tiled
                    .tiles
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| f.window.covers(**t, end))
                    .map(|(row, _)| &tiled.accs[row * width + column]);
                f.agg.finish(accs, at)
            }
            // A family holds the keys with events inside the window.
            Place::Family(k) => Value::Map(
                self.families
                    .get(k)
                    .into_iter()
                    .flatten()
                    .filter(|(_, s)| s.0.iter().any(|(t, _)| f.window.covers(*t, end)))
                    .map(|(key, s)| (key.clone(), s.value(f, end, at)))
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

impl Tiled {
    /// Adds an event that passed the group's filter to each member that counts it.
    fn add(&mut self, set: &FeatureSet, group: &Group, arrival: &Arrival, now: &Tiles, only: Option<&Selection>) {
        let tile = group.window.tile_of(arrival.tiles);
        let end = group.window.tile_of(now);
        if !group.window.covers(tile, end) {
            return;
        }
        let width = group.members.len();
        let mut row = None;
        let mut scratch = Value::Null;
        for (column, &i) in group.members.iter().enumerate() {
            if only.is_some_and(|o| !o.has(i)) {
                continue;
            }
            let f = &set.features[i];
            let Some(value) = arrival.value(f, &mut scratch) else {
                continue;
            };
            let r = *row.get_or_insert_with(|| self.row(tile, group, set));
            arrival.add_to(&mut self.accs[r * width + column], f, value);
        }
        if row.is_some() {
            self.prune(group.window, end, width);
        }
    }

    /// The row of `tile`, inserted empty when missing.
    pub(crate) fn row(&mut self, tile: i64, group: &Group, set: &FeatureSet) -> usize {
        // Events come mostly in time order: the latest tile first, which reads one
        // cache line of a customer's state where a binary search reads several.
        if let Some(last) = self.tiles.len().checked_sub(1)
            && self.tiles[last] == tile
        {
            return last;
        }
        match self.tiles.binary_search(&tile) {
            Ok(r) => r,
            Err(r) => {
                let width = group.members.len();
                // Grow by a quarter (at least 1 row), not double: a customer's tiles
                // grow a row a day, and doubling would leave most of the slack unused.
                if self.tiles.len() == self.tiles.capacity() {
                    let more = (self.tiles.len() / 4).max(1);
                    self.tiles.reserve_exact(more);
                    self.accs.reserve_exact(more * width);
                }
                self.tiles.insert(r, tile);
                let at = r * width;
                let empty = group.members.iter().map(|&i| set.features[i].agg.empty());
                // Mostly a new latest tile: appended, with no splice to set up.
                if at == self.accs.len() {
                    self.accs.extend(empty);
                } else {
                    self.accs.splice(at..at, empty);
                }
                r
            }
        }
    }

    /// Drops the tiles that fell out of the group's longest window: they can never
    /// count again.
    fn prune(&mut self, window: Window, end: i64, width: usize) {
        if let Some(n) = window.tiles()
            && self.tiles.first().is_some_and(|t| *t <= end - n)
        {
            let stale = self.tiles.partition_point(|t| *t <= end - n);
            self.tiles.drain(..stale);
            self.accs.drain(..stale * width);
        }
    }
}

/// Adds an event that passed a family's filter to its key's tiles.
fn add_to_family(keys: &mut BTreeMap<String, Series>, f: &Feature, arrival: &Arrival, now: &Tiles) {
    let tile = f.window.tile_of(arrival.tiles);
    let end = f.window.tile_of(now);
    if !f.window.covers(tile, end) {
        return;
    }
    let mut scratch = Value::Null;
    let Some(value) = arrival.value(f, &mut scratch) else {
        return;
    };
    let Some(by) = &f.by else { return };
    let key = by.eval_cow(arrival.scope);
    if key.is_null() {
        return;
    }
    let key: Cow<str> = match &*key {
        Value::Str(k) => Cow::Borrowed(k.as_str()),
        other => Cow::Owned(other.to_key()),
    };
    if !keys.contains_key(&*key) {
        if keys.len() >= f.max_keys {
            // Keys whose window emptied count no more: forget them first.
            keys.retain(|_, s| s.0.iter().any(|(t, _)| f.window.covers(*t, end)));
            if keys.len() >= f.max_keys {
                return;
            }
        }
        keys.insert(key.clone().into_owned(), Series::default());
    }
    let Some(series) = keys.get_mut(&*key) else { return };
    let latest = series.0.len().checked_sub(1).filter(|&p| series.0[p].0 == tile);
    let pos = match latest.map_or_else(|| series.0.binary_search_by_key(&tile, |(t, _)| *t), Ok) {
        Ok(p) => p,
        Err(p) => {
            series.0.insert(p, (tile, f.agg.empty()));
            p
        }
    };
    arrival.add_to(&mut series.0[pos].1, f, value);
    if let Some(n) = f.window.tiles()
        && series.0.first().is_some_and(|(t, _)| *t <= end - n)
    {
        series.0.retain(|(t, _)| *t > end - n);
    }
}

impl Series {
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
            Some(&slot) => self.value(slot),
            None => Value::Null,
        }
    }

    /// The feature a compiled program refers to: by its slot, with no name look-up,
    /// when the program was checked against this set's [`FeatureSet::declare`]; by
    /// name otherwise.
    pub fn get_ref(&self, f: FeatureRef<'_>) -> Value {
        match f.slot.and_then(|s| self.set.slot(s)) {
            Some(slot) => self.value(slot),
            None => self.get(f.name),
        }
    }

    fn value(&self, slot: Slot) -> Value {
        match slot {
            Slot::Base(i) => self.state.base_value(self.set, &self.set.features[i], self.at),
            Slot::Derived(j) => self.set.derived[j].program.eval(self),
        }
    }

    /// Every feature, derived ones included, by name.
    pub fn all(&self) -> BTreeMap<String, Value> {
        let base = self
            .set
            .features
            .iter()
            .map(|f| (f.name.clone(), self.state.base_value(self.set, f, self.at)));
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
    fn feature(&self, f: FeatureRef<'_>) -> Value {
        self.get_ref(f)
    }
    fn now(&self) -> Option<DateTime<Utc>> {
        Some(self.at)
    }
    fn timezone(&self) -> Tz {
        self.set.tz
    }
}
