//! The zero-PII guarantee (DESIGN.md §6): nothing under DATA/cloud, in matches.jsonl,
//! features.jsonl or the logs holds a name, email, phone, birth date, customer id,
//! PAN, card or account number the generator produced; and the de-tokenizer, in the
//! trusted zone, does reach the real contacts.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use persona_tests::{Demo, csv_rows, files_under, jsonl};

/// Every protected value of the generated bank, lowercased.
fn protected_values(sources: &Path) -> HashSet<String> {
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
fn hits(haystack: &[u8], needles: &HashSet<String>) -> Vec<String> {
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

#[test]
fn the_cloud_zone_outputs_and_logs_hold_no_protected_value() {
    let demo = Demo::run(400, 60);
    let out = demo.out();
    let needles = protected_values(&out.join("sources"));
    assert!(
        needles.len() > 2_000,
        "the generator's PII was collected: {}",
        needles.len()
    );
    // The scan finds what it looks for: the trusted zone's deliveries are full of it.
    assert!(!hits(&std::fs::read(out.join("deliveries.jsonl")).unwrap(), &needles).is_empty());

    let mut scanned = vec![
        out.join("matches.jsonl"),
        out.join("features.jsonl"),
        out.join("audit.jsonl"),
    ];
    let cloud = files_under(&out.join("data").join("cloud"));
    assert!(!cloud.is_empty(), "the shard keeps its state under DATA/cloud");
    scanned.extend(cloud);
    for file in &scanned {
        let bytes = std::fs::read(file).unwrap();
        let found = hits(&bytes, &needles);
        assert!(found.is_empty(), "{} holds protected values: {found:?}", file.display());
    }
    let found = hits(demo.stderr.as_bytes(), &needles);
    assert!(found.is_empty(), "the logs hold protected values: {found:?}");
    assert!(
        demo.stderr.contains("stage done"),
        "logs were captured: {}",
        demo.stderr
    );
}

#[test]
fn deliveries_reach_the_real_contact_of_each_matched_customer() {
    let demo = Demo::run(300, 60);
    let out = demo.out();
    let customers: HashMap<String, HashMap<String, String>> = csv_rows(&out.join("sources").join("customers.csv"))
        .into_iter()
        .map(|r| (r["CUST_ID"].clone(), r))
        .collect();
    let matches = jsonl(&out.join("matches.jsonl"));
    let deliveries = jsonl(&out.join("deliveries.jsonl"));
    assert!(!matches.is_empty());
    let matched: HashSet<&str> = matches.iter().map(|m| m["match_id"].as_str().unwrap()).collect();
    let delivered: HashSet<&str> = deliveries.iter().map(|d| d["match_id"].as_str().unwrap()).collect();
    assert_eq!(matched, delivered, "every match is delivered once");
    for d in &deliveries {
        let customer = &customers[d["customer_key"].as_str().unwrap()];
        let column = match d["channel"].as_str().unwrap() {
            "email" => "EMAIL",
            "sms" => "MOBILE",
            "push" => "PUSH_ID",
            other => panic!("unknown channel {other}"),
        };
        assert_eq!(d["to"].as_str().unwrap(), customer[column], "{d}");
        assert!(!d["message"].as_str().unwrap().is_empty());
    }
    // The story names the car loan for the Saanvi-like customer.
    assert!(demo.stdout.contains("the story of Saanvi Sarkar"), "{}", demo.stdout);
    assert!(demo.stdout.contains("offer `car-loan`"), "{}", demo.stdout);
}
