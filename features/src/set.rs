//! A FeatureSet validated into its runtime form: expressions compiled, aggregations and
//! windows parsed, derived features ordered so that each reads only those before it.

use std::collections::{BTreeMap, HashMap};

use chrono_tz::Tz;
use persona_event::hash::fnv1a64;
use persona_event::time::parse_duration;
use persona_expr::{FieldError, Program, Root, Schema, Type, compile_condition_field, compile_field};

use crate::agg::Agg;
use crate::spec::{FeatureSetDocument, FeatureSpec};
use crate::window::Window;

/// Default bound on the keys of a `by` family per customer (DESIGN.md §3).
pub const DEFAULT_MAX_KEYS: usize = 256;

/// One aggregated feature, ready to run.
#[derive(Clone, Debug)]
pub struct Feature {
    pub name: String,
    pub on: Vec<String>,
    pub(crate) filter: Option<Program>,
    /// Index of `filter` among the set's distinct filters.
    pub(crate) filter_slot: Option<usize>,
    pub(crate) value: Option<Program>,
    /// The attribute's slot ([`FeatureSet::attrs`]), when `value` is just
    /// `event.<attribute>` (read in place).
    pub(crate) value_attr: Option<usize>,
    pub agg: Agg,
    pub window: Window,
    pub(crate) by: Option<Program>,
    pub max_keys: usize,
    /// Where the feature's state lives.
    pub(crate) place: Place,
    /// Fingerprint of the definition: a snapshot cell is read back only into a feature
    /// with the same definition, so editing a feature restarts it empty.
    pub(crate) fingerprint: u32,
}

/// A feature computed from others.
#[derive(Clone, Debug)]
pub struct Derived {
    pub name: String,
    pub(crate) program: Program,
}

/// Where a feature's state lives: a column of a tile group, or its own family of keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Column { group: usize, column: usize },
    Family(usize),
}

/// Features that read the same event types through the same filter over the same
/// window share one list of tiles: a row per tile, a column per feature. An event is
/// filtered once and placed once per group, not once per feature. (Grouping by
/// window, not only by unit, keeps a 7-day feature from holding 90 days of rows
/// beside a 90-day one.)
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) filter_slot: Option<usize>,
    /// The members' window: tiles older than it are pruned.
    pub(crate) window: Window,
    /// Groups of the same class differ only by window length; snapshots write them
    /// together.
    pub(crate) class: usize,
    /// Feature indexes, in column order.
    pub(crate) members: Vec<usize>,
}

/// What an event of one type touches.
#[derive(Clone, Debug, Default)]
pub(crate) struct Readers {
    pub(crate) groups: Vec<usize>,
    /// Feature indexes of the `by` families reading the type.
    pub(crate) families: Vec<usize>,
    /// The groups again, split on the attribute their filters most often test for a
    /// text.
    pub(crate) split: Option<Split>,
}

/// The tile groups of an event type split on one attribute: an event whose attribute
/// is a string can pass only the groups that test it for no text and those that
/// test it for that string (`event.category == "fuel"` groups, for a fuel
/// transaction), so it visits only those.
#[derive(Clone, Debug)]
pub(crate) struct Split {
    /// The attribute's slot ([`FeatureSet::attrs`]).
    pub(crate) slot: usize,
    /// Groups whose filter tests the attribute for no text.
    pub(crate) rest: Vec<usize>,
    /// Groups whose filter requires the attribute to equal a text, by text, sorted.
    pub(crate) by_text: Vec<(Box<str>, Vec<usize>)>,
}

impl Split {
    /// The groups an event whose attribute is `text` may pass, besides `rest`.
    pub(crate) fn testing(&self, text: &str) -> &[usize] {
        match self.by_text.binary_search_by(|(t, _)| (**t).cmp(text)) {
            Ok(i) => &self.by_text[i].1,
            Err(_) => &[],
        }
    }
}

/// The clauses `event.<attribute> == "<text>"` over one attribute: an event whose
/// attribute is a string answers them all with one search of the texts, where each
/// would compare the strings again (`event.category == "fuel"`, `== "dining"`, ...).
#[derive(Clone, Debug)]
pub(crate) struct Dispatch {
    /// The attribute's slot ([`FeatureSet::attrs`]).
    pub(crate) slot: usize,
    /// Each clause's text and index, sorted by text; a text may repeat (`"a" ==
    /// event.x` beside `event.x == "a"`).
    pub(crate) texts: Vec<(Box<str>, usize)>,
}

/// Some of a set's base features, chosen by name: the ones a backfill recomputes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection(pub(crate) Vec<bool>);

impl Selection {
    pub(crate) fn has(&self, feature: usize) -> bool {
        self.0.get(feature).copied().unwrap_or(false)
    }
}

/// Where a feature name points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Base(usize),
    Derived(usize),
}

/// The runtime behavioral model.
#[derive(Clone, Debug)]
pub struct FeatureSet {
    pub name: String,
    pub(crate) tz: Tz,
    pub(crate) features: Vec<Feature>,
    /// In dependency order.
    pub(crate) derived: Vec<Derived>,
    pub(crate) index: HashMap<String, Slot>,
    /// Tile groups of the non-family features.
    pub(crate) groups: Vec<Group>,
    /// Number of `by` families.
    pub(crate) families: usize,
    /// What each event type touches, sorted by type, so an event visits only its own.
    pub(crate) by_kind: Vec<(Box<str>, Readers)>,
    /// Distinct `where` expressions, each as the clauses of its top-level `and`.
    pub(crate) filters: Vec<Vec<usize>>,
    /// Distinct clauses of the filters: a clause several filters share (`event.direction
    /// == "debit"`) is evaluated at most once per event.
    pub(crate) clauses: Vec<Program>,
    /// The clauses answered together by attribute ([`Dispatch`]).
    pub(crate) dispatches: Vec<Dispatch>,
    /// For each clause, the index of its dispatch, if it has one.
    pub(crate) clause_dispatch: Vec<Option<usize>>,
    /// Feature indexes by the fingerprint of their definition, for reading snapshots.
    pub(crate) by_fingerprint: HashMap<u32, usize>,
    /// Every event attribute the features read, sorted; the compiled `where`, `value`
    /// and `by` read attribute `attrs[i]` from slot `i`, which each event fills once.
    pub(crate) attrs: Vec<Box<str>>,
}

impl FeatureSet {
    /// Validates a document. Every problem is reported, each with the path of the
    /// field it is about (`spec.features[2].window`).
    pub fn compile(doc: &FeatureSetDocument) -> Result<FeatureSet, Vec<FieldError>> {
        let mut errors = Vec::new();
        if doc.kind != "FeatureSet" {
            errors.push(FieldError::invalid(
                "kind",
                format!("expected `FeatureSet`, found `{}`", doc.kind),
            ));
        }
        let tz = match doc.spec.timezone.as_deref().unwrap_or("UTC").parse::<Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                errors.push(FieldError::invalid("spec.timezone", "unknown IANA time zone"));
                Tz::UTC
            }
        };
        let event_schema = Schema::new().allow_root(Root::Event);
        let mut features = Vec::new();
        let mut index = HashMap::new();
        for (i, f) in doc.spec.features.iter().enumerate() {
            let path = format!("spec.features[{i}]");
            if let Err(e) = check_name(&f.name, &index) {
                errors.push(FieldError::invalid(format!("{path}.name"), e));
            }
            match compile_feature(f, &path, &event_schema) {
                Ok(feature) => {
                    index.insert(f.name.clone(), Slot::Base(features.len()));
                    features.push(feature);
                }
                Err(mut es) => errors.append(&mut es),
            }
        }
        let derived = compile_derived(doc, &features, &mut index, &mut errors);
        let attrs = number_attrs(&mut features);
        let (filters, clauses) = share_filters(&mut features);
        let (dispatches, clause_dispatch) = dispatch_clauses(&clauses);
        let (groups, families) = place(&mut features);
        let mut by_kind = readers(&features, &groups);
        for (_, r) in &mut by_kind {
            r.split = split(&r.groups, &groups, &filters, &dispatches, &clause_dispatch);
        }
        let by_fingerprint = features.iter().enumerate().map(|(i, f)| (f.fingerprint, i)).collect();
        if errors.is_empty() {
            Ok(FeatureSet {
                name: doc.metadata.name.clone(),
                tz,
                features,
                derived,
                index,
                groups,
                families,
                by_kind,
                filters,
                clauses,
                dispatches,
                clause_dispatch,
                by_fingerprint,
                attrs,
            })
        } else {
            Err(errors)
        }
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    pub fn derived(&self) -> &[Derived] {
        &self.derived
    }

    /// Declares every feature of the set (with its type) in an expression schema, so
    /// offers are type-checked against it.
    ///
    /// Each feature is declared in its slot ([`FeatureSet::slot`]): base features
    /// first, in order, then derived ones, so compiled programs read features
    /// through [`crate::FeatureView`] by number.
    pub fn declare(&self, mut schema: Schema) -> Schema {
        for (f, slot) in self.features.iter().zip(0u32..) {
            let ty = if f.agg.is_numeric() { Type::Number } else { Type::Any };
            schema = schema.feature_in_slot(&f.name, ty, f.by.is_some(), slot);
        }
        let base = u32::try_from(self.features.len()).unwrap_or(u32::MAX);
        for (d, slot) in self.derived.iter().zip(base..) {
            schema = schema.feature_in_slot(&d.name, d.program.ty(), false, slot);
        }
        schema
    }

    /// The feature in schema slot `slot` (see [`FeatureSet::declare`]).
    pub(crate) fn slot(&self, slot: u32) -> Option<Slot> {
        let slot = usize::try_from(slot).ok()?;
        let base = self.features.len();
        if slot < base {
            Some(Slot::Base(slot))
        } else if slot - base < self.derived.len() {
            Some(Slot::Derived(slot - base))
        } else {
            None
        }
    }

    /// The base features named. Derived features are computed from the others and
    /// need no backfill; naming one, or an unknown name, is an error that says so.
    pub fn select<S: AsRef<str>>(&self, names: &[S]) -> Result<Selection, String> {
        let mut chosen = vec![false; self.features.len()];
        for name in names {
            let name = name.as_ref();
            match self.index.get(name) {
                Some(Slot::Base(i)) => chosen[*i] = true,
                Some(Slot::Derived(_)) => {
                    return Err(format!(
                        "`{name}` is a derived feature: it is computed from the others, backfill those"
                    ));
                }
                None => return Err(format!("FeatureSet `{}` has no feature `{name}`", self.name)),
            }
        }
        Ok(Selection(chosen))
    }

    /// Whether any feature reads events of this type.
    pub fn reads(&self, kind: &str) -> bool {
        self.readers(kind).is_some()
    }

    pub(crate) fn feature_by_fingerprint(&self, fingerprint: u32) -> Option<&Feature> {
        self.by_fingerprint.get(&fingerprint).map(|&i| &self.features[i])
    }

    pub(crate) fn readers(&self, kind: &str) -> Option<&Readers> {
        let i = self.by_kind.binary_search_by(|(k, _)| (**k).cmp(kind)).ok()?;
        Some(&self.by_kind[i].1)
    }
}

/// Numbers the event attributes the features read, in name order, and recompiles
/// their `where`, `value` and `by` to read them by number; returns the names.
fn number_attrs(features: &mut [Feature]) -> Vec<Box<str>> {
    let mut names: Vec<String> = features
        .iter()
        .flat_map(|f| [&f.filter, &f.value, &f.by])
        .flatten()
        .flat_map(Program::event_attrs)
        .collect();
    names.sort();
    names.dedup();
    let slot_of = |name: &str| names.binary_search_by(|n| n.as_str().cmp(name)).ok();
    for f in features.iter_mut() {
        for program in [&mut f.filter, &mut f.value, &mut f.by].into_iter().flatten() {
            *program = program.with_event_slots(|name| slot_of(name).and_then(|i| u32::try_from(i).ok()));
        }
        f.value_attr = f.value.as_ref().and_then(|v| match v.as_path() {
            Some((Root::Event, name)) => slot_of(name),
            _ => None,
        });
    }
    names.into_iter().map(String::into_boxed_str).collect()
}

/// Numbers the distinct `where` expressions and points each feature at its own;
/// splits them into distinct clauses.
fn share_filters(features: &mut [Feature]) -> (Vec<Vec<usize>>, Vec<Program>) {
    let mut sources: Vec<&str> = Vec::new();
    let mut filters: Vec<Vec<usize>> = Vec::new();
    let mut clauses: Vec<Program> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut slots = Vec::with_capacity(features.len());
    for f in features.iter() {
        let slot = f
            .filter
            .as_ref()
            .map(|w| match sources.iter().position(|s| *s == w.source()) {
                Some(slot) => slot,
                None => {
                    sources.push(w.source());
                    let parts = w
                        .clauses()
                        .into_iter()
                        .map(|c| match texts.iter().position(|t| *t == c.text) {
                            Some(k) => k,
                            None => {
                                texts.push(c.text);
                                clauses.push(c.program);
                                clauses.len() - 1
                            }
                        })
                        .collect();
                    filters.push(parts);
                    filters.len() - 1
                }
            });
        slots.push(slot);
    }
    for (f, slot) in features.iter_mut().zip(slots) {
        f.filter_slot = slot;
    }
    (filters, clauses)
}

/// Gathers the clauses `event.<attribute> == "<text>"` by attribute; returns the
/// dispatches and, for each clause, its dispatch.
fn dispatch_clauses(clauses: &[Program]) -> (Vec<Dispatch>, Vec<Option<usize>>) {
    let mut dispatches: Vec<Dispatch> = Vec::new();
    let mut of_clause = vec![None; clauses.len()];
    for (k, clause) in clauses.iter().enumerate() {
        let Some((slot, text)) = clause.as_attr_equals() else {
            continue;
        };
        let slot = slot as usize;
        let d = match dispatches.iter().position(|d| d.slot == slot) {
            Some(d) => d,
            None => {
                dispatches.push(Dispatch {
                    slot,
                    texts: Vec::new(),
                });
                dispatches.len() - 1
            }
        };
        dispatches[d].texts.push((text.into(), k));
        of_clause[k] = Some(d);
    }
    for d in &mut dispatches {
        d.texts.sort();
    }
    (dispatches, of_clause)
}

/// Splits an event type's groups on the attribute their filters most often test for
/// a text (a clause of a [`Dispatch`]); none when no filter does.
fn split(
    of_kind: &[usize],
    groups: &[Group],
    filters: &[Vec<usize>],
    dispatches: &[Dispatch],
    clause_dispatch: &[Option<usize>],
) -> Option<Split> {
    // The dispatch and text each group's filter requires, per dispatch.
    let required = |g: usize, d: usize| -> Option<&str> {
        let clauses = &filters[groups[g].filter_slot?];
        let k = *clauses.iter().find(|&&k| clause_dispatch[k] == Some(d))?;
        dispatches[d].texts.iter().find(|(_, c)| *c == k).map(|(t, _)| &**t)
    };
    let d = (0..dispatches.len())
        .map(|d| (of_kind.iter().filter(|&&g| required(g, d).is_some()).count(), d))
        .filter(|(n, _)| *n > 0)
        .max_by_key(|(n, d)| (*n, std::cmp::Reverse(*d)))?
        .1;
    let mut rest = Vec::new();
    let mut by_text: Vec<(Box<str>, Vec<usize>)> = Vec::new();
    for &g in of_kind {
        match required(g, d) {
            None => rest.push(g),
            Some(text) => match by_text.iter_mut().find(|(t, _)| **t == *text) {
                Some((_, gs)) => gs.push(g),
                None => by_text.push((text.into(), vec![g])),
            },
        }
    }
    by_text.sort();
    Some(Split {
        slot: dispatches[d].slot,
        rest,
        by_text,
    })
}

/// Sorts the features into tile groups (same event types, filter and tile unit) and
/// families; returns the groups and the number of families.
fn place(features: &mut [Feature]) -> (Vec<Group>, usize) {
    let mut groups: Vec<(Vec<String>, Group)> = Vec::new();
    let mut families = 0;
    for (i, f) in features.iter_mut().enumerate() {
        if f.by.is_some() {
            f.place = Place::Family(families);
            families += 1;
            continue;
        }
        let found = groups
            .iter()
            .position(|(on, g)| *on == f.on && g.filter_slot == f.filter_slot && g.window == f.window);
        let g = match found {
            Some(g) => g,
            None => {
                let class = groups
                    .iter()
                    .find(|(on, g)| *on == f.on && g.filter_slot == f.filter_slot && g.window.same_unit(&f.window))
                    .map_or(groups.len(), |(_, g)| g.class);
                groups.push((
                    f.on.clone(),
                    Group {
                        filter_slot: f.filter_slot,
                        window: f.window,
                        class,
                        members: Vec::new(),
                    },
                ));
                groups.len() - 1
            }
        };
        let group = &mut groups[g].1;
        f.place = Place::Column {
            group: g,
            column: group.members.len(),
        };
        group.members.push(i);
    }
    (groups.into_iter().map(|(_, g)| g).collect(), families)
}

/// For each event type, the groups and families that read it.
fn readers(features: &[Feature], groups: &[Group]) -> Vec<(Box<str>, Readers)> {
    let mut by_kind: BTreeMap<&str, Readers> = BTreeMap::new();
    for (g, group) in groups.iter().enumerate() {
        for kind in &features[group.members[0]].on {
            by_kind.entry(kind).or_default().groups.push(g);
        }
    }
    for (i, f) in features.iter().enumerate() {
        if let Place::Family(_) = f.place {
            for kind in &f.on {
                by_kind.entry(kind).or_default().families.push(i);
            }
        }
    }
    by_kind.into_iter().map(|(k, r)| (k.into(), r)).collect()
}

fn check_name(name: &str, index: &HashMap<String, Slot>) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(format!("invalid feature name `{name}`: use letters, digits and `_`"));
    }
    if index.contains_key(name) {
        return Err(format!("feature `{name}` is defined twice"));
    }
    Ok(())
}

fn compile_feature(f: &FeatureSpec, path: &str, schema: &Schema) -> Result<Feature, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut expr = |field: &str, src: &Option<String>| -> Option<Program> {
        let src = src.as_deref()?;
        let path = format!("{path}.{field}");
        match field {
            "where" => compile_condition_field(path, src, schema, "`where`"),
            _ => compile_field(path, src, schema),
        }
        .map_err(|e| errors.push(e))
        .ok()
    };
    let filter = expr("where", &f.filter);
    let value = expr("value", &f.value);
    let by = expr("by", &f.by);
    let decay = match f.decay.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d.num_seconds()),
        Some(Err(e)) => {
            errors.push(FieldError::invalid(format!("{path}.decay"), e.to_string()));
            None
        }
    };
    let agg = Agg::parse(&f.agg, decay).map_err(|m| errors.push(FieldError::invalid(format!("{path}.agg"), m)));
    let window =
        Window::parse(f.window.as_deref()).map_err(|m| errors.push(FieldError::invalid(format!("{path}.window"), m)));
    let mut on = f.on.to_vec();
    // Listing a type twice must not count its events twice.
    on.sort();
    on.dedup();
    if on.is_empty() || on.iter().any(|k| k.trim().is_empty()) {
        errors.push(FieldError::invalid(
            format!("{path}.on"),
            "name at least one event type",
        ));
    }
    if let Ok(agg) = agg
        && agg.needs_value()
        && f.value.is_none()
    {
        errors.push(FieldError::invalid(
            format!("{path}.value"),
            format!("`{}` aggregates a value: add `value: event.<attribute>`", agg.name()),
        ));
    }
    if f.max_keys.is_some() && f.by.is_none() {
        errors.push(FieldError::invalid(
            format!("{path}.maxKeys"),
            "`maxKeys` bounds a `by` family; add `by`",
        ));
    }
    let (Ok(agg), Ok(window), true) = (agg, window, errors.is_empty()) else {
        return Err(errors);
    };
    let fingerprint = {
        let def = format!(
            "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            f.name, on, f.filter, f.value, agg, window, f.by, f.max_keys
        );
        fnv1a64(def.as_bytes()) as u32
    };
    Ok(Feature {
        name: f.name.clone(),
        on,
        filter,
        filter_slot: None,
        value_attr: None,
        value,
        agg,
        window,
        by,
        max_keys: f.max_keys.map_or(DEFAULT_MAX_KEYS, |k| k as usize),
        place: Place::Family(usize::MAX),
        fingerprint,
    })
}

/// Compiles derived features in an order where each reads only features already
/// known; a reference to a later derived feature is allowed and resolved by ordering,
/// a cycle is an error.
fn compile_derived(
    doc: &FeatureSetDocument,
    features: &[Feature],
    index: &mut HashMap<String, Slot>,
    errors: &mut Vec<FieldError>,
) -> Vec<Derived> {
    let specs = &doc.spec.derived;
    let mut done: Vec<Derived> = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    for (i, d) in specs.iter().enumerate() {
        match check_name(&d.name, index) {
            Ok(()) if specs[..i].iter().any(|e| e.name == d.name) => errors.push(FieldError::invalid(
                format!("spec.derived[{i}].name"),
                format!("feature `{}` is defined twice", d.name),
            )),
            Ok(()) => pending.push(i),
            Err(e) => errors.push(FieldError::invalid(format!("spec.derived[{i}].name"), e)),
        }
    }
    let pending_names: Vec<&str> = pending.iter().map(|&i| specs[i].name.as_str()).collect();
    loop {
        let mut progressed = false;
        let mut still = Vec::new();
        for &i in &pending {
            let d = &specs[i];
            // Declare everything known so far plus the not-yet-ordered derived names,
            // so that the checker reports real unknowns, not ordering.
            // Base and ordered derived features sit in their final slots (as in
            // `FeatureSet::declare`), which a program that is kept reads them from.
            let mut schema = Schema::new().allow_root(Root::Features);
            for (f, slot) in features.iter().zip(0u32..) {
                let ty = if f.agg.is_numeric() { Type::Number } else { Type::Any };
                schema = schema.feature_in_slot(&f.name, ty, f.by.is_some(), slot);
            }
            let base = u32::try_from(features.len()).unwrap_or(u32::MAX);
            for (k, slot) in done.iter().zip(base..) {
                schema = schema.feature_in_slot(&k.name, k.program.ty(), false, slot);
            }
            for n in &pending_names {
                if !done.iter().any(|k| k.name == *n) {
                    schema = schema.feature(n, Type::Any, false);
                }
            }
            match compile_field(format!("spec.derived[{i}].expr"), &d.expr, &schema) {
                Err(e) => {
                    errors.push(e);
                    progressed = true;
                }
                Ok(program) => {
                    let ready = program
                        .features_used()
                        .iter()
                        .all(|n| !pending_names.contains(&n.as_str()) || done.iter().any(|k| &k.name == n));
                    if ready {
                        index.insert(d.name.clone(), Slot::Derived(done.len()));
                        done.push(Derived {
                            name: d.name.clone(),
                            program,
                        });
                        progressed = true;
                    } else {
                        still.push(i);
                    }
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if !progressed {
            for &i in &pending {
                errors.push(FieldError::invalid(
                    format!("spec.derived[{i}].expr"),
                    format!("`{}` depends on itself through other derived features", specs[i].name),
                ));
            }
            break;
        }
    }
    done
}
