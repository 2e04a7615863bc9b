//! Scrub rules applied to records built in memory: every rule, the refusals, and
//! that a refusal never quotes a value.

use std::sync::Arc;

use persona_event::time::format_ts;

use super::*;
use crate::source::tests::TXN;

fn record(fields: &[(&str, &str)]) -> RawRecord {
    RawRecord::new(
        Arc::from("txn-1.csv"),
        7,
        fields
            .iter()
            .map(|(k, v)| (Arc::from(*k), Some((*v).to_owned())))
            .collect(),
    )
}

fn txn_row() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CUST_ID", "C1001"),
        ("CUST_NAME", "Saanvi Sarkar"),
        ("DOB", "2000-03-05"),
        ("PAN", "4111222233331234"),
        ("EMAIL", "saanvi@example.com"),
        ("MOBILE", "+919800000001"),
        ("TXN_AMT", "50000.50"),
        ("DR_CR", "C"),
        ("MCC", "5541"),
        ("TXN_DATE", "04/03/2026 15:52"),
        ("ACCT_NO", "001234567890"),
        ("TXN_REF", "R1"),
        ("BRANCH_SECRET", "x"),
    ]
}

fn with(row: &[(&'static str, &'static str)], field: &str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    row.iter()
        .map(|(k, v)| (*k, if *k == field { value } else { *v }))
        .collect()
}

fn txn() -> Source {
    Source::from_yaml(TXN).unwrap()
}

#[test]
fn every_rule_applies() {
    let s = txn().scrub(&record(&txn_row())).unwrap();
    assert_eq!(s.key.as_ref().map(|k| k.expose_secret()), Some("C1001"));
    assert_eq!(format_ts(&s.ts), "2026-03-04T10:22:00Z");
    let attr = |k: &str| s.attrs.get(k).cloned().unwrap_or_default();
    assert_eq!(attr("age_band"), Value::from("25-35"));
    assert_eq!(attr("pan"), Value::from("XXXXXXXXXXXX1234"));
    assert_eq!(attr("amount"), Value::Float(50000.5));
    assert_eq!(attr("direction"), Value::from("credit"));
    assert_eq!(attr("category"), Value::from("fuel"));
    assert_eq!(s.attrs.len(), 5, "{:?}", s.attrs);
    let vaulted: Vec<_> = s.vaulted.iter().map(|(k, v)| (*k, v.expose().as_str())).collect();
    assert_eq!(
        vaulted,
        [
            (ContactKind::Email, "saanvi@example.com"),
            (ContactKind::Phone, "+919800000001")
        ]
    );
    assert_eq!(
        s.counts,
        FieldCounts {
            dropped: 3,
            generalized: 1,
            masked: 1,
            vaulted: 2,
            unnamed: 1
        }
    );
    let source = txn();
    let rec = record(&txn_row());
    assert_eq!(source.unnamed_columns(&rec).collect::<Vec<_>>(), ["BRANCH_SECRET"]);
}

#[test]
fn age_is_taken_at_the_event_time_in_the_source_zone() {
    // 04/03/2026 00:30 in Kolkata is still 3 March in UTC; the birthday is 4 March.
    let row = with(&with(&txn_row(), "DOB", "2008-03-04"), "TXN_DATE", "04/03/2026 00:30");
    let s = txn().scrub(&record(&row)).unwrap();
    assert_eq!(s.attrs["age_band"], Value::from("18-25"));
    let row = with(&with(&txn_row(), "DOB", "2008-03-05"), "TXN_DATE", "04/03/2026 23:59");
    assert_eq!(
        txn().scrub(&record(&row)).unwrap().attrs["age_band"],
        Value::from("<18")
    );
    let row = with(&txn_row(), "DOB", "1950-01-01");
    assert_eq!(
        txn().scrub(&record(&row)).unwrap().attrs["age_band"],
        Value::from("60+")
    );
}

#[test]
fn codes_map_look_up_pass_through_or_default() {
    let row = with(&with(&txn_row(), "DR_CR", "R"), "MCC", "9999");
    let s = txn().scrub(&record(&row)).unwrap();
    assert_eq!(s.attrs["direction"], Value::from("R"));
    assert_eq!(s.attrs["category"], Value::from("9999"));

    let yaml = TXN
        .replace(
            "{attr: category, lookup: mcc}",
            "{attr: category, lookup: mcc, default: other}",
        )
        .replace(
            "{attr: direction, map: {D: debit, C: credit}}",
            "{attr: debit, type: bool, map: {D: \"yes\", C: \"no\"}}",
        );
    let source = Source::from_yaml(&yaml).unwrap();
    let s = source
        .scrub(&record(&with(&with(&txn_row(), "DR_CR", "D"), "MCC", "9999")))
        .unwrap();
    assert_eq!(s.attrs["category"], Value::from("other"));
    let s = source.scrub(&record(&with(&txn_row(), "DR_CR", "D"))).unwrap();
    assert_eq!(s.attrs["debit"], Value::Bool(true));
    assert_eq!(s.attrs["category"], Value::from("fuel"));
    // An unmapped code must still parse as the attribute's type.
    let e = source.scrub(&record(&row)).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("DR_CR"));
    assert_eq!(e.reason, "value is not a valid bool");
}

#[test]
fn empty_values_give_no_attribute() {
    let row = with(&with(&with(&txn_row(), "TXN_AMT", ""), "PAN", " "), "EMAIL", "");
    let s = txn().scrub(&record(&row)).unwrap();
    assert!(!s.attrs.contains_key("amount"));
    assert!(!s.attrs.contains_key("pan"));
    assert_eq!(s.vaulted.len(), 1);
    assert_eq!(s.counts.masked, 0);
}

#[test]
fn generalized_numbers() {
    let yaml = TXN.replace(
        "{attr: amount, type: decimal}",
        "{generalize: number, bands: [0, 1000, 10000.5]}",
    );
    let source = Source::from_yaml(&yaml).unwrap();
    for (amount, band) in [
        ("-1", "<0"),
        ("0", "0-1000"),
        ("999.99", "0-1000"),
        ("10000.5", "10000.5+"),
    ] {
        let s = source.scrub(&record(&with(&txn_row(), "TXN_AMT", amount))).unwrap();
        assert_eq!(s.attrs["txn_amt"], Value::from(band), "{amount}");
    }
    let e = source.scrub(&record(&with(&txn_row(), "TXN_AMT", "12,5"))).unwrap_err();
    assert_eq!(
        (e.field.as_deref(), e.reason.as_str()),
        (Some("TXN_AMT"), "value is not a number")
    );
}

#[test]
fn date_formats_for_age() {
    let yaml = TXN.replace("attr: age_band}", "attr: age_band, format: \"%d-%m-%Y\"}");
    let source = Source::from_yaml(&yaml).unwrap();
    let s = source.scrub(&record(&with(&txn_row(), "DOB", "05-03-2000"))).unwrap();
    assert_eq!(s.attrs["age_band"], Value::from("25-35"));
    assert!(source.scrub(&record(&with(&txn_row(), "DOB", "2000-03-05"))).is_err());
}

#[test]
fn refusals_name_the_field_never_the_value() {
    let cases: [(&str, &'static str, &str); 7] = [
        ("TXN_DATE", "2026-03-04 15:52", "time does not match the format"),
        ("TXN_DATE", "", "time is missing"),
        ("TXN_AMT", "fifty thousand", "value is not a valid decimal"),
        ("DOB", "05/03/2000", "date does not match the format"),
        ("DOB", "2027-01-01", "date is after the event time"),
        ("CUST_ID", "  ", "key is missing or empty"),
        ("TXN_REF", "", "id field is missing or empty"),
    ];
    for (field, value, reason) in cases {
        let e = txn().scrub(&record(&with(&txn_row(), field, value))).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(field));
        assert_eq!(e.reason, reason);
        if !value.trim().is_empty() {
            assert!(!e.reason.contains(value) && !format!("{e:?}").contains(value));
        }
    }
    let row: Vec<_> = txn_row().into_iter().filter(|(k, _)| *k != "CUST_ID").collect();
    let e = txn().scrub(&record(&row)).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("CUST_ID"));
}

#[test]
fn id_material_is_stable_and_distinct() {
    let source = txn();
    let a = source.scrub(&record(&txn_row())).unwrap();
    let b = source.scrub(&record(&with(&txn_row(), "TXN_AMT", "1"))).unwrap();
    let c = source.scrub(&record(&with(&txn_row(), "TXN_REF", "R2"))).unwrap();
    assert_eq!(*a.id_material, *b.id_material, "only the id fields count");
    assert_ne!(*a.id_material, *c.id_material);

    // Without `id`, the whole record, its file and line count.
    let source = Source::from_yaml(&TXN.replace("  id: [ACCT_NO, TXN_REF]\n", "")).unwrap();
    let a = source.scrub(&record(&txn_row())).unwrap();
    let b = source.scrub(&record(&with(&txn_row(), "TXN_AMT", "1"))).unwrap();
    let mut moved = record(&txn_row());
    moved = RawRecord::new(Arc::from("txn-1.csv"), 8, moved.fields().to_vec());
    let c = source.scrub(&moved).unwrap();
    assert_ne!(*a.id_material, *b.id_material);
    assert_ne!(*a.id_material, *c.id_material);
    assert_eq!(*a.id_material, *source.scrub(&record(&txn_row())).unwrap().id_material);
    assert_eq!(a.counts.unnamed, 3, "id columns are unnamed without `id`");
}

#[test]
fn fixed_time_and_null_values() {
    let yaml = "kind: Source\nmetadata: {name: p}\nspec:\n  format: jsonl\n  event: profile\n  time: {value: \"2026-01-01T05:30:00+05:30\"}\n  fields:\n    id: key\n    city: {attr: city}\n    merchant.mall: {attr: mall}\n";
    let source = Source::from_yaml(yaml).unwrap();
    let rec = RawRecord::new(
        Arc::from("p.jsonl"),
        1,
        vec![
            (Arc::from("id"), Some("7".to_owned())),
            (Arc::from("city"), None),
            (Arc::from("merchant.mall"), Some("Phoenix".to_owned())),
        ],
    );
    let s = source.scrub(&rec).unwrap();
    assert_eq!(format_ts(&s.ts), "2026-01-01T00:00:00Z");
    assert!(!s.attrs.contains_key("city"));
    assert_eq!(s.attrs["mall"], Value::from("Phoenix"));
}

#[test]
fn scrubbed_debug_is_redacted() {
    let s = txn().scrub(&record(&txn_row())).unwrap();
    let shown = format!("{s:?} {:?}", record(&txn_row()));
    for secret in ["C1001", "saanvi", "9800000001", "001234567890", "Saanvi"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}
