//! Evaluation tests: the null rules, each function, arithmetic and comparisons, and
//! a property test against Rust's own integer arithmetic.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use persona_event::Value;
use proptest::prelude::*;

use crate::{FeatureRef, Root, Schema, Scope, Type, compile};

#[derive(Debug, Default)]
struct TestScope {
    event: BTreeMap<String, Value>,
    features: BTreeMap<String, Value>,
    profile: BTreeMap<String, Value>,
    now: Option<DateTime<Utc>>,
    tz: Option<chrono_tz::Tz>,
    /// (offer, outcome or "sent", longest window that still sees it)
    history: Vec<(String, String, TimeDelta)>,
}

impl Scope for TestScope {
    fn event(&self, name: &str) -> Value {
        self.event.get(name).cloned().unwrap_or_default()
    }
    fn feature(&self, f: FeatureRef<'_>) -> Value {
        self.features.get(f.name).cloned().unwrap_or_default()
    }
    fn profile(&self, name: &str) -> Value {
        self.profile.get(name).cloned().unwrap_or_default()
    }
    fn now(&self) -> Option<DateTime<Utc>> {
        self.now
    }
    fn timezone(&self) -> chrono_tz::Tz {
        self.tz.unwrap_or(chrono_tz::UTC)
    }
    fn sent(&self, offer: &str, within: TimeDelta) -> bool {
        self.history
            .iter()
            .any(|(o, what, age)| o == offer && what == "sent" && *age <= within)
    }
    fn responded(&self, offer: &str, outcome: &str, within: TimeDelta) -> bool {
        self.history
            .iter()
            .any(|(o, what, age)| o == offer && what == outcome && *age <= within)
    }
}

/// Only `event` is required of a scope.
#[derive(Debug)]
struct EventOnly;
impl Scope for EventOnly {
    fn event(&self, name: &str) -> Value {
        if name == "amount" {
            Value::Int(60_000)
        } else {
            Value::Null
        }
    }
}

fn schema() -> Schema {
    Root::ALL
        .into_iter()
        .fold(Schema::new(), Schema::allow_root)
        .feature("n", Type::Number, false)
        .feature("spend_30d", Type::Number, true)
}

fn scope() -> TestScope {
    let t = |s: &str| Value::Time(persona_event::time::parse_ts(s).unwrap());
    let mut s = TestScope::default();
    s.event.insert("amount".into(), Value::Int(50_000));
    s.event.insert("rate".into(), Value::Float(7.9));
    s.event.insert("category".into(), "fuel".into());
    s.event.insert("ts".into(), t("2026-03-04T20:30:00Z"));
    s.event.insert("ts_text".into(), "2026-03-31T20:30:00Z".into());
    s.event.insert("tags".into(), Value::List(vec!["a".into(), "b".into()]));
    s.event.insert("zero".into(), Value::Int(0));
    let merchant = BTreeMap::from([("mall".to_owned(), Value::from("Phoenix"))]);
    s.event.insert("merchant".into(), Value::Map(merchant));
    s.features.insert("n".into(), Value::Int(3));
    let spend = BTreeMap::from([
        ("fuel".to_owned(), Value::Float(1200.0)),
        ("dining".to_owned(), Value::Int(300)),
    ]);
    s.features.insert("spend_30d".into(), Value::Map(spend));
    s.profile.insert("credit_band".into(), "A".into());
    s.now = Some(Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap());
    s.history = vec![
        ("car-loan".into(), "sent".into(), TimeDelta::days(10)),
        ("car-loan".into(), "positive".into(), TimeDelta::days(3)),
    ];
    s
}

fn eval(src: &str) -> Value {
    eval_in(src, &scope())
}

fn eval_in(src: &str, s: &dyn Scope) -> Value {
    compile(src, &schema())
        .unwrap_or_else(|d| panic!("{src}: {d:?}"))
        .eval(s)
}

fn holds(src: &str) -> bool {
    compile(src, &schema())
        .unwrap_or_else(|d| panic!("{src}: {d:?}"))
        .eval_bool(&scope())
}

#[test]
fn comparisons_with_null_are_false() {
    for src in [
        "profile.missing == \"a\"",
        "profile.missing != \"a\"",
        "profile.missing < 1",
        "profile.missing <= 1",
        "profile.missing > 1",
        "profile.missing >= 1",
        "profile.missing in [\"a\"]",
        "\"a\" in profile.missing",
        "profile.missing == profile.missing",
    ] {
        assert_eq!(eval(src), Value::Bool(false), "{src}");
    }
}

#[test]
fn logic_treats_null_as_false() {
    assert!(holds("not profile.missing"));
    assert!(!holds("profile.missing and true"));
    assert!(holds("profile.missing or true"));
    assert!(!holds("profile.missing or false"));
    assert_eq!(eval("not (profile.missing == 1)"), Value::Bool(true));
    assert!(!holds("profile.missing"));
}

#[test]
fn arithmetic_with_null_and_by_zero_is_null() {
    assert_eq!(eval("profile.missing + 1"), Value::Null);
    assert_eq!(eval("-profile.missing"), Value::Null);
    assert_eq!(eval("event.amount / event.zero"), Value::Null);
    assert_eq!(eval("event.rate / 0"), Value::Null);
    assert_eq!(eval("event.amount * 9223372036854775807"), Value::Null);
    assert!(!holds("event.amount / event.zero > 0"));
}

#[test]
fn numbers() {
    assert_eq!(eval("event.amount + 1"), Value::Int(50_001));
    assert_eq!(eval("event.amount / 4"), Value::Float(12_500.0));
    assert_eq!(eval("7 / 2"), Value::Float(3.5));
    assert_eq!(eval("event.rate * 10"), Value::Float(79.0));
    assert_eq!(eval("-event.amount"), Value::Int(-50_000));
    assert_eq!(eval("2 + 3 * 4 - 1"), Value::Int(13));
    assert!(holds("event.amount >= 50000 and event.amount == 50000.0"));
    assert!(holds("event.rate > 7 and event.rate < 8"));
}

#[test]
fn strings_times_and_durations() {
    assert_eq!(eval("event.category + \"-x\""), Value::from("fuel-x"));
    assert!(holds("event.category == \"fuel\" and event.category != \"dining\""));
    assert!(
        !holds("event.category != 5"),
        "different kinds are neither equal nor unequal"
    );
    assert_eq!(eval("event.ts_text - event.ts"), Value::Duration(TimeDelta::days(27)));
    let t = persona_event::time::parse_ts("2026-03-05T20:30:00Z").unwrap();
    assert_eq!(eval("event.ts + 1d"), Value::Time(t));
    assert_eq!(eval("event.ts_text - 26d"), Value::Time(t));
    assert!(holds("event.ts_text - event.ts > 2w"));
    assert!(holds("event.ts < event.ts_text"));
    assert_eq!(eval("12h * 2"), Value::Duration(TimeDelta::days(1)));
    assert_eq!(eval("3d / 2"), Value::Duration(TimeDelta::hours(36)));
    assert_eq!(eval("3d / 12h"), Value::Float(6.0));
    assert_eq!(eval("1d - 25h"), Value::Duration(TimeDelta::hours(-1)));
}

#[test]
fn membership_and_paths() {
    assert!(holds("profile.credit_band in [\"A\", \"B\"]"));
    assert!(!holds("profile.credit_band in [\"C\"]"));
    assert!(holds("\"a\" in event.tags"));
    assert!(holds("3 in [1.0, 3.0]"));
    assert!(holds("\"fuel\" in features.spend_30d"));
    assert_eq!(eval("features.spend_30d[\"fuel\"]"), Value::Float(1200.0));
    assert_eq!(eval("features.spend_30d[event.category]"), Value::Float(1200.0));
    assert_eq!(eval("features.spend_30d[\"travel\"]"), Value::Null);
    assert_eq!(eval("event.merchant.mall"), Value::from("Phoenix"));
    assert_eq!(eval("event[\"merchant\"][\"mall\"]"), Value::from("Phoenix"));
    assert_eq!(eval("event.tags[1]"), Value::from("b"));
    assert_eq!(eval("event.tags[2]"), Value::Null);
    assert_eq!(eval("[event.amount, 1][0]"), Value::Int(50_000));
    assert_eq!(eval("event.amount.x"), Value::Null);
}

#[test]
fn time_functions_use_the_scope_zone() {
    assert_eq!(eval("day_of_month(event.ts)"), Value::Int(4));
    assert_eq!(eval("hour(event.ts)"), Value::Int(20));
    assert_eq!(eval("day_of_month(event.ts_text)"), Value::Int(31));
    let kolkata = TestScope {
        tz: Some(chrono_tz::Asia::Kolkata),
        ..scope()
    };
    let kolkata = TestScope {
        event: scope().event,
        ..kolkata
    };
    assert_eq!(eval_in("day_of_month(event.ts)", &kolkata), Value::Int(5));
    assert_eq!(eval_in("hour(event.ts)", &kolkata), Value::Int(2));
    assert_eq!(
        eval_in("day_of_month(\"2026-03-31T23:00:00Z\")", &kolkata),
        Value::Int(1)
    );
    assert_eq!(eval("hour(event.category)"), Value::Null);
    assert_eq!(eval("hour(profile.missing)"), Value::Null);
}

#[test]
fn days_since_counts_whole_elapsed_days() {
    assert_eq!(eval("days_since(event.ts)"), Value::Int(5));
    assert_eq!(eval("days_since(\"2026-03-10T12:00:01Z\")"), Value::Int(-1));
    assert_eq!(
        eval_in("days_since(event.ts)", &TestScope { now: None, ..scope() }),
        Value::Null
    );
}

#[test]
fn history_functions_ask_the_scope() {
    assert!(holds("sent(\"car-loan\", 30d)"));
    assert!(!holds("sent(\"car-loan\", 7d)"));
    assert!(holds("responded(\"car-loan\", \"positive\", 7d)"));
    assert!(!holds("responded(\"car-loan\", \"negative\", 7d)"));
    assert!(!holds("sent(\"car-loan\", profile.missing)"));
    assert!(holds("not sent(\"other\", 1w)"));
}

#[test]
fn value_functions() {
    assert_eq!(
        eval("coalesce(profile.missing, event.category, \"x\")"),
        Value::from("fuel")
    );
    assert_eq!(eval("coalesce(profile.missing)"), Value::Null);
    assert_eq!(eval("min(3, event.rate, profile.missing)"), Value::Int(3));
    assert_eq!(eval("max(3, event.rate, profile.missing)"), Value::Float(7.9));
    assert_eq!(eval("max(profile.missing)"), Value::Null);
    assert_eq!(eval("max([1, 5], 2)"), Value::Int(5));
    assert_eq!(eval("min(event.tags)"), Value::Null);
    assert_eq!(eval("abs(-5)"), Value::Int(5));
    assert_eq!(eval("abs(0 - event.rate)"), Value::Float(7.9));
    assert_eq!(eval("abs(-2d)"), Value::Duration(TimeDelta::days(2)));
    assert_eq!(eval("len(event.tags)"), Value::Int(2));
    assert_eq!(eval("len(\"₹500\")"), Value::Int(4));
    assert_eq!(eval("len(features.spend_30d)"), Value::Int(2));
    assert_eq!(eval("len(profile.missing)"), Value::Null);
}

#[test]
fn predicate_functions() {
    assert!(holds("contains(event.tags, \"a\")"));
    assert!(!holds("contains(event.tags, \"z\")"));
    assert!(holds("contains(event.category, \"ue\")"));
    assert!(holds("contains(features.spend_30d, \"dining\")"));
    assert!(!holds("contains(profile.missing, \"a\")"));
    assert!(!holds("contains(event.tags, profile.missing)"));
    assert!(holds("starts_with(event.category, \"fu\")"));
    assert!(!holds("starts_with(profile.missing, \"fu\")"));
}

#[test]
fn a_where_scope_needs_only_event() {
    let schema = Schema::new().allow_root(Root::Event);
    let p = compile(
        "event.amount >= 50000 and day_of_month(\"2026-01-14T00:00:00Z\") <= 14",
        &schema,
    )
    .unwrap();
    assert!(p.eval_bool(&EventOnly));
    assert_eq!(
        compile("days_since(\"2026-01-14T00:00:00Z\")", &schema)
            .unwrap()
            .eval(&EventOnly),
        Value::Null
    );
}

#[test]
fn eval_bool_is_true_only_for_true() {
    let s = scope();
    for (src, want) in [
        ("true", true),
        ("event.amount", false),
        ("event.category", false),
        ("profile.missing", false),
    ] {
        assert_eq!(compile(src, &schema()).unwrap().eval_bool(&s), want, "{src}");
    }
}

/// Holds features only in slots: a program compiled against slotted declarations must
/// read them by number, since asking by name finds nothing.
struct Slotted(Vec<Value>);
impl Scope for Slotted {
    fn event(&self, _name: &str) -> Value {
        Value::Null
    }
    fn feature(&self, f: FeatureRef<'_>) -> Value {
        let slot = f.slot.and_then(|s| usize::try_from(s).ok());
        slot.and_then(|s| self.0.get(s).cloned()).unwrap_or_default()
    }
}

#[test]
fn features_declared_in_slots_are_read_by_slot() {
    let schema = Schema::new()
        .allow_root(Root::Features)
        .feature_in_slot("balance", Type::Number, false, 1)
        .feature_in_slot("spend", Type::Number, true, 0)
        .feature("unslotted", Type::Number, false);
    let mut spend = BTreeMap::new();
    spend.insert("fuel".to_owned(), Value::Int(40));
    let scope = Slotted(vec![Value::Map(spend), Value::Int(500)]);
    let run = |src: &str| compile(src, &schema).unwrap().eval(&scope);
    assert_eq!(run("features.balance"), Value::Int(500));
    assert_eq!(run("features.spend[\"fuel\"] + features.balance"), Value::Int(540));
    let key = "[\"fu\", \"el\"]";
    assert_eq!(run(&format!("features.spend[{key}[0] + {key}[1]]")), Value::Int(40));
    assert_eq!(run("features.unslotted"), Value::Null, "no slot: asked by name");
    assert_eq!(
        compile("features.balance", &schema).unwrap().as_path(),
        Some((Root::Features, "balance"))
    );
}

proptest! {
    #[test]
    fn integer_arithmetic_agrees_with_rust(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000, c in -1000i64..1000) {
        let expect = a.checked_add(b.checked_mul(c).unwrap()).and_then(|x| x.checked_sub(a)).unwrap();
        prop_assert_eq!(eval(&format!("{a} + {b} * {c} - {a}")), Value::Int(expect));
        prop_assert_eq!(eval(&format!("({a} + {b}) * {c}")), Value::Int((a + b) * c));
        prop_assert_eq!(eval(&format!("-({a}) - -{b}")), Value::Int(-a + b));
        let div = if b == 0 { Value::Null } else { Value::Float(a as f64 / b as f64) };
        prop_assert_eq!(eval(&format!("{a} / {b}")), div);
    }

    #[test]
    fn comparisons_agree_with_rust(a in -1000i64..1000, b in -1000i64..1000) {
        let s = scope();
        let check = |op: &str, want: bool| {
            let src = format!("{a} {op} {b} and event.amount - event.amount + {a} {op} {b}");
            compile(&src, &schema()).unwrap().eval_bool(&s) == want
        };
        prop_assert!(check("<", a < b));
        prop_assert!(check("<=", a <= b));
        prop_assert!(check(">", a > b));
        prop_assert!(check(">=", a >= b));
        prop_assert!(check("==", a == b));
        prop_assert!(check("!=", a != b));
    }

    #[test]
    fn any_input_compiles_or_reports_without_panicking(src in "[ -~\n]{0,40}") {
        let schema = schema();
        match compile(&src, &schema) {
            Ok(p) => { let _ = p.eval(&scope()); }
            Err(d) => {
                prop_assert!(!d.0.is_empty());
                let _ = d.render(&src, "x.yaml", 3);
            }
        }
    }
}

/// Answers `event.<name>` by name and, differently, by slot: which one a program
/// asked for shows in the result.
struct EventSlots;
impl Scope for EventSlots {
    fn event(&self, name: &str) -> Value {
        match name {
            "ts" => Value::Str("2026-01-14T00:00:00Z".into()),
            _ => Value::Null,
        }
    }
    fn event_ref(&self, name: &str) -> Option<&Value> {
        static BY_NAME: [Value; 2] = [Value::Int(1), Value::Int(2)];
        match name {
            "amount" => Some(&BY_NAME[0]),
            "fee" => Some(&BY_NAME[1]),
            _ => None,
        }
    }
    fn event_attr(&self, slot: u32, _name: &str) -> Option<&Value> {
        static BY_SLOT: [Value; 2] = [Value::Int(10), Value::Int(20)];
        BY_SLOT.get(slot as usize)
    }
}

#[test]
fn numbered_event_attributes_are_read_by_slot_and_the_rest_by_name() {
    let schema = Schema::new().allow_root(Root::Event);
    let p = compile(
        "[event.amount, event.fee, event[\"amount\"], day_of_month(event.ts), coalesce(event.missing, 0)]",
        &schema,
    )
    .unwrap();
    assert_eq!(p.event_attrs(), ["amount", "fee", "missing"]);
    let by_name = Value::List([1, 2, 1, 14, 0].map(Value::Int).to_vec());
    assert_eq!(p.eval(&EventSlots), by_name);
    // `fee` keeps its name: only what the numbering knows moves to a slot.
    let numbered = p.with_event_slots(|name| (name == "amount").then_some(0));
    assert_eq!(numbered.source(), p.source());
    assert_eq!(numbered.event_attrs(), p.event_attrs());
    let by_slot = Value::List([10, 2, 10, 14, 0].map(Value::Int).to_vec());
    assert_eq!(numbered.eval(&EventSlots), by_slot);
    // Clauses of a numbered condition read by slot too.
    let cond = compile("event.amount > 5 and event.fee > 5", &schema)
        .unwrap()
        .with_event_slots(|name| (name == "amount").then_some(0));
    let clauses: Vec<bool> = cond
        .clauses()
        .iter()
        .map(|c| c.program.eval_bool(&EventSlots))
        .collect();
    assert_eq!(clauses, [true, false]);
    assert_eq!(cond.as_path(), None);
    let path = compile("event.amount", &schema).unwrap().with_event_slots(|_| Some(1));
    assert_eq!(path.as_path(), Some((Root::Event, "amount")));
    assert_eq!(path.eval(&EventSlots), Value::Int(20));
}

#[test]
fn an_attribute_equal_to_a_text_is_recognised_only_in_that_shape() {
    let schema = Schema::new().allow_root(Root::Event);
    let numbered = |src: &str| {
        compile(src, &schema)
            .unwrap()
            .with_event_slots(|name| (name == "category").then_some(3))
    };
    assert_eq!(
        numbered(r#"event.category == "fuel""#).as_attr_equals(),
        Some((3, "fuel"))
    );
    assert_eq!(
        numbered(r#""fuel" == event.category"#).as_attr_equals(),
        Some((3, "fuel"))
    );
    // Not numbered, not equality, not a text, not alone: evaluated as written.
    for src in [
        r#"event.city == "Pune""#,
        r#"event.category != "fuel""#,
        "event.category == 5",
        r#"event.category == event.city"#,
        r#"coalesce(event.category, "") == "fuel""#,
        r#"event.category == "fuel" and event.city == "Pune""#,
    ] {
        assert_eq!(numbered(src).as_attr_equals(), None, "{src}");
    }
    // Before numbering the attribute is read by name: nothing to dispatch on.
    let plain = compile(r#"event.category == "fuel""#, &schema).unwrap();
    assert_eq!(plain.as_attr_equals(), None);
}
