//! Lexing: source text to tokens, each with the byte span it came from.
//!
//! The lexer knows literals (numbers, strings, durations, `true`/`false`/`null`),
//! identifiers, keywords and punctuation. Newlines are whitespace, so sources taken
//! from YAML block scalars lex like one-liners. Common slips from other languages
//! (`=`, `&&`, `!`, single quotes) get an error that names the spelling we use.

use std::ops::Range;

use chrono::TimeDelta;

use crate::diag::Diagnostic;

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Duration(TimeDelta),
    True,
    False,
    Null,
    Ident(String),
    And,
    Or,
    Not,
    In,
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
}

impl Tok {
    /// How the token reads in a message such as "found `)`".
    pub(crate) fn describe(&self) -> String {
        let s = match self {
            Tok::Int(i) => return format!("number `{i}`"),
            Tok::Float(x) => return format!("number `{x}`"),
            Tok::Str(s) => return format!("string {s:?}"),
            Tok::Duration(d) => {
                return format!("duration `{}`", persona_event::time::format_duration(d));
            }
            Tok::Ident(name) => return format!("`{name}`"),
            Tok::True => "true",
            Tok::False => "false",
            Tok::Null => "null",
            Tok::And => "and",
            Tok::Or => "or",
            Tok::Not => "not",
            Tok::In => "in",
            Tok::Dot => ".",
            Tok::Comma => ",",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
        };
        format!("`{s}`")
    }

    /// The keyword spelled by an identifier-like word, if it is one. Member names
    /// after `.` may be keywords (`event.in` is an attribute called `in`).
    pub(crate) fn keyword_text(&self) -> Option<&'static str> {
        Some(match self {
            Tok::True => "true",
            Tok::False => "false",
            Tok::Null => "null",
            Tok::And => "and",
            Tok::Or => "or",
            Tok::Not => "not",
            Tok::In => "in",
            _ => return None,
        })
    }
}

/// A token and the bytes of the source it covers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Range<usize>,
}

/// Splits `src` into tokens. Stops at the first error: after a bad character the
/// rest rarely lexes into anything a reader would want reported.
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, Diagnostic> {
    Lexer { src, pos: 0 }.run()
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn run(mut self) -> Result<Vec<Token>, Diagnostic> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c.is_whitespace() {
                self.pos += c.len_utf8();
                continue;
            }
            let tok = if c.is_ascii_digit() {
                self.number()?
            } else if c == '"' {
                self.string()?
            } else if c == '_' || c.is_ascii_alphabetic() {
                self.word()
            } else {
                self.punct(c)?
            };
            out.push(Token {
                tok,
                span: start..self.pos,
            });
        }
        Ok(out)
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(offset)
    }

    fn eat_while(&mut self, f: impl Fn(char) -> bool) -> &str {
        let start = self.pos;
        while let Some(c) = self.peek().filter(|&c| f(c)) {
            self.pos += c.len_utf8();
        }
        &self.src[start..self.pos]
    }

    fn word(&mut self) -> Tok {
        match self.eat_while(is_ident_char) {
            "true" => Tok::True,
            "false" => Tok::False,
            "null" => Tok::Null,
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            "in" => Tok::In,
            other => Tok::Ident(other.to_owned()),
        }
    }

    fn number(&mut self) -> Result<Tok, Diagnostic> {
        let start = self.pos;
        self.eat_while(|c| c.is_ascii_digit());
        // A dot is a decimal point only when a digit follows: `5.x` stays `5` `.` `x`.
        let decimal = self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit());
        if decimal {
            self.pos += 1;
            self.eat_while(|c| c.is_ascii_digit());
        }
        let digits_end = self.pos;
        let suffix = self.eat_while(is_ident_char).to_owned();
        let text = &self.src[start..self.pos];
        if !suffix.is_empty() {
            return self.duration(text, decimal, start, digits_end);
        }
        if decimal {
            let x: f64 = text.parse().map_err(|_| number_error(text, start..self.pos))?;
            return Ok(Tok::Float(x));
        }
        text.parse::<i64>().map(Tok::Int).map_err(|_| {
            Diagnostic::new("E001", format!("number `{text}` is too large"), start..self.pos)
                .label("does not fit in a 64-bit integer")
                .help("add `.0` to write it as a decimal number")
        })
    }

    /// Digits glued to letters: a duration literal such as `30d`, or a mistake.
    fn duration(&self, text: &str, decimal: bool, start: usize, digits_end: usize) -> Result<Tok, Diagnostic> {
        let span = start..self.pos;
        if decimal {
            return Err(Diagnostic::new("E001", format!("invalid duration `{text}`"), span)
                .label("durations are whole numbers")
                .help("use a smaller unit, e.g. `36h` instead of `1.5d`"));
        }
        persona_event::time::parse_duration(text)
            .map(Tok::Duration)
            .map_err(|_| {
                let unit = &self.src[digits_end..self.pos];
                Diagnostic::new("E001", format!("invalid duration `{text}`"), span)
                    .label(format!("`{unit}` is not a unit"))
                    .help("duration units are s, m, h, d and w, e.g. `30d`, `12h`, `2w`")
            })
    }

    fn string(&mut self) -> Result<Tok, Diagnostic> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(Diagnostic::new("E001", "unterminated string", start..self.pos)
                    .label("this string has no closing `\"`"));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(Tok::Str(out)),
                '\\' => {
                    let esc_start = self.pos - 1;
                    let Some(e) = self.peek() else { continue };
                    self.pos += e.len_utf8();
                    out.push(match e {
                        '"' => '"',
                        '\\' => '\\',
                        'n' => '\n',
                        't' => '\t',
                        other => {
                            return Err(Diagnostic::new(
                                "E001",
                                format!("unknown escape `\\{other}`"),
                                esc_start..self.pos,
                            )
                            .label("not an escape")
                            .help("strings know `\\\"`, `\\\\`, `\\n` and `\\t`"));
                        }
                    });
                }
                other => out.push(other),
            }
        }
    }

    fn punct(&mut self, c: char) -> Result<Tok, Diagnostic> {
        let start = self.pos;
        let next = self.peek_at(1);
        let (tok, len) = match (c, next) {
            ('=', Some('=')) => (Tok::EqEq, 2),
            ('!', Some('=')) => (Tok::NotEq, 2),
            ('<', Some('=')) => (Tok::Le, 2),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('<', _) => (Tok::Lt, 1),
            ('>', _) => (Tok::Gt, 1),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('*', _) => (Tok::Star, 1),
            ('/', _) => (Tok::Slash, 1),
            ('.', _) => (Tok::Dot, 1),
            (',', _) => (Tok::Comma, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            _ => return Err(self.unexpected(c, next)),
        };
        self.pos = start + len;
        Ok(tok)
    }

    fn unexpected(&self, c: char, next: Option<char>) -> Diagnostic {
        let start = self.pos;
        let (len, help) = match (c, next) {
            ('=', _) => (1, Some("compare with `==`; the language has no assignment")),
            ('&', Some('&')) => (2, Some("write `and`")),
            ('|', Some('|')) => (2, Some("write `or`")),
            ('!', _) => (1, Some("write `not`")),
            ('\'', _) => (1, Some("strings use double quotes: \"like this\"")),
            _ => (c.len_utf8(), None),
        };
        let text = &self.src[start..start + len];
        let d = Diagnostic::new("E001", format!("unexpected `{text}`"), start..start + len)
            .label("not part of the language");
        match help {
            Some(h) => d.help(h),
            None => d,
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn number_error(text: &str, span: Range<usize>) -> Diagnostic {
    Diagnostic::new("E001", format!("invalid number `{text}`"), span).label("not a number")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn literals() {
        assert_eq!(
            toks(r#"50000 7.9 "a\"b\\c" true false null"#),
            vec![
                Tok::Int(50000),
                Tok::Float(7.9),
                Tok::Str("a\"b\\c".into()),
                Tok::True,
                Tok::False,
                Tok::Null
            ]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(
            toks("30d 12h 15m 45s 2w"),
            vec![
                Tok::Duration(TimeDelta::days(30)),
                Tok::Duration(TimeDelta::hours(12)),
                Tok::Duration(TimeDelta::minutes(15)),
                Tok::Duration(TimeDelta::seconds(45)),
                Tok::Duration(TimeDelta::weeks(2)),
            ]
        );
        let err = lex("3y").unwrap_err();
        assert_eq!((err.code, err.span.clone()), ("E001", 0..2));
        assert!(lex("1.5d").unwrap_err().message.contains("invalid duration"));
    }

    #[test]
    fn paths_operators_and_spans() {
        let t = lex("features.spend_30d[\"fuel\"] >= 3000\nand x != 1").unwrap();
        let kinds: Vec<_> = t.iter().map(|t| t.tok.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Tok::Ident("features".into()),
                Tok::Dot,
                Tok::Ident("spend_30d".into()),
                Tok::LBracket,
                Tok::Str("fuel".into()),
                Tok::RBracket,
                Tok::Ge,
                Tok::Int(3000),
                Tok::And,
                Tok::Ident("x".into()),
                Tok::NotEq,
                Tok::Int(1),
            ]
        );
        assert_eq!(t[2].span, 9..18);
        assert_eq!(t[4].span, 19..25);
        assert_eq!(t[8].span, 35..38);
    }

    #[test]
    fn a_dot_after_digits_without_a_digit_is_member_access() {
        assert_eq!(toks("5.x"), vec![Tok::Int(5), Tok::Dot, Tok::Ident("x".into())]);
    }

    #[test]
    fn slips_from_other_languages_are_explained() {
        for (src, help) in [
            ("a = 1", "=="),
            ("a && b", "and"),
            ("a || b", "or"),
            ("!a", "not"),
            ("'x'", "double quotes"),
        ] {
            let d = lex(src).unwrap_err();
            assert!(d.help.as_deref().unwrap().contains(help), "{src}: {d:?}");
        }
    }

    #[test]
    fn bad_strings() {
        assert_eq!(lex("\"abc").unwrap_err().message, "unterminated string");
        assert_eq!(lex(r#""a\qb""#).unwrap_err().span, 2..4);
        assert!(lex("99999999999999999999").unwrap_err().message.contains("too large"));
    }

    #[test]
    fn unicode_is_fine_in_strings_and_reported_whole_outside() {
        assert_eq!(toks("\"₹ café\""), vec![Tok::Str("₹ café".into())]);
        assert_eq!(lex("a € b").unwrap_err().span, 2..5);
    }
}
