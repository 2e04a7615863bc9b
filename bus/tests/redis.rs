//! The Redis Streams bus against a real redis-server (started by `./scripts/test`,
//! which names it in `PERSONA_TEST_REDIS_URL`). Each test works under its own key
//! prefix, so they run side by side on one server.

use std::time::Duration;

use chrono::DateTime;
use persona_bus::redis::{EntryId, RedisBus, RedisBusError};
use persona_event::{Channel, Event, EventId, Match, MatchId, MatchMessage, Token};
use persona_placement::partition_of;

const NO_WAIT: Duration = Duration::from_millis(1);

fn url() -> String {
    std::env::var("PERSONA_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "PERSONA_TEST_REDIS_URL is unset: the Redis bus tests need a redis-server. \
             Run ./scripts/test, which installs and starts one and sets it."
        )
    })
}

async fn bus(test: &str, partitions: u32) -> RedisBus {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("test:{test}:{}:{nanos}", std::process::id());
    RedisBus::connect(&url(), &prefix, partitions).await.unwrap()
}

fn event(customer: u8, n: u32) -> Event {
    let mut id = [customer; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    Event {
        id: EventId::from_bytes(id),
        token: Token::from_bytes([customer; 16]),
        kind: "transaction".into(),
        ts: DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(i64::from(n)),
        attrs: [("amount".to_owned(), persona_event::Value::Int(i64::from(n)))].into(),
    }
}

fn a_match(customer: u8, n: u8) -> MatchMessage {
    MatchMessage {
        decision: Match {
            match_id: MatchId::from_bytes([n; 16]),
            token: Token::from_bytes([customer; 16]),
            offer: "car-loan".into(),
            variant: "a".into(),
            channel: Channel::Email,
            ts: DateTime::UNIX_EPOCH,
            event_id: None,
        },
        title: "t".into(),
        message: "m".into(),
    }
}

/// The events of one customer, on the partition her token maps to.
async fn publish_customer(bus: &RedisBus, customer: u8, n: u32) -> u32 {
    let events: Vec<Event> = (0..n).map(|i| event(customer, i)).collect();
    let placed = bus.publish(&events).await.unwrap();
    let p = partition_of(&events[0].token, bus.partitions());
    assert!(placed.iter().all(|(q, _)| *q == p));
    assert!(placed.windows(2).all(|w| w[0].1 < w[1].1), "ids grow");
    p
}

#[tokio::test]
async fn events_land_in_their_partitions_and_are_read_in_order() {
    let bus = bus("order", 4).await;
    let events: Vec<Event> = (0..40u8).flat_map(|c| (0..5).map(move |i| event(c, i))).collect();
    // The first half carries a trace context, the second none.
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut placed = bus.publish_traced(&events[..100], Some(trace)).await.unwrap();
    placed.extend(bus.publish(&events[100..]).await.unwrap());
    assert_eq!(placed.len(), 200);
    let grants: Vec<(u32, &str)> = (0..4).map(|p| (p, "s1")).collect();
    let epoch = bus.assign(&grants).await.unwrap();
    assert_eq!(epoch, 1);
    let mut total = 0;
    for lease in bus.leases_of("s1").await.unwrap() {
        assert_eq!(lease.epoch, 1);
        let p = lease.partition;
        let mut reader = bus.reader(lease, "s1").await.unwrap();
        let got = reader.read(1000, NO_WAIT).await.unwrap();
        assert!(got.windows(2).all(|w| w[0].id < w[1].id));
        for entry in &got {
            assert_eq!(partition_of(&entry.event.token, 4), p);
        }
        let want: Vec<&Event> = events.iter().filter(|e| partition_of(&e.token, 4) == p).collect();
        let read: Vec<&Event> = got.iter().map(|e| &e.event).collect();
        assert_eq!(read, want, "partition {p}: every event, in publish order");
        for entry in &got {
            let traced = events[..100].contains(&entry.event);
            assert_eq!(entry.trace.as_deref(), traced.then_some(trace));
        }
        assert!(reader.read(1000, NO_WAIT).await.unwrap().is_empty());
        total += got.len();
    }
    assert_eq!(total, 200);
}

#[tokio::test]
async fn acknowledging_records_the_checkpoint_and_trims_only_below_it() {
    let bus = bus("ack", 2).await;
    let p = publish_customer(&bus, 7, 10).await;
    bus.assign(&[(p, "s1")]).await.unwrap();
    let lease = bus.leases_of("s1").await.unwrap().remove(0);
    let mut reader = bus.reader(lease, "s1").await.unwrap();
    let got = reader.read(100, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(bus.checkpoint(p).await.unwrap(), EntryId::ZERO);
    assert_eq!(bus.lag(p).await.unwrap(), 10);
    let upto = got[4].id;
    assert_eq!(reader.ack(upto).await.unwrap(), 5);
    assert_eq!(bus.checkpoint(p).await.unwrap(), upto);
    assert_eq!(bus.lag(p).await.unwrap(), 5);
    // Trimmed below the checkpoint: the checkpointed entry and everything after stay.
    assert_eq!(bus.len(p).await.unwrap(), 6);
    assert_eq!(reader.ack(got[9].id).await.unwrap(), 5);
    assert_eq!(bus.lag(p).await.unwrap(), 0);
}

#[tokio::test]
async fn a_restarted_reader_gets_what_it_had_not_acknowledged_first() {
    let bus = bus("restart", 2).await;
    let p = publish_customer(&bus, 3, 6).await;
    bus.assign(&[(p, "s1")]).await.unwrap();
    let lease = bus.leases_of("s1").await.unwrap().remove(0);
    let mut first = bus.reader(lease.clone(), "s1").await.unwrap();
    let got = first.read(100, NO_WAIT).await.unwrap();
    first.ack(got[1].id).await.unwrap();
    drop(first); // a crash: entries 3..6 were delivered, never acknowledged

    publish_customer(&bus, 3, 2).await; // and more came meanwhile
    let mut again = bus.reader(lease, "s1").await.unwrap();
    let pending = again.read(100, NO_WAIT).await.unwrap();
    let ids: Vec<EntryId> = pending.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        got[2..].iter().map(|e| e.id).collect::<Vec<_>>(),
        "the pending ones first"
    );
    let new = again.read(100, NO_WAIT).await.unwrap();
    assert_eq!(new.len(), 2);
    assert!(new[0].id > got[5].id);
    assert_eq!(again.ack(new[1].id).await.unwrap(), 6);
    assert_eq!(bus.lag(p).await.unwrap(), 0);
}

#[tokio::test]
async fn a_reassigned_partition_fences_its_old_owner_and_the_new_one_takes_its_pending_entries() {
    let bus = bus("fence", 2).await;
    let p = publish_customer(&bus, 9, 8).await;
    bus.assign(&[(p, "s1")]).await.unwrap();
    let old_lease = bus.leases_of("s1").await.unwrap().remove(0);
    let mut old = bus.reader(old_lease.clone(), "s1").await.unwrap();
    let got = old.read(100, NO_WAIT).await.unwrap();
    old.ack(got[2].id).await.unwrap();
    old.publish_matches(&[a_match(9, 1)], None).await.unwrap();

    let epoch = bus.assign(&[(p, "s2")]).await.unwrap();
    assert_eq!(epoch, old_lease.epoch + 1);
    assert!(bus.leases_of("s1").await.unwrap().is_empty());
    let new_lease = bus.leases_of("s2").await.unwrap().remove(0);
    assert_eq!((new_lease.partition, new_lease.epoch), (p, epoch));

    // The old owner can neither acknowledge nor emit a match any more.
    let fenced = old.ack(got[7].id).await.unwrap_err();
    assert!(
        matches!(fenced, RedisBusError::Fenced { partition, .. } if partition == p),
        "{fenced}"
    );
    let fenced = old.publish_matches(&[a_match(9, 2)], None).await.unwrap_err();
    assert!(matches!(fenced, RedisBusError::Fenced { .. }), "{fenced}");
    assert_eq!(bus.all_matches().await.unwrap().len(), 1);
    assert_eq!(bus.checkpoint(p).await.unwrap(), got[2].id);

    // The new owner takes over what the old one left pending, then reads on.
    let mut new = bus.reader(new_lease, "s2").await.unwrap();
    let pending = new.read(100, NO_WAIT).await.unwrap();
    assert_eq!(
        pending.iter().map(|e| e.id).collect::<Vec<_>>(),
        got[3..].iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert!(new.read(100, NO_WAIT).await.unwrap().is_empty());
    assert_eq!(new.ack(got[7].id).await.unwrap(), 5);
    new.publish_matches(
        &[a_match(9, 3)],
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    )
    .await
    .unwrap();
    let matches = bus.all_matches().await.unwrap();
    assert_eq!(matches.len(), 2);
    assert_eq!(matches[1].message, a_match(9, 3));
    assert_eq!(matches[1].partition, p);
    // The trace context travels with a match, and only when given.
    assert_eq!(matches[0].trace, None);
    assert_eq!(
        matches[1].trace.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
}

#[tokio::test]
async fn the_detokenizer_group_gets_unacknowledged_matches_again() {
    let bus = bus("matches", 1).await;
    bus.assign(&[(0, "s1")]).await.unwrap();
    let lease = bus.leases_of("s1").await.unwrap().remove(0);
    let writer = bus.reader(lease, "s1").await.unwrap();
    let sent: Vec<MatchMessage> = (1..=4).map(|n| a_match(1, n)).collect();
    writer.publish_matches(&sent, None).await.unwrap();

    let mut first = bus.match_reader("d1").await.unwrap();
    let stale = Duration::from_secs(60);
    let got = first.read(10, NO_WAIT, stale).await.unwrap();
    assert_eq!(
        got.iter().map(|m| &m.message).collect::<Vec<_>>(),
        sent.iter().collect::<Vec<_>>()
    );
    first.ack(&[got[0].id, got[1].id]).await.unwrap();
    drop(first);

    // The same consumer restarted: its two unacknowledged matches come back.
    let mut again = bus.match_reader("d1").await.unwrap();
    let pending = again.read(10, NO_WAIT, stale).await.unwrap();
    assert_eq!(pending.iter().map(|m| m.id).collect::<Vec<_>>(), [got[2].id, got[3].id]);
    assert!(again.read(10, NO_WAIT, stale).await.unwrap().is_empty());

    // Another instance takes them over once they are stale.
    let mut other = bus.match_reader("d2").await.unwrap();
    assert!(other.read(10, NO_WAIT, stale).await.unwrap().is_empty());
    let mut other = bus.match_reader("d2").await.unwrap();
    let taken = other.read(10, NO_WAIT, Duration::ZERO).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(other.ack(&[taken[0].id, taken[1].id]).await.unwrap(), 2);
}

#[test]
fn entry_ids_order_and_round_trip() {
    let a: EntryId = "1700000000000-5".parse().unwrap();
    let b: EntryId = "1700000000000-12".parse().unwrap();
    assert!(a < b);
    assert_eq!(a.to_string(), "1700000000000-5");
    assert_eq!(EntryId::from_bytes(b.to_bytes()), b);
    assert!(a.to_bytes() < b.to_bytes());
    assert!("x-1".parse::<EntryId>().is_err());
}

#[tokio::test]
async fn acknowledging_more_entries_than_lua_can_unpack_at_once() {
    let bus = bus("bigack", 1).await;
    let events: Vec<Event> = (0..12_000).map(|i| event(1, i)).collect();
    for chunk in events.chunks(2_000) {
        bus.publish(chunk).await.unwrap();
    }
    bus.assign(&[(0, "s1")]).await.unwrap();
    let lease = bus.leases_of("s1").await.unwrap().remove(0);
    let mut reader = bus.reader(lease, "s1").await.unwrap();
    let mut last = EntryId::ZERO;
    let mut read = 0;
    while read < 12_000 {
        let got = reader.read(5_000, NO_WAIT).await.unwrap();
        read += got.len();
        last = got.last().map_or(last, |e| e.id);
    }
    assert_eq!(reader.ack(last).await.unwrap(), 12_000);
    assert_eq!(bus.lag(0).await.unwrap(), 0);
}

#[tokio::test]
async fn an_entry_that_is_not_an_event_is_dead_lettered_and_the_partition_goes_on() {
    let bus = bus("dead", 1).await;
    bus.publish(&[event(2, 1)]).await.unwrap();
    // A foreign writer: a value that is no event, holding text that must not be echoed.
    let mut conn = redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream = format!("{}:events:0", bus.prefix());
    let _: String = redis::AsyncCommands::xadd(&mut conn, &stream, "*", &[("e", "{\"id\": \"Saanvi Sarkar\"}")])
        .await
        .unwrap();
    bus.publish(&[event(2, 2)]).await.unwrap();
    bus.assign(&[(0, "s1")]).await.unwrap();
    let lease = bus.leases_of("s1").await.unwrap().remove(0);
    let mut reader = bus.reader(lease, "s1").await.unwrap();
    let got = reader.read(10, NO_WAIT).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        [event(2, 1), event(2, 2)]
    );
    let dead = bus.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, stream);
    assert!(dead[0].2.starts_with("not an event"), "{}", dead[0].2);
    assert!(
        !dead[0].2.contains("Saanvi"),
        "the reason quotes no value: {}",
        dead[0].2
    );
    assert_eq!(
        reader.ack(got[1].id).await.unwrap(),
        3,
        "the dead entry is acknowledged too"
    );
    assert_eq!(bus.lag(0).await.unwrap(), 0);
}
