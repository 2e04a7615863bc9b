//! The feeder of one partition on the Redis bus: reads its stream in the `shards`
//! group under the partition's lease, hands batches to the partition actor, publishes
//! the matches they decided, checkpoints, and acknowledges what is checkpointed.
//!
//! The order is what makes the effect exactly once and the matches at least once:
//! matches are published (fenced by the lease) before the checkpoint that records
//! them as sent, and entries are acknowledged (fenced, with the checkpoint recorded in
//! Redis and the stream trimmed below it) only after the checkpoint is durable. A
//! crash anywhere replays from the store's checkpoint: entries at or below it are
//! skipped by position, the rest are applied again, deciding the same match ids.

use std::sync::Arc;
use std::time::Duration;

use persona_bus::redis::{EntryId, PartitionReader, RedisBusError};
use ractor::{ActorRef, call};
use tokio::sync::watch;

use crate::outbox::RedisOutbox;
use crate::partition::PartitionMsg;
use crate::{Error, actor_err};

/// How often an idle partition is asked to passivate its idle customers.
const IDLE_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a read waits for new entries before the feeder checkpoints what it has.
const IDLE: Duration = Duration::from_millis(200);

pub(crate) struct Feeder {
    pub(crate) actor: ActorRef<PartitionMsg>,
    pub(crate) reader: PartitionReader,
    pub(crate) outbox: Arc<RedisOutbox>,
    pub(crate) batch: usize,
    pub(crate) checkpoint_every: u64,
    pub(crate) stop: watch::Receiver<bool>,
    /// Told when feeding fails (not when fenced): the shard process should stop.
    pub(crate) failed: Arc<tokio::sync::Notify>,
    /// The trace context of the last traced batch: its matches carry it.
    pub(crate) trace: Option<String>,
}

/// A Redis entry id as a stream position, and back: the id's 128 bits, in order.
pub(crate) fn position(id: EntryId) -> persona_bus::Position {
    (u128::from(id.ms) << 64) | u128::from(id.seq)
}

fn entry_id(position: persona_bus::Position) -> EntryId {
    EntryId {
        ms: (position >> 64) as u64,
        seq: position as u64,
    }
}

/// How a feeder ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Told to stop: it checkpointed and acknowledged.
    Stopped,
    /// Its lease went to another shard.
    Fenced,
}

impl Feeder {
    /// Runs until told to stop (then checkpoints and acknowledges) or until the
    /// partition's lease is taken away (then stops without either: the new owner
    /// resumes from the last acknowledged checkpoint); says which.
    pub(crate) async fn run(mut self) -> Result<Ended, Error> {
        let failed = self.failed.clone();
        let partition = self.reader.lease().partition;
        match self.feed().await {
            Err(Error::Bus(RedisBusError::Fenced { .. })) => {
                tracing::warn!(partition, "partition reassigned: this shard stops feeding it");
                Ok(Ended::Fenced)
            }
            Err(e) => {
                tracing::error!(partition, error = %e, "feeding the partition failed: it is no longer fed");
                failed.notify_one();
                Err(e)
            }
            Ok(()) => Ok(Ended::Stopped),
        }
    }

    async fn feed(&mut self) -> Result<(), Error> {
        let mut since_checkpoint = 0u64;
        let mut idle_sweep = std::time::Instant::now();
        loop {
            if *self.stop.borrow() {
                return self.checkpoint().await;
            }
            let entries = tokio::select! {
                read = self.reader.read(self.batch, IDLE) => read?,
                // Told to stop, or the shard is gone: checkpoint and stop.
                changed = self.stop.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return self.checkpoint().await,
                },
            };
            if entries.is_empty() {
                if since_checkpoint > 0 {
                    self.checkpoint().await?;
                    since_checkpoint = 0;
                } else if idle_sweep.elapsed() >= IDLE_SWEEP {
                    // A quiet partition checkpoints no more: idle customers leave here,
                    // and it asks whether it still holds its lease.
                    idle_sweep = std::time::Instant::now();
                    self.reader.check_lease().await?;
                    self.actor
                        .cast(PartitionMsg::PassivateIdle)
                        .map_err(|e| Error::Actor(e.to_string()))?;
                }
                continue;
            }
            since_checkpoint += entries.len() as u64;
            let span = self.batch_span(&entries);
            let batch = entries
                .into_iter()
                .map(|e| (position(e.id), Arc::new(e.event)))
                .collect();
            let started = std::time::Instant::now();
            call!(self.actor, PartitionMsg::Apply, batch)
                .map_err(actor_err)?
                .map_err(Error::Actor)?;
            self.publish().await?;
            crate::metrics::shard_metrics()
                .apply_seconds
                .observe(started.elapsed().as_secs_f64());
            drop(span);
            if since_checkpoint >= self.checkpoint_every {
                self.checkpoint().await?;
                since_checkpoint = 0;
            }
        }
    }

    /// A span for applying a batch whose entries carry trace context: a child of the
    /// first entry's span, linked to the others'. Its context goes with the batch's
    /// matches. `None` (and no trace) when no entry is traced.
    fn batch_span(&mut self, entries: &[persona_bus::redis::Entry]) -> Option<tracing::Span> {
        let mut traces: Vec<&str> = entries.iter().filter_map(|e| e.trace.as_deref()).collect();
        if traces.is_empty() {
            self.trace = None;
            return None;
        }
        traces.sort_unstable();
        traces.dedup();
        let span = tracing::info_span!(
            "shard.apply_batch",
            partition = self.reader.lease().partition,
            entries = entries.len()
        );
        persona_proto::trace::set_parent(&span, traces[0]);
        for t in &traces[1..] {
            persona_proto::trace::add_link(&span, t);
        }
        self.trace = persona_proto::trace::traceparent(&span);
        Some(span)
    }

    /// Publishes the matches the partition decided, under its lease.
    async fn publish(&mut self) -> Result<(), Error> {
        let partition = self.reader.lease().partition;
        let matches = self.outbox.take_matches(partition);
        self.reader.publish_matches(&matches, self.trace.as_deref()).await?;
        Ok(())
    }

    /// Publishes pending matches, makes everything applied durable, and acknowledges
    /// it (recording the checkpoint in Redis and trimming below it).
    async fn checkpoint(&mut self) -> Result<(), Error> {
        let started = std::time::Instant::now();
        self.publish().await?;
        let position = call!(self.actor, PartitionMsg::Checkpoint)
            .map_err(actor_err)?
            .map_err(Error::Actor)?;
        let partition = self.reader.lease().partition;
        let upto = self.outbox.take_checkpoint(partition).unwrap_or(position);
        if upto > 0 {
            self.reader.ack(entry_id(upto)).await?;
        }
        crate::metrics::shard_metrics()
            .checkpoint_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_and_positions_convert_in_order() {
        let a = EntryId {
            ms: 1_700_000_000_000,
            seq: 9,
        };
        let b = EntryId {
            ms: 1_700_000_000_001,
            seq: 0,
        };
        assert!(position(a) < position(b));
        assert_eq!(entry_id(position(a)), a);
        assert_eq!(entry_id(0), EntryId::ZERO);
    }
}
