//! Tests of the synthetic bank: determinism, the personas' stories, the dialects'
//! shapes, and the Source specs that map them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime};

use super::catalog::Mcc;
use super::people::{IdSpace, PAN_SPACE, multiplier, permute};
use super::render::{BALANCES_HEADER, BUREAU_HEADER, CUSTOMERS_HEADER, TXN_HEADER};
use super::{BankConfig, GeneratedBank, generate};

mod personas;

/// A scratch directory removed when the test ends.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("persona-bank-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

pub(super) fn cfg(customers: u32, days: u32, seed: u64, end: NaiveDate) -> BankConfig {
    BankConfig {
        customers,
        days,
        seed,
        end,
    }
}

pub(super) fn bank(name: &str, cfg: &BankConfig) -> (Scratch, GeneratedBank) {
    let dir = Scratch::new(name);
    let mut last = 0;
    let bank = generate(cfg, &dir.0, &mut |n| {
        assert!(n >= last, "progress goes forward");
        last = n;
    })
    .expect("generate");
    assert_eq!(last, bank.records, "the last progress call reports every record");
    (dir, bank)
}

/// Rows of a CSV file (header included as row 0), without assuming their width.
pub(super) fn rows(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .expect("open csv");
    reader
        .records()
        .map(|r| r.expect("csv row").iter().map(str::to_owned).collect())
        .collect()
}

/// Data rows of the named columns, keyed by header name.
pub(super) fn table(path: &Path) -> Vec<BTreeMap<String, String>> {
    let all = rows(path);
    let header = all[0].clone();
    all[1..]
        .iter()
        .map(|r| header.iter().cloned().zip(r.iter().cloned()).collect())
        .collect()
}

pub(super) fn txn_tables(dir: &Path, bank: &GeneratedBank) -> Vec<BTreeMap<String, String>> {
    let files = bank
        .files
        .iter()
        .filter(|f| f.to_string_lossy().starts_with("core_txn_"));
    files.flat_map(|f| table(&dir.join(f))).collect()
}

pub(super) fn swipes(dir: &Path) -> Vec<Result<serde_json::Value, String>> {
    let text = std::fs::read_to_string(dir.join("card_swipes.jsonl")).expect("read swipes");
    text.lines()
        .map(|l| serde_json::from_str(l).map_err(|_| l.to_owned()))
        .collect()
}

pub(super) fn txn_time(row: &BTreeMap<String, String>) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(&row["TXN_DATE"], "%d/%m/%Y %H:%M").ok()
}

pub(super) fn calendar(c: &BankConfig) -> Vec<NaiveDate> {
    (0..c.days)
        .map(|i| c.end - Days::new(u64::from(c.days - 1 - i)))
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bank() {
    let c = cfg(60, 45, 7, date(2026, 10, 31));
    let (a, bank_a) = bank("det-a", &c);
    let (b, bank_b) = bank("det-b", &c);
    assert_eq!(bank_a.files, bank_b.files);
    assert_eq!(bank_a.records, bank_b.records);
    for f in &bank_a.files {
        let x = std::fs::read(a.0.join(f)).expect("read");
        let y = std::fs::read(b.0.join(f)).expect("read");
        assert!(x == y, "{} differs between runs of one seed", f.display());
    }
    let (o, bank_o) = bank("det-o", &cfg(60, 45, 8, date(2026, 10, 31)));
    for f in &bank_o.files {
        let x = std::fs::read(a.0.join(f)).expect("read");
        let y = std::fs::read(o.0.join(f)).expect("read");
        assert!(x != y, "{} is the same for two seeds", f.display());
    }
}

#[test]
fn files_and_records_add_up() {
    let c = cfg(30, 40, 3, date(2026, 10, 31));
    let (dir, bank) = bank("count", &c);
    let names: Vec<String> = bank.files.iter().map(|f| f.display().to_string()).collect();
    assert_eq!(
        names,
        [
            "customers.csv",
            "core_txn_202609.csv",
            "core_txn_202610.csv",
            "balances.csv",
            "card_swipes.jsonl",
            "bureau_scores.csv"
        ]
    );
    let mut records = 0;
    for f in &bank.files {
        let text = std::fs::read_to_string(dir.0.join(f)).expect("read");
        let lines = text.lines().count() as u64;
        records += if f.extension().is_some_and(|e| e == "csv") {
            lines - 1
        } else {
            lines
        };
    }
    assert_eq!(records, bank.records);
    assert!(
        generate(&cfg(5, 0, 1, date(2026, 1, 1)), &dir.0, &mut |_| {}).is_err(),
        "zero days is refused"
    );
}

#[test]
fn rows_have_their_shape_and_faults_are_deliberate() {
    for (k, c) in [cfg(10, 30, 5, date(2026, 10, 31)), cfg(300, 35, 6, date(2026, 2, 3))]
        .iter()
        .enumerate()
    {
        let (dir, bank) = bank(&format!("shape-{k}"), c);
        let days = calendar(c);
        for (name, header) in [
            ("customers.csv", CUSTOMERS_HEADER),
            ("balances.csv", BALANCES_HEADER),
            ("bureau_scores.csv", BUREAU_HEADER),
        ]
        .into_iter()
        .chain(
            bank.files
                .iter()
                .filter(|f| f.to_string_lossy().starts_with("core_txn_"))
                .map(|f| (f.to_str().expect("utf-8"), TXN_HEADER)),
        ) {
            let all = rows(&dir.0.join(name));
            assert_eq!(all[0].join(","), header, "{name}");
            assert!(
                all.iter().all(|r| r.len() == all[0].len()),
                "{name}: a row of the wrong width"
            );
        }

        let mut bad_dates = 0;
        let mut bad_amounts = 0;
        let mut last: Option<NaiveDateTime> = None;
        for r in txn_tables(&dir.0, &bank) {
            let time = txn_time(&r);
            let amount = r["TXN_AMT"].parse::<f64>().ok();
            if time.is_none() || amount.is_none() {
                assert!(
                    r["CUST_ID"].as_str() > "C00000004",
                    "a persona's row is malformed: {r:?}"
                );
                bad_dates += usize::from(time.is_none());
                bad_amounts += usize::from(amount.is_none());
                continue;
            }
            let time = time.expect("checked");
            assert!(days.contains(&time.date()));
            assert!(
                last.is_none_or(|l| l <= time || l.month() != time.month()),
                "transactions out of order"
            );
            last = Some(time);
            let mcc = Mcc::ALL.iter().find(|m| m.code() == r["MCC"]).expect("known mcc");
            assert_eq!(r["DR_CR"], if mcc.is_credit() { "C" } else { "D" });
            assert!(r["TXN_REF"].len() == 12 && r["ACCT_NO"].len() == 12);
        }
        assert!(
            bad_dates >= 1 && bad_amounts >= 1,
            "each transaction fault appears ({bad_dates}, {bad_amounts})"
        );

        let mut truncated = 0;
        let mut last = None;
        for s in swipes(&dir.0) {
            match s {
                Ok(s) => {
                    let ts = chrono::DateTime::parse_from_rfc3339(s["ts"].as_str().expect("ts")).expect("rfc 3339");
                    assert!(s["ts"].as_str().expect("ts").ends_with("+05:30"));
                    assert!(last.is_none_or(|l| l <= ts), "swipes out of order");
                    last = Some(ts);
                    assert_eq!(s["card_number"].as_str().expect("card").len(), 16);
                    assert!(s["amount"].is_f64() && (s["mall"].is_null() || s["mall"].is_string()));
                }
                Err(line) => {
                    truncated += 1;
                    assert!(
                        !["C00000001", "C00000002", "C00000003", "C00000004"]
                            .iter()
                            .any(|p| line.contains(p))
                    );
                }
            }
        }
        assert!(truncated >= 1, "a truncated swipe appears");

        for r in table(&dir.0.join("bureau_scores.csv")) {
            let score: u32 = r["SCORE"].parse().expect("score");
            let grade = match score {
                780.. => "A",
                720.. => "B",
                660.. => "C",
                600.. => "D",
                _ => "E",
            };
            assert!((300..=900).contains(&score) && r["GRADE"] == grade);
            let day = NaiveDate::parse_from_str(&r["REPORT_DATE"], "%d-%b-%Y").expect("report date");
            assert!(days.contains(&day));
        }
    }
}

#[test]
fn identifiers_are_unique_and_well_formed() {
    let c = cfg(3000, 30, 11, date(2026, 10, 31));
    let (dir, _) = bank("ids", &c);
    let customers = table(&dir.0.join("customers.csv"));
    for column in ["CUST_ID", "EMAIL", "MOBILE", "PAN", "PUSH_ID"] {
        let values: Vec<&str> = customers
            .iter()
            .map(|r| r[column].as_str())
            .filter(|v| !v.is_empty())
            .collect();
        let distinct: HashSet<&&str> = values.iter().collect();
        assert_eq!(distinct.len(), values.len(), "{column} values repeat");
    }
    let with_push = customers.iter().filter(|r| !r["PUSH_ID"].is_empty()).count() as f64 / 3000.0;
    assert!((0.6..0.8).contains(&with_push), "push share {with_push}");
    for r in &customers {
        let pan = r["PAN"].as_bytes();
        assert!(
            pan.len() == 10 && pan[..5].iter().all(u8::is_ascii_uppercase) && pan[5..9].iter().all(u8::is_ascii_digit)
        );
        assert!(pan[9].is_ascii_uppercase());
        let email = &r["EMAIL"];
        assert!(email.is_empty() || (email.contains('@') && *email == email.to_lowercase()));
        let mobile = &r["MOBILE"];
        assert!(
            mobile.is_empty()
                || (mobile.len() == 13 && mobile.starts_with("+91") && b"6789".contains(&mobile.as_bytes()[3]))
        );
        let push = &r["PUSH_ID"];
        assert!(push.is_empty() || (push.len() == 26 && push.starts_with("fcm:")));
        let dob = NaiveDate::parse_from_str(&r["DOB"], "%d-%m-%Y").expect("dob");
        let age = c.end.years_since(dob).expect("born before the end");
        assert!((19..=70).contains(&age), "age {age}");
        assert!(["MS", "AF", "PR"].contains(&r["SEGMENT"].as_str()));
        NaiveDateTime::parse_from_str(&r["KYC_UPDATED"], "%Y-%m-%d %H:%M:%S").expect("kyc time");
    }
}

#[test]
fn permutations_are_bijective() {
    for modulus in [10_000, 100_000, 1_000_000_000, 10_000_000_000, PAN_SPACE] {
        let a = multiplier(modulus);
        assert_eq!(num_gcd(a, modulus), 1, "multiplier of {modulus}");
    }
    let seen: HashSet<u64> = (0..10_000).map(|i| permute(i, 10_000, 1234)).collect();
    assert_eq!(seen.len(), 10_000);
    let _ = IdSpace::new(1, 10);
}

fn num_gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { num_gcd(b, a % b) }
}

#[test]
fn the_crowd_has_lookalikes_of_each_persona() {
    let c = cfg(2000, 60, 21, date(2026, 10, 31));
    let (dir, bank) = bank("crowd", &c);
    let last30 = c.end - Days::new(30);
    let mut fuel: BTreeMap<String, f64> = BTreeMap::new();
    let mut early_big_salary: BTreeSet<String> = BTreeSet::new();
    for r in txn_tables(&dir.0, &bank) {
        let (Some(t), Ok(a)) = (txn_time(&r), r["TXN_AMT"].parse::<f64>()) else {
            continue;
        };
        if r["MCC"] == "5541" && t.date() > last30 {
            *fuel.entry(r["CUST_ID"].clone()).or_default() += a;
        }
        if r["MCC"] == "9001" && a >= 50_000.0 && t.day() <= 14 {
            early_big_salary.insert(r["CUST_ID"].clone());
        }
    }
    let mut min_balance: BTreeMap<String, f64> = BTreeMap::new();
    for r in table(&dir.0.join("balances.csv")) {
        let b: f64 = r["LEDGER_BALANCE"].parse().expect("balance");
        let e = min_balance.entry(r["CUSTOMER_NO"].clone()).or_insert(f64::MAX);
        *e = e.min(b);
    }
    let good_credit: BTreeSet<String> = table(&dir.0.join("bureau_scores.csv"))
        .into_iter()
        .filter(|r| r["GRADE"] == "A" || r["GRADE"] == "B")
        .map(|r| r["CUSTOMER_NUMBER"].clone())
        .collect();
    let car = early_big_salary
        .iter()
        .filter(|c| {
            fuel.get(*c).is_some_and(|f| *f > 3000.0) && min_balance[*c] >= 300_000.0 && good_credit.contains(*c)
        })
        .count();
    let savers = min_balance.values().filter(|b| **b >= 1_000_000.0).count();
    let mut mall_days: BTreeMap<String, BTreeSet<NaiveDate>> = BTreeMap::new();
    for s in swipes(&dir.0).into_iter().filter_map(Result::ok) {
        if s["mall"].is_string() {
            let day = chrono::DateTime::parse_from_rfc3339(s["ts"].as_str().expect("ts"))
                .expect("ts")
                .date_naive();
            if day > c.end - Days::new(7) {
                mall_days
                    .entry(s["customer_ref"].as_str().expect("ref").to_owned())
                    .or_default()
                    .insert(day);
            }
        }
    }
    let mall = mall_days.values().filter(|d| d.len() >= 3).count();
    for (what, n) in [("car buyers", car), ("savers", savers), ("mall regulars", mall)] {
        assert!((10..=300).contains(&n), "{n} {what} among 2000 customers");
    }
}

#[test]
fn source_specs_map_every_column() {
    let text = include_str!("../specs/sources.yaml");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml document"))
        .collect();
    let expected = [
        ("crm-customers", "profile", "customers.csv", CUSTOMERS_HEADER, "CUST_ID"),
        (
            "core-banking-txn",
            "transaction",
            "core_txn_202610.csv",
            TXN_HEADER,
            "CUST_ID",
        ),
        ("dw-balances", "balance", "balances.csv", BALANCES_HEADER, "CUSTOMER_NO"),
        (
            "card-swipes",
            "card_swipe",
            "card_swipes.jsonl",
            "swipe_id,customer_ref,card_number,cardholder,ts,merchant,mcc,mall,city,amount",
            "customer_ref",
        ),
        (
            "credit-bureau",
            "profile",
            "bureau_scores.csv",
            BUREAU_HEADER,
            "CUSTOMER_NUMBER",
        ),
    ];
    assert_eq!(docs.len(), expected.len());
    for (doc, (name, event, file, header, key)) in docs.iter().zip(expected) {
        assert_eq!(doc["kind"], "Source");
        assert_eq!(doc["metadata"]["name"], name);
        let spec = &doc["spec"];
        assert_eq!(spec["event"], event, "{name}");
        let glob = spec["files"].as_str().expect("files");
        let (prefix, suffix) = glob.split_once('*').unwrap_or((glob, ""));
        assert!(
            file.starts_with(prefix) && file.ends_with(suffix) && file.len() >= glob.len() - 1,
            "{name}"
        );
        let fields = spec["fields"].as_mapping().expect("fields");
        for column in header.split(',') {
            let named = fields.contains_key(column);
            assert_eq!(named, column != "BRANCH", "{name}: {column}");
        }
        assert_eq!(
            fields.len(),
            header.split(',').filter(|c| *c != "BRANCH").count(),
            "{name}: fields not in the file"
        );
        assert_eq!(fields[key], "key", "{name}");
        if fields.values().any(|v| v.get("lookup").is_some()) {
            for mcc in Mcc::ALL {
                assert_eq!(
                    spec["lookups"]["mcc"][mcc.code()],
                    mcc.category(),
                    "{name}: {}",
                    mcc.code()
                );
            }
        }
    }
}
