//! The event and match streams that join the zones. This crate holds the in-process
//! bus of the embedded mode: one append-only stream per partition plus the matches
//! stream, each entry at a position that only grows, read from a position and trimmed
//! only below what the consumer has checkpointed, so a consumer that restarts from its
//! checkpoint sees every entry it has not yet made durable. The Redis Streams bus
//! ([`redis`]) keeps the same semantics across processes, with consumer groups and
//! leases fenced by epoch.

pub mod redis;
mod stream;

use std::sync::Arc;

use persona_event::{Event, MatchMessage};
use persona_placement::partition_of;

pub use stream::{Position, Stream};

/// The in-process bus: `partitions` event streams and one matches stream.
#[derive(Debug)]
pub struct MemoryBus {
    id: u64,
    partitions: Vec<Stream<Arc<Event>>>,
    matches: Stream<Arc<MatchMessage>>,
}

impl MemoryBus {
    pub fn new(partitions: u32) -> Self {
        Self {
            id: instance_id(),
            partitions: (0..partitions.max(1)).map(|_| Stream::default()).collect(),
            matches: Stream::default(),
        }
    }

    /// Identifies this bus instance. Positions are meaningful only within one
    /// instance: an in-process bus lives as long as its process, so a consumer that
    /// checkpointed positions of another instance starts this one from the beginning
    /// (and recognises events it already applied by their ids).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Appends an event to its token's partition; returns (partition, position).
    pub fn publish(&self, event: Event) -> (u32, Position) {
        let p = partition_of(&event.token, self.partitions());
        (p, self.partitions[p as usize].append(Arc::new(event)))
    }

    /// The stream of one partition.
    pub fn partition(&self, p: u32) -> &Stream<Arc<Event>> {
        &self.partitions[p as usize]
    }

    /// Says no more events will come (the end of a batch run): readers drain and stop.
    pub fn close_events(&self) {
        self.partitions.iter().for_each(Stream::close);
    }

    pub fn matches(&self) -> &Stream<Arc<MatchMessage>> {
        &self.matches
    }
}

/// A value unique to this bus instance: the clock, the process and a counter.
fn instance_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let salt = (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    persona_event::hash::fnv1a64(&[nanos.to_le_bytes(), salt.to_le_bytes()].concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use persona_event::{EventId, Token};

    fn event(i: u8) -> Event {
        Event {
            id: EventId::from_bytes([i; 16]),
            token: Token::from_bytes([i; 16]),
            kind: "transaction".into(),
            ts: chrono::DateTime::UNIX_EPOCH,
            attrs: Default::default(),
        }
    }

    #[tokio::test]
    async fn an_event_lands_in_its_tokens_partition() {
        let bus = MemoryBus::new(8);
        let ev = event(7);
        let want = partition_of(&ev.token, 8);
        let (p, pos) = bus.publish(ev.clone());
        assert_eq!((p, pos), (want, 1));
        bus.close_events();
        let got = bus.partition(p).read(1, 10).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(*got[0].1, ev);
        assert!(bus.partition(p).read(2, 10).await.is_none());
        assert_ne!(bus.id(), MemoryBus::new(8).id());
    }
}
