//! The right to erasure in the cloud zone: a `forget` event deletes the customer's
//! state, snapshot and reminder entry, and leaves every other customer as she was.

use std::path::Path;
use std::sync::Arc;

use persona_bus::MemoryBus;
use persona_event::time::parse_ts;
use persona_event::{Event, EventId, Token, Value, kinds};
use persona_features::{FeatureSet, FeatureSetDocument};
use persona_offers::{ContactPolicy, ContactPolicyDocument, Engine, Offer, OfferDocument};

use super::{OFFER, SET, config, events};
use crate::Shard;

/// The test engine, with quiet hours until 09:00 UTC: the test customers' matches
/// (at 00:0x) are deferred, so each has a reminder entry in the store.
fn deferring_engine() -> Arc<Engine> {
    let policy = ContactPolicy::compile(
        &ContactPolicyDocument::from_yaml(
            "kind: ContactPolicy\nmetadata: {name: p}\nspec: {quietHours: {from: \"00:00\", to: \"09:00\"}, timezone: UTC}\n",
        )
        .unwrap(),
    )
    .unwrap();
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(SET).unwrap()).unwrap();
    let offer = Offer::compile(&OfferDocument::from_yaml(OFFER).unwrap(), &set).unwrap();
    Arc::new(Engine::new(set, vec![offer]).with_policy(policy))
}

fn forget(token: &Token, at: &str) -> Event {
    Event {
        id: EventId::from_bytes([0xee; 16]),
        token: token.clone(),
        kind: kinds::FORGET.to_owned(),
        ts: parse_ts(at).unwrap(),
        attrs: Default::default(),
    }
}

/// Every place in the shard's store that names `token`: keys and values of every
/// tree, read through sled itself (the store is closed).
fn mentions(dir: &Path, token: &Token) -> Vec<String> {
    let db = crate::store::open_db(dir).unwrap();
    let needle = token.as_str().as_bytes();
    let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let mut found = Vec::new();
    for name in db.tree_names() {
        for entry in db.open_tree(&name).unwrap().iter() {
            let (k, v) = entry.unwrap();
            if contains(&k) || contains(&v) {
                found.push(format!(
                    "{}: {}",
                    String::from_utf8_lossy(&name),
                    String::from_utf8_lossy(&k)
                ));
            }
        }
    }
    found
}

struct Outcome {
    features: Vec<Token>,
    forgotten: u64,
    released: Vec<Token>,
}

/// One run of a shard over `dir`: `evs` published, drained, reminders released at
/// 09:00 on 2 January.
async fn run(dir: &Path, name: &str, engine: &Arc<Engine>, evs: &[Event]) -> Outcome {
    let bus = Arc::new(MemoryBus::new(3));
    let mut shard = Shard::start(config(dir, name), engine.clone(), bus.clone())
        .await
        .unwrap();
    for e in evs {
        bus.publish(e.clone());
    }
    bus.close_events();
    shard.drain().await.unwrap();
    shard
        .release_due(parse_ts("2026-01-02T09:00:00Z").unwrap())
        .await
        .unwrap();
    let features = shard.features(None).await.unwrap();
    let forgotten = shard.stats().await.unwrap().forgotten;
    shard.stop().await;
    bus.matches().close();
    let mut released: Vec<Token> = bus
        .matches()
        .read(1, 100)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(_, m)| m.decision.token.clone())
        .collect();
    released.sort();
    Outcome {
        features: features.into_iter().map(|(t, _, _)| t).collect(),
        forgotten,
        released,
    }
}

#[tokio::test]
async fn a_forget_event_deletes_her_state_snapshot_and_reminder_and_nothing_else() {
    let engine = deferring_engine();
    let dir = tempfile::tempdir().unwrap();
    let customers: Vec<Token> = (0..4u8).map(|c| Token::from_bytes([c; 16])).collect();
    let (her, others) = (&customers[1], [&customers[0], &customers[2], &customers[3]]);

    let mut kept: Vec<Token> = others.iter().map(|t| (*t).clone()).collect();
    kept.sort();

    // The first run leaves every customer in the store, each with a deferred match
    // (due at 09:00, so its reminder entry stays in the store).
    let bus = Arc::new(MemoryBus::new(3));
    let mut shard = Shard::start(config(dir.path(), "f1b"), engine.clone(), bus.clone())
        .await
        .unwrap();
    for e in events(4, 6) {
        bus.publish(e);
    }
    bus.close_events();
    shard.drain().await.unwrap();
    shard.stop().await;
    assert!(
        !mentions(dir.path(), her).is_empty(),
        "her state and reminder are stored"
    );

    // A later run carries only her forget (and one for a token the cloud never saw).
    let stranger = Token::from_bytes([9; 16]);
    let after = run(
        dir.path(),
        "f1c",
        &engine,
        &[
            forget(her, "2026-01-02T08:00:00Z"),
            forget(&stranger, "2026-01-02T08:00:00Z"),
        ],
    )
    .await;
    assert_eq!(after.forgotten, 2);
    assert_eq!(after.features, kept, "she is gone from the features");
    assert_eq!(
        after.released, kept,
        "her deferred match is not released; the others' are"
    );
    assert_eq!(mentions(dir.path(), her), Vec::<String>::new());
    for other in others {
        assert!(!mentions(dir.path(), other).is_empty(), "{other} is untouched");
    }

    // Forgetting again (a run that stopped before its erasures were acknowledged)
    // changes nothing.
    let again = run(dir.path(), "f1d", &engine, &[forget(her, "2026-01-02T08:00:00Z")]).await;
    assert_eq!(again.forgotten, 1);
    assert_eq!(again.features.len(), 3);
    assert!(again.released.is_empty(), "released once");
}

#[tokio::test]
async fn events_after_her_forget_in_the_same_stream_start_from_nothing() {
    let engine = super::engine();
    let dir = tempfile::tempdir().unwrap();
    let evs = events(2, 6);
    let her = Token::from_bytes([0; 16]);
    let mut stream: Vec<Event> = evs.clone();
    stream.push(forget(&her, "2026-01-03T00:00:00Z"));
    // One more transaction of hers, after the forget (e.g. one already in flight).
    let mut late = evs
        .iter()
        .find(|e| e.token == her && e.kind == "transaction")
        .unwrap()
        .clone();
    late.id = EventId::from_bytes([0xdd; 16]);
    late.ts = parse_ts("2026-01-04T00:00:00Z").unwrap();
    stream.push(late);
    let bus = Arc::new(MemoryBus::new(2));
    let mut shard = Shard::start(config(dir.path(), "f2"), engine, bus.clone())
        .await
        .unwrap();
    for e in stream {
        bus.publish(e);
    }
    bus.close_events();
    shard.drain().await.unwrap();
    let features = shard.features(None).await.unwrap();
    shard.stop().await;
    let spend: Vec<(Token, Value)> = features.into_iter().map(|(t, _, f)| (t, f["spend"].clone())).collect();
    // Her 180 before the forget are gone; only the late 30 counts. The other
    // customer keeps all of hers.
    let mut expected = vec![(her, Value::Int(30)), (Token::from_bytes([1; 16]), Value::Int(180))];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(spend, expected);
}
