//! Where a partition actor's matches go, and whom it tells what is durable: the bus
//! its shard reads. The in-process bus takes matches at once and trims a partition's
//! stream below its checkpoint; the Redis bus ([`RedisOutbox`]) holds them until the
//! feeder has published them under the partition's lease, before the checkpoint that
//! records them is written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use persona_bus::{MemoryBus, Position};
use persona_event::MatchMessage;

/// The bus side of a partition actor.
pub trait Outbox: Send + Sync + 'static {
    /// Identifies the stream instance positions belong to: a checkpoint of another
    /// instance counts as none.
    fn stream_id(&self) -> u64;
    /// A match decided on `partition`.
    fn emit(&self, partition: u32, m: MatchMessage);
    /// Everything on `partition` up to `upto` is durable in the store.
    fn checkpointed(&self, partition: u32, upto: Position);
}

impl Outbox for MemoryBus {
    fn stream_id(&self) -> u64 {
        self.id()
    }
    fn emit(&self, _partition: u32, m: MatchMessage) {
        self.matches().append(Arc::new(m));
    }
    fn checkpointed(&self, partition: u32, upto: Position) {
        self.partition(partition).trim(upto);
    }
}

/// The outbox of a shard on the Redis bus: per partition, the matches decided and not
/// yet published, and the last checkpoint not yet acknowledged.
#[derive(Debug)]
pub struct RedisOutbox {
    stream_id: u64,
    partitions: Mutex<HashMap<u32, Pending>>,
}

#[derive(Debug, Default)]
struct Pending {
    matches: Vec<MatchMessage>,
    checkpointed: Option<Position>,
}

impl RedisOutbox {
    /// `stream_id` names the Redis bus (its URL's host and key prefix), so positions
    /// checkpointed against it stay valid across restarts.
    pub fn new(stream_id: u64) -> Self {
        RedisOutbox {
            stream_id,
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// The matches of `partition` waiting to be published, taken.
    pub fn take_matches(&self, partition: u32) -> Vec<MatchMessage> {
        let mut all = self.partitions.lock().expect("outbox lock");
        all.get_mut(&partition)
            .map(|p| std::mem::take(&mut p.matches))
            .unwrap_or_default()
    }

    /// The checkpoint of `partition` not yet acknowledged, taken.
    pub fn take_checkpoint(&self, partition: u32) -> Option<Position> {
        let mut all = self.partitions.lock().expect("outbox lock");
        all.get_mut(&partition).and_then(|p| p.checkpointed.take())
    }
}

impl Outbox for RedisOutbox {
    fn stream_id(&self) -> u64 {
        self.stream_id
    }
    fn emit(&self, partition: u32, m: MatchMessage) {
        let mut all = self.partitions.lock().expect("outbox lock");
        all.entry(partition).or_default().matches.push(m);
    }
    fn checkpointed(&self, partition: u32, upto: Position) {
        let mut all = self.partitions.lock().expect("outbox lock");
        all.entry(partition).or_default().checkpointed = Some(upto);
    }
}
