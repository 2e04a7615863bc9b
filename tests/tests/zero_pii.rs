//! The zero-PII guarantee (DESIGN.md §6): nothing under DATA/cloud, in matches.jsonl,
//! features.jsonl or the logs holds a name, email, phone, birth date, customer id,
//! PAN, card or account number the generator produced; and the de-tokenizer, in the
//! trusted zone, does reach the real contacts.

use std::collections::{HashMap, HashSet};

use persona_tests::pii::{hits, protected_values};
use persona_tests::{Demo, csv_rows, files_under, jsonl};

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
        // The fixed-deposit message greets her by the first name the vault holds.
        if d["offer"] == "fixed-deposit" {
            let first = customer["FULL_NAME"].split_whitespace().next().unwrap();
            assert!(d["message"].as_str().unwrap().starts_with(&format!("{first}, ")), "{d}");
        }
    }
    // The story names the car loan for the Saanvi-like customer.
    assert!(demo.stdout.contains("the story of Saanvi Sarkar"), "{}", demo.stdout);
    assert!(demo.stdout.contains("offer `car-loan`"), "{}", demo.stdout);
}
