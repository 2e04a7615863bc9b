//! Type checking and resolution: the syntax tree, checked against a [`Schema`],
//! becomes the compiled tree the evaluator runs.
//!
//! The checker is gradual: event, profile and prefs attributes are `any`, which fits
//! everything, so it refuses only what is certain to be wrong. It keeps going after
//! an error (the faulty node becomes an `any` null) to report every problem at once.

mod call;
mod ops;
#[cfg(test)]
mod tests;

use persona_event::Value;

use crate::ast::{BinOp, Expr, SExpr, Spanned, UnOp};
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::eval::{FeatureName, Node};
use crate::func::Func;
use crate::schema::{Root, Schema, Type};

/// A checked node and its static type.
#[derive(Debug)]
pub(crate) struct Typed {
    pub ty: Type,
    pub node: Node,
}

impl Typed {
    fn new(ty: Type, node: Node) -> Self {
        Self { ty, node }
    }

    /// What a node with an error becomes: fits anywhere, so one mistake is reported once.
    fn poisoned() -> Self {
        Self::new(Type::Any, Node::Const(Value::Null))
    }
}

pub(crate) struct Checker<'s> {
    schema: &'s Schema,
    diags: Vec<Diagnostic>,
}

pub(crate) fn type_of(v: &Value) -> Type {
    match v {
        Value::Null => Type::Any,
        Value::Bool(_) => Type::Bool,
        Value::Int(_) | Value::Float(_) => Type::Number,
        Value::Str(_) => Type::String,
        Value::Time(_) => Type::Time,
        Value::Duration(_) => Type::Duration,
        Value::List(_) => Type::List,
        Value::Map(_) => Type::Map,
    }
}

/// A type with its article ("a number"), for messages.
pub(crate) fn article(ty: Type) -> String {
    match ty {
        Type::Any => "a value of any type".to_owned(),
        other => format!("a {other}"),
    }
}

impl<'s> Checker<'s> {
    pub(crate) fn new(schema: &'s Schema) -> Self {
        Self {
            schema,
            diags: Vec::new(),
        }
    }

    pub(crate) fn finish(mut self) -> Result<(), Diagnostics> {
        if self.diags.is_empty() {
            return Ok(());
        }
        self.diags.sort_by_key(|d| (d.span.start, d.span.end));
        Err(Diagnostics(self.diags))
    }

    fn report(&mut self, d: Diagnostic) -> Typed {
        self.diags.push(d);
        Typed::poisoned()
    }

    pub(crate) fn check(&mut self, e: &SExpr) -> Typed {
        match &e.node {
            Expr::Lit(v) => Typed::new(type_of(v), Node::Const(v.clone())),
            Expr::Ident(name) => {
                let d = self.bare_name(name, e);
                self.report(d)
            }
            Expr::Member(base, name) => self.member(base, name),
            Expr::Index(base, key) => self.index(e, base, key),
            Expr::Call(name, args) => self.call(e, name, args),
            Expr::List(items) => {
                let nodes: Vec<Node> = items.iter().map(|i| self.check(i).node).collect();
                // A list of constants is built once, here, not on every evaluation.
                let consts: Option<Vec<Value>> = nodes
                    .iter()
                    .map(|n| match n {
                        Node::Const(v) => Some(v.clone()),
                        _ => None,
                    })
                    .collect();
                match consts {
                    Some(values) => Typed::new(Type::List, Node::Const(Value::List(values))),
                    None => Typed::new(Type::List, Node::List(nodes)),
                }
            }
            Expr::Group(inner) => self.check(inner),
            Expr::Unary(op, x) => self.unary(op, x),
            Expr::Binary(op, l, r) => self.binary(e, op, l, r),
        }
    }

    /// Records an error unless `t` can be a bool; `what` names the construct.
    pub(crate) fn expect_bool(&mut self, t: &Typed, e: &SExpr, what: &str) {
        if t.ty.fits(Type::Bool) {
            return;
        }
        let example = match t.ty {
            Type::Number => "e.g. `... > 0`",
            Type::String => "e.g. `... == \"yes\"`",
            Type::Duration => "e.g. `... > 1d`",
            _ => "such as a comparison",
        };
        self.diags.push(
            Diagnostic::new(
                "E007",
                format!("expected a bool, found {}", article(t.ty)),
                e.span.clone(),
            )
            .label(format!("this is {}", article(t.ty)))
            .help(format!(
                "{what} needs a condition; turn the {} into one, {example}",
                t.ty
            )),
        );
    }

    fn bare_name(&self, name: &str, e: &SExpr) -> Diagnostic {
        let d = Diagnostic::new("E004", format!("unknown name `{name}`"), e.span.clone());
        if let Some(root) = Root::from_name(name) {
            return Diagnostic::new("E004", format!("`{root}` needs an attribute name"), e.span.clone())
                .label("a root on its own")
                .help(format!("name what to read, e.g. `{root}.{}`", example_attr(root)));
        }
        if Func::from_name(name).is_some() {
            return Diagnostic::new("E004", format!("`{name}` is a function"), e.span.clone())
                .label("not called")
                .help(format!(
                    "call it: `{}`",
                    Func::from_name(name).map_or_else(String::new, Func::signature)
                ));
        }
        let roots: Vec<String> = self
            .schema
            .allowed_roots()
            .iter()
            .map(|r| format!("`{r}.{name}`"))
            .collect();
        let help = match roots.as_slice() {
            [] => "this expression may use literals and functions only".to_owned(),
            [one] => format!("values are read through a root: {one}"),
            many => format!("values are read through a root: {}", many.join(", ")),
        };
        d.label("not a root, feature or function").help(help)
    }

    /// Resolves `root` for a path; reports an unknown or disallowed root.
    fn root(&mut self, ident: &SExpr, name: &str) -> Option<Root> {
        let allowed = self.schema.allowed_roots();
        match Root::from_name(name) {
            Some(root) if self.schema.allows(root) => Some(root),
            Some(root) => {
                let list: Vec<String> = allowed.iter().map(|r| format!("`{r}`")).collect();
                let help = if list.is_empty() {
                    "this expression may use literals and functions only".to_owned()
                } else {
                    format!("this expression may read {}", list.join(", "))
                };
                self.diags.push(
                    Diagnostic::new("E009", format!("`{root}` cannot be used here"), ident.span.clone())
                        .label("not available in this expression")
                        .help(help),
                );
                None
            }
            None => {
                let help = did_you_mean(name, allowed.iter().map(|r| r.name())).unwrap_or_else(|| {
                    let list: Vec<&str> = allowed.iter().map(|r| r.name()).collect();
                    format!("paths start with one of: {}", list.join(", "))
                });
                self.diags.push(
                    Diagnostic::new("E004", format!("unknown root `{name}`"), ident.span.clone())
                        .label("not a root")
                        .help(help),
                );
                None
            }
        }
    }

    /// `features.name` as written at `span`: its declaration, or an E003.
    fn feature(&mut self, name: &Spanned<String>) -> Option<crate::schema::FeatureDecl> {
        let decl = self.schema.lookup(&name.node);
        if decl.is_none() && self.schema.is_open() {
            return Some(crate::schema::FeatureDecl {
                ty: Type::Any,
                family: false,
                slot: None,
            });
        }
        if decl.is_none() {
            let help = did_you_mean(&name.node, self.schema.feature_names());
            self.diags.push(
                Diagnostic::new("E003", format!("unknown feature `{}`", name.node), name.span.clone())
                    .label("not a feature of this FeatureSet")
                    .help_opt(help),
            );
        }
        decl
    }

    fn member(&mut self, base: &SExpr, name: &Spanned<String>) -> Typed {
        if let Expr::Ident(root_name) = &base.node {
            let Some(root) = self.root(base, root_name) else {
                return Typed::poisoned();
            };
            return self.path(root, name);
        }
        let b = self.check(base);
        if !b.ty.fits(Type::Map) {
            let d = Diagnostic::new("E014", format!("{} has no fields", article(b.ty)), base.span.clone())
                .label(format!("this is {}", article(b.ty)))
                .help(format!("`.{}` reads a field of a map", name.node));
            return self.report(d);
        }
        Typed::new(Type::Any, Node::Field(Box::new(b.node), name.node.as_str().into()))
    }

    /// `root.name`, or `root["name"]`.
    fn path(&mut self, root: Root, name: &Spanned<String>) -> Typed {
        if root != Root::Features {
            return Typed::new(Type::Any, Node::Path(root, name.node.as_str().into()));
        }
        match self.feature(name) {
            // A family used whole is the map of its members.
            Some(decl) if decl.family => Typed::new(Type::Map, Node::Feature(FeatureName::new(&name.node, decl))),
            Some(decl) => Typed::new(decl.ty, Node::Feature(FeatureName::new(&name.node, decl))),
            None => Typed::poisoned(),
        }
    }

    fn index(&mut self, e: &SExpr, base: &SExpr, key: &SExpr) -> Typed {
        match &base.node {
            // `event["merchant.mall"]`: an attribute whose name is not an identifier.
            Expr::Ident(root_name) => {
                let Some(root) = self.root(base, root_name) else {
                    return Typed::poisoned();
                };
                let Some(name) = key.as_str_lit() else {
                    let d = Diagnostic::new("E010", "attribute names must be string literals", key.span.clone())
                        .label("not a string literal")
                        .help(format!("write `{root}[\"name\"]` or `{root}.name`"));
                    return self.report(d);
                };
                self.path(root, &Spanned::new(name.to_owned(), key.span.clone()))
            }
            Expr::Member(root_expr, name) if matches!(&root_expr.node, Expr::Ident(r) if r == "features") => {
                if self.root(root_expr, "features").is_none() {
                    return Typed::poisoned();
                }
                let Some(decl) = self.feature(name) else {
                    return Typed::poisoned();
                };
                // An undeclared feature of an open schema may be a family.
                if !decl.family && self.schema.lookup(&name.node).is_some() {
                    let d = Diagnostic::new(
                        "E008",
                        format!("feature `{}` is not a family", name.node),
                        e.span.clone(),
                    )
                    .label("indexed here")
                    .help(format!(
                        "only features with `by` have members; use `features.{}`",
                        name.node
                    ));
                    return self.report(d);
                }
                let k = self.check(key);
                if !(k.ty.fits(Type::String) || k.ty == Type::Number) {
                    let d = Diagnostic::new(
                        "E007",
                        format!("family keys are strings, found {}", article(k.ty)),
                        key.span.clone(),
                    )
                    .label(format!("this is {}", article(k.ty)));
                    return self.report(d);
                }
                let feature = FeatureName::new(&name.node, decl);
                let node = match k.node {
                    Node::Const(Value::Null) => Node::Const(Value::Null),
                    Node::Const(v) => Node::FeatureKey(feature, v.to_key().into()),
                    other => Node::FeatureIndex(feature, Box::new(other)),
                };
                Typed::new(decl.ty, node)
            }
            _ => {
                let b = self.check(base);
                let k = self.check(key);
                let key_ok = match b.ty {
                    Type::List => k.ty.fits(Type::Number),
                    Type::Map => k.ty.fits(Type::String) || k.ty == Type::Number,
                    Type::Any => true,
                    _ => {
                        let d = Diagnostic::new(
                            "E014",
                            format!("{} cannot be indexed", article(b.ty)),
                            base.span.clone(),
                        )
                        .label(format!("this is {}", article(b.ty)))
                        .help("`[...]` picks an element of a list or a member of a map");
                        return self.report(d);
                    }
                };
                if !key_ok {
                    let want = if b.ty == Type::List { "a number" } else { "a string" };
                    let d = Diagnostic::new(
                        "E007",
                        format!("{} is indexed by {want}, found {}", article(b.ty), article(k.ty)),
                        key.span.clone(),
                    )
                    .label(format!("this is {}", article(k.ty)));
                    return self.report(d);
                }
                Typed::new(Type::Any, Node::Index(Box::new(b.node), Box::new(k.node)))
            }
        }
    }

    fn unary(&mut self, op: &Spanned<UnOp>, x: &SExpr) -> Typed {
        let t = self.check(x);
        match op.node {
            UnOp::Not => {
                self.expect_bool(&t, x, "`not`");
                Typed::new(Type::Bool, Node::Not(Box::new(t.node)))
            }
            UnOp::Neg => {
                if !(t.ty.fits(Type::Number) || t.ty == Type::Duration) {
                    let d = Diagnostic::new("E007", format!("cannot negate {}", article(t.ty)), x.span.clone())
                        .label(format!("this is {}", article(t.ty)))
                        .help("`-` negates numbers and durations");
                    return self.report(d);
                }
                let node = match t.node {
                    Node::Const(v) => Node::Const(crate::eval::neg(&v)),
                    other => Node::Neg(Box::new(other)),
                };
                Typed::new(t.ty, node)
            }
        }
    }

    fn binary(&mut self, e: &SExpr, op: &Spanned<BinOp>, l: &SExpr, r: &SExpr) -> Typed {
        let lt = self.check(l);
        let rt = self.check(r);
        match op.node {
            BinOp::And | BinOp::Or => {
                let what = format!("`{}`", op.node);
                self.expect_bool(&lt, l, &what);
                self.expect_bool(&rt, r, &what);
                let and = op.node == BinOp::And;
                // Chains are flattened so evaluation walks one list, not a deep tree.
                let mut items = Vec::new();
                for t in [lt.node, rt.node] {
                    match t {
                        Node::And(xs) if and => items.extend(xs),
                        Node::Or(xs) if !and => items.extend(xs),
                        other => items.push(other),
                    }
                }
                Typed::new(Type::Bool, if and { Node::And(items) } else { Node::Or(items) })
            }
            _ => self.operator(e, op, (l, lt), (r, rt)),
        }
    }
}

/// A plausible attribute of a root, for help text.
fn example_attr(root: Root) -> &'static str {
    match root {
        Root::Event => "amount",
        Root::Features => "avg_balance_90d",
        Root::Profile => "credit_band",
        Root::Prefs => "channels",
    }
}
