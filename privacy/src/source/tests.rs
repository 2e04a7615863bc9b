//! Spec parsing and validation: what a user gets for a good spec and for mistakes.

use super::*;

pub(crate) const TXN: &str = r#"
kind: Source
metadata: {name: core-banking-txn}
spec:
  files: "txn-*.csv"
  format: csv
  event: transaction
  id: [ACCT_NO, TXN_REF]
  time: {field: TXN_DATE, format: "%d/%m/%Y %H:%M", tz: "Asia/Kolkata"}
  fields:
    CUST_ID:  key
    CUST_NAME: drop
    DOB:      {generalize: age, bands: [18, 25, 35, 45, 60], attr: age_band}
    PAN:      {mask: {keepLast: 4}}
    EMAIL:    {vault: email}
    MOBILE:   {vault: phone}
    TXN_AMT:  {attr: amount, type: decimal}
    DR_CR:    {attr: direction, map: {D: debit, C: credit}}
    MCC:      {attr: category, lookup: mcc}
  lookups:
    mcc: {"5541": fuel, "5812": dining, "4111": transport}
"#;

fn err(yaml: &str) -> SpecError {
    Source::from_yaml(yaml).expect_err("should be refused")
}

fn with_fields(fields: &str) -> String {
    format!(
        "kind: Source\nmetadata: {{name: s}}\nspec:\n  format: csv\n  event: e\n  time: {{value: \"2026-01-01T00:00:00Z\"}}\n  fields:\n    ID: key\n{fields}"
    )
}

#[test]
fn the_design_example_compiles() {
    let source = Source::from_yaml(TXN).unwrap();
    assert_eq!(source.name(), "core-banking-txn");
    assert_eq!(source.event(), "transaction");
    assert_eq!(source.pattern(), "txn-*.csv");
    let spec = source.spec();
    assert_eq!(spec.spec.fields["CUST_ID"], FieldRule::Key);
    assert_eq!(
        spec.spec.fields["PAN"],
        FieldRule::Mask(MaskRule {
            keep: Keep::Last(4),
            attr: None
        })
    );
    assert_eq!(spec.spec.fields["EMAIL"], FieldRule::Vault(ContactKind::Email));
    assert!(matches!(&spec.spec.fields["DOB"], FieldRule::Generalize(g) if g.kind == Generalize::Age));
    assert_eq!(
        source.id_only,
        HashSet::from(["ACCT_NO".to_owned(), "TXN_REF".to_owned()])
    );
}

#[test]
fn api_version_and_default_pattern() {
    let yaml = with_fields("").replace("kind: Source", "apiVersion: persona.dev/v1alpha1\nkind: Source");
    let source = Source::from_yaml(&yaml).unwrap();
    assert_eq!(source.pattern(), "s.csv");
    let bad = with_fields("").replace("kind: Source", "apiVersion: persona.dev/v2\nkind: Source");
    assert!(err(&bad).message.contains("apiVersion"));
}

#[test]
fn unknown_fields_are_refused_with_a_position() {
    let e = err(&with_fields("    AMT: {attr: amount, typ: int}\n"));
    assert_eq!(e.line, Some(9), "{e}");
    assert!(e.column.is_some());
    assert!(e.message.contains("spec.fields.AMT"), "{e}");
    assert!(e.message.contains("typ"), "{e}");

    let e = err(&with_fields("").replace("event: e", "event: e\n  colour: red"));
    assert!(e.message.contains("colour"), "{e}");
    assert_eq!(e.line, Some(6));
}

#[test]
fn rule_mistakes_name_the_field() {
    let cases = [
        ("    AGE: {generalize: number, bands: [30, 20]}\n", "strictly ascending"),
        ("    AGE: {generalize: number, bands: []}\n", "must not be empty"),
        ("    AGE: {generalize: number}\n", "needs `bands`"),
        (
            "    AGE: {generalize: age, bands: [18], format: \"%Q\"}\n",
            "invalid time format",
        ),
        (
            "    AGE: {generalize: number, bands: [1], format: \"%Y\"}\n",
            "only for `generalize: age`",
        ),
        ("    PAN: {mask: {keepLast: 4, keepFirst: 2}}\n", "exactly one of"),
        ("    PAN: {mask: {keepLast: 4}, vault: email}\n", "only one of"),
        (
            "    PAN: {mask: {keepLast: 4}, type: int}\n",
            "`type` is not allowed with `mask`",
        ),
        ("    EMAIL: {vault: pigeon}\n", "unknown variant"),
        (
            "    EMAIL: {vault: email, attr: e}\n",
            "`attr` is not allowed with `vault`",
        ),
        ("    AMT: {type: int}\n", "needs one of"),
        (
            "    AMT: {attr: amount, type: int, default: lots}\n",
            "`default` is not a valid int",
        ),
        (
            "    AMT: {attr: amount, type: int, map: {A: one}}\n",
            "code `A` is not a valid int",
        ),
        ("    AMT: {attr: a, map: {A: b}, lookup: t}\n", "not both"),
        ("    AMT: hide\n", "unknown rule `hide`"),
    ];
    for (fields, expected) in cases {
        let e = err(&with_fields(fields));
        assert!(e.message.contains(expected), "{fields}: {e}");
        assert!(e.line.is_some(), "{fields}: {e}");
    }
}

#[test]
fn cross_field_mistakes_are_refused() {
    let e = err(&with_fields("    OTHER: key\n"));
    assert!(e.message.contains("exactly one field must be `key`"), "{e}");
    let e = err(&with_fields("").replace("    ID: key\n", "    ID: drop\n"));
    assert!(e.message.contains("none is"), "{e}");
    let e = err(&with_fields("    MCC: {attr: category, lookup: mcc}\n"));
    assert!(e.message.contains("spec.fields.MCC: unknown lookup table `mcc`"), "{e}");
    let e = err(&with_fields("    A: {attr: x}\n    B: {attr: x}\n"));
    assert!(e.message.contains("also produced by field `A`"), "{e}");
    let e = err(&with_fields(
        "    A: {attr: x, type: int, lookup: t}\n  lookups: {t: {\"1\": one}}\n",
    ));
    assert!(
        e.message.contains("lookup `t` value for code `1` is not a valid int"),
        "{e}"
    );
    let e = err(&with_fields("").replace(
        "time: {value: \"2026-01-01T00:00:00Z\"}",
        "time: {field: T, tz: Mars/Olympus_Mons}",
    ));
    assert!(e.message.contains("spec.time.tz: unknown time zone"), "{e}");
    let e = err(&with_fields("").replace("time: {value: \"2026-01-01T00:00:00Z\"}", "time: {value: tomorrow}"));
    assert!(e.message.contains("RFC 3339"), "{e}");
    let e = err(&with_fields("").replace("time: {value: \"2026-01-01T00:00:00Z\"}", "time: {format: \"%Y\"}"));
    assert!(e.message.contains("exactly one of `field` or `value`"), "{e}");
    let e = err(&with_fields("    C: {attr: contacts}\n").replace("event: e", "event: profile"));
    assert!(e.message.contains("reserved"), "{e}");
    for name in ["type", "ts", "id"] {
        let e = err(&with_fields(&format!("    C: {{attr: {name}}}\n")));
        assert!(
            e.message.contains(&format!("attribute name `{name}` is reserved")),
            "{e}"
        );
    }
    // A file must not be able to erase a customer's cloud state.
    let e = err(&with_fields("").replace("event: e", "event: forget"));
    assert_eq!(
        e.message,
        "spec.event: `forget` is reserved: erasures come from `persona vault forget`, not from source files"
    );
}

#[test]
fn numeric_yaml_keys_and_values_read_as_text() {
    let source = Source::from_yaml(&with_fields(
        "    MCC: {attr: category, lookup: mcc, default: 0, type: int}\n  lookups:\n    mcc: {5541: 1, 5812: 2}\n",
    ))
    .unwrap();
    let Some(Rule::Attr {
        table: Some(table),
        default,
        ..
    }) = source.rules.get("MCC")
    else {
        panic!("attr rule expected");
    };
    assert_eq!(table.get("5541"), Some(&Value::Int(1)));
    assert_eq!(default, &Some(Value::Int(0)));
}

#[test]
fn only_a_context_source_may_have_no_key() {
    let context = "kind: Source\nmetadata: {name: alerts}\nspec:\n  format: jsonl\n  event: context\n  time: {value: \"2026-01-01T00:00:00Z\"}\n  fields:\n    region: {attr: city}\n";
    let source = Source::from_yaml(context).unwrap();
    assert_eq!(source.key_field(), None);
    let keyless = context.replace("event: context", "event: transaction");
    assert!(
        err(&keyless)
            .message
            .contains("exactly one field must be `key`, none is")
    );
    let vaulting = format!("{context}    email: {{vault: email}}\n");
    assert!(err(&vaulting).message.contains("no customer to vault contacts for"));
}
