//! Parsing: tokens to a spanned syntax tree, by precedence climbing (Pratt).
//!
//! Precedence, loosest first: `or`, `and`, prefix `not`, comparisons and `in`
//! (non-associative: `a < b < c` is refused), `+ -`, `* /`, unary `-`, postfix
//! (`.name`, `[index]`, `name(args)`).

use crate::ast::{BinOp, Expr, SExpr, Spanned, UnOp};
use crate::diag::Diagnostic;
use crate::lex::{Tok, Token, lex};

/// Bounds that keep hostile or generated input from exhausting the stack of the
/// phases that walk the tree recursively.
const MAX_TOKENS: usize = 2000;
const MAX_NESTING: usize = 64;

/// Binding power of prefix `not`: it takes a whole comparison but stops at `and`.
const NOT_BP: u8 = 5;
/// Binding power of unary minus: tighter than `*`, looser than postfix.
const NEG_BP: u8 = 13;

/// Lexes and parses a whole expression.
pub(crate) fn parse(src: &str) -> Result<SExpr, Diagnostic> {
    let toks = lex(src)?;
    if toks.len() > MAX_TOKENS {
        let span = toks[MAX_TOKENS].span.clone();
        return Err(Diagnostic::new("E002", "expression is too long", span)
            .label(format!("more than {MAX_TOKENS} tokens"))
            .help("split it into derived features"));
    }
    let mut p = Parser { toks, pos: 0, depth: 0 };
    let e = p.expr(0)?;
    match p.peek() {
        None => Ok(e),
        Some(Tok::Not) if p.peek_at(1) == Some(&Tok::In) => Err(p
            .error_here("`not in` is not an operator", "here")
            .help("write `not (x in [...])`")),
        Some(_) => {
            let found = p.found();
            Err(p
                .error_here(
                    format!("expected an operator or the end of the expression, found {found}"),
                    "unexpected",
                )
                .help("join conditions with `and` / `or`"))
        }
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// Left and right binding powers of an infix operator.
fn infix(tok: &Tok) -> Option<(BinOp, u8, u8)> {
    Some(match tok {
        Tok::Or => (BinOp::Or, 1, 2),
        Tok::And => (BinOp::And, 3, 4),
        Tok::EqEq => (BinOp::Eq, 7, 8),
        Tok::NotEq => (BinOp::Ne, 7, 8),
        Tok::Lt => (BinOp::Lt, 7, 8),
        Tok::Le => (BinOp::Le, 7, 8),
        Tok::Gt => (BinOp::Gt, 7, 8),
        Tok::Ge => (BinOp::Ge, 7, 8),
        Tok::In => (BinOp::In, 7, 8),
        Tok::Plus => (BinOp::Add, 9, 10),
        Tok::Minus => (BinOp::Sub, 9, 10),
        Tok::Star => (BinOp::Mul, 11, 12),
        Tok::Slash => (BinOp::Div, 11, 12),
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n).map(|t| &t.tok)
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        self.pos += 1;
        t
    }

    /// The span of the next token, or an empty span just after the last one.
    fn here(&self) -> std::ops::Range<usize> {
        match self.toks.get(self.pos) {
            Some(t) => t.span.clone(),
            None => {
                let end = self.toks.last().map_or(0, |t| t.span.end);
                end..end
            }
        }
    }

    fn found(&self) -> String {
        self.peek().map_or_else(|| "end of input".to_owned(), Tok::describe)
    }

    fn error_here(&self, message: impl Into<String>, label: &str) -> Diagnostic {
        Diagnostic::new("E002", message, self.here()).label(label)
    }

    fn expect(&mut self, want: Tok, context: &str) -> Result<Token, Diagnostic> {
        if self.peek() == Some(&want) {
            return Ok(self.bump());
        }
        let what = want.describe();
        Err(self.error_here(
            format!("expected {what} {context}, found {}", self.found()),
            &format!("expected {what}"),
        ))
    }

    fn nest(&mut self) -> Result<(), Diagnostic> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error_here("expression nests too deeply", "too deep").help(format!(
                "at most {MAX_NESTING} levels of parentheses, brackets and prefixes"
            )));
        }
        Ok(())
    }

    fn expr(&mut self, min_bp: u8) -> Result<SExpr, Diagnostic> {
        self.nest()?;
        let mut lhs = self.prefix()?;
        // Whether `lhs` is a comparison built in this loop, to refuse `a < b < c`.
        let mut compared = false;
        while let Some(tok) = self.peek() {
            let Some((op, lbp, rbp)) = infix(tok) else {
                break;
            };
            if lbp < min_bp {
                break;
            }
            if op.is_comparison() && compared {
                return Err(self
                    .error_here("comparisons cannot be chained", "second comparison")
                    .help("write `a < b and b < c`, or use parentheses"));
            }
            let op_tok = self.bump();
            let rhs = self.expr(rbp)?;
            let span = lhs.span.start..rhs.span.end;
            compared = op.is_comparison();
            lhs = Spanned::new(
                Expr::Binary(Spanned::new(op, op_tok.span), Box::new(lhs), Box::new(rhs)),
                span,
            );
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn prefix(&mut self) -> Result<SExpr, Diagnostic> {
        let (op, bp) = match self.peek() {
            Some(Tok::Not) => (UnOp::Not, NOT_BP),
            Some(Tok::Minus) => (UnOp::Neg, NEG_BP),
            _ => return self.postfix(),
        };
        let op_tok = self.bump();
        let operand = self.expr(bp)?;
        let span = op_tok.span.start..operand.span.end;
        Ok(Spanned::new(
            Expr::Unary(Spanned::new(op, op_tok.span), Box::new(operand)),
            span,
        ))
    }

    fn postfix(&mut self) -> Result<SExpr, Diagnostic> {
        let mut e = self.primary()?;
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.bump();
                    let Some(t) = self.toks.get(self.pos) else {
                        return Err(self.error_here("expected a name after `.`, found end of input", "expected a name"));
                    };
                    let name = match &t.tok {
                        Tok::Ident(n) => n.clone(),
                        other => match other.keyword_text() {
                            Some(k) => k.to_owned(),
                            None => {
                                let found = self.found();
                                return Err(self.error_here(
                                    format!("expected a name after `.`, found {found}"),
                                    "expected a name",
                                ));
                            }
                        },
                    };
                    let name_tok = self.bump();
                    let span = e.span.start..name_tok.span.end;
                    e = Spanned::new(Expr::Member(Box::new(e), Spanned::new(name, name_tok.span)), span);
                }
                Some(Tok::LBracket) => {
                    self.bump();
                    let index = self.expr(0)?;
                    let close = self.expect(Tok::RBracket, "to close the index")?;
                    let span = e.span.start..close.span.end;
                    e = Spanned::new(Expr::Index(Box::new(e), Box::new(index)), span);
                }
                Some(Tok::LParen) => {
                    let Expr::Ident(name) = &e.node else {
                        return Err(self
                            .error_here("only built-in functions can be called", "not a function name")
                            .help("call a function by its name, e.g. `abs(event.amount)`"));
                    };
                    let callee = Spanned::new(name.clone(), e.span.clone());
                    self.bump();
                    let (args, close) = self.items(Tok::RParen, "to close the argument list")?;
                    let span = e.span.start..close;
                    e = Spanned::new(Expr::Call(callee, args), span);
                }
                _ => return Ok(e),
            }
        }
    }

    fn primary(&mut self) -> Result<SExpr, Diagnostic> {
        let Some(tok) = self.peek() else {
            return Err(self.error_here("expected an expression, found end of input", "expected an expression"));
        };
        let lit = match tok {
            Tok::Int(i) => Some((*i).into()),
            Tok::Float(x) => Some((*x).into()),
            Tok::Str(s) => Some(s.as_str().into()),
            Tok::Duration(d) => Some(persona_event::Value::Duration(*d)),
            Tok::True => Some(true.into()),
            Tok::False => Some(false.into()),
            Tok::Null => Some(persona_event::Value::Null),
            _ => None,
        };
        if let Some(v) = lit {
            let t = self.bump();
            return Ok(Spanned::new(Expr::Lit(v), t.span));
        }
        match tok {
            Tok::Ident(name) => {
                let name = name.clone();
                let t = self.bump();
                Ok(Spanned::new(Expr::Ident(name), t.span))
            }
            Tok::LParen => {
                let open = self.bump();
                self.nest()?;
                let inner = self.expr(0)?;
                self.depth -= 1;
                let close = self.expect(Tok::RParen, "to close `(`")?;
                Ok(Spanned::new(
                    Expr::Group(Box::new(inner)),
                    open.span.start..close.span.end,
                ))
            }
            Tok::LBracket => {
                let open = self.bump();
                let (items, close) = self.items(Tok::RBracket, "to close the list")?;
                Ok(Spanned::new(Expr::List(items), open.span.start..close))
            }
            _ => {
                let found = self.found();
                Err(self.error_here(
                    format!("expected an expression, found {found}"),
                    "expected an expression",
                ))
            }
        }
    }

    /// Comma-separated expressions up to `close` (a trailing comma is fine); returns
    /// them and the end of the closing token.
    fn items(&mut self, close: Tok, context: &str) -> Result<(Vec<SExpr>, usize), Diagnostic> {
        self.nest()?;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(&close) {
                break;
            }
            items.push(self.expr(0)?);
            if self.peek() == Some(&Tok::Comma) {
                self.bump();
            } else {
                break;
            }
        }
        self.depth -= 1;
        let end = self.expect(close, context)?;
        Ok((items, end.span.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact, fully parenthesised rendering of the tree, to test precedence.
    fn sexp(e: &SExpr) -> String {
        match &e.node {
            Expr::Lit(v) => v.to_string(),
            Expr::Ident(n) => n.clone(),
            Expr::Member(b, n) => format!("{}.{}", sexp(b), n.node),
            Expr::Index(b, i) => format!("{}[{}]", sexp(b), sexp(i)),
            Expr::Call(f, args) => {
                format!("{}({})", f.node, args.iter().map(sexp).collect::<Vec<_>>().join(", "))
            }
            Expr::List(items) => format!("[{}]", items.iter().map(sexp).collect::<Vec<_>>().join(", ")),
            Expr::Group(inner) => sexp(inner),
            Expr::Unary(op, x) => match op.node {
                UnOp::Not => format!("(not {})", sexp(x)),
                UnOp::Neg => format!("(- {})", sexp(x)),
            },
            Expr::Binary(op, l, r) => format!("({} {} {})", sexp(l), op.node, sexp(r)),
        }
    }

    fn p(src: &str) -> String {
        sexp(&parse(src).unwrap_or_else(|d| panic!("{src}: {d:?}")))
    }

    #[test]
    fn precedence() {
        assert_eq!(p("a or b and c"), "(a or (b and c))");
        assert_eq!(p("not a and b"), "((not a) and b)");
        assert_eq!(p("not a == b"), "(not (a == b))");
        assert_eq!(p("a + b * c > d - e / f"), "((a + (b * c)) > (d - (e / f)))");
        assert_eq!(p("a - b - c"), "((a - b) - c)");
        assert_eq!(p("-a.b * 2"), "((- a.b) * 2)");
        assert_eq!(p("x in [1, 2,]"), "(x in [1, 2])");
        assert_eq!(p("(a or b) and c"), "((a or b) and c)");
        assert_eq!(p("a and b and c"), "((a and b) and c)");
    }

    #[test]
    fn paths_calls_and_multiline() {
        assert_eq!(
            p("features.car_intent\n  and features.spend_30d[\"fuel\"] > 3000\n  and day_of_month(event.ts) <= 14\n"),
            "((features.car_intent and (features.spend_30d[\"fuel\"] > 3000)) and (day_of_month(event.ts) <= 14))"
        );
        assert_eq!(
            p("responded(\"car-loan\", \"positive\", 15d)"),
            "responded(\"car-loan\", \"positive\", 15d)"
        );
        assert_eq!(p("event.type"), "event.type");
        assert_eq!(p("event.in"), "event.in");
        assert_eq!(p("coalesce()"), "coalesce()");
    }

    #[test]
    fn every_node_has_a_span() {
        let src = "features.spend_30d[\"fuel\"] >= 3000";
        let e = parse(src).unwrap();
        assert_eq!(e.span, 0..src.len());
        let Expr::Binary(op, l, r) = &e.node else { panic!() };
        assert_eq!(&src[op.span.clone()], ">=");
        assert_eq!(&src[l.span.clone()], "features.spend_30d[\"fuel\"]");
        assert_eq!(&src[r.span.clone()], "3000");
        let Expr::Index(base, key) = &l.node else { panic!() };
        assert_eq!(&src[base.span.clone()], "features.spend_30d");
        assert_eq!(&src[key.span.clone()], "\"fuel\"");
        assert_eq!(parse("(a)").unwrap().span, 0..3);
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            ("a < b < c", 6..7, "chained"),
            ("a ==", 4..4, "end of input"),
            ("(a and b", 8..8, "expected `)`"),
            ("event.amount 5", 13..14, "expected an operator"),
            ("x not in [1]", 2..5, "`not in`"),
            ("event.x(1)", 7..8, "only built-in functions"),
            ("event.", 6..6, "after `.`"),
            ("[1, 2", 5..5, "close the list"),
            ("", 0..0, "end of input"),
            ("and", 0..3, "found `and`"),
        ];
        for (src, span, msg) in cases {
            let d = parse(src).unwrap_err();
            assert_eq!(d.span, span, "{src}: {d:?}");
            assert!(d.message.contains(msg), "{src}: {d:?}");
            assert_eq!(d.code, "E002");
        }
    }

    #[test]
    fn hostile_input_is_refused_not_overflowed() {
        let deep = "(".repeat(500) + "1" + &")".repeat(500);
        assert!(parse(&deep).unwrap_err().message.contains("too deeply"));
        let long = vec!["1"; 3000].join(" + ");
        assert!(parse(&long).unwrap_err().message.contains("too long"));
        let nots = "not ".repeat(200) + "true";
        assert!(parse(&nots).is_err());
    }
}
