//! A FeatureSet validated into its runtime form: expressions compiled, aggregations and
//! windows parsed, derived features ordered so that each reads only those before it.

use std::collections::HashMap;

use chrono_tz::Tz;
use persona_event::hash::fnv1a64;
use persona_event::time::parse_duration;
use persona_expr::{FieldError, Program, Root, Schema, Type, compile_field};

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
    pub agg: Agg,
    pub window: Window,
    pub(crate) by: Option<Program>,
    pub max_keys: usize,
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
    /// Features by the event types they read, so an event visits only its own.
    pub(crate) by_kind: HashMap<String, Vec<usize>>,
    /// Distinct `where` expressions: features that share a filter evaluate it once per event.
    pub(crate) filters: Vec<Program>,
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
        let mut by_kind: HashMap<String, Vec<usize>> = HashMap::new();
        let mut filters: Vec<Program> = Vec::new();
        for (i, f) in features.iter_mut().enumerate() {
            for kind in &f.on {
                by_kind.entry(kind.clone()).or_default().push(i);
            }
            f.filter_slot = f
                .filter
                .as_ref()
                .map(|w| match filters.iter().position(|g| g.source() == w.source()) {
                    Some(slot) => slot,
                    None => {
                        filters.push(w.clone());
                        filters.len() - 1
                    }
                });
        }
        if errors.is_empty() {
            Ok(FeatureSet {
                name: doc.metadata.name.clone(),
                tz,
                features,
                derived,
                index,
                by_kind,
                filters,
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
    pub fn declare(&self, mut schema: Schema) -> Schema {
        for f in &self.features {
            let ty = if f.agg.is_numeric() { Type::Number } else { Type::Any };
            schema = schema.feature(&f.name, ty, f.by.is_some());
        }
        for d in &self.derived {
            schema = schema.feature(&d.name, d.program.ty(), false);
        }
        schema
    }

    /// Whether any feature reads events of this type.
    pub fn reads(&self, kind: &str) -> bool {
        self.features.iter().any(|f| f.on.iter().any(|k| k == kind))
    }
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
        compile_field(format!("{path}.{field}"), src.as_deref()?, schema)
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
        value,
        agg,
        window,
        by,
        max_keys: f.max_keys.map_or(DEFAULT_MAX_KEYS, |k| k as usize),
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
            let mut schema = Schema::new().allow_root(Root::Features);
            for f in features {
                let ty = if f.agg.is_numeric() { Type::Number } else { Type::Any };
                schema = schema.feature(&f.name, ty, f.by.is_some());
            }
            for k in &done {
                schema = schema.feature(&k.name, k.program.ty(), false);
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
