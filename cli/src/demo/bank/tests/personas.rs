//! The personas' stories hold in their data, for any seed and calendar of 30+ days.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime};

use super::{BankConfig, bank, calendar, cfg, date, swipes, table, txn_tables, txn_time};

/// Calendars the personas must hold for: short and long, month-aligned or not, leap.
fn configs() -> Vec<BankConfig> {
    vec![
        cfg(10, 30, 1, date(2026, 10, 31)),
        cfg(14, 30, 2, date(2026, 3, 30)),
        cfg(25, 95, 99, date(2026, 10, 31)),
        cfg(12, 61, 12345, date(2024, 3, 1)),
        cfg(40, 200, 7, date(2025, 12, 17)),
    ]
}

type Row = BTreeMap<String, String>;

/// One generated bank, parsed back.
struct Parsed {
    days: Vec<NaiveDate>,
    txns: Vec<Row>,
    balances: Vec<Row>,
    bureau: Vec<Row>,
    customers: Vec<Row>,
    swipes: Vec<serde_json::Value>,
}

impl Parsed {
    /// A customer's transactions of one code: time, amount, D or C.
    fn txns(&self, cust: &str, mcc: &str) -> Vec<(NaiveDateTime, f64, String)> {
        let rows = self.txns.iter().filter(|r| r["CUST_ID"] == cust && r["MCC"] == mcc);
        rows.map(|r| {
            let time = txn_time(r).expect("a persona's rows are well formed");
            (time, r["TXN_AMT"].parse().expect("amount"), r["DR_CR"].clone())
        })
        .collect()
    }

    fn balances(&self, cust: &str) -> Vec<f64> {
        let rows = self.balances.iter().filter(|r| r["CUSTOMER_NO"] == cust);
        rows.map(|r| r["LEDGER_BALANCE"].parse().expect("balance")).collect()
    }

    fn grades(&self, cust: &str) -> BTreeSet<&str> {
        let rows = self.bureau.iter().filter(|r| r["CUSTOMER_NUMBER"] == cust);
        rows.map(|r| r["GRADE"].as_str()).collect()
    }

    /// Whether the customer has an email, a mobile and a push token.
    fn contacts(&self, i: usize) -> (bool, bool, bool) {
        let r = &self.customers[i];
        (
            !r["EMAIL"].is_empty(),
            !r["MOBILE"].is_empty(),
            !r["PUSH_ID"].is_empty(),
        )
    }

    fn swipes_of(&self, cust: &str) -> impl Iterator<Item = &serde_json::Value> {
        self.swipes.iter().filter(move |s| s["customer_ref"] == cust)
    }
}

fn grade(g: &str) -> BTreeSet<&str> {
    BTreeSet::from([g])
}

#[test]
fn personas_tell_their_stories() {
    for (k, c) in configs().iter().enumerate() {
        let (dir, bank) = bank(&format!("persona-{k}"), c);
        let names: Vec<&str> = bank.personas.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Saanvi Sarkar", "Arjun Mehta", "Meera Iyer", "Rohan Das"]);
        let keys: Vec<&str> = bank.personas.iter().map(|p| p.customer_key.as_str()).collect();
        assert_eq!(keys, ["C00000001", "C00000002", "C00000003", "C00000004"]);
        let offers: Vec<Option<&str>> = bank.personas.iter().map(|p| p.expected_offer.as_deref()).collect();
        assert_eq!(
            offers,
            [Some("car-loan"), Some("mall-discount"), Some("fixed-deposit"), None]
        );
        assert!(
            bank.personas
                .iter()
                .all(|p| p.story.starts_with(&p.name) && p.story.ends_with('.'))
        );

        let parsed = Parsed {
            days: calendar(c),
            txns: txn_tables(&dir.0, &bank),
            balances: table(&dir.0.join("balances.csv")),
            bureau: table(&dir.0.join("bureau_scores.csv")),
            customers: table(&dir.0.join("customers.csv")),
            swipes: swipes(&dir.0).into_iter().filter_map(Result::ok).collect(),
        };
        saanvi(&parsed, k);
        arjun(&parsed);
        meera(&parsed);
        rohan(&parsed);
    }
}

#[test]
fn the_default_calendar_shows_two_early_salaries_for_saanvi() {
    // `persona demo` defaults: 60 days to 2026-10-31, which starts on September 2nd.
    for seed in 0..8 {
        let c = cfg(10, 60, seed, date(2026, 10, 31));
        let (dir, bank) = bank(&format!("saanvi-{seed}"), &c);
        let salary = txn_tables(&dir.0, &bank)
            .into_iter()
            .filter(|r| r["CUST_ID"] == "C00000001" && r["MCC"] == "9001");
        let months: BTreeSet<u32> = salary.map(|r| txn_time(&r).expect("well formed").month()).collect();
        assert_eq!(months, BTreeSet::from([9, 10]), "seed {seed}");
    }
}

/// Early salary every month, fuel over ₹3,000 in every 30 days, a balance that never
/// dips under ₹3 lakh, grade A.
fn saanvi(p: &Parsed, config: usize) {
    let me = "C00000001";
    assert_eq!(p.contacts(0), (true, true, true));
    assert_eq!(p.customers[0]["SEGMENT"], "AF");
    let salary = p.txns(me, "9001");
    assert!(
        salary
            .iter()
            .all(|(t, a, dc)| t.day() <= 7 && (85_000.0..=95_000.0).contains(a) && dc == "C")
    );
    let pay_day = salary[0].0.day();
    let months: BTreeSet<(i32, u32)> = p.days.iter().map(|d| (d.year(), d.month())).collect();
    for (y, m) in months {
        let covered = p.days.iter().any(|d| (d.year(), d.month(), d.day()) == (y, m, pay_day));
        let paid = salary.iter().filter(|(t, ..)| (t.year(), t.month()) == (y, m)).count();
        assert_eq!(
            paid,
            usize::from(covered),
            "saanvi's salary in {y}-{m} (config {config})"
        );
    }
    assert!(p.balances(me).iter().all(|b| (350_000.0..=600_000.0).contains(b)));
    let fuel = p.txns(me, "5541");
    assert!(fuel.iter().all(|(_, a, dc)| (900.0..=1600.0).contains(a) && dc == "D"));
    for end in &p.days[29..] {
        let start = *end - Days::new(30);
        let window: Vec<f64> = fuel
            .iter()
            .filter(|(t, ..)| t.date() <= *end && t.date() > start)
            .map(|(_, a, _)| *a)
            .collect();
        assert!(
            (4..=6).contains(&window.len()),
            "saanvi's fill-ups in the 30 days to {end}"
        );
        assert!(
            window.iter().sum::<f64>() > 3000.0,
            "saanvi's fuel spend in the 30 days to {end}"
        );
    }
    assert_eq!(p.grades(me), grade("A"));
}

/// Phoenix Marketcity in Bengaluru on three or more days of every week.
fn arjun(p: &Parsed) {
    let me = "C00000002";
    assert_eq!(p.contacts(1), (true, false, true));
    let visits: BTreeSet<NaiveDate> = p
        .swipes_of(me)
        .filter(|s| s["mall"] == "Phoenix Marketcity" && s["city"] == "Bengaluru")
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s["ts"].as_str().expect("ts"))
                .expect("rfc 3339")
                .date_naive()
        })
        .collect();
    for week in p.days.windows(7) {
        let n = week.iter().filter(|d| visits.contains(d)).count();
        assert!(n >= 3, "arjun's mall days in the week from {}: {n}", week[0]);
    }
    assert!(p.txns(me, "9001").iter().all(|(t, ..)| t.day() == 25));
    assert!(p.txns(me, "5541").is_empty());
    assert_eq!(p.grades(me), grade("B"));
}

/// A large idle balance earning monthly interest, grade A, no push.
fn meera(p: &Parsed) {
    let me = "C00000003";
    assert_eq!(p.contacts(2), (true, true, false));
    assert!(p.balances(me).iter().all(|b| (1_500_000.0..=2_500_000.0).contains(b)));
    let month_ends = p.days.iter().filter(|d| (**d + Days::new(1)).day() == 1).count();
    assert_eq!(p.txns(me, "9002").len(), month_ends);
    assert!(p.txns(me, "9001").is_empty());
    // She spends little: well under ₹50,000 in any 30 days.
    let debits = p.txns.iter().filter(|r| r["CUST_ID"] == me && r["DR_CR"] == "D");
    let debits: Vec<(NaiveDate, f64)> = debits
        .map(|r| {
            (
                txn_time(r).expect("well formed").date(),
                r["TXN_AMT"].parse().expect("amount"),
            )
        })
        .collect();
    for end in &p.days {
        let start = *end - Days::new(30);
        let spend: f64 = debits
            .iter()
            .filter(|(d, _)| d <= end && *d > start)
            .map(|(_, a)| a)
            .sum();
        assert!(spend < 50_000.0, "meera spent {spend} in the 30 days to {end}");
    }
    assert!(p.swipes_of(me).all(|s| s["mall"].is_null()));
    assert_eq!(p.grades(me), grade("A"));
}

/// A small month-end salary, a thin balance, no fuel, grade D, phone only.
fn rohan(p: &Parsed) {
    let me = "C00000004";
    assert_eq!(p.contacts(3), (false, true, false));
    let salary = p.txns(me, "9001");
    assert!(!salary.is_empty());
    for (t, a, _) in &salary {
        let month_end = (t.date() + Days::new(1)).day() == 1;
        assert!((18_000.0..=22_000.0).contains(a) && (t.day() >= 28 || month_end));
    }
    assert!(p.balances(me).iter().all(|b| (5_000.0..=40_000.0).contains(b)));
    assert!(p.txns(me, "5541").is_empty());
    assert!(p.swipes_of(me).all(|s| s["mcc"] != "5541" && s["mall"].is_null()));
    assert_eq!(p.grades(me), grade("D"));
}
