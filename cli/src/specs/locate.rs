//! Finds where a field path (`spec.features[2].window`) sits in a YAML document's
//! text, so errors found after parsing (serde gives positions only while parsing)
//! still point at a line and column. Handles block and flow styles; when the path
//! cannot be followed it returns `None` and the caller falls back to the document.

/// 1-based (line, column) of the last segment of `path` in `text`.
pub(crate) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut line, mut col) = (0, 0);
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (key, index) = match segment.split_once('[') {
            Some((key, rest)) => (key, Some(rest.trim_end_matches(']').parse::<usize>().ok()?)),
            None => (segment, None),
        };
        (line, col) = find_key(&lines, line, col, key)?;
        if let Some(n) = index {
            (line, col) = find_item(&lines, line, col, n)?;
        }
    }
    Some((line + 1, col + 1))
}

/// The first `key:` at or after (line, col), as a mapping key.
fn find_key(lines: &[&str], line: usize, col: usize, key: &str) -> Option<(usize, usize)> {
    for (i, text) in lines.iter().enumerate().skip(line) {
        let mut from = if i == line { col } else { 0 };
        while let Some(p) = text.get(from..)?.find(key) {
            let at = from + p;
            let before = text[..at].chars().next_back();
            let starts = before.is_none_or(|c| matches!(c, ' ' | '{' | ',' | '-' | '"' | '\''));
            let after = text[at + key.len()..].trim_start_matches(['"', '\'']);
            if starts && after.starts_with(':') {
                return Some((i, at));
            }
            from = at + key.len();
        }
    }
    None
}

/// The `n`th item of the sequence whose key is at (line, col): a block sequence on
/// the following lines, or a flow sequence on the key's line.
fn find_item(lines: &[&str], line: usize, col: usize, n: usize) -> Option<(usize, usize)> {
    let rest = &lines[line][col..];
    if let Some(open) = rest.find('[') {
        // Flow: count top-level commas.
        let (mut depth, mut item) = (0, 0);
        let start = col + open + 1;
        if n == 0 {
            return Some((line, start + count_spaces(&lines[line][start..])));
        }
        for (k, c) in lines[line][start..].char_indices() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' if depth > 0 => depth -= 1,
                ']' => return None,
                ',' if depth == 0 => {
                    item += 1;
                    if item == n {
                        let at = start + k + 1;
                        return Some((line, at + count_spaces(&lines[line][at..])));
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    let key_indent = indent(lines[line]);
    let mut item_indent = None;
    let mut count = 0;
    for (i, text) in lines.iter().enumerate().skip(line + 1) {
        let trimmed = text.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let ind = indent(text);
        if trimmed.starts_with("- ") || trimmed == "-" {
            let want = *item_indent.get_or_insert(ind);
            if ind == want {
                if count == n {
                    return Some((i, ind + 2));
                }
                count += 1;
            } else if ind < want {
                return None;
            }
        } else if ind <= key_indent && item_indent.is_none_or(|w| ind < w) {
            return None;
        }
    }
    None
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn count_spaces(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

#[cfg(test)]
mod tests {
    use super::locate;

    const DOC: &str = "kind: FeatureSet
metadata: {name: x}
spec:
  timezone: Mars/Base
  features:
    - {name: a, on: balance, agg: avg, window: 90d}
    - name: b
      on: [transaction, card_swipe]
      agg: sum
      window: 9x
  derived:
    - {name: c, expr: \"features.a > 1\"}
";

    #[test]
    fn paths_are_found_in_block_and_flow_styles() {
        assert_eq!(locate(DOC, "spec.timezone"), Some((4, 3)));
        assert_eq!(locate(DOC, "spec.features[0].window"), Some((6, 40)));
        assert_eq!(locate(DOC, "spec.features[1].window"), Some((10, 7)));
        assert_eq!(locate(DOC, "spec.features[1].on[1]"), Some((8, 25)));
        assert_eq!(locate(DOC, "spec.derived[0].expr"), Some((12, 17)));
        assert_eq!(locate(DOC, "kind"), Some((1, 1)));
        assert_eq!(locate(DOC, "spec.features[2].window"), None);
        assert_eq!(locate(DOC, "spec.nothing"), None);
    }
}
