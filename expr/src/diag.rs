//! Diagnostics: coded errors with a labelled span, rendered with ariadne in the
//! coordinates of the file the expression came from.

use std::ops::Range;

use ariadne::{Config, IndexType, Label, Report, ReportKind, Source};

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

    /// Renders with ariadne (no colour). `line_base` is the 1-based line of
    /// the file on which `src` starts, so positions are reported in the file (a YAML
    /// block scalar, say).
    pub fn render(&self, src: &str, origin: &str, line_base: usize) -> String {
        self.render_at(src, origin, line_base, 1)
    }

    /// As [`Diagnostic::render`], for a source that does not start the line: `col_base`
    /// is the 1-based column of the file at which `src` starts. For an inline YAML
    /// string it shifts the first line; a source of several lines is a block scalar,
    /// all of whose lines are indented to `col_base`.
    pub fn render_at(&self, src: &str, origin: &str, line_base: usize, col_base: usize) -> String {
        self.render_in(src, origin, line_base, &" ".repeat(col_base.saturating_sub(1)))
    }

    /// As [`Diagnostic::render_at`], with the file's own text before the expression on
    /// its first line (`  when: ` for an inline string), shown as it is.
    pub fn render_in(&self, src: &str, origin: &str, line_base: usize, prefix: &str) -> String {
        let placed = Placed::new(src, line_base, prefix);
        let start = placed.offset(clamp(src, self.span.start));
        let end = placed.offset(clamp(src, self.span.end.max(self.span.start)));
        let id = origin.to_owned();
        let mut label = Label::new((id.clone(), start..end.max(start)));
        if !self.label.is_empty() {
            label = label.with_message(&self.label);
        }
        let mut report = Report::build(ReportKind::Error, (id.clone(), start..end.max(start)))
            .with_config(
                Config::default()
                    .with_color(false)
                    .with_index_type(IndexType::Byte)
                    .with_compact(false),
            )
            .with_code(self.code)
            .with_message(&self.message)
            .with_label(label);
        if let Some(help) = &self.help {
            report = report.with_help(help);
        }
        let mut out = Vec::new();
        report
            .finish()
            .write((id, Source::from(placed.text)), &mut out)
            .expect("rendering to memory does not fail");
        // Without trailing blanks, so that golden files survive editors.
        let text = String::from_utf8(out).expect("the report is UTF-8");
        text.lines().map(str::trim_end).fold(String::new(), |mut all, line| {
            all.push_str(line);
            all.push('\n');
            all
        })
    }
}

/// An expression placed where it sits in its file: blank lines above it, and the
/// columns of its lines, so the renderer reports file lines and columns. (Only the
/// expression's own text is at hand, so what precedes it on its first line shows as
/// blanks.)
struct Placed {
    text: String,
    /// Where the expression starts in `text`.
    start: usize,
    /// Columns added before each line after the first.
    indent: usize,
    /// Byte offsets of the expression's newlines.
    newlines: Vec<usize>,
}

impl Placed {
    fn new(src: &str, line_base: usize, prefix: &str) -> Placed {
        let indent = if src.trim_end().contains('\n') {
            prefix.chars().count()
        } else {
            0
        };
        let mut text = "\n".repeat(line_base.saturating_sub(1));
        text.push_str(prefix);
        let start = text.len();
        for (i, line) in src.split('\n').enumerate() {
            if i > 0 {
                text.push('\n');
                text.push_str(&" ".repeat(indent));
            }
            text.push_str(line);
        }
        let newlines = src.match_indices('\n').map(|(i, _)| i).collect();
        Placed {
            text,
            start,
            indent,
            newlines,
        }
    }

    /// The offset in `text` of byte `at` of the expression.
    fn offset(&self, at: usize) -> usize {
        self.start + at + self.indent * self.newlines.partition_point(|&n| n < at)
    }
}

impl Diagnostics {
    /// Renders every diagnostic, separated by a blank line.
    pub fn render(&self, src: &str, origin: &str, line_base: usize) -> String {
        self.render_at(src, origin, line_base, 1)
    }

    /// As [`Diagnostics::render`], with the column at which `src` starts.
    pub fn render_at(&self, src: &str, origin: &str, line_base: usize, col_base: usize) -> String {
        self.render_in(src, origin, line_base, &" ".repeat(col_base.saturating_sub(1)))
    }

    /// As [`Diagnostics::render_at`], with the file's text before the expression.
    pub fn render_in(&self, src: &str, origin: &str, line_base: usize, prefix: &str) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|d| d.render_in(src, origin, line_base, prefix))
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
    fn renders_in_file_coordinates() {
        // A block scalar whose lines sit at column 5 of lines 13 and 14.
        let src = "features.car_intent\nand features.min_balanse_90d >= 300000\n";
        let start = src.find("features.min").unwrap();
        let d = Diagnostic::new("E003", "unknown feature `min_balanse_90d`", start..start + 24)
            .label("not a feature of this FeatureSet")
            .help("did you mean `min_balance_90d`?");
        let want = "\
[E003] Error: unknown feature `min_balanse_90d`
    ╭─[ offers.yaml:14:9 ]
    │
 14 │     and features.min_balanse_90d >= 300000
    │         ────────────┬───────────
    │                     ╰───────────── not a feature of this FeatureSet
    │
    │ Help: did you mean `min_balance_90d`?
────╯
";
        assert_eq!(d.render_at(src, "offers.yaml", 13, 5), want);
        assert_eq!(d.line_col(src), (2, 5));
    }

    #[test]
    fn column_base_shifts_an_inline_string() {
        let d = Diagnostic::new("E002", "boom", 2..3).label("here");
        let out = d.render_at("a b", "o.yaml", 7, 11);
        assert!(out.contains("[ o.yaml:7:13 ]"), "{out}");
        assert!(out.contains(" 7 │           a b\n   │             ┬\n"), "{out}");
    }

    #[test]
    fn multi_line_spans_mark_every_line() {
        let src = "a and\n  bcd";
        let d = Diagnostic::new("E007", "m", 0..src.len()).label("l");
        let out = d.render(src, "x", 1);
        assert!(out.contains(" 1 │ ╭─▶ a and\n 2 │ ├─▶   bcd\n"), "{out}");
        assert!(out.lines().any(|l| l.contains('╰') && l.ends_with("─ l")), "{out}");
    }

    #[test]
    fn foreign_spans_do_not_panic() {
        let d = Diagnostic::new("E001", "m", 40..90);
        let out = d.render("é", "x", 1);
        assert!(out.contains("[ x:1:2 ]"), "{out}");
        let at_end = Diagnostic::new("E002", "end", 3..3).label("expected");
        assert!(at_end.render("a b", "x", 1).contains("╰─ expected"));
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
