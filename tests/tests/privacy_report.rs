//! `persona privacy report` through the binary, on the demo bank's specs and on the
//! kaveri bank (tests/fixtures/kaveri): exact lines for chosen fields, the JSON form,
//! and a broken Source named with its place while the others are still reported.
//! The specs directories hold no source file: the report reads none.

use std::path::{Path, PathBuf};

use persona_tests::{persona, persona_unchecked};
use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root")
}

fn demo_specs() -> PathBuf {
    root().join("cli/src/demo/specs")
}

fn kaveri_specs() -> PathBuf {
    root().join("tests/fixtures/kaveri/specs")
}

fn report(specs: &Path) -> String {
    String::from_utf8(persona(&["privacy", "report", "--specs", specs.to_str().unwrap()]).stdout).unwrap()
}

fn report_json(specs: &Path) -> Value {
    let out = persona(&["privacy", "report", "--specs", specs.to_str().unwrap(), "--json"]);
    serde_json::from_slice(&out.stdout).expect("the JSON form parses")
}

/// The lines of one source's block.
fn block<'a>(text: &'a str, source: &str) -> Vec<&'a str> {
    let head = format!("source {source}: ");
    let mut lines = text.lines().skip_while(|l| !l.starts_with(&head));
    let first = lines.next().unwrap_or_else(|| panic!("no block for {source}:\n{text}"));
    std::iter::once(first)
        .chain(lines.take_while(|l| l.starts_with("  ")))
        .collect()
}

fn field<'a>(json: &'a Value, source: &str, name: &str) -> &'a Value {
    json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == source)
        .unwrap_or_else(|| panic!("no source {source}"))["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {source}"))
}

#[test]
fn the_demo_banks_sources_field_by_field() {
    let text = report(&demo_specs());
    assert!(
        text.starts_with("privacy report of 5 source(s) in "),
        "FeatureSet and Offers are skipped: {text}"
    );
    assert!(text.contains("(specs only: no data was read)"));
    let crm = block(&text, "crm-customers");
    assert_eq!(crm[0], "source crm-customers: customers.csv (csv) -> profile events");
    for line in [
        "  CUST_ID: key -> token (random 128 bits, one per customer); reversible to the customer key by the holder \
         of the vault and KMS Decrypt on its vault key: persona vault resolve (audited); no one once the customer is \
         forgotten; read for the event id",
        "  DOB: generalize -> age_band: age in years at the event time (dates as %d-%m-%Y), one of <18, 18-25, \
         25-35, 35-45, 45-60, 60+; not reversible",
        "  EMAIL: vault -> only that an email contact is held (profile contacts); the value is sealed in the vault \
         (AES-256-GCM); reversible to the contact value by the de-tokenizer (the vault and KMS Decrypt on its vault \
         key): just in time, to deliver a match on the channel that needs it; no one once the customer is forgotten",
        "  FULL_NAME: vault -> only that a name contact is held (profile contacts); the value is sealed in the vault \
         (AES-256-GCM); reversible to the name by the de-tokenizer (the vault and KMS Decrypt on its vault key): just \
         in time, to fill the {name} and {first_name} placeholders of a message it delivers; no one once the \
         customer is forgotten",
        "  KYC_UPDATED: drop -> nothing leaves; read for the event time and the event id",
        "  PAN: mask -> pan_last4: the last 4 characters, the others replaced by X; not reversible (the 4 kept \
         characters leave in clear)",
        "  SEGMENT: attr -> segment (string), in clear, translated by its map (3 codes; other codes as they are)",
        "  event time: ts from KYC_UPDATED (%Y-%m-%d %H:%M:%S, Asia/Kolkata), to the second, in UTC, in clear",
        "  event id: ev_ + 128 bits of HMAC-SHA256 under the event-id key of the source and CUST_ID, KYC_UPDATED; \
         one-way, the same for a re-read record",
        "  any other field: dropped (deny by default; counted, its name warned about once per file)",
    ] {
        assert!(crm.contains(&line), "missing {line:?} in\n{}", crm.join("\n"));
    }
    // 11 named fields, then time, id and the rest.
    assert_eq!(crm.len(), 1 + 11 + 3);

    let txn = block(&text, "core-banking-txn");
    for line in [
        "  MCC: attr -> category (string), in clear, translated by lookup mcc (11 codes; other codes as they are)",
        "  TXN_AMT: attr -> amount (decimal), in clear",
        "  event time: ts from TXN_DATE (%d/%m/%Y %H:%M, Asia/Kolkata), to the minute, in UTC, in clear",
    ] {
        assert!(txn.contains(&line), "missing {line:?} in\n{}", txn.join("\n"));
    }
    // BRANCH is left out of the spec on purpose: it is covered by the last line only.
    assert!(!txn.iter().any(|l| l.contains("BRANCH")));
    let bureau = block(&text, "credit-bureau");
    assert!(bureau.contains(
        &"  SCORE: generalize -> score_band: the number, one of <300, 300-550, 550-650, 650-750, 750-900, 900+; \
          not reversible"
    ));
    let swipes = block(&text, "card-swipes");
    assert!(
        swipes.contains(&"  event time: ts from ts (RFC 3339, its own offset), up to the sub-second, in UTC, in clear")
    );
    assert!(text.ends_with(
        "reversible: tokens -> customer keys: only the holder of the vault with KMS Decrypt on its vault key \
         (persona vault resolve, audited); vaulted contacts: only the de-tokenizer, to deliver; forgotten customers \
         (persona vault forget): no one\n"
    ));

    let json = report_json(&demo_specs());
    assert_eq!(json["refused"], json!([]));
    assert_eq!(json["sources"].as_array().unwrap().len(), 5);
    assert_eq!(
        field(&json, "crm-customers", "PUSH_ID"),
        &json!({"field": "PUSH_ID", "rule": "vault", "leaves": {"as": "contact_kind", "kind": "device"},
                "in_clear": "none", "reversible": {"to": "contact value",
                "by": "the de-tokenizer (the vault and KMS Decrypt on its vault key)",
                "how": "just in time, to deliver a match on the channel that needs it; no one once the customer is forgotten"},
                "read_for": []})
    );
    assert_eq!(
        field(&json, "card-swipes", "card_number")["leaves"],
        json!({"as": "masked", "attr": "card_last4", "keep": "last", "chars": 4})
    );
    assert_eq!(
        field(&json, "core-banking-txn", "CUST_ID")["reversible"]["to"],
        "customer key"
    );
    assert_eq!(
        field(&json, "core-banking-txn", "NARRATION")["leaves"],
        json!({"as": "nothing"})
    );
    assert_eq!(
        field(&json, "core-banking-txn", "ACCT_NO")["read_for"],
        json!(["event_id"])
    );
}

#[test]
fn another_banks_dialects_read_the_same_way() {
    let text = report(&kaveri_specs());
    let members = block(&text, "members");
    assert_eq!(
        members,
        [
            "source members: members*.jsonl (jsonl) -> profile events",
            "  birthDate: generalize -> age_band: age in years at the event time (dates as %Y-%m-%d), one of <30, \
             30-50, 50+; not reversible",
            "  branch.city: attr -> city (string), in clear",
            "  email: vault -> only that an email contact is held (profile contacts); the value is sealed in the \
             vault (AES-256-GCM); reversible to the contact value by the de-tokenizer (the vault and KMS Decrypt on \
             its vault key): just in time, to deliver a match on the channel that needs it; no one once the \
             customer is forgotten",
            "  memberId: key -> token (random 128 bits, one per customer); reversible to the customer key by the \
             holder of the vault and KMS Decrypt on its vault key: persona vault resolve (audited); no one once the \
             customer is forgotten; read for the event id",
            "  name: drop -> nothing leaves",
            "  phone: vault -> only that a phone contact is held (profile contacts); the value is sealed in the \
             vault (AES-256-GCM); reversible to the contact value by the de-tokenizer (the vault and KMS Decrypt on \
             its vault key): just in time, to deliver a match on the channel that needs it; no one once the \
             customer is forgotten",
            "  tier: attr -> tier (string), in clear, translated by its map (2 codes; other codes as they are)",
            "  event time: ts fixed at 2026-01-01T00:00:00Z for every record",
            "  event id: ev_ + 128 bits of HMAC-SHA256 under the event-id key of the source and memberId; one-way, \
             the same for a re-read record",
            "  any other field: dropped (deny by default; counted, its name warned about once per file)",
        ]
    );
    let ledger = block(&text, "ledger");
    for line in [
        "  Kind: attr -> kind (string), in clear, translated by lookup kinds (2 codes; other codes and missing \
         values: other); read for the event id",
        "  Posted: no rule -> nothing leaves; read for the event time and the event id",
        "  event time: ts from Posted (%Y-%m-%dT%H:%M, Europe/Berlin), to the minute, in UTC, in clear",
        "  event id: ev_ + 128 bits of HMAC-SHA256 under the event-id key of the source and the file, the line and \
         the whole raw record; one-way, the same for a re-read record",
    ] {
        assert!(ledger.contains(&line), "missing {line:?} in\n{}", ledger.join("\n"));
    }

    let json = report_json(&kaveri_specs());
    assert_eq!(
        field(&json, "ledger", "Kind")["leaves"],
        json!({"as": "value", "attr": "kind", "type": "string", "translated": {"table": "kinds", "codes": 2},
               "default": "other"})
    );
    assert_eq!(field(&json, "ledger", "Amount")["in_clear"], "whole");
    assert_eq!(
        json["sources"][0]["time"],
        json!({"from": "fixed", "value": "2026-01-01T00:00:00Z"})
    );
    assert_eq!(
        json["sources"][1]["time"],
        json!({"from": "field", "field": "Posted", "format": "%Y-%m-%dT%H:%M", "zone": "Europe/Berlin",
               "precision": "to the minute"})
    );
    assert_eq!(json["sources"][1]["event_id"]["from"], json!([]));
}

#[test]
fn a_broken_source_is_named_and_the_others_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(kaveri_specs().join("sources.yaml"), dir.path().join("sources.yaml")).unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "kind: Source\nmetadata: {name: leaky}\nspec:\n  format: csv\n  event: e\n  time: {value: \"2026-01-01T00:00:00Z\"}\n  fields:\n    ID: key\n    EMAIL: {vault: pigeon}\n",
    )
    .unwrap();
    let out = persona_unchecked(&["privacy", "report", "--specs", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("broken.yaml:9:"), "the place of the error: {stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["members", "ledger"]);
    assert_eq!(json["refused"][0]["name"], "leaky");
}
