//! The protected values of a generated bank, and a scan for them: what the zero-PII
//! tests look for in every cloud-zone artifact.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::csv_rows;

/// Every protected value of the generated bank, lowercased.
pub fn protected_values(sources: &Path) -> HashSet<String> {
    let mut values = HashSet::new();
    let mut add = |v: &str| {
        let v = v.trim();
        if v.len() >= 6 {
            values.insert(v.to_lowercase());
        }
    };
    for row in csv_rows(&sources.join("customers.csv")) {
        for col in ["CUST_ID", "FULL_NAME", "DOB", "EMAIL", "MOBILE", "PAN", "PUSH_ID"] {
            add(&row[col]);
        }
        // The phone without its country code is the same phone.
        add(row["MOBILE"].trim_start_matches("+91"));
    }
    for row in csv_rows(&sources.join("balances.csv")) {
        add(&row["ACCOUNT_NO"]);
    }
    for row in csv_rows(&sources.join("bureau_scores.csv")) {
        add(&row["PAN"]);
    }
    for line in std::fs::read_to_string(sources.join("card_swipes.jsonl"))
        .unwrap()
        .lines()
    {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            for key in ["card_number", "cardholder", "customer_ref"] {
                if let Some(s) = v[key].as_str() {
                    add(s);
                }
            }
        }
    }
    values
}

/// The protected values found in `haystack` (case-insensitive). Indexed by each
/// value's first four bytes so the scan is linear in the haystack.
pub fn hits(haystack: &[u8], needles: &HashSet<String>) -> Vec<String> {
    let mut by_prefix: HashMap<&[u8], Vec<&str>> = HashMap::new();
    for n in needles {
        by_prefix.entry(&n.as_bytes()[..4]).or_default().push(n);
    }
    let hay = haystack.to_ascii_lowercase();
    let mut found = HashSet::new();
    for i in 0..hay.len().saturating_sub(3) {
        if let Some(candidates) = by_prefix.get(&hay[i..i + 4]) {
            for n in candidates {
                if hay[i..].starts_with(n.as_bytes()) {
                    found.insert((*n).to_owned());
                }
            }
        }
    }
    let mut found: Vec<String> = found.into_iter().collect();
    found.sort();
    found
}

/// What the kaveri fixture bank (tests/fixtures/kaveri) protects: names, emails,
/// phones, birth dates, member ids, and merchants in a free-text memo no rule lets out.
pub const KAVERI_PROTECTED: [&str; 16] = [
    "Anna Weber",
    "Jonas Klein",
    "Lena Fischer",
    "anna.weber@example.de",
    "jonas.klein@example.de",
    "+4915112345678",
    "4915112345678",
    "+4917698765432",
    "1980-03-01",
    "2000-07-07",
    "1960-01-01",
    "M-001",
    "M-002",
    "M-003",
    "Edeka",
    "Lufthansa",
];
