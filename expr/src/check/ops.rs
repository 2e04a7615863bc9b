//! Typing of comparisons, `in` and arithmetic: which operand types an operator
//! takes, and what it gives. An `any` operand is tried as every concrete type: the
//! operation is refused only when no choice works.

use persona_event::Value;

use super::{Checker, Typed, article, type_of};
use crate::ast::{BinOp, Expr, SExpr, Spanned};
use crate::diag::Diagnostic;
use crate::eval::{ArithOp, CmpOp, Node};
use crate::schema::Type;

/// The result of `l op r` for concrete types, if the operation exists.
fn arith_concrete(op: ArithOp, l: Type, r: Type) -> Option<Type> {
    use Type::*;
    Some(match (op, l, r) {
        (_, Number, Number) => Number,
        (ArithOp::Add, String, String) => String,
        (ArithOp::Add, Time, Duration) | (ArithOp::Add, Duration, Time) => Time,
        (ArithOp::Add | ArithOp::Sub, Duration, Duration) => Duration,
        (ArithOp::Sub, Time, Time) => Duration,
        (ArithOp::Sub, Time, Duration) => Time,
        (ArithOp::Mul, Duration, Number) | (ArithOp::Mul, Number, Duration) => Duration,
        (ArithOp::Div, Duration, Number) => Duration,
        (ArithOp::Div, Duration, Duration) => Number,
        _ => return None,
    })
}

/// The result type of `l op r`, trying each concrete type an `any` may hold: `None`
/// when none works, the common result when all agree, else `any`.
pub(crate) fn arith_type(op: ArithOp, l: Type, r: Type) -> Option<Type> {
    let mut result: Option<Type> = None;
    for &lc in l.candidates() {
        for &rc in r.candidates() {
            if let Some(t) = arith_concrete(op, lc, rc) {
                result = Some(match result {
                    Some(prev) if prev != t => Type::Any,
                    _ => t,
                });
            }
        }
    }
    result
}

/// Whether `==` between the two types can ever be true. Times compare with strings,
/// which may hold RFC 3339 timestamps.
pub(crate) fn equatable(l: Type, r: Type) -> bool {
    l.fits(r) || matches!((l, r), (Type::Time, Type::String) | (Type::String, Type::Time))
}

fn orderable(t: Type) -> bool {
    matches!(t, Type::Any | Type::Number | Type::String | Type::Time | Type::Duration)
}

fn arith_op(op: BinOp) -> Option<ArithOp> {
    Some(match op {
        BinOp::Add => ArithOp::Add,
        BinOp::Sub => ArithOp::Sub,
        BinOp::Mul => ArithOp::Mul,
        BinOp::Div => ArithOp::Div,
        _ => return None,
    })
}

fn cmp_op(op: BinOp) -> Option<CmpOp> {
    Some(match op {
        BinOp::Eq => CmpOp::Eq,
        BinOp::Ne => CmpOp::Ne,
        BinOp::Lt => CmpOp::Lt,
        BinOp::Le => CmpOp::Le,
        BinOp::Gt => CmpOp::Gt,
        BinOp::Ge => CmpOp::Ge,
        _ => return None,
    })
}

fn is_null_lit(e: &SExpr) -> bool {
    matches!(e.node, Expr::Lit(Value::Null))
}

impl Checker<'_> {
    /// Comparisons, `in` and arithmetic (`and`/`or` are the caller's).
    pub(super) fn operator(
        &mut self,
        e: &SExpr,
        op: &Spanned<BinOp>,
        (l, lt): (&SExpr, Typed),
        (r, rt): (&SExpr, Typed),
    ) -> Typed {
        if op.node.is_comparison()
            && let Some(side) = [l, r].into_iter().find(|s| is_null_lit(s))
        {
            let d = Diagnostic::new("E012", "comparison with `null` is always false", side.span.clone())
                .label("nothing compares with null")
                .help(
                    "a missing value is null and every comparison with it is false; \
                       to default a missing value write `coalesce(x, fallback)`",
                );
            return self.report(d);
        }
        if let Some(cmp) = cmp_op(op.node) {
            return self.comparison(e, op, cmp, (l, lt), (r, rt));
        }
        if let Some(arith) = arith_op(op.node) {
            return self.arithmetic(e, op, arith, lt, rt);
        }
        self.membership(l, lt, r, rt)
    }

    fn comparison(
        &mut self,
        e: &SExpr,
        op: &Spanned<BinOp>,
        cmp: CmpOp,
        (l, lt): (&SExpr, Typed),
        (r, rt): (&SExpr, Typed),
    ) -> Typed {
        let ordering = !matches!(cmp, CmpOp::Eq | CmpOp::Ne);
        if ordering {
            for (side, t) in [(l, &lt), (r, &rt)] {
                if !orderable(t.ty) {
                    let help = self
                        .family_hint(side)
                        .unwrap_or_else(|| format!("`{}` orders numbers, strings, times and durations", op.node));
                    let d = Diagnostic::new(
                        "E007",
                        format!("`{}` cannot order {}", op.node, article(t.ty)),
                        side.span.clone(),
                    )
                    .label(format!("this is {}", article(t.ty)))
                    .help(help);
                    return self.report(d);
                }
            }
        }
        if !equatable(lt.ty, rt.ty) {
            let help = [l, r]
                .into_iter()
                .find_map(|s| self.family_hint(s))
                .unwrap_or_else(|| match ordering {
                    false => "values of different types are never equal, so this is always false".to_owned(),
                    true => "both sides must have the same type".to_owned(),
                });
            let d = Diagnostic::new(
                "E007",
                format!("cannot compare {} with {}", article(lt.ty), article(rt.ty)),
                e.span.clone(),
            )
            .label(format!("{} {} {}", lt.ty, op.node, rt.ty))
            .help(help);
            return self.report(d);
        }
        Typed::new(Type::Bool, Node::Cmp(cmp, Box::new(lt.node), Box::new(rt.node)))
    }

    fn arithmetic(&mut self, e: &SExpr, op: &Spanned<BinOp>, arith: ArithOp, lt: Typed, rt: Typed) -> Typed {
        let Some(ty) = arith_type(arith, lt.ty, rt.ty) else {
            let help = match arith {
                ArithOp::Add => "`+` adds numbers, joins strings, and adds durations to times and durations",
                ArithOp::Sub => "`-` subtracts numbers, times from times, and durations from times and durations",
                ArithOp::Mul => "`*` multiplies numbers, and durations by numbers",
                ArithOp::Div => "`/` divides numbers, and durations by numbers or durations",
            };
            let d = Diagnostic::new(
                "E007",
                format!(
                    "cannot apply `{}` to {} and {}",
                    op.node,
                    article(lt.ty),
                    article(rt.ty)
                ),
                e.span.clone(),
            )
            .label(format!("{} {} {}", lt.ty, op.node, rt.ty))
            .help(help);
            return self.report(d);
        };
        let node = match (lt.node, rt.node) {
            // Constant arithmetic (`30 * 86400`) is done once, here.
            (Node::Const(x), Node::Const(y)) => Node::Const(crate::eval::arith(arith, &x, &y)),
            (x, y) => Node::Arith(arith, Box::new(x), Box::new(y)),
        };
        Typed::new(ty, node)
    }

    fn membership(&mut self, l: &SExpr, lt: Typed, r: &SExpr, rt: Typed) -> Typed {
        if !(rt.ty.fits(Type::List) || rt.ty == Type::Map) {
            let d = Diagnostic::new(
                "E007",
                format!("`in` needs a list, found {}", article(rt.ty)),
                r.span.clone(),
            )
            .label(format!("this is {}", article(rt.ty)))
            .help("write `x in [\"a\", \"b\"]`; to look inside a string use `contains(s, x)`");
            return self.report(d);
        }
        if rt.ty == Type::Map && !(lt.ty.fits(Type::String) || lt.ty == Type::Number) {
            let d = Diagnostic::new(
                "E007",
                format!("map keys are strings, found {}", article(lt.ty)),
                l.span.clone(),
            )
            .label(format!("this is {}", article(lt.ty)));
            return self.report(d);
        }
        // Literal elements are checked against the value sought: `5 in ["a"]` is a slip.
        if let Expr::List(items) = &r.node {
            let odd = items.iter().find_map(|item| match &item.node {
                Expr::Lit(v) if !v.is_null() && !equatable(lt.ty, type_of(v)) => Some((item, type_of(v))),
                _ => None,
            });
            if let Some((item, ty)) = odd {
                let d = Diagnostic::new(
                    "E007",
                    format!("`in` compares {} with {}", article(lt.ty), article(ty)),
                    item.span.clone(),
                )
                .label(format!("this is {}", article(ty)))
                .help("values of different types are never equal");
                return self.report(d);
            }
        }
        Typed::new(Type::Bool, Node::In(Box::new(lt.node), Box::new(rt.node)))
    }

    /// Help for a family used where a member was meant.
    fn family_hint(&self, e: &SExpr) -> Option<String> {
        let Expr::Member(root, name) = &e.node else {
            return None;
        };
        if !matches!(&root.node, Expr::Ident(r) if r == "features") {
            return None;
        }
        let decl = self.schema.lookup(&name.node)?;
        decl.family.then(|| {
            format!(
                "`{0}` is a family (it has `by`): pick a member, e.g. `features.{0}[\"key\"]`",
                name.node
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_types() {
        use Type::*;
        assert_eq!(arith_type(ArithOp::Add, Number, Number), Some(Number));
        assert_eq!(arith_type(ArithOp::Add, String, Number), None);
        assert_eq!(arith_type(ArithOp::Sub, Time, Time), Some(Duration));
        assert_eq!(arith_type(ArithOp::Sub, Time, Duration), Some(Time));
        assert_eq!(arith_type(ArithOp::Add, Any, Number), Some(Number));
        assert_eq!(arith_type(ArithOp::Mul, Any, Number), Some(Any));
        assert_eq!(arith_type(ArithOp::Sub, Any, Time), Some(Duration));
        assert_eq!(arith_type(ArithOp::Add, Any, Bool), None);
        assert_eq!(arith_type(ArithOp::Div, Duration, Duration), Some(Number));
    }

    #[test]
    fn equality_types() {
        assert!(equatable(Type::Time, Type::String));
        assert!(equatable(Type::Any, Type::Bool));
        assert!(!equatable(Type::String, Type::Number));
    }
}
