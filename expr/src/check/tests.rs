//! Checker tests: what is refused, with which code, where, and with what help; and
//! the types of what is accepted.

use crate::{Diagnostic, Root, Schema, Type, compile};

fn offer_schema() -> Schema {
    Root::ALL
        .into_iter()
        .fold(Schema::new(), Schema::allow_root)
        .feature("car_intent", Type::Bool, false)
        .feature("min_balance_90d", Type::Number, false)
        .feature("last_mall", Type::String, false)
        .feature("spend_30d", Type::Number, true)
}

fn ty(src: &str) -> Type {
    compile(src, &offer_schema())
        .unwrap_or_else(|d| panic!("{src}: {d:?}"))
        .ty()
}

/// The only diagnostic for `src`, with the text its span covers.
fn error(src: &str, schema: &Schema) -> (Diagnostic, String) {
    let d = compile(src, schema).expect_err(src);
    assert_eq!(d.0.len(), 1, "{src}: {d:?}");
    let one = d.0.into_iter().next().unwrap();
    let text = src[one.span.clone()].to_owned();
    (one, text)
}

fn err(src: &str) -> (Diagnostic, String) {
    error(src, &offer_schema())
}

#[test]
fn types_of_accepted_expressions() {
    assert_eq!(ty("features.car_intent and event.x"), Type::Bool);
    assert_eq!(ty("features.min_balance_90d + 1"), Type::Number);
    assert_eq!(ty("features.spend_30d[\"fuel\"]"), Type::Number);
    assert_eq!(ty("features.spend_30d"), Type::Map);
    assert_eq!(ty("event.amount"), Type::Any);
    assert_eq!(ty("event.amount * 2"), Type::Any);
    assert_eq!(ty("event.ts - event.ts"), Type::Any);
    assert_eq!(ty("event.ts - 1d"), Type::Any);
    assert_eq!(ty("event.amount + 1"), Type::Number);
    assert_eq!(ty("coalesce(profile.city, \"unknown\")"), Type::String);
    assert_eq!(ty("coalesce(features.last_mall, 1)"), Type::Any);
    assert_eq!(ty("abs(-2d)"), Type::Duration);
    assert_eq!(ty("[1, \"a\"]"), Type::List);
    assert_eq!(ty("30d"), Type::Duration);
    assert_eq!(ty("null"), Type::Any);
}

#[test]
fn unknown_feature_suggests_the_closest() {
    let (d, text) = err("features.car_intent and features.min_balanse_90d >= 300000");
    assert_eq!((d.code, text.as_str()), ("E003", "min_balanse_90d"));
    assert_eq!(d.label, "not a feature of this FeatureSet");
    assert_eq!(d.help.as_deref(), Some("did you mean `min_balance_90d`?"));
    let (d, _) = err("features.nothing_like_it > 1");
    assert_eq!((d.code, d.help), ("E003", None));
}

#[test]
fn families_and_members() {
    let (d, text) = err("features.min_balance_90d[\"x\"] > 1");
    assert_eq!((d.code, text.as_str()), ("E008", "features.min_balance_90d[\"x\"]"));
    let (d, text) = err("features.spend_30d > 3000");
    assert_eq!((d.code, text.as_str()), ("E007", "features.spend_30d"));
    assert!(d.help.unwrap().contains("features.spend_30d[\"key\"]"));
    let (d, _) = err("features.spend_30d[true] > 1");
    assert_eq!(d.code, "E007");
    assert!(compile("len(features.spend_30d) > 2", &offer_schema()).is_ok());
}

#[test]
fn roots() {
    let where_schema = Schema::new().allow_root(Root::Event);
    let (d, text) = error("features.x > 1", &where_schema);
    assert_eq!((d.code, text.as_str()), ("E009", "features"));
    assert_eq!(d.help.as_deref(), Some("this expression may read `event`"));
    let (d, text) = err("evnt.amount > 1");
    assert_eq!(
        (d.code, text.as_str(), d.help.as_deref()),
        ("E004", "evnt", Some("did you mean `event`?"))
    );
    let (d, _) = err("amount > 1");
    assert_eq!(d.code, "E004");
    assert!(d.help.unwrap().contains("`event.amount`"));
    let (d, _) = err("event > 1");
    assert_eq!(d.code, "E004");
    let (d, _) = err("event[event.key]");
    assert_eq!(d.code, "E010");
    assert!(compile("event[\"merchant.mall\"] == \"x\"", &offer_schema()).is_ok());
}

#[test]
fn functions_names_and_arity() {
    let (d, text) = err("day_of_mnth(event.ts) <= 14");
    assert_eq!((d.code, text.as_str()), ("E005", "day_of_mnth"));
    assert_eq!(d.help.as_deref(), Some("did you mean `day_of_month`?"));
    let (d, text) = err("responded(\"car-loan\", \"positive\")");
    assert_eq!(
        (d.code, text.as_str()),
        ("E006", "responded(\"car-loan\", \"positive\")")
    );
    assert_eq!(d.message, "`responded` takes 3 arguments, found 2");
    assert_eq!(d.help.as_deref(), Some("write `responded(offer, outcome, within)`"));
    assert_eq!(err("coalesce()").0.code, "E006");
    assert_eq!(err("hour").0.code, "E004");
}

#[test]
fn function_arguments() {
    let (d, text) = err("sent(event.offer, 30d)");
    assert_eq!((d.code, text.as_str()), ("E011", "event.offer"));
    let (d, text) = err("responded(\"a\", \"positiv\", 14d)");
    assert_eq!(
        (d.code, text.as_str(), d.help.as_deref()),
        ("E013", "\"positiv\"", Some("did you mean `positive`?"))
    );
    let (d, text) = err("sent(\"a\", 30)");
    assert_eq!((d.code, text.as_str()), ("E007", "30"));
    assert_eq!(d.message, "`sent` expects a duration, found a number");
    let (d, _) = err("hour(\"yesterday\")");
    assert_eq!(d.message, "`yesterday` is not a timestamp");
    let (d, _) = err("starts_with(features.min_balance_90d, \"a\")");
    assert_eq!(d.code, "E007");
    assert_eq!(err("min(\"a\", 1)").0.code, "E007");
}

#[test]
fn certain_type_errors() {
    let (d, text) = err("\"a\" + 1 == 2");
    assert_eq!(
        (d.code, text.as_str(), d.label.as_str()),
        ("E007", "\"a\" + 1", "string + number")
    );
    let (d, text) = err("features.min_balance_90d and true");
    assert_eq!((d.code, text.as_str()), ("E007", "features.min_balance_90d"));
    assert_eq!(d.message, "expected a bool, found a number");
    let (d, _) = err("true or features.last_mall");
    assert_eq!(d.code, "E007");
    let (d, _) = err("not features.min_balance_90d");
    assert_eq!(d.code, "E007");
    let (d, text) = err("\"a\" == 1");
    assert_eq!(
        (d.code, text.as_str(), d.label.as_str()),
        ("E007", "\"a\" == 1", "string == number")
    );
    let (d, text) = err("event.x < true");
    assert_eq!((d.code, text.as_str()), ("E007", "true"));
    let (d, text) = err("features.min_balance_90d in [\"A\", 1]");
    assert_eq!((d.code, text.as_str()), ("E007", "\"A\""));
    let (d, _) = err("event.x in \"abc\"");
    assert_eq!(d.code, "E007");
    assert_eq!(err("-\"a\"").0.code, "E007");
    assert_eq!(err("features.car_intent.x").0.code, "E014");
    assert_eq!(err("true[0]").0.code, "E014");
    assert_eq!(err("1d + 1").0.code, "E007");
}

#[test]
fn null_comparisons_are_refused() {
    let (d, text) = err("profile.city == null");
    assert_eq!((d.code, text.as_str()), ("E012", "null"));
    assert!(d.help.unwrap().contains("coalesce"));
}

#[test]
fn any_fits_everything() {
    for src in [
        "event.a + event.b > event.c",
        "event.a and event.b",
        "event.ts - event.since > 30d",
        "event.tags[0] == \"x\"",
        "event.amount in profile.list",
        "hour(event.ts) >= 9",
        "profile.age_band != \"18-25\"",
        "event.ts > \"2026-01-01T00:00:00Z\"",
    ] {
        assert!(compile(src, &offer_schema()).is_ok(), "{src}");
    }
}

#[test]
fn every_error_is_reported() {
    let d = compile("features.a > 1 and features.b > 2 and nope(1)", &offer_schema()).unwrap_err();
    let codes: Vec<&str> = d.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E003", "E003", "E005"]);
}

#[test]
fn a_schema_without_roots_allows_literals_and_functions() {
    let s = Schema::new();
    assert!(compile("abs(-1) + max(1, 2)", &s).is_ok());
    assert_eq!(error("event.x", &s).0.code, "E009");
}
