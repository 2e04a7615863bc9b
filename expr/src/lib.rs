//! The persona expression language: one small, total language for offer conditions,
//! feature filters and derived features; lexed, parsed, type-checked against a
//! [`Schema`], and evaluated against a [`Scope`].
//!
//! ```
//! use persona_expr::{Root, Schema, Type, compile};
//! let schema = Schema::new()
//!     .allow_root(Root::Features)
//!     .allow_root(Root::Profile)
//!     .feature("car_intent", Type::Bool, false)
//!     .feature("min_balance_90d", Type::Number, false);
//! let when = compile(
//!     "features.car_intent\nand features.min_balance_90d >= 300000\nand profile.credit_band in [\"A\", \"B\"]",
//!     &schema,
//! )
//! .unwrap();
//! assert_eq!(when.clauses().len(), 3);
//! assert_eq!(when.features_used(), ["car_intent", "min_balance_90d"]);
//! ```
//!
//! # Semantics
//!
//! - A missing value is `null`. Every comparison (`== != < <= > >=`, `in`) with null
//!   is false, so `x != "a"` is false when `x` is null. Values of different kinds
//!   (a string and a number) are neither equal nor unequal: `==` and `!=` are false.
//! - `and`, `or` and `not` treat null, and anything but `true`, as false: `not null` is
//!   true. They short-circuit and always give a bool.
//! - Arithmetic with null is null. Division by zero, integer overflow and non-finite
//!   results are null. Integers stay integers under `+ - *`; `/` gives a decimal.
//!   `time - time` is a duration; `time ± duration` is a time; `duration * number`,
//!   `duration / number` are durations, `duration / duration` a number; `string +
//!   string` joins. A string holding an RFC 3339 timestamp counts as a time.
//! - `x in [a, b]` is true iff `x` loosely equals an element (numbers compare across
//!   integer and decimal); `in` also takes a list-valued expression, and a map (then
//!   it tests the keys).
//! - Functions: `day_of_month(t)` and `hour(t)` in the scope's time zone;
//!   `days_since(t)` whole elapsed days (rounded down) from `t` to the scope's now,
//!   null without a now; `sent(offer, within)`, `responded(offer, outcome, within)` ask
//!   the scope; `coalesce(a, ...)` the first non-null; `min(...)`/`max(...)` over
//!   numbers (lists flattened, nulls skipped, null if none); `abs(x)`;
//!   `contains(list_or_string_or_map, x)`, `starts_with(s, prefix)`, `len(x)`.
//!   Value functions give null on null or ill-kinded input; predicates give false.
//! - The result of a condition is [`Program::eval_bool`]: true only for `true`.
//!
//! The checker is gradual: event, profile and prefs attributes are [`Type::Any`],
//! which fits everything, and only errors that are certain are reported.
//! docs/dsl.md is the user reference, with the error codes.

mod ast;
mod check;
mod diag;
mod eval;
mod field;
mod func;
mod lex;
mod parse;
mod schema;

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use persona_event::Value;

pub use diag::{Diagnostic, Diagnostics};
pub use eval::{FeatureRef, Scope};
pub use field::{FieldError, compile_condition_field, compile_field};
pub use schema::{FeatureDecl, Root, Schema, Type};

use check::Checker;
use eval::{CmpOp, Node, truthy};

/// Lexes, parses and type-checks `src` against `schema`.
pub fn compile(src: &str, schema: &Schema) -> Result<Program, Diagnostics> {
    compile_as(src, schema, None)
}

/// Compiles an expression that must be a condition (an offer's `when`, a feature's
/// `where`): one that is certainly not a bool is refused, since it could never hold.
/// `what` names the field in the message (`` `when` ``).
pub fn compile_condition(src: &str, schema: &Schema, what: &str) -> Result<Program, Diagnostics> {
    compile_as(src, schema, Some(what))
}

fn compile_as(src: &str, schema: &Schema, condition: Option<&str>) -> Result<Program, Diagnostics> {
    let ast = parse::parse(src)?;
    let mut checker = Checker::new(schema);
    let parts = ast.and_chain();
    let mut nodes = Vec::with_capacity(parts.len());
    let mut clauses = Vec::with_capacity(parts.len());
    for part in &parts {
        let typed = checker.check(part);
        if parts.len() > 1 {
            checker.expect_bool(&typed, part, "`and`");
        } else if let Some(what) = condition {
            checker.expect_bool(&typed, part, what);
        }
        clauses.push(ClauseInfo {
            span: part.span.clone(),
            ty: typed.ty,
        });
        nodes.push(typed.node);
    }
    checker.finish()?;
    let (node, ty) = match (nodes.len(), clauses.first()) {
        (1, Some(only)) => (nodes.pop().unwrap_or(Node::Const(Value::Null)), only.ty),
        _ => (Node::And(nodes), Type::Bool),
    };
    Ok(Program {
        inner: Arc::new(Inner {
            src: src.into(),
            node,
            ty,
            clauses,
        }),
    })
}

/// A compiled expression. Cheap to clone; shareable across threads.
#[derive(Clone)]
pub struct Program {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    src: Box<str>,
    node: Node,
    ty: Type,
    /// The top-level `and` operands (one when the expression is not an `and`); the
    /// node is then an `And` of the same length, in the same order.
    clauses: Vec<ClauseInfo>,
}

#[derive(Clone, Debug)]
struct ClauseInfo {
    span: Range<usize>,
    ty: Type,
}

/// One operand of a top-level `and`, for "explain".
#[derive(Clone, Debug)]
pub struct Clause {
    /// The clause's source text, trimmed.
    pub text: String,
    /// The clause alone; its [`Program::source`] is `text`.
    pub program: Program,
}

impl Program {
    /// The source as given to [`compile`].
    pub fn source(&self) -> &str {
        &self.inner.src
    }

    /// The static type of the whole expression.
    pub fn ty(&self) -> Type {
        self.inner.ty
    }

    pub fn eval(&self, scope: &dyn Scope) -> Value {
        self.inner.node.eval(scope).into_owned()
    }

    /// Like [`Program::eval`], borrowing the value when the scope holds it (an event
    /// attribute), so the hot path copies nothing it only reads.
    pub fn eval_cow<'a>(&'a self, scope: &'a dyn Scope) -> std::borrow::Cow<'a, Value> {
        self.inner.node.eval(scope)
    }

    /// When the whole expression is one path (`event.amount`), its root and name: a
    /// caller on a hot path can then read the value in place, with no evaluation.
    pub fn as_path(&self) -> Option<(Root, &str)> {
        match &self.inner.node {
            Node::Path(root, name) => Some((*root, name)),
            Node::EventAttr(_, name) => Some((Root::Event, name)),
            Node::Feature(f) => Some((Root::Features, f.as_ref().name)),
            _ => None,
        }
    }

    /// When the whole expression is `event.<attribute> == "<text>"` (either way round)
    /// over an attribute numbered by [`Program::with_event_slots`]: its slot and the
    /// text. Over an event whose attribute is a string, the expression holds exactly
    /// when the two strings are equal, so a caller holding many such clauses over one
    /// attribute can answer them all with one look-up.
    pub fn as_attr_equals(&self) -> Option<(u32, &str)> {
        match &self.inner.node {
            Node::Cmp(CmpOp::Eq, l, r) => match (&**l, &**r) {
                (Node::EventAttr(slot, _), Node::Const(Value::Str(text)))
                | (Node::Const(Value::Str(text)), Node::EventAttr(slot, _)) => Some((*slot, text)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the expression holds: true only when it evaluates to `true`.
    pub fn eval_bool(&self, scope: &dyn Scope) -> bool {
        truthy(&self.inner.node.eval(scope))
    }

    /// The top-level `and` chain split into its clauses, each with its source text;
    /// a single clause (this program) when the expression is not an `and`.
    pub fn clauses(&self) -> Vec<Clause> {
        let inner = &self.inner;
        match &inner.node {
            Node::And(parts) if inner.clauses.len() > 1 && parts.len() == inner.clauses.len() => inner
                .clauses
                .iter()
                .zip(parts)
                .map(|(info, node)| {
                    let text = inner.src.get(info.span.clone()).unwrap_or_default().trim().to_owned();
                    let program = Program {
                        inner: Arc::new(Inner {
                            src: text.as_str().into(),
                            node: node.clone(),
                            ty: info.ty,
                            clauses: vec![ClauseInfo {
                                span: 0..text.len(),
                                ty: info.ty,
                            }],
                        }),
                    };
                    Clause { text, program }
                })
                .collect(),
            _ => vec![Clause {
                text: inner.src.trim().to_owned(),
                program: self.clone(),
            }],
        }
    }

    /// The features the expression reads, sorted and without repeats, so a
    /// FeatureSet can order derived features and detect cycles.
    pub fn features_used(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        self.inner.node.visit_features(&mut |name| {
            names.insert(name);
        });
        names.into_iter().map(str::to_owned).collect()
    }

    /// The event attributes the expression reads (`event.<name>`, not the envelope's
    /// `ts`, `type` and `id`), sorted and without repeats.
    pub fn event_attrs(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        self.inner.node.visit_event_attrs(&mut |name| {
            names.insert(name);
        });
        names.into_iter().map(str::to_owned).collect()
    }

    /// The same program reading each event attribute that `slot_of` numbers through
    /// [`Scope::event_attr`] with that slot. A scope that resolves an event's
    /// attributes once (a FeatureSet's, for the dozens of filters and values each event
    /// meets) then answers each read with no look-up by name. Attributes `slot_of`
    /// leaves out are read by name, as before.
    pub fn with_event_slots(&self, slot_of: impl Fn(&str) -> Option<u32>) -> Program {
        let inner = &self.inner;
        Program {
            inner: Arc::new(Inner {
                src: inner.src.clone(),
                node: inner.node.with_event_slots(&slot_of),
                ty: inner.ty,
                clauses: inner.clauses.clone(),
            }),
        }
    }
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("source", &self.inner.src)
            .field("ty", &self.inner.ty)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Root::ALL
            .into_iter()
            .fold(Schema::new(), Schema::allow_root)
            .feature("car_intent", Type::Bool, false)
            .feature("min_balance_90d", Type::Number, false)
            .feature("spend_30d", Type::Number, true)
    }

    #[test]
    fn program_is_shareable() {
        fn assert_shareable<T: Clone + fmt::Debug + Send + Sync + 'static>() {}
        assert_shareable::<Program>();
        assert_shareable::<Diagnostics>();
    }

    #[test]
    fn clauses_split_the_top_level_and_only() {
        let src = "  features.car_intent\n  and (profile.a == 1 and profile.b == 2)\n  and not features.spend_30d[\"fuel\"] > 10\n";
        let p = compile(src, &schema()).unwrap();
        let texts: Vec<String> = p.clauses().into_iter().map(|c| c.text).collect();
        assert_eq!(
            texts,
            [
                "features.car_intent",
                "(profile.a == 1 and profile.b == 2)",
                "not features.spend_30d[\"fuel\"] > 10"
            ]
        );
        let clauses = p.clauses();
        assert_eq!(clauses[2].program.source(), texts[2]);
        assert_eq!(clauses[2].program.features_used(), ["spend_30d"]);
        assert_eq!(clauses[2].program.clauses().len(), 1);
        assert_eq!(compile("true and false or true", &schema()).unwrap().clauses().len(), 1);
        let single = compile("1 + 2", &schema()).unwrap();
        assert_eq!(single.clauses()[0].text, "1 + 2");
        assert_eq!(single.ty(), Type::Number);
    }

    #[test]
    fn features_used_are_sorted_and_unique() {
        let p = compile(
            "features.spend_30d[event.category] > features.min_balance_90d and features.spend_30d[\"x\"] > 0",
            &schema(),
        )
        .unwrap();
        assert_eq!(p.features_used(), ["min_balance_90d", "spend_30d"]);
    }

    #[test]
    fn non_bool_clause_of_an_and_is_reported_once() {
        let err = compile("features.min_balance_90d and true", &schema()).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err:?}");
        assert_eq!(err.0[0].code, "E007");
        assert_eq!(err.0[0].span, 0..24);
    }
}
