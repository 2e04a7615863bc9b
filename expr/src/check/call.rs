//! Typing of calls to the built-in functions: name, arity, argument types, and the
//! arguments that must be string literals (offer names and outcomes).

use persona_event::Value;

use super::{Checker, Typed, article};
use crate::ast::{Expr, SExpr, Spanned};
use crate::diag::{Diagnostic, did_you_mean};
use crate::eval::Node;
use crate::func::{Func, OUTCOMES};
use crate::schema::{Root, Type};

impl Checker<'_> {
    pub(super) fn call(&mut self, e: &SExpr, name: &Spanned<String>, args: &[SExpr]) -> Typed {
        let Some(f) = Func::from_name(&name.node) else {
            let help = if Root::from_name(&name.node).is_some() {
                Some(format!(
                    "`{}` is a root; read an attribute with `{}.name`",
                    name.node, name.node
                ))
            } else {
                did_you_mean(&name.node, Func::ALL.iter().map(|f| f.name()))
            };
            let d = Diagnostic::new("E005", format!("unknown function `{}`", name.node), name.span.clone())
                .label("not a built-in function")
                .help(help.unwrap_or_else(|| "the built-in functions are listed in docs/dsl.md".to_owned()));
            // The arguments may hold mistakes of their own; report those too.
            args.iter().for_each(|arg| drop(self.check(arg)));
            return self.report(d);
        };
        let typed: Vec<Typed> = args.iter().map(|arg| self.check(arg)).collect();
        let params = f.params();
        let arity_ok = if f.variadic() {
            !args.is_empty()
        } else {
            args.len() == params.len()
        };
        if !arity_ok {
            let want = match (f.variadic(), params.len()) {
                (true, _) => "at least 1 argument".to_owned(),
                (false, 1) => "1 argument".to_owned(),
                (false, n) => format!("{n} arguments"),
            };
            let d = Diagnostic::new(
                "E006",
                format!("`{}` takes {want}, found {}", f.name(), args.len()),
                e.span.clone(),
            )
            .label("wrong number of arguments")
            .help(format!("write `{}`", f.signature()));
            return self.report(d);
        }
        let mut ok = true;
        for (i, (arg, t)) in args.iter().zip(&typed).enumerate() {
            let param = &params[if f.variadic() { 0 } else { i }];
            if let Some(d) = self.argument(f, i, param, arg, t) {
                self.diags.push(d);
                ok = false;
            }
        }
        if !ok {
            return Typed::poisoned();
        }
        let ty = match f {
            Func::Coalesce => common_type(typed.iter().map(|t| t.ty)),
            Func::Abs => typed[0].ty,
            other => other.ret(),
        };
        Typed::new(ty, Node::Call(f, typed.into_iter().map(|t| t.node).collect()))
    }

    /// The problem with argument `i` of `f`, if any.
    fn argument(&self, f: Func, i: usize, param: &crate::func::Param, arg: &SExpr, t: &Typed) -> Option<Diagnostic> {
        if param.literal {
            let Some(text) = arg.as_str_lit() else {
                return Some(
                    Diagnostic::new(
                        "E011",
                        format!("the `{}` of `{}` must be a string literal", param.name, f.name()),
                        arg.span.clone(),
                    )
                    .label("not a string literal")
                    .help(format!("name it in the text, e.g. `{}`", example(f))),
                );
            };
            if f == Func::Responded && i == 1 && !OUTCOMES.contains(&text) {
                let help =
                    did_you_mean(text, OUTCOMES).unwrap_or_else(|| format!("outcomes are {}", OUTCOMES.join(", ")));
                return Some(
                    Diagnostic::new("E013", format!("unknown outcome `{text}`"), arg.span.clone())
                        .label("not an offer outcome")
                        .help(help),
                );
            }
            return None;
        }
        if !param.accepts.iter().any(|want| t.ty.fits(*want)) {
            let wants: Vec<String> = param.accepts.iter().map(|w| article(*w)).collect();
            return Some(
                Diagnostic::new(
                    "E007",
                    format!("`{}` expects {}, found {}", f.name(), wants.join(" or "), article(t.ty)),
                    arg.span.clone(),
                )
                .label(format!("this is {}", article(t.ty)))
                .help(format!("write `{}`", f.signature())),
            );
        }
        // A literal timestamp is read now rather than turning into null at run time.
        if let Expr::Lit(Value::Str(s)) = &arg.node
            && param.accepts.contains(&Type::Time)
            && persona_event::time::parse_ts(s).is_err()
        {
            return Some(
                Diagnostic::new("E007", format!("`{s}` is not a timestamp"), arg.span.clone())
                    .label("not RFC 3339")
                    .help("write times as RFC 3339, e.g. \"2026-03-04T10:22:00Z\""),
            );
        }
        None
    }
}

/// The one type the known arguments share, else `any`.
fn common_type(types: impl Iterator<Item = Type>) -> Type {
    let mut known = types.filter(|t| *t != Type::Any);
    match known.next() {
        Some(first) if known.all(|t| t == first) => first,
        _ => Type::Any,
    }
}

fn example(f: Func) -> &'static str {
    match f {
        Func::Sent => "sent(\"car-loan\", 30d)",
        _ => "responded(\"car-loan-teaser\", \"positive\", 14d)",
    }
}
