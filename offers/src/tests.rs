//! Matching over a small FeatureSet and whole customers.

use persona_event::time::parse_ts;
use persona_event::{Channel, Event, EventId, Token, Value};
use persona_features::{FeatureSet, FeatureSetDocument};

use crate::{Customer, Engine, Gate, Offer, OfferDocument};

const SET: &str = r#"
kind: FeatureSet
metadata: {name: retail}
spec:
  timezone: Asia/Kolkata
  features:
    - {name: fuel_spend_30d, on: transaction, where: event.category == "fuel", value: event.amount, agg: sum, window: 30d}
    - {name: min_balance_90d, on: balance, value: event.balance, agg: min, window: 90d}
"#;

const CAR_LOAN: &str = r#"
kind: Offer
metadata: {name: car-loan}
spec:
  title: Car loan at a special rate
  priority: 80
  trigger: {on: [transaction, card_swipe]}
  when: |
    features.fuel_spend_30d > 3000
    and features.min_balance_90d >= 300000
    and profile.credit_band in ["A", "B"]
  channels: [push, email]
  variants:
    - {name: rate-7-9, weight: 50, message: "Drive home your new car at 7.9% p.a."}
    - {name: zero-fee, weight: 50, message: "Car loan with zero processing fee"}
  limits: {perCustomer: "1 per 30d", afterNegative: 60d}
  valid: {from: 2026-01-01, until: 2026-12-31}
"#;

const FUEL_CASHBACK: &str = r#"
kind: Offer
metadata: {name: fuel-cashback}
spec:
  title: Fuel cashback
  priority: 10
  trigger: {on: [transaction]}
  when: event.category == "fuel"
  channels: [sms]
  variants: [{name: five, message: "5% back on fuel"}]
"#;

fn engine(offers: &[&str]) -> Engine {
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(SET).unwrap()).unwrap();
    let offers = offers
        .iter()
        .map(|o| Offer::compile(&OfferDocument::from_yaml(o).unwrap(), &set).unwrap())
        .collect();
    Engine::new(set, offers)
}

fn ev(n: u8, kind: &str, ts: &str, attrs: &[(&str, Value)]) -> Event {
    Event {
        id: EventId::from_bytes([n; 16]),
        token: token(),
        kind: kind.into(),
        ts: parse_ts(ts).unwrap(),
        attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

fn token() -> Token {
    Token::from_bytes([7; 16])
}

fn fuel(n: u8, ts: &str) -> Event {
    ev(
        n,
        "transaction",
        ts,
        &[("category", "fuel".into()), ("amount", Value::Float(1600.0))],
    )
}

fn saanvi(engine: &Engine) -> Customer {
    let mut c = Customer::default();
    let contacts = Value::List(vec!["email".into(), "phone".into()]);
    c.apply(
        engine,
        &ev(
            1,
            "profile",
            "2026-10-01T00:00:00Z",
            &[("credit_band", "A".into()), ("contacts", contacts)],
        ),
    );
    c.apply(
        engine,
        &ev(
            2,
            "balance",
            "2026-10-02T00:00:00Z",
            &[("balance", Value::Int(350_000))],
        ),
    );
    c
}

#[test]
fn a_customer_who_fits_gets_one_match_and_the_limit_holds() {
    let engine = engine(&[CAR_LOAN, FUEL_CASHBACK]);
    let mut c = saanvi(&engine);
    let e1 = fuel(10, "2026-10-03T05:00:00Z");
    assert!(c.apply(&engine, &e1));
    // 1600 of fuel is not yet > 3000: the lower-priority fuel offer wins, on sms.
    let m = c.decide(&engine, &token(), &e1).unwrap();
    assert_eq!(
        (m.decision.offer.as_str(), m.decision.channel),
        ("fuel-cashback", Channel::Sms)
    );

    let e2 = fuel(11, "2026-10-04T05:00:00Z");
    c.apply(&engine, &e2);
    let m = c.decide(&engine, &token(), &e2).unwrap();
    assert_eq!(m.decision.offer, "car-loan");
    // No push contact: email is the first channel that reaches her.
    assert_eq!(m.decision.channel, Channel::Email);
    assert_eq!(m.decision.event_id, Some(e2.id.clone()));
    assert_eq!(m.decision.ts, e2.ts);
    assert_eq!(m.title, "Car loan at a special rate");

    // 1 per 30d: the next fuel purchase falls back to the cashback.
    let e3 = fuel(12, "2026-10-05T05:00:00Z");
    c.apply(&engine, &e3);
    assert_eq!(
        c.decide(&engine, &token(), &e3).unwrap().decision.offer,
        "fuel-cashback"
    );
    let why = c.explain(&engine, &token(), "car-loan", Some(&e3), None).unwrap();
    assert_eq!(why.outcome, Err(Gate::PerCustomerLimit));
    assert!(why.clauses.iter().all(|cl| cl.passed), "{why}");
    assert_eq!(why.clauses.len(), 3);
    assert_eq!(
        why.clauses[0].features,
        vec![("fuel_spend_30d".to_owned(), Value::Float(4800.0))]
    );
}

#[test]
fn a_redelivered_event_changes_nothing() {
    let engine = engine(&[CAR_LOAN]);
    let mut c = saanvi(&engine);
    let e = fuel(10, "2026-10-03T05:00:00Z");
    assert!(c.apply(&engine, &e));
    let before = c.clone();
    assert!(!c.apply(&engine, &e));
    assert_eq!(c, before);
}

#[test]
fn variant_choice_is_stable_per_token_and_follows_weights() {
    let engine = engine(&[CAR_LOAN]);
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..400u32 {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.to_le_bytes());
        let t = Token::from_bytes(b);
        let mut c = saanvi(&engine);
        for (n, day) in [(10, "03"), (11, "04")] {
            let e = fuel(n, &format!("2026-10-{day}T05:00:00Z"));
            c.apply(&engine, &e);
            if let Some(m) = c.decide(&engine, &t, &e) {
                let again = saanvi_variant(&engine, &t);
                assert_eq!(m.decision.variant, again);
                *counts.entry(m.decision.variant).or_default() += 1;
            }
        }
    }
    assert_eq!(counts.values().sum::<u32>(), 400);
    assert!(counts.values().all(|&n| (150..250).contains(&n)), "{counts:?}");
}

fn saanvi_variant(engine: &Engine, t: &Token) -> String {
    let mut c = saanvi(engine);
    let e1 = fuel(10, "2026-10-03T05:00:00Z");
    let e2 = fuel(11, "2026-10-04T05:00:00Z");
    c.apply(engine, &e1);
    c.apply(engine, &e2);
    c.decide(engine, t, &e2).unwrap().decision.variant
}

#[test]
fn a_per_channel_opt_out_blocks_only_that_channel_and_can_be_lifted() {
    let engine = engine(&[CAR_LOAN]);
    let mut c = saanvi(&engine);
    // A hard bounce on email, as the de-tokenizer reports it.
    c.apply(
        &engine,
        &ev(
            3,
            "preference",
            "2026-10-02T01:00:00Z",
            &[("opt_out_email", Value::Bool(true))],
        ),
    );
    let e1 = fuel(10, "2026-10-03T05:00:00Z");
    let e2 = fuel(11, "2026-10-04T05:00:00Z");
    c.apply(&engine, &e1);
    c.apply(&engine, &e2);
    let outcome = |c: &Customer| {
        c.explain(&engine, &token(), "car-loan", Some(&e2), None)
            .unwrap()
            .outcome
    };
    assert_eq!(outcome(&c), Err(Gate::NoChannel));
    // A later `false` lifts it.
    c.apply(
        &engine,
        &ev(
            4,
            "preference",
            "2026-10-02T02:00:00Z",
            &[("opt_out_email", Value::Bool(false))],
        ),
    );
    assert!(outcome(&c).is_ok(), "{:?}", outcome(&c));
}

#[test]
fn opt_outs_negative_responses_and_validity_block() {
    let engine = engine(&[CAR_LOAN]);
    let mut c = saanvi(&engine);
    c.apply(
        &engine,
        &ev(
            3,
            "preference",
            "2026-10-02T01:00:00Z",
            &[("opt_out_channels", "email".into())],
        ),
    );
    let e1 = fuel(10, "2026-10-03T05:00:00Z");
    let e2 = fuel(11, "2026-10-04T05:00:00Z");
    c.apply(&engine, &e1);
    c.apply(&engine, &e2);
    assert_eq!(
        c.explain(&engine, &token(), "car-loan", Some(&e2), None)
            .unwrap()
            .outcome,
        Err(Gate::NoChannel)
    );

    let mut c = saanvi(&engine);
    let resp = [("offer", Value::from("car-loan")), ("outcome", Value::from("negative"))];
    c.apply(&engine, &ev(4, "offer_response", "2026-09-20T00:00:00Z", &resp));
    c.apply(&engine, &e1);
    c.apply(&engine, &e2);
    assert_eq!(
        c.explain(&engine, &token(), "car-loan", Some(&e2), None)
            .unwrap()
            .outcome,
        Err(Gate::AfterNegative)
    );

    let mut c = saanvi(&engine);
    c.apply(&engine, &e1);
    c.apply(&engine, &e2);
    let after = parse_ts("2027-01-01T00:00:00Z").ok();
    assert_eq!(
        c.explain(&engine, &token(), "car-loan", None, after).unwrap().outcome,
        Err(Gate::Expired)
    );
    // 2026-12-31 local is still valid (until is inclusive).
    let last_day = parse_ts("2026-12-31T18:00:00Z").ok();
    assert_ne!(
        c.explain(&engine, &token(), "car-loan", None, last_day)
            .unwrap()
            .outcome,
        Err(Gate::Expired)
    );
}

#[test]
fn snapshots_round_trip() {
    let engine = engine(&[CAR_LOAN]);
    let mut c = saanvi(&engine);
    let e = fuel(10, "2026-10-03T05:00:00Z");
    c.apply(&engine, &e);
    c.decide(&engine, &token(), &e);
    let back = Customer::decode(&c.encode(&engine), &engine).unwrap();
    assert_eq!(back, c);
}

#[test]
fn offer_errors_name_the_field() {
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(SET).unwrap()).unwrap();
    let bad = CAR_LOAN
        .replace("1 per 30d", "once a month")
        .replace("features.min_balance_90d", "features.min_balanse_90d");
    let errors = Offer::compile(&OfferDocument::from_yaml(&bad).unwrap(), &set).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path()).collect();
    assert_eq!(paths, vec!["spec.when", "spec.limits.perCustomer"]);
    let unknown = CAR_LOAN.replace("trigger: {on:", "trigger: {every: x, on:");
    assert!(OfferDocument::from_yaml(&unknown).is_err());
}

mod contact_policy {
    use super::*;
    use crate::{ContactPolicy, ContactPolicyDocument};

    fn with_policy(spec: &str) -> Engine {
        let doc = format!("kind: ContactPolicy\nmetadata: {{name: default}}\nspec: {spec}\n");
        let policy = ContactPolicy::compile(&ContactPolicyDocument::from_yaml(&doc).unwrap()).unwrap();
        engine(&[FUEL_CASHBACK]).with_policy(policy)
    }

    /// Applies and decides one event; the matches that go out now, released
    /// reminders first (as a partition does).
    fn step(engine: &Engine, c: &mut Customer, e: &Event) -> Vec<(String, String)> {
        c.apply(engine, e);
        let mut out: Vec<_> = c.release_due(engine, c.clock().unwrap()).into_iter().collect();
        out.extend(c.decide(engine, &token(), e));
        out.iter()
            .map(|m| (m.decision.offer.clone(), persona_event::time::format_ts(&m.decision.ts)))
            .collect()
    }

    #[test]
    fn at_most_max_per_day_local_days() {
        let engine = with_policy("{maxPerDay: 1}");
        let mut c = saanvi(&engine);
        // 10:30 and 18:30 in Kolkata the same day: one match.
        assert_eq!(step(&engine, &mut c, &fuel(10, "2026-10-03T05:00:00Z")).len(), 1);
        assert!(step(&engine, &mut c, &fuel(11, "2026-10-03T13:00:00Z")).is_empty());
        // 2026-10-03T19:00Z is already the 4th in Kolkata: a new day.
        assert_eq!(step(&engine, &mut c, &fuel(12, "2026-10-03T19:00:00Z")).len(), 1);
    }

    #[test]
    fn quiet_hours_defer_the_match_to_their_end_durably() {
        let engine = with_policy("{quietHours: {from: \"21:00\", to: \"09:00\"}}");
        let mut c = saanvi(&engine);
        // 23:30 in Kolkata: nothing now, a reminder for 09:00.
        assert!(step(&engine, &mut c, &fuel(10, "2026-10-03T18:00:00Z")).is_empty());
        assert_eq!(c.pending.len(), 1);
        // The reminder survives a snapshot.
        let mut c = Customer::decode(&c.encode(&engine), &engine).unwrap();
        assert_eq!(
            c.next_due(),
            Some(parse_ts("2026-10-04T03:30:00Z").unwrap().timestamp_micros())
        );
        // Her next event, at 11:00, releases it (at 09:00) before its own match.
        let out = step(&engine, &mut c, &fuel(11, "2026-10-04T05:30:00Z"));
        assert_eq!(
            out,
            vec![
                ("fuel-cashback".to_owned(), "2026-10-04T03:30:00Z".to_owned()),
                ("fuel-cashback".to_owned(), "2026-10-04T05:30:00Z".to_owned()),
            ]
        );
        assert!(c.pending.is_empty());
    }

    #[test]
    fn preferred_days_defer_and_a_full_day_pushes_a_reminder_to_the_next() {
        let engine = with_policy(
            "{maxPerDay: 1, quietHours: {from: \"21:00\", to: \"09:00\"}, respectPreferredDays: true, timezone: UTC}",
        );
        let mut c = saanvi(&engine);
        c.apply(
            &engine,
            &ev(
                3,
                "preference",
                "2026-10-02T00:00:00Z",
                &[("preferred_days", "sat,sun".into())],
            ),
        );
        // Tuesday 2026-10-06 and Wednesday: both deferred to Saturday 09:00; the
        // second finds Saturday's quota spent and moves to Sunday 09:00.
        assert!(step(&engine, &mut c, &fuel(10, "2026-10-06T12:00:00Z")).is_empty());
        assert!(step(&engine, &mut c, &fuel(11, "2026-10-07T12:00:00Z")).is_empty());
        let released = c.release_due(&engine, parse_ts("2026-10-12T00:00:00Z").unwrap());
        let times: Vec<String> = released
            .iter()
            .map(|m| persona_event::time::format_ts(&m.decision.ts))
            .collect();
        assert_eq!(times, vec!["2026-10-10T09:00:00Z", "2026-10-11T09:00:00Z"]);
        // Match ids are those of the triggering events: nothing is decided twice.
        assert_ne!(released[0].decision.match_id, released[1].decision.match_id);
        assert!(c.pending.is_empty());
    }

    #[test]
    fn opt_outs_still_hold_under_a_policy() {
        let engine = with_policy("{maxPerDay: 5}");
        let mut c = saanvi(&engine);
        c.apply(
            &engine,
            &ev(
                3,
                "preference",
                "2026-10-02T00:00:00Z",
                &[("opt_out_channels", "sms".into())],
            ),
        );
        assert!(step(&engine, &mut c, &fuel(10, "2026-10-03T05:00:00Z")).is_empty());
        assert!(c.pending.is_empty());
    }
}

mod arbitration_and_holdouts {
    use super::*;
    use crate::in_control;

    fn offer(name: &str, extra: &str) -> String {
        format!(
            "kind: Offer\nmetadata: {{name: {name}}}\nspec:\n  title: {name}\n  trigger: {{on: [transaction]}}\n  when: event.category == \"fuel\"\n  channels: [sms]\n  variants: [{{name: a, message: m}}]\n{extra}"
        )
    }

    fn tokens(n: u32) -> impl Iterator<Item = Token> {
        (0..n).map(|i| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_le_bytes());
            b[4] = 0xa5;
            Token::from_bytes(b)
        })
    }

    #[test]
    fn variant_weights_hold_within_two_percent_over_100k_tokens() {
        let weighted = offer("w", "").replace(
            "variants: [{name: a, message: m}]",
            "variants: [{name: a, weight: 70, message: m}, {name: b, weight: 20, message: m}, {name: c, weight: 10, message: m}]",
        );
        let engine = engine(&[&weighted]);
        let mut c = saanvi(&engine);
        c.apply(&engine, &fuel(10, "2026-10-03T05:00:00Z"));
        let event = fuel(10, "2026-10-03T05:00:00Z");
        let mut counts = std::collections::BTreeMap::<String, u32>::new();
        for t in tokens(100_000) {
            let why = c.explain(&engine, &t, "w", Some(&event), None).unwrap();
            *counts.entry(why.outcome.unwrap().0).or_default() += 1;
        }
        for (variant, share) in [("a", 0.70), ("b", 0.20), ("c", 0.10)] {
            let got = f64::from(counts[variant]) / 100_000.0;
            assert!((got - share).abs() < 0.02, "{variant}: {got} vs {share} ({counts:?})");
        }
    }

    #[test]
    fn a_control_group_is_recorded_not_delivered() {
        let holdout = offer("h", "  control: 5%\n");
        let engine = engine(&[&holdout]);
        let o = engine.catalog.get("h").unwrap();
        let controls = tokens(100_000).filter(|t| in_control(o, t)).count();
        assert!((4_700..5_300).contains(&controls), "{controls}");
        let control = tokens(1000).find(|t| in_control(o, t)).unwrap();
        let treated = tokens(1000).find(|t| !in_control(o, t)).unwrap();
        for (t, delivered) in [(control, false), (treated, true)] {
            let mut c = saanvi(&engine);
            let e = fuel(10, "2026-10-03T05:00:00Z");
            c.apply(&engine, &e);
            assert_eq!(c.decide(&engine, &t, &e).is_some(), delivered);
            assert_eq!(c.sent.len(), 1, "recorded either way");
            assert_eq!(c.sent[0].control, !delivered);
            assert_eq!(c.explain(&engine, &t, "h", None, None).unwrap().control, !delivered);
            // The snapshot keeps the group.
            let back = Customer::decode(&c.encode(&engine), &engine).unwrap();
            assert_eq!(back.sent, c.sent);
        }
    }

    #[test]
    fn a_paused_offer_never_matches() {
        let engine = engine(&[&offer("p", "  paused: true\n")]);
        let mut c = saanvi(&engine);
        let e = fuel(10, "2026-10-03T05:00:00Z");
        c.apply(&engine, &e);
        assert!(c.decide(&engine, &token(), &e).is_none());
        let why = c.explain(&engine, &token(), "p", Some(&e), None).unwrap();
        assert_eq!(why.outcome, Err(Gate::Paused));
    }

    #[test]
    fn value_ranks_offers_of_equal_priority_then_name() {
        let low = offer("a-low", "  priority: 5\n  value: 10\n");
        let high = offer("b-high", "  priority: 5\n  value: event.amount\n");
        let none = offer("c-none", "  priority: 5\n");
        let top = offer("z-top", "  priority: 6\n  value: 0\n  paused: true\n");
        let engine = engine(&[&low, &high, &none, &top]);
        let mut c = saanvi(&engine);
        let e = fuel(10, "2026-10-03T05:00:00Z");
        c.apply(&engine, &e);
        // 1600 > 10: `b-high` wins its tier; the paused higher priority does not count.
        assert_eq!(c.decide(&engine, &token(), &e).unwrap().decision.offer, "b-high");
        let engine = super::engine(&[&none, &offer("d-none", "  priority: 5\n")]);
        let mut c = saanvi(&engine);
        c.apply(&engine, &e);
        assert_eq!(c.decide(&engine, &token(), &e).unwrap().decision.offer, "c-none");
    }

    #[test]
    fn bad_shares_and_values_name_the_field() {
        let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(SET).unwrap()).unwrap();
        for (extra, field) in [
            ("  control: 150%\n", "spec.control"),
            ("  control: five\n", "spec.control"),
            ("  control: 0%\n", "spec.control"),
            ("  value: \"\\\"text\\\"\"\n", "spec.value"),
        ] {
            let doc = OfferDocument::from_yaml(&offer("x", extra)).unwrap();
            let errors = Offer::compile(&doc, &set).unwrap_err();
            assert!(
                errors.iter().any(|e| e.to_string().starts_with(field)),
                "{extra}: {errors:?}"
            );
        }
    }
}

#[test]
fn uplift_compares_treated_and_control_response_rates() {
    let holdout = "kind: Offer\nmetadata: {name: h}\nspec:\n  title: h\n  trigger: {on: [transaction]}\n  when: event.category == \"fuel\"\n  channels: [sms]\n  variants: [{name: a, message: m}]\n  control: 20%\n";
    let engine = engine(&[holdout]);
    let offer = engine.catalog.get("h").unwrap();
    let mut customers = Vec::new();
    let mut expected = crate::report::Uplift {
        offer: "h".into(),
        ..Default::default()
    };
    for i in 0..2000u32 {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.to_le_bytes());
        let t = Token::from_bytes(b);
        let mut c = saanvi(&engine);
        // A positive response before the match does not count.
        c.apply(
            &engine,
            &ev(
                5,
                "offer_response",
                "2026-10-02T12:00:00Z",
                &[("offer", "h".into()), ("outcome", "positive".into())],
            ),
        );
        let e = fuel(10, "2026-10-03T05:00:00Z");
        c.apply(&engine, &e);
        c.decide(&engine, &t, &e);
        let control = crate::in_control(offer, &t);
        let converts = if control { i % 10 == 0 } else { i % 4 == 0 };
        if converts {
            c.apply(
                &engine,
                &ev(
                    6,
                    "offer_response",
                    "2026-10-05T12:00:00Z",
                    &[("offer", "h".into()), ("outcome", "positive".into())],
                ),
            );
        }
        if control {
            expected.control += 1;
            expected.control_converted += u64::from(converts);
        } else {
            expected.treated += 1;
            expected.treated_converted += u64::from(converts);
        }
        customers.push(c);
    }
    let report = crate::report::uplift(&customers);
    assert_eq!(report, vec![expected.clone()]);
    assert!(expected.control > 300 && expected.treated > 1500, "{expected:?}");
    let uplift = report[0].uplift().unwrap();
    assert!((uplift - (0.25 - 0.10)).abs() < 0.03, "{uplift}");
}

mod sweeps {
    use super::*;

    const WEEKLY: &str = "kind: Offer\nmetadata: {name: weekly}\nspec:\n  title: Weekly fuel tip\n  trigger: {schedule: \"0 9 * * MON\"}\n  when: features.fuel_spend_30d > 1000\n  channels: [sms]\n  variants: [{name: a, message: m}]\n";

    #[test]
    fn a_sweep_evaluates_the_offer_as_of_its_instant_once() {
        let engine = engine(&[WEEKLY, FUEL_CASHBACK]);
        let mut c = saanvi(&engine);
        let e = fuel(10, "2026-10-03T05:00:00Z");
        c.apply(&engine, &e);
        // The scheduled offer is not triggered by events.
        assert_eq!(c.decide(&engine, &token(), &e).unwrap().decision.offer, "fuel-cashback");
        // Monday 2026-10-05 09:00 in Kolkata.
        let at = parse_ts("2026-10-05T03:30:00Z").unwrap();
        let m = c.sweep(&engine, &token(), "weekly", at).unwrap();
        assert_eq!((m.decision.ts, m.decision.event_id.clone()), (at, None));
        assert_eq!(
            m.decision.match_id,
            crate::match_id(&token(), "weekly", "sweep:2026-10-05T03:30:00Z")
        );
        // The same sweep again (a replay) decides nothing.
        assert!(c.sweep(&engine, &token(), "weekly", at).is_none());
        // 40 days later the 30-day window has emptied: `when` is false.
        let later = parse_ts("2026-11-16T03:30:00Z").unwrap();
        assert!(c.sweep(&engine, &token(), "weekly", later).is_none());
    }

    #[test]
    fn schedules_are_checked() {
        let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(SET).unwrap()).unwrap();
        for (yaml, field, says) in [
            (
                WEEKLY.replace("0 9 * * MON", "0 25 * * MON"),
                "spec.trigger.schedule",
                "hour `25`",
            ),
            (
                WEEKLY.replace(
                    "{schedule: \"0 9 * * MON\"}",
                    "{on: [transaction], schedule: \"0 9 * * MON\"}",
                ),
                "spec.trigger.schedule",
                "not both",
            ),
            (
                WEEKLY.replace("{schedule: \"0 9 * * MON\"}", "{}"),
                "spec.trigger",
                "or a schedule",
            ),
            (
                WEEKLY.replace("features.fuel_spend_30d > 1000", "event.amount > 1000"),
                "spec.when",
                "event",
            ),
        ] {
            let errors = Offer::compile(&OfferDocument::from_yaml(&yaml).unwrap(), &set).unwrap_err();
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert!(
                text.iter().any(|e| e.starts_with(field) && e.contains(says)),
                "{field} / {says}: {text:?}"
            );
        }
    }
}

mod chaining_and_budgets {
    use super::*;

    fn offer(name: &str, extra: &str) -> String {
        format!(
            "kind: Offer\nmetadata: {{name: {name}}}\nspec:\n  title: {name}\n  trigger: {{on: [transaction]}}\n  when: event.category == \"fuel\"\n  channels: [sms]\n  variants: [{{name: a, message: m}}]\n{extra}"
        )
    }

    fn respond(n: u8, ts: &str, offer: &str, outcome: &str) -> Event {
        ev(
            n,
            "offer_response",
            ts,
            &[("offer", offer.into()), ("outcome", outcome.into())],
        )
    }

    #[test]
    fn a_chained_offer_waits_for_the_response_within_its_window() {
        let follow_up = offer(
            "follow-up",
            "  after: {offer: teaser, response: positive, within: 7d}\n",
        );
        let engine = engine(&[&follow_up]);
        let mut c = saanvi(&engine);
        let e1 = fuel(10, "2026-10-03T05:00:00Z");
        c.apply(&engine, &e1);
        assert!(c.decide(&engine, &token(), &e1).is_none(), "no response yet");
        assert_eq!(
            c.explain(&engine, &token(), "follow-up", Some(&e1), None)
                .unwrap()
                .outcome,
            Err(Gate::ChainNotMet)
        );
        // A negative response does not open the chain; a positive one does, for 7 days.
        c.apply(&engine, &respond(20, "2026-10-04T00:00:00Z", "teaser", "negative"));
        let e2 = fuel(11, "2026-10-04T05:00:00Z");
        c.apply(&engine, &e2);
        assert!(c.decide(&engine, &token(), &e2).is_none());
        c.apply(&engine, &respond(21, "2026-10-05T00:00:00Z", "teaser", "positive"));
        let e3 = fuel(12, "2026-10-06T05:00:00Z");
        c.apply(&engine, &e3);
        assert_eq!(c.decide(&engine, &token(), &e3).unwrap().decision.offer, "follow-up");
        let mut late = saanvi(&engine);
        late.apply(&engine, &respond(21, "2026-10-05T00:00:00Z", "teaser", "positive"));
        let e4 = fuel(13, "2026-10-13T05:00:00Z");
        late.apply(&engine, &e4);
        assert!(
            late.decide(&engine, &token(), &e4).is_none(),
            "8 days later the window has closed"
        );
    }

    #[test]
    fn a_budget_counts_matches_over_all_customers_then_gives_way() {
        let capped = offer("capped", "  priority: 9\n  limits: {budget: 3}\n");
        let fallback = offer("fallback", "  priority: 1\n");
        let engine = engine(&[&capped, &fallback]);
        let mut won = Vec::new();
        for i in 0..5u8 {
            let mut c = saanvi(&engine);
            let e = fuel(10, "2026-10-03T05:00:00Z");
            c.apply(&engine, &e);
            let t = Token::from_bytes([i + 100; 16]);
            won.push(c.decide(&engine, &t, &e).unwrap().decision.offer);
        }
        assert_eq!(won, ["capped", "capped", "capped", "fallback", "fallback"]);
        assert_eq!(engine.catalog.budget_used(), vec![("capped".to_owned(), 3)]);
    }
}

/// `what_if` (the actor's answer to Decide) gives what applying and deciding would,
/// and leaves no trace: not in her state, not in an offer's budget.
mod what_if {
    use super::*;
    use crate::WhatIf;

    /// What applying and deciding on a copy gives, in `WhatIf` terms (`engine` is a
    /// twin of the one asked, so that the budget deciding takes is not the other's).
    fn on_a_copy(engine: &Engine, c: &Customer, t: &Token, e: &Event) -> WhatIf {
        let mut copy = c.clone();
        copy.apply(engine, e);
        let before = (copy.sent.len(), copy.pending.len());
        match copy.decide(engine, t, e) {
            Some(m) => WhatIf::Send(m.decision),
            None if copy.pending.len() > before.1 => {
                let p = copy.pending.last().unwrap();
                WhatIf::Deferred(p.decision.clone(), p.due)
            }
            None if copy.sent.len() > before.0 => WhatIf::Control(copy.sent.last().unwrap().clone()),
            None => WhatIf::None,
        }
    }

    #[test]
    fn it_answers_as_deciding_would_and_changes_nothing() {
        let budgeted = CAR_LOAN.replace("limits: {", "limits: {budget: 1, ");
        let engine = engine(&[&budgeted, FUEL_CASHBACK]);
        let twin = || super::engine(&[&budgeted, FUEL_CASHBACK]);
        let mut c = saanvi(&engine);
        // Not enough fuel yet: the cashback; then the car loan (fuel spend over 3000);
        // then a profile change and a repeated event id, tried on a copy / unchanged.
        let events = [
            fuel(10, "2026-10-03T05:00:00Z"),
            fuel(11, "2026-10-04T05:00:00Z"),
            ev(
                12,
                "card_swipe",
                "2026-10-05T05:00:00Z",
                &[("amount", Value::Float(10.0))],
            ),
            ev(13, "profile", "2026-10-05T06:00:00Z", &[("segment", "gold".into())]),
            fuel(10, "2026-10-03T05:00:00Z"),
        ];
        let mut answers = Vec::new();
        for e in &events {
            let before = c.clone();
            let expected = on_a_copy(&twin(), &c, &token(), e);
            let got = c.what_if(&engine, &token(), e);
            assert_eq!(got, expected, "{}", e.kind);
            assert_eq!(c, before, "her state is unchanged after {}", e.kind);
            answers.push(got);
            c.apply(&engine, e);
        }
        let offer = |w: &WhatIf| match w {
            WhatIf::Send(m) => m.offer.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(offer(&answers[0]), "fuel-cashback");
        assert_eq!(offer(&answers[1]), "car-loan");
        // Asked twice, the budget of one still has its unit: nothing was taken.
        assert_eq!(
            offer(&c.what_if(&engine, &token(), &fuel(14, "2026-10-06T05:00:00Z"))),
            "car-loan"
        );
        assert_eq!(engine.catalog.budget_used(), vec![("car-loan".to_owned(), 0)]);
    }

    #[test]
    fn deferred_and_control_answers_match_deciding() {
        let doc =
            "kind: ContactPolicy\nmetadata: {name: default}\nspec: {quietHours: {from: \"21:00\", to: \"09:00\"}}\n";
        let policy = crate::ContactPolicy::compile(&crate::ContactPolicyDocument::from_yaml(doc).unwrap()).unwrap();
        let engine = engine(&[FUEL_CASHBACK]).with_policy(policy);
        let mut c = saanvi(&engine);
        // 23:30 in Kolkata: deferred to 09:00.
        let night = fuel(10, "2026-10-03T18:00:00Z");
        let before = c.clone();
        let got = c.what_if(&engine, &token(), &night);
        assert!(matches!(got, WhatIf::Deferred(_, _)), "{got:?}");
        assert_eq!(got, on_a_copy(&engine, &c, &token(), &night));
        assert_eq!(c, before);

        let holdout = FUEL_CASHBACK.replace("priority: 10", "priority: 10\n  control: 50%");
        let engine = super::engine(&[&holdout]);
        let o = engine.catalog.get("fuel-cashback").unwrap();
        let t = (0..1000u32)
            .map(|i| {
                Token::from_bytes([
                    (i % 251) as u8,
                    (i / 251) as u8,
                    1,
                    2,
                    3,
                    4,
                    5,
                    6,
                    7,
                    8,
                    9,
                    10,
                    11,
                    12,
                    13,
                    14,
                ])
            })
            .find(|t| crate::in_control(o, t))
            .unwrap();
        let mut c = saanvi(&engine);
        let e = fuel(10, "2026-10-03T05:00:00Z");
        let got = c.what_if(&engine, &t, &e);
        assert!(matches!(got, WhatIf::Control(_)), "{got:?}");
        assert_eq!(got, on_a_copy(&engine, &c, &t, &e));
        assert!(c.sent.is_empty());
    }
}
