//! Delivery against a real sled vault with the local KMS.

use std::sync::Arc;

use persona_event::time::parse_ts;
use persona_event::{Channel, ContactKind, Match, MatchId, MatchMessage, Token};
use persona_privacy::{CustomerKey, LocalKms, Pii, Vault};

use crate::{Detokenizer, FileAdapter, Outcome};

fn message(token: &Token, channel: Channel, id: u8) -> MatchMessage {
    MatchMessage {
        decision: Match {
            match_id: MatchId::from_bytes([id; 16]),
            token: token.clone(),
            offer: "car-loan".into(),
            variant: "a".into(),
            channel,
            ts: parse_ts("2026-10-01T00:00:00Z").unwrap(),
            event_id: None,
        },
        title: "Car loan".into(),
        message: "Drive home".into(),
    }
}

#[test]
fn a_match_becomes_one_delivery_and_an_audit_line_without_pii() {
    let dir = tempfile::tempdir().unwrap();
    let kms = Arc::new(LocalKms::open(&dir.path().join("kms")).unwrap());
    let vault = Arc::new(Vault::open(&dir.path().join("vault"), kms).unwrap());
    let (token, _) = vault.tokenize(&CustomerKey::new("C00000001")).unwrap();
    vault
        .store_contact(
            &token,
            ContactKind::Email,
            &Pii::new("saanvi.sarkar@example.in".to_owned()),
        )
        .unwrap();

    let deliveries = dir.path().join("deliveries.jsonl");
    let audit = dir.path().join("audit.jsonl");
    let mut d = Detokenizer::new(vault, FileAdapter::new(&deliveries));
    assert_eq!(
        d.deliver(&message(&token, Channel::Email, 1)).unwrap(),
        Outcome::Delivered
    );
    assert_eq!(
        d.deliver(&message(&token, Channel::Email, 1)).unwrap(),
        Outcome::Duplicate
    );
    assert_eq!(
        d.deliver(&message(&token, Channel::Sms, 2)).unwrap(),
        Outcome::NoContact
    );
    let stranger = Token::from_bytes([3; 16]);
    assert_eq!(
        d.deliver(&message(&stranger, Channel::Email, 3)).unwrap(),
        Outcome::UnknownToken
    );
    let (_, report) = d.finish(&audit).unwrap();
    assert_eq!(report.deliveries_by_channel[&Channel::Email], 1);
    assert_eq!((report.undeliverable, report.duplicates), (2, 1));

    let lines = std::fs::read_to_string(&deliveries).unwrap();
    let line: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(line["customer_key"], "C00000001");
    assert_eq!(line["to"], "saanvi.sarkar@example.in");
    assert_eq!(line["message"], "Drive home");
    let audit = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(audit.lines().count(), 3);
    assert!(!audit.contains("C00000001") && !audit.contains("saanvi"), "{audit}");
    assert!(audit.contains("\"outcome\":\"no_contact\""));
}
