//! The syntax tree: what the parser produces and the checker reads. Every node
//! carries the byte span of the source it was parsed from, so any later phase can
//! point at the exact text it objects to.

use std::fmt;
use std::ops::Range;

use persona_event::Value;

/// A node and its span.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Spanned<T> {
    pub node: T,
    pub span: Range<usize>,
}

impl<T> Spanned<T> {
    pub(crate) fn new(node: T, span: Range<usize>) -> Self {
        Self { node, span }
    }
}

pub(crate) type SExpr = Spanned<Expr>;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    /// A number, string, bool, duration or `null` literal.
    Lit(Value),
    /// A bare name: a root (`event`) or, as a callee, a function.
    Ident(String),
    /// `base.name`
    Member(Box<SExpr>, Spanned<String>),
    /// `base[index]`
    Index(Box<SExpr>, Box<SExpr>),
    /// `name(args)`; only bare names can be called.
    Call(Spanned<String>, Vec<SExpr>),
    /// `[a, b, c]`
    List(Vec<SExpr>),
    /// `( inner )`, kept so a parenthesised `and` stays one clause for "explain".
    Group(Box<SExpr>),
    Unary(Spanned<UnOp>, Box<SExpr>),
    Binary(Spanned<BinOp>, Box<SExpr>, Box<SExpr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnOp {
    Not,
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::In
        )
    }
}

impl fmt::Display for BinOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        })
    }
}

impl SExpr {
    /// The operands of a top-level `and` chain, left to right; a single operand when
    /// the expression is not an `and`. Parentheses end the chain.
    pub(crate) fn and_chain(&self) -> Vec<&SExpr> {
        let mut out = Vec::new();
        fn walk<'a>(e: &'a SExpr, out: &mut Vec<&'a SExpr>) {
            match &e.node {
                Expr::Binary(op, l, r) if op.node == BinOp::And => {
                    walk(l, out);
                    walk(r, out);
                }
                _ => out.push(e),
            }
        }
        walk(self, &mut out);
        out
    }

    /// The string, when the node is a string literal.
    pub(crate) fn as_str_lit(&self) -> Option<&str> {
        match &self.node {
            Expr::Lit(Value::Str(s)) => Some(s),
            _ => None,
        }
    }
}
