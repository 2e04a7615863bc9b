//! The value-level scrub rules, pure: typed parsing, banding, masking and age.

use chrono::NaiveDate;
use persona_event::Value;

use super::spec::{AttrType, Keep};

/// Parses an attribute value as `kind`. Surrounding whitespace is ignored for numbers
/// and booleans; strings are kept as they are.
pub(crate) fn parse_typed(kind: AttrType, text: &str) -> Result<Value, ()> {
    let t = text.trim();
    match kind {
        AttrType::String => Ok(Value::Str(text.to_owned())),
        AttrType::Int => t.parse::<i64>().map(Value::Int).map_err(|_| ()),
        AttrType::Decimal => match t.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Value::Float(x)),
            _ => Err(()),
        },
        AttrType::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Ok(Value::Bool(true)),
            "false" | "f" | "no" | "n" | "0" => Ok(Value::Bool(false)),
            _ => Err(()),
        },
    }
}

/// The band `v` falls in: `<lo` below the first bound, `lo-hi` for `[lo, hi)`, and
/// `hi+` from the last bound on.
pub(crate) fn band_label(bands: &[f64], v: f64) -> String {
    let first = bands[0];
    let last = bands[bands.len() - 1];
    if v < first {
        return format!("<{}", number(first));
    }
    if v >= last {
        return format!("{}+", number(last));
    }
    let i = bands.partition_point(|b| *b <= v);
    format!("{}-{}", number(bands[i - 1]), number(bands[i]))
}

/// Every label `bands` can give, lowest first: `<18`, `18-25`, ..., `60+`.
pub(crate) fn band_labels(bands: &[f64]) -> Vec<String> {
    let mut labels = vec![format!("<{}", number(bands[0]))];
    labels.extend(bands.windows(2).map(|w| format!("{}-{}", number(w[0]), number(w[1]))));
    labels.push(format!("{}+", number(bands[bands.len() - 1])));
    labels
}

/// A bound as written: `18`, not `18.0`.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Replaces every character but the kept ones by `X`. A value no longer than what the
/// mask keeps is masked whole, so a short value never passes in clear.
pub(crate) fn mask(value: &str, keep: Keep) -> String {
    let len = value.chars().count();
    let (n, from_start) = match keep {
        Keep::First(n) => (n, true),
        Keep::Last(n) => (n, false),
    };
    if len <= n {
        return "X".repeat(len);
    }
    value
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let kept = if from_start { i < n } else { i >= len - n };
            if kept { c } else { 'X' }
        })
        .collect()
}

/// Whole years from `born` to `on`; `None` when `born` is after `on`.
pub(crate) fn age(born: NaiveDate, on: NaiveDate) -> Option<u32> {
    on.years_since(born)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_are_half_open() {
        let bands = [18.0, 25.0, 35.0];
        assert_eq!(band_label(&bands, 23.0), "18-25");
        assert_eq!(band_label(&bands, 40.0), "35+");
        assert_eq!(band_label(&bands, 16.0), "<18");
        assert_eq!(band_label(&bands, 18.0), "18-25");
        assert_eq!(band_label(&bands, 24.999), "18-25");
        assert_eq!(band_label(&bands, 25.0), "25-35");
        assert_eq!(band_label(&bands, 35.0), "35+");
        assert_eq!(band_label(&bands, 17.999), "<18");
        assert_eq!(band_label(&[100.0], 99.0), "<100");
        assert_eq!(band_label(&[100.0], 100.0), "100+");
        assert_eq!(band_label(&[0.5, 1.5], 1.0), "0.5-1.5");
        assert_eq!(band_label(&[-10.0, 0.0], -3.0), "-10-0");
    }

    #[test]
    fn the_labels_listed_are_the_labels_given() {
        for bands in [vec![18.0, 25.0, 35.0], vec![100.0], vec![0.5, 1.5, 2.25]] {
            let labels = band_labels(&bands);
            assert_eq!(labels.len(), bands.len() + 1);
            // A value in each band (below, between each pair, above) gets its label.
            let mut probes = vec![bands[0] - 1.0];
            probes.extend(bands.windows(2).map(|w| (w[0] + w[1]) / 2.0));
            probes.push(bands[bands.len() - 1] + 1.0);
            let given: Vec<String> = probes.iter().map(|v| band_label(&bands, *v)).collect();
            assert_eq!(labels, given);
        }
        assert_eq!(band_labels(&[18.0, 25.0]), ["<18", "18-25", "25+"]);
    }

    #[test]
    fn masks_keep_only_their_end() {
        assert_eq!(mask("4111222233331234", Keep::Last(4)), "XXXXXXXXXXXX1234");
        assert_eq!(mask("ABCDE12345", Keep::First(3)), "ABCXXXXXXX");
        assert_eq!(mask("1234", Keep::Last(4)), "XXXX");
        assert_eq!(mask("12", Keep::First(4)), "XX");
        assert_eq!(mask("abc", Keep::Last(0)), "XXX");
        assert_eq!(mask("ñandú99", Keep::Last(2)), "XXXXX99");
    }

    #[test]
    fn typed_values_parse_strictly() {
        assert_eq!(parse_typed(AttrType::Int, " 42 "), Ok(Value::Int(42)));
        assert_eq!(parse_typed(AttrType::Int, "4.2"), Err(()));
        assert_eq!(parse_typed(AttrType::Int, "1,000"), Err(()));
        assert_eq!(parse_typed(AttrType::Decimal, "50000.50"), Ok(Value::Float(50000.5)));
        assert_eq!(parse_typed(AttrType::Decimal, "NaN"), Err(()));
        assert_eq!(parse_typed(AttrType::Decimal, "inf"), Err(()));
        assert_eq!(parse_typed(AttrType::Decimal, "12abc"), Err(()));
        assert_eq!(parse_typed(AttrType::Bool, "Yes"), Ok(Value::Bool(true)));
        assert_eq!(parse_typed(AttrType::Bool, "0"), Ok(Value::Bool(false)));
        assert_eq!(parse_typed(AttrType::Bool, "maybe"), Err(()));
        assert_eq!(parse_typed(AttrType::String, " x "), Ok(Value::from(" x ")));
    }

    #[test]
    fn age_counts_whole_years() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(age(d("2000-03-05"), d("2026-03-04")), Some(25));
        assert_eq!(age(d("2000-03-04"), d("2026-03-04")), Some(26));
        assert_eq!(age(d("2000-02-29"), d("2026-02-28")), Some(25));
        assert_eq!(age(d("2000-02-29"), d("2026-03-01")), Some(26));
        assert_eq!(age(d("2027-01-01"), d("2026-03-04")), None);
    }
}
