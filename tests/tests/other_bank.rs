//! `persona run` on a bank the demo knows nothing of (tests/fixtures/kaveri): JSON
//! Lines with a literal dotted key and a constant time, CSV with quoted commas and a
//! column no rule names, a lookup with a default, another time zone, a keyed family,
//! a clock-hour window. Every expected value below is computed by hand from the
//! fixture files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use persona_tests::{files_under, jsonl, persona, run_files};
use serde_json::json;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("kaveri")
}

#[test]
fn a_bank_written_only_against_the_contract_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let output = run_files(&fixture().join("specs"), &fixture().join("sources"), &data, &out, &[]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();

    // Which token is which member: the trusted zone's admin look-up.
    let features = jsonl(&out.join("features.jsonl"));
    let tokens: Vec<&str> = features.iter().map(|f| f["token"].as_str().unwrap()).collect();
    let mut args = vec!["vault", "resolve", "--data", data.to_str().unwrap()];
    args.extend(&tokens);
    let resolved = String::from_utf8(persona(&args).stdout).unwrap();
    let member: BTreeMap<String, String> = resolved
        .lines()
        .map(|l| {
            let (t, k) = l.split_once('\t').unwrap();
            (t.to_owned(), k.to_owned())
        })
        .collect();
    assert_eq!(member.values().cloned().collect::<Vec<_>>().len(), 3);

    let matches: Vec<(String, String, String, String)> = jsonl(&out.join("matches.jsonl"))
        .iter()
        .map(|m| {
            let who = member[m["token"].as_str().unwrap()].clone();
            (
                who,
                m["offer"].as_str().unwrap().into(),
                m["ts"].as_str().unwrap().into(),
                m["channel"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String, String)> = [
        // 60.00 + 45.50 of groceries, gold: the voucher, on the first channel she has.
        ("M-001", "grocery-voucher", "2026-03-03T17:30:00Z", "sms"),
        // The voucher is limited to 1 per 30d, so her travel purchase gets the insurance.
        ("M-001", "travel-insurance", "2026-03-04T08:00:00Z", "email"),
        // M-002 is silver and under 30: nothing. M-003 is gold with a phone only.
        ("M-003", "grocery-voucher", "2026-03-06T08:00:00Z", "sms"),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
    .collect();
    assert_eq!(matches, expected);

    let to: Vec<(String, String)> = jsonl(&out.join("deliveries.jsonl"))
        .iter()
        .map(|d| {
            (
                d["customer_key"].as_str().unwrap().into(),
                d["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        to,
        vec![
            ("M-001".into(), "+4915112345678".into()),
            ("M-001".into(), "anna.weber@example.de".into()),
            ("M-003".into(), "+4917698765432".into()),
        ]
    );

    // Features as of the latest accepted event, 2026-03-08T09:00:00Z (10:00 in Berlin).
    let by_member: BTreeMap<String, serde_json::Value> = features
        .iter()
        .map(|f| (member[f["token"].as_str().unwrap()].clone(), f.clone()))
        .collect();
    for f in by_member.values() {
        assert_eq!(f["as_of"], "2026-03-08T09:00:00Z");
    }
    assert_eq!(
        by_member["M-001"]["features"],
        json!({"grocery_7d": 45.5, "spend_by_kind_30d": {"grocery": 105.5, "travel": 300.0}, "txn_count": 3,
               "kinds_seen": 2, "last_kind": "travel", "txn_2h": 0, "big_grocer": false})
    );
    assert_eq!(
        by_member["M-002"]["features"],
        json!({"grocery_7d": 120.0, "spend_by_kind_30d": {"grocery": 120.0, "travel": 80.0}, "txn_count": 2,
               "kinds_seen": 2, "last_kind": "travel", "txn_2h": 0, "big_grocer": true})
    );
    assert_eq!(
        by_member["M-003"]["features"],
        json!({"grocery_7d": 150.0, "spend_by_kind_30d": {"grocery": 150.0, "other": 10.0}, "txn_count": 2,
               "kinds_seen": 2, "last_kind": "other", "txn_2h": 1, "big_grocer": true})
    );

    let dead: Vec<(String, String, u64, Option<String>)> = jsonl(&out.join("dead_letter.jsonl"))
        .iter()
        .map(|d| {
            (
                d["source"].as_str().unwrap().into(),
                d["file"].as_str().unwrap().into(),
                d["line"].as_u64().unwrap(),
                d["field"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        dead,
        vec![
            ("ledger".into(), "ledger.csv".into(), 8, Some("Amount".into())),
            ("members".into(), "members.jsonl".into(), 4, None),
        ]
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["records_read"], 12);
    assert_eq!(summary["tokens_issued"], 3);
    assert_eq!(
        summary["matches_by_offer"],
        json!({"grocery-voucher": 2, "travel-insurance": 1})
    );
    assert!(
        summary["fields_unnamed"].as_u64().unwrap() >= 7,
        "the Channel column is dropped by default"
    );
    assert!(
        stderr.contains("Channel"),
        "the unnamed column is warned about by name: {stderr}"
    );

    // No protected value in the cloud zone's outputs, its state, or anything printed.
    let protected = persona_tests::pii::KAVERI_PROTECTED;
    let mut scanned = vec![
        out.join("matches.jsonl"),
        out.join("features.jsonl"),
        out.join("audit.jsonl"),
    ];
    scanned.extend(files_under(&data.join("cloud")));
    for file in &scanned {
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).to_lowercase();
        for p in protected {
            assert!(!text.contains(&p.to_lowercase()), "{} holds {p}", file.display());
        }
    }
    for p in protected {
        assert!(!stderr.contains(p) && !stdout.contains(p), "{p} printed");
    }
}

#[test]
fn features_as_of_an_earlier_instant_count_only_what_came_before() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    run_files(
        &fixture().join("specs"),
        &fixture().join("sources"),
        &data,
        &out,
        &["--as-of", "2026-03-04T00:00:00Z"],
    );
    let features = jsonl(&out.join("features.jsonl"));
    assert_eq!(features.len(), 3, "every member has a profile before the instant");
    assert!(features.iter().all(|f| f["as_of"] == "2026-03-04T00:00:00Z"));
    // 01:00 on 4 March in Berlin: M-001's two groceries (1 and 3 March) count, her
    // travel purchase (4 March, 09:00) does not yet.
    let anna = features
        .iter()
        .find(|f| f["features"]["txn_count"] == 2)
        .expect("M-001");
    assert_eq!(
        anna["features"],
        json!({"grocery_7d": 105.5, "spend_by_kind_30d": {"grocery": 105.5}, "txn_count": 2,
               "kinds_seen": 1, "last_kind": "grocery", "txn_2h": 0, "big_grocer": true})
    );
    let empty = features.iter().filter(|f| f["features"]["txn_count"] == 0).count();
    assert_eq!(empty, 2);
}
