//! Ingest after an erasure, over real files and a real vault: the forgotten
//! customer's records are refused as dead letters (never given a new token), her
//! contacts are not vaulted again, and the erasure's `forget` event is stable.

use std::path::Path;
use std::sync::Arc;

use persona_event::{ContactKind, Event, kinds};
use persona_gateway::{FORGOTTEN_REASON, Gateway, forget_event};
use persona_privacy::{CustomerKey, ErasureJournal, LocalKms, Source, Vault};

const CUSTOMERS: &str = r#"
kind: Source
metadata: {name: customers}
spec:
  format: csv
  event: transaction
  id: [REF]
  time: {field: AT}
  fields:
    CUST: key
    EMAIL: {vault: email}
    AMOUNT: {attr: amount, type: decimal}
"#;

const CSV: &str = "\
CUST,REF,AT,EMAIL,AMOUNT
K1,r1,2026-01-05T10:00:00Z,k1@example.com,10
K2,r2,2026-01-05T10:00:00Z,k2@example.com,20
K1,r3,2026-01-06T10:00:00Z,k1@example.com,30
K3,r4,2026-01-06T10:00:00Z,,40
";

fn gateway(data: &Path) -> Gateway {
    let kms = LocalKms::open(&data.join("kms")).unwrap();
    let vault = Vault::open(&data.join("vault"), Arc::new(kms)).unwrap();
    Gateway::new(vec![Source::from_yaml(CUSTOMERS).unwrap()], Arc::new(vault))
}

#[test]
fn a_forgotten_customers_records_are_refused_and_vault_nothing() {
    let sources = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(sources.path().join("customers.csv"), CSV).unwrap();
    let gw = gateway(data.path());
    let mut first = Vec::new();
    gw.ingest_dir(sources.path(), &mut |e| first.push(e)).unwrap();
    let her = first
        .iter()
        .find(|e| e.attr("amount").as_f64() == Some(10.0))
        .unwrap()
        .token
        .clone();

    let mut journal = ErasureJournal::open(&data.path().join("erasures")).unwrap();
    gw.vault().forget(&CustomerKey::new("K1"), &mut journal).unwrap();

    let mut again: Vec<Event> = Vec::new();
    let report = gw.ingest_dir(sources.path(), &mut |e| again.push(e)).unwrap();
    assert!(again.iter().all(|e| e.token != her), "no event of hers: {again:?}");
    assert_eq!(again.iter().filter(|e| e.kind == "transaction").count(), 2);
    assert_eq!(report.records_forgotten, 2);
    assert_eq!(report.tokens_issued, 0, "she got no new token");
    let letters: Vec<(u64, Option<&str>, &str)> = report
        .dead_letters
        .iter()
        .map(|d| (d.line, d.field.as_deref(), d.reason.as_str()))
        .collect();
    assert_eq!(
        letters,
        [(2, Some("CUST"), FORGOTTEN_REASON), (4, Some("CUST"), FORGOTTEN_REASON)]
    );
    assert!(gw.vault().contact(&her, ContactKind::Email).unwrap().is_none());
    assert_eq!(report.per_source["customers"].forgotten, 2);

    // The erasure's event for the cloud: her former token, no attribute, a stable id.
    let erasure = &journal.entries()[0];
    let event = forget_event(gw.vault(), erasure).unwrap();
    assert_eq!((event.token.clone(), event.kind.as_str()), (her, kinds::FORGET));
    assert!(event.attrs.is_empty());
    assert_eq!(event.ts, erasure.at);
    assert_eq!(forget_event(gw.vault(), erasure).unwrap().id, event.id);
    assert!(first.iter().all(|e| e.id != event.id));
}
