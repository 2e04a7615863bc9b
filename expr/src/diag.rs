//! Diagnostics: coded errors with a labelled span, and a rustc-like renderer that
//! places line, column and carets in the file the expression came from.

use std::fmt::Write as _;
use std::ops::Range;

/// One problem found in an expression.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("error[{code}]: {message}")]
pub struct Diagnostic {
    /// A stable code such as `E003`; docs/dsl.md lists them.
    pub code: &'static str,
    pub message: String,
    /// Byte range into the expression source.
    pub span: Range<usize>,
    /// Short text printed beside the carets.
    pub label: String,
    pub help: Option<String>,
}

/// Every problem found in one expression, in source order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", summary(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

fn summary(all: &[Diagnostic]) -> String {
    match all {
        [] => "no errors".to_owned(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

impl Diagnostic {
    pub(crate) fn new(code: &'static str, message: impl Into<String>, span: Range<usize>) -> Self {
        Self {
            code,
            message: message.into(),
            span,
            label: String::new(),
            help: None,
        }
    }

    pub(crate) fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// 1-based line and column (in characters) of the span's start within `src`.
    pub fn line_col(&self, src: &str) -> (usize, usize) {
        line_col(src, self.span.start)
    }

    /// Renders like rustc. `line_base` is the 1-based line of the file on which `src`
    /// starts, so positions are reported in the file (a YAML block scalar, say).
    pub fn render(&self, src: &str, origin: &str, line_base: usize) -> String {
        self.render_at(src, origin, line_base, 1)
    }

    /// As [`Diagnostic::render`], for a source that does not start the line: `col_base`
    /// is the 1-based column of the file at which `src` starts. For an inline YAML
    /// string it shifts the first line; a source of several lines is a block scalar,
    /// all of whose lines are indented to `col_base`.
    pub fn render_at(&self, src: &str, origin: &str, line_base: usize, col_base: usize) -> String {
        let start = clamp(src, self.span.start);
        let end = clamp(src, self.span.end.max(start));
        let (line, col) = line_col(src, start);
        // A source of several lines is a YAML block scalar: every line of it sits at
        // the same column of the file, and is shown there.
        let indent = if src.trim_end().contains('\n') {
            col_base.saturating_sub(1)
        } else {
            0
        };
        let col = if line == 1 {
            col + col_base.saturating_sub(1)
        } else {
            col + indent
        };
        let (mut last_line, end_col) = line_col(src, end);
        // A span that ends right after a newline marks nothing on its last line.
        if last_line > line && end_col == 1 {
            last_line -= 1;
        }
        let width = (line_base + last_line - 1).to_string().len();
        let pad = " ".repeat(width);

        let mut out = String::new();
        let _ = writeln!(out, "error[{}]: {}", self.code, self.message);
        let _ = writeln!(out, " --> {origin}:{}:{col}", line_base + line - 1);
        let _ = writeln!(out, "{pad} |");
        for n in line..=last_line {
            let line_start = line_offset(src, n);
            let raw = src[line_start..].split('\n').next().unwrap_or("");
            let text = raw.trim_end_matches('\r');
            // Continuation lines are marked from their first non-blank character.
            let from = if n == line {
                start - line_start
            } else {
                text.len() - text.trim_start().len()
            };
            let to = if n == last_line {
                (end - line_start).min(text.len())
            } else {
                text.len()
            };
            let (lead, marked) = caret_columns(text, from, to);
            let margin = " ".repeat(indent);
            let _ = writeln!(out, "{:>width$} | {margin}{}", line_base + n - 1, expand_tabs(text));
            let carets = "^".repeat(marked.max(1));
            let gap = " ".repeat(lead + indent);
            if n == last_line && !self.label.is_empty() {
                let _ = writeln!(out, "{pad} | {gap}{carets} {}", self.label);
            } else {
                let _ = writeln!(out, "{pad} | {gap}{carets}");
            }
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{pad} = help: {help}");
        }
        out
    }
}

impl Diagnostics {
    /// Renders every diagnostic, separated by a blank line.
    pub fn render(&self, src: &str, origin: &str, line_base: usize) -> String {
        self.render_at(src, origin, line_base, 1)
    }

    /// As [`Diagnostics::render`], with the column at which `src` starts.
    pub fn render_at(&self, src: &str, origin: &str, line_base: usize, col_base: usize) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|d| d.render_at(src, origin, line_base, col_base))
            .collect();
        parts.join("\n")
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Offsets past the end or inside a character are pulled back to a boundary, so a
/// renderer handed a foreign span never panics.
fn clamp(src: &str, mut at: usize) -> usize {
    at = at.min(src.len());
    while !src.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn line_col(src: &str, at: usize) -> (usize, usize) {
    let at = clamp(src, at);
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, src[line_start..at].chars().count() + 1)
}

/// Byte offset at which 1-based line `n` starts.
fn line_offset(src: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    src.match_indices('\n').nth(n - 2).map_or(src.len(), |(i, _)| i + 1)
}

/// Display columns before the marked text and of the marked text; tabs count four,
/// as they are printed.
fn caret_columns(text: &str, from: usize, to: usize) -> (usize, usize) {
    let cols = |s: &str| s.chars().map(|c| if c == '\t' { 4 } else { 1 }).sum::<usize>();
    let from = clamp(text, from);
    let to = clamp(text, to.max(from));
    (cols(&text[..from]), cols(&text[from..to]))
}

fn expand_tabs(text: &str) -> String {
    text.replace('\t', "    ")
}

/// The closest candidate by edit distance, when it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, _)| d <= limit)
        .min()
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc_in_file_coordinates() {
        let src = "features.car_intent\n    and features.min_balanse_90d >= 300000\n";
        let start = src.find("features.min").unwrap();
        let d = Diagnostic::new("E003", "unknown feature `min_balanse_90d`", start..start + 24)
            .label("not a feature of this FeatureSet")
            .help("did you mean `min_balance_90d`?");
        let want = "\
error[E003]: unknown feature `min_balanse_90d`
 --> offers.yaml:14:9
   |
14 |     and features.min_balanse_90d >= 300000
   |         ^^^^^^^^^^^^^^^^^^^^^^^^ not a feature of this FeatureSet
   |
   = help: did you mean `min_balance_90d`?
";
        assert_eq!(d.render(src, "offers.yaml", 13), want);
        assert_eq!(d.line_col(src), (2, 9));
    }

    #[test]
    fn column_base_shifts_the_first_line_only() {
        let d = Diagnostic::new("E002", "boom", 2..3).label("here");
        let out = d.render_at("a b", "o.yaml", 7, 11);
        assert!(out.contains(" --> o.yaml:7:13\n"), "{out}");
        assert!(out.contains("7 | a b\n  |   ^ here\n"), "{out}");
    }

    #[test]
    fn multi_line_spans_mark_every_line() {
        let src = "a and\n  bcd";
        let d = Diagnostic::new("E007", "m", 0..src.len()).label("l");
        let out = d.render(src, "x", 1);
        assert!(out.contains("1 | a and\n  | ^^^^^\n2 |   bcd\n  |   ^^^ l\n"), "{out}");
        let ends_at_newline = Diagnostic::new("E007", "m", 0..6).label("l");
        let out = ends_at_newline.render(src, "x", 1);
        assert!(out.ends_with("1 | a and\n  | ^^^^^ l\n"), "{out}");
    }

    #[test]
    fn foreign_spans_do_not_panic() {
        let d = Diagnostic::new("E001", "m", 40..90);
        let out = d.render("é", "x", 1);
        assert!(out.contains("1:2"), "{out}");
    }

    #[test]
    fn suggestions() {
        let feats = ["min_balance_90d", "avg_balance_90d", "car_intent"];
        assert_eq!(
            did_you_mean("min_balanse_90d", feats).as_deref(),
            Some("did you mean `min_balance_90d`?")
        );
        assert_eq!(did_you_mean("zzz", feats), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
