//! Evaluation: the compiled tree the checker produces, the [`Scope`] it reads from,
//! and the tree-walking evaluator.
//!
//! The compiled tree is resolved ahead of time: roots and functions are enums,
//! features carry the slot their scope holds them in (when the schema gave one),
//! family keys and constant lists are folded. Evaluation hands out borrowed
//! constants, so a typical offer clause allocates only what the scope returns.

mod arith;
mod call;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use chrono::{DateTime, TimeDelta, Utc};
use persona_event::Value;

pub(crate) use arith::{arith, neg};

use crate::func::Func;
use crate::schema::{FeatureDecl, Root};

/// A feature as a compiled program refers to it: by the slot the schema declared it
/// in ([`crate::Schema::feature_in_slot`]), which a scope holding its features in
/// slots reads directly, and by name, for scopes that have no slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureRef<'a> {
    pub name: &'a str,
    pub slot: Option<u32>,
}

impl<'a> FeatureRef<'a> {
    /// A reference by name only (no slot): what a caller outside a program asks for.
    pub fn named(name: &'a str) -> Self {
        FeatureRef { name, slot: None }
    }
}

/// The owned form of [`FeatureRef`] inside the compiled tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FeatureName {
    name: Box<str>,
    slot: Option<u32>,
}

impl FeatureName {
    pub(crate) fn new(name: &str, decl: FeatureDecl) -> Self {
        FeatureName {
            name: name.into(),
            slot: decl.slot,
        }
    }

    pub(crate) fn as_ref(&self) -> FeatureRef<'_> {
        FeatureRef {
            name: &self.name,
            slot: self.slot,
        }
    }
}

/// Where an expression reads its values from. Only `event` is required, so the
/// scope of a feature's `where` needs one method; the rest default to "missing".
pub trait Scope {
    /// `event.name`: the scope maps `ts`, `type`, `id` and the event's attributes.
    fn event(&self, name: &str) -> Value;

    /// `event.name` without a copy, when the scope holds the value as it is (an
    /// attribute); `None` sends the evaluator to [`Scope::event`]. Filters run on every
    /// event for every feature, so not cloning strings there matters.
    fn event_ref(&self, _name: &str) -> Option<&Value> {
        None
    }

    /// `event.name` for a program whose attributes were numbered
    /// ([`crate::Program::with_event_slots`]): a scope that resolved the event's
    /// attributes into those slots once answers without a look-up by name. The
    /// default looks the name up through [`Scope::event_ref`].
    fn event_attr(&self, _slot: u32, name: &str) -> Option<&Value> {
        self.event_ref(name)
    }

    /// `features.name`; a family returns a `Value::Map` of its members. A scope that
    /// holds features in the slots its schema declared reads `f.slot`.
    fn feature(&self, _f: FeatureRef<'_>) -> Value {
        Value::Null
    }

    /// `features.name["key"]`. The default reads the whole family through
    /// [`Scope::feature`]; a scope that holds families can answer without a copy.
    fn feature_member(&self, f: FeatureRef<'_>, key: &str) -> Value {
        match self.feature(f) {
            Value::Map(mut members) => members.remove(key).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// `profile.name`: the latest value of the profile attribute.
    fn profile(&self, _name: &str) -> Value {
        Value::Null
    }

    /// `profile.name` without a copy, when the scope holds it; `None` sends the
    /// evaluator to [`Scope::profile`]. Many offers read the same profile strings.
    fn profile_ref(&self, _name: &str) -> Option<&Value> {
        None
    }

    /// `prefs.name`: the customer's preferences.
    fn prefs(&self, _name: &str) -> Value {
        Value::Null
    }

    /// The evaluation instant, for `days_since`.
    fn now(&self) -> Option<DateTime<Utc>> {
        None
    }

    /// The time zone of `day_of_month` and `hour`.
    fn timezone(&self) -> chrono_tz::Tz {
        chrono_tz::Tz::UTC
    }

    /// Whether `offer` was sent to the customer within `within` before now.
    fn sent(&self, _offer: &str, _within: TimeDelta) -> bool {
        false
    }

    /// Whether the customer responded to `offer` with `outcome` within `within`.
    fn responded(&self, _offer: &str, _outcome: &str, _within: TimeDelta) -> bool {
        false
    }
}

/// A checked, resolved expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Const(Value),
    /// `event.name`, `profile.name` or `prefs.name`.
    Path(Root, Box<str>),
    /// `event.name` of an attribute numbered by [`crate::Program::with_event_slots`].
    EventAttr(u32, Box<str>),
    /// `features.name`: the whole feature (a map for a family).
    Feature(FeatureName),
    /// `features.family["key"]` with a literal key.
    FeatureKey(FeatureName, Box<str>),
    /// `features.family[expr]`.
    FeatureIndex(FeatureName, Box<Node>),
    /// `map.name` on a computed map.
    Field(Box<Node>, Box<str>),
    Index(Box<Node>, Box<Node>),
    List(Vec<Node>),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    In(Box<Node>, Box<Node>),
    Arith(ArithOp, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// The language's truth: only `true` is true; null and every other value are false.
pub(crate) fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

impl Node {
    pub(crate) fn eval<'a>(&'a self, s: &'a dyn Scope) -> Cow<'a, Value> {
        let owned = match self {
            Node::Const(v) => return Cow::Borrowed(v),
            Node::Path(root, name) => match root {
                Root::Event => match s.event_ref(name) {
                    Some(v) => return Cow::Borrowed(v),
                    None => s.event(name),
                },
                Root::Features => s.feature(FeatureRef::named(name)),
                Root::Profile => match s.profile_ref(name) {
                    Some(v) => return Cow::Borrowed(v),
                    None => s.profile(name),
                },
                Root::Prefs => s.prefs(name),
            },
            Node::EventAttr(slot, name) => match s.event_attr(*slot, name) {
                Some(v) => return Cow::Borrowed(v),
                None => s.event(name),
            },
            Node::Feature(f) => s.feature(f.as_ref()),
            Node::FeatureKey(f, key) => s.feature_member(f.as_ref(), key),
            Node::FeatureIndex(f, key) => match &*key.eval(s) {
                Value::Null => Value::Null,
                key => s.feature_member(f.as_ref(), &key.to_key()),
            },
            Node::Field(base, name) => return field(base.eval(s), name),
            Node::Index(base, index) => return index_into(base.eval(s), &index.eval(s)),
            Node::List(items) => Value::List(items.iter().map(|n| n.eval(s).into_owned()).collect()),
            Node::Not(x) => Value::Bool(!truthy(&x.eval(s))),
            Node::Neg(x) => neg(&x.eval(s)),
            Node::And(xs) => Value::Bool(xs.iter().all(|x| truthy(&x.eval(s)))),
            Node::Or(xs) => Value::Bool(xs.iter().any(|x| truthy(&x.eval(s)))),
            Node::Cmp(op, l, r) => Value::Bool(arith::compare(*op, &l.eval(s), &r.eval(s))),
            Node::In(x, set) => Value::Bool(member_of(&x.eval(s), &set.eval(s))),
            Node::Arith(op, l, r) => arith::arith(*op, &l.eval(s), &r.eval(s)),
            Node::Call(f, args) => return call::call(*f, args, s),
        };
        Cow::Owned(owned)
    }

    /// Calls `f` on every feature this node reads, whole or by member.
    pub(crate) fn visit_features<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Node::Path(Root::Features, name) => f(name),
            Node::Feature(feature) | Node::FeatureKey(feature, _) => f(&feature.name),
            Node::FeatureIndex(feature, key) => {
                f(&feature.name);
                key.visit_features(f);
            }
            Node::Const(_) | Node::Path(..) | Node::EventAttr(..) => {}
            Node::Field(x, _) | Node::Not(x) | Node::Neg(x) => x.visit_features(f),
            Node::Index(a, b) | Node::Cmp(_, a, b) | Node::In(a, b) | Node::Arith(_, a, b) => {
                a.visit_features(f);
                b.visit_features(f);
            }
            Node::List(xs) | Node::And(xs) | Node::Or(xs) | Node::Call(_, xs) => {
                xs.iter().for_each(|x| x.visit_features(f));
            }
        }
    }

    /// Calls `f` on every event attribute this node reads (`event.<name>` other than
    /// the envelope's `ts`, `type` and `id`).
    pub(crate) fn visit_event_attrs<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Node::Path(Root::Event, name) | Node::EventAttr(_, name) if !is_envelope(name) => f(name),
            Node::Const(_) | Node::Path(..) | Node::EventAttr(..) | Node::Feature(_) | Node::FeatureKey(..) => {}
            Node::FeatureIndex(_, x) | Node::Field(x, _) | Node::Not(x) | Node::Neg(x) => x.visit_event_attrs(f),
            Node::Index(a, b) | Node::Cmp(_, a, b) | Node::In(a, b) | Node::Arith(_, a, b) => {
                a.visit_event_attrs(f);
                b.visit_event_attrs(f);
            }
            Node::List(xs) | Node::And(xs) | Node::Or(xs) | Node::Call(_, xs) => {
                xs.iter().for_each(|x| x.visit_event_attrs(f));
            }
        }
    }

    /// The same tree with each event attribute that `slot_of` numbers read by its slot.
    pub(crate) fn with_event_slots(&self, slot_of: &impl Fn(&str) -> Option<u32>) -> Node {
        let one = |x: &Node| Box::new(x.with_event_slots(slot_of));
        let all = |xs: &[Node]| xs.iter().map(|x| x.with_event_slots(slot_of)).collect();
        match self {
            Node::Path(Root::Event, name) | Node::EventAttr(_, name) if !is_envelope(name) => match slot_of(name) {
                Some(slot) => Node::EventAttr(slot, name.clone()),
                None => Node::Path(Root::Event, name.clone()),
            },
            Node::Const(_) | Node::Path(..) | Node::EventAttr(..) | Node::Feature(_) | Node::FeatureKey(..) => {
                self.clone()
            }
            Node::FeatureIndex(feature, key) => Node::FeatureIndex(feature.clone(), one(key)),
            Node::Field(x, name) => Node::Field(one(x), name.clone()),
            Node::Not(x) => Node::Not(one(x)),
            Node::Neg(x) => Node::Neg(one(x)),
            Node::Index(a, b) => Node::Index(one(a), one(b)),
            Node::Cmp(op, a, b) => Node::Cmp(*op, one(a), one(b)),
            Node::In(a, b) => Node::In(one(a), one(b)),
            Node::Arith(op, a, b) => Node::Arith(*op, one(a), one(b)),
            Node::List(xs) => Node::List(all(xs)),
            Node::And(xs) => Node::And(all(xs)),
            Node::Or(xs) => Node::Or(all(xs)),
            Node::Call(func, xs) => Node::Call(*func, all(xs)),
        }
    }
}

/// The envelope's fields, which `event.<name>` reads instead of an attribute.
fn is_envelope(name: &str) -> bool {
    matches!(name, "ts" | "type" | "id")
}

/// `map.name`: a missing field, or a base that is not a map, is null.
fn field<'a>(base: Cow<'a, Value>, name: &str) -> Cow<'a, Value> {
    match base {
        Cow::Borrowed(Value::Map(m)) => m.get(name).map_or(Cow::Owned(Value::Null), Cow::Borrowed),
        Cow::Owned(Value::Map(mut m)) => Cow::Owned(m.remove(name).unwrap_or(Value::Null)),
        _ => Cow::Owned(Value::Null),
    }
}

/// `list[i]` (0-based; out of range is null) and `map[key]`.
fn index_into<'a>(base: Cow<'a, Value>, key: &Value) -> Cow<'a, Value> {
    let pos = |len: usize| match *key {
        Value::Int(i) => usize::try_from(i).ok().filter(|&i| i < len),
        _ => None,
    };
    match base {
        Cow::Borrowed(Value::List(l)) => pos(l.len()).map_or(Cow::Owned(Value::Null), |i| Cow::Borrowed(&l[i])),
        Cow::Owned(Value::List(mut l)) => Cow::Owned(pos(l.len()).map_or(Value::Null, |i| l.swap_remove(i))),
        Cow::Borrowed(Value::Map(_)) | Cow::Owned(Value::Map(_)) if key.is_null() => Cow::Owned(Value::Null),
        Cow::Borrowed(Value::Map(m)) => m.get(&key.to_key()).map_or(Cow::Owned(Value::Null), Cow::Borrowed),
        Cow::Owned(Value::Map(mut m)) => Cow::Owned(m.remove(&key.to_key()).unwrap_or(Value::Null)),
        _ => Cow::Owned(Value::Null),
    }
}

/// `x in set`: an element of a list (loose equality) or a key of a map. Null is in
/// nothing, and nothing is in null.
pub(crate) fn member_of(x: &Value, set: &Value) -> bool {
    match (x, set) {
        (Value::Null, _) => false,
        (_, Value::List(items)) => items.iter().any(|item| x.loose_eq(item) == Some(true)),
        (Value::Str(k), Value::Map(m)) => m.contains_key(k),
        (Value::Int(_), Value::Map(m)) => m.contains_key(&x.to_key()),
        _ => false,
    }
}
