//! The shard over real sled files and the in-process bus.

use std::sync::Arc;

use persona_bus::MemoryBus;
use persona_event::time::parse_ts;
use persona_event::{Event, EventId, Token, Value};
use persona_features::{FeatureSet, FeatureSetDocument};
use persona_offers::{Engine, Offer, OfferDocument};

use crate::{Shard, ShardConfig};

mod forget;

const SET: &str = r#"
kind: FeatureSet
metadata: {name: t}
spec:
  features:
    - {name: spend, on: transaction, value: event.amount, agg: sum}
"#;

const OFFER: &str = r#"
kind: Offer
metadata: {name: big-spender}
spec:
  title: Big spender
  trigger: {on: [transaction]}
  when: features.spend >= 100
  channels: [email]
  variants: [{name: a, message: hi}]
  limits: {perCustomer: "1 per 365d"}
"#;

fn engine() -> Arc<Engine> {
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(SET).unwrap()).unwrap();
    let offer = Offer::compile(&OfferDocument::from_yaml(OFFER).unwrap(), &set).unwrap();
    Arc::new(Engine::new(set, vec![offer]))
}

fn events(customers: u8, per_customer: u8) -> Vec<Event> {
    let mut out = Vec::new();
    for c in 0..customers {
        let token = Token::from_bytes([c; 16]);
        out.push(Event {
            id: EventId::from_bytes([c, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            token: token.clone(),
            kind: "profile".into(),
            ts: parse_ts("2026-01-01T00:00:00Z").unwrap(),
            attrs: [("contacts".to_owned(), Value::List(vec!["email".into()]))].into(),
        });
        for i in 0..per_customer {
            out.push(Event {
                id: EventId::from_bytes([c, i, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                token: token.clone(),
                kind: "transaction".into(),
                ts: parse_ts(&format!("2026-01-02T00:{i:02}:00Z")).unwrap(),
                attrs: [("amount".to_owned(), Value::Int(30))].into(),
            });
        }
    }
    out
}

fn config(dir: &std::path::Path, name: &str) -> ShardConfig {
    ShardConfig {
        name: name.into(),
        dir: dir.to_owned(),
        checkpoint_every: 7,
        batch: 5,
        max_hot: None,
        idle_after: None,
        peer_tls: None,
    }
}

async fn run(dir: &std::path::Path, name: &str, evs: &[Event]) -> (Vec<String>, Vec<(Token, Value)>) {
    let bus = Arc::new(MemoryBus::new(4));
    let mut shard = Shard::start(config(dir, name), engine(), bus.clone()).await.unwrap();
    for e in evs {
        bus.publish(e.clone());
    }
    bus.close_events();
    shard.drain().await.unwrap();
    let features = shard.features(None).await.unwrap();
    shard.stop().await;
    bus.matches().close();
    let mut matches = Vec::new();
    let mut from = 1;
    while let Some(batch) = bus.matches().read(from, 100).await {
        for (pos, m) in batch {
            matches.push(format!("{} {}", m.decision.token, m.decision.offer));
            from = pos + 1;
        }
    }
    matches.sort();
    (
        matches,
        features.into_iter().map(|(t, _, f)| (t, f["spend"].clone())).collect(),
    )
}

#[tokio::test]
async fn every_customer_is_applied_in_order_and_matched_once() {
    let dir = tempfile::tempdir().unwrap();
    let (matches, features) = run(dir.path(), "s1", &events(20, 6)).await;
    assert_eq!(matches.len(), 20, "{matches:?}");
    assert_eq!(features.len(), 20);
    assert!(features.iter().all(|(_, v)| *v == Value::Int(180)), "{features:?}");
}

#[tokio::test]
async fn a_restarted_shard_resumes_and_redelivery_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(10, 6);
    let (first, _) = run(dir.path(), "s2a", &evs[..evs.len() / 2]).await;
    // Everything again (half of it re-delivered) into a new process on the same data.
    let (second, features) = run(dir.path(), "s2b", &evs).await;
    // Each customer matched exactly once across both runs: nothing the first run
    // applied is applied, or matched, again.
    assert!(second.iter().all(|m| !first.contains(m)), "{first:?} {second:?}");
    assert_eq!(first.len() + second.len(), 10);
    assert!(features.iter().all(|(_, v)| *v == Value::Int(180)), "{features:?}");
}

#[tokio::test]
async fn explain_answers_for_known_customers_only() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(MemoryBus::new(2));
    let mut shard = Shard::start(config(dir.path(), "s3"), engine(), bus.clone())
        .await
        .unwrap();
    for e in events(1, 2) {
        bus.publish(e);
    }
    bus.close_events();
    shard.drain().await.unwrap();
    let t = Token::from_bytes([0; 16]);
    let why = shard.explain(&t, "big-spender", None).await.unwrap().unwrap();
    assert!(!why.clauses[0].passed);
    assert_eq!(why.clauses[0].features, vec![("spend".to_owned(), Value::Int(60))]);
    assert!(
        shard
            .explain(&Token::from_bytes([9; 16]), "big-spender", None)
            .await
            .unwrap()
            .is_none()
    );
    shard.stop().await;
}

#[tokio::test]
async fn a_featureset_is_replaced_while_the_shard_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(MemoryBus::new(3));
    let mut shard = Shard::start(config(dir.path(), "s4"), engine(), bus.clone())
        .await
        .unwrap();
    let evs = events(4, 6);
    let (before, after) = evs.split_at(evs.len() / 2);
    for e in before {
        bus.publish(e.clone());
    }
    // Wait until the first half is applied, then swap in a set with one more feature.
    while shard.progress().load(std::sync::atomic::Ordering::Relaxed) < before.len() as u64 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let wider = SET.to_owned() + "    - {name: txns, on: transaction, agg: count}\n";
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(&wider).unwrap()).unwrap();
    let offer = Offer::compile(&OfferDocument::from_yaml(OFFER).unwrap(), &set).unwrap();
    shard.reload(Arc::new(Engine::new(set, vec![offer]))).await.unwrap();
    for e in after {
        bus.publish(e.clone());
    }
    bus.close_events();
    shard.drain().await.unwrap();
    let features = shard.features(None).await.unwrap();
    shard.stop().await;
    // `spend` kept its state across the swap; `txns` counts only what came after it.
    let spend: i64 = features
        .iter()
        .map(|(_, _, f)| f["spend"].as_f64().unwrap() as i64)
        .sum();
    let txns: i64 = features
        .iter()
        .map(|(_, _, f)| f["txns"].as_f64().unwrap() as i64)
        .sum();
    assert_eq!(spend, 4 * 6 * 30);
    let after_txns = after.iter().filter(|e| e.kind == "transaction").count() as i64;
    assert_eq!(txns, after_txns);
}

#[tokio::test]
async fn a_shard_stopped_mid_stream_resumes_from_its_checkpoint_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(MemoryBus::new(4));
    let evs = events(20, 6);
    let (early, late) = evs.split_at(evs.len() * 2 / 3);
    for e in early {
        bus.publish(e.clone());
    }
    // The first shard applies the early events and is stopped without draining: what
    // it applied after each partition's last checkpoint (every 7 entries) is lost.
    let first = Shard::start(config(dir.path(), "s5a"), engine(), bus.clone())
        .await
        .unwrap();
    while first.progress().load(std::sync::atomic::Ordering::Relaxed) < early.len() as u64 {
        tokio::task::yield_now().await;
    }
    first.stop().await;
    for e in late {
        bus.publish(e.clone());
    }
    bus.close_events();
    // A new shard on the same data and the same stream replays from the checkpoints.
    let mut second = Shard::start(config(dir.path(), "s5b"), engine(), bus.clone())
        .await
        .unwrap();
    second.drain().await.unwrap();
    let replayed = second.stats().await.unwrap().applied;
    let features = second.features(None).await.unwrap();
    second.stop().await;
    assert!(
        replayed > late.len() as u64,
        "the uncheckpointed tail was applied again: {replayed}"
    );
    // ... and still every event counted exactly once.
    assert_eq!(features.len(), 20);
    assert!(
        features.iter().all(|(_, _, f)| f["spend"] == Value::Int(180)),
        "{features:?}"
    );
    // Matches are at least once with stable ids: each customer's match id is one id.
    bus.matches().close();
    let mut ids = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    let mut from = 1;
    while let Some(batch) = bus.matches().read(from, 100).await {
        for (pos, m) in batch {
            ids.entry(m.decision.token.to_string())
                .or_default()
                .insert(m.decision.match_id.to_string());
            from = pos + 1;
        }
    }
    assert_eq!(ids.len(), 20);
    assert!(ids.values().all(|s| s.len() == 1), "{ids:?}");
}

/// `persona run --backfill`: a feature added to the set is recomputed from every event
/// the run reads, those applied by earlier runs included; the other features and the
/// offers see only the new events, and a second backfill starts over.
#[tokio::test]
async fn an_added_feature_is_backfilled_from_the_events_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(6, 6);
    let (first, _) = run(dir.path(), "s6a", &evs[..evs.len() / 2]).await;
    let wider = SET.to_owned() + "    - {name: txns, on: transaction, agg: count}\n";
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(&wider).unwrap()).unwrap();
    let offer = Offer::compile(&OfferDocument::from_yaml(OFFER).unwrap(), &set).unwrap();
    let backfilling = Arc::new(Engine::new(set, vec![offer]).with_backfill(&["txns"]).unwrap());
    for round in ["s6b", "s6c"] {
        let bus = Arc::new(MemoryBus::new(4));
        let mut shard = Shard::start(config(dir.path(), round), backfilling.clone(), bus.clone())
            .await
            .unwrap();
        // Everything, and some of it twice.
        for e in evs.iter().chain(&evs[..5]) {
            bus.publish(e.clone());
        }
        bus.close_events();
        shard.drain().await.unwrap();
        let features = shard.features(None).await.unwrap();
        shard.stop().await;
        assert_eq!(features.len(), 6);
        for (token, _, f) in &features {
            assert_eq!(f["txns"], Value::Int(6), "{round} {token}");
            assert_eq!(f["spend"], Value::Int(180), "{round} {token}");
        }
        bus.matches().close();
        let matched = bus.matches().read(1, 100).await.map_or(0, |b| b.len());
        // Each customer is matched once over all runs: the backfill matches nobody.
        let expected = if round == "s6b" { 6 - first.len() } else { 0 };
        assert_eq!(matched, expected, "{round}: first run matched {}", first.len());
    }
    let unknown = Engine::new(
        FeatureSet::compile(&FeatureSetDocument::from_yaml(SET).unwrap()).unwrap(),
        Vec::new(),
    )
    .with_backfill(&["txns"]);
    assert!(unknown.unwrap_err().to_string().contains("no feature `txns`"));
}

/// A match deferred by quiet hours is a durable reminder: it survives the shard, and a
/// later run releases it from the store when its time has come, once.
#[tokio::test]
async fn deferred_matches_are_released_from_the_store_when_due() {
    use persona_offers::{ContactPolicy, ContactPolicyDocument};
    let policy = ContactPolicy::compile(
        &ContactPolicyDocument::from_yaml(
            "kind: ContactPolicy\nmetadata: {name: p}\nspec: {quietHours: {from: \"00:00\", to: \"09:00\"}, timezone: UTC}\n",
        )
        .unwrap(),
    )
    .unwrap();
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(SET).unwrap()).unwrap();
    let offer = Offer::compile(&OfferDocument::from_yaml(OFFER).unwrap(), &set).unwrap();
    let engine = Arc::new(Engine::new(set, vec![offer]).with_policy(policy));
    let dir = tempfile::tempdir().unwrap();
    // Transactions at 00:00-00:05 UTC, in quiet hours: 3 customers match, none now.
    let evs = events(3, 6);
    let mut released = Vec::new();
    for (round, until) in [
        ("s7a", "2026-01-02T08:59:00Z"),
        ("s7b", "2026-01-02T09:00:00Z"),
        ("s7c", "2026-01-03T00:00:00Z"),
    ] {
        let bus = Arc::new(MemoryBus::new(2));
        let mut shard = Shard::start(config(dir.path(), round), engine.clone(), bus.clone())
            .await
            .unwrap();
        if round == "s7a" {
            for e in &evs {
                bus.publish(e.clone());
            }
        }
        bus.close_events();
        shard.drain().await.unwrap();
        let n = shard.release_due(parse_ts(until).unwrap()).await.unwrap();
        shard.stop().await;
        bus.matches().close();
        let batch = bus.matches().read(1, 100).await.unwrap_or_default();
        assert_eq!(batch.len() as u64, n, "{round}");
        released.push(batch.into_iter().map(|(_, m)| m).collect::<Vec<_>>());
    }
    assert!(released[0].is_empty(), "nothing before 09:00: {:?}", released[0]);
    assert_eq!(released[1].len(), 3);
    assert!(
        released[1]
            .iter()
            .all(|m| m.decision.ts == parse_ts("2026-01-02T09:00:00Z").unwrap())
    );
    assert!(released[2].is_empty(), "released once: {:?}", released[2]);
}

/// A scheduled sweep reaches every customer of a partition, those only in the store
/// (from an earlier run) too, and runs once per customer however often it is replayed.
#[tokio::test]
async fn a_sweep_reaches_stored_customers_once() {
    const WEEKLY: &str = "kind: Offer\nmetadata: {name: weekly}\nspec:\n  title: Weekly\n  trigger: {schedule: \"0 9 * * MON\"}\n  when: features.spend >= 100\n  channels: [email]\n  variants: [{name: a, message: hi}]\n";
    let set = FeatureSet::compile(&FeatureSetDocument::from_yaml(SET).unwrap()).unwrap();
    let offer = Offer::compile(&OfferDocument::from_yaml(WEEKLY).unwrap(), &set).unwrap();
    let engine = Arc::new(Engine::new(set, vec![offer]));
    let dir = tempfile::tempdir().unwrap();
    let evs = events(5, 6);
    // 3 customers reach 180, 2 stop at 90 (only 3 transactions each).
    let evs: Vec<Event> = evs
        .into_iter()
        .filter(|e| e.token.to_bytes()[0] < 3 || e.id.to_bytes()[1] < 3 || e.kind == "profile")
        .collect();
    let monday = parse_ts("2026-01-05T09:00:00Z").unwrap();
    let mut got = Vec::new();
    for (round, publish_events) in [("s8a", true), ("s8b", false), ("s8c", false)] {
        let bus = Arc::new(MemoryBus::new(3));
        let mut shard = Shard::start(config(dir.path(), round), engine.clone(), bus.clone())
            .await
            .unwrap();
        if publish_events {
            for e in &evs {
                bus.publish(e.clone());
            }
        } else {
            // A later run without events for them: they are only in the store.
            Shard::publish_sweep(&bus, "weekly", monday);
        }
        bus.close_events();
        shard.drain().await.unwrap();
        shard.stop().await;
        bus.matches().close();
        got.push(bus.matches().read(1, 100).await.unwrap_or_default().len());
    }
    assert_eq!(got, vec![0, 3, 0], "no sweep, the sweep, the same sweep replayed");
}

#[tokio::test]
async fn passivated_customers_come_back_with_their_state() {
    // Round robin over customers, so each is passivated and reactivated many times.
    let mut evs = events(40, 6);
    evs.sort_by_key(|e| (e.ts, e.token.clone()));
    let dir = tempfile::tempdir().unwrap();
    let (all_hot, features) = run(dir.path(), "s-hot", &evs).await;
    let cold_dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(MemoryBus::new(4));
    let config = ShardConfig {
        max_hot: Some(8),
        idle_after: None,
        peer_tls: None,
        ..config(cold_dir.path(), "s-cold")
    };
    let mut shard = Shard::start(config, engine(), bus.clone()).await.unwrap();
    for e in &evs {
        bus.publish(e.clone());
    }
    bus.close_events();
    shard.drain().await.unwrap();
    let stats = shard.stats().await.unwrap();
    assert!(stats.passivated >= 32, "{stats:?}");
    assert!(
        stats.hot <= 8,
        "at most the bound stays in memory after the last checkpoint: {stats:?}"
    );
    assert!(
        stats.activations > 40,
        "passivated customers were reactivated: {stats:?}"
    );
    let cold: Vec<(Token, Value)> = shard
        .features(None)
        .await
        .unwrap()
        .into_iter()
        .map(|(t, _, f)| (t, f["spend"].clone()))
        .collect();
    shard.stop().await;
    assert_eq!(cold, features, "the same features, hot or passivated");
    assert_eq!(all_hot.len(), 40);
}

#[tokio::test]
async fn idle_customers_are_packed_in_memory_and_come_back_from_there() {
    // Everyone fits under the bound (25 a partition), but only a few stay decoded: the
    // others are packed, dirty or not, and come back from memory, not from the store.
    let mut evs = events(40, 6);
    evs.sort_by_key(|e| (e.ts, e.token.clone()));
    let dir = tempfile::tempdir().unwrap();
    let (_, features) = run(dir.path(), "s-plain", &evs).await;
    let packed_dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(MemoryBus::new(4));
    let config = ShardConfig {
        max_hot: Some(100),
        checkpoint_every: 7,
        idle_after: None,
        peer_tls: None,
        ..config(packed_dir.path(), "s-packed")
    };
    let mut shard = Shard::start(config, engine(), bus.clone()).await.unwrap();
    for e in &evs {
        bus.publish(e.clone());
    }
    bus.close_events();
    shard.drain().await.unwrap();
    let stats = shard.stats().await.unwrap();
    assert_eq!(stats.passivated, 0, "nobody left memory: {stats:?}");
    assert_eq!(stats.hot, 40, "packed customers count as in memory: {stats:?}");
    assert!(stats.activations > 40, "packed customers were decoded again: {stats:?}");
    // A packed customer answers queries as she is.
    let token = evs[0].token.clone();
    assert!(shard.handle("").customer(&token).await.unwrap().is_some());
    let packed: Vec<(Token, Value)> = shard
        .features(None)
        .await
        .unwrap()
        .into_iter()
        .map(|(t, _, f)| (t, f["spend"].clone()))
        .collect();
    shard.stop().await;
    assert_eq!(packed, features, "the same features, live or packed");
}

#[tokio::test]
async fn customers_idle_past_the_limit_leave_memory_after_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // One partition, a checkpoint after every entry: the partition passivates on the
    // entry that follows the idle time.
    let bus = Arc::new(MemoryBus::new(1));
    let config = ShardConfig {
        checkpoint_every: 1,
        idle_after: Some(std::time::Duration::from_millis(150)),
        ..config(dir.path(), "s-idle")
    };
    let mut shard = Shard::start(config, engine(), bus.clone()).await.unwrap();
    let evs = events(10, 0);
    for e in &evs {
        bus.publish(e.clone());
    }
    let applied = |n: u64| {
        let shard = &shard;
        async move {
            for _ in 0..200 {
                if shard.stats().await.unwrap().applied >= n {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("not applied");
        }
    };
    applied(10).await;
    assert_eq!(shard.stats().await.unwrap().hot, 10);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Customer 0 is back: the nine others, idle longer than the limit, leave memory.
    let mut again = evs[0].clone();
    again.id = EventId::from_bytes([0, 254, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    bus.publish(again);
    applied(11).await;
    let stats = shard.stats().await.unwrap();
    assert_eq!((stats.hot, stats.passivated), (1, 9), "{stats:?}");
    bus.close_events();
    shard.drain().await.unwrap();
    // Their state is in the store: every customer still has her features.
    assert_eq!(shard.features(None).await.unwrap().len(), 10);
    shard.stop().await;
}
