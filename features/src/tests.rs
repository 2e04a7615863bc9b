//! Tests of the compiled FeatureSet and the state over whole event streams.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use persona_event::time::parse_ts;
use persona_event::{Event, EventId, Token, Value};

use crate::{FeatureSet, FeatureSetDocument, FeatureState};

const SET: &str = r#"
kind: FeatureSet
metadata: {name: retail-banking}
spec:
  timezone: Asia/Kolkata
  features:
    - {name: avg_balance_90d, on: balance, value: event.balance, agg: avg, window: 90d}
    - {name: min_balance_90d, on: balance, value: event.balance, agg: min, window: 90d}
    - name: fuel_spend_30d
      on: transaction
      where: event.category == "fuel" and event.direction == "debit"
      value: event.amount
      agg: sum
      window: 30d
    - name: early_salary_months_6m
      on: transaction
      where: event.direction == "credit" and event.amount >= 50000 and day_of_month(event.ts) <= 14
      agg: distinct_months
      window: 180d
    - {name: spend_30d, on: transaction, value: event.amount, agg: sum, window: 30d, by: event.category}
    - {name: last_mall, on: card_swipe, value: event.mall, agg: last}
    - {name: txn_count_2h, on: [transaction, card_swipe], agg: count, window: 2h}
  derived:
    - {name: car_intent, expr: "features.fuel_spend_30d > 3000 and features.early_salary_months_6m >= 2"}
    - {name: strong_car_intent, expr: "features.car_intent and features.min_balance_90d >= 300000"}
"#;

fn set() -> FeatureSet {
    FeatureSet::compile(&FeatureSetDocument::from_yaml(SET).unwrap()).unwrap()
}

fn ev(n: u8, kind: &str, ts: &str, attrs: &[(&str, Value)]) -> Event {
    Event {
        id: EventId::from_bytes([n; 16]),
        token: Token::from_bytes([1; 16]),
        kind: kind.into(),
        ts: parse_ts(ts).unwrap(),
        attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

fn txn(n: u8, ts: &str, amount: f64, dir: &str, cat: &str) -> Event {
    ev(
        n,
        "transaction",
        ts,
        &[
            ("amount", amount.into()),
            ("direction", dir.into()),
            ("category", cat.into()),
        ],
    )
}

fn at(s: &str) -> Option<DateTime<Utc>> {
    Some(parse_ts(s).unwrap())
}

fn stream() -> Vec<Event> {
    vec![
        txn(1, "2026-08-03T05:00:00Z", 85000.0, "credit", "salary"),
        txn(2, "2026-09-02T05:00:00Z", 85000.0, "credit", "salary"),
        txn(3, "2026-09-20T05:00:00Z", 1500.0, "debit", "fuel"),
        txn(4, "2026-10-01T05:00:00Z", 85000.0, "credit", "salary"),
        txn(5, "2026-10-05T05:00:00Z", 1200.0, "debit", "fuel"),
        txn(6, "2026-10-15T05:00:00Z", 1400.0, "debit", "fuel"),
        txn(7, "2026-10-16T05:00:00Z", 700.0, "debit", "dining"),
        ev(8, "balance", "2026-09-30T18:30:00Z", &[("balance", Value::Int(350000))]),
        ev(9, "balance", "2026-10-15T18:30:00Z", &[("balance", Value::Int(410000))]),
        ev(
            10,
            "card_swipe",
            "2026-10-16T10:00:00Z",
            &[("mall", "Phoenix Marketcity".into())],
        ),
        ev(
            11,
            "card_swipe",
            "2026-10-16T09:00:00Z",
            &[("mall", "Inorbit Mall".into())],
        ),
    ]
}

#[test]
fn hand_computed_features() {
    let set = set();
    let mut st = FeatureState::default();
    for e in stream() {
        st.apply(&set, &e);
    }
    let v = st.view(&set, at("2026-10-16T12:00:00Z")).all();
    // 30 calendar days ending 2026-10-16 (Kolkata): from 2026-09-17; all three fuel debits.
    assert_eq!(v["fuel_spend_30d"], Value::Float(4100.0));
    assert_eq!(v["early_salary_months_6m"], Value::Int(3));
    assert_eq!(v["min_balance_90d"], Value::Int(350000));
    assert_eq!(v["avg_balance_90d"], Value::Float(380000.0));
    assert_eq!(v["last_mall"], Value::from("Phoenix Marketcity"));
    assert_eq!(v["car_intent"], Value::Bool(true));
    assert_eq!(v["strong_car_intent"], Value::Bool(true));
    // At 12:00Z (17:30 Kolkata) the 2h window is the clock hours 16:00-17:59 local:
    // the swipe at 10:00Z (15:30 local) is outside.
    assert_eq!(v["txn_count_2h"], Value::Int(0));
    // At 11:00Z (16:30 local) it is 15:00-16:59: the 10:00Z swipe is in, 09:00Z
    // (14:30 local) is not.
    assert_eq!(
        st.view(&set, at("2026-10-16T11:00:00Z")).get("txn_count_2h"),
        Value::Int(1)
    );
    let Value::Map(spend) = &v["spend_30d"] else {
        panic!("family is a map")
    };
    assert_eq!(spend["fuel"], Value::Float(4100.0));
    assert_eq!(spend["dining"], Value::Float(700.0));
    assert_eq!(spend["salary"], Value::Float(85000.0)); // Sep 2 is outside
    // A month later the 30-day windows are empty: 0 for sums, null for min.
    let later = st.view(&set, at("2027-02-20T00:00:00Z")).all();
    assert_eq!(later["fuel_spend_30d"], Value::Int(0));
    assert_eq!(later["min_balance_90d"], Value::Null);
    assert_eq!(later["car_intent"], Value::Bool(false));
}

#[test]
fn arrival_order_inside_the_window_does_not_change_values() {
    let set = set();
    let mut forward = FeatureState::default();
    let mut backward = FeatureState::default();
    let events = stream();
    for e in &events {
        forward.apply(&set, e);
    }
    // Latest first: every other event arrives late, but inside its windows.
    let mut rev = events.clone();
    rev.sort_by_key(|e| std::cmp::Reverse(e.ts));
    for e in &rev {
        backward.apply(&set, e);
    }
    let t = at("2026-10-20T00:00:00Z");
    assert_eq!(forward.view(&set, t).all(), backward.view(&set, t).all());
}

#[test]
fn an_event_older_than_the_window_is_ignored() {
    let set = set();
    let mut st = FeatureState::default();
    st.apply(&set, &txn(1, "2026-10-30T05:00:00Z", 100.0, "debit", "fuel"));
    st.apply(&set, &txn(2, "2026-09-01T05:00:00Z", 100.0, "debit", "fuel"));
    assert_eq!(st.view(&set, None).get("fuel_spend_30d"), Value::Float(100.0));
    // The clock is the latest event: evaluating "before" it is evaluating at it.
    assert_eq!(
        st.view(&set, at("2026-01-01T00:00:00Z")).at(),
        parse_ts("2026-10-30T05:00:00Z").unwrap()
    );
}

#[test]
fn snapshots_round_trip_and_survive_a_changed_set() {
    let set = set();
    let mut st = FeatureState::default();
    for e in stream() {
        st.apply(&set, &e);
    }
    let bytes = st.encode(&set);
    let back = FeatureState::decode(&bytes, &set).unwrap();
    let t = at("2026-10-20T00:00:00Z");
    assert_eq!(back.view(&set, t).all(), st.view(&set, t).all());

    // Edit one feature, add another: the edited and new ones start empty, the others keep state.
    let edited = SET
        .replace(
            "value: event.balance, agg: min, window: 90d",
            "value: event.balance, agg: min, window: 60d",
        )
        .replace(
            "  derived:\n",
            "    - {name: swipes, on: card_swipe, agg: count}\n  derived:\n",
        );
    let set2 = FeatureSet::compile(&FeatureSetDocument::from_yaml(&edited).unwrap()).unwrap();
    let moved = FeatureState::decode(&bytes, &set2).unwrap();
    let v = moved.view(&set2, t).all();
    assert_eq!(v["min_balance_90d"], Value::Null);
    assert_eq!(v["swipes"], Value::Int(0));
    assert_eq!(v["avg_balance_90d"], Value::Float(380000.0));
    assert!(FeatureState::decode(&[9, 1, 2], &set).is_err());
}

/// Features over the same values with different windows are written once (a 7-day
/// sum repeats the 30-day one, an average is made of a sum and a count); removing the
/// features written in full must not lose the ones that pointed at them.
#[test]
fn shared_columns_survive_the_removal_of_what_they_repeat() {
    const SHARED: &str = r#"
kind: FeatureSet
metadata: {name: shared}
spec:
  timezone: Asia/Kolkata
  features:
    - {name: spend_30d, on: transaction, value: event.amount, agg: sum, window: 30d}
    - {name: count_30d, on: transaction, agg: count, window: 30d}
    - {name: spend_7d, on: transaction, value: event.amount, agg: sum, window: 7d}
    - {name: avg_30d, on: transaction, value: event.amount, agg: avg, window: 30d}
    - {name: avg_7d, on: transaction, value: event.amount, agg: avg, window: 7d}
"#;
    let compile = |yaml: &str| FeatureSet::compile(&FeatureSetDocument::from_yaml(yaml).unwrap()).unwrap();
    let full = compile(SHARED);
    let mut state = FeatureState::default();
    for (i, e) in stream().iter().enumerate() {
        state.apply(&full, e);
        // At every step, including mid-window ones, the snapshot reads back whole.
        let bytes = state.encode(&full);
        let back = FeatureState::decode(&bytes, &full).unwrap();
        assert_eq!(
            back.view(&full, None).all(),
            state.view(&full, None).all(),
            "after event {i}"
        );
    }
    let bytes = state.encode(&full);
    let t = at("2026-10-20T00:00:00Z");
    let before = state.view(&full, t).all();
    assert!(before["spend_7d"].as_f64().unwrap() > 0.0, "{before:?}");
    let pruned = compile(
        &SHARED
            .lines()
            .filter(|l| !l.contains("spend_30d") && !l.contains("count_30d"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let after = FeatureState::decode(&bytes, &pruned).unwrap().view(&pruned, t).all();
    for name in ["spend_7d", "avg_30d", "avg_7d"] {
        assert_eq!(after[name], before[name], "{name}");
    }
    // Damaged snapshots are refused, never misread or a panic.
    for cut in 1..bytes.len() {
        let _ = FeatureState::decode(&bytes[..cut], &full);
    }
    for i in 1..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x5a;
        let _ = FeatureState::decode(&flipped, &full);
    }
    assert!(FeatureState::decode(&bytes[..bytes.len() - 1], &full).is_err());
}

/// A feature added to a running set starts empty; on request it is backfilled from
/// history without counting anything twice in the features that already had it.
#[test]
fn an_added_feature_is_backfilled_on_request() {
    let old = set();
    let mut state = FeatureState::default();
    for e in stream() {
        state.apply(&old, &e);
    }
    let added = SET.replace(
        "  derived:\n",
        "    - {name: fuel_days_30d, on: transaction, where: event.category == \"fuel\", agg: distinct_days, window: 30d}\n    - {name: spend_by_cat_90d, on: transaction, value: event.amount, agg: sum, window: 90d, by: event.category}\n    - {name: min_balance_90d_again, on: balance, value: event.balance, agg: min, window: 90d}\n  derived:\n",
    );
    let new = FeatureSet::compile(&FeatureSetDocument::from_yaml(&added).unwrap()).unwrap();
    let mut live = FeatureState::decode(&state.encode(&old), &new).unwrap();
    let t = at("2026-10-20T00:00:00Z");
    assert_eq!(live.view(&new, t).get("fuel_days_30d"), Value::Int(0));

    let names = ["fuel_days_30d", "spend_by_cat_90d", "min_balance_90d_again"];
    let only = new.select(&names).unwrap();
    live.reset(&new, &only);
    for e in stream() {
        live.apply_selected(&new, &e, &only);
    }
    let mut fresh = FeatureState::default();
    for e in stream() {
        fresh.apply(&new, &e);
    }
    assert_eq!(live.view(&new, t).all(), fresh.view(&new, t).all());
    assert_eq!(live.view(&new, t).get("fuel_days_30d"), Value::Int(2));

    // Backfilling again starts over: still nothing counted twice.
    live.reset(&new, &only);
    for e in stream() {
        live.apply_selected(&new, &e, &only);
    }
    assert_eq!(live.view(&new, t).all(), fresh.view(&new, t).all());

    assert!(new.select(&["car_intent"]).unwrap_err().contains("derived"));
    assert!(new.select(&["no_such"]).unwrap_err().contains("no feature `no_such`"));
}

#[test]
fn spec_errors_name_the_field() {
    let bad = SET.replace("agg: avg, window: 90d", "agg: average, window: 90x");
    let errors = FeatureSet::compile(&FeatureSetDocument::from_yaml(&bad).unwrap()).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|e| e.starts_with("spec.features[0].agg: unknown aggregation `average`")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.starts_with("spec.features[0].window: invalid window `90x`")),
        "{text:?}"
    );

    let bad = SET.replace("features.fuel_spend_30d > 3000", "features.fuel_spend_3d > 3000");
    let errors = FeatureSet::compile(&FeatureSetDocument::from_yaml(&bad).unwrap()).unwrap_err();
    assert!(
        matches!(&errors[0], persona_expr::FieldError::Expr { path, .. } if path == "spec.derived[0].expr"),
        "{errors:?}"
    );

    let cyclic = SET.replace(
        "features.car_intent and features.min_balance_90d >= 300000",
        "features.car_intent and features.strong_car_intent",
    );
    let errors = FeatureSet::compile(&FeatureSetDocument::from_yaml(&cyclic).unwrap()).unwrap_err();
    assert!(errors[0].to_string().contains("depends on itself"), "{errors:?}");

    let unknown_field = SET.replace("agg: avg,", "agg: avg, windw: 3d,");
    assert!(
        FeatureSetDocument::from_yaml(&unknown_field)
            .unwrap_err()
            .to_string()
            .contains("unknown field `windw`")
    );
}

#[test]
fn families_are_bounded() {
    let yaml = SET.replace(
        "window: 30d,\n       by: event.category}",
        "window: 30d, by: event.category}",
    );
    let yaml = yaml.replace("by: event.category}", "by: event.category, maxKeys: 2}");
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(&yaml).unwrap()).unwrap();
    let mut st = FeatureState::default();
    for (i, cat) in ["fuel", "dining", "grocery", "fuel"].iter().enumerate() {
        st.apply(&set, &txn(i as u8, "2026-10-01T05:00:00Z", 10.0, "debit", cat));
    }
    let Value::Map(m) = st.view(&set, None).get("spend_30d") else {
        panic!()
    };
    assert_eq!(
        m,
        BTreeMap::from([
            ("dining".into(), Value::Float(10.0)),
            ("fuel".into(), Value::Float(20.0))
        ])
    );
    // Once their window has emptied, old keys make room for new ones.
    st.apply(&set, &txn(9, "2026-12-01T05:00:00Z", 5.0, "debit", "travel"));
    let Value::Map(m) = st.view(&set, None).get("spend_30d") else {
        panic!()
    };
    assert_eq!(m, BTreeMap::from([("travel".into(), Value::Float(5.0))]));
}

#[test]
fn an_event_type_listed_twice_counts_once() {
    let yaml = SET.replace(
        "agg: count, window: 2h}",
        "agg: count, window: 2h}\n    - {name: twice, on: [transaction, transaction], agg: count}",
    );
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(&yaml).unwrap()).unwrap();
    let mut st = FeatureState::default();
    st.apply(&set, &txn(1, "2026-10-01T05:00:00Z", 10.0, "debit", "fuel"));
    assert_eq!(st.view(&set, None).get("twice"), Value::Int(1));
}

#[test]
fn programs_checked_against_the_set_read_every_feature_by_its_slot() {
    // Derived features listed before what they depend on: their slots follow the
    // evaluation order, not the spec's.
    let car =
        "    - {name: car_intent, expr: \"features.fuel_spend_30d > 3000 and features.early_salary_months_6m >= 2\"}\n";
    let swapped = SET.replace(car, "") + car;
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(&swapped).unwrap()).unwrap();
    assert_eq!(set.derived()[0].name, "car_intent");
    let mut st = FeatureState::default();
    for e in stream() {
        st.apply(&set, &e);
    }
    let view = st.view(&set, at("2026-10-16T12:00:00Z"));
    let schema = set.declare(persona_expr::Schema::new().allow_root(persona_expr::Root::Features));
    let names: Vec<&str> = set.features().iter().map(|f| f.name.as_str()).collect();
    let derived: Vec<&str> = set.derived().iter().map(|d| d.name.as_str()).collect();
    for (name, slot) in names.iter().chain(&derived).zip(0u32..) {
        assert_eq!(schema.lookup(name).and_then(|d| d.slot), Some(slot), "{name}");
        let program = persona_expr::compile(&format!("features.{name}"), &schema).unwrap();
        let (by_slot, by_name) = (program.eval(&view), view.get(name));
        assert_eq!(by_slot, by_name, "{name}");
        assert_ne!(by_slot, Value::Null, "{name} has a value in this stream");
    }
    let fuel = persona_expr::compile("features.spend_30d[\"fuel\"]", &schema).unwrap();
    assert_eq!(fuel.eval(&view), Value::Float(4100.0));
}

fn as_attrs(v: &[(String, Value)]) -> Vec<(&str, Value)> {
    v.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

#[test]
fn attributes_read_by_slot_equal_attributes_read_by_name() {
    // 20 attributes read (more than fit on the stack), events carrying unread ones in
    // between, and one event with many more attributes than the set reads.
    let mut yaml = String::from("kind: FeatureSet\nmetadata: {name: many}\nspec:\n  features:\n");
    for i in 0..20 {
        yaml.push_str(&format!(
            "    - {{name: f{i}, on: t, where: 'coalesce(event.a{i:02}, 0) > 0', value: event.a{i:02}, agg: sum}}\n"
        ));
    }
    yaml.push_str("    - {name: by_k, on: t, value: event.a03, agg: sum, by: event.k}\n");
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(&yaml).unwrap()).unwrap();
    let odd: Vec<(String, Value)> = (0..20)
        .filter(|i| i % 2 == 1)
        .flat_map(|i| {
            [
                (format!("a{i:02}"), Value::Int(i)),
                (format!("a{i:02}x"), Value::Int(1000)),
            ]
        })
        .chain([("k".to_owned(), Value::from("odd"))])
        .collect();
    let all: Vec<(String, Value)> = (0..20)
        .map(|i| (format!("a{i:02}"), Value::Int(100 + i)))
        .chain((0..100).map(|i| (format!("z{i:03}"), Value::Int(-1))))
        .chain([("k".to_owned(), Value::from("all"))])
        .collect();
    let events = [
        ev(1, "t", "2026-10-01T00:00:00Z", &as_attrs(&odd)),
        ev(2, "t", "2026-10-01T01:00:00Z", &as_attrs(&all)),
        ev(
            3,
            "t",
            "2026-10-01T02:00:00Z",
            &[("a00", Value::Int(5)), ("k", Value::from("odd"))],
        ),
    ];
    let mut st = FeatureState::default();
    for e in &events {
        st.apply(&set, e);
    }
    let streamed = st.view(&set, None).all();
    let batch = crate::batch::evaluate(&set, &events, parse_ts("2026-10-01T02:00:00Z").unwrap());
    assert_eq!(streamed, batch);
    assert_eq!(streamed["f0"], Value::Int(105));
    assert_eq!(streamed["f3"], Value::Int(3 + 103));
    assert_eq!(streamed["f4"], Value::Int(104));
    assert_eq!(
        streamed["by_k"],
        Value::Map(BTreeMap::from([
            ("all".into(), Value::Int(103)),
            ("odd".into(), Value::Int(3))
        ]))
    );
}

#[test]
fn clauses_answered_together_equal_clauses_evaluated_one_by_one() {
    // Equality clauses over one attribute, a text written both ways round, one that
    // no string equals, and values that are not strings (evaluated as written: a
    // time equals its text, a number equals no text).
    let yaml = r#"
kind: FeatureSet
metadata: {name: dispatch}
spec:
  features:
    - {name: fuel, on: t, where: 'event.category == "fuel"', agg: count}
    - {name: fuel_too, on: t, where: '"fuel" == event.category', agg: count}
    - {name: fuel_debit, on: t, where: 'event.category == "fuel" and event.direction == "debit"', agg: count}
    - {name: dining, on: t, where: 'event.category == "dining"', agg: count}
    - {name: five, on: t, where: 'event.category == "5"', agg: count}
    - {name: noon, on: t, where: 'event.category == "2026-10-01T12:00:00Z"', agg: count}
    - {name: not_fuel, on: t, where: 'event.category != "fuel"', agg: count}
"#;
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(yaml).unwrap()).unwrap();
    assert_eq!(set.dispatches.len(), 2, "{:?}", set.dispatches);
    // The groups of `t` split on `category`: a string visits `rest` and its own.
    let split = set.readers("t").unwrap().split.as_ref().unwrap();
    assert_eq!(&*set.attrs[split.slot], "category");
    let texts: Vec<&str> = split.by_text.iter().map(|(t, _)| &**t).collect();
    assert_eq!(texts, ["2026-10-01T12:00:00Z", "5", "dining", "fuel"]);
    assert_eq!(split.testing("fuel").len(), 3);
    assert_eq!(split.rest.len(), 1, "only `!=` tests no text");
    assert!(split.testing("grocery").is_empty());
    let categories = [
        Value::from("fuel"),
        Value::from("dining"),
        Value::from("Fuel"),
        Value::Int(5),
        Value::Time(parse_ts("2026-10-01T12:00:00Z").unwrap()),
        Value::Null,
    ];
    let mut events: Vec<Event> = categories
        .iter()
        .zip(1u8..)
        .map(|(c, n)| {
            let ts = format!("2026-10-01T0{n}:00:00Z");
            ev(n, "t", &ts, &[("category", c.clone()), ("direction", "debit".into())])
        })
        .collect();
    events.push(ev(9, "t", "2026-10-01T09:00:00Z", &[("direction", "credit".into())]));
    let mut st = FeatureState::default();
    for e in &events {
        st.apply(&set, e);
    }
    let streamed = st.view(&set, None).all();
    let batch = crate::batch::evaluate(&set, &events, parse_ts("2026-10-01T09:00:00Z").unwrap());
    assert_eq!(streamed, batch);
    let counts: Vec<(&str, i64)> = ["fuel", "fuel_too", "fuel_debit", "dining", "five", "noon", "not_fuel"]
        .into_iter()
        .map(|name| (name, streamed[name].as_f64().unwrap() as i64))
        .collect();
    assert_eq!(
        counts,
        [
            ("fuel", 1),
            ("fuel_too", 1),
            ("fuel_debit", 1),
            ("dining", 1),
            ("five", 0),
            ("noon", 1),
            // Only two texts differ from "fuel": against null or a value of another
            // type, `!=` is neither true nor false.
            ("not_fuel", 2)
        ]
    );
}
