//! The parser, the type checker, the evaluator and the renderer never panic: over
//! random text and over valid expressions mutated at random (characters deleted,
//! inserted, replaced, spans swapped), every input compiles or gets diagnostics that
//! render. 4,096 cases each in the test tier (`PROPTEST_CASES` raises it).

use persona_event::Value;
use persona_expr::{Root, Schema, Scope, Type, compile};
use proptest::prelude::*;

/// Expressions as offers and features write them.
const CORPUS: [&str; 10] = [
    "features.car_intent and features.min_balance_90d >= 300000 and profile.credit_band in [\"A\", \"B\"]",
    "event.category == \"fuel\" and event.direction == \"debit\"",
    "coalesce(features.spend_30d[\"fuel\"], 0) / (features.fuel_spend_30d + 1) > 0.5",
    "day_of_month(event.ts) <= 14 and event.amount >= 50000",
    "not responded(\"car-loan\", \"negative\", 60d) and sent(\"teaser\", 14d)",
    "days_since(features.last_txn_at) > 30 or hour(event.ts) in [21, 22, 23]",
    "contains(profile.segment, \"aff\") and starts_with(event.mall, \"Phoenix\")",
    "max(features.fuel_spend_30d, 1) - min(2, abs(-3)) * 4 != 7",
    "(features.credits_30d - features.debit_spend_30d) / max(features.credits_30d, 1)",
    "event.ts > \"2026-01-01T00:00:00Z\" and 12h < 1d",
];

fn schema() -> Schema {
    Schema::new()
        .allow_root(Root::Event)
        .allow_root(Root::Features)
        .allow_root(Root::Profile)
        .allow_root(Root::Prefs)
        .feature("car_intent", Type::Bool, false)
        .feature("min_balance_90d", Type::Number, false)
        .feature("fuel_spend_30d", Type::Number, false)
        .feature("spend_30d", Type::Number, true)
        .feature("credits_30d", Type::Number, false)
        .feature("debit_spend_30d", Type::Number, false)
        .feature("last_txn_at", Type::Any, false)
}

struct Empty;

impl Scope for Empty {
    fn event(&self, _name: &str) -> Value {
        Value::Null
    }
}

fn check(src: &str) -> Result<(), TestCaseError> {
    match compile(src, &schema()) {
        Ok(p) => {
            let _ = p.eval(&Empty);
            let _ = p.clauses();
        }
        Err(d) => {
            prop_assert!(d.iter().next().is_some());
            for (line, col) in [(1, 1), (14, 9)] {
                let _ = d.render_at(src, "x.yaml", line, col);
            }
        }
    }
    Ok(())
}

/// One mutation of `src` at a position chosen by `at` and with `with`.
fn mutate(src: &str, kind: u8, at: usize, with: char, len: usize) -> String {
    let chars: Vec<char> = src.chars().collect();
    if chars.is_empty() {
        return with.to_string();
    }
    let i = at % chars.len();
    let j = (i + len).min(chars.len());
    let mut out = chars.clone();
    match kind % 4 {
        0 => {
            out.drain(i..j);
        }
        1 => out.insert(i, with),
        2 => out[i] = with,
        _ => {
            // Move a span elsewhere.
            let span: Vec<char> = out.drain(i..j).collect();
            let k = (at / 7) % (out.len() + 1);
            out.splice(k..k, span);
        }
    }
    out.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(src in "(?s).{0,80}") {
        check(&src)?;
    }

    #[test]
    fn mutated_expressions_never_panic(
        which in 0usize..CORPUS.len(),
        edits in proptest::collection::vec((0u8..4, any::<usize>(), any::<char>(), 0usize..12), 1..6),
    ) {
        let mut src = CORPUS[which].to_owned();
        for (kind, at, with, len) in edits {
            src = mutate(&src, kind, at, with, len);
        }
        check(&src)?;
    }
}

#[test]
fn the_corpus_is_valid() {
    for src in CORPUS {
        assert!(compile(src, &schema()).is_ok(), "{src}");
    }
}
