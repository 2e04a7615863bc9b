//! The tested guarantee of DESIGN.md §3: streaming (the incremental state an actor
//! keeps, fed in any arrival order) and batch (features computed directly from the
//! whole history) give the same values at any instant at or after the latest event:
//! exactly for integers and strings, within 1e-9 relative for decimals. Streams cross
//! month ends and a daylight-saving change, in three time zones, with empty windows.

use chrono::{DateTime, TimeDelta, Utc};
use persona_event::time::parse_ts;
use persona_event::{Event, EventId, Token, Value};
use persona_features::{FeatureSet, FeatureSetDocument, FeatureState, batch};
use proptest::prelude::*;

const SET: &str = r#"
kind: FeatureSet
metadata: {name: every-aggregation}
spec:
  timezone: TZ
  features:
    - {name: n_life, on: transaction, agg: count}
    - {name: n_1d, on: [transaction, card_swipe], agg: count, window: 1d}
    - {name: n_3h, on: transaction, agg: count, window: 3h}
    - {name: sum_7d, on: transaction, value: event.amount, agg: sum, window: 7d}
    - {name: sum_30d, on: transaction, value: event.amount, agg: sum, window: 30d}
    - {name: sum_3d, on: transaction, value: event.amount, agg: sum, window: 3d}
    - {name: n_30d, on: transaction, agg: count, window: 30d}
    - {name: int_sum_30d, on: transaction, value: event.units, agg: sum, window: 30d}
    - {name: avg_30d, on: transaction, value: event.amount, agg: avg, window: 30d}
    - {name: min_24h, on: transaction, value: event.amount, agg: min, window: 24h}
    - {name: max_30d, on: balance, value: event.balance, agg: max, window: 30d}
    - {name: first_cat, on: transaction, value: event.category, agg: first}
    - {name: last_mall_7d, on: card_swipe, value: event.mall, agg: last, window: 7d}
    - {name: cats_30d, on: transaction, value: event.category, agg: distinct_count, window: 30d}
    - {name: days_30d, on: [transaction, card_swipe], agg: distinct_days, window: 30d}
    - {name: months_60d, on: transaction, where: event.amount >= 500, agg: distinct_months, window: 60d}
    - {name: decayed, on: transaction, value: event.amount, agg: decay, decay: 3d}
    - {name: decayed_n_14d, on: card_swipe, agg: count, decay: 2d, window: 14d}
    - {name: by_cat_7d, on: transaction, value: event.amount, agg: sum, window: 7d, by: event.category}
    - {name: early_days, on: transaction, where: day_of_month(event.ts) <= 3, agg: count, window: 30d}
    - {name: fuel_7d, on: transaction, where: event.category == "fuel", value: event.amount, agg: sum, window: 7d}
    - {name: big_dining_30d, on: transaction, where: event.category == "dining" and event.amount >= 100, agg: count, window: 30d}
    - {name: mall_a_days, on: card_swipe, where: '"A" == event.mall', agg: distinct_days, window: 30d}
  derived:
    - {name: busy, expr: "features.n_1d >= 3 or features.sum_7d > 2000"}
    - {name: fuel_share, expr: "coalesce(features.by_cat_7d[\"fuel\"], 0) / (features.sum_7d + 1)"}
"#;

fn set(tz: &str) -> FeatureSet {
    FeatureSet::compile(&FeatureSetDocument::from_yaml(&SET.replace("TZ", tz)).unwrap()).unwrap()
}

/// 2026-01-25 to early April: crosses January, February and March month ends and the
/// US daylight-saving change of 2026-03-08.
fn base() -> DateTime<Utc> {
    parse_ts("2026-01-25T00:00:00Z").unwrap()
}

fn event(i: usize, kind: u8, minutes: i64, amount: u32, cat: u8, mall: u8) -> Event {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    let kind = ["transaction", "card_swipe", "balance"][kind as usize];
    let category = ["fuel", "dining", "grocery", "travel"][cat as usize];
    let mut attrs = std::collections::BTreeMap::new();
    attrs.insert("amount".to_owned(), Value::Float(f64::from(amount) / 4.0));
    attrs.insert("units".to_owned(), Value::Int(i64::from(amount % 97)));
    attrs.insert("category".to_owned(), Value::from(category));
    attrs.insert("balance".to_owned(), Value::Int(i64::from(amount) * 100));
    if mall > 0 {
        attrs.insert("mall".to_owned(), Value::from(["A", "B"][(mall - 1) as usize]));
    }
    Event {
        id: EventId::from_bytes(id),
        token: Token::from_bytes([7; 16]),
        kind: kind.to_owned(),
        ts: base() + TimeDelta::minutes(minutes),
        attrs,
    }
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        (Value::Float(_), _) | (_, Value::Float(_)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-12),
            _ => false,
        },
        _ => a == b,
    }
}

fn streams() -> impl Strategy<Value = (Vec<Event>, Vec<usize>, Vec<i64>, usize, usize)> {
    let one = (0u8..3, 0i64..100_000, 1u32..4_000, 0u8..4, 0u8..3);
    (proptest::collection::vec(one, 1..70), 0usize..3).prop_flat_map(|(raw, tz)| {
        let events: Vec<Event> = raw
            .into_iter()
            .enumerate()
            .map(|(i, (k, m, a, c, mall))| event(i, k, m, a, c, mall))
            .collect();
        let order = Just((0..events.len()).collect::<Vec<_>>()).prop_shuffle();
        // Instants after the latest event: at once, hours later, weeks later (empty windows).
        let later = proptest::collection::vec(prop_oneof![Just(0i64), 0i64..600, 0i64..90_000], 1..4);
        // Where the actor is passivated to a snapshot and read back mid-stream.
        let restart = 0..=events.len();
        (Just(events), order, later, Just(tz), restart)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn streaming_equals_batch((events, order, later, tz, restart) in streams()) {
        let set = set(["UTC", "Asia/Kolkata", "America/New_York"][tz]);
        let mut state = FeatureState::default();
        for (n, &i) in order.iter().enumerate() {
            if n == restart {
                state = FeatureState::decode(&state.encode(&set), &set).unwrap();
            }
            state.apply(&set, &events[i]);
        }
        let latest = events.iter().map(|e| e.ts).max().unwrap();
        for minutes in later {
            let at = latest + TimeDelta::minutes(minutes);
            let streamed = state.view(&set, Some(at)).all();
            let batched = batch::evaluate(&set, &events, at);
            prop_assert_eq!(streamed.len(), batched.len());
            for (name, s) in &streamed {
                let b = &batched[name];
                prop_assert!(close(s, b), "{} at {}: streaming {} batch {}", name, at, s, b);
            }
            // The snapshot carries the same state.
            let back = FeatureState::decode(&state.encode(&set), &set).unwrap();
            prop_assert_eq!(back.view(&set, Some(at)).all(), streamed);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A what-if (Decide) applies one event and puts the state back: while applied it
    /// is the state `apply` gives, and afterwards exactly the state before, whatever
    /// the event's type, time (late, early, far ahead) or the groups it creates.
    #[test]
    fn an_undone_event_leaves_no_trace((events, order, _later, tz, cut) in streams(), probe in (0u8..3, 0i64..140_000, 1u32..4_000, 0u8..4, 0u8..3)) {
        let set = set(["UTC", "Asia/Kolkata", "America/New_York"][tz]);
        let mut state = FeatureState::default();
        for &i in &order[..cut.min(order.len())] {
            state.apply(&set, &events[i]);
        }
        let before = state.clone();
        let (kind, minutes, amount, cat, mall) = probe;
        let probe = event(10_000, kind, minutes, amount, cat, mall);
        let mut applied = state.clone();
        applied.apply(&set, &probe);

        let undo = state.apply_undoable(&set, &probe);
        prop_assert_eq!(&state, &applied);
        prop_assert_eq!(state.view(&set, None).all(), applied.view(&set, None).all());
        state.undo(undo);
        prop_assert_eq!(&state, &before);
    }
}
